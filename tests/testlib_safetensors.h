/*
 * testlib_safetensors.h: what test_safetensors.c (conversions, writer round trip) and
 * test_safetensors_parse.c (the reader against hostile files) share: test tensors with values that
 * exercise the bf16/f16 rounding, written to a file through our writer, and whole-file I/O.
 */
#ifndef INFLLM_TESTLIB_SAFETENSORS_H
#define INFLLM_TESTLIB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"
#include "testlib.h"

/* One tensor of a test file: its spec, fp32 source (float dtypes) or raw bytes (ints). */
struct spec {
    const char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    float *src;   /* (numel) or NULL */
    void *raw;    /* (numel * dtype size) or NULL */
    int64_t numel;
};

/* Sets numel and fills src (float dtypes: normals over 2^-30 .. 2^20, exact bf16/f16 ties, and
 * every 97th an infinity, a NaN or an fp32 subnormal) or raw (ints: random bytes, I64 extremes
 * first) from r. */
void spec_fill(struct spec *s, struct t_rng *r);
/* Frees src and raw of s[0, n) and sets them to NULL. */
void spec_free(struct spec *s, int n);
/* Writes s[0, n) and n_meta key/value pairs meta[2i], meta[2i+1] to path; aborts on failure. */
void write_specs(const char *path, struct spec *s, int n, const char *const *meta, int n_meta);

/* The float whose bits are u. */
float f32_of_bits(uint32_t u);

/* out = dir/file. */
void path_in(char *out, size_t n, const char *dir, const char *file);
/* The whole file (len bytes, one more allocated); aborts when it cannot be read. */
uint8_t *slurp(const char *path, size_t *len);
/* Writes n bytes of p to path; aborts on failure. */
void dump(const char *path, const void *p, size_t n);

#endif
