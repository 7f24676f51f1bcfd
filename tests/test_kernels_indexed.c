/*
 * test_kernels_indexed.c: the fp32 CPU kernels that index by token id, position or target
 * (embedding, rope, cross-entropy) against float64 re-implementations written here. The dense
 * kernels (matmul, bias, rmsnorm, swiglu) are test_kernels_dense.c; the tolerances and the
 * finite-difference and thread checks both use are in testlib_kernels.h.
 *
 *   forward      every kernel against its float64 forward; rope_table_init against a direct double
 *                computation.
 *   backward     every input with a gradient (embedding wte with repeated ids and scale != 1, rope
 *                on q-style rows wider than H * D with LongRoPE factors, mscale != 1 and two
 *                separate position ranges, cross-entropy logits with a target -1 row, a shifted row
 *                and V >= 50000) against central finite differences (h = 1e-6) of the float64
 *                forward of L = sum(r .* out) for a random r; on the larger sizes against a float64
 *                analytic backward (itself validated by the finite differences).
 *   accumulate   the embedding backward prefilled with random values ends as prefill + gradient;
 *                rope works in place and leaves the gaps between rows untouched.
 *   special      cross-entropy with dlogits == logits and with dlogits NULL (bitwise the same
 *                losses / gradients); rope forward then backward with mscale = 1 returns x.
 *   threads      every kernel bitwise identical with 1, 2 and 3 OpenMP threads.
 *
 * Dimensions: N rows (tokens), C channels, H heads, D head dim, V vocabulary, T positions.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "crossentropy.h"
#include "embedding.h"
#include "rope.h"
#include "testlib.h"
#include "testlib_kernels.h"

/* Cross-entropy: the fp32 difference x - max rounds by up to u * |x - max| (<= 30 here), a relative
 * error of up to 2e-6 in that softmax entry, plus exp's 1.5 ulp and the sum. */
#define CE_RTOL 5e-6
#define SENTINEL 777.0f /* fills the gaps between rope rows; must survive every call */

static int32_t *rand_ids(struct t_rng *rng, int64_t n, int64_t bound) {
    int32_t *t = xmalloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) t[i] = (int32_t)(t_rng_u64(rng) % (uint64_t)bound);
    return t;
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

int main(void) {
    struct t_rng rng = {.state = 0x6b65726e656c73ull};
    test_rope(&rng);
    test_embedding(&rng);
    test_crossentropy(&rng);
    return t_finish("test_kernels_indexed");
}
