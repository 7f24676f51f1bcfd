/*
 * test_kernels.c: the fp32 CPU kernels of the token-local layers (embedding, rmsnorm, rope, matmul,
 * bias, swiglu, cross-entropy) against float64 re-implementations written here.
 *
 *   forward      every kernel against its float64 forward, on sizes that are not multiples of the
 *                GEMM tiles (8 x 32 register tiles, 256-deep K blocks, 128 x 512 packed blocks) or
 *                of the 16-wide vectors, and on larger ones that cross every block boundary.
 *   backward     every input with a gradient (matmul inp and w with alpha != 1, rmsnorm x and w,
 *                swiglu gate and up, embedding wte with repeated ids and scale != 1, rope on
 *                q-style rows wider than H * D with LongRoPE factors, mscale != 1 and two separate
 *                position ranges, cross-entropy logits with a target -1 row, a shifted row and
 *                V >= 50000) against central finite differences (h = 1e-6) of the float64 forward
 *                of L = sum(r .* out) for a random r; on the larger sizes against a float64
 *                analytic backward (itself validated by the finite differences).
 *   accumulate   backward outputs prefilled with random values end as prefill + gradient; the
 *                matmul forward with accumulate adds into a prefilled out; rope works in place and
 *                leaves the gaps between rows untouched.
 *   special      matmul_backward with one output NULL; cross-entropy with dlogits == logits and
 *                with dlogits NULL (bitwise the same losses / gradients); rope_table_init against a
 *                direct double computation; rope forward then backward with mscale = 1 returns x.
 *   threads      every kernel bitwise identical with 1, 2 and 3 OpenMP threads.
 *   timing       GFLOP/s of the three GEMMs on the quickstart's shapes (printed, never asserted).
 *
 * Dimensions: N rows (tokens), IC / OC input / output channels, C channels, H heads, D head dim,
 * V vocabulary, T positions.
 */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bias.h"
#include "check.h"
#include "crossentropy.h"
#include "embedding.h"
#include "matmul.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"
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
/* Cross-entropy: the fp32 difference x - max rounds by up to u * |x - max| (<= 30 here), a relative
 * error of up to 2e-6 in that softmax entry, plus exp's 1.5 ulp and the sum. */
#define CE_RTOL 5e-6
#define FD_STEP 1e-6
#define FD_ATOL 2e-8
#define SENTINEL 777.0f /* fills the gaps between rope rows; must survive every call */

/* ---- helpers ---- */

static float *falloc(int64_t n) { return xmalloc((size_t)n * sizeof(float)); }
static double *dalloc(int64_t n) { return xmalloc((size_t)n * sizeof(double)); }

static float *randn(struct t_rng *rng, int64_t n, float std) {
    float *x = falloc(n);
    t_fill_normal(rng, x, n, std);
    return x;
}

static float *copy_f(const float *x, int64_t n) {
    float *y = falloc(n);
    memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

static double *to_double(const float *x, int64_t n) {
    double *y = dalloc(n);
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static int32_t *rand_ids(struct t_rng *rng, int64_t n, int64_t bound) {
    int32_t *t = xmalloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) t[i] = (int32_t)(t_rng_u64(rng) % (uint64_t)bound);
    return t;
}

/* got (fp32) against ref (float64): |got - ref| <= atol + rtol |ref|. */
static void check_d(const char *what, const float *got, const double *ref, int64_t n, double atol,
                    double rtol) {
    double *g = to_double(got, n);
    t_close_d(what, g, ref, n, atol, rtol);
    free(g);
}

/* ref[i] += prefill[i]: the expected value of an accumulating output. */
static void add_prefill(double *ref, const float *prefill, int64_t n) {
    for (int64_t i = 0; i < n; i++) ref[i] += prefill[i];
}

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
static void fd_grad(double *grad, double *x, int64_t n, const struct fd_problem *p) {
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

/* Thread-count independence: run() restores its outputs' initial values, then calls the kernel;
 * the outputs after 2 and 3 threads must be bitwise those after 1 thread. */
struct det_case {
    const char *name;
    void (*run)(void *ctx);
    void *ctx;
    const float *out[3]; /* outputs to compare (NULL-terminated) */
    int64_t n[3];
};

static void check_threads(const struct det_case *c) {
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

/* ---- rope ---- */

/* inv_freq[i] = theta^(-2i/D) / factor[i], written as exp(-(2i/D) ln theta) / factor[i]. */
static void rope64_inv_freq(double *inv, int D, double theta, const double *factor) {
    for (int i = 0; i < D / 2; i++)
        inv[i] = exp(-(2.0 * i / D) * log(theta)) / (factor ? factor[i] : 1.0);
}

static void test_rope_table(const char *what, int64_t T, int D, double theta,
                            const double *factor, double mscale) {
    int half = D / 2;
    float *c = falloc(T * half), *s = falloc(T * half);
    double *cr = dalloc(T * half), *sr = dalloc(T * half);
    double *inv = dalloc(half);
    rope64_inv_freq(inv, D, theta, factor);
    rope_table_init(c, s, T, D, theta, factor, mscale);
    for (int64_t p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            cr[p * half + i] = mscale * cos((double)p * inv[i]);
            sr[p * half + i] = mscale * sin((double)p * inv[i]);
        }
    /* Stored as fp32 from double: within half an ulp (6e-8 relative) of the double values. Our
     * angles p * inv_freq come from exp / log instead of pow and differ by ~2e-16 * p <= 2e-11
     * radians: the absolute floor. */
    char buf[128];
    snprintf(buf, sizeof buf, "rope table cos %s", what);
    check_d(buf, c, cr, T * half, 1e-10, 1.2e-7);
    snprintf(buf, sizeof buf, "rope table sin %s", what);
    check_d(buf, s, sr, T * half, 1e-10, 1.2e-7);
    free(c), free(s), free(cr), free(sr), free(inv);
}

struct rope64 {
    double *x;                 /* (N, row_stride) */
    const double *cosd, *sind; /* (N, D/2) mscale * cos / sin of the angle of each row */
    int64_t N, row_stride;
    int H, D;
};

/* out (N, H, D) = the rotation of the (N, H, D) part of x. */
static void rope64_forward(const void *ctx, double *out) {
    const struct rope64 *m = ctx;
    int half = m->D / 2;
    for (int64_t n = 0; n < m->N; n++)
        for (int h = 0; h < m->H; h++) {
            const double *v = m->x + n * m->row_stride + (int64_t)h * m->D;
            double *o = out + (n * m->H + h) * m->D;
            const double *c = m->cosd + n * half, *s = m->sind + n * half;
            for (int i = 0; i < half; i++) {
                o[i] = v[i] * c[i] - v[i + half] * s[i];
                o[i + half] = v[i + half] * c[i] + v[i] * s[i];
            }
        }
}

/* The (N, H, D) part of a strided buffer, as doubles. */
static void rope_gather(double *dst, const float *x, int64_t N, int H, int D, int64_t stride) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < (int64_t)H * D; j++) dst[n * H * D + j] = x[n * stride + j];
}

static bool rope_gaps_intact(const float *x, int64_t N, int H, int D, int64_t stride) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = (int64_t)H * D; j < stride; j++)
            if (x[n * stride + j] != SENTINEL) return false;
    return true;
}

/* A strided buffer: (N, H, D) unit normals, gaps SENTINEL. */
static float *rope_buffer(struct t_rng *rng, int64_t N, int H, int D, int64_t stride) {
    float *x = falloc(N * stride);
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < stride; j++)
            x[n * stride + j] = j < (int64_t)H * D ? (float)t_rng_normal(rng) : SENTINEL;
    return x;
}

/* Forward against float64, backward against finite differences, roundtrip with mscale = 1, on N
 * rows of H heads, row_stride = H * D + pad (q inside a wider fused row), LongRoPE factors in
 * [1, 8], positions in two separate ranges: N/2 rows from 7, N - N/2 rows from 3000. */
static void test_rope_rows(struct t_rng *rng, int64_t N, int H, int D, int pad, double mscale) {
    int64_t T = 3000 + N, stride = (int64_t)H * D + pad;
    int half = D / 2;
    double theta = 10000.0;
    double *factor = dalloc(half);
    for (int i = 0; i < half; i++) factor[i] = 1.0 + 7.0 * t_rng_uniform(rng);
    int32_t *pos = xmalloc((size_t)N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) pos[n] = n < N / 2 ? (int32_t)(7 + n) : (int32_t)(3000 + n);
    float *ct = falloc(T * half), *st = falloc(T * half);
    rope_table_init(ct, st, T, D, theta, factor, mscale);

    double *inv = dalloc(half);
    double *cosd = dalloc(N * half), *sind = dalloc(N * half);
    rope64_inv_freq(inv, D, theta, factor);
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < half; i++) {
            cosd[n * half + i] = mscale * cos(pos[n] * inv[i]);
            sind[n * half + i] = mscale * sin(pos[n] * inv[i]);
        }
    int64_t nq = N * H * D;
    float *x = rope_buffer(rng, N, H, D, stride);
    struct rope64 m = {to_double(x, N * stride), cosd, sind, N, stride, H, D};
    double *ref = dalloc(nq);
    rope64_forward(&m, ref);
    rope_forward_cpu(x, ct, st, pos, N, H, D, stride);
    double *got = dalloc(nq);
    /* y = a c - b s with fp32 c, s: ~4 roundings of terms of size mscale * |x| <= 5. */
    rope_gather(got, x, N, H, D, stride);
    char what[128];
    snprintf(what, sizeof what, "rope forward H=%d D=%d mscale=%g", H, D, mscale);
    t_close_d(what, got, ref, nq, ELEM_ATOL * 4, ELEM_RTOL);
    t_check(rope_gaps_intact(x, N, H, D, stride), "rope forward D=%d wrote between rows", D);

    float *dx = rope_buffer(rng, N, H, D, stride); /* dx = r, the loss weights */
    double *r = dalloc(nq), *gx = dalloc(N * stride);
    rope_gather(r, dx, N, H, D, stride);
    struct fd_problem p = {rope64_forward, &m, r, nq};
    fd_grad(gx, m.x, N * stride, &p); /* the gaps get gradient 0 */
    rope_backward_cpu(dx, ct, st, pos, N, H, D, stride);
    rope_gather(got, dx, N, H, D, stride);
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < (int64_t)H * D; j++) ref[n * H * D + j] = gx[n * stride + j];
    snprintf(what, sizeof what, "rope backward H=%d D=%d vs finite differences", H, D);
    t_close_d(what, got, ref, nq, ELEM_ATOL * 4 + FD_ATOL, ELEM_RTOL);
    t_check(rope_gaps_intact(dx, N, H, D, stride), "rope backward D=%d wrote between rows", D);

    /* mscale = 1: the rotation is orthogonal, backward(forward(x)) = x up to ~4 roundings. */
    rope_table_init(ct, st, T, D, theta, factor, 1.0);
    float *y = rope_buffer(rng, N, H, D, stride), *y0 = copy_f(y, N * stride);
    rope_forward_cpu(y, ct, st, pos, N, H, D, stride);
    rope_backward_cpu(y, ct, st, pos, N, H, D, stride);
    snprintf(what, sizeof what, "rope backward(forward(x)) = x at mscale 1, D=%d", D);
    t_close(what, y, y0, N * stride, ELEM_ATOL * 4, ELEM_RTOL);

    free(factor), free(pos), free(ct), free(st), free(inv), free(cosd), free(sind), free(x);
    free(m.x);
    free(ref);
    free(got), free(dx), free(r), free(gx), free(y), free(y0);
}

struct rope_det {
    const float *x0, *cosd, *sind;
    const int32_t *pos;
    float *x;
    int64_t N, stride;
    int H, D;
};

static void rope_det_run(void *ctx) {
    struct rope_det *d = ctx;
    memcpy(d->x, d->x0, (size_t)(d->N * d->stride) * sizeof(float));
    rope_forward_cpu(d->x, d->cosd, d->sind, d->pos, d->N, d->H, d->D, d->stride);
    rope_backward_cpu(d->x, d->cosd, d->sind, d->pos, d->N, d->H, d->D, d->stride);
    rope_backward_cpu(d->x, d->cosd, d->sind, d->pos, d->N, d->H, d->D, d->stride);
}

static void test_rope(struct t_rng *rng) {
    double factor[32];
    for (int i = 0; i < 32; i++) factor[i] = 1.0 + 40.0 * t_rng_uniform(rng);
    test_rope_table("D=64 theta=1e4 LongRoPE mscale=1.2", 4100, 64, 10000.0, factor, 1.2);
    test_rope_table("D=22 theta=5e5 no factors", 70000, 22, 500000.0, NULL, 1.0);
    test_rope_rows(rng, 40, 3, 24, 13, 1.19);
    test_rope_rows(rng, 17, 2, 128, 64, 0.8);

    int64_t N = 257, T = 1000, stride = 4 * 40 + 5;
    int H = 4, D = 40;
    float *ct = falloc(T * D / 2), *st = falloc(T * D / 2);
    rope_table_init(ct, st, T, D, 10000.0, NULL, 1.1);
    struct rope_det d = {.cosd = ct, .sind = st, .N = N, .stride = stride, .H = H, .D = D};
    d.x0 = rope_buffer(rng, N, H, D, stride);
    d.pos = rand_ids(rng, N, T);
    d.x = falloc(N * stride);
    struct det_case c = {"rope", rope_det_run, &d, {d.x}, {N * stride}};
    check_threads(&c);
    free(ct), free(st), free((void *)d.x0), free((void *)d.pos), free(d.x);
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

/* ---- embedding ---- */

struct emb64 {
    double *wte; /* (V, C) */
    const int32_t *tokens;
    int64_t N;
    int C;
    double scale;
};

static void emb64_forward(const void *ctx, double *out) {
    const struct emb64 *m = ctx;
    for (int64_t n = 0; n < m->N; n++)
        for (int c = 0; c < m->C; c++)
            out[n * m->C + c] = m->scale * m->wte[(int64_t)m->tokens[n] * m->C + c];
}

static void test_embedding_shape(struct t_rng *rng, int64_t N, int C, int64_t V, float scale,
                                 bool fd) {
    char what[128];
    int64_t nw = V * C, nout = N * C;
    float *wte = randn(rng, nw, 1), *g = randn(rng, nout, 1);
    int32_t *tok = rand_ids(rng, N, V); /* N >> V: ids repeat */
    struct emb64 m = {to_double(wte, nw), tok, N, C, scale};
    double *ref = dalloc(nout);
    emb64_forward(&m, ref);
    float *out = falloc(nout);
    embedding_forward_cpu(out, tok, wte, N, C, scale);
    snprintf(what, sizeof what, "embedding forward N=%lld C=%d V=%lld", (long long)N, C,
             (long long)V);
    check_d(what, out, ref, nout, 0, 1.2e-7); /* one fp32 product: half an ulp */

    double *gw = xcalloc((size_t)nw, sizeof(double)), *r = to_double(g, nout);
    if (fd) {
        struct fd_problem p = {emb64_forward, &m, r, nout};
        fd_grad(gw, m.wte, nw, &p);
    } else {
        for (int64_t n = 0; n < N; n++)
            for (int c = 0; c < C; c++) gw[(int64_t)tok[n] * C + c] += scale * r[n * C + c];
    }
    float *dwte = randn(rng, nw, 1);
    add_prefill(gw, dwte, nw);
    embedding_backward_cpu(dwte, g, tok, N, C, scale);
    /* a row of dwte sums (its count) terms of size |scale| onto its prefill */
    int64_t *count = xcalloc((size_t)V, sizeof(int64_t)), max_count = 0;
    for (int64_t n = 0; n < N; n++) count[tok[n]]++;
    for (int64_t v = 0; v < V; v++) max_count = count[v] > max_count ? count[v] : max_count;
    snprintf(what, sizeof what, "embedding dwte N=%lld C=%d V=%lld", (long long)N, C, (long long)V);
    double atol = SUM_TOL_PER_TERM * fabs(scale) * (double)(max_count + 1) + (fd ? FD_ATOL : 0);
    check_d(what, dwte, gw, nw, atol, ELEM_RTOL);
    free(count);
    free(wte), free(g), free(tok), free(m.wte), free(ref), free(out), free(gw), free(r), free(dwte);
}

struct emb_det {
    const float *g, *prefill;
    const int32_t *tok;
    float *dwte;
    int64_t N, V;
    int C;
};

static void emb_det_run(void *ctx) {
    struct emb_det *d = ctx;
    memcpy(d->dwte, d->prefill, (size_t)(d->V * d->C) * sizeof(float));
    embedding_backward_cpu(d->dwte, d->g, d->tok, d->N, d->C, 0.37f);
}

static void test_embedding(struct t_rng *rng) {
    test_embedding_shape(rng, 200, 67, 11, 1.7f, true);
    test_embedding_shape(rng, 20000, 300, 5000, 12.0f, false);
    int64_t N = 5000, V = 97;
    int C = 83;
    struct emb_det d = {.N = N, .V = V, .C = C};
    d.g = randn(rng, N * C, 1), d.prefill = randn(rng, V * C, 1), d.tok = rand_ids(rng, N, V);
    d.dwte = falloc(V * C);
    struct det_case c = {"embedding backward", emb_det_run, &d, {d.dwte}, {V * C}};
    check_threads(&c);
    free((void *)d.g), free((void *)d.prefill), free((void *)d.tok), free(d.dwte);
}

/* ---- cross-entropy ---- */

struct ce64 {
    double *logits; /* (N, V) */
    const int32_t *targets;
    int64_t N, V;
};

/* loss of row n in float64 (0 for a negative target); p (V) receives the softmax when not NULL. */
static double ce64_row(const struct ce64 *m, int64_t n, double *p) {
    const double *x = m->logits + n * m->V;
    int32_t t = m->targets[n];
    if (t < 0) return 0;
    double mx = x[0], s = 0;
    for (int64_t v = 1; v < m->V; v++) mx = fmax(mx, x[v]);
    for (int64_t v = 0; v < m->V; v++) s += exp(x[v] - mx);
    if (p)
        for (int64_t v = 0; v < m->V; v++) p[v] = exp(x[v] - mx) / s;
    return mx + log(s) - x[t];
}

static void ce64_forward(const void *ctx, double *loss) {
    const struct ce64 *m = ctx;
    for (int64_t n = 0; n < m->N; n++) loss[n] = ce64_row(m, n, NULL);
}

/* Runs the kernel on copies three ways (separate dlogits, dlogits == logits, dlogits NULL), checks
 * that they agree bitwise, and leaves the separate-buffer results in loss and dlogits. */
static void ce_run_all_ways(float *loss, float *dlogits, const float *logits, const int32_t *tg,
                            int64_t N, int64_t V, float dscale) {
    crossentropy_forward_backward_cpu(loss, dlogits, logits, tg, N, V, dscale);
    float *buf = copy_f(logits, N * V), *loss2 = falloc(N);
    crossentropy_forward_backward_cpu(loss2, buf, buf, tg, N, V, dscale);
    t_check(!memcmp(buf, dlogits, (size_t)(N * V) * sizeof(float)) &&
                !memcmp(loss2, loss, (size_t)N * sizeof(float)),
            "crossentropy V=%lld: dlogits == logits gives other results than separate buffers",
            (long long)V);
    crossentropy_forward_backward_cpu(loss2, NULL, logits, tg, N, V, dscale);
    t_check(!memcmp(loss2, loss, (size_t)N * sizeof(float)),
            "crossentropy V=%lld: loss without dlogits differs", (long long)V);
    free(buf), free(loss2);
}

/* Small V: every logit against finite differences of L = dscale * sum(loss). */
static void test_crossentropy_fd(struct t_rng *rng) {
    int64_t N = 6, V = 301;
    float dscale = 0.37f;
    float *logits = randn(rng, N * V, 2);
    int32_t *tg = rand_ids(rng, N, V);
    tg[2] = -1;                                                /* no loss on row 2 */
    for (int64_t v = 0; v < V; v++) logits[4 * V + v] += 100.0f; /* needs the max subtracted */
    struct ce64 m = {to_double(logits, N * V), tg, N, V};
    double *lref = dalloc(N), *gref = dalloc(N * V);
    ce64_forward(&m, lref);
    double *r = dalloc(N);
    for (int64_t n = 0; n < N; n++) r[n] = dscale;
    struct fd_problem p = {ce64_forward, &m, r, N};
    fd_grad(gref, m.logits, N * V, &p);
    float *loss = falloc(N), *d = falloc(N * V);
    ce_run_all_ways(loss, d, logits, tg, N, V, dscale);
    check_d("crossentropy loss V=301", loss, lref, N, ELEM_ATOL, ELEM_RTOL);
    check_d("crossentropy dlogits V=301 vs finite differences", d, gref, N * V, FD_ATOL, CE_RTOL);
    bool zero = true;
    for (int64_t v = 0; v < V; v++) zero = zero && d[2 * V + v] == 0.0f;
    t_check(zero && loss[2] == 0.0f, "crossentropy: the row with target -1 has loss or gradient");
    free(logits), free(tg), free(m.logits), free(lref), free(gref), free(r), free(loss), free(d);
}

/* Large V: against the float64 softmax, and sampled finite differences per row. */
static void test_crossentropy_large(struct t_rng *rng) {
    int64_t N = 4, V = 50257;
    float dscale = 1.0f / 3.0f;
    float *logits = randn(rng, N * V, 3);
    int32_t *tg = rand_ids(rng, N, V);
    tg[1] = -1;
    struct ce64 m = {to_double(logits, N * V), tg, N, V};
    double *lref = dalloc(N), *gref = dalloc(N * V);
    for (int64_t n = 0; n < N; n++) {
        lref[n] = ce64_row(&m, n, gref + n * V);
        for (int64_t v = 0; v < V; v++)
            gref[n * V + v] = tg[n] < 0 ? 0 : dscale * (gref[n * V + v] - (v == tg[n]));
    }
    float *loss = falloc(N), *d = falloc(N * V);
    ce_run_all_ways(loss, d, logits, tg, N, V, dscale);
    check_d("crossentropy loss V=50257", loss, lref, N, ELEM_ATOL, ELEM_RTOL);
    check_d("crossentropy dlogits V=50257 vs float64 softmax", d, gref, N * V, 1e-12, CE_RTOL);

    /* finite differences of dscale * loss_n on 40 logits per row, the target among them */
    double worst = 0;
    for (int64_t n = 0; n < N; n++)
        for (int k = 0; k < 40; k++) {
            int64_t v = k == 0 && tg[n] >= 0 ? tg[n] : (int64_t)(t_rng_u64(rng) % (uint64_t)V);
            double *x = m.logits + n * V + v, x0 = *x;
            *x = x0 + FD_STEP;
            double lp = ce64_row(&m, n, NULL);
            *x = x0 - FD_STEP;
            double lm = ce64_row(&m, n, NULL);
            *x = x0;
            double fd = dscale * (lp - lm) / (2 * FD_STEP), got = d[n * V + v];
            double excess = fabs(got - fd) - (FD_ATOL + CE_RTOL * fabs(fd));
            worst = excess > worst ? excess : worst;
        }
    t_check(worst <= 0, "crossentropy V=50257: sampled finite differences off by %.3g", worst);
    free(logits), free(tg), free(m.logits), free(lref), free(gref), free(loss), free(d);
}

struct ce_det {
    const float *logits;
    const int32_t *tg;
    float *loss, *d;
    int64_t N, V;
};

static void ce_det_run(void *ctx) {
    struct ce_det *c = ctx;
    memcpy(c->d, c->logits, (size_t)(c->N * c->V) * sizeof(float));
    crossentropy_forward_backward_cpu(c->loss, c->d, c->d, c->tg, c->N, c->V, 0.01f);
}

static void test_crossentropy(struct t_rng *rng) {
    test_crossentropy_fd(rng);
    test_crossentropy_large(rng);
    int64_t N = 37, V = 3001;
    struct ce_det c = {.N = N, .V = V};
    c.logits = randn(rng, N * V, 2), c.tg = rand_ids(rng, N, V);
    c.loss = falloc(N), c.d = falloc(N * V);
    struct det_case dc = {"crossentropy", ce_det_run, &c, {c.loss, c.d}, {N, N * V}};
    check_threads(&dc);
    free((void *)c.logits), free((void *)c.tg), free(c.loss), free(c.d);
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
    test_rope(&rng);
    test_swiglu(&rng);
    test_embedding(&rng);
    test_crossentropy(&rng);
    bench_matmul(&rng);
    return t_finish("test_kernels");
}
