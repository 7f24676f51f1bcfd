/*
 * testlib.h: what every test program shares: a seeded random source, tolerance comparisons
 * (|got - ref| <= atol + rtol * |ref|, NaN never passes), and a failure counter that becomes the
 * exit code.
 *
 * Usage: call the t_* checks, then `return t_finish("name");` from main (exit 1 when any failed).
 */
#ifndef INFLLM_TESTLIB_H
#define INFLLM_TESTLIB_H

#include <stdbool.h>
#include <stdint.h>

/* splitmix64-based generator: the same seed gives the same stream everywhere. */
struct t_rng {
    uint64_t state;
};
uint64_t t_rng_u64(struct t_rng *r);
double t_rng_uniform(struct t_rng *r);                  /* [0, 1) */
double t_rng_normal(struct t_rng *r);                   /* N(0, 1) */
void t_fill_normal(struct t_rng *r, float *x, int64_t n, float std);
void t_fill_uniform(struct t_rng *r, float *x, int64_t n, float lo, float hi);

/* Random values for the tensors whose init is trivial, in a model's flat fp32 weights w: the
 * projections' biases N(0, 0.3) (init 0) and the per-head q/k norm weights U(0.5, 1.5) (init 1),
 * so every term of their backward counts in a check. */
struct param_entry;
void t_randomize_extras(struct t_rng *r, const struct param_entry *entries, int n, float *w);

/* Compares n values; prints the worst element and returns false on failure (counted). */
bool t_close(const char *what, const float *got, const float *ref, int64_t n, double atol, double rtol);
bool t_close_d(const char *what, const double *got, const double *ref, int64_t n, double atol,
               double rtol);
/* Scalar and boolean checks (counted). */
bool t_check(bool ok, const char *fmt, ...);
bool t_equal_i32(const char *what, const int32_t *got, const int32_t *ref, int64_t n);

/* Worst relative difference max |a - b| / max(max |b|, tiny). */
double t_max_rel_diff(const float *a, const float *b, int64_t n);

/* Number of failed checks so far. */
int t_failures(void);

/* Prints "<name>: all N checks passed" or "<name>: F of N checks FAILED"; returns the exit code. */
int t_finish(const char *name);

#endif
