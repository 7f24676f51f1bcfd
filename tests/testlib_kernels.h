/*
 * testlib_kernels.h: what the CPU kernel tests test_kernels_dense.c and test_kernels_indexed.c
 * share: their tolerances, fp32 / float64 buffers, a central finite-difference gradient of a
 * float64 forward, and the check that a kernel gives bitwise the same outputs on 1, 2 and 3 OpenMP
 * threads.
 */
#ifndef INFLLM_TESTLIB_KERNELS_H
#define INFLLM_TESTLIB_KERNELS_H

#include <stdint.h>

#include "testlib.h"

/* Tolerances (inputs are O(1): unit normals unless stated).
 * - Sums of K fp32 products of unit-size terms: rounding grows like u * K / sqrt(2) (u = 6e-8),
 *   about 2.5e-5 for K = 600; SUM_TOL_PER_TERM * K allows ~20x that. A lost or wrong term is O(1).
 * - Elementwise fp32 formulas of a few operations (and exp within 1.5 ulp): a few ulp, so
 *   relative 2e-6 (16 ulp), with an absolute floor where terms can cancel.
 * - Finite differences in float64 with h = 1e-6 (fd_grad): truncation ~h^2 |f'''| / 6, below
 *   1e-8 relative here; rounding ~1e-16 |out| / h per output that depends on the perturbed input,
 *   measured <= 1e-8 on these problems: FD_ATOL = 2e-8 on top of the fp32 tolerances.
 * - A prefill of O(1) adds one fp32 rounding, 6e-8 relative, inside every RTOL below. */
#define SUM_TOL_PER_TERM 1e-6
#define ELEM_RTOL 2e-6
#define ELEM_ATOL 1e-6
#define FD_STEP 1e-6
#define FD_ATOL 2e-8

/* Buffers of n elements (xmalloc: abort when out of memory). */
float *falloc(int64_t n);
double *dalloc(int64_t n);
/* n values N(0, std^2) from rng. */
float *randn(struct t_rng *rng, int64_t n, float std);
float *copy_f(const float *x, int64_t n);
double *to_double(const float *x, int64_t n);

/* got (fp32) against ref (float64): |got - ref| <= atol + rtol |ref|. */
void check_d(const char *what, const float *got, const double *ref, int64_t n, double atol,
             double rtol);

/* ref[i] += prefill[i]: the expected value of an accumulating output. */
void add_prefill(double *ref, const float *prefill, int64_t n);

/* A float64 forward for finite differences: fills out from the inputs held in ctx. */
typedef void (*forward64_fn)(const void *ctx, double *out);

struct fd_problem {
    forward64_fn fwd;
    const void *ctx;
    const double *r; /* (n_out) weights of the loss L = sum(r .* out) */
    int64_t n_out;
};

/* grad[i] = dL/dx[i] for i < n by central differences; x is an input of p->fwd, perturbed in place
 * and restored. L(x+h) - L(x-h) is summed as r .* (out(x+h) - out(x-h)): outputs that do not
 * depend on x[i] cancel exactly, so the noise is only that of the outputs that do. */
void fd_grad(double *grad, double *x, int64_t n, const struct fd_problem *p);

/* Thread-count independence: run() restores its outputs' initial values, then calls the kernel;
 * the outputs after 2 and 3 threads must be bitwise those after 1 thread. */
struct det_case {
    const char *name;
    void (*run)(void *ctx);
    void *ctx;
    const float *out[3]; /* outputs to compare (NULL-terminated) */
    int64_t n[3];
};

void check_threads(const struct det_case *c);

#endif
