/*
 * testlib_kernels.c: the helpers of the CPU kernel tests (see testlib_kernels.h).
 */
#include "testlib_kernels.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

float *falloc(int64_t n) { return xmalloc((size_t)n * sizeof(float)); }
double *dalloc(int64_t n) { return xmalloc((size_t)n * sizeof(double)); }

float *randn(struct t_rng *rng, int64_t n, float std) {
    float *x = falloc(n);
    t_fill_normal(rng, x, n, std);
    return x;
}

float *copy_f(const float *x, int64_t n) {
    float *y = falloc(n);
    memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

double *to_double(const float *x, int64_t n) {
    double *y = dalloc(n);
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

void check_d(const char *what, const float *got, const double *ref, int64_t n, double atol,
             double rtol) {
    double *g = to_double(got, n);
    t_close_d(what, g, ref, n, atol, rtol);
    free(g);
}

void add_prefill(double *ref, const float *prefill, int64_t n) {
    for (int64_t i = 0; i < n; i++) ref[i] += prefill[i];
}

void fd_grad(double *grad, double *x, int64_t n, const struct fd_problem *p) {
    double *outp = dalloc(p->n_out), *outm = dalloc(p->n_out);
    for (int64_t i = 0; i < n; i++) {
        double x0 = x[i], xp = x0 + FD_STEP, xm = x0 - FD_STEP;
        x[i] = xp;
        p->fwd(p->ctx, outp);
        x[i] = xm;
        p->fwd(p->ctx, outm);
        x[i] = x0;
        double dl = 0;
        for (int64_t j = 0; j < p->n_out; j++) dl += p->r[j] * (outp[j] - outm[j]);
        grad[i] = dl / (xp - xm);
    }
    free(outp), free(outm);
}

void check_threads(const struct det_case *c) {
    int saved = omp_get_max_threads();
    float *ref[3] = {0};
    omp_set_num_threads(1);
    c->run(c->ctx);
    for (int k = 0; k < 3 && c->out[k]; k++) ref[k] = copy_f(c->out[k], c->n[k]);
    for (int nt = 2; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        c->run(c->ctx);
        for (int k = 0; k < 3 && c->out[k]; k++)
            t_check(!memcmp(ref[k], c->out[k], (size_t)c->n[k] * sizeof(float)),
                    "threads %s: output %d with %d threads differs from 1 thread", c->name, k, nt);
    }
    omp_set_num_threads(saved);
    for (int k = 0; k < 3; k++) free(ref[k]);
}
