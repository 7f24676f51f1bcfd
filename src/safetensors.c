/*
 * safetensors.c: the dtypes and their conversions, and the strict safetensors reader (see
 * safetensors.h and docs/FORMATS.md; the writer is safetensors_write.c).
 *
 * Reader: the header length is checked against SAFETENSORS_MAX_HEADER and the file size before
 * anything is copied; the header bytes must be UTF-8 JSON without raw control bytes; the JSON is
 * parsed by cJSON from a NUL-terminated copy and must be one object with nothing after it. Every
 * entry is validated (dtype, integer shape and offsets, checked products), names must be unique,
 * and the tensors sorted by offset must tile the data section exactly. Only then does the caller get
 * a tensor, so st_data / st_read_f32 never leave the buffer. Errors are one line:
 * "<file>: <reason>", naming the tensor or the byte offset.
 *
 * Legend: H header length in bytes; numel elements of a tensor; begin/end byte offsets in the data
 * section.
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
#include "fsutil.h"
#include "safetensors_impl.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif


static const char *const dtype_names[ST_N_DTYPES] = {"F32", "BF16", "F16", "I64", "I32"};
static const size_t dtype_sizes[ST_N_DTYPES] = {4, 2, 2, 8, 4};

size_t st_dtype_size(enum st_dtype t) {
    CHECK((unsigned)t < ST_N_DTYPES);
    return dtype_sizes[t];
}

const char *st_dtype_name(enum st_dtype t) {
    CHECK((unsigned)t < ST_N_DTYPES);
    return dtype_names[t];
}

/* ---------------------------------------------------------------------------------------------- */
/* Conversions                                                                                     */

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Keeps the upper 16 bits rounded to nearest even. A NaN keeps its sign and top payload bits and
 * gets the quiet bit, so no NaN payload can round into an infinity. Overflow rounds to inf. */
uint16_t st_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float st_bf16_to_f32(uint16_t x) { return bits_f32((uint32_t)x << 16); }

/* Rounds q + rem / 2^shift to nearest even (shift >= 1). */
static uint32_t round_shift(uint32_t v, int shift) {
    uint32_t q = v >> shift, rem = v & ((1u << shift) - 1u), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1u)));
}

/* f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Magnitudes from 65520 (half-way past the
 * largest finite 65504, which has an odd mantissa) round to inf; below 2^-14 the result is
 * subnormal in units of 2^-24, and at or below 2^-25 (the tie rounds to the even 0) it is zero. */
uint16_t st_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint32_t sign = (u >> 16) & 0x8000u, mag = u & 0x7fffffffu;
    if (mag > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((mag >> 13) & 0x3ffu)); /* NaN */
    if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);    /* inf, or rounds to it */
    if (mag >= 0x38800000u) /* normal: rebias the exponent 127 -> 15, round 13 bits away */
        return (uint16_t)(sign | round_shift(mag - 0x38000000u, 13));
    if (mag <= 0x33000000u) return (uint16_t)sign; /* at most 2^-25: zero */
    /* value = m * 2^(e - 150) with the implicit bit; in units of 2^-24: m >> (126 - e), 14..24. */
    uint32_t e = mag >> 23, m = (mag & 0x7fffffu) | 0x800000u;
    return (uint16_t)(sign | round_shift(m, (int)(126 - e)));
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13)); /* inf, NaN (payload kept) */
    if (e != 0) return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return bits_f32(sign);
    uint32_t k = 0; /* subnormal m * 2^-24: shift until the implicit bit (bit 10) is set */
    while (!(m & 0x400u)) {
        m <<= 1;
        k++;
    }
    return bits_f32(sign | ((113u - k) << 23) | ((m & 0x3ffu) << 13));
}

/* ---------------------------------------------------------------------------------------------- */
/* Reader: error text                                                                              */

/* "<name>: <reason>" into err; returns -1 (safetensors_impl.h). */
int st_fail(char *err, size_t n, const char *name, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fs_verror(err, n, name, fmt, ap);
    va_end(ap);
    return -1;
}

/* A key as it may appear in a one-line message: bytes below 0x20 and '"' and '\\' escaped, cut
 * after 120 bytes. */
static const char *printable(char out[160], const char *s) {
    size_t o = 0;
    for (size_t i = 0; s[i] && o < 150; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 120) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, 160 - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

/* "[2, 3, 4]" */
static const char *shape_text(char out[200], const int64_t *shape, int ndim) {
    size_t o = 0;
    out[o++] = '[';
    for (int d = 0; d < ndim; d++)
        o += (size_t)snprintf(out + o, 200 - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
    snprintf(out + o, 200 - o, "]");
    return out;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reader: header bytes and JSON                                                                   */

/* UTF-8 sequence length (safetensors_impl.h). */
size_t st_utf8_seq(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (len == 0 || c > 0xf4 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && p[1] < 0xa0) return 0; /* overlong 3-byte */
    if (c == 0xed && p[1] > 0x9f) return 0; /* surrogate */
    if (c == 0xf0 && p[1] < 0x90) return 0; /* overlong 4-byte */
    if (c == 0xf4 && p[1] > 0x8f) return 0; /* above U+10FFFF */
    return len;
}

/* JSON text may hold no raw control bytes but tab, newline and carriage return between tokens,
 * none at all inside strings, and must be UTF-8; the header must open with '{' (as every writer
 * makes it). An escaped NUL (\u0000) is refused too: cJSON would silently cut the name or value
 * there. Strings are tracked lexically (quotes and escapes), before any parsing. */
static int check_header_bytes(const uint8_t *h, uint64_t H, const char *name, char *err,
                              size_t n) {
    if (H == 0 || h[0] != '{')
        return st_fail(err, n, name, "header is not a JSON object (byte offset 8 is not '{')");
    bool in_string = false;
    for (uint64_t i = 0; i < H;) {
        uint8_t c = h[i];
        if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r')))
            return st_fail(err, n, name, "header has control byte 0x%02x at byte offset %llu%s", c,
                        (unsigned long long)(8 + i), in_string ? " (inside a string)" : "");
        if (in_string && c == '\\') {
            if (H - i >= 6 && h[i + 1] == 'u' && memcmp(h + i + 2, "0000", 4) == 0)
                return st_fail(err, n, name, "header has an escaped NUL (\\u0000) at byte offset "
                            "%llu", (unsigned long long)(8 + i));
            if (H - i >= 2 && h[i + 1] >= 0x20 && h[i + 1] < 0x80) {
                i += 2; /* the escaped byte neither ends the string nor starts an escape */
                continue;
            }
        }
        if (c == '"') in_string = !in_string;
        size_t len = st_utf8_seq(h + i, (size_t)(H - i));
        if (len == 0)
            return st_fail(err, n, name, "header is not valid UTF-8 at byte offset %llu",
                        (unsigned long long)(8 + i));
        i += len;
    }
    return 0;
}

/* Parses the H header bytes into a cJSON object; nothing but whitespace may follow it. */
static int parse_json(cJSON **root, const uint8_t *h, uint64_t H, const char *name, char *err,
                      size_t n) {
    char *text = xmalloc((size_t)H + 1);
    memcpy(text, h, (size_t)H);
    text[H] = '\0';
    const char *end = NULL;
    /* Length H + 1 includes the NUL, which require_null_terminated expects after the value. */
    *root = cJSON_ParseWithLengthOpts(text, (size_t)H + 1, &end, 1);
    size_t at = end ? (size_t)(end - text) : 0;
    free(text);
    if (!*root)
        return st_fail(err, n, name, "header is not valid JSON (error near byte offset %zu)", 8 + at);
    if (!cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        return st_fail(err, n, name, "header is not a JSON object");
    }
    return 0;
}

/* cJSON hands numbers over as doubles, so "2.0" or "2e0" would pass as the integer 2; the
 * reference reader rejects them, and so do we: outside strings, a digit followed by '.', 'e' or 'E'
 * is a number with a fraction or an exponent. Run on JSON that cJSON accepted. */
static int check_integer_spelling(const uint8_t *h, uint64_t H, const char *name, char *err,
                                  size_t n) {
    bool in_string = false;
    for (uint64_t i = 0; i + 1 < H; i++) {
        uint8_t c = h[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c >= '0' && c <= '9' && (h[i + 1] == '.' || h[i + 1] == 'e' || h[i + 1] == 'E')) {
            return st_fail(err, n, name, "header has a number with a fraction or an exponent at byte "
                        "offset %llu (shapes and offsets are plain integers)",
                        (unsigned long long)(8 + i));
        }
    }
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Rejects an object whose keys repeat (cJSON keeps both); O(k log k) for k keys. `what` names the
 * object in the message ("header", "tensor \"x\"", "__metadata__"). */
static int check_unique_keys(const cJSON *obj, const char *what, const char *name, char *err,
                             size_t n) {
    int count = cJSON_GetArraySize(obj);
    if (count < 2) return 0;
    const char **keys = xmalloc((size_t)count * sizeof *keys);
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, obj) keys[k++] = e->string;
    qsort(keys, (size_t)k, sizeof *keys, cmp_str_ptr);
    int rc = 0;
    for (int i = 1; i < k && rc == 0; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            char pk[160];
            rc = st_fail(err, n, name, "%s: key \"%s\" appears twice", what, printable(pk, keys[i]));
        }
    }
    free(keys);
    return rc;
}

/* A JSON number that is a non-negative integer of at most 2^53 (exact as a double). */
static bool json_count(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_JSON_INT)) return false; /* also rejects NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return false;
    *out = u;
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reader: entries                                                                                 */

static void free_entries(struct st_file *f) {
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

static int parse_meta(struct st_file *f, const cJSON *meta, const char *name, char *err,
                      size_t n) {
    if (!cJSON_IsObject(meta)) return st_fail(err, n, name, "__metadata__ is not an object");
    if (check_unique_keys(meta, "__metadata__", name, err, n)) return -1;
    int count = cJSON_GetArraySize(meta);
    f->meta_keys = xcalloc((size_t)count + 1, sizeof(char *));
    f->meta_values = xcalloc((size_t)count + 1, sizeof(char *));
    const cJSON *e;
    cJSON_ArrayForEach(e, meta) {
        char pk[160];
        if (!cJSON_IsString(e))
            return st_fail(err, n, name, "__metadata__ value of \"%s\" is not a string",
                        printable(pk, e->string));
        f->meta_keys[f->n_meta] = xstrdup(e->string);
        f->meta_values[f->n_meta] = xstrdup(e->valuestring);
        f->n_meta++;
    }
    return 0;
}

/* Reason-prefix for one tensor's messages. */
struct entry_ctx {
    const char *file;
    char tensor[160]; /* printable name */
    char *err;
    size_t n;
};

static int entry_fail(const struct entry_ctx *c, const char *fmt, ...) INFLLM_PRINTF(2, 3);

static int entry_fail(const struct entry_ctx *c, const char *fmt, ...) {
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return st_fail(c->err, c->n, c->file, "tensor \"%s\": %s", c->tensor, reason);
}

/* The three keys of a tensor entry, each present once, nothing else. */
static int entry_keys(const struct entry_ctx *c, const cJSON *e, const cJSON *out[3]) {
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    out[0] = out[1] = out[2] = NULL;
    const cJSON *k;
    cJSON_ArrayForEach(k, e) {
        int i = 0;
        while (i < 3 && strcmp(k->string, keys[i]) != 0) i++;
        char pk[160];
        if (i == 3)
            return entry_fail(c, "unknown key \"%s\" (expected dtype, shape, data_offsets)",
                              printable(pk, k->string));
        if (out[i]) return entry_fail(c, "key \"%s\" appears twice", keys[i]);
        out[i] = k;
    }
    for (int i = 0; i < 3; i++)
        if (!out[i]) return entry_fail(c, "missing \"%s\"", keys[i]);
    return 0;
}

static int entry_dtype(const struct entry_ctx *c, const cJSON *v, enum st_dtype *out) {
    if (!cJSON_IsString(v)) return entry_fail(c, "dtype is not a string");
    for (int d = 0; d < ST_N_DTYPES; d++) {
        if (strcmp(v->valuestring, dtype_names[d]) == 0) {
            *out = (enum st_dtype)d;
            return 0;
        }
    }
    char pv[160];
    return entry_fail(c, "dtype \"%s\" is not supported (expected F32, BF16, F16, I64 or I32)",
                      printable(pv, v->valuestring));
}

/* Shape entries: non-negative integers <= 2^53; the product of the non-zero entries (so every
 * partial product and stride too) and the byte size must fit int64. A 0 entry gives 0 elements,
 * no entry (a scalar) gives 1. */
static int entry_shape(const struct entry_ctx *c, const cJSON *v, struct st_tensor *t) {
    if (!cJSON_IsArray(v)) return entry_fail(c, "shape is not a list of integers");
    int ndim = cJSON_GetArraySize(v);
    if (ndim > SAFETENSORS_MAX_DIMS)
        return entry_fail(c, "shape has %d dimensions, more than %d", ndim, SAFETENSORS_MAX_DIMS);
    uint64_t prod = 1, limit = (uint64_t)INT64_MAX / dtype_sizes[t->dtype];
    bool zero = false;
    int d = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        uint64_t dim;
        if (!json_count(s, &dim)) {
            if (cJSON_IsNumber(s))
                return entry_fail(c, "shape entry %d is %.17g, not a non-negative integer <= 2^53",
                                  d, s->valuedouble);
            return entry_fail(c, "shape entry %d is not a number", d);
        }
        if (dim == 0) zero = true;
        else if (prod > limit / dim)
            return entry_fail(c, "shape overflows: its byte size does not fit 63 bits");
        else prod *= dim;
        t->shape[d++] = (int64_t)dim;
    }
    t->ndim = ndim;
    t->numel = zero ? 0 : (int64_t)prod;
    return 0;
}

static int entry_offsets(const struct entry_ctx *c, const cJSON *v, uint64_t data_size,
                         struct st_tensor *t) {
    uint64_t b, e;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return entry_fail(c, "data_offsets is not a list [begin, end]");
    if (!json_count(v->child, &b) || !json_count(v->child->next, &e))
        return entry_fail(c, "data_offsets entries must be non-negative integers <= 2^53");
    if (e < b)
        return entry_fail(c, "data_offsets [%llu, %llu] end before they begin",
                          (unsigned long long)b, (unsigned long long)e);
    uint64_t bytes = (uint64_t)t->numel * dtype_sizes[t->dtype];
    char st[200];
    if (e - b != bytes)
        return entry_fail(c, "shape %s of %s is %llu bytes but data_offsets span %llu",
                          shape_text(st, t->shape, t->ndim), dtype_names[t->dtype],
                          (unsigned long long)bytes, (unsigned long long)(e - b));
    if (e > data_size)
        return entry_fail(c, "data_offsets [%llu, %llu] end past the data section of %llu bytes",
                          (unsigned long long)b, (unsigned long long)e,
                          (unsigned long long)data_size);
    t->begin = b;
    t->end = e;
    return 0;
}

static int parse_tensor(struct st_tensor *t, const cJSON *e, uint64_t data_size, const char *name,
                        char *err, size_t n) {
    struct entry_ctx c = {.file = name, .err = err, .n = n};
    printable(c.tensor, e->string);
    if (!cJSON_IsObject(e)) return entry_fail(&c, "entry is not an object");
    const cJSON *v[3];
    if (entry_keys(&c, e, v) || entry_dtype(&c, v[0], &t->dtype) || entry_shape(&c, v[1], t) ||
        entry_offsets(&c, v[2], data_size, t))
        return -1;
    t->name = xstrdup(e->string);
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const struct st_tensor *x = *(const struct st_tensor *const *)a;
    const struct st_tensor *y = *(const struct st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Sorted by (begin, end), each tensor must start where the previous one ended, from 0 to the end
 * of the data section: no overlap, no gap, no trailing bytes. */
static int check_tiling(const struct st_file *f, const char *name, char *err, size_t n) {
    const struct st_tensor **v = xmalloc((size_t)(f->n ? f->n : 1) * sizeof *v);
    for (int i = 0; i < f->n; i++) v[i] = &f->tensors[i];
    qsort(v, (size_t)f->n, sizeof *v, cmp_begin);
    uint64_t at = 0;
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        char pa[160], pb[160];
        if (v[i]->begin != at && i == 0)
            rc = st_fail(err, n, name, "tensors overlap or leave a gap at data offset 0 (the first "
                      "tensor, \"%s\", starts at %llu)", printable(pb, v[i]->name),
                      (unsigned long long)v[i]->begin);
        else if (v[i]->begin != at)
            rc = st_fail(err, n, name, "tensors overlap or leave a gap at data offset %llu (\"%s\" "
                      "ends at %llu, \"%s\" starts at %llu)", (unsigned long long)at,
                      printable(pa, v[i - 1]->name), (unsigned long long)at,
                      printable(pb, v[i]->name), (unsigned long long)v[i]->begin);
        at = v[i]->end;
    }
    if (rc == 0 && at != f->data_size)
        rc = st_fail(err, n, name, "data section is %llu bytes but tensors end at %llu",
                  (unsigned long long)f->data_size, (unsigned long long)at);
    free(v);
    return rc;
}

/* Every entry of the root object: "__metadata__" or a tensor. */
static int parse_entries(struct st_file *f, const cJSON *root, const char *name, char *err,
                         size_t n) {
    if (check_unique_keys(root, "header", name, err, n)) return -1;
    f->tensors = xcalloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *f->tensors);
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (parse_meta(f, e, name, err, n)) return -1;
        } else {
            if (parse_tensor(&f->tensors[f->n], e, f->data_size, name, err, n)) return -1;
            f->n++;
        }
    }
    return check_tiling(f, name, err, n);
}

int st_parse(struct st_file *f, const char *name, const uint8_t *buf, size_t size, char *err,
             size_t err_len) {
    memset(f, 0, sizeof *f);
    if (!name) name = "(buffer)";
    if (size < 8)
        return st_fail(err, err_len, name, "file is %zu bytes, shorter than the 8-byte header length",
                    size);
    uint64_t H = 0;
    for (int i = 7; i >= 0; i--) H = (H << 8) | buf[i];
    if (H > SAFETENSORS_MAX_HEADER)
        return st_fail(err, err_len, name, "header length %llu exceeds SAFETENSORS_MAX_HEADER (%llu "
                    "bytes)", (unsigned long long)H, (unsigned long long)SAFETENSORS_MAX_HEADER);
    if (H > (uint64_t)size - 8)
        return st_fail(err, err_len, name, "header length %llu exceeds the file size %zu",
                    (unsigned long long)H, size);
    cJSON *root = NULL;
    if (check_header_bytes(buf + 8, H, name, err, err_len) ||
        parse_json(&root, buf + 8, H, name, err, err_len))
        return -1;
    f->map = buf;
    f->size = size;
    f->data = buf + 8 + H;
    f->data_size = (uint64_t)size - 8 - H;
    int rc = parse_entries(f, root, name, err, err_len);
    if (rc == 0) rc = check_integer_spelling(buf + 8, H, name, err, err_len);
    cJSON_Delete(root);
    if (rc) {
        free_entries(f);
        memset(f, 0, sizeof *f);
        return -1;
    }
    f->path = xstrdup(name);
    return 0;
}

int st_open(struct st_file *f, const char *path, char *err, size_t err_len) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st_fail(err, err_len, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return st_fail(err, err_len, path, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return st_fail(err, err_len, path, "not a regular file");
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) { /* nothing worth mapping; st_parse words the error */
        close(fd);
        uint8_t none[8] = {0};
        return st_parse(f, path, none, size, err, err_len);
    }
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return st_fail(err, err_len, path, "cannot map: %s", strerror(e));
    if (st_parse(f, path, m, size, err, err_len) != 0) {
        munmap(m, size);
        return -1;
    }
    f->mapped = 1;
    return 0;
}

void st_close(struct st_file *f) {
    free_entries(f);
    if (f->mapped) munmap((void *)f->map, f->size);
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

/* Elementwise, so the OpenMP split cannot change a result. */
void st_read_f32(const struct st_file *f, const struct st_tensor *t, float *out) {
    const uint8_t *p = f->data + t->begin; /* (numel) elements of t->dtype, maybe unaligned */
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(out, p, (size_t)n * 4);
        return;
    case ST_BF16:
#pragma omp parallel for schedule(static) if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_bf16_to_f32(h);
        }
        return;
    case ST_F16:
#pragma omp parallel for schedule(static) if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_f16_to_f32(h);
        }
        return;
    case ST_I64:
    case ST_I32:
        break;
    }
    CHECKF(0, "st_read_f32: tensor \"%s\" is %s, not a float dtype", t->name,
           st_dtype_name(t->dtype));
}
