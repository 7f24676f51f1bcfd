/*
 * fsutil.h: file-system steps that must not lose data: atomic replacement of a file, fsync of files
 * and folders, recursive creation and removal, bounded reads that refuse anything but a regular
 * file, file integrity (xxHash64), and the lock that keeps two trainers out of one run folder.
 * Failures of the dying functions are user errors (exit 2) naming the path.
 */
#ifndef INFLLM_FSUTIL_H
#define INFLLM_FSUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"

/* The largest text or JSON file the trainer reads (configs, state.json, config.json, index files):
 * larger is a user error, never an unbounded allocation. */
#define FS_TEXT_MAX ((size_t)8 << 20)

/* "<path>: <reason>" into err (of size n); returns -1, so a caller can `return fs_error(...)`. */
int fs_error(char *err, size_t n, const char *path, const char *fmt, ...) INFLLM_PRINTF(4, 5);
int fs_verror(char *err, size_t n, const char *path, const char *fmt, va_list ap);

/* A file written through fd to tmp: fsync, close, rename over path, fsync the folder. Dies naming
 * the file (and removes tmp) on any error. */
void fs_commit(int fd, const char *tmp, const char *path);

/* mkdir -p; every component must be (or become) a folder. */
void make_dirs(const char *path);

/* Writes bytes to path.tmp, fsyncs it, renames it over path, fsyncs the folder. */
void write_file_atomic(const char *path, const void *bytes, size_t n);

/* fsync of a file or a folder. */
void fsync_path(const char *path);

/* rm -rf (silent when path does not exist). */
void remove_tree(const char *path);

/* The whole file, NUL-terminated (*len excludes the NUL), at most FS_TEXT_MAX bytes. A missing file
 * gives NULL (errno ENOENT), or a user error when must_exist; a folder, FIFO, device or socket, an
 * unreadable or an oversized file is a user error naming the path. Never blocks on a FIFO. */
char *read_file(const char *path, size_t *len, bool must_exist);

/* The same without dying: 0 with *out (free()) and *len; 1 when the file does not exist; -1 with
 * "<path>: <reason>" in err for anything else. max bounds the size. */
int fs_read(const char *path, size_t max, char **out, size_t *len, char *err, size_t err_len);

/* Copies a regular file (tokenizer files on export) in chunks, atomically (dst.tmp, fsync,
 * rename); false when src does not exist. Anything else that is not a regular file, or an I/O
 * error, is a user error. */
bool copy_file(const char *src, const char *dst);

/* "a folder", "a FIFO (named pipe)", "a character device", ... for a st_mode. */
const char *fs_kind(unsigned mode);

/* xxHash64 (Yann Collet's non-cryptographic 64-bit hash, implemented here from its published
 * specification), streaming. */
struct xxh64 {
    uint64_t v[4];        /* lane accumulators */
    uint64_t total;       /* bytes seen */
    uint8_t buf[32];      /* a partial stripe */
    size_t buf_len;
    uint64_t seed;
};
void xxh64_init(struct xxh64 *h, uint64_t seed);
void xxh64_update(struct xxh64 *h, const void *p, size_t n);
uint64_t xxh64_digest(const struct xxh64 *h);
uint64_t xxh64(const void *p, size_t n, uint64_t seed);

/* xxHash64 (seed 0) and size of a regular file, read with read() (never mapped, so a file that
 * shrinks under us is an error, not a SIGBUS). 0, or -1 with "<path>: <reason>" in err. */
int fs_hash_file(const char *path, uint64_t *hash, uint64_t *bytes, char *err, size_t err_len);

/* Takes an exclusive advisory lock on `path` (created when missing) and returns its descriptor,
 * held until the process ends; another process holding it is a user error naming its pid. A
 * file system without locks gives a warning and -1. */
int fs_lock(const char *path);

/* Whether path exists (lstat), and whether it is a folder (stat). */
bool fs_exists(const char *path);
bool fs_is_dir(const char *path);

#endif
