/*
 * safetensors_write.c: the atomic, streaming safetensors writer (see safetensors.h and
 * docs/FORMATS.md).
 *
 * The header is built by hand (not by cJSON) so that keys keep insertion order with
 * "__metadata__" first, integers are printed exactly, and the length is padded with spaces to a
 * multiple of 8 (8-byte aligned data section, as the reference writer does). Data are streamed in
 * insertion order, converting from fp32 through a small chunk buffer.
 */
#define _XOPEN_SOURCE 700
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "safetensors_impl.h"

#define ST_CHUNK 32768 /* elements converted per write when streaming */

struct st_item {
    char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const float *from_f32; /* (numel) fp32 source to convert, or NULL */
    const void *raw;       /* (bytes) already in dtype, or NULL */
    uint64_t bytes;
};

struct st_writer {
    int n, cap;
    struct st_item *items; /* (n), in insertion order */
    int n_meta, meta_cap;
    char **keys, **values; /* (n_meta) owned */
};

struct st_writer *st_writer_new(void) { return xcalloc(1, sizeof(struct st_writer)); }

static bool valid_utf8(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t len = st_utf8_seq((const uint8_t *)s + i, n - i);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

/* Contract violations are program errors: names must be UTF-8 (the reader rejects anything else),
 * unique and not "__metadata__"; shapes non-negative with a byte size that fits; fp32 sources only
 * for float dtypes; data present unless the tensor is empty. */
void st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype, int ndim,
                   const int64_t *shape, const float *from_f32, const void *raw) {
    CHECKF(name && valid_utf8(name), "st_writer_add: tensor name is not UTF-8");
    CHECKF(strcmp(name, "__metadata__") != 0, "st_writer_add: \"__metadata__\" is reserved");
    CHECKF((unsigned)dtype < ST_N_DTYPES, "st_writer_add: \"%s\": bad dtype %d", name, (int)dtype);
    CHECKF(ndim >= 0 && ndim <= SAFETENSORS_MAX_DIMS, "st_writer_add: \"%s\": ndim %d", name, ndim);
    CHECKF(!from_f32 || dtype == ST_F32 || dtype == ST_BF16 || dtype == ST_F16,
           "st_writer_add: \"%s\": fp32 source for an integer dtype", name);
    for (int i = 0; i < w->n; i++)
        CHECKF(strcmp(w->items[i].name, name) != 0, "st_writer_add: \"%s\" added twice", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->items = xrealloc(w->items, (size_t)w->cap * sizeof *w->items);
    }
    struct st_item *it = &w->items[w->n];
    memset(it, 0, sizeof *it);
    uint64_t prod = 1, limit = (uint64_t)INT64_MAX / st_dtype_size(dtype);
    bool zero = false;
    for (int d = 0; d < ndim; d++) {
        CHECKF(shape[d] >= 0 && (double)shape[d] <= ST_MAX_JSON_INT,
               "st_writer_add: \"%s\": shape[%d] = %lld", name, d, (long long)shape[d]);
        uint64_t dim = (uint64_t)shape[d];
        if (dim == 0) zero = true;
        else CHECKF(prod <= limit / dim, "st_writer_add: \"%s\": shape overflows", name);
        if (dim) prod *= dim;
        it->shape[d] = shape[d];
    }
    it->bytes = zero ? 0 : prod * st_dtype_size(dtype);
    CHECKF(it->bytes == 0 || from_f32 || raw, "st_writer_add: \"%s\": no data", name);
    it->name = xstrdup(name);
    it->dtype = dtype;
    it->ndim = ndim;
    it->from_f32 = from_f32;
    it->raw = from_f32 ? NULL : raw;
    w->n++;
}

void st_writer_meta(struct st_writer *w, const char *key, const char *value) {
    CHECKF(key && value && valid_utf8(key) && valid_utf8(value),
           "st_writer_meta: key or value is not UTF-8");
    for (int i = 0; i < w->n_meta; i++)
        CHECKF(strcmp(w->keys[i], key) != 0, "st_writer_meta: \"%s\" set twice", key);
    if (w->n_meta == w->meta_cap) {
        w->meta_cap = w->meta_cap ? 2 * w->meta_cap : 8;
        w->keys = xrealloc(w->keys, (size_t)w->meta_cap * sizeof(char *));
        w->values = xrealloc(w->values, (size_t)w->meta_cap * sizeof(char *));
    }
    w->keys[w->n_meta] = xstrdup(key);
    w->values[w->n_meta] = xstrdup(value);
    w->n_meta++;
}

void st_writer_free(struct st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->items[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->keys[i]);
        free(w->values[i]);
    }
    free(w->items);
    free(w->keys);
    free(w->values);
    free(w);
}

/* A growing byte string for the header. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_put(struct sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) INFLLM_PRINTF(2, 3);

static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    CHECK(k >= 0 && (size_t)k < sizeof tmp);
    sb_put(b, tmp, (size_t)k);
}

/* A JSON string: '"' and '\\' escaped, control bytes as \uXXXX, UTF-8 passed through. */
static void sb_json_string(struct sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* {"__metadata__":{...},"name":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},...} padded
 * with spaces to a multiple of 8 bytes. */
static struct sbuf header_json(const struct st_writer *w) {
    struct sbuf b = {0};
    sb_put(&b, "{", 1);
    if (w->n_meta) {
        sb_put(&b, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_put(&b, ",", 1);
            sb_json_string(&b, w->keys[i]);
            sb_put(&b, ":", 1);
            sb_json_string(&b, w->values[i]);
        }
        sb_put(&b, "}", 1);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const struct st_item *it = &w->items[i];
        if (i || w->n_meta) sb_put(&b, ",", 1);
        sb_json_string(&b, it->name);
        sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(it->dtype));
        for (int d = 0; d < it->ndim; d++)
            sb_printf(&b, "%s%lld", d ? "," : "", (long long)it->shape[d]);
        sb_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + it->bytes));
        off += it->bytes;
    }
    sb_put(&b, "}", 1);
    while (b.len % 8) sb_put(&b, " ", 1);
    return b;
}

/* Writes one tensor: raw bytes as they are, fp32 sources through a chunk buffer (ST_CHUNK
 * elements), so a tensor of any size costs no second full copy. */
static int write_item(FILE *fp, const struct st_item *it, uint16_t *chunk) {
    if (it->bytes == 0) return 0;
    if (!it->from_f32 || it->dtype == ST_F32) {
        const void *src = it->from_f32 ? (const void *)it->from_f32 : it->raw;
        return fwrite(src, 1, (size_t)it->bytes, fp) == (size_t)it->bytes ? 0 : -1;
    }
    uint64_t numel = it->bytes / 2;
    for (uint64_t at = 0; at < numel; at += ST_CHUNK) {
        size_t m = (size_t)(numel - at < ST_CHUNK ? numel - at : ST_CHUNK);
        const float *x = it->from_f32 + at;
        if (it->dtype == ST_BF16)
            for (size_t i = 0; i < m; i++) chunk[i] = st_f32_to_bf16(x[i]);
        else
            for (size_t i = 0; i < m; i++) chunk[i] = st_f32_to_f16(x[i]);
        if (fwrite(chunk, 2, m, fp) != m) return -1;
    }
    return 0;
}

/* Header length, header, data; then fflush + fsync. Returns 0 or -1 with errno set. */
static int write_stream(FILE *fp, const struct st_writer *w, const struct sbuf *h) {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h->len >> (8 * i));
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(h->p, 1, h->len, fp) != h->len) return -1;
    uint16_t *chunk = xmalloc(ST_CHUNK * sizeof *chunk);
    int rc = 0;
    for (int i = 0; i < w->n && rc == 0; i++) rc = write_item(fp, &w->items[i], chunk);
    free(chunk);
    if (rc == 0 && fflush(fp) != 0) rc = -1;
    if (rc == 0 && fsync(fileno(fp)) != 0) rc = -1;
    return rc;
}

/* fsync of the folder holding path, so the rename itself is durable. EINVAL (a file system that
 * cannot sync folders) is not an error. */
static int sync_parent(const char *path) {
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    const char *d = slash == NULL ? "." : slash == dir ? "/" : (*slash = '\0', dir);
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : 0;
    if (fd >= 0) {
        if (fsync(fd) != 0 && errno != EINVAL) rc = -1;
        close(fd);
    }
    free(dir);
    return rc;
}

int st_writer_finish(struct st_writer *w, const char *path, char *err, size_t err_len) {
    struct sbuf h = header_json(w);
    if (h.len > SAFETENSORS_MAX_HEADER) {
        free(h.p);
        return st_fail(err, err_len, path, "header of %zu bytes exceeds SAFETENSORS_MAX_HEADER",
                    h.len);
    }
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int rc = 0;
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        rc = st_fail(err, err_len, tmp, "cannot create: %s", strerror(errno));
    } else {
        int wrc = write_stream(fp, w, &h), e = errno;
        if (fclose(fp) != 0 && wrc == 0) wrc = -1, e = errno;
        if (wrc != 0) {
            unlink(tmp);
            rc = st_fail(err, err_len, tmp, "write failed: %s", strerror(e));
        } else if (rename(tmp, path) != 0) {
            e = errno;
            unlink(tmp);
            rc = st_fail(err, err_len, path, "cannot rename from %s: %s", tmp, strerror(e));
        } else if (sync_parent(path) != 0) {
            rc = st_fail(err, err_len, path, "written, but its folder cannot be synced: %s",
                      strerror(errno));
        }
    }
    free(tmp);
    free(h.p);
    return rc;
}
