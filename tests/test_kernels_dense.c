/*
 * test_kernels_dense.c: the fp32 CPU kernels of the dense token-local layers (matmul, bias,
 * rmsnorm, swiglu) against float64 re-implementations written here. The kernels that index by token
 * id, position or target (embedding, rope, cross-entropy) are test_kernels_indexed.c; the
 * tolerances and the finite-difference and thread checks both use are in testlib_kernels.h.
 *
 *   forward      every kernel against its float64 forward, on sizes that are not multiples of the
 *                GEMM tiles (8 x 32 register tiles, 256-deep K blocks, 128 x 512 packed blocks) or
 *                of the 16-wide vectors, and on larger ones that cross every block boundary.
 *   backward     every input with a gradient (matmul inp and w with alpha != 1, rmsnorm x and w,
 *                swiglu gate and up) against central finite differences (h = 1e-6) of the float64
 *                forward of L = sum(r .* out) for a random r; on the larger sizes against a float64
 *                analytic backward (itself validated by the finite differences).
 *   accumulate   backward outputs prefilled with random values end as prefill + gradient; the
 *                matmul forward with accumulate adds into a prefilled out; bias forward and
 *                backward add into their outputs.
 *   special      matmul_backward with one output NULL.
 *   threads      every kernel bitwise identical with 1, 2 and 3 OpenMP threads.
 *   timing       GFLOP/s of the three GEMMs on the quickstart's shapes (printed, never asserted).
 *
 * Dimensions: N rows (tokens), IC / OC input / output channels, C channels.
 */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bias.h"
#include "check.h"
#include "matmul.h"
#include "rmsnorm.h"
#include "swiglu.h"
#include "testlib.h"
#include "testlib_kernels.h"

/* ---- matmul ---- */

struct mm64 {
    double *inp, *w;        /* (N, IC), (OC, IC) */
    const double *prefill;  /* (N, OC) or NULL */
    int64_t N;
    int IC, OC;
    double alpha;
};

/* out = prefill + alpha * inp @ w^T */
static void mm64_forward(const void *ctx, double *out) {
    const struct mm64 *m = ctx;
    for (int64_t n = 0; n < m->N; n++)
        for (int o = 0; o < m->OC; o++) {
            double s = 0;
            const double *x = m->inp + n * m->IC, *w = m->w + (int64_t)o * m->IC;
            for (int i = 0; i < m->IC; i++) s += x[i] * w[i];
            out[n * m->OC + o] = (m->prefill ? m->prefill[n * m->OC + o] : 0) + m->alpha * s;
        }
}

/* dinp = alpha * dout @ w, dw = alpha * dout^T @ inp (overwritten). */
static void mm64_backward(const struct mm64 *m, const double *dout, double *dinp, double *dw) {
    for (int64_t n = 0; n < m->N; n++)
        for (int i = 0; i < m->IC; i++) {
            double s = 0;
            for (int o = 0; o < m->OC; o++) s += dout[n * m->OC + o] * m->w[(int64_t)o * m->IC + i];
            dinp[n * m->IC + i] = m->alpha * s;
        }
    for (int o = 0; o < m->OC; o++)
        for (int i = 0; i < m->IC; i++) {
            double s = 0;
            for (int64_t n = 0; n < m->N; n++) s += dout[n * m->OC + o] * m->inp[n * m->IC + i];
            dw[(int64_t)o * m->IC + i] = m->alpha * s;
        }
}

/* Forward (overwrite and accumulate) and backward of one shape; gradients against finite
 * differences when fd, else against mm64_backward. */
static void test_matmul_shape(struct t_rng *rng, int64_t N, int IC, int OC, float alpha, bool fd) {
    char what[160];
    int64_t nin = N * IC, nw = (int64_t)OC * IC, nout = N * OC;
    float *inp = randn(rng, nin, 1), *w = randn(rng, nw, 1), *dout = randn(rng, nout, 1);
    float *prefill = randn(rng, nout, 1);
    struct mm64 m = {to_double(inp, nin), to_double(w, nw), NULL, N, IC, OC, alpha};
    double *ref = dalloc(nout);
    double fatol = SUM_TOL_PER_TERM * IC * fabs(alpha);
    for (int acc = 0; acc <= 1; acc++) {
        float *out = copy_f(prefill, nout);
        matmul_forward_cpu(out, inp, w, N, IC, OC, alpha, acc);
        double *pd = acc ? to_double(prefill, nout) : NULL;
        m.prefill = pd;
        mm64_forward(&m, ref);
        snprintf(what, sizeof what, "matmul forward N=%lld IC=%d OC=%d alpha=%g accumulate=%d",
                 (long long)N, IC, OC, alpha, acc);
        check_d(what, out, ref, nout, fatol, ELEM_RTOL);
        m.prefill = NULL;
        free(pd), free(out);
    }

    double *gin = dalloc(nin), *gw = dalloc(nw);
    double *r = to_double(dout, nout);
    if (fd) {
        struct fd_problem p = {mm64_forward, &m, r, nout};
        fd_grad(gin, m.inp, nin, &p);
        fd_grad(gw, m.w, nw, &p);
    } else {
        mm64_backward(&m, r, gin, gw);
    }
    float *dinp = randn(rng, nin, 1), *dw = randn(rng, nw, 1);
    add_prefill(gin, dinp, nin);
    add_prefill(gw, dw, nw);
    matmul_backward_cpu(dinp, dw, dout, inp, w, N, IC, OC, alpha);
    double fd_atol = fd ? FD_ATOL : 0;
    snprintf(what, sizeof what, "matmul dinp N=%lld IC=%d OC=%d (%s)", (long long)N, IC, OC,
             fd ? "finite differences" : "float64 backward");
    check_d(what, dinp, gin, nin, SUM_TOL_PER_TERM * OC * fabs(alpha) + fd_atol, ELEM_RTOL);
    snprintf(what, sizeof what, "matmul dw N=%lld IC=%d OC=%d (%s)", (long long)N, IC, OC,
             fd ? "finite differences" : "float64 backward");
    check_d(what, dw, gw, nw, SUM_TOL_PER_TERM * N * fabs(alpha) + fd_atol, ELEM_RTOL);

    free(inp), free(w), free(dout), free(prefill), free(m.inp), free(m.w), free(ref);
    free(gin), free(gw), free(r), free(dinp), free(dw);
}

/* matmul_backward with dinp or dw NULL computes the other exactly as when both are asked for. */
static void test_matmul_null_outputs(struct t_rng *rng) {
    int64_t N = 45;
    int IC = 70, OC = 33;
    float *inp = randn(rng, N * IC, 1), *w = randn(rng, (int64_t)OC * IC, 1);
    float *dout = randn(rng, N * OC, 1), *dinp = randn(rng, N * IC, 1);
    float *dw = randn(rng, (int64_t)OC * IC, 1);
    float *dinp1 = copy_f(dinp, N * IC), *dw1 = copy_f(dw, (int64_t)OC * IC);
    matmul_backward_cpu(dinp, dw, dout, inp, w, N, IC, OC, 0.5f);
    matmul_backward_cpu(dinp1, NULL, dout, inp, w, N, IC, OC, 0.5f);
    matmul_backward_cpu(NULL, dw1, dout, inp, w, N, IC, OC, 0.5f);
    t_check(!memcmp(dinp, dinp1, (size_t)(N * IC) * sizeof(float)),
            "matmul backward with dw NULL: dinp differs");
    t_check(!memcmp(dw, dw1, (size_t)OC * IC * sizeof(float)),
            "matmul backward with dinp NULL: dw differs");
    free(inp), free(w), free(dout), free(dinp), free(dw), free(dinp1), free(dw1);
}

struct mm_det {
    const float *inp, *w, *dout, *prefill_out, *prefill_dinp, *prefill_dw;
    float *out, *dinp, *dw;
    int64_t N;
    int IC, OC;
};

static void mm_det_run(void *ctx) {
    struct mm_det *d = ctx;
    memcpy(d->out, d->prefill_out, (size_t)(d->N * d->OC) * sizeof(float));
    memcpy(d->dinp, d->prefill_dinp, (size_t)(d->N * d->IC) * sizeof(float));
    memcpy(d->dw, d->prefill_dw, (size_t)d->OC * d->IC * sizeof(float));
    matmul_forward_cpu(d->out, d->inp, d->w, d->N, d->IC, d->OC, 0.7f, true);
    matmul_backward_cpu(d->dinp, d->dw, d->dout, d->inp, d->w, d->N, d->IC, d->OC, 0.7f);
}

static void test_matmul_threads(struct t_rng *rng, int64_t N, int IC, int OC) {
    struct mm_det d = {.N = N, .IC = IC, .OC = OC};
    d.inp = randn(rng, N * IC, 1), d.w = randn(rng, (int64_t)OC * IC, 1);
    d.dout = randn(rng, N * OC, 1), d.prefill_out = randn(rng, N * OC, 1);
    d.prefill_dinp = randn(rng, N * IC, 1), d.prefill_dw = randn(rng, (int64_t)OC * IC, 1);
    d.out = falloc(N * OC);
    d.dinp = falloc(N * IC);
    d.dw = falloc((int64_t)OC * IC);
    char name[96];
    snprintf(name, sizeof name, "matmul N=%lld IC=%d OC=%d", (long long)N, IC, OC);
    struct det_case c = {name, mm_det_run, &d, {d.out, d.dinp, d.dw},
                         {N * OC, N * IC, (int64_t)OC * IC}};
    check_threads(&c);
    free((void *)d.inp), free((void *)d.w), free((void *)d.dout), free((void *)d.prefill_out);
    free((void *)d.prefill_dinp), free((void *)d.prefill_dw), free(d.out), free(d.dinp), free(d.dw);
}

static void test_matmul(struct t_rng *rng) {
    /*                    N    IC   OC   alpha  finite differences */
    test_matmul_shape(rng, 37, 19, 53, 0.75f, true);
    test_matmul_shape(rng, 1, 1, 1, -2.0f, true);
    test_matmul_shape(rng, 9, 40, 70, 1.0f, true);
    test_matmul_shape(rng, 333, 600, 530, 0.3f, false); /* several K, M and N blocks, edge tiles */
    test_matmul_shape(rng, 40, 64, 3000, 1.5f, false);  /* lm-head-like: threads split OC */
    test_matmul_shape(rng, 1100, 48, 24, 1.0f, false);  /* dw reduces over 1100 rows */
    test_matmul_null_outputs(rng);
    test_matmul_threads(rng, 97, 45, 263); /* just above the GEMM's 2^20-FMA parallel threshold */
    test_matmul_threads(rng, 333, 600, 530);
    test_matmul_threads(rng, 40, 64, 3000);
}

/* ---- rmsnorm ---- */

struct rms64 {
    double *x, *w; /* (N, C), (C) */
    int64_t N;
    int C;
    double eps;
};

/* out = x / sqrt(mean(x^2) + eps) * w; rstd (N) too when not NULL. */
static void rms64_eval(const struct rms64 *m, double *out, double *rstd) {
    for (int64_t n = 0; n < m->N; n++) {
        const double *x = m->x + n * m->C;
        double ms = 0;
        for (int c = 0; c < m->C; c++) ms += x[c] * x[c];
        double r = 1.0 / sqrt(ms / m->C + m->eps);
        if (rstd) rstd[n] = r;
        for (int c = 0; c < m->C; c++) out[n * m->C + c] = x[c] * r * m->w[c];
    }
}

static void rms64_forward(const void *ctx, double *out) { rms64_eval(ctx, out, NULL); }

/* Analytic float64 gradients of sum(g .* out): dx (N, C), dw (C), overwritten. */
static void rms64_backward(const struct rms64 *m, const double *g, double *dx, double *dw) {
    for (int c = 0; c < m->C; c++) dw[c] = 0;
    for (int64_t n = 0; n < m->N; n++) {
        const double *x = m->x + n * m->C, *gr = g + n * m->C;
        double ms = 0, gwx = 0;
        for (int c = 0; c < m->C; c++) ms += x[c] * x[c], gwx += gr[c] * m->w[c] * x[c];
        double r = 1.0 / sqrt(ms / m->C + m->eps);
        for (int c = 0; c < m->C; c++) {
            dx[n * m->C + c] = gr[c] * m->w[c] * r - x[c] * r * r * r * gwx / m->C;
            dw[c] += gr[c] * x[c] * r;
        }
    }
}

/* x ~ N(0, x_std^2): a small x_std makes eps matter. */
static void test_rmsnorm_shape(struct t_rng *rng, int64_t N, int C, float x_std, bool fd) {
    char what[128];
    int64_t nx = N * C;
    float eps = 1e-5f;
    float *x = randn(rng, nx, x_std), *w = falloc(C), *g = randn(rng, nx, 1);
    t_fill_uniform(rng, w, C, 0.5f, 1.5f);
    struct rms64 m = {to_double(x, nx), to_double(w, C), N, C, eps};
    double *ref = dalloc(nx), *rref = dalloc(N);
    rms64_eval(&m, ref, rref);
    float *out = falloc(nx), *rstd = falloc(N);
    rmsnorm_forward_cpu(out, rstd, x, w, N, C, eps);
    snprintf(what, sizeof what, "rmsnorm forward N=%lld C=%d x_std=%g", (long long)N, C, x_std);
    check_d(what, out, ref, nx, 1e-12, ELEM_RTOL);
    snprintf(what, sizeof what, "rmsnorm rstd N=%lld C=%d x_std=%g", (long long)N, C, x_std);
    check_d(what, rstd, rref, N, 0, ELEM_RTOL);

    double *gx = dalloc(nx), *gw = dalloc(C);
    double *r = to_double(g, nx);
    if (fd) {
        struct fd_problem p = {rms64_forward, &m, r, nx};
        fd_grad(gx, m.x, nx, &p);
        fd_grad(gw, m.w, C, &p);
    } else {
        rms64_backward(&m, r, gx, gw);
    }
    float *dx = randn(rng, nx, 1), *dw = randn(rng, C, 1);
    add_prefill(gx, dx, nx);
    add_prefill(gw, dw, C);
    rmsnorm_backward_cpu(dx, dw, g, x, w, rstd, N, C);
    double fd_atol = fd ? FD_ATOL : 0;
    /* dx: a difference of two terms of size r |w g| (~1/x_std), each with a few roundings; dw: a
     * float64 sum over rows of fp32-rounded rstd (relative 6e-8 per term, N terms of size ~1). */
    snprintf(what, sizeof what, "rmsnorm dx N=%lld C=%d x_std=%g", (long long)N, C, x_std);
    check_d(what, dx, gx, nx, 2 * ELEM_ATOL / x_std + fd_atol, ELEM_RTOL);
    snprintf(what, sizeof what, "rmsnorm dw N=%lld C=%d x_std=%g", (long long)N, C, x_std);
    check_d(what, dw, gw, C, SUM_TOL_PER_TERM * N + fd_atol, ELEM_RTOL);

    free(x), free(w), free(g), free(m.x), free(m.w), free(ref), free(rref), free(out), free(rstd);
    free(gx), free(gw), free(r), free(dx), free(dw);
}

struct rms_det {
    const float *x, *w, *g, *prefill_dx, *prefill_dw;
    float *out, *rstd, *dx, *dw;
    int64_t N;
    int C;
};

static void rms_det_run(void *ctx) {
    struct rms_det *d = ctx;
    memcpy(d->dx, d->prefill_dx, (size_t)(d->N * d->C) * sizeof(float));
    memcpy(d->dw, d->prefill_dw, (size_t)d->C * sizeof(float));
    rmsnorm_forward_cpu(d->out, d->rstd, d->x, d->w, d->N, d->C, 1e-6f);
    rmsnorm_backward_cpu(d->dx, d->dw, d->g, d->x, d->w, d->rstd, d->N, d->C);
}

static void test_rmsnorm(struct t_rng *rng) {
    test_rmsnorm_shape(rng, 37, 67, 3.0f, true);
    test_rmsnorm_shape(rng, 3, 5, 1.0f, true);
    test_rmsnorm_shape(rng, 20, 40, 0.004f, true); /* mean(x^2) ~ eps = 1e-5 */
    test_rmsnorm_shape(rng, 700, 1000, 1.0f, false);
    int64_t N = 300;
    int C = 333;
    struct rms_det d = {.N = N, .C = C};
    d.x = randn(rng, N * C, 1), d.w = randn(rng, C, 1), d.g = randn(rng, N * C, 1);
    d.prefill_dx = randn(rng, N * C, 1), d.prefill_dw = randn(rng, C, 1);
    d.out = falloc(N * C), d.rstd = falloc(N);
    d.dx = falloc(N * C), d.dw = falloc(C);
    struct det_case c = {"rmsnorm", rms_det_run, &d, {d.out, d.dx, d.dw}, {N * C, N * C, C}};
    check_threads(&c);
    free((void *)d.x), free((void *)d.w), free((void *)d.g), free((void *)d.prefill_dx);
    free((void *)d.prefill_dw), free(d.out), free(d.rstd), free(d.dx), free(d.dw);
}

/* ---- bias ---- */

struct bias_det {
    const float *b, *dy, *prefill_y, *prefill_db;
    float *y, *db;
    int64_t N;
    int C;
};

static void bias_det_run(void *ctx) {
    struct bias_det *d = ctx;
    memcpy(d->y, d->prefill_y, (size_t)(d->N * d->C) * sizeof(float));
    memcpy(d->db, d->prefill_db, (size_t)d->C * sizeof(float));
    bias_forward_cpu(d->y, d->b, d->N, d->C, 0.7f);
    bias_backward_cpu(d->db, d->dy, d->N, d->C, 0.7f);
}

/* y += s b on every row; db += s * column sums of dy: linear, so the float64 references are exact
 * formulas (a finite difference would only reproduce them). Both outputs accumulate. */
static void test_bias_shape(struct t_rng *rng, int64_t N, int C) {
    char what[96];
    struct bias_det d = {.N = N, .C = C};
    d.b = randn(rng, C, 1), d.dy = randn(rng, N * C, 1);
    d.prefill_y = randn(rng, N * C, 1), d.prefill_db = randn(rng, C, 1);
    d.y = falloc(N * C), d.db = falloc(C);
    bias_det_run(&d);
    double *ry = dalloc(N * C), *rdb = dalloc(C);
    for (int c = 0; c < C; c++) rdb[c] = 0;
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            ry[n * C + c] = (double)d.prefill_y[n * C + c] + 0.7 * (double)d.b[c];
            rdb[c] += 0.7 * (double)d.dy[n * C + c];
        }
    add_prefill(rdb, d.prefill_db, C);
    snprintf(what, sizeof what, "bias forward N=%lld C=%d", (long long)N, C);
    check_d(what, d.y, ry, N * C, ELEM_ATOL, ELEM_RTOL);
    snprintf(what, sizeof what, "bias backward N=%lld C=%d", (long long)N, C);
    check_d(what, d.db, rdb, C, SUM_TOL_PER_TERM * (double)N, ELEM_RTOL);
    struct det_case c = {"bias", bias_det_run, &d, {d.y, d.db}, {N * C, C}};
    check_threads(&c);
    free(ry), free(rdb), free((void *)d.b), free((void *)d.dy), free((void *)d.prefill_y);
    free((void *)d.prefill_db), free(d.y), free(d.db);
}

static void test_bias(struct t_rng *rng) {
    test_bias_shape(rng, 1, 1);
    test_bias_shape(rng, 37, 67);
    test_bias_shape(rng, 1500, 333); /* several 16-channel blocks per thread, a partial last one */
}

/* ---- swiglu ---- */

struct swiglu64 {
    double *gate, *up; /* (n) */
    int64_t n;
};

static void swiglu64_forward(const void *ctx, double *out) {
    const struct swiglu64 *m = ctx;
    for (int64_t i = 0; i < m->n; i++) out[i] = m->gate[i] / (1.0 + exp(-m->gate[i])) * m->up[i];
}

/* Gradients of sum(g .* out) (overwritten). */
static void swiglu64_backward(const struct swiglu64 *m, const double *g, double *dgate,
                              double *dup) {
    for (int64_t i = 0; i < m->n; i++) {
        double a = m->gate[i], sig = 1.0 / (1.0 + exp(-a));
        dgate[i] = g[i] * m->up[i] * (sig + a * sig * (1.0 - sig));
        dup[i] = g[i] * a * sig;
    }
}

static void test_swiglu_shape(struct t_rng *rng, int64_t n, bool fd) {
    char what[128];
    float *gate = randn(rng, n, 3), *up = randn(rng, n, 1), *g = randn(rng, n, 1);
    /* saturated gates: exp overflows or underflows in fp32 */
    float extremes[] = {-100.0f, -88.5f, -87.2f, -30.0f, 30.0f, 88.0f, 100.0f, 0.0f};
    for (int k = 0; k < 8 && k < n; k++) gate[k * (n / 8)] = extremes[k];
    struct swiglu64 m = {to_double(gate, n), to_double(up, n), n};
    double *ref = dalloc(n);
    swiglu64_forward(&m, ref);
    float *out = falloc(n);
    swiglu_forward_cpu(out, gate, up, n);
    snprintf(what, sizeof what, "swiglu forward n=%lld", (long long)n);
    check_d(what, out, ref, n, 1e-30, ELEM_RTOL);

    double *ggate = dalloc(n), *gup = dalloc(n);
    double *r = to_double(g, n);
    if (fd) {
        struct fd_problem p = {swiglu64_forward, &m, r, n};
        fd_grad(ggate, m.gate, n, &p);
        fd_grad(gup, m.up, n, &p);
    } else {
        swiglu64_backward(&m, r, ggate, gup);
    }
    float *dgate = randn(rng, n, 1), *dup = randn(rng, n, 1);
    add_prefill(ggate, dgate, n);
    add_prefill(gup, dup, n);
    swiglu_backward_cpu(dgate, dup, g, gate, up, n);
    double fd_atol = fd ? FD_ATOL : 0;
    /* dgate has the factor 1 + a (1 - s), which cancels near a = -1.28: an absolute floor of a
     * few roundings of |dout up s| (1 + |a (1 - s)|) <= 16 * 2 for inputs within 4 sigma. */
    snprintf(what, sizeof what, "swiglu dgate n=%lld", (long long)n);
    check_d(what, dgate, ggate, n, 4 * ELEM_ATOL + fd_atol, ELEM_RTOL);
    snprintf(what, sizeof what, "swiglu dup n=%lld", (long long)n);
    check_d(what, dup, gup, n, ELEM_ATOL + fd_atol, ELEM_RTOL);
    free(gate), free(up), free(g), free(m.gate), free(m.up), free(ref), free(out), free(ggate);
    free(gup), free(r), free(dgate), free(dup);
}

struct swiglu_det {
    const float *gate, *up, *g, *prefill;
    float *out, *dgate, *dup;
    int64_t n;
};

static void swiglu_det_run(void *ctx) {
    struct swiglu_det *d = ctx;
    memcpy(d->dgate, d->prefill, (size_t)d->n * sizeof(float));
    memcpy(d->dup, d->prefill, (size_t)d->n * sizeof(float));
    swiglu_forward_cpu(d->out, d->gate, d->up, d->n);
    swiglu_backward_cpu(d->dgate, d->dup, d->g, d->gate, d->up, d->n);
}

static void test_swiglu(struct t_rng *rng) {
    test_swiglu_shape(rng, 1000, true);
    test_swiglu_shape(rng, 7, true);
    test_swiglu_shape(rng, 100003, false);
    int64_t n = 50021;
    struct swiglu_det d = {.n = n};
    d.gate = randn(rng, n, 3), d.up = randn(rng, n, 1), d.g = randn(rng, n, 1);
    d.prefill = randn(rng, n, 1);
    d.out = falloc(n);
    d.dgate = falloc(n), d.dup = falloc(n);
    struct det_case c = {"swiglu", swiglu_det_run, &d, {d.out, d.dgate, d.dup}, {n, n, n}};
    check_threads(&c);
    free((void *)d.gate), free((void *)d.up), free((void *)d.g), free((void *)d.prefill);
    free(d.out), free(d.dgate), free(d.dup);
}

/* ---- timing (printed only) ---- */

static double best_seconds(int which, float *out, float *dinp, float *dw, const float *inp,
                           const float *w, const float *dout, int64_t N, int IC, int OC) {
    double best = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = omp_get_wtime();
        if (which == 0) matmul_forward_cpu(out, inp, w, N, IC, OC, 1.0f, false);
        if (which == 1) matmul_backward_cpu(dinp, NULL, dout, inp, w, N, IC, OC, 1.0f);
        if (which == 2) matmul_backward_cpu(NULL, dw, dout, inp, w, N, IC, OC, 1.0f);
        double dt = omp_get_wtime() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

static void bench_matmul(struct t_rng *rng) {
    static const int shapes[][3] = {{4096, 256, 256}, {4096, 256, 1024}, {4096, 1024, 256},
                                    {512, 256, 32000}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t N = shapes[s][0];
        int IC = shapes[s][1], OC = shapes[s][2];
        float *inp = randn(rng, N * IC, 1), *w = randn(rng, (int64_t)OC * IC, 1);
        float *dout = randn(rng, N * OC, 1), *out = falloc(N * OC);
        float *dinp = randn(rng, N * IC, 1), *dw = randn(rng, (int64_t)OC * IC, 1);
        double gflop = 2.0 * (double)N * IC * OC * 1e-9, g[3];
        for (int k = 0; k < 3; k++)
            g[k] = gflop / best_seconds(k, out, dinp, dw, inp, w, dout, N, IC, OC);
        printf("timing: matmul N=%5lld IC=%4d OC=%5d, %d threads: forward %6.1f  dinp %6.1f  "
               "dw %6.1f GFLOP/s\n",
               (long long)N, IC, OC, omp_get_max_threads(), g[0], g[1], g[2]);
        free(inp), free(w), free(dout), free(out), free(dinp), free(dw);
    }
}

int main(void) {
    struct t_rng rng = {.state = 0x6b65726e656c73ull};
    test_matmul(&rng);
    test_rmsnorm(&rng);
    test_bias(&rng);
    test_swiglu(&rng);
    bench_matmul(&rng);
    return t_finish("test_kernels_dense");
}
