/*
 * fsutil.h: file-system steps that must not lose data: atomic replacement of a file, fsync of files
 * and folders, recursive creation and removal. Failures are user errors (exit 2) naming the path.
 */
#ifndef INFLLM_FSUTIL_H
#define INFLLM_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* mkdir -p. */
void make_dirs(const char *path);

/* Writes bytes to path.tmp, fsyncs it, renames it over path, fsyncs the folder. */
void write_file_atomic(const char *path, const void *bytes, size_t n);

/* fsync of a file or a folder. */
void fsync_path(const char *path);

/* rm -rf (silent when path does not exist). */
void remove_tree(const char *path);

/* The whole file, NUL-terminated (*len excludes the NUL). Missing file: NULL, or a user error when
 * must_exist. */
char *read_file(const char *path, size_t *len, bool must_exist);

/* Copies a file (used for tokenizer files on export); returns false when src does not exist. */
bool copy_file(const char *src, const char *dst);

#endif
