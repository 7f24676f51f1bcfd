/*
 * shard.c: token shards (format in shard.h): a read-only mapping validated on open, and an atomic
 * writer.
 *
 * Legend: n tokens in the shard, i token index, V vocabulary bound.
 * Tokens are read in place from the mapping (the header is 32 bytes and the mapping is page
 * aligned, so u16/u32 loads are aligned). The format is little-endian and so is every host this
 * project targets (x86-64, aarch64); a big-endian build stops at compile time.
 */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token shards are little-endian; this host is not"
#endif

#define SHARD_WRITE_CHUNK 65536 /* tokens converted per write() call */

static uint32_t read_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t read_u64(const uint8_t *p) {
    return (uint64_t)read_u32(p) | (uint64_t)read_u32(p + 4) << 32;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

/* The 8 magic bytes as a printable quoted string (non-printable bytes as \xNN). */
static void quote_magic(char *out, size_t out_len, const uint8_t *m) {
    size_t k = 0;
    out[k++] = '"';
    for (int i = 0; i < 8 && k + 6 < out_len; i++) {
        if (m[i] >= 0x20 && m[i] < 0x7f && m[i] != '"' && m[i] != '\\')
            out[k++] = (char)m[i];
        else
            k += (size_t)snprintf(out + k, out_len - k, "\\x%02X", m[i]);
    }
    out[k++] = '"';
    out[k] = '\0';
}

/* Largest token of tokens[0, n). max is exact, so the result is the same for any thread count. */
static uint32_t max_token_u16(const uint16_t *t, int64_t n) {
    uint32_t m = 0;
#pragma omp parallel for reduction(max : m) schedule(static) if (n > (1 << 22))
    for (int64_t i = 0; i < n; i++) m = t[i] > m ? t[i] : m;
    return m;
}

static uint32_t max_token_u32(const uint32_t *t, int64_t n) {
    uint32_t m = 0;
#pragma omp parallel for reduction(max : m) schedule(static) if (n > (1 << 22))
    for (int64_t i = 0; i < n; i++) m = t[i] > m ? t[i] : m;
    return m;
}

/* First index whose token is >= bound (the caller knows one exists). */
static int64_t first_token_at_least(const struct token_shard *s, uint64_t bound) {
    for (int64_t i = 0; i < s->n_tokens; i++)
        if (token_shard_get(s, i) >= bound) return i;
    return -1;
}

/* Checks the mapped header and file size; fills the shard fields. */
static int check_header(struct token_shard *s, const char *path, char *err, size_t err_len) {
    const uint8_t *h = s->map;
    if (memcmp(h, SHARD_MAGIC, 8) != 0) {
        char q[64];
        quote_magic(q, sizeof q, h);
        return fs_error(err, err_len, path, "offset 0: bad magic %s, expected \"%s\"", q, SHARD_MAGIC);
    }
    uint32_t version = read_u32(h + 8), width = read_u32(h + 12);
    uint64_t n = read_u64(h + 16), vocab = read_u64(h + 24);
    if (version != SHARD_VERSION)
        return fs_error(err, err_len, path, "offset 8: version %u, expected %d", version, SHARD_VERSION);
    if (width != 2 && width != 4)
        return fs_error(err, err_len, path, "offset 12: token width %u bytes, expected 2 (u16) or 4 (u32)",
                    width);
    if (vocab == 0 || vocab > (uint64_t)UINT32_MAX + 1)
        return fs_error(err, err_len, path, "offset 24: vocabulary size %llu, expected 1 .. 2^32",
                    (unsigned long long)vocab);
    /* n * width + 32 must equal the file size; compare without overflowing for absurd n. */
    uint64_t payload = (uint64_t)s->file_bytes - SHARD_HEADER_BYTES;
    if (n > payload / width || n * width != payload) {
        if (n > (UINT64_MAX - SHARD_HEADER_BYTES) / width)
            return fs_error(err, err_len, path,
                        "file is %zu bytes, header says 32 + %llu tokens x %u bytes (offset 16: token "
                        "count too large)",
                        s->file_bytes, (unsigned long long)n, width);
        return fs_error(err, err_len, path,
                    "file is %zu bytes, header says 32 + %llu tokens x %u bytes = %llu", s->file_bytes,
                    (unsigned long long)n, width, (unsigned long long)(SHARD_HEADER_BYTES + n * width));
    }
    s->token_bytes = (int)width;
    s->n_tokens = (int64_t)n;
    s->vocab_size = (int64_t)vocab;
    return 0;
}

/* Every token below min(header vocabulary, model_vocab when > 0). */
static int check_tokens(const struct token_shard *s, const char *path, int64_t model_vocab, char *err,
                        size_t err_len) {
    const uint8_t *t = s->map + SHARD_HEADER_BYTES;
    madvise((void *)s->map, s->file_bytes, MADV_SEQUENTIAL);
    uint64_t mx = s->token_bytes == 2 ? max_token_u16((const uint16_t *)t, s->n_tokens)
                                      : max_token_u32((const uint32_t *)t, s->n_tokens);
    madvise((void *)s->map, s->file_bytes, MADV_NORMAL);
    if (s->n_tokens == 0) return 0;
    bool model_tighter = model_vocab > 0 && model_vocab < s->vocab_size;
    uint64_t bound = (uint64_t)(model_tighter ? model_vocab : s->vocab_size);
    if (mx < bound) return 0;
    int64_t i = first_token_at_least(s, bound);
    return fs_error(err, err_len, path, "token %lld at offset %lld is %u, not below %s %llu", (long long)i,
                (long long)(SHARD_HEADER_BYTES + i * (int64_t)s->token_bytes), token_shard_get(s, i),
                model_tighter ? "the model vocabulary (model.vocab_size)" : "the shard's vocabulary",
                (unsigned long long)bound);
}

static int64_t mtime_ns(const struct stat *st) {
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int token_shard_check(struct token_shard *s, const char *path, int64_t model_vocab, char *err,
                      size_t err_len) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY); /* a FIFO must not block */
    if (fd < 0) return fs_error(err, err_len, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fs_error(err, err_len, path, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fs_error(err, err_len, path, "not a regular file (%s)", fs_kind((unsigned)st.st_mode));
    }
    if (st.st_size < SHARD_HEADER_BYTES) {
        close(fd);
        return fs_error(err, err_len, path, "file is %lld bytes, shorter than the %d-byte header",
                    (long long)st.st_size, SHARD_HEADER_BYTES);
    }
    s->file_bytes = (size_t)st.st_size;
    void *map = mmap(NULL, s->file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    if (map == MAP_FAILED) {
        size_t bytes = s->file_bytes;
        close(fd);
        memset(s, 0, sizeof *s);
        s->fd = -1;
        return fs_error(err, err_len, path, "cannot map %zu bytes: %s", bytes, strerror(map_errno));
    }
    s->map = map;
    if (check_header(s, path, err, err_len) != 0 ||
        check_tokens(s, path, model_vocab, err, err_len) != 0) {
        munmap(map, s->file_bytes);
        close(fd);
        memset(s, 0, sizeof *s);
        s->fd = -1;
        return -1;
    }
    bool model_tighter = model_vocab > 0 && model_vocab < s->vocab_size;
    s->bound = (uint64_t)(model_tighter ? model_vocab : s->vocab_size);
    s->fd = fd;
    s->dev = (uint64_t)st.st_dev;
    s->ino = (uint64_t)st.st_ino;
    s->mtime_ns = mtime_ns(&st);
    s->path = xstrdup(path);
    return 0;
}

void token_shard_open(struct token_shard *s, const char *path, int64_t model_vocab) {
    char err[512];
    if (token_shard_check(s, path, model_vocab, err, sizeof err) != 0) die_user("%s", err);
}

void token_shard_close(struct token_shard *s) {
    if (s->map) munmap((void *)s->map, s->file_bytes);
    if (s->fd >= 0 && s->path) close(s->fd);
    free(s->path);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

uint32_t token_shard_get(const struct token_shard *s, int64_t i) {
    const uint8_t *t = s->map + SHARD_HEADER_BYTES;
    return s->token_bytes == 2 ? ((const uint16_t *)t)[i] : ((const uint32_t *)t)[i];
}

/* Where a SIGBUS inside token_shard_read jumps to; NULL outside it. Per thread: the fault is
 * delivered to the thread that touched the page. */
static _Thread_local sigjmp_buf *bus_escape;

static void on_bus(int sig) {
    if (bus_escape) siglongjmp(*bus_escape, 1);
    signal(sig, SIG_DFL); /* a fault elsewhere: the default action (core dump) */
    raise(sig);
}

/* The file behind s is still the one validated at open: same size, not written since (its
 * modification time; a write within the file system's timestamp tick of the open can pass), and
 * its path still names it. */
static int check_unchanged(const struct token_shard *s, char *err, size_t err_len) {
    struct stat now, at_path;
    if (fstat(s->fd, &now) != 0)
        return fs_error(err, err_len, s->path, "cannot stat the open shard: %s", strerror(errno));
    if ((uint64_t)now.st_size != (uint64_t)s->file_bytes)
        return fs_error(err, err_len, s->path, "is now %lld bytes, was %zu when the run opened it: the "
                    "shard was truncated or rewritten while training", (long long)now.st_size,
                    s->file_bytes);
    if (mtime_ns(&now) != s->mtime_ns)
        return fs_error(err, err_len, s->path, "was written to while training (modified %.3f s "
                    "after the time it had when the run opened it): the shard was rewritten in "
                    "place", (double)(mtime_ns(&now) - s->mtime_ns) / 1e9);
    if (stat(s->path, &at_path) != 0)
        return fs_error(err, err_len, s->path, "no longer exists (%s): the shard was removed while "
                    "training", strerror(errno));
    if ((uint64_t)at_path.st_dev != s->dev || (uint64_t)at_path.st_ino != s->ino)
        return fs_error(err, err_len, s->path, "now names another file: the shard was replaced while "
                    "training");
    return 0;
}

/* Copies and range-checks; the index of the first token >= bound, or -1. */
static int64_t copy_tokens(const struct token_shard *s, int64_t first, int64_t n, int32_t *out) {
    const uint8_t *t = s->map + SHARD_HEADER_BYTES;
    uint32_t max = 0;
    if (s->token_bytes == 2) {
        const uint16_t *p = (const uint16_t *)t + first;
        for (int64_t i = 0; i < n; i++) {
            out[i] = (int32_t)p[i];
            max = p[i] > max ? p[i] : max;
        }
    } else {
        const uint32_t *p = (const uint32_t *)t + first;
        for (int64_t i = 0; i < n; i++) {
            out[i] = (int32_t)p[i];
            max = p[i] > max ? p[i] : max;
        }
    }
    if (max < s->bound) return -1;
    for (int64_t i = 0; i < n; i++)
        if ((uint32_t)out[i] >= s->bound) return first + i;
    return -1;
}

int token_shard_read(const struct token_shard *s, int64_t first, int64_t n, int32_t *out, char *err,
                     size_t err_len) {
    CHECKF(first >= 0 && n >= 0 && first + n <= s->n_tokens, "token_shard_read(%s): [%lld, %lld)",
           s->path, (long long)first, (long long)(first + n));
    if (check_unchanged(s, err, err_len) != 0) return -1;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_bus;
    sigemptyset(&sa.sa_mask);
    sigjmp_buf env;
    volatile int64_t bad = -1;
    volatile int faulted = 0;
    sigaction(SIGBUS, &sa, &old);
    if (sigsetjmp(env, 1) == 0) {
        bus_escape = &env;
        bad = copy_tokens(s, first, n, out);
    } else {
        faulted = 1;
    }
    bus_escape = NULL;
    sigaction(SIGBUS, &old, NULL);
    if (faulted)
        return fs_error(err, err_len, s->path, "reading tokens [%lld, %lld) faulted (SIGBUS): the shard "
                    "shrank while training", (long long)first, (long long)(first + n));
    if (bad >= 0)
        return fs_error(err, err_len, s->path, "token %lld at offset %lld is %u, not below %llu: the "
                    "shard was rewritten while training", (long long)bad,
                    (long long)(SHARD_HEADER_BYTES + bad * (int64_t)s->token_bytes),
                    (unsigned)out[bad - first], (unsigned long long)s->bound);
    return 0;
}

/* write() of all `len` bytes, retrying short writes; -1 with errno on failure. */
static int write_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* Header then tokens, converted to the file's width in chunks. */
static int write_body(int fd, const uint32_t *tokens, int64_t n, int64_t vocab_size, int width) {
    uint8_t h[SHARD_HEADER_BYTES] = {0};
    memcpy(h, SHARD_MAGIC, 8);
    put_u32(h + 8, SHARD_VERSION);
    put_u32(h + 12, (uint32_t)width);
    put_u64(h + 16, (uint64_t)n);
    put_u64(h + 24, (uint64_t)vocab_size);
    if (write_all(fd, h, sizeof h) != 0) return -1;
    if (width == 4) return write_all(fd, tokens, (size_t)n * 4);
    uint16_t *buf = xmalloc(SHARD_WRITE_CHUNK * sizeof *buf);
    int rc = 0;
    for (int64_t i0 = 0; i0 < n && rc == 0; i0 += SHARD_WRITE_CHUNK) {
        int64_t m = n - i0 < SHARD_WRITE_CHUNK ? n - i0 : SHARD_WRITE_CHUNK;
        for (int64_t i = 0; i < m; i++) buf[i] = (uint16_t)tokens[i0 + i];
        rc = write_all(fd, buf, (size_t)m * sizeof *buf);
    }
    free(buf);
    return rc;
}

void token_shard_write(const char *path, const uint32_t *tokens, int64_t n, int64_t vocab_size) {
    CHECKF(n >= 0 && vocab_size > 0 && vocab_size <= (int64_t)UINT32_MAX + 1,
           "token_shard_write(%s): n %lld, vocab_size %lld", path, (long long)n, (long long)vocab_size);
    for (int64_t i = 0; i < n; i++)
        CHECKF(tokens[i] < (uint64_t)vocab_size,
               "token_shard_write(%s): token %lld is %u, vocab_size %lld", path, (long long)i,
               tokens[i], (long long)vocab_size);
    int width = vocab_size <= 65536 ? 2 : 4;
    size_t tlen = strlen(path) + 32;
    char *tmp = xmalloc(tlen);
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die_user("%s: cannot create: %s", tmp, strerror(errno));
    if (write_body(fd, tokens, n, vocab_size, width) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        die_user("%s: cannot write: %s", tmp, strerror(e));
    }
    fs_commit(fd, tmp, path);
    free(tmp);
}
