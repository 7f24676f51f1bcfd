/*
 * test_safetensors.c: the bf16/f16 conversions and the safetensors writer, read back by our reader
 * (src/safetensors.h). The reader against malformed and hostile files is test_safetensors_parse.c.
 *
 * Without arguments it runs every test:
 *   - conversions: every bf16 and f16 bit pattern decoded against an independent ldexp decoder and
 *     re-encoded to itself; fp32 -> bf16/f16 against an independent rounding written here with
 *     frexp/ldexp/rint (every half-way point between neighbouring values and its two float
 *     neighbours, random bit patterns, named edge cases: ties to even, max finite, overflow,
 *     subnormals, NaN stays NaN);
 *   - round trip through a file of every dtype (1-, 2-, 3-, 4-dim, a scalar, an empty tensor, a
 *     tensor longer than the writer's conversion chunk), metadata, names that need JSON escapes,
 *     the header layout (order, 8-byte padding), st_find / st_meta, replacing a file, no .tmp left
 *     behind, writing into a missing folder.
 * Modes for tests/test_safetensors_py.sh:
 *   --write-sample DIR                writes DIR/sample_all.safetensors (every dtype, metadata),
 *                                     DIR/sample_np.safetensors (no BF16, no metadata) and, for
 *                                     each tensor, DIR/<name>.src: its fp32 source or raw bytes;
 *   --read-check FILE SPEC...         opens FILE with our reader and checks it holds exactly the
 *                                     SPECs: meta:KEY=VALUE, or tensor:NAME:DTYPE:SHAPE:EXPECTED
 *                                     (SHAPE like 2x3, empty for a scalar; EXPECTED a file of the
 *                                     values as fp32 for float dtypes, of the raw bytes for ints).
 */
#define _GNU_SOURCE
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "safetensors.h"
#include "testlib.h"
#include "testlib_safetensors.h"

/* ---------------------------------------------------------------------------------------------- */
/* Independent reference conversions (formats of 1 sign, ebits exponent, mbits mantissa bits)      */

struct fmt16 {
    const char *name;
    int ebits, mbits;
    uint16_t (*encode)(float);
    float (*decode)(uint16_t);
};

static const struct fmt16 BF16 = {"bf16", 8, 7, st_f32_to_bf16, st_bf16_to_f32};
static const struct fmt16 F16 = {"f16", 5, 10, st_f32_to_f16, st_f16_to_f32};

static uint32_t inf_bits(const struct fmt16 *f) { return ((1u << f->ebits) - 1u) << f->mbits; }

static double ref_decode(const struct fmt16 *f, uint16_t h) {
    int bias = (1 << (f->ebits - 1)) - 1;
    uint32_t e = (h >> f->mbits) & ((1u << f->ebits) - 1u), m = h & ((1u << f->mbits) - 1u);
    double s = (h >> (f->ebits + f->mbits)) ? -1.0 : 1.0;
    if (e == (1u << f->ebits) - 1u) return m ? NAN : s * INFINITY;
    if (e == 0) return s * ldexp((double)m, 1 - bias - f->mbits);
    return s * ldexp(1.0 + ldexp((double)m, -f->mbits), (int)e - bias);
}

static bool is_nan16(const struct fmt16 *f, uint16_t h) {
    return (h & inf_bits(f)) == inf_bits(f) && (h & ((1u << f->mbits) - 1u));
}

/* Round to nearest, ties to even, by arithmetic on the value (rint in the default rounding mode),
 * not on bits. NaN is the caller's business. */
static uint16_t ref_encode(const struct fmt16 *f, float x) {
    int bias = (1 << (f->ebits - 1)) - 1, emin = 1 - bias;
    uint32_t sign = signbit(x) ? 1u << (f->ebits + f->mbits) : 0, bits;
    double a = fabs((double)x);
    if (isinf(a)) return (uint16_t)(sign | inf_bits(f));
    if (a < ldexp(1.0, emin)) {
        bits = (uint32_t)rint(ldexp(a, f->mbits - emin)); /* subnormal units; may carry to 2^emin */
    } else {
        int E;
        frexp(a, &E);
        E -= 1; /* a = s * 2^E, s in [1, 2) */
        double q = rint(ldexp(a, f->mbits - E)); /* in [2^mbits, 2^(mbits+1)] */
        int64_t b = ((int64_t)(E + bias) << f->mbits) + (int64_t)q - (1 << f->mbits);
        bits = b >= (int64_t)inf_bits(f) ? inf_bits(f) : (uint32_t)b;
    }
    return (uint16_t)(sign | bits);
}

static uint32_t bits_of_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* Our encode of x agrees with the reference (NaN: any NaN of the format). Returns true if so. */
static bool encode_agrees(const struct fmt16 *f, float x, uint16_t *got, uint16_t *want) {
    *got = f->encode(x);
    if (isnan(x)) {
        *want = (uint16_t)(inf_bits(f) | (1u << (f->mbits - 1)));
        return is_nan16(f, *got) && ((*got >> 15) == (bits_of_f32(x) >> 31));
    }
    *want = ref_encode(f, x);
    return *got == *want;
}

/* ---------------------------------------------------------------------------------------------- */
/* Conversion tests                                                                                */

/* Every 16-bit pattern: decode equals the reference exactly; encode(decode(h)) == h (NaN: a NaN). */
static void test_decode_exhaustive(const struct fmt16 *f) {
    int64_t bad_decode = 0, bad_round = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = f->decode((uint16_t)h);
        double ref = ref_decode(f, (uint16_t)h);
        bool same = isnan(ref) ? isnan(got) : ((double)got == ref && !signbit(got) == !signbit(ref));
        bad_decode += !same;
        uint16_t back = f->encode(got);
        bad_round += is_nan16(f, (uint16_t)h) ? !is_nan16(f, back) : back != h;
    }
    t_check(bad_decode == 0, "%s: %lld of 65536 patterns decode wrongly", f->name,
            (long long)bad_decode);
    t_check(bad_round == 0, "%s: %lld of 65536 patterns do not survive decode+encode", f->name,
            (long long)bad_round);
}

/* Half-way points between every pair of neighbouring non-negative values (and past the largest
 * finite one), their float neighbours, and their negatives. The reference itself is checked to
 * round each tie to the even neighbour, so the oracle is tested against the definition too. */
static void test_encode_ties(const struct fmt16 *f) {
    int64_t bad = 0, bad_ref = 0, n = 0;
    uint16_t first_got = 0, first_want = 0;
    float first_x = 0;
    for (uint32_t h = 0; h < inf_bits(f); h++) {
        double lo = ref_decode(f, (uint16_t)h);
        double hi = h + 1 < inf_bits(f) ? ref_decode(f, (uint16_t)(h + 1))
                                        : 2 * lo - ref_decode(f, (uint16_t)(h - 1));
        double mid = 0.5 * (lo + hi);
        float m = (float)mid;
        if ((double)m != mid) {
            bad_ref++; /* cannot happen for bf16/f16: a tie needs mbits + 2 bits */
            continue;
        }
        uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
        bad_ref += ref_encode(f, m) != even;
        float xs[6] = {m, nextafterf(m, 0.0f), nextafterf(m, INFINITY)};
        for (int i = 0; i < 3; i++) xs[3 + i] = -xs[i];
        for (int i = 0; i < 6; i++) {
            uint16_t got, want;
            n++;
            if (!encode_agrees(f, xs[i], &got, &want) && bad++ == 0) {
                first_x = xs[i];
                first_got = got;
                first_want = want;
            }
        }
    }
    t_check(bad_ref == 0, "%s: the reference rounds %lld ties wrongly", f->name, (long long)bad_ref);
    t_check(bad == 0, "%s: %lld of %lld values near ties round wrongly (first %.9g: got 0x%04x, "
            "want 0x%04x)", f->name, (long long)bad, (long long)n, first_x, first_got, first_want);
}

/* Random fp32 bit patterns (all exponents, NaNs, subnormals) and random normals of every scale. */
static void test_encode_random(const struct fmt16 *f, struct t_rng *rng) {
    int64_t bad = 0, n = 1 << 21;
    for (int64_t i = 0; i < n; i++) {
        float x = (i & 1) ? f32_of_bits((uint32_t)t_rng_u64(rng))
                          : (float)ldexp(t_rng_normal(rng), (int)(t_rng_u64(rng) % 80) - 40);
        uint16_t got, want;
        if (!encode_agrees(f, x, &got, &want) && bad++ == 0)
            printf("  %s: first bad random value %.9g (0x%08x): got 0x%04x, want 0x%04x\n",
                   f->name, x, bits_of_f32(x), got, want);
    }
    t_check(bad == 0, "%s: %lld of %lld random values round wrongly", f->name, (long long)bad,
            (long long)n);
}

struct edge {
    const struct fmt16 *f;
    uint32_t x_bits; /* fp32 input */
    uint16_t want;   /* expected bits; 0xffff: any NaN with the sign of x */
    const char *what;
};

/* The named cases the brief lists, with expected bits written out by hand. */
static void test_named_edges(void) {
    static const struct edge cases[] = {
        {&F16, 0x3f800000u, 0x3c00, "1.0"},
        {&F16, 0x3f801000u, 0x3c00, "1 + 2^-11: tie, rounds to even 1.0"},
        {&F16, 0x3f803000u, 0x3c02, "1 + 3*2^-11: tie, rounds up to even"},
        {&F16, 0x3f801001u, 0x3c01, "just above the tie rounds up"},
        {&F16, 0x477fe000u, 0x7bff, "65504, the largest finite"},
        {&F16, 0x477fefffu, 0x7bff, "just below 65520 stays finite"},
        {&F16, 0x477ff000u, 0x7c00, "65520: tie with an odd max, rounds to inf"},
        {&F16, 0x49742400u, 0x7c00, "1e6 overflows to inf"},
        {&F16, 0xc9742400u, 0xfc00, "-1e6 overflows to -inf"},
        {&F16, 0x7f800000u, 0x7c00, "inf"},
        {&F16, 0xff800000u, 0xfc00, "-inf"},
        {&F16, 0x33800000u, 0x0001, "2^-24, the smallest subnormal"},
        {&F16, 0x33000000u, 0x0000, "2^-25: tie, rounds to even 0"},
        {&F16, 0x33000001u, 0x0001, "just above 2^-25 rounds up"},
        {&F16, 0x33c00000u, 0x0002, "3 * 2^-25: tie, rounds to even 2"},
        {&F16, 0x387fc000u, 0x03ff, "the largest subnormal"},
        {&F16, 0x387fe000u, 0x0400, "tie between the largest subnormal and 2^-14: even"},
        {&F16, 0x38800000u, 0x0400, "2^-14, the smallest normal"},
        {&F16, 0x80000000u, 0x8000, "-0"},
        {&F16, 0x00000001u, 0x0000, "an fp32 subnormal flushes to +0"},
        {&F16, 0x7fc00000u, 0xffff, "quiet NaN"},
        {&F16, 0x7f800001u, 0xffff, "signalling NaN with a low payload stays NaN"},
        {&F16, 0xffc00000u, 0xffff, "negative NaN"},
        {&BF16, 0x3f808000u, 0x3f80, "1 + 2^-8: tie, rounds to even 1.0"},
        {&BF16, 0x3f818000u, 0x3f82, "1 + 3*2^-8: tie, rounds up to even"},
        {&BF16, 0x7f7f0000u, 0x7f7f, "the largest finite bf16"},
        {&BF16, 0x7f7f7fffu, 0x7f7f, "just below the overflow tie"},
        {&BF16, 0x7f7f8000u, 0x7f80, "tie with an odd max: inf"},
        {&BF16, 0x7f7fffffu, 0x7f80, "FLT_MAX rounds to inf"},
        {&BF16, 0xff7fffffu, 0xff80, "-FLT_MAX rounds to -inf"},
        {&BF16, 0x00008000u, 0x0000, "subnormal tie rounds to even 0"},
        {&BF16, 0x00018000u, 0x0002, "subnormal tie rounds to even 2"},
        {&BF16, 0x00010000u, 0x0001, "the smallest bf16 subnormal"},
        {&BF16, 0x7f800001u, 0xffff, "signalling NaN must not become inf"},
        {&BF16, 0xff800001u, 0xffff, "negative signalling NaN"},
        {&BF16, 0x7fc00000u, 0xffff, "quiet NaN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct edge *c = &cases[i];
        uint16_t got = c->f->encode(f32_of_bits(c->x_bits));
        bool ok = c->want == 0xffff ? is_nan16(c->f, got) && (got >> 15) == (c->x_bits >> 31)
                                    : got == c->want;
        t_check(ok, "%s(0x%08x) %s: got 0x%04x, want 0x%04x", c->f->name, c->x_bits, c->what, got,
                c->want);
    }
    t_check(st_f16_to_f32(0x0001) == ldexpf(1, -24), "f16 0x0001 decodes to 2^-24");
    t_check(st_f16_to_f32(0x7bff) == 65504.0f, "f16 0x7bff decodes to 65504");
    t_check(isinf(st_f16_to_f32(0xfc00)) && st_f16_to_f32(0xfc00) < 0, "f16 0xfc00 is -inf");
    t_check(isnan(st_f16_to_f32(0x7e00)) && isnan(st_bf16_to_f32(0x7fc0)), "NaN decodes to NaN");
    t_check(st_bf16_to_f32(0x0001) == ldexpf(1, -133), "bf16 0x0001 decodes to 2^-133");
}

/* ---------------------------------------------------------------------------------------------- */
/* Checks of a file our writer wrote                                                               */

/* What the reader must return for a spec, in fp32: the source rounded to the dtype and back. */
static float expected_value(const struct spec *s, int64_t i) {
    float x = s->src[i];
    if (s->dtype == ST_F32 || isnan(x)) return x;
    const struct fmt16 *f = s->dtype == ST_BF16 ? &BF16 : &F16;
    return (float)ref_decode(f, ref_encode(f, x));
}

/* The bytes the file must hold for one element of a float spec. */
static bool stored_element_ok(const struct spec *s, const uint8_t *p, int64_t i) {
    if (s->dtype == ST_F32) return memcmp(p + 4 * i, &s->src[i], 4) == 0;
    const struct fmt16 *f = s->dtype == ST_BF16 ? &BF16 : &F16;
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    if (isnan(s->src[i])) return is_nan16(f, h);
    return h == ref_encode(f, s->src[i]);
}

/* One tensor as read back: dtype, shape, offsets, bytes and fp32 values. */
static void check_tensor(const struct st_file *f, const struct spec *s, uint64_t begin) {
    const struct st_tensor *t = st_find(f, s->name);
    if (!t_check(t != NULL, "st_find(\"%s\")", s->name)) return;
    bool shape_ok = t->ndim == s->ndim && t->numel == s->numel;
    for (int d = 0; shape_ok && d < s->ndim; d++) shape_ok = t->shape[d] == s->shape[d];
    uint64_t bytes = (uint64_t)s->numel * st_dtype_size(s->dtype);
    t_check(t->dtype == s->dtype && shape_ok, "%s: dtype %s shape/numel %lld", s->name,
            st_dtype_name(t->dtype), (long long)t->numel);
    t_check(t->begin == begin && t->end == begin + bytes, "%s: offsets [%llu, %llu], want [%llu, "
            "%llu]", s->name, (unsigned long long)t->begin, (unsigned long long)t->end,
            (unsigned long long)begin, (unsigned long long)(begin + bytes));
    const uint8_t *p = st_data(f, t);
    if (s->raw) {
        t_check(memcmp(p, s->raw, (size_t)bytes) == 0, "%s: raw bytes differ", s->name);
        return;
    }
    int64_t bad_bytes = 0, bad_vals = 0;
    float *got = xmalloc((size_t)s->numel * sizeof(float) + 1);
    st_read_f32(f, t, got);
    for (int64_t i = 0; i < s->numel; i++) {
        bad_bytes += !stored_element_ok(s, p, i);
        float want = expected_value(s, i);
        /* exact: widening back to fp32 is exact and the rounding is fixed by the reference */
        bad_vals += isnan(want) ? !isnan(got[i]) : bits_of_f32(got[i]) != bits_of_f32(want);
    }
    free(got);
    t_check(bad_bytes == 0, "%s (%s): %lld of %lld stored elements differ from the reference "
            "rounding", s->name, st_dtype_name(s->dtype), (long long)bad_bytes, (long long)s->numel);
    t_check(bad_vals == 0, "%s (%s): st_read_f32 differs in %lld of %lld values", s->name,
            st_dtype_name(s->dtype), (long long)bad_vals, (long long)s->numel);
}

/* The header text of a file of our writer: length a multiple of 8, '{' first, then (when
 * present) "__metadata__", then every key in insertion order, then spaces after the last '}'. */
static void check_layout(const char *path, const char *const *ordered_names, int n_keys) {
    size_t len;
    uint8_t *b = slurp(path, &len);
    uint64_t H = 0;
    for (int i = 7; i >= 0; i--) H = (H << 8) | b[i];
    t_check(H % 8 == 0 && 8 + H <= len, "%s: header length %llu is a multiple of 8", path,
            (unsigned long long)H);
    char *h = xmalloc(H + 1);
    memcpy(h, b + 8, H);
    h[H] = '\0';
    size_t last = H;
    while (last > 0 && h[last - 1] == ' ') last--;
    t_check(h[0] == '{' && last > 0 && h[last - 1] == '}' && H - last < 8,
            "%s: header is '{'...'}' then fewer than 8 spaces", path);
    const char *at = h;
    for (int i = 0; i < n_keys; i++) {
        char key[256];
        snprintf(key, sizeof key, "\"%s\":{", ordered_names[i]);
        const char *p = strstr(at, key);
        t_check(p != NULL && (i > 0 || p == h + 1), "%s: key %s is %s", path, key,
                i ? "after the previous one" : "first");
        if (p) at = p;
    }
    free(h);
    free(b);
}

/* ---------------------------------------------------------------------------------------------- */
/* Round trip                                                                                      */

enum { N_RT = 11 };

static void rt_specs(struct spec s[N_RT], struct t_rng *r) {
    struct spec v[N_RT] = {
        {"__metadata__x", ST_F32, 3, {3, 5, 7}, 0, 0, 0},
        {"model.embed_tokens.weight", ST_BF16, 2, {13, 29}, 0, 0, 0},
        {"big.bf16", ST_BF16, 1, {100003}, 0, 0, 0}, /* 3 chunks of 32768 and a remainder */
        {"h.f16", ST_F16, 1, {1001}, 0, 0, 0},
        {"big.f16", ST_F16, 2, {7, 9371}, 0, 0, 0},
        {"ids", ST_I64, 2, {4, 3}, 0, 0, 0},
        {"counts", ST_I32, 1, {17}, 0, 0, 0},
        {"scalar", ST_F32, 0, {0}, 0, 0, 0},
        {"empty", ST_BF16, 2, {0, 5}, 0, 0, 0},
        {"four.d", ST_F16, 4, {2, 1, 3, 2}, 0, 0, 0},
        {"na\xc3\xafve \"q\" \\ \n\t end", ST_F32, 1, {1}, 0, 0, 0},
    };
    for (int i = 0; i < N_RT; i++) {
        s[i] = v[i];
        spec_fill(&s[i], r);
    }
}

static void check_rt_file(const char *path, struct spec *s, int n, const char *const *meta,
                          int n_meta) {
    struct st_file f;
    char err[512];
    if (!t_check(st_open(&f, path, err, sizeof err) == 0, "st_open(%s): %s", path, err)) return;
    t_check(f.n == n && f.n_meta == n_meta, "%s: %d tensors, %d metadata entries", path, f.n,
            f.n_meta);
    t_check((f.data - f.map) % 8 == 0, "%s: data section 8-byte aligned", path);
    uint64_t off = 0;
    for (int i = 0; i < n && i < f.n; i++) {
        t_check(strcmp(f.tensors[i].name, s[i].name) == 0, "%s: tensor %d in insertion order", path,
                i);
        check_tensor(&f, &s[i], off);
        off += (uint64_t)s[i].numel * st_dtype_size(s[i].dtype);
    }
    t_check(f.data_size == off, "%s: data section holds exactly the tensors", path);
    for (int i = 0; i < n_meta; i++) {
        const char *v = st_meta(&f, meta[2 * i]);
        t_check(v && strcmp(v, meta[2 * i + 1]) == 0, "%s: metadata \"%s\"", path, meta[2 * i]);
    }
    t_check(st_meta(&f, "absent") == NULL && st_find(&f, "absent") == NULL,
            "lookups of an absent key return NULL");
    st_close(&f);
    t_check(f.n == 0 && f.tensors == NULL && f.path == NULL, "st_close empties the file");
}

static void test_round_trip(struct t_rng *r, const char *dir) {
    struct spec s[N_RT];
    rt_specs(s, r);
    static const char *const meta[] = {"format", "pt", "note", "quote \" backslash \\ tab \t \xc3\xa9",
                                       "empty", ""};
    char path[256], tmp[300];
    path_in(path, sizeof path, dir, "rt.safetensors");
    write_specs(path, s, N_RT, meta, 3);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    t_check(access(tmp, F_OK) != 0, "no %s left behind", tmp);
    check_rt_file(path, s, N_RT, meta, 3);
    const char *keys[N_RT + 1] = {"__metadata__"};
    for (int i = 0; i < 10; i++) keys[i + 1] = s[i].name; /* the last name is escaped in the text */
    check_layout(path, keys, 11);

    /* Replace it: fewer tensors, no metadata, fresh values. */
    spec_free(s, N_RT);
    rt_specs(s, r);
    write_specs(path, s + 3, 5, NULL, 0);
    check_rt_file(path, s + 3, 5, NULL, 0);
    size_t len;
    uint8_t *b = slurp(path, &len);
    t_check(memmem(b, len, "__metadata__", 12) == NULL, "no __metadata__ key without metadata");
    free(b);

    /* No tensors at all: "{}" and 6 spaces, an empty data section. */
    write_specs(path, NULL, 0, NULL, 0);
    check_rt_file(path, NULL, 0, NULL, 0);
    b = slurp(path, &len);
    t_check(len == 16 && memcmp(b + 8, "{}      ", 8) == 0, "an empty file is 16 bytes");
    free(b);
    spec_free(s, N_RT);
}

static void test_writer_errors(void) {
    struct st_writer *w = st_writer_new();
    float x = 1;
    int64_t one = 1;
    st_writer_add(w, "x", ST_F32, 1, &one, &x, NULL);
    char err[512] = "";
    int rc = st_writer_finish(w, "/nonexistent-folder-st/x.safetensors", err, sizeof err);
    t_check(rc == -1 && strstr(err, "/nonexistent-folder-st/x.safetensors.tmp: cannot create"),
            "writing into a missing folder fails naming the file: %s", err);
    st_writer_free(w);
}

/* ---------------------------------------------------------------------------------------------- */
/* Modes for the Python cross-check                                                                */

enum { N_SAMPLE = 7 };

static int write_samples(const char *dir) {
    struct t_rng r = {20240611};
    struct spec s[N_SAMPLE] = {
        {"w.f32", ST_F32, 3, {3, 4, 5}, 0, 0, 0},
        {"w.f16", ST_F16, 1, {129}, 0, 0, 0},
        {"ids.i64", ST_I64, 2, {2, 3}, 0, 0, 0},
        {"ids.i32", ST_I32, 1, {5}, 0, 0, 0},
        {"scalar", ST_F32, 0, {0}, 0, 0, 0},
        {"empty", ST_F16, 2, {0, 3}, 0, 0, 0},
        {"w.bf16", ST_BF16, 2, {7, 9}, 0, 0, 0},
    };
    static const char *const meta[] = {"format", "pt", "producer", "infllm-train test",
                                       "quote", "a \"b\" \\ \xc3\xa9"};
    char path[4096];
    for (int i = 0; i < N_SAMPLE; i++) {
        spec_fill(&s[i], &r);
        snprintf(path, sizeof path, "%s/%s.src", dir, s[i].name);
        size_t bytes = (size_t)s[i].numel * (s[i].raw ? st_dtype_size(s[i].dtype) : 4);
        dump(path, s[i].raw ? s[i].raw : (void *)s[i].src, bytes);
    }
    snprintf(path, sizeof path, "%s/sample_all.safetensors", dir);
    write_specs(path, s, N_SAMPLE, meta, 3);
    snprintf(path, sizeof path, "%s/sample_np.safetensors", dir);
    write_specs(path, s, N_SAMPLE - 1, NULL, 0);
    spec_free(s, N_SAMPLE);
    printf("wrote %s/sample_all.safetensors and sample_np.safetensors\n", dir);
    return 0;
}

/* "tensor:NAME:DTYPE:SHAPE:EXPECTED" against the open file. */
static void read_check_tensor(const struct st_file *f, char *spec) {
    char *name = spec + 7, *dt = strchr(name, ':'), *sh = dt ? strchr(dt + 1, ':') : NULL;
    char *exp = sh ? strchr(sh + 1, ':') : NULL;
    if (!t_check(exp != NULL, "bad spec \"%s\"", spec)) return;
    *dt++ = '\0';
    *sh++ = '\0';
    *exp++ = '\0';
    const struct st_tensor *t = st_find(f, name);
    if (!t_check(t != NULL, "tensor \"%s\" present", name)) return;
    char shape[256] = "";
    for (int d = 0; d < t->ndim; d++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "x" : "",
                 (long long)t->shape[d]);
    t_check(strcmp(st_dtype_name(t->dtype), dt) == 0 && strcmp(shape, sh) == 0,
            "%s: %s [%s], expected %s [%s]", name, st_dtype_name(t->dtype), shape, dt, sh);
    size_t len, bytes = (size_t)(t->end - t->begin);
    uint8_t *want = slurp(exp, &len);
    if (t->dtype == ST_I64 || t->dtype == ST_I32) {
        t_check(len == bytes && memcmp(want, st_data(f, t), bytes) == 0, "%s: raw bytes", name);
    } else if (t_check(len == (size_t)t->numel * 4, "%s: %zu expected bytes", name, len)) {
        float *got = xmalloc(len + 1);
        st_read_f32(f, t, got);
        int64_t bad = 0;
        for (int64_t i = 0; i < t->numel; i++) {
            float w;
            memcpy(&w, want + 4 * i, 4);
            bad += isnan(w) ? !isnan(got[i]) : bits_of_f32(w) != bits_of_f32(got[i]);
        }
        t_check(bad == 0, "%s: %lld of %lld values differ", name, (long long)bad,
                (long long)t->numel);
        free(got);
    }
    free(want);
}

static int read_check(int argc, char **argv) {
    struct st_file f;
    char err[1024];
    if (st_open(&f, argv[2], err, sizeof err) != 0) {
        printf("FAIL %s\n", err);
        return 1;
    }
    int n_tensors = 0, n_meta = 0;
    for (int i = 3; i < argc; i++) {
        if (strncmp(argv[i], "meta:", 5) == 0) {
            char *eq = strchr(argv[i], '=');
            if (!t_check(eq != NULL, "bad spec \"%s\"", argv[i])) continue;
            *eq = '\0';
            const char *v = st_meta(&f, argv[i] + 5);
            t_check(v && strcmp(v, eq + 1) == 0, "metadata %s = \"%s\", expected \"%s\"",
                    argv[i] + 5, v ? v : "(absent)", eq + 1);
            n_meta++;
        } else if (strncmp(argv[i], "tensor:", 7) == 0) {
            read_check_tensor(&f, argv[i]);
            n_tensors++;
        } else {
            t_check(false, "bad spec \"%s\"", argv[i]);
        }
    }
    t_check(f.n == n_tensors && f.n_meta == n_meta, "%s holds %d tensors and %d metadata entries, "
            "expected %d and %d", argv[2], f.n, f.n_meta, n_tensors, n_meta);
    st_close(&f);
    return t_finish("read-check");
}
int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-sample") == 0) return write_samples(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "--read-check") == 0) return read_check(argc, argv);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--write-sample DIR | --read-check FILE SPEC...]\n", argv[0]);
        return 2;
    }
    char dir[64] = "/tmp/test_safetensors_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct t_rng rng = {0x5afe7e45};
    test_decode_exhaustive(&BF16);
    test_decode_exhaustive(&F16);
    test_encode_ties(&BF16);
    test_encode_ties(&F16);
    test_encode_random(&BF16, &rng);
    test_encode_random(&F16, &rng);
    test_named_edges();
    test_round_trip(&rng, dir);
    test_writer_errors();
    char path[256];
    path_in(path, sizeof path, dir, "rt.safetensors");
    unlink(path);
    t_check(rmdir(dir) == 0, "%s holds nothing else (no .tmp left behind)", dir);
    return t_finish("test_safetensors");
}
