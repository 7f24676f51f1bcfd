/*
 * test_attention.c: dense causal GQA attention (kernels/attention.h) against a float64 reference
 * written here: an explicit score matrix with the causal mask by global positions (key j visible to
 * query row i iff j <= q_pos0 + i), a softmax per row, and the backward from the explicit P.
 *
 *   forward     out, lse against float64 for shapes with Tq != Tk and q_pos0 > 0, row strides wider
 *               than H * D (the gaps must stay untouched), G = 1, 2, 4, D = 24, 64, 128, T not a
 *               multiple of 64 or of the 16-row tile, one row alone, and peaky (large) logits.
 *   backward    dq, dk, dv against the float64 analytic backward on the same shapes; on a small
 *               shape against central finite differences of the float64 forward (loss sum(r .* out)),
 *               which also validates the analytic reference; prefilled gradients end as prefill +
 *               gradient (the accumulate rule).
 *   chunks      queries split in two calls as context parallelism does (q_pos0 = 0 and T/2, dk, dv
 *               accumulated over both) give the one-call out, lse, dq bitwise and dk, dv up to the
 *               reassociation of one addition.
 *   threads     bitwise-identical forward and backward with 1, 2 and 3 OpenMP threads.
 *   documents   document masking (attn_shape.doc_start): against the float64 reference with the
 *               document mask (documents starting mid-block, one-token documents, a chunk with
 *               q_pos0 > 0 whose first rows continue a document begun before it); a packed
 *               sequence against each document run alone gives out, lse, dq, dk and dv bitwise;
 *               the chunked split and 1 vs 3 threads with documents as above.
 *
 * Dimensions: Tq query rows, Tk keys, Hq / Hkv heads, G = Hq / Hkv, D head dim.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "check.h"
#include "testlib.h"

/* Tolerances. The kernel is fp32: scores are dot products of <= 128 terms of O(1) values (relative
 * rounding ~1e-6), softmax sums of <= 300 terms, so errors are ~1e-6 relative. Observed: every
 * case passes at a tenth of these tolerances except the peaky one (logits of std ~6, where fp32
 * logit errors grow with their magnitude), whose margin is ~4x. Finite differences in float64
 * with h = 1e-4 are accurate to ~1e-8. */
#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-4
#define BWD_ATOL 2e-5
#define BWD_RTOL 2e-4
#define FD_STEP 1e-4
#define SENTINEL 777.0f /* fills the row-stride gaps of outputs; must survive every call */

struct problem {
    struct attn_shape s;
    float *q, *k, *v, *dout;        /* q, dout (Tq, Hq, D) q_stride apart; k, v (Tk, Hkv, D) */
    double *qd, *kd, *vd, *doutd;   /* the same values in float64, same layout */
};

static int64_t q_elems(const struct attn_shape *s) { return s->Tq * s->q_stride; }
static int64_t kv_elems(const struct attn_shape *s) { return s->Tk * s->kv_stride; }

static double *to_double(const float *x, int64_t n) {
    double *y = xmalloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static struct problem problem_make(struct t_rng *rng, int64_t Tq, int64_t q_pos0, int64_t Tk,
                                   int Hq, int Hkv, int D, int q_pad, int kv_pad, float q_std) {
    struct problem p = {0};
    p.s = (struct attn_shape){.Tq = Tq, .q_pos0 = q_pos0, .Tk = Tk, .Hq = Hq, .Hkv = Hkv, .D = D,
                              .q_stride = (int64_t)Hq * D + q_pad,
                              .kv_stride = (int64_t)Hkv * D + kv_pad,
                              .scale = 1.0f / sqrtf((float)D)};
    p.q = xmalloc((size_t)q_elems(&p.s) * sizeof(float));
    p.dout = xmalloc((size_t)q_elems(&p.s) * sizeof(float));
    p.k = xmalloc((size_t)kv_elems(&p.s) * sizeof(float));
    p.v = xmalloc((size_t)kv_elems(&p.s) * sizeof(float));
    t_fill_normal(rng, p.q, q_elems(&p.s), q_std);
    t_fill_normal(rng, p.dout, q_elems(&p.s), 1.0f);
    t_fill_normal(rng, p.k, kv_elems(&p.s), 1.0f);
    t_fill_normal(rng, p.v, kv_elems(&p.s), 1.0f);
    p.qd = to_double(p.q, q_elems(&p.s));
    p.doutd = to_double(p.dout, q_elems(&p.s));
    p.kd = to_double(p.k, kv_elems(&p.s));
    p.vd = to_double(p.v, kv_elems(&p.s));
    return p;
}

/* Documents starting at the global positions starts[0..n) (ascending, starts[0] = 0): sets
 * p->s.doc_start for every query row (freed by problem_free). */
static void problem_documents(struct problem *p, const int64_t *starts, int n) {
    int32_t *ds = xmalloc((size_t)(p->s.Tq > 0 ? p->s.Tq : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < p->s.Tq; i++) {
        int d = 0;
        while (d + 1 < n && starts[d + 1] <= p->s.q_pos0 + i) d++;
        ds[i] = (int32_t)starts[d];
    }
    p->s.doc_start = ds;
}

static void problem_free(struct problem *p) {
    free((void *)p->s.doc_start);
    free(p->q), free(p->k), free(p->v), free(p->dout);
    free(p->qd), free(p->kd), free(p->vd), free(p->doutd);
}

/* ---- float64 reference ---- */

/* P (Tq, Hq, Tk): the softmax probabilities, 0 where masked; lse (Tq, Hq). */
static void ref_probs(double *P, double *lse, const double *q, const double *k,
                      const struct attn_shape *s) {
    int G = s->Hq / s->Hkv, D = s->D;
    for (int64_t i = 0; i < s->Tq; i++)
        for (int h = 0; h < s->Hq; h++) {
            double *row = P + (i * s->Hq + h) * s->Tk, mx = -INFINITY;
            for (int64_t j = 0; j < s->Tk; j++) {
                double x = -INFINITY;
                if (j <= s->q_pos0 + i && (!s->doc_start || j >= s->doc_start[i])) {
                    x = 0;
                    for (int d = 0; d < D; d++)
                        x += q[i * s->q_stride + h * D + d] * k[j * s->kv_stride + (h / G) * D + d];
                    x *= s->scale;
                }
                row[j] = x;
                mx = fmax(mx, x);
            }
            double l = 0;
            for (int64_t j = 0; j < s->Tk; j++) l += row[j] == -INFINITY ? 0 : exp(row[j] - mx);
            for (int64_t j = 0; j < s->Tk; j++)
                row[j] = row[j] == -INFINITY ? 0 : exp(row[j] - mx) / l;
            if (lse) lse[i * s->Hq + h] = mx + log(l);
        }
}

/* out (Tq, Hq, D) contiguous. */
static void ref_forward(double *out, double *lse, const double *q, const double *k,
                        const double *v, const struct attn_shape *s) {
    int G = s->Hq / s->Hkv, D = s->D;
    double *P = xmalloc((size_t)(s->Tq * s->Hq * s->Tk) * sizeof(double));
    ref_probs(P, lse, q, k, s);
    for (int64_t i = 0; i < s->Tq; i++)
        for (int h = 0; h < s->Hq; h++)
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int64_t j = 0; j < s->Tk; j++)
                    acc += P[(i * s->Hq + h) * s->Tk + j] * v[j * s->kv_stride + (h / G) * D + d];
                out[(i * s->Hq + h) * D + d] = acc;
            }
    free(P);
}

/* dq (Tq, Hq, D), dk, dv (Tk, Hkv, D), contiguous, overwritten. */
static void ref_backward(double *dq, double *dk, double *dv, const double *dout, const double *q,
                         const double *k, const double *v, const struct attn_shape *s) {
    int G = s->Hq / s->Hkv, D = s->D;
    double *P = xmalloc((size_t)(s->Tq * s->Hq * s->Tk) * sizeof(double));
    ref_probs(P, NULL, q, k, s);
    memset(dq, 0, (size_t)(s->Tq * s->Hq * D) * sizeof(double));
    memset(dk, 0, (size_t)(s->Tk * s->Hkv * D) * sizeof(double));
    memset(dv, 0, (size_t)(s->Tk * s->Hkv * D) * sizeof(double));
    double *dS = xmalloc((size_t)s->Tk * sizeof(double));
    for (int64_t i = 0; i < s->Tq; i++)
        for (int h = 0; h < s->Hq; h++) {
            const double *Pr = P + (i * s->Hq + h) * s->Tk, *gi = dout + i * s->q_stride + h * D;
            const double *qi = q + i * s->q_stride + h * D;
            double dsum = 0;
            for (int64_t j = 0; j < s->Tk; j++) {
                double dp = 0;
                for (int d = 0; d < D; d++) dp += gi[d] * v[j * s->kv_stride + (h / G) * D + d];
                dS[j] = dp;
                dsum += Pr[j] * dp;
            }
            for (int64_t j = 0; j < s->Tk; j++) {
                double ds = Pr[j] * (dS[j] - dsum);
                for (int d = 0; d < D; d++) {
                    int64_t kj = j * s->kv_stride + (h / G) * D + d;
                    dq[(i * s->Hq + h) * D + d] += s->scale * ds * k[kj];
                    dk[(j * s->Hkv + h / G) * D + d] += s->scale * ds * qi[d];
                    dv[(j * s->Hkv + h / G) * D + d] += Pr[j] * gi[d];
                }
            }
        }
    free(dS);
    free(P);
}

/* ---- kernel runs ---- */

struct result {
    float *out, *lse, *dq, *dk, *dv; /* kernel layouts (strided), gaps SENTINEL */
};

static float *sentinel_buf(int64_t n) {
    float *x = xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = SENTINEL;
    return x;
}

/* Zeroes the valid elements of a strided (rows, H, D) buffer, leaving the gaps. */
static void zero_rows(float *x, int64_t rows, int64_t stride, int64_t width) {
    for (int64_t i = 0; i < rows; i++) memset(x + i * stride, 0, (size_t)width * sizeof(float));
}

/* Output buffers: out and the gradients' gaps SENTINEL, gradients zero, lse NaN. */
static struct result result_alloc(const struct attn_shape *s) {
    struct result r;
    r.out = sentinel_buf(q_elems(s));
    r.lse = xmalloc((size_t)(s->Tq * s->Hq) * sizeof(float));
    for (int64_t x = 0; x < s->Tq * s->Hq; x++) r.lse[x] = NAN;
    r.dq = sentinel_buf(q_elems(s));
    r.dk = sentinel_buf(kv_elems(s));
    r.dv = sentinel_buf(kv_elems(s));
    zero_rows(r.dq, s->Tq, s->q_stride, (int64_t)s->Hq * s->D);
    zero_rows(r.dk, s->Tk, s->kv_stride, (int64_t)s->Hkv * s->D);
    zero_rows(r.dv, s->Tk, s->kv_stride, (int64_t)s->Hkv * s->D);
    return r;
}

static struct result run_kernel(const struct problem *p) {
    const struct attn_shape *s = &p->s;
    struct result r = result_alloc(s);
    attention_forward_cpu(r.out, r.lse, p->q, p->k, p->v, s);
    attention_backward_cpu(r.dq, r.dk, r.dv, p->dout, p->q, p->k, p->v, r.out, r.lse, s);
    return r;
}

static void result_free(struct result *r) {
    free(r->out), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
}

/* The valid elements of a strided (rows, width) buffer as contiguous doubles. */
static double *gather(const float *x, int64_t rows, int64_t stride, int64_t width) {
    double *y = xmalloc((size_t)(rows * width) * sizeof(double));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < width; c++) y[i * width + c] = x[i * stride + c];
    return y;
}

/* Every gap element (columns width..stride-1) still holds SENTINEL. */
static bool gaps_intact(const float *x, int64_t rows, int64_t stride, int64_t width) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = width; c < stride; c++)
            if (x[i * stride + c] != SENTINEL) return false;
    return true;
}

static void compare(const char *name, const char *what, const float *got, int64_t rows,
                    int64_t stride, int64_t width, const double *ref, double atol, double rtol) {
    char label[160];
    snprintf(label, sizeof label, "%s %s", name, what);
    double *g = gather(got, rows, stride, width);
    t_close_d(label, g, ref, rows * width, atol, rtol);
    t_check(gaps_intact(got, rows, stride, width), "%s: row-stride gap overwritten", label);
    free(g);
}

/* Forward and backward of problem p against the float64 reference. */
static void check_problem(const char *name, const struct problem *p) {
    const struct attn_shape *s = &p->s;
    int64_t Tq = s->Tq, Tk = s->Tk, Hq = s->Hq;
    int64_t qw = (int64_t)s->Hq * s->D, kw = (int64_t)s->Hkv * s->D;
    double *out = xmalloc((size_t)(Tq * qw) * sizeof(double));
    double *lse = xmalloc((size_t)(Tq * Hq) * sizeof(double));
    double *dq = xmalloc((size_t)(Tq * qw) * sizeof(double));
    double *dk = xmalloc((size_t)(Tk * kw) * sizeof(double));
    double *dv = xmalloc((size_t)(Tk * kw) * sizeof(double));
    ref_forward(out, lse, p->qd, p->kd, p->vd, s);
    ref_backward(dq, dk, dv, p->doutd, p->qd, p->kd, p->vd, s);
    struct result r = run_kernel(p);
    compare(name, "out", r.out, Tq, s->q_stride, qw, out, FWD_ATOL, FWD_RTOL);
    compare(name, "lse", r.lse, Tq, Hq, Hq, lse, FWD_ATOL, FWD_RTOL);
    compare(name, "dq", r.dq, Tq, s->q_stride, qw, dq, BWD_ATOL, BWD_RTOL);
    compare(name, "dk", r.dk, Tk, s->kv_stride, kw, dk, BWD_ATOL, BWD_RTOL);
    compare(name, "dv", r.dv, Tk, s->kv_stride, kw, dv, BWD_ATOL, BWD_RTOL);
    result_free(&r);
    free(out), free(lse), free(dq), free(dk), free(dv);
}

/* Forward and backward of one shape against the float64 reference. */
static void test_shape(struct t_rng *rng, const char *name, int64_t Tq, int64_t q_pos0, int64_t Tk,
                       int Hq, int Hkv, int D, int q_pad, int kv_pad, float q_std) {
    struct problem p = problem_make(rng, Tq, q_pos0, Tk, Hq, Hkv, D, q_pad, kv_pad, q_std);
    check_problem(name, &p);
    problem_free(&p);
}

/* ---- finite differences ---- */

/* sum over valid (i, h, d) of r * out, with out from the float64 forward. */
static double ref_loss(const struct problem *p) {
    const struct attn_shape *s = &p->s;
    int64_t qw = (int64_t)s->Hq * s->D;
    double *out = xmalloc((size_t)(s->Tq * qw) * sizeof(double)), L = 0;
    ref_forward(out, NULL, p->qd, p->kd, p->vd, s);
    for (int64_t i = 0; i < s->Tq; i++)
        for (int64_t c = 0; c < qw; c++) L += p->doutd[i * s->q_stride + c] * out[i * qw + c];
    free(out);
    return L;
}

/* Central differences of ref_loss with respect to every valid element of x (rows, stride). */
static double *fd_grad(struct problem *p, double *x, int64_t rows, int64_t stride, int64_t width) {
    double *g = xmalloc((size_t)(rows * width) * sizeof(double));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < width; c++) {
            double *e = &x[i * stride + c], x0 = *e;
            *e = x0 + FD_STEP;
            double lp = ref_loss(p);
            *e = x0 - FD_STEP;
            double lm = ref_loss(p);
            *e = x0;
            g[i * width + c] = (lp - lm) / (2 * FD_STEP);
        }
    return g;
}

/* Gradients against finite differences, the analytic reference against the same, and the
 * accumulate rule. Keys past the last query position get zero gradient (checked through FD). */
static void test_finite_differences(struct t_rng *rng) {
    struct problem p = problem_make(rng, 24, 17, 48, 4, 2, 12, 3, 5, 1.0f);
    const struct attn_shape *s = &p.s;
    int64_t qw = (int64_t)s->Hq * s->D, kw = (int64_t)s->Hkv * s->D;
    double *fq = fd_grad(&p, p.qd, s->Tq, s->q_stride, qw);
    double *fk = fd_grad(&p, p.kd, s->Tk, s->kv_stride, kw);
    double *fv = fd_grad(&p, p.vd, s->Tk, s->kv_stride, kw);
    struct result r = run_kernel(&p);
    compare("fd", "dq", r.dq, s->Tq, s->q_stride, qw, fq, BWD_ATOL, BWD_RTOL);
    compare("fd", "dk", r.dk, s->Tk, s->kv_stride, kw, fk, BWD_ATOL, BWD_RTOL);
    compare("fd", "dv", r.dv, s->Tk, s->kv_stride, kw, fv, BWD_ATOL, BWD_RTOL);

    /* the float64 analytic backward agrees with FD to FD accuracy (~1e-8) */
    double *dq = xmalloc((size_t)(s->Tq * qw) * sizeof(double));
    double *dk = xmalloc((size_t)(s->Tk * kw) * sizeof(double));
    double *dv = xmalloc((size_t)(s->Tk * kw) * sizeof(double));
    ref_backward(dq, dk, dv, p.doutd, p.qd, p.kd, p.vd, s);
    t_close_d("fd vs float64 analytic dq", dq, fq, s->Tq * qw, 1e-6, 1e-6);
    t_close_d("fd vs float64 analytic dk", dk, fk, s->Tk * kw, 1e-6, 1e-6);
    t_close_d("fd vs float64 analytic dv", dv, fv, s->Tk * kw, 1e-6, 1e-6);

    /* accumulate: prefill + gradient; one float addition, so 1 ulp-level tolerance */
    float *pq = xmalloc((size_t)q_elems(s) * sizeof(float)), *pk, *pv;
    pk = xmalloc((size_t)kv_elems(s) * sizeof(float));
    pv = xmalloc((size_t)kv_elems(s) * sizeof(float));
    t_fill_normal(rng, pq, q_elems(s), 1.0f);
    t_fill_normal(rng, pk, kv_elems(s), 1.0f);
    t_fill_normal(rng, pv, kv_elems(s), 1.0f);
    float *aq = xmalloc((size_t)q_elems(s) * sizeof(float)), *ak, *av;
    ak = xmalloc((size_t)kv_elems(s) * sizeof(float));
    av = xmalloc((size_t)kv_elems(s) * sizeof(float));
    memcpy(aq, pq, (size_t)q_elems(s) * sizeof(float));
    memcpy(ak, pk, (size_t)kv_elems(s) * sizeof(float));
    memcpy(av, pv, (size_t)kv_elems(s) * sizeof(float));
    attention_backward_cpu(aq, ak, av, p.dout, p.q, p.k, p.v, r.out, r.lse, s);
    for (int64_t x = 0; x < q_elems(s); x++) pq[x] += x % s->q_stride < qw ? r.dq[x] : 0;
    for (int64_t x = 0; x < kv_elems(s); x++) {
        pk[x] += x % s->kv_stride < kw ? r.dk[x] : 0;
        pv[x] += x % s->kv_stride < kw ? r.dv[x] : 0;
    }
    t_close("accumulate dq", aq, pq, q_elems(s), 1e-6, 1e-6);
    t_close("accumulate dk", ak, pk, kv_elems(s), 1e-6, 1e-6);
    t_close("accumulate dv", av, pv, kv_elems(s), 1e-6, 1e-6);

    free(pq), free(pk), free(pv), free(aq), free(ak), free(av);
    free(dq), free(dk), free(dv), free(fq), free(fk), free(fv);
    result_free(&r);
    problem_free(&p);
}

/* ---- chunked calls (context parallelism) ---- */

static void test_chunks(struct t_rng *rng) {
    struct problem p = problem_make(rng, 200, 0, 200, 4, 2, 64, 8, 0, 1.0f);
    const struct attn_shape *s = &p.s;
    struct result whole = run_kernel(&p);
    struct result part = result_alloc(s);
    int64_t half = s->Tq / 2;
    for (int c = 0; c < 2; c++) {
        struct attn_shape cs = *s;
        cs.Tq = half;
        cs.q_pos0 = c * half;
        int64_t qo = c * half * s->q_stride, lo = c * half * s->Hq;
        attention_forward_cpu(part.out + qo, part.lse + lo, p.q + qo, p.k, p.v, &cs);
        attention_backward_cpu(part.dq + qo, part.dk, part.dv, p.dout + qo, p.q + qo, p.k, p.v,
                               part.out + qo, part.lse + lo, &cs);
    }
    t_check(!memcmp(part.out, whole.out, (size_t)q_elems(s) * sizeof(float)),
            "chunks: out differs from one call");
    t_check(!memcmp(part.lse, whole.lse, (size_t)(s->Tq * s->Hq) * sizeof(float)),
            "chunks: lse differs from one call");
    t_check(!memcmp(part.dq, whole.dq, (size_t)q_elems(s) * sizeof(float)),
            "chunks: dq differs from one call");
    /* dk, dv: two partial sums added instead of one sum; values O(1), fp32 rounding ~1e-7 */
    t_close("chunks dk", part.dk, whole.dk, kv_elems(s), 1e-6, 1e-5);
    t_close("chunks dv", part.dv, whole.dv, kv_elems(s), 1e-6, 1e-5);
    result_free(&part);
    result_free(&whole);
    problem_free(&p);
}

/* ---- thread-count independence ---- */

static bool same_result(const struct result *a, const struct result *b, const struct attn_shape *s) {
    return !memcmp(a->out, b->out, (size_t)q_elems(s) * sizeof(float)) &&
           !memcmp(a->lse, b->lse, (size_t)(s->Tq * s->Hq) * sizeof(float)) &&
           !memcmp(a->dq, b->dq, (size_t)q_elems(s) * sizeof(float)) &&
           !memcmp(a->dk, b->dk, (size_t)kv_elems(s) * sizeof(float)) &&
           !memcmp(a->dv, b->dv, (size_t)kv_elems(s) * sizeof(float));
}

static void test_threads(struct t_rng *rng) {
    struct problem p = problem_make(rng, 300, 37, 350, 4, 1, 64, 0, 0, 1.0f);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    struct result r1 = run_kernel(&p);
    for (int nt = 2; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        struct result rn = run_kernel(&p);
        t_check(same_result(&r1, &rn, &p.s), "threads: %d threads differ from 1 thread", nt);
        result_free(&rn);
    }
    omp_set_num_threads(saved);
    result_free(&r1);
    problem_free(&p);
}

/* ---- documents ---- */

/* The packed problem p (q_pos0 0, Tq = Tk) against each document [starts[d], starts[d + 1]) run
 * alone (its rows of q, k, v, dout at position 0, no doc_start): every output row bitwise. */
static void check_packed_vs_alone(const struct problem *p, const int64_t *starts, int n) {
    const struct attn_shape *s = &p->s;
    struct result packed = run_kernel(p);
    for (int d = 0; d < n; d++) {
        int64_t a = starts[d], b = d + 1 < n ? starts[d + 1] : s->Tq;
        struct attn_shape one = *s;
        one.Tq = one.Tk = b - a;
        one.doc_start = NULL;
        struct result r = result_alloc(&one);
        int64_t qo = a * s->q_stride, ko = a * s->kv_stride;
        attention_forward_cpu(r.out, r.lse, p->q + qo, p->k + ko, p->v + ko, &one);
        attention_backward_cpu(r.dq, r.dk, r.dv, p->dout + qo, p->q + qo, p->k + ko, p->v + ko,
                               r.out, r.lse, &one);
        size_t qb = (size_t)((b - a) * s->q_stride) * sizeof(float);
        size_t kb = (size_t)((b - a) * s->kv_stride) * sizeof(float);
        bool same = !memcmp(r.out, packed.out + qo, qb) && !memcmp(r.dq, packed.dq + qo, qb) &&
                    !memcmp(r.lse, packed.lse + a * s->Hq, (size_t)((b - a) * s->Hq) * sizeof(float)) &&
                    !memcmp(r.dk, packed.dk + ko, kb) && !memcmp(r.dv, packed.dv + ko, kb);
        t_check(same, "documents: document %d [%lld, %lld) packed differs from alone", d,
                (long long)a, (long long)b);
        result_free(&r);
    }
    result_free(&packed);
}

static void test_documents(struct t_rng *rng) {
    /* documents starting mid-block, a one-token document, 16-row tiles holding three documents */
    const int64_t starts[] = {0, 37, 38, 100, 107, 180};
    struct problem p = problem_make(rng, 200, 0, 200, 4, 2, 32, 3, 2, 1.0f);
    problem_documents(&p, starts, 6);
    check_problem("documents", &p);
    check_packed_vs_alone(&p, starts, 6);

    /* two calls as context parallelism makes them: out, lse, dq bitwise, dk, dv to one addition */
    struct result whole = run_kernel(&p), part = result_alloc(&p.s);
    int64_t half = p.s.Tq / 2;
    for (int c = 0; c < 2; c++) {
        struct attn_shape cs = p.s;
        cs.Tq = half;
        cs.q_pos0 = c * half;
        cs.doc_start = p.s.doc_start + c * half;
        int64_t qo = c * half * p.s.q_stride, lo = c * half * p.s.Hq;
        attention_forward_cpu(part.out + qo, part.lse + lo, p.q + qo, p.k, p.v, &cs);
        attention_backward_cpu(part.dq + qo, part.dk, part.dv, p.dout + qo, p.q + qo, p.k, p.v,
                               part.out + qo, part.lse + lo, &cs);
    }
    t_check(!memcmp(part.out, whole.out, (size_t)q_elems(&p.s) * sizeof(float)) &&
                !memcmp(part.lse, whole.lse, (size_t)(p.s.Tq * p.s.Hq) * sizeof(float)) &&
                !memcmp(part.dq, whole.dq, (size_t)q_elems(&p.s) * sizeof(float)),
            "documents: two chunks differ from one call (out, lse or dq)");
    t_close("documents chunks dk", part.dk, whole.dk, kv_elems(&p.s), 1e-6, 1e-5);
    t_close("documents chunks dv", part.dv, whole.dv, kv_elems(&p.s), 1e-6, 1e-5);

    int saved = omp_get_max_threads();
    omp_set_num_threads(3);
    struct result r3 = run_kernel(&p);
    omp_set_num_threads(1);
    struct result r1 = run_kernel(&p);
    omp_set_num_threads(saved);
    t_check(same_result(&r1, &r3, &p.s), "documents: 3 threads differ from 1 thread");
    result_free(&r1), result_free(&r3), result_free(&part), result_free(&whole);
    problem_free(&p);

    /* a chunk at q_pos0 70 whose first rows continue the document begun at 40; G 4, D 64 */
    const int64_t cstarts[] = {0, 40, 100, 101, 130};
    struct problem c = problem_make(rng, 90, 70, 160, 4, 1, 64, 0, 4, 1.0f);
    problem_documents(&c, cstarts, 5);
    check_problem("documents chunk", &c);
    problem_free(&c);
}

int main(void) {
    struct t_rng rng = {.state = 0x5eed0a77e47ull};
    /*          name           Tq   q_pos0 Tk   Hq Hkv D    q_pad kv_pad q_std */
    test_shape(&rng, "G1 D64", 100, 0, 100, 2, 2, 64, 0, 0, 1.0f);
    test_shape(&rng, "G2 D128 mid", 77, 90, 200, 4, 2, 128, 7, 3, 1.0f);
    test_shape(&rng, "G4 D24", 133, 0, 133, 4, 1, 24, 5, 2, 1.0f);
    test_shape(&rng, "G2 one row", 1, 150, 151, 4, 2, 64, 0, 4, 1.0f);
    test_shape(&rng, "G1 peaky", 70, 10, 80, 2, 2, 64, 0, 0, 6.0f);
    test_finite_differences(&rng);
    test_chunks(&rng);
    test_threads(&rng);
    test_documents(&rng);
    return t_finish("test_attention");
}
