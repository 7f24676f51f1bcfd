/*
 * fsutil.c: durable file-system steps, bounded reads, file integrity and the run lock (see
 * fsutil.h).
 */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE /* flock */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define FS_CHUNK ((size_t)8 << 20) /* bytes per read() when copying or hashing */

int fs_verror(char *err, size_t n, const char *path, const char *fmt, va_list ap) {
    if (!err || n == 0) return -1;
    int k = snprintf(err, n, "%s: ", path);
    if (k >= 0 && (size_t)k < n) vsnprintf(err + k, n - (size_t)k, fmt, ap);
    return -1;
}

int fs_error(char *err, size_t n, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fs_verror(err, n, path, fmt, ap);
    va_end(ap);
    return -1;
}

const char *fs_kind(unsigned mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a regular file";
}

bool fs_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

bool fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void make_dirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) die_user("%s: bad folder path", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            die_user("%s: cannot create folder: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0) die_user("%s: cannot create folder: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        die_user("%s: is %s, expected a folder", path, fs_kind((unsigned)st.st_mode));
}

void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die_user("%s: cannot open to sync: %s", path, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) die_user("%s: fsync failed: %s", path, strerror(errno));
    close(fd);
}

/* The folder part of path ("." when none). */
static void parent_of(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

/* write() of all n bytes, retrying short writes and EINTR; -1 with errno on failure. */
static int write_all(int fd, const void *bytes, size_t n) {
    const char *p = bytes;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void fs_commit(int fd, const char *tmp, const char *path) {
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        die_user("%s: fsync failed: %s", tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        die_user("%s: write failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        die_user("%s: cannot rename to %s: %s", tmp, path, strerror(e));
    }
    char dir[4200];
    parent_of(path, dir, sizeof dir);
    fsync_path(dir);
}

void write_file_atomic(const char *path, const void *bytes, size_t n) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        die_user("%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) die_user("%s: cannot create: %s", tmp, strerror(errno));
    if (write_all(fd, bytes, n) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        die_user("%s: write failed: %s", tmp, strerror(e));
    }
    fs_commit(fd, tmp, path);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        die_user("%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Opens path for reading without blocking (a FIFO opens at once) and checks it is a regular file:
 * the descriptor, or -1 (1 left in *missing when it does not exist) with the reason in err. */
static int open_regular(const char *path, struct stat *st, int *missing, char *err, size_t n) {
    *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        *missing = errno == ENOENT;
        return fs_error(err, n, path, "cannot read: %s", strerror(errno));
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return fs_error(err, n, path, "cannot read: %s", strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return fs_error(err, n, path, "is %s, expected a regular file",
                       fs_kind((unsigned)st->st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int fs_read(const char *path, size_t max, char **out, size_t *len, char *err, size_t err_len) {
    struct stat st;
    int missing = 0;
    int fd = open_regular(path, &st, &missing, err, err_len);
    if (fd < 0) return missing ? 1 : -1;
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return fs_error(err, err_len, path, "%lld bytes, more than the %zu%s this file may have",
                       (long long)st.st_size, max >= (1 << 20) ? max >> 20 : max,
                       max >= (1 << 20) ? " MiB" : " bytes");
    }
    /* The size may change under us (or be 0 for /proc files): read at most max + 1 bytes. */
    size_t cap = (size_t)st.st_size + 1 > 4096 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap > max) break;
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return fs_error(err, err_len, path, "read failed: %s", strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max) {
        free(buf);
        return fs_error(err, err_len, path, "more than the %zu%s this file may have",
                       max >= (1 << 20) ? max >> 20 : max, max >= (1 << 20) ? " MiB" : " bytes");
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return 0;
}

char *read_file(const char *path, size_t *len, bool must_exist) {
    char err[4400], *text = NULL;
    int rc = fs_read(path, FS_TEXT_MAX, &text, len, err, sizeof err);
    if (rc == 1 && !must_exist) {
        errno = ENOENT;
        return NULL;
    }
    if (rc != 0) die_user("%s", err);
    return text;
}

bool copy_file(const char *src, const char *dst) {
    struct stat st;
    int missing = 0;
    char err[4400], tmp[4200];
    int in = open_regular(src, &st, &missing, err, sizeof err);
    if (in < 0 && missing) return false;
    if (in < 0) die_user("%s", err);
    if (snprintf(tmp, sizeof tmp, "%s.tmp", dst) >= (int)sizeof tmp) die_user("%s: path too long", dst);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (out < 0) die_user("%s: cannot create: %s", tmp, strerror(errno));
    char *buf = xmalloc(FS_CHUNK);
    for (;;) {
        ssize_t r = read(in, buf, FS_CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) break;
        if (r < 0 || write_all(out, buf, (size_t)r) != 0) {
            int e = errno;
            close(out);
            unlink(tmp);
            die_user("%s: copy to %s failed: %s", src, dst, strerror(e));
        }
    }
    free(buf);
    close(in);
    fs_commit(out, tmp, dst);
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* xxHash64: 32-byte stripes through four multiply-rotate lanes, merged, then the tail bytes, then */
/* a final avalanche. Reads are little-endian (memcpy, so any alignment).                          */

#define XXH_P1 0x9E3779B185EBCA87ull
#define XXH_P2 0xC2B2AE3D27D4EB4Full
#define XXH_P3 0x165667B19E3779F9ull
#define XXH_P4 0x85EBCA77C2B2AE63ull
#define XXH_P5 0x27D4EB2F165667C5ull

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "xxh64 here reads little-endian words; this host is not"
#endif

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input) {
    acc += input * XXH_P2;
    return rotl64(acc, 31) * XXH_P1;
}

static inline uint64_t xxh_merge(uint64_t h, uint64_t v) {
    h ^= xxh_round(0, v);
    return h * XXH_P1 + XXH_P4;
}

/* Whole stripes of p[0, n) into the lanes; returns the bytes consumed (a multiple of 32). */
static size_t xxh_stripes(uint64_t v[4], const uint8_t *p, size_t n) {
    uint64_t a = v[0], b = v[1], c = v[2], d = v[3];
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a = xxh_round(a, load64(p + i));
        b = xxh_round(b, load64(p + i + 8));
        c = xxh_round(c, load64(p + i + 16));
        d = xxh_round(d, load64(p + i + 24));
    }
    v[0] = a, v[1] = b, v[2] = c, v[3] = d;
    return i;
}

void xxh64_init(struct xxh64 *h, uint64_t seed) {
    memset(h, 0, sizeof *h);
    h->seed = seed;
    h->v[0] = seed + XXH_P1 + XXH_P2;
    h->v[1] = seed + XXH_P2;
    h->v[2] = seed;
    h->v[3] = seed - XXH_P1;
}

void xxh64_update(struct xxh64 *h, const void *data, size_t n) {
    const uint8_t *p = data;
    h->total += n;
    if (h->buf_len) {
        size_t take = 32 - h->buf_len < n ? 32 - h->buf_len : n;
        memcpy(h->buf + h->buf_len, p, take);
        h->buf_len += take;
        p += take;
        n -= take;
        if (h->buf_len < 32) return;
        xxh_stripes(h->v, h->buf, 32);
        h->buf_len = 0;
    }
    size_t used = xxh_stripes(h->v, p, n);
    memcpy(h->buf, p + used, n - used);
    h->buf_len = n - used;
}

uint64_t xxh64_digest(const struct xxh64 *h) {
    uint64_t acc;
    if (h->total >= 32) {
        const uint64_t *v = h->v;
        acc = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
        for (int i = 0; i < 4; i++) acc = xxh_merge(acc, v[i]);
    } else {
        acc = h->seed + XXH_P5;
    }
    acc += h->total;
    const uint8_t *p = h->buf;
    size_t n = h->buf_len;
    for (; n >= 8; p += 8, n -= 8) acc = rotl64(acc ^ xxh_round(0, load64(p)), 27) * XXH_P1 + XXH_P4;
    if (n >= 4) {
        acc = rotl64(acc ^ (uint64_t)load32(p) * XXH_P1, 23) * XXH_P2 + XXH_P3;
        p += 4;
        n -= 4;
    }
    for (; n > 0; p++, n--) acc = rotl64(acc ^ (uint64_t)*p * XXH_P5, 11) * XXH_P1;
    acc ^= acc >> 33;
    acc *= XXH_P2;
    acc ^= acc >> 29;
    acc *= XXH_P3;
    acc ^= acc >> 32;
    return acc;
}

uint64_t xxh64(const void *p, size_t n, uint64_t seed) {
    struct xxh64 h;
    xxh64_init(&h, seed);
    xxh64_update(&h, p, n);
    return xxh64_digest(&h);
}

int fs_hash_file(const char *path, uint64_t *hash, uint64_t *bytes, char *err, size_t err_len) {
    struct stat st;
    int missing = 0;
    int fd = open_regular(path, &st, &missing, err, err_len);
    if (fd < 0) return -1;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    char *buf = xmalloc(FS_CHUNK);
    struct xxh64 h;
    xxh64_init(&h, 0);
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf, FS_CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = fs_error(err, err_len, path, "read failed: %s", strerror(errno));
        if (r <= 0) break;
        xxh64_update(&h, buf, (size_t)r);
    }
    free(buf);
    close(fd);
    *hash = xxh64_digest(&h);
    *bytes = h.total;
    return rc;
}

int fs_lock(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) die_user("%s: cannot open the run's lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            char holder[64] = "";
            ssize_t r = pread(fd, holder, sizeof holder - 1, 0);
            holder[r > 0 ? r : 0] = '\0';
            holder[strcspn(holder, "\r\n")] = '\0';
            die_user("%s: the run folder is in use by another infllm-train (%s); two runs must not "
                     "share a run_dir", path, holder[0] ? holder : "pid unknown");
        }
        fprintf(stderr, "warning: %s: cannot lock (%s): nothing stops a second run from using this "
                "run_dir at the same time\n", path, strerror(e));
        close(fd);
        return -1;
    }
    char who[128];
    char host[64] = "?";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    int n = snprintf(who, sizeof who, "pid %ld on %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, who, (size_t)n, 0) != n) {
        /* the lock holds without the note; the note only improves the message */
    }
    return fd;
}
