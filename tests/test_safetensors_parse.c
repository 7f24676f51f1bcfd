/*
 * test_safetensors_parse.c: the safetensors reader (src/safetensors.h) against malformed and
 * hostile files: every file that breaks the format is rejected with one line naming the file and
 * what was expected, and no input crashes it or reads outside the buffer. The conversions and the
 * writer's round trip are test_safetensors.c.
 *
 *   - a battery of hand-made malformed headers (JSON, UTF-8, control bytes, dtypes, shapes,
 *     offsets that overlap, leave gaps or end past the data, duplicate and unknown keys), edited
 *     length fields, st_open on a missing file, a folder and a 3-byte file: each rejected with its
 *     expected reason;
 *   - valid files that a too-eager reader would reject (out-of-order offsets, empty tensors, eight
 *     dimensions, escapes, whitespace): each accepted and read back;
 *   - a deterministic robustness loop: 20000 mutated valid files through st_parse (0 or -1, never
 *     a crash; accepted files keep every tensor inside the buffer).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "safetensors.h"
#include "testlib.h"
#include "testlib_safetensors.h"

/* ---------------------------------------------------------------------------------------------- */
/* Malformed files                                                                                 */

/* 8-byte length H, the header text, then data_len bytes of data. */
static uint8_t *make_file(const char *header, size_t header_len, size_t data_len, size_t *len) {
    *len = 8 + header_len + data_len;
    uint8_t *b = xcalloc(*len + 1, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    memcpy(b + 8, header, header_len);
    return b;
}

/* st_parse must fail, with "bad.safetensors: " first, `want` inside, on one line, f left empty. */
static void expect_reject(const char *what, const uint8_t *buf, size_t len, const char *want) {
    struct st_file f;
    char err[1024] = "";
    uint8_t *copy = xmalloc(len ? len : 1); /* exact size, so a sanitizer sees any overread */
    if (len) memcpy(copy, buf, len);
    int rc = st_parse(&f, "bad.safetensors", copy, len, err, sizeof err);
    bool ok = rc == -1 && strncmp(err, "bad.safetensors: ", 17) == 0 && strstr(err, want) &&
              !strchr(err, '\n') && f.n == 0 && f.tensors == NULL && f.n_meta == 0;
    t_check(ok, "%s: rc %d, reason \"%s\", expected \"%s\"", what, rc, err, want);
    if (rc == 0) st_close(&f);
    free(copy);
}

struct bad_header {
    const char *what, *header;
    size_t data_len;
    const char *want;
};

#define T1(dt, sh, off) "{\"a\":{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":" off "}}"
#define TA(sh, off) "\"a\":{\"dtype\":\"F32\",\"shape\":" sh ",\"data_offsets\":" off "}"
#define TB(sh, off) "\"b\":{\"dtype\":\"F32\",\"shape\":" sh ",\"data_offsets\":" off "}"

static const struct bad_header bad_headers[] = {
    {"non-JSON header", "{\"a\": ", 0, "header is not valid JSON"},
    {"not JSON at all", "hello", 0, "header is not a JSON object"},
    {"JSON array", "[1, 2, 3]", 0, "header is not a JSON object"},
    {"JSON string", "\"abc\"", 0, "header is not a JSON object"},
    {"leading space before the object", " {}", 0, "header is not a JSON object"},
    {"garbage after the object", "{} x", 0, "header is not valid JSON"},
    {"second object after the first", "{}{}", 0, "header is not valid JSON"},
    {"control byte in a name", "{\"a\x01\":{}}", 0, "control byte 0x01 at byte offset 11"},
    {"raw tab inside a name", "{\"a\tb\":{}}", 0, "control byte 0x09 at byte offset 11 (inside a string)"},
    {"raw CR inside metadata", "{\"__metadata__\":{\"k\":\"\r\"}}", 0, "control byte 0x0d"},
    {"escaped NUL in a name", "{\"a\\u0000b\":{}}", 0, "escaped NUL (\\u0000) at byte offset 11"},
    {"escaped NUL in metadata", "{\"__metadata__\":{\"k\":\"\\u0000\"}}", 0, "escaped NUL"},
    {"invalid UTF-8", "{\"a\xc3(\":{}}", 0, "not valid UTF-8 at byte offset 11"},
    {"overlong UTF-8", "{\"\xc0\xaf\":{}}", 0, "not valid UTF-8"},
    {"UTF-8 surrogate", "{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8"},
    {"unknown dtype F64", T1("F64", "[1]", "[0,8]"), 8, "tensor \"a\": dtype \"F64\" is not supported"},
    {"unknown dtype U8", T1("U8", "[4]", "[0,4]"), 4, "tensor \"a\": dtype \"U8\" is not supported"},
    {"lower-case dtype", T1("f32", "[1]", "[0,4]"), 4, "dtype \"f32\" is not supported"},
    {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor \"a\": dtype is not a string"},
    {"shape/offset size mismatch", T1("F32", "[2,3]", "[0,20]"), 20,
     "tensor \"a\": shape [2, 3] of F32 is 24 bytes but data_offsets span 20"},
    {"bf16 size mismatch", T1("BF16", "[4]", "[0,16]"), 16, "of BF16 is 8 bytes but data_offsets span 16"},
    {"offsets past the data end", T1("F32", "[2]", "[0,8]"), 4,
     "tensor \"a\": data_offsets [0, 8] end past the data section of 4 bytes"},
    {"offsets far past the end", T1("I64", "[1]", "[9007199254740984,9007199254740992]"), 8,
     "end past the data section of 8 bytes"},
    {"end before begin", T1("F32", "[0]", "[8,4]"), 8, "data_offsets [8, 4] end before they begin"},
    {"overlapping tensors", "{" TA("[2]", "[0,8]") "," TB("[2]", "[4,12]") "}", 12,
     "tensors overlap or leave a gap at data offset 8 (\"a\" ends at 8, \"b\" starts at 4)"},
    {"same range twice", "{" TA("[2]", "[0,8]") "," TB("[2]", "[0,8]") "}", 8,
     "tensors overlap or leave a gap at data offset 8"},
    {"gap between tensors", "{" TA("[2]", "[0,8]") "," TB("[2]", "[12,20]") "}", 20,
     "tensors overlap or leave a gap at data offset 8 (\"a\" ends at 8, \"b\" starts at 12)"},
    {"gap before the first tensor", "{" TB("[2]", "[4,12]") "}", 12,
     "leave a gap at data offset 0 (the first tensor, \"b\", starts at 4)"},
    {"empty tensor inside another", "{" TA("[4]", "[0,16]") "," TB("[0]", "[8,8]") "}", 16,
     "tensors overlap or leave a gap at data offset 16"},
    {"trailing data after the last tensor", T1("F32", "[2]", "[0,8]"), 12,
     "data section is 12 bytes but tensors end at 8"},
    {"data but no tensors", "{}", 4, "data section is 4 bytes but tensors end at 0"},
    {"negative shape entry", T1("F32", "[-1]", "[0,4]"), 4, "shape entry 0 is -1, not a non-negative integer"},
    {"non-integer shape entry", T1("F32", "[2,1.5]", "[0,12]"), 12, "shape entry 1 is 1.5, not a non-negative integer"},
    {"shape entry above 2^53", T1("F32", "[1e300]", "[0,4]"), 4, "shape entry 0 is 1.0000000000000001e+300"},
    {"shape entry 2^64", T1("F32", "[18446744073709551616]", "[0,4]"), 4, "shape entry 0 is 1.8446744073709552e+19"},
    {"shape entry a string", T1("F32", "[\"2\"]", "[0,8]"), 8, "shape entry 0 is not a number"},
    {"overflowing shape product", T1("F32", "[4294967296,4294967296]", "[0,4]"), 4, "shape overflows"},
    {"byte size just past int64", T1("I64", "[1073741824,1073741824]", "[0,8]"), 8, "shape overflows"},
    {"empty tensor whose other dims overflow (strides would)",
     T1("F16", "[9007199254740992,0,9007199254740992]", "[0,0]"), 0, "shape overflows"},
    {"integral shape spelt 2.0", T1("F32", "[2.0]", "[0,8]"), 8,
     "number with a fraction or an exponent at byte offset 37"},
    {"integral offset spelt 8e0", T1("F32", "[2]", "[0,8e0]"), 8, "number with a fraction"},
    {"nine dimensions", T1("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), 4, "shape has 9 dimensions, more than 8"},
    {"shape not a list", T1("F32", "4", "[0,4]"), 4, "tensor \"a\": shape is not a list"},
    {"duplicate tensor name", "{" TA("[1]", "[0,4]") "," TA("[1]", "[4,8]") "}", 8,
     "header: key \"a\" appears twice"},
    {"duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0,
     "header: key \"__metadata__\" appears twice"},
    {"duplicate key in an entry",
     "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor \"a\": key \"dtype\" appears twice"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor \"a\": missing \"data_offsets\""},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor \"a\": missing \"dtype\""},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor \"a\": missing \"shape\""},
    {"unknown key in an entry",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
     "tensor \"a\": unknown key \"x\""},
    {"three data_offsets", T1("F32", "[1]", "[0,4,4]"), 4, "data_offsets is not a list [begin, end]"},
    {"negative data_offsets", T1("F32", "[1]", "[-4,0]"), 4, "data_offsets entries must be non-negative"},
    {"fractional data_offsets", T1("F32", "[1]", "[0,4.5]"), 4, "data_offsets entries must be non-negative"},
    {"entry not an object", "{\"a\":[1,2]}", 0, "tensor \"a\": entry is not an object"},
    {"metadata value not a string", "{\"__metadata__\":{\"format\":\"pt\",\"k\":1}}", 0,
     "__metadata__ value of \"k\" is not a string"},
    {"metadata not an object", "{\"__metadata__\":[\"pt\"]}", 0, "__metadata__ is not an object"},
    {"metadata key twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
     "__metadata__: key \"k\" appears twice"},
    {"name with a newline is escaped", "{\"a\\nb\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}",
     8, "tensor \"a\\x0ab\": dtype \"F64\""},
};

/* Length-field and size cases that need hand-made bytes. */
static void test_bad_lengths(void) {
    uint8_t five[5] = {1, 0, 0, 0, 0};
    expect_reject("truncated below 8 bytes", five, 5, "file is 5 bytes, shorter than the 8-byte");
    expect_reject("empty file", five, 0, "file is 0 bytes");
    size_t len;
    uint8_t *b = make_file("{}", 2, 0, &len);
    uint64_t lens[] = {9999999, 3, SAFETENSORS_MAX_HEADER + 1, UINT64_MAX, 0};
    const char *want[] = {"header length 9999999 exceeds the file size 10",
                          "header length 3 exceeds the file size 10",
                          "header length 104857601 exceeds SAFETENSORS_MAX_HEADER (104857600 bytes)",
                          "header length 18446744073709551615 exceeds SAFETENSORS_MAX_HEADER",
                          "header is not a JSON object"};
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < 8; i++) b[i] = (uint8_t)(lens[k] >> (8 * i));
        expect_reject("header length edited", b, len, want[k]);
    }
    free(b);
    b = make_file("{}  \0    ", 9, 0, &len);
    expect_reject("NUL inside the header", b, len, "control byte 0x00 at byte offset 12");
    free(b);
    char deep[2100] = "{\"a\":";
    for (int i = 0; i < 1500; i++) strcat(deep, "[");
    b = make_file(deep, strlen(deep), 0, &len);
    expect_reject("nesting deeper than cJSON's limit", b, len, "header is not valid JSON");
    free(b);
}

static void test_bad_files(const char *dir) {
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        const struct bad_header *c = &bad_headers[i];
        size_t len;
        uint8_t *b = make_file(c->header, strlen(c->header), c->data_len, &len);
        expect_reject(c->what, b, len, c->want);
        free(b);
    }
    test_bad_lengths();
    struct st_file f;
    char err[512] = "", path[256];
    int rc = st_open(&f, "/nonexistent-st-file.safetensors", err, sizeof err);
    t_check(rc == -1 && strstr(err, "/nonexistent-st-file.safetensors: cannot open"), "missing "
            "file: %s", err);
    rc = st_open(&f, dir, err, sizeof err);
    t_check(rc == -1 && strstr(err, "not a regular file"), "folder: %s", err);
    path_in(path, sizeof path, dir, "short.safetensors");
    dump(path, "abc", 3);
    rc = st_open(&f, path, err, sizeof err);
    t_check(rc == -1 && strstr(err, "short.safetensors: file is 3 bytes"), "3-byte file: %s", err);
    const char *ok = T1("F32", "[]", "[0,4]");
    size_t len;
    uint8_t *b = make_file(ok, strlen(ok), 4, &len);
    rc = st_parse(&f, "ok", b, len, err, sizeof err);
    t_check(rc == 0 && f.n == 1 && f.tensors[0].numel == 1 && f.tensors[0].ndim == 0,
            "a scalar (shape []) holds 1 element: %s", rc ? err : "ok");
    if (rc == 0) st_close(&f);
    free(b);
}

/* ---------------------------------------------------------------------------------------------- */
/* Robustness: mutated valid files                                                                 */

static const char *const tokens[] = {"0", "1", "-1", "1.5", "1e300", "9007199254740993", "4",
                                     "4294967296", "18446744073709551615", "\"F64\"", "\"BF16\"",
                                     "\"I64\"", "[]", "{}", "[0,0]", "null", "\"__metadata__\"",
                                     "\"a\"", ",", ":", "\"", "[", "]", "{", "}", " "};

/* Replaces buf[at, at + del) with ins; returns the new length (cap bounds it). */
static size_t splice(uint8_t *buf, size_t len, size_t cap, size_t at, size_t del, const char *ins) {
    size_t n = strlen(ins);
    if (at > len) at = len;
    if (del > len - at) del = len - at;
    if (len - del + n > cap) return len;
    memmove(buf + at + n, buf + at + del, len - at - del);
    memcpy(buf + at, ins, n);
    return len - del + n;
}

static void set_hlen(uint8_t *buf, size_t len, uint64_t H) {
    if (len >= 8)
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(H >> (8 * i));
}

static uint64_t get_hlen(const uint8_t *buf, size_t len) {
    uint64_t H = 0;
    if (len >= 8)
        for (int i = 7; i >= 0; i--) H = (H << 8) | buf[i];
    return H;
}

/* One random mutation of buf (len bytes, room for cap); returns the new length. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap, struct t_rng *r) {
    uint64_t H = get_hlen(buf, len), u = t_rng_u64(r);
    size_t hend = (size_t)(8 + H < len ? 8 + H : len);
    size_t at = hend > 8 ? 8 + (size_t)(u % (hend - 8)) : 0; /* a header position */
    switch (t_rng_u64(r) % 6) {
    case 0: /* flip bits anywhere */
        if (len) buf[u % len] ^= (uint8_t)(1 + t_rng_u64(r) % 255);
        return len;
    case 1: /* truncate */
        return len ? (size_t)(u % len) : 0;
    case 2: { /* edit the header length */
        static const int64_t deltas[] = {-16, -8, -1, 1, 8, 16};
        uint64_t nh = (u & 1) ? t_rng_u64(r) >> (t_rng_u64(r) % 64) : H + (uint64_t)deltas[u % 6];
        set_hlen(buf, len, nh);
        return len;
    }
    case 3: { /* replace a token-sized run of the header, keeping or fixing the length field */
        size_t del = (size_t)(t_rng_u64(r) % 6);
        size_t n = splice(buf, len, cap, at, del, tokens[u % (sizeof tokens / sizeof *tokens)]);
        if (t_rng_u64(r) & 1) set_hlen(buf, n, H + n - len);
        return n;
    }
    case 4: /* overwrite a header digit with another digit */
        if (at && buf[at] >= '0' && buf[at] <= '9') buf[at] = (uint8_t)('0' + t_rng_u64(r) % 10);
        else if (at) buf[at] = (uint8_t)"0123456789\"[]{},:-.e"[t_rng_u64(r) % 20];
        return len;
    default: /* duplicate a slice of the header */
        if (at && len + 32 <= cap) {
            size_t n = 1 + (size_t)(t_rng_u64(r) % 32);
            if (at + n > len) n = len - at;
            memmove(buf + at + n, buf + at, len - at);
            set_hlen(buf, len + n, H + n);
            return len + n;
        }
        return len;
    }
}

/* An accepted buffer: every tensor lies inside it, the tiling holds, every byte is readable. */
static bool accepted_file_ok(const struct st_file *f, const uint8_t *buf, size_t len) {
    if (f->map != buf || f->size != len || f->data + f->data_size != buf + len) return false;
    uint64_t total = 0;
    for (int i = 0; i < f->n; i++) {
        const struct st_tensor *t = &f->tensors[i];
        if (t->begin > t->end || t->end > f->data_size || t->numel < 0 ||
            t->end - t->begin != (uint64_t)t->numel * st_dtype_size(t->dtype))
            return false;
        total += t->end - t->begin;
        if (st_find(f, t->name) != t) return false;
        if (t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16) {
            float *x = xmalloc((size_t)t->numel * sizeof(float) + 1);
            st_read_f32(f, t, x);
            free(x);
        } else {
            const uint8_t *p = st_data(f, t);
            uint8_t sum = 0;
            for (uint64_t b = 0; b < t->end - t->begin; b++) sum ^= p[b];
            if (sum == 0 && t->numel < 0) return false; /* keeps the reads */
        }
    }
    return total == f->data_size;
}

struct good_header {
    const char *what, *header;
    size_t data_len;
    int n;
    const char *name0; /* the first tensor in file order */
    int64_t numel0;
};

#define TE(nm, sh, off) "\"" nm "\":{\"dtype\":\"F16\",\"shape\":" sh ",\"data_offsets\":" off "}"

/* Valid files that a too-eager reader would reject. */
static const struct good_header good_headers[] = {
    {"tensors listed out of offset order", "{" TB("[2]", "[8,16]") "," TA("[2]", "[0,8]") "}", 16, 2,
     "b", 2},
    {"empty tensor sharing its offset, listed after",
     "{" TA("[2]", "[0,8]") "," TB("[1]", "[8,12]") "," TE("e", "[0,3]", "[8,8]") "}", 12, 3, "a", 2},
    {"empty tensors at the end and in an empty file",
     "{" TE("e", "[0]", "[0,0]") "," TE("f", "[5,0]", "[0,0]") "}", 0, 2, "e", 0},
    {"empty tensor with a large other dim", "{" TE("e", "[0,4294967296]", "[0,0]") "}", 0, 1, "e", 0},
    {"escaped backslash before u0000 is not a NUL",
     "{\"a\\\\u0000\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 1,
     "a\\u0000", 1},
    {"digits and e inside strings are not numbers",
     "{\"__metadata__\":{\"v\":\"1.5e3 \\\"2.0\\\"\"},\"x1.0e\":{\"dtype\":\"F32\",\"shape\":[],"
     "\"data_offsets\":[0,4]}}", 4, 1, "x1.0e", 1},
    {"eight dimensions", T1("F32", "[1,2,1,1,1,1,1,3]", "[0,24]"), 24, 1, "a", 6},
    {"metadata after the tensors, whitespace, \\u escapes",
     "{ \n\t\"na\\u00efve\" : {\"data_offsets\":[0,2], \"shape\":[ ],\"dtype\":\"BF16\"},\r\n"
     " \"__metadata__\" : { } }  \n ", 2, 1, "na\xc3\xafve", 1},
};

static void test_good_files(void) {
    for (size_t i = 0; i < sizeof good_headers / sizeof good_headers[0]; i++) {
        const struct good_header *c = &good_headers[i];
        size_t len;
        uint8_t *b = make_file(c->header, strlen(c->header), c->data_len, &len);
        struct st_file f;
        char err[512] = "";
        int rc = st_parse(&f, "good", b, len, err, sizeof err);
        bool ok = rc == 0 && f.n == c->n && strcmp(f.tensors[0].name, c->name0) == 0 &&
                  f.tensors[0].numel == c->numel0 && accepted_file_ok(&f, b, len);
        t_check(ok, "%s: accepted with %d tensors (%s)", c->what, c->n, rc ? err : "read back");
        if (rc == 0) st_close(&f);
        free(b);
    }
}

static uint8_t *seed_file(struct t_rng *r, const char *dir, int which, size_t *len) {
    struct spec s[4] = {
        {"w", ST_F32, 2, {3, 4}, 0, 0, 0},
        {"e", ST_BF16, 1, {5}, 0, 0, 0},
        {"h", ST_F16, 3, {1, 2, 3}, 0, 0, 0},
        {"i", ST_I64, 0, {0}, 0, 0, 0},
    };
    for (int i = 0; i < 4; i++) spec_fill(&s[i], r);
    static const char *const meta[] = {"format", "pt", "k", "v"};
    char path[256];
    path_in(path, sizeof path, dir, "seed.safetensors");
    write_specs(path, s, which == 2 ? 0 : 4, meta, which == 0 ? 2 : 0);
    spec_free(s, 4);
    return slurp(path, len);
}

static void test_mutations(struct t_rng *r, const char *dir) {
    enum { N_SEEDS = 3, ITERS = 20000 };
    size_t seed_len[N_SEEDS];
    uint8_t *seeds[N_SEEDS];
    for (int i = 0; i < N_SEEDS; i++) seeds[i] = seed_file(r, dir, i, &seed_len[i]);
    int64_t accepted = 0, rejected = 0, bad = 0;
    size_t cap = 4096;
    uint8_t *work = xmalloc(cap);
    for (int it = 0; it < ITERS; it++) {
        int k = (int)(t_rng_u64(r) % N_SEEDS);
        size_t len = seed_len[k];
        memcpy(work, seeds[k], len);
        int n_mut = 1 + (int)(t_rng_u64(r) % 3);
        for (int m = 0; m < n_mut; m++) len = mutate(work, len, cap, r);
        uint8_t *buf = xmalloc(len ? len : 1); /* exact size: a sanitizer sees any overread */
        memcpy(buf, work, len);
        struct st_file f;
        char err[512] = "";
        int rc = st_parse(&f, "mut", buf, len, err, sizeof err);
        if (rc == 0) {
            accepted++;
            bad += !accepted_file_ok(&f, buf, len);
            st_close(&f);
        } else {
            rejected++;
            bad += rc != -1 || strncmp(err, "mut: ", 5) != 0 || strchr(err, '\n') || f.n != 0;
        }
        free(buf);
    }
    free(work);
    for (int i = 0; i < N_SEEDS; i++) free(seeds[i]);
    printf("mutations: %d files, %lld accepted, %lld rejected\n", ITERS, (long long)accepted,
           (long long)rejected);
    t_check(bad == 0, "%lld mutated files broke the contract", (long long)bad);
    t_check(accepted > 0 && rejected > 0, "mutations both accepted and rejected some files");
}

int main(void) {
    char dir[64] = "/tmp/test_safetensors_parse_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct t_rng rng = {0x5afe7e45};
    test_bad_files(dir);
    test_good_files();
    test_mutations(&rng, dir);
    static const char *const made[] = {"short.safetensors", "seed.safetensors"};
    for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
        char path[256];
        path_in(path, sizeof path, dir, made[i]);
        unlink(path);
    }
    CHECKF(rmdir(dir) == 0, "%s holds more than the files made here", dir);
    return t_finish("test_safetensors_parse");
}
