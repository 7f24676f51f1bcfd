/*
 * safetensors.c: strict safetensors reader and atomic writer (see safetensors.h).
 *
 * The reader validates everything before it hands out a tensor: the header length against the
 * file, the JSON shape of every entry, integer shapes and offsets with overflow checks, and that
 * the tensors, sorted by offset, tile the data section exactly. Nothing is read outside the
 * buffer, whatever the bytes.
 */
#define _XOPEN_SOURCE 700
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static const char *const dtype_names[] = {"F32", "BF16", "F16", "I64", "I32"};
static const size_t dtype_sizes[] = {4, 2, 2, 8, 4};

size_t st_dtype_size(enum st_dtype t) { return dtype_sizes[t]; }
const char *st_dtype_name(enum st_dtype t) { return dtype_names[t]; }

/* ---------------------------------------------------------------------------------------------- */
/* Conversions                                                                                     */

uint16_t st_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

float st_bf16_to_f32(uint16_t x) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t st_f32_to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000u, mag = u & 0x7fffffffu;
    if (mag >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u | ((mag >> 13) & 0x3ffu) : 0));
    if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: inf */
    if (mag < 0x38800000u) {                                   /* f16 subnormal or zero */
        if (mag < 0x33000000u) return (uint16_t)sign;          /* below half the smallest */
        uint32_t m = (mag & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(mag >> 23) + 13 - 13; /* exponent distance to 2^-14 */
        /* value = m * 2^(e-150); f16 subnormal unit 2^-24: q = m * 2^(e-126) */
        int e = (int)(mag >> 23);
        int rshift = 126 - e; /* 14..24 */
        (void)shift;
        uint32_t q = m >> rshift, rem = m & ((1u << rshift) - 1), half = 1u << (rshift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t v = mag - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t q = v >> 13, rem = v & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) {
        if (m == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int k = 0;
            while (!(m & 0x400u)) m <<= 1, k++;
            u = sign | ((uint32_t)(113 - k) << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);
    } else {
        u = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reader                                                                                          */

static int fail(char *err, size_t n, const char *name, const char *fmt, ...) INFLLM_PRINTF(4, 5);

static int fail(char *err, size_t n, const char *name, const char *fmt, ...) {
    int k = snprintf(err, n, "%s: ", name);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < n) vsnprintf(err + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

static void free_tensors(struct st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    f->tensors = NULL;
    f->meta_keys = f->meta_values = NULL;
    f->n = f->n_meta = 0;
}

/* A non-negative integer JSON number that fits 2^53 (exact in a double). */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static int parse_meta(struct st_file *f, const cJSON *meta, const char *name, char *err, size_t n) {
    if (!cJSON_IsObject(meta)) return fail(err, n, name, "__metadata__ is not an object");
    int count = cJSON_GetArraySize(meta);
    f->meta_keys = xcalloc((size_t)count + 1, sizeof(char *));
    f->meta_values = xcalloc((size_t)count + 1, sizeof(char *));
    const cJSON *e;
    cJSON_ArrayForEach(e, meta) {
        if (!cJSON_IsString(e))
            return fail(err, n, name, "__metadata__ value of \"%s\" is not a string", e->string);
        f->meta_keys[f->n_meta] = xstrdup(e->string);
        f->meta_values[f->n_meta] = xstrdup(e->valuestring);
        f->n_meta++;
    }
    return 0;
}

static int parse_tensor(struct st_tensor *t, const cJSON *e, uint64_t data_size, const char *name,
                        char *err, size_t n) {
    if (!cJSON_IsObject(e)) return fail(err, n, name, "tensor \"%s\" is not an object", e->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return fail(err, n, name, "tensor \"%s\": dtype missing", e->string);
    int d = 0;
    while (d < 5 && strcmp(dtype_names[d], dt->valuestring) != 0) d++;
    if (d == 5)
        return fail(err, n, name, "tensor \"%s\": dtype \"%s\" is not supported (F32, BF16, F16, "
                    "I64, I32)", e->string, dt->valuestring);
    t->dtype = (enum st_dtype)d;
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > SAFETENSORS_MAX_DIMS)
        return fail(err, n, name, "tensor \"%s\": shape is not a list of at most %d integers",
                    e->string, SAFETENSORS_MAX_DIMS);
    uint64_t numel = 1;
    t->ndim = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, sh) {
        uint64_t dim;
        if (!json_uint(s, &dim))
            return fail(err, n, name, "tensor \"%s\": shape entries must be non-negative integers",
                        e->string);
        if (dim != 0 && numel > UINT64_MAX / 16 / dim)
            return fail(err, n, name, "tensor \"%s\": shape overflows", e->string);
        numel *= dim;
        t->shape[t->ndim++] = (int64_t)dim;
    }
    if (numel > (uint64_t)INT64_MAX / 16) return fail(err, n, name, "tensor \"%s\": too large", e->string);
    t->numel = (int64_t)numel;
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) ||
        !json_uint(off->child->next, &en))
        return fail(err, n, name, "tensor \"%s\": data_offsets must be [begin, end]", e->string);
    if (en < b || en > data_size)
        return fail(err, n, name, "tensor \"%s\": data_offsets [%llu, %llu] outside the data "
                    "section of %llu bytes", e->string, (unsigned long long)b,
                    (unsigned long long)en, (unsigned long long)data_size);
    uint64_t bytes = numel * dtype_sizes[d];
    if (en - b != bytes)
        return fail(err, n, name, "tensor \"%s\": shape of %s is %llu bytes but data_offsets span "
                    "%llu", e->string, dtype_names[d], (unsigned long long)bytes,
                    (unsigned long long)(en - b));
    t->begin = b;
    t->end = en;
    t->name = xstrdup(e->string);
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const struct st_tensor *x = *(const struct st_tensor *const *)a, *y = *(const struct st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

/* Sorted by offset, the tensors must tile [0, data_size) exactly. */
static int check_tiling(struct st_file *f, const char *name, char *err, size_t n) {
    const struct st_tensor **v = xmalloc((size_t)(f->n ? f->n : 1) * sizeof *v);
    for (int i = 0; i < f->n; i++) v[i] = &f->tensors[i];
    qsort(v, (size_t)f->n, sizeof *v, cmp_begin);
    uint64_t at = 0;
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        if (v[i]->begin != at)
            rc = fail(err, n, name, "tensors overlap or leave a gap at data offset %llu (\"%s\" "
                      "starts at %llu)", (unsigned long long)at, v[i]->name,
                      (unsigned long long)v[i]->begin);
        at = v[i]->end;
    }
    if (rc == 0 && at != f->data_size)
        rc = fail(err, n, name, "data section is %llu bytes but tensors end at %llu",
                  (unsigned long long)f->data_size, (unsigned long long)at);
    free(v);
    return rc;
}

int st_parse(struct st_file *f, const char *name, const uint8_t *buf, size_t size, char *err,
             size_t err_len) {
    memset(f, 0, sizeof *f);
    if (size < 8) return fail(err, err_len, name, "file is %zu bytes, shorter than the 8-byte header length", size);
    uint64_t H = 0;
    for (int i = 7; i >= 0; i--) H = (H << 8) | buf[i];
    if (H > SAFETENSORS_MAX_HEADER)
        return fail(err, err_len, name, "header length %llu exceeds the limit of %llu bytes",
                    (unsigned long long)H, (unsigned long long)SAFETENSORS_MAX_HEADER);
    if (H > size - 8)
        return fail(err, err_len, name, "header length %llu exceeds the file size %zu",
                    (unsigned long long)H, size);
    char *text = xmalloc((size_t)H + 1);
    memcpy(text, buf + 8, (size_t)H);
    text[H] = '\0';
    cJSON *root = cJSON_ParseWithLength(text, (size_t)H);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(err, err_len, name, "header is not a JSON object");
    }
    f->data = buf + 8 + H;
    f->data_size = size - 8 - H;
    f->map = buf;
    f->size = size;
    int count = cJSON_GetArraySize(root);
    f->tensors = xcalloc((size_t)count + 1, sizeof *f->tensors);
    int rc = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        for (const cJSON *x = e->next; x && rc == 0; x = x->next)
            if (strcmp(x->string, e->string) == 0)
                rc = fail(err, err_len, name, "key \"%s\" appears twice", e->string);
        if (rc) break;
        if (strcmp(e->string, "__metadata__") == 0) {
            rc = parse_meta(f, e, name, err, err_len);
        } else {
            rc = parse_tensor(&f->tensors[f->n], e, f->data_size, name, err, err_len);
            if (rc == 0) f->n++;
        }
        if (rc) break;
    }
    cJSON_Delete(root);
    if (rc == 0) rc = check_tiling(f, name, err, err_len);
    if (rc) {
        free_tensors(f);
        memset(f, 0, sizeof *f);
    }
    return rc;
}

int st_open(struct st_file *f, const char *path, char *err, size_t err_len) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(err, err_len, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return fail(err, err_len, path, "cannot stat: %s", strerror(errno));
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *map = NULL;
    if (size > 0) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return fail(err, err_len, path, "cannot map: %s", strerror(errno));
        }
        map = m;
    }
    close(fd);
    int rc = st_parse(f, path, map ? map : (const uint8_t *)"", size, err, err_len);
    if (rc) {
        if (map) munmap((void *)map, size);
        return rc;
    }
    f->path = xstrdup(path);
    return 0;
}

void st_close(struct st_file *f) {
    free_tensors(f);
    if (f->path && f->map && f->size) munmap((void *)f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const struct st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

const void *st_data(const struct st_file *f, const struct st_tensor *t) {
    return f->data + t->begin;
}

void st_read_f32(const struct st_file *f, const struct st_tensor *t, float *out) {
    const uint8_t *p = f->data + t->begin;
    switch (t->dtype) {
    case ST_F32: memcpy(out, p, (size_t)t->numel * 4); return;
    case ST_BF16:
        for (int64_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_bf16_to_f32(h);
        }
        return;
    case ST_F16:
        for (int64_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_f16_to_f32(h);
        }
        return;
    default: CHECKF(0, "st_read_f32: tensor \"%s\" is %s, not a float dtype", t->name, dtype_names[t->dtype]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Writer                                                                                          */

struct st_item {
    char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const float *from_f32;
    const void *raw;
    uint64_t bytes;
};

struct st_writer {
    int n, cap;
    struct st_item *items;
    int n_meta;
    char **keys, **values;
};

struct st_writer *st_writer_new(void) { return xcalloc(1, sizeof(struct st_writer)); }

void st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype, int ndim,
                   const int64_t *shape, const float *from_f32, const void *raw) {
    CHECK(ndim >= 0 && ndim <= SAFETENSORS_MAX_DIMS);
    CHECK(!from_f32 || dtype == ST_F32 || dtype == ST_BF16 || dtype == ST_F16);
    if (w->n == w->cap) w->items = xrealloc(w->items, (size_t)(w->cap = w->cap ? 2 * w->cap : 16) * sizeof *w->items);
    struct st_item *it = &w->items[w->n++];
    memset(it, 0, sizeof *it);
    it->name = xstrdup(name);
    it->dtype = dtype;
    it->ndim = ndim;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (uint64_t)(it->shape[i] = shape[i]);
    it->bytes = numel * dtype_sizes[dtype];
    it->from_f32 = from_f32;
    it->raw = raw;
}

void st_writer_meta(struct st_writer *w, const char *key, const char *value) {
    w->keys = xrealloc(w->keys, (size_t)(w->n_meta + 1) * sizeof(char *));
    w->values = xrealloc(w->values, (size_t)(w->n_meta + 1) * sizeof(char *));
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

static char *header_json(const struct st_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    if (w->n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++) cJSON_AddStringToObject(m, w->keys[i], w->values[i]);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const struct st_item *it = &w->items[i];
        cJSON *t = cJSON_AddObjectToObject(root, it->name);
        cJSON_AddStringToObject(t, "dtype", dtype_names[it->dtype]);
        cJSON *sh = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < it->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)it->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + it->bytes)));
        off += it->bytes;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t n = strlen(text), padded = (n + 7) / 8 * 8; /* 8-byte aligned data, space padded */
    text = xrealloc(text, padded + 1);
    memset(text + n, ' ', padded - n);
    text[padded] = '\0';
    *len = padded;
    return text;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes one item, converting from fp32 in bounded chunks (no second full copy). */
static int write_item(int fd, const struct st_item *it) {
    if (!it->from_f32 || it->dtype == ST_F32)
        return write_all(fd, it->from_f32 ? (const void *)it->from_f32 : it->raw, it->bytes);
    enum { CHUNK = 1 << 16 };
    static __thread uint16_t buf[CHUNK];
    uint64_t numel = it->bytes / 2;
    for (uint64_t off = 0; off < numel; off += CHUNK) {
        uint64_t m = numel - off < CHUNK ? numel - off : CHUNK;
        for (uint64_t i = 0; i < m; i++)
            buf[i] = it->dtype == ST_BF16 ? st_f32_to_bf16(it->from_f32[off + i])
                                          : st_f32_to_f16(it->from_f32[off + i]);
        if (write_all(fd, buf, (size_t)m * 2)) return -1;
    }
    return 0;
}

int st_writer_finish(struct st_writer *w, const char *path, char *err, size_t err_len) {
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return fail(err, err_len, tmp, "cannot create: %s", strerror(errno));
    size_t hlen;
    char *header = header_json(w, &hlen);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int rc = write_all(fd, len8, 8) || write_all(fd, header, hlen);
    free(header);
    for (int i = 0; i < w->n && !rc; i++) rc = write_item(fd, &w->items[i]);
    if (!rc) rc = fsync(fd);
    close(fd);
    if (rc) {
        unlink(tmp);
        return fail(err, err_len, tmp, "write failed: %s", strerror(errno));
    }
    if (rename(tmp, path) != 0) return fail(err, err_len, path, "cannot rename from %s: %s", tmp, strerror(errno));
    /* The rename is durable once the folder is synced. */
    char dir[4400];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0'; else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}
