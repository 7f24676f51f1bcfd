/*
 * testlib_safetensors.c: the test tensors and files that test_safetensors.c and
 * test_safetensors_parse.c share (see testlib_safetensors.h).
 */
#include "testlib_safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

float f32_of_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

void path_in(char *out, size_t n, const char *dir, const char *file) {
    snprintf(out, n, "%s/%s", dir, file);
}

uint8_t *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    CHECKF(fp, "cannot read %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = xmalloc((size_t)n + 1);
    CHECK(fread(b, 1, (size_t)n, fp) == (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

void dump(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    CHECKF(fp, "cannot write %s", path);
    CHECK(fwrite(p, 1, n, fp) == n);
    fclose(fp);
}

static int64_t numel_of(const struct spec *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

/* Values that exercise rounding: normals over 2^-30 .. 2^20 (f16 subnormals and overflow),
 * exact ties, and, every 97th, an infinity, a NaN or an fp32 subnormal. */
static void fill_values(struct t_rng *r, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)ldexp(t_rng_normal(r), (int)(t_rng_u64(r) % 50) - 30);
        if (i % 97 == 5) x[i] = (i / 97) % 2 ? INFINITY : -INFINITY;
        if (i % 97 == 11) x[i] = NAN;
        if (i % 97 == 17) x[i] = f32_of_bits(0x00018000u);
        if (i % 97 == 23) x[i] = f32_of_bits(0x3f801000u); /* f16 tie */
        if (i % 97 == 29) x[i] = f32_of_bits(0x3f808000u); /* bf16 tie */
    }
}

void spec_fill(struct spec *s, struct t_rng *r) {
    s->numel = numel_of(s);
    size_t bytes = (size_t)s->numel * st_dtype_size(s->dtype);
    if (s->dtype == ST_I64 || s->dtype == ST_I32) {
        s->raw = xmalloc(bytes);
        uint8_t *b = s->raw;
        for (size_t i = 0; i < bytes; i++) b[i] = (uint8_t)t_rng_u64(r);
        if (s->dtype == ST_I64 && s->numel >= 4) {
            int64_t v[4] = {INT64_MIN, INT64_MAX, -1, ((int64_t)1 << 53) + 1};
            memcpy(b, v, sizeof v);
        }
    } else {
        s->src = xmalloc((size_t)s->numel * sizeof(float) + 1);
        fill_values(r, s->src, s->numel);
    }
}

void spec_free(struct spec *s, int n) {
    for (int i = 0; i < n; i++) {
        free(s[i].src);
        free(s[i].raw);
        s[i].src = NULL;
        s[i].raw = NULL;
    }
}

void write_specs(const char *path, struct spec *s, int n, const char *const *meta, int n_meta) {
    struct st_writer *w = st_writer_new();
    for (int i = 0; i < n_meta; i++) st_writer_meta(w, meta[2 * i], meta[2 * i + 1]);
    for (int i = 0; i < n; i++)
        st_writer_add(w, s[i].name, s[i].dtype, s[i].ndim, s[i].shape, s[i].src, s[i].raw);
    char err[512];
    int rc = st_writer_finish(w, path, err, sizeof err);
    CHECKF(rc == 0, "writing %s: %s", path, err);
    st_writer_free(w);
}

