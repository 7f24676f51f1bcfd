/*
 * test_gpu.c: every CUDA kernel, forward and backward, against the fp32 CPU reference on the same
 * inputs, then a whole training step of tiny models (MiniCPM dense and sparse, Qwen2 with its q, k,
 * v biases, Qwen3 with its per-head q, k norms and attention_bias; loss and every gradient) and
 * ten steps of loss, CUDA against CPU. Exits 77 (skipped) without a CUDA device or a CUDA build.
 *
 * Inputs are drawn in fp32 and rounded to bf16 once, so both backends start from identical
 * values; the CPU then computes in fp32, the GPU in bf16 storage with fp32 accumulation.
 * Comparison: relative L2 error ||gpu - cpu|| / ||cpu|| (METHOD.md). Storing a result in bf16
 * alone costs ~2^-9 = 2e-3 relative; a chain of bf16 roundings (GEMM inputs, softmax
 * probabilities in the attention backward) a few times that. Tolerances: 1e-2 for single ops,
 * 3e-2 for attention backward and whole-model gradients; selections identical but for counted
 * near-tie swaps (near_tie_swaps: fp32 rounding at the top-k boundary, never an exact tie).
 * Attention and the selection are checked for every GQA group size of gqa_groups (dense and
 * sparse, forward and backward, D 64 and 128), and the tensor-core kernels' supported() guards
 * must accept every model shape, so a shape that would fall back to the CUDA-core kernels fails.
 * Document masking: the whole-model step again with sequences that pack several documents
 * (dense ones, and InfLLM-V2 ones next to short dense ones), which the CUDA backend runs as one
 * attention call per document, against the CPU reference.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#ifndef INFLLM_CUDA
int main(void) {
    printf("test_gpu: built without CUDA: skipped\n");
    return 77;
}
#else

#include <cuda_runtime_api.h>

#include "adamw_update.h"
#include "attention.h"
#include "bias.h"
#include "backend.h"
#include "check.h"
#include "config.h"
#include "crossentropy.h"
#include "elementwise.h"
#include "embedding.h"
#include "grid.h"
#include "infllmv2.h"
#include "matmul.h"
#include "model.h"
#include "rmsnorm.h"
#include "rope.h"
#include "safetensors.h"
#include "swiglu.h"

static struct backend be;
static struct t_rng rng = {2024};

/* ---------------------------------------------------------------------------------------------- */
/* Helpers: bf16-exact random host arrays, device copies, comparisons                              */

static float *host_bf16_rand(int64_t n, float std) {
    float *x = xmalloc((size_t)n * sizeof(float));
    t_fill_normal(&rng, x, n, std);
    for (int64_t i = 0; i < n; i++) x[i] = st_bf16_to_f32(st_f32_to_bf16(x[i]));
    return x;
}

static void *dev_act(const float *host, int64_t n) {
    void *d = backend_alloc(&be, (size_t)n * 2, "test");
    backend_upload_act(&be, d, host, n);
    return d;
}

static void *dev_bytes(const void *host, size_t bytes) {
    void *d = backend_alloc(&be, bytes, "test");
    if (host) backend_upload(&be, d, host, bytes);
    return d;
}

static float *from_act(const void *d, int64_t n) {
    float *h = xmalloc((size_t)n * sizeof(float));
    backend_download_act(&be, h, d, n);
    return h;
}

static float *from_f32(const void *d, int64_t n) {
    float *h = xmalloc((size_t)n * sizeof(float));
    backend_download(&be, h, d, (size_t)n * sizeof(float));
    return h;
}

static double rel_l2(const float *got, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)ref[i];
        if (isnan(got[i])) return INFINITY;
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 1e-300 ? den : 1e-300));
}

static void check_rel(const char *what, const float *got, const float *ref, int64_t n, double tol) {
    double e = rel_l2(got, ref, n);
    t_check(e <= tol, "%s: relative L2 error %.3g > %.3g", what, e, tol);
    printf("  %-44s rel L2 %.2e (tol %.0e)\n", what, e, tol);
}

/* ---------------------------------------------------------------------------------------------- */
/* Layer kernels                                                                                   */

static void test_matmul(int64_t N, int IC, int OC) {
    char what[96];
    float *x = host_bf16_rand(N * IC, 1.0f), *w = host_bf16_rand((int64_t)OC * IC, 0.05f);
    float *g = host_bf16_rand(N * OC, 1.0f);
    void *dx = dev_act(x, N * IC), *dw = dev_act(w, (int64_t)OC * IC), *dg = dev_act(g, N * OC);
    float *ref = xcalloc((size_t)(N * OC), sizeof(float));
    matmul_forward_cpu(ref, x, w, N, IC, OC, 0.5f, false);
    void *dout = backend_alloc(&be, (size_t)(N * OC) * 2, "t");
    matmul_forward_cuda(dout, dx, dw, N, IC, OC, 0.5f, false, &be.gpu);
    float *got = from_act(dout, N * OC);
    snprintf(what, sizeof what, "matmul fwd %lldx%dx%d", (long long)N, IC, OC);
    check_rel(what, got, ref, N * OC, 1e-2);
    float *dlog = backend_alloc(&be, (size_t)(N * OC) * 4, "t");
    matmul_forward_f32_cuda(dlog, dx, dw, N, IC, OC, 0.5f, &be.gpu);
    free(got);
    got = from_f32(dlog, N * OC);
    snprintf(what, sizeof what, "matmul fwd fp32 out %lldx%dx%d", (long long)N, IC, OC);
    check_rel(what, got, ref, N * OC, 5e-3);
    /* backward: dinp (bf16, prefilled) and dw (fp32, prefilled) */
    float *pre_in = host_bf16_rand(N * IC, 0.1f), *pre_w = host_bf16_rand((int64_t)OC * IC, 0.1f);
    float *rin = xmalloc((size_t)(N * IC) * 4), *rw = xmalloc((size_t)OC * IC * 4);
    memcpy(rin, pre_in, (size_t)(N * IC) * 4);
    memcpy(rw, pre_w, (size_t)OC * IC * 4);
    matmul_backward_cpu(rin, rw, g, x, w, N, IC, OC, 0.5f);
    void *ddin = dev_act(pre_in, N * IC);
    float *ddw = dev_bytes(pre_w, (size_t)OC * IC * 4);
    matmul_backward_cuda(ddin, ddw, dg, dx, dw, N, IC, OC, 0.5f, &be.gpu);
    float *gin = from_act(ddin, N * IC), *gw = from_f32(ddw, (int64_t)OC * IC);
    snprintf(what, sizeof what, "matmul bwd dinp %lldx%dx%d", (long long)N, IC, OC);
    check_rel(what, gin, rin, N * IC, 1e-2);
    snprintf(what, sizeof what, "matmul bwd dw (fp32) %lldx%dx%d", (long long)N, IC, OC);
    check_rel(what, gw, rw, (int64_t)OC * IC, 1e-2);
    void *bufs[] = {dx, dw, dg, dout, dlog, ddin, ddw};
    for (int i = 0; i < 7; i++) backend_release(&be, bufs[i]);
    free(x), free(w), free(g), free(ref), free(got), free(pre_in), free(pre_w), free(rin), free(rw);
    free(gin), free(gw);
}

static void test_norm_embed_rope_swiglu(void) {
    const int64_t N = 301;
    const int C = 200, V = 97, H = 3, D = 64;
    void *ws = backend_alloc(&be, embedding_backward_workspace_bytes(N), "ws");
    /* embedding */
    int32_t *tok = xmalloc((size_t)N * 4);
    for (int64_t i = 0; i < N; i++) tok[i] = (int32_t)(t_rng_u64(&rng) % 13); /* many repeats */
    float *wte = host_bf16_rand((int64_t)V * C, 1.0f);
    float *ref = xmalloc((size_t)(N * C) * 4);
    embedding_forward_cpu(ref, tok, wte, N, C, 2.0f);
    int32_t *dtok = dev_bytes(tok, (size_t)N * 4);
    void *dwte = dev_act(wte, (int64_t)V * C), *dout = backend_alloc(&be, (size_t)(N * C) * 2, "t");
    embedding_forward_cuda(dout, dtok, dwte, N, C, 2.0f, &be.gpu);
    float *got = from_act(dout, N * C);
    check_rel("embedding fwd", got, ref, N * C, 5e-3);
    float *g = host_bf16_rand(N * C, 1.0f);
    float *rgrad = xcalloc((size_t)V * C, 4);
    embedding_backward_cpu(rgrad, g, tok, N, C, 2.0f);
    void *dg = dev_act(g, N * C);
    float *dgrad = dev_bytes(NULL, (size_t)V * C * 4);
    embedding_backward_cuda(dgrad, dg, dtok, N, C, 2.0f, ws, &be.gpu);
    float *ggrad = from_f32(dgrad, (int64_t)V * C);
    check_rel("embedding bwd (sorted, deterministic)", ggrad, rgrad, (int64_t)V * C, 1e-5);
    /* rope (row stride > H * D, two position ranges) */
    int64_t stride = H * D + 8, T = 4096;
    float *cs = xmalloc((size_t)(T * D / 2) * 4), *sn = xmalloc((size_t)(T * D / 2) * 4);
    double factor[32];
    for (int i = 0; i < D / 2; i++) factor[i] = 1.0 + 0.1 * i;
    rope_table_init(cs, sn, T, D, 10000.0, factor, 1.2);
    int32_t *pos = xmalloc((size_t)N * 4);
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(i < N / 2 ? i : 3000 + i);
    float *q = host_bf16_rand(N * stride, 1.0f), *qr = xmalloc((size_t)(N * stride) * 4);
    memcpy(qr, q, (size_t)(N * stride) * 4);
    rope_forward_cpu(qr, cs, sn, pos, N, H, D, stride);
    void *dq = dev_act(q, N * stride);
    float *dcs = dev_bytes(cs, (size_t)(T * D / 2) * 4), *dsn = dev_bytes(sn, (size_t)(T * D / 2) * 4);
    int32_t *dpos = dev_bytes(pos, (size_t)N * 4);
    rope_forward_cuda(dq, dcs, dsn, dpos, N, H, D, stride, &be.gpu);
    float *gq = from_act(dq, N * stride);
    check_rel("rope fwd", gq, qr, N * stride, 1e-2);
    rope_backward_cpu(qr, cs, sn, pos, N, H, D, stride);
    rope_backward_cuda(dq, dcs, dsn, dpos, N, H, D, stride, &be.gpu);
    free(gq);
    gq = from_act(dq, N * stride);
    check_rel("rope bwd", gq, qr, N * stride, 1e-2);
    /* swiglu */
    float *a = host_bf16_rand(N * C, 2.0f), *b = host_bf16_rand(N * C, 1.0f);
    swiglu_forward_cpu(ref, a, b, N * C);
    void *da = dev_act(a, N * C), *db = dev_act(b, N * C);
    swiglu_forward_cuda(dout, da, db, N * C, &be.gpu);
    free(got);
    got = from_act(dout, N * C);
    check_rel("swiglu fwd", got, ref, N * C, 1e-2);
    float *rga = xcalloc((size_t)(N * C), 4), *rgb = xcalloc((size_t)(N * C), 4);
    swiglu_backward_cpu(rga, rgb, g, a, b, N * C);
    void *dga = backend_alloc(&be, (size_t)(N * C) * 2, "t"), *dgb = backend_alloc(&be, (size_t)(N * C) * 2, "t");
    swiglu_backward_cuda(dga, dgb, dg, da, db, N * C, &be.gpu);
    float *gga = from_act(dga, N * C), *ggb = from_act(dgb, N * C);
    check_rel("swiglu bwd dgate", gga, rga, N * C, 1e-2);
    check_rel("swiglu bwd dup", ggb, rgb, N * C, 1e-2);
    void *bufs[] = {ws, dtok, dwte, dout, dg, dgrad, dq, dcs, dsn, dpos, da, db, dga, dgb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) backend_release(&be, bufs[i]);
    free(tok), free(wte), free(ref), free(got), free(g), free(rgrad), free(ggrad);
    free(cs), free(sn), free(pos), free(q);
    free(qr), free(gq), free(a), free(b), free(rga), free(rgb), free(gga), free(ggb);
}

/* RMSNorm over N rows of C: C > 256 runs a block per row, C <= 256 a warp per row (Qwen3's
 * per-head norms: N tokens x heads rows of head dim, many weight-gradient ranges). The backward
 * adds into prefilled dx (bf16) and dw (fp32), runs with the workspace of a wider row (the model
 * sizes it for its widest) and twice, bitwise the same. */
static void test_rmsnorm(int64_t N, int C, int ws_C) {
    char what[96];
    float *x = host_bf16_rand(N * C, 1.0f), *w = host_bf16_rand(C, 1.0f);
    float *g = host_bf16_rand(N * C, 1.0f), *rdx = host_bf16_rand(N * C, 0.1f);
    float *rdw = host_bf16_rand(C, 0.1f), *ref = xmalloc((size_t)(N * C) * 4);
    float *rst = xmalloc((size_t)N * 4);
    rmsnorm_forward_cpu(ref, rst, x, w, N, C, 1e-6f);
    void *dx = dev_act(x, N * C), *dw = dev_act(w, C), *dg = dev_act(g, N * C);
    void *dout = backend_alloc(&be, (size_t)(N * C) * 2, "t");
    float *drst = dev_bytes(NULL, (size_t)N * 4);
    rmsnorm_forward_cuda(dout, drst, dx, dw, N, C, 1e-6f, &be.gpu);
    float *got = from_act(dout, N * C), *grst = from_f32(drst, N);
    snprintf(what, sizeof what, "rmsnorm fwd N %lld C %d", (long long)N, C);
    check_rel(what, got, ref, N * C, 1e-2);
    snprintf(what, sizeof what, "rmsnorm rstd N %lld C %d", (long long)N, C);
    check_rel(what, grst, rst, N, 1e-5);
    void *ddx = dev_act(rdx, N * C), *ddx2 = dev_act(rdx, N * C);
    float *ddw = dev_bytes(rdw, (size_t)C * 4), *ddw2 = dev_bytes(rdw, (size_t)C * 4);
    void *ws = backend_alloc(&be, rmsnorm_backward_workspace_bytes(ws_C), "ws");
    rmsnorm_backward_cpu(rdx, rdw, g, x, w, rst, N, C);
    rmsnorm_backward_cuda(ddx, ddw, dg, dx, dw, drst, N, C, ws, &be.gpu);
    rmsnorm_backward_cuda(ddx2, ddw2, dg, dx, dw, drst, N, C, ws, &be.gpu);
    float *gdx = from_act(ddx, N * C), *gdw = from_f32(ddw, C);
    float *gdx2 = from_act(ddx2, N * C), *gdw2 = from_f32(ddw2, C);
    snprintf(what, sizeof what, "rmsnorm bwd dx N %lld C %d", (long long)N, C);
    check_rel(what, gdx, rdx, N * C, 1e-2);
    snprintf(what, sizeof what, "rmsnorm bwd dw N %lld C %d", (long long)N, C);
    check_rel(what, gdw, rdw, C, 1e-2);
    t_check(!memcmp(gdx, gdx2, (size_t)(N * C) * 4) && !memcmp(gdw, gdw2, (size_t)C * 4),
            "rmsnorm backward N %lld C %d: two runs differ", (long long)N, C);
    void *bufs[] = {dx, dw, dg, dout, drst, ddx, ddx2, ddw, ddw2, ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) backend_release(&be, bufs[i]);
    free(x), free(w), free(g), free(rdx), free(rdw), free(ref), free(rst), free(got), free(grst);
    free(gdx), free(gdw), free(gdx2), free(gdw2);
}

/* The bias of the q, k, v (and o) projections: y += s b on every row, db (fp32, prefilled) += s
 * times the column sums of dy over many rows (ordered partial sums: bitwise the same twice). */
static void test_bias(int64_t N, int C) {
    char what[96];
    float *y = host_bf16_rand(N * C, 1.0f), *b = host_bf16_rand(C, 1.0f);
    float *dy = host_bf16_rand(N * C, 1.0f), *rdb = host_bf16_rand(C, 1.0f);
    void *d_y = dev_act(y, N * C), *d_b = dev_act(b, C), *d_dy = dev_act(dy, N * C);
    float *d_db = dev_bytes(rdb, (size_t)C * 4), *d_db2 = dev_bytes(rdb, (size_t)C * 4);
    void *ws = backend_alloc(&be, bias_backward_workspace_bytes(C), "ws");
    bias_forward_cpu(y, b, N, C, 0.75f);
    bias_forward_cuda(d_y, d_b, N, C, 0.75f, &be.gpu);
    bias_backward_cpu(rdb, dy, N, C, 0.75f);
    bias_backward_cuda(d_db, d_dy, N, C, 0.75f, ws, &be.gpu);
    bias_backward_cuda(d_db2, d_dy, N, C, 0.75f, ws, &be.gpu);
    float *gy = from_act(d_y, N * C), *gdb = from_f32(d_db, C), *gdb2 = from_f32(d_db2, C);
    snprintf(what, sizeof what, "bias fwd N %lld C %d", (long long)N, C);
    check_rel(what, gy, y, N * C, 5e-3);
    snprintf(what, sizeof what, "bias bwd db (fp32) N %lld C %d", (long long)N, C);
    check_rel(what, gdb, rdb, C, 5e-5); /* fp32 partial sums of up to 5000 rows */
    t_check(!memcmp(gdb, gdb2, (size_t)C * 4), "bias backward: two runs differ");
    void *bufs[] = {d_y, d_b, d_dy, d_db, d_db2, ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) backend_release(&be, bufs[i]);
    free(y), free(b), free(dy), free(rdb), free(gy), free(gdb), free(gdb2);
}

static void test_crossentropy(void) {
    const int64_t N = 7, V = 50257;
    float *logits = xmalloc((size_t)(N * V) * 4);
    t_fill_normal(&rng, logits, N * V, 3.0f);
    int32_t tg[7] = {0, 5, 50256, -1, 1234, 77, 40000};
    float *rl = xmalloc((size_t)N * 4), *rd = xmalloc((size_t)(N * V) * 4);
    crossentropy_forward_backward_cpu(rl, rd, logits, tg, N, V, 0.25f);
    float *dlog = dev_bytes(logits, (size_t)(N * V) * 4);
    int32_t *dtg = dev_bytes(tg, sizeof tg);
    float *dl = dev_bytes(NULL, (size_t)N * 4);
    void *dd = backend_alloc(&be, (size_t)(N * V) * 2, "t");
    crossentropy_forward_backward_cuda(dl, dd, dlog, dtg, N, V, 0.25f, &be.gpu);
    float *gl = from_f32(dl, N), *gd = from_act(dd, N * V);
    check_rel("crossentropy loss (V=50257, a masked row)", gl, rl, N, 1e-5);
    check_rel("crossentropy dlogits", gd, rd, N * V, 1e-2);
    t_check(gl[3] == 0.0f, "masked row loss %g", gl[3]);
    /* argmax: the same index as the CPU, lowest index on a tie (row 2 gets a planted tie) */
    logits[2 * V + 7] = logits[2 * V + 900] = 1e3f;
    backend_upload(&be, dlog, logits, (size_t)(N * V) * 4);
    int32_t ridx[7], gidx[7];
    argmax_rows_cpu(ridx, logits, N, V);
    int32_t *didx = dev_bytes(NULL, sizeof gidx);
    argmax_rows_cuda(didx, dlog, N, V, &be.gpu);
    backend_download(&be, gidx, didx, sizeof gidx);
    t_equal_i32("argmax rows (a tie resolved to the lower index)", gidx, ridx, N);
    t_check(gidx[2] == 7, "argmax tie -> %d, expected 7", gidx[2]);
    backend_release(&be, didx);
    backend_release(&be, dlog), backend_release(&be, dtg), backend_release(&be, dl), backend_release(&be, dd);
    free(logits), free(rl), free(rd), free(gl), free(gd);
}

static void test_adamw(void) {
    const int64_t n = 100003;
    float *w = host_bf16_rand(n, 1.0f), *g = host_bf16_rand(n, 0.1f);
    float *m = xcalloc((size_t)n, 4), *v = xcalloc((size_t)n, 4);
    float *dwm = dev_bytes(w, (size_t)n * 4), *dm = dev_bytes(NULL, (size_t)n * 4),
          *dv = dev_bytes(NULL, (size_t)n * 4), *dg = dev_bytes(g, (size_t)n * 4);
    void *dp = backend_alloc(&be, (size_t)n * 2, "t");
    for (int t = 1; t <= 3; t++) {
        adamw_update_cpu(w, m, v, g, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
        adamw_update_cuda(dwm, dm, dv, dg, dp, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t, &be.gpu);
    }
    float *gw = from_f32(dwm, n), *gp = from_act(dp, n);
    check_rel("adamw master weights after 3 steps", gw, w, n, 1e-6);
    check_rel("adamw bf16 copy of the weights", gp, w, n, 5e-3);
    void *ws = backend_alloc(&be, sumsq_workspace_bytes(), "t");
    double a = sumsq_cpu(g, n), b = sumsq_cuda(dg, n, ws, &be.gpu);
    double b2 = sumsq_cuda(dg, n, ws, &be.gpu);
    t_check(fabs(a - b) <= 1e-9 * a, "sumsq %.12g vs %.12g", b, a);
    t_check(b == b2, "sumsq is deterministic");
    backend_release(&be, dwm), backend_release(&be, dm), backend_release(&be, dv), backend_release(&be, dg);
    backend_release(&be, dp), backend_release(&be, ws);
    free(w), free(g), free(m), free(v), free(gw), free(gp);
}

/* ---------------------------------------------------------------------------------------------- */
/* Attention                                                                                       */

struct att_case {
    int64_t Tq, q_pos0, Tk;
    int Hq, Hkv, D;
};

static void test_dense_attention(const struct att_case *k) {
    char what[128];
    struct attn_shape s = {k->Tq, k->q_pos0, k->Tk, k->Hq, k->Hkv, k->D, (int64_t)k->Hq * k->D,
                           (int64_t)k->Hkv * k->D, (float)(1.0 / sqrt((double)k->D)), NULL};
    int64_t nq = s.Tq * s.q_stride, nk = s.Tk * s.kv_stride;
    float *q = host_bf16_rand(nq, 1.0f), *kk = host_bf16_rand(nk, 1.0f), *v = host_bf16_rand(nk, 1.0f);
    float *o = xmalloc((size_t)nq * 4), *lse = xmalloc((size_t)(s.Tq * s.Hq) * 4);
    attention_forward_cpu(o, lse, q, kk, v, &s);
    void *dq = dev_act(q, nq), *dk = dev_act(kk, nk), *dv = dev_act(v, nk);
    void *dout = backend_alloc(&be, (size_t)nq * 2, "t");
    float *dlse = dev_bytes(NULL, (size_t)(s.Tq * s.Hq) * 4);
    attention_forward_cuda(dout, dlse, dq, dk, dv, &s, &be.gpu);
    float *go = from_act(dout, nq), *gl = from_f32(dlse, s.Tq * s.Hq);
    snprintf(what, sizeof what, "dense attn fwd Tq %lld q0 %lld G %d D %d", (long long)s.Tq,
             (long long)s.q_pos0, s.Hq / s.Hkv, s.D);
    check_rel(what, go, o, nq, 1e-2);
    check_rel("  lse", gl, lse, s.Tq * s.Hq, 1e-3);
    /* backward from the CPU's own out and lse (bf16-rounded), so both see the same inputs */
    for (int64_t i = 0; i < nq; i++) o[i] = st_bf16_to_f32(st_f32_to_bf16(o[i]));
    backend_upload_act(&be, dout, o, nq);
    backend_upload(&be, dlse, lse, (size_t)(s.Tq * s.Hq) * 4);
    float *g = host_bf16_rand(nq, 1.0f);
    float *rdq = xcalloc((size_t)nq, 4), *rdk = xcalloc((size_t)nk, 4), *rdv = xcalloc((size_t)nk, 4);
    attention_backward_cpu(rdq, rdk, rdv, g, q, kk, v, o, lse, &s);
    void *dg = dev_act(g, nq);
    void *ddq = backend_alloc(&be, (size_t)nq * 2, "t"), *ddk = backend_alloc(&be, (size_t)nk * 2, "t"),
         *ddv = backend_alloc(&be, (size_t)nk * 2, "t");
    attention_backward_cuda(ddq, ddk, ddv, dg, dq, dk, dv, dout, dlse, &s, &be.gpu);
    float *gq = from_act(ddq, nq), *gk = from_act(ddk, nk), *gv = from_act(ddv, nk);
    check_rel("  dq", gq, rdq, nq, 3e-2);
    check_rel("  dk", gk, rdk, nk, 3e-2);
    check_rel("  dv", gv, rdv, nk, 3e-2);
    void *bufs[] = {dq, dk, dv, dout, dlse, dg, ddq, ddk, ddv};
    for (int i = 0; i < 9; i++) backend_release(&be, bufs[i]);
    free(q), free(kk), free(v), free(o), free(lse), free(go), free(gl), free(g), free(rdq), free(rdk);
    free(rdv), free(gq), free(gk), free(gv);
}

/* The GPU scores stage 1 on tensor cores (another fp32 summation order, exp2 of a fused argument),
 * so its block scores differ from the CPU's by fp32 rounding, ~1e-6 relative, and a near-tie at
 * the top-k boundary can flip. A GPU selection row that differs from the CPU's passes only when it
 * holds as many blocks, ascending, and every block the GPU kept instead of one the CPU kept has a
 * CPU score below and within NEAR_TIE_REL (about 250 fp32 ulps) of it. With `ties` (blocks of
 * equal inputs) the score must be strictly below: exact ties must break exactly as on the CPU.
 * Without, an equal CPU score is a coincidence of fp32 rounding (seen once in 65536 rows: two
 * distant blocks of random keys at 0.00813689642) and counts as a near tie. Forced blocks (inf)
 * and -inf never pass. Returns the number of swapped blocks, or -1 when the rows differ otherwise. */
#define NEAR_TIE_REL 3e-5
static int64_t near_tie_swaps(const int32_t *gpu, const int32_t *cpu, int nsel, const float *score,
                              bool ties) {
    int ng = 0, nc = 0;
    while (ng < nsel && gpu[ng] >= 0) ng++;
    while (nc < nsel && cpu[nc] >= 0) nc++;
    if (ng != nc) return -1;
    for (int x = 0; x < nsel; x++)
        if ((x >= ng && gpu[x] != -1) || (x > 0 && x < ng && gpu[x] <= gpu[x - 1])) return -1;
    float gpu_only_max = -INFINITY, cpu_only_min = INFINITY, cpu_only_max = -INFINITY;
    int64_t swaps = 0;
    for (int a = 0, b = 0; a < ng || b < nc;) {
        if (a < ng && b < nc && gpu[a] == cpu[b]) {
            a++, b++;
        } else if (b >= nc || (a < ng && gpu[a] < cpu[b])) {
            gpu_only_max = fmaxf(gpu_only_max, score[gpu[a++]]);
            swaps++;
        } else {
            cpu_only_min = fminf(cpu_only_min, score[cpu[b]]);
            cpu_only_max = fmaxf(cpu_only_max, score[cpu[b++]]);
        }
    }
    bool finite = isfinite(gpu_only_max) && isfinite(cpu_only_max);
    bool below = ties ? gpu_only_max < cpu_only_min : gpu_only_max <= cpu_only_min;
    return finite && below &&
                   cpu_only_max - gpu_only_max <= NEAR_TIE_REL * fabsf(cpu_only_max)
               ? swaps
               : -1;
}

/* Stages 0-3 on one sequence (q_pos0 = 0, Tq = Tk = T). With `ties`, every key of a few blocks is
 * identical so their compressed keys and scores tie exactly. */
static void test_sparse(int64_t T, int Hq, int Hkv, int D, const struct infllm_params *p,
                        bool ties) {
    char what[160];
    struct attn_shape s = {T, 0, T, Hq, Hkv, D, (int64_t)Hq * D, (int64_t)Hkv * D,
                           (float)(1.0 / sqrt((double)D)), NULL};
    int64_t nq = T * s.q_stride, nk = T * s.kv_stride, KD = s.kv_stride;
    float *q = host_bf16_rand(nq, 1.0f), *kk = host_bf16_rand(nk, 1.0f), *v = host_bf16_rand(nk, 1.0f);
    if (ties)
        for (int64_t j = 0; j < T; j++)
            if ((j / p->block_size) % 3 == 1)
                memcpy(kk + j * KD, kk + (p->block_size) * KD, (size_t)KD * 4);
    int ks = p->kernel_size, st = p->kernel_stride;
    int64_t L1 = infllm_num_windows(T, ks, st), L2 = p->lse_approx ? infllm_num_windows(T, 4 * ks, 4 * st) : 0;
    /* stage 0 */
    float *k1 = xmalloc((size_t)((L1 ? L1 : 1) * KD) * 4), *k2 = xmalloc((size_t)((L2 ? L2 : 1) * KD) * 4);
    infllm_compress_cpu(k1, kk, L1, Hkv, D, KD, ks, st);
    if (L2) infllm_compress_cpu(k2, kk, L2, Hkv, D, KD, 4 * ks, 4 * st);
    void *dq = dev_act(q, nq), *dk = dev_act(kk, nk), *dv = dev_act(v, nk);
    void *dk1 = backend_alloc(&be, (size_t)((L1 ? L1 : 1) * KD) * 2, "t");
    void *dk2 = backend_alloc(&be, (size_t)((L2 ? L2 : 1) * KD) * 2, "t");
    infllm_compress_cuda(dk1, dk, L1, Hkv, D, KD, ks, st, &be.gpu);
    if (L2) infllm_compress_cuda(dk2, dk, L2, Hkv, D, KD, 4 * ks, 4 * st, &be.gpu);
    float *gk1 = from_act(dk1, L1 * KD);
    snprintf(what, sizeof what, "compress K1 T %lld%s", (long long)T, ties ? " (ties)" : "");
    check_rel(what, gk1, k1, L1 * KD, 5e-3);
    /* stages 1-2 from the same bf16 compressed keys on both sides */
    float *k1b = from_act(dk1, L1 * KD), *k2b = L2 ? from_act(dk2, L2 * KD) : NULL;
    int nsel = infllm_num_selected(p);
    int32_t *rsel = xmalloc((size_t)(T * Hkv * nsel) * 4);
    infllm_select_cpu(rsel, q, k1b, L1, k2b, L2, &s, p);
    int32_t *dsel = dev_bytes(NULL, (size_t)(T * Hkv * nsel) * 4);
    infllm_select_cuda(dsel, dq, dk1, L1, dk2, L2, &s, p, &be.gpu);
    int32_t *gsel = xmalloc((size_t)(T * Hkv * nsel) * 4);
    backend_download(&be, gsel, dsel, (size_t)(T * Hkv * nsel) * 4);
    /* A differing row passes only as near-tie swaps, judged on the CPU's own block scores. */
    int64_t diff_rows = 0, bad_rows = 0, swaps = 0, nb = (T + p->block_size - 1) / p->block_size;
    float *S = xmalloc((size_t)(L1 ? L1 : 1) * 4), *score = xmalloc((size_t)nb * 4);
    for (int64_t r = 0; r < T * Hkv; r++) {
        if (memcmp(gsel + r * nsel, rsel + r * nsel, (size_t)nsel * 4) == 0) continue;
        int64_t t = s.q_pos0 + r / Hkv;
        infllm_group_scores_cpu(S, q + (r / Hkv) * s.q_stride, t, (int)(r % Hkv), k1b, L1, k2b, L2,
                                Hq, Hkv, D, s.scale, p);
        infllm_block_scores_cpu(score, S, t, L1, nb, p);
        int64_t n = near_tie_swaps(gsel + r * nsel, rsel + r * nsel, nsel, score, ties);
        diff_rows++;
        if (n >= 0) {
            swaps += n;
            continue;
        }
        if (bad_rows++ < 3) { /* what differs: each block of either row with its CPU score */
            printf("  row %lld group %lld: block (cpu score) gpu |", (long long)(r / Hkv),
                   (long long)(r % Hkv));
            for (int x = 0; x < nsel && gsel[r * nsel + x] >= 0; x++)
                printf(" %d (%.9g)", gsel[r * nsel + x], score[gsel[r * nsel + x]]);
            printf("\n    cpu |");
            for (int x = 0; x < nsel && rsel[r * nsel + x] >= 0; x++)
                printf(" %d (%.9g)", rsel[r * nsel + x], score[rsel[r * nsel + x]]);
            printf("\n");
        }
    }
    free(S), free(score);
    snprintf(what, sizeof what, "selection T %lld G %d D %d nsel %d lse_approx %d%s", (long long)T,
             Hq / Hkv, D, nsel, p->lse_approx, ties ? " (ties)" : "");
    t_check(bad_rows == 0, "%s: %lld of %lld (row, group) selections differ beyond near-ties", what,
            (long long)bad_rows, (long long)(T * Hkv));
    printf("  %-48s %lld of %lld rows differ (%lld near-tie swaps)\n", what, (long long)diff_rows,
           (long long)(T * Hkv), (long long)swaps);
    /* stage 3 with the CPU selection on both sides */
    backend_upload(&be, dsel, rsel, (size_t)(T * Hkv * nsel) * 4);
    float *o = xmalloc((size_t)nq * 4), *lse = xmalloc((size_t)(T * Hq) * 4);
    sparse_attention_forward_cpu(o, lse, q, kk, v, rsel, nsel, p->block_size, &s);
    void *dout = backend_alloc(&be, (size_t)nq * 2, "t");
    float *dlse = dev_bytes(NULL, (size_t)(T * Hq) * 4);
    sparse_attention_forward_cuda(dout, dlse, dq, dk, dv, dsel, nsel, p->block_size, &s, &be.gpu);
    float *go = from_act(dout, nq);
    check_rel("  sparse attn fwd", go, o, nq, 1e-2);
    for (int64_t i = 0; i < nq; i++) o[i] = st_bf16_to_f32(st_f32_to_bf16(o[i]));
    backend_upload_act(&be, dout, o, nq);
    backend_upload(&be, dlse, lse, (size_t)(T * Hq) * 4);
    float *g = host_bf16_rand(nq, 1.0f);
    float *rdq = xcalloc((size_t)nq, 4), *rdk = xcalloc((size_t)nk, 4), *rdv = xcalloc((size_t)nk, 4);
    sparse_attention_backward_cpu(rdq, rdk, rdv, g, q, kk, v, o, lse, rsel, nsel, p->block_size, &s);
    void *dg = dev_act(g, nq);
    void *ddq = backend_alloc(&be, (size_t)nq * 2, "t"), *ddk = backend_alloc(&be, (size_t)nk * 2, "t"),
         *ddv = backend_alloc(&be, (size_t)nk * 2, "t");
    int64_t nblk = (T + p->block_size - 1) / p->block_size;
    void *ws = backend_alloc(&be, sparse_attention_backward_workspace_bytes(T, Hkv, nsel, nblk), "t");
    sparse_attention_backward_cuda(ddq, ddk, ddv, dg, dq, dk, dv, dout, dlse, dsel, nsel,
                                   p->block_size, &s, ws, &be.gpu);
    float *gq = from_act(ddq, nq), *gk = from_act(ddk, nk), *gv = from_act(ddv, nk);
    check_rel("  sparse dq", gq, rdq, nq, 3e-2);
    check_rel("  sparse dk", gk, rdk, nk, 3e-2);
    check_rel("  sparse dv", gv, rdv, nk, 3e-2);
    if (sparse_attention_split_supported(&s, p)) {
        /* The split forward (dynamic blocks, then forced ones merged by lse) from the same
         * selection, and the backward from its own output and lse. Output and gradients as above;
         * the lse at 1e-4: fp32 sums of exact bf16 products and ex2.approx put it within ~1e-6 of
         * the CPU's, while a forced block served twice or missed moves it by log(1 + its share of
         * the row's softmax), 1e-2 and more. */
        backend_zero(&be, ddq, (size_t)nq * 2), backend_zero(&be, ddk, (size_t)nk * 2);
        backend_zero(&be, ddv, (size_t)nk * 2);
        sparse_attention_forward_split_cuda(dout, dlse, dq, dk, dv, dsel, nsel, p, &s, &be.gpu);
        float *so = from_act(dout, nq), *sl = xmalloc((size_t)(T * Hq) * 4);
        backend_download(&be, sl, dlse, (size_t)(T * Hq) * 4);
        check_rel("  split fwd (dynamic + forced, merged)", so, o, nq, 1e-2);
        check_rel("  split fwd lse", sl, lse, T * Hq, 1e-4);
        sparse_attention_backward_cuda(ddq, ddk, ddv, dg, dq, dk, dv, dout, dlse, dsel, nsel,
                                       p->block_size, &s, ws, &be.gpu);
        float *sq = from_act(ddq, nq), *sk = from_act(ddk, nk), *sv = from_act(ddv, nk);
        check_rel("  dq from the split's out and lse", sq, rdq, nq, 3e-2);
        check_rel("  dk from the split's out and lse", sk, rdk, nk, 3e-2);
        check_rel("  dv from the split's out and lse", sv, rdv, nk, 3e-2);
        free(so), free(sl), free(sq), free(sk), free(sv);
    }
    void *bufs[] = {dq, dk, dv, dk1, dk2, dsel, dout, dlse, dg, ddq, ddk, ddv, ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) backend_release(&be, bufs[i]);
    free(q), free(kk), free(v), free(k1), free(k2), free(gk1), free(k1b), free(k2b), free(rsel);
    free(gsel), free(o), free(lse), free(go), free(g), free(rdq), free(rdk), free(rdv), free(gq);
    free(gk), free(gv);
}

/* Stage 3 alone, dense (nsel 0) or block-sparse with a random selection (block 0, the token's own
 * block and about a third of the others, at most nsel), on a chunk of a sequence (q_pos0 > 0, as
 * context parallelism gives), rows `pad` elements longer than H * D, gradients prefilled (the
 * backward adds: the gradient compared is the GPU's result minus the prefill). The backward runs
 * twice from the same prefill: the two results must be bitwise identical. */
static void test_stage3(const struct att_case *k, int nsel, int pad) {
    char what[160];
    const int bs = 64;
    struct attn_shape s = {k->Tq, k->q_pos0, k->Tk, k->Hq, k->Hkv, k->D,
                           (int64_t)k->Hq * k->D + pad, (int64_t)k->Hkv * k->D + pad,
                           (float)(1.0 / sqrt((double)k->D)), NULL};
    int64_t nq = s.Tq * s.q_stride, nk = s.Tk * s.kv_stride, nl = s.Tq * s.Hq;
    int64_t nblk = (s.Tk + bs - 1) / bs, ns = s.Tq * s.Hkv * (nsel > 0 ? nsel : 1);
    int32_t *sel = xmalloc((size_t)ns * 4);
    for (int64_t r = 0; r < s.Tq * s.Hkv && nsel > 0; r++) {
        int64_t bt = (s.q_pos0 + r / s.Hkv) / bs;
        int32_t *row = sel + r * nsel;
        int n = 0;
        row[n++] = 0;
        for (int64_t j = 1; j < bt && n < nsel - 1; j++)
            if (t_rng_u64(&rng) % 3 == 0) row[n++] = (int32_t)j;
        if (bt > 0) row[n++] = (int32_t)bt;
        while (n < nsel) row[n++] = -1;
    }
    float *q = host_bf16_rand(nq, 1.0f), *kk = host_bf16_rand(nk, 1.0f), *v = host_bf16_rand(nk, 1.0f);
    float *g = host_bf16_rand(nq, 1.0f), *o = xcalloc((size_t)nq, 4), *lse = xmalloc((size_t)nl * 4);
    if (nsel) sparse_attention_forward_cpu(o, lse, q, kk, v, sel, nsel, bs, &s);
    else attention_forward_cpu(o, lse, q, kk, v, &s);
    void *dq = dev_act(q, nq), *dk = dev_act(kk, nk), *dv = dev_act(v, nk), *dg = dev_act(g, nq);
    int32_t *dsel = dev_bytes(sel, (size_t)ns * 4);
    void *dout = backend_alloc(&be, (size_t)nq * 2, "t");
    float *dlse = dev_bytes(NULL, (size_t)nl * 4);
    if (nsel) sparse_attention_forward_cuda(dout, dlse, dq, dk, dv, dsel, nsel, bs, &s, &be.gpu);
    else attention_forward_cuda(dout, dlse, dq, dk, dv, &s, &be.gpu);
    float *go = from_act(dout, nq);
    snprintf(what, sizeof what, "%s stage 3 Tq %lld q0 %lld Tk %lld G %d D %d pad %d",
             nsel ? "sparse" : "dense", (long long)s.Tq, (long long)s.q_pos0, (long long)s.Tk,
             s.Hq / s.Hkv, s.D, pad);
    check_rel(what, go, o, nq, 1e-2);
    for (int64_t i = 0; i < nq; i++) o[i] = st_bf16_to_f32(st_f32_to_bf16(o[i]));
    backend_upload_act(&be, dout, o, nq);
    backend_upload(&be, dlse, lse, (size_t)nl * 4);
    float *rd[3] = {xcalloc((size_t)nq, 4), xcalloc((size_t)nk, 4), xcalloc((size_t)nk, 4)};
    if (nsel) sparse_attention_backward_cpu(rd[0], rd[1], rd[2], g, q, kk, v, o, lse, sel, nsel, bs, &s);
    else attention_backward_cpu(rd[0], rd[1], rd[2], g, q, kk, v, o, lse, &s);
    int64_t n3[3] = {nq, nk, nk};
    float *pre[3] = {host_bf16_rand(nq, 0.1f), host_bf16_rand(nk, 0.1f), host_bf16_rand(nk, 0.1f)};
    void *dd[3] = {dev_act(pre[0], nq), dev_act(pre[1], nk), dev_act(pre[2], nk)};
    void *ws = nsel ? backend_alloc(&be, sparse_attention_backward_workspace_bytes(s.Tq, s.Hkv, nsel,
                                                                                   nblk), "t")
                    : NULL;
    float *got[2][3];
    for (int run = 0; run < 2; run++) {
        for (int x = 0; x < 3; x++) backend_upload_act(&be, dd[x], pre[x], n3[x]);
        if (nsel)
            sparse_attention_backward_cuda(dd[0], dd[1], dd[2], dg, dq, dk, dv, dout, dlse, dsel,
                                           nsel, bs, &s, ws, &be.gpu);
        else
            attention_backward_cuda(dd[0], dd[1], dd[2], dg, dq, dk, dv, dout, dlse, &s, &be.gpu);
        for (int x = 0; x < 3; x++) got[run][x] = from_act(dd[x], n3[x]);
    }
    bool same = true;
    for (int x = 0; x < 3; x++) {
        same = same && memcmp(got[0][x], got[1][x], (size_t)n3[x] * 4) == 0;
        for (int64_t i = 0; i < n3[x]; i++) got[0][x][i] -= pre[x][i];
    }
    check_rel("  dq (added onto a prefilled dq)", got[0][0], rd[0], nq, 3e-2);
    check_rel("  dk (added onto a prefilled dk)", got[0][1], rd[1], nk, 3e-2);
    check_rel("  dv (added onto a prefilled dv)", got[0][2], rd[2], nk, 3e-2);
    t_check(same, "%s: two backward runs differ", what);
    printf("  %-44s %s\n", "two backward runs bitwise identical", same ? "yes" : "NO");
    if (nsel) {
        int64_t chunk = sparse_attention_backward_chunk(s.Tq, nsel, nblk, s.D);
        printf("  %-44s %lld tokens, block 0's %lld in %lld items\n", "dK/dV chunk", (long long)chunk,
               (long long)s.Tq, (long long)((s.Tq + chunk - 1) / chunk));
    }
    void *bufs[] = {dq, dk, dv, dg, dsel, dout, dlse, dd[0], dd[1], dd[2]};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) backend_release(&be, bufs[i]);
    if (ws) backend_release(&be, ws);
    free(sel), free(q), free(kk), free(v), free(g), free(o), free(lse), free(go);
    for (int x = 0; x < 3; x++) free(rd[x]), free(pre[x]), free(got[0][x]), free(got[1][x]);
}

/* ---------------------------------------------------------------------------------------------- */
/* Every GQA group size                                                                            */

/* The group sizes of the models we ship or target: 1 (MHA), 2, 3 (Llama-3.2-3B, SmolLM2), 4
 * (Llama-3-8B, Qwen3), 6 and 7 (Qwen2.5), 8, 16 (MiniCPM4, the InfLLM-V2 paper). */
static const int gqa_groups[] = {1, 2, 3, 4, 6, 7, 8, 16};
#define N_GQA_GROUPS ((int)(sizeof gqa_groups / sizeof gqa_groups[0]))

/* The tensor-core kernels' guards accept every model shape (D 64 and 128, every G above, the
 * default InfLLM-V2 parameters, 64k and 128k tokens): a false is a broken guard, which would send
 * the shape to the CUDA-core kernels, 70-180x slower, and nothing else would fail. The guards are
 * not constant: D 96 is refused (and runs the exact kernels in test_dense_attention). */
static void test_tc_supported(void) {
    const struct infllm_params defaults = {32, 16, 64, 1, 32, 64, true, 0};
    int n = 0;
    for (int D = 64; D <= 128; D *= 2)
        for (int gi = 0; gi < N_GQA_GROUPS; gi++)
            for (int64_t T = 65536; T <= 131072; T *= 2) {
                const int G = gqa_groups[gi], Hkv = 2, Hq = G * Hkv;
                struct attn_shape s = {T, 0, T, Hq, Hkv, D, (int64_t)Hq * D, (int64_t)Hkv * D,
                                       (float)(1.0 / sqrt((double)D)), NULL};
                bool dense = attention_tc_supported(&s, 64, false);
                bool sparse = attention_tc_supported(&s, 64, true);
                bool sel = infllm_select_tc_supported(&s, &defaults);
                t_check(dense && sparse && sel,
                        "tensor cores refuse T %lld Hq %d Hkv %d D %d: dense %d sparse %d select %d",
                        (long long)T, Hq, Hkv, D, dense, sparse, sel);
                n += dense && sparse && sel;
            }
    struct attn_shape d96 = {4096, 0, 4096, 4, 2, 96, 4 * 96, 2 * 96, 0.1f, NULL};
    t_check(!attention_tc_supported(&d96, 64, false) && !infllm_select_tc_supported(&d96, &defaults),
            "the tensor-core guards accept D 96");
    printf("  %-44s %d of %d (D 64/128 x G 1-16 x 64k/128k), D 96 refused\n",
           "tensor-core dense, sparse, selection shapes", n, 2 * N_GQA_GROUPS * 2);
}

/* Stage 3 for every G and D: dense and block-sparse (random selection), on a chunk of a sequence
 * (q_pos0 > 0), Tq not a multiple of any tile's tokens (tiles of 128 / G, 64 / G tokens plus
 * padding rows), and selection + sparse stage 3 from the GPU's selection at 2k tokens. Then the
 * selection's other launch shapes, which only long sequences take: key parts (NK 2, 4) and fewer
 * tokens a thread column (G 1 at 64k: 4 of 8), against the CPU at 64k tokens. And a top-k budget
 * past the sequence's blocks (a selection of every block, nsel = the blocks of T). */
static void test_every_group(void) {
    const struct infllm_params small = {32, 16, 64, 1, 2, 4, true, 0};
    for (int gi = 0; gi < N_GQA_GROUPS; gi++)
        for (int D = 64; D <= 128; D *= 2) {
            const int G = gqa_groups[gi], Hkv = G > 8 ? 1 : 2;
            const int64_t Tq = 150 + 29 * G, q0 = 70 + 64 * gi;
            const struct att_case c = {Tq, q0, q0 + Tq + 33, G * Hkv, Hkv, D};
            test_stage3(&c, 0, 8);
            test_stage3(&c, 6, 0);
            test_sparse(2048, G * Hkv, Hkv, D, &small, gi % 2 == 1);
        }
    test_sparse(65536, 1, 1, 64, &small, false);   /* G 1: NK 4, 4 tokens a column */
    test_sparse(65536, 3, 1, 64, &small, true);    /* G 3: NK 2 */
    /* A budget past the sequence's 32 blocks: nsel = 32 (infllm_num_selected), every block up to
     * the query's own selected, on the tensor-core and the CUDA-core selection alike. */
    const struct infllm_params every = {32, 16, 64, 1, 2, 2147483647, true, 32};
    test_sparse(2048, 4, 2, 64, &every, false);
    test_sparse(2048, 4, 2, 96, &every, false); /* D 96: the CUDA-core selection */
}

/* ---------------------------------------------------------------------------------------------- */
/* Whole model: one step of loss and gradients, then ten steps of loss                             */

static void model_config(struct config *c, bool sparse, enum model_type type, bool bias) {
    config_defaults(c);
    struct model_config *m = &c->model;
    m->model_type = type;
    m->attention_bias = bias;
    m->vocab_size = 300;
    m->hidden_size = 128;
    m->intermediate_size = 320;
    m->num_hidden_layers = 2;
    m->num_attention_heads = 4;
    m->num_key_value_heads = 2;
    m->head_dim = 64;
    m->scale_emb = 4;
    m->dim_model_base = 32;
    m->initializer_range = 0.05;
    c->data.seq_len = sparse ? 1024 : 256;
    c->data.synthetic = (struct synthetic_config){.n_pairs = 4, .n_queries = 2, .n_keys = 32,
                                                  .n_values = 32};
    c->train.micro_batch_size = 2;
    c->train.global_batch_size = 2;
    struct attention_config *a = &c->attention;
    a->kernel_size = 32, a->kernel_stride = 16, a->block_size = 64, a->window_size = 128;
    a->topk = 3, a->init_blocks = 1, a->dense_len = sparse ? -1 : 1 << 20;
    config_validate(c, 1);
}

/* The documents of test_model_step's two sequences (doc_first (2, T)): documents starting
 * mid-block, a one-token one, and (sparse, dense_len 300) long sparse documents next to a short
 * dense one; the second sequence is one document. Targets before a document's start are -1. */
static uint8_t *model_documents(struct config *c, int32_t *tgt) {
    bool sparse = c->data.seq_len > 256;
    int64_t T = c->data.seq_len;
    c->data.synthetic.documents = 2; /* document masking on (config_documents) */
    if (sparse) c->attention.dense_len = 300;
    config_validate(c, 1);
    uint8_t *first = xcalloc((size_t)(2 * T), 1);
    const int64_t dense[] = {0, 70, 71, 200, 0}, mixed[] = {0, 100, 700, 0, 0};
    for (int d = 0; d < 5; d++) first[(sparse ? mixed : dense)[d]] = 1;
    first[T] = 1;
    for (int64_t i = 0; i < 2 * T; i++)
        if (i + 1 < 2 * T && (i + 1) % T != 0 && first[i + 1]) tgt[i] = -1;
    return first;
}

static void test_model_step(bool sparse, enum model_type type, bool bias, bool documents) {
    static struct config c;
    model_config(&c, sparse, type, bias);
    int64_t N = 2 * c.data.seq_len; /* micro_batch_size 2 */
    int32_t *tok = xmalloc((size_t)N * 4), *tgt = xmalloc((size_t)N * 4);
    for (int64_t i = 0; i < N; i++) {
        tok[i] = (int32_t)(t_rng_u64(&rng) % 300);
        tgt[i] = (int32_t)(t_rng_u64(&rng) % 300);
    }
    uint8_t *first = documents ? model_documents(&c, tgt) : NULL;
    struct grid g;
    grid_init(&g, MPI_COMM_SELF, 1);
    struct backend cpu;
    backend_init(&cpu, DEVICE_CPU, 0);
    struct model mc, mg;
    model_init(&mc, &c, &cpu, &g, 64, true);
    model_init(&mg, &c, &be, &g, 64, true);
    model_init_weights(&mc, 7);
    t_randomize_extras(&rng, mc.params, mc.n_params_entries, mc.param_buf);
    /* bf16-exact weights on both */
    float *w = mc.param_buf;
    for (int64_t i = 0; i < mc.n_params_padded; i++) w[i] = st_bf16_to_f32(st_f32_to_bf16(w[i]));
    backend_upload_act(&be, mg.param_buf, w, mg.n_params_padded);
    if (documents) {
        model_set_documents(&mc, first);
        model_set_documents(&mg, first);
        free(first);
    }
    model_zero_grad(&mc);
    model_zero_grad(&mg);
    float scale = (float)(1.0 / (double)mc.N);
    double lc = model_forward(&mc, tok, tgt, true, scale) / (double)mc.N;
    if (sparse) {
        /* The GPU selects from bf16 activations, the CPU from fp32 ones: a few near-tied blocks
         * flip (counted here). The gradients are then compared with the CPU's selection held on
         * both sides, so both differentiate the same function. */
        model_forward(&mg, tok, tgt, false, 0.0f);
        int64_t n = (int64_t)mc.L * mc.N * mc.Hkv * mc.attn.nsel;
        int32_t *sg = xmalloc((size_t)n * 4);
        backend_download(&be, sg, mg.a.sel, (size_t)n * 4);
        int64_t diff = 0;
        for (int64_t i = 0; i < n; i++) diff += sg[i] != mc.a.sel[i];
        printf("  sparse model%s: %lld of %lld selected-block entries differ between cpu and cuda "
               "(own selections); gradients below use the cpu's on both\n",
               documents ? " with documents" : "", (long long)diff, (long long)n);
        t_check(diff * 100 <= n, "sparse model%s: %lld of %lld selected-block entries differ",
                documents ? " with documents" : "", (long long)diff, (long long)n);
        free(sg);
        backend_upload(&be, mg.a.sel, mc.a.sel, (size_t)n * 4);
        mg.reuse_selection = true;
    }
    double lg = model_forward(&mg, tok, tgt, true, scale) / (double)mc.N;
    model_backward(&mc);
    model_backward(&mg);
    char what[128];
    snprintf(what, sizeof what, "%s %s%s model%s loss (cpu %.6f, cuda %.6f)",
             config_model_type_name(type), sparse ? "sparse" : "dense", bias ? " +bias" : "",
             documents ? " with documents" : "", lc, lg);
    t_check(fabs(lc - lg) <= 5e-3 * fabs(lc), "%s", what);
    printf("  %s\n", what);
    /* The k bias's gradient is the column sum of dk over tokens, which softmax's shift invariance
     * would make exactly 0 without RoPE: with it, the sum is about half the size of the summands'
     * norm ||dk||_F here (measured on the CPU: 0.5 Qwen2, 0.6 Qwen3, against sqrt(N) = 23-45 for
     * sums without cancellation), so the bf16 noise of dk (~1e-2) shows at ~2x: 1e-1 there.
     * Without MiniCPM's muP scales the gradients of the q and k side (projections, biases, head
     * norms) carry about twice MiniCPM's bf16 noise (measured on the H200: 1.8-2.2e-2 in layer 1
     * for Qwen2 dense, Qwen3 dense and sparse, against 0.9e-2; 5.7e-2 for one draw of the random
     * weights of Qwen3 sparse with biases), so 8e-2 there; a wrong kernel misses by O(1). */
    float *gg = from_f32(mg.grad_buf, mg.n_params_padded);
    for (int e = 0; e < mc.n_params_entries; e++) {
        const struct param_entry *p = &mc.params[e];
        bool qk_side = strstr(p->name, "q_proj") || strstr(p->name, "k_proj") ||
                       strstr(p->name, "q_norm") || strstr(p->name, "k_norm");
        double tol = strstr(p->name, "k_proj.bias")                  ? 1e-1
                     : qk_side && type != MODEL_TYPE_MINICPM ? 8e-2
                                                             : 3e-2;
        snprintf(what, sizeof what, "grad %s%s", p->name, documents ? " (documents)" : "");
        check_rel(what, gg + p->offset, mc.grad_buf + p->offset, p->numel, tol);
    }
    free(gg), free(tok), free(tgt);
    model_free(&mc);
    model_free(&mg);
    backend_free(&cpu);
    grid_free(&g);
}

#include "train.h"

/* Ten optimizer steps on the synthetic task, CUDA against CPU, same seed and data. */
static void test_ten_steps(void) {
    static struct config c;
    model_config(&c, false, MODEL_TYPE_MINICPM, false);
    c.train.lr = 3e-3;
    c.train.warmup_steps = 2;
    c.train.max_steps = 10;
    snprintf(c.resume, sizeof c.resume, "none");
    double loss[2][10];
    for (int dev = 0; dev < 2; dev++) {
        c.device = dev ? DEVICE_CUDA : DEVICE_CPU;
        snprintf(c.run_dir, sizeof c.run_dir, "/tmp/infllm-test-gpu-%d", dev);
        struct grid g;
        grid_init(&g, MPI_COMM_SELF, 1);
        struct trainer tr;
        trainer_init(&tr, &c, &g, TRAINER_TRAIN);
        for (int s = 0; s < 10; s++) {
            double norm;
            loss[dev][s] = trainer_step(&tr, 3e-3, &norm);
            tr.step++;
        }
        trainer_free(&tr);
        grid_free(&g);
    }
    double worst = 0;
    for (int s = 0; s < 10; s++) {
        double d = fabs(loss[1][s] - loss[0][s]) / loss[0][s];
        worst = d > worst ? d : worst;
        printf("  step %2d loss cpu %.5f cuda %.5f\n", s + 1, loss[0][s], loss[1][s]);
    }
    t_check(worst < 2e-2, "ten steps: loss differs by %.3g relative", worst);
    t_check(loss[1][9] < loss[1][0], "cuda loss falls over ten steps");
}

/* ---------------------------------------------------------------------------------------------- */
/* Hopper dense attention (attention_wgmma.cu, attention_wgmma_bwd.cu)                             */

#include "attention_wgmma.h"
#include "cuda_check.h"

/* The wgmma path's predicate against the device: on compute capability 9.0, with the sm_90a
 * kernels built, it must take every shipped dense shape (a broken guard fails here instead of
 * silently running the mma.sync kernels) and refuse head dims it lacks; elsewhere it takes none. */
static void test_wgmma_predicate(void) {
    int dev = 0, major = 0, minor = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
#ifdef INFLLM_HAVE_WGMMA
    const bool expect = major == 9 && minor == 0;
#else
    const bool expect = false;
#endif
    /* (Hq, Hkv, D): the bench shape and 8B-class (32/2/128), MiniCPM4-0.5B (16/2/64), the GPU
     * recipes (8/2/64), Llama-3.2-3B (24/8/128, G 3), Qwen2.5-7B (28/4/128, G 7), Qwen2.5-1.5B
     * (12/2/128, G 6), SmolLM2-135M (9/3/64, G 3), a group of 1 (4/4/64) */
    const int shapes[][3] = {{32, 2, 128}, {16, 2, 64}, {8, 2, 64}, {24, 8, 128}, {28, 4, 128},
                             {12, 2, 128}, {9, 3, 64}, {4, 4, 64}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int Hq = shapes[i][0], Hkv = shapes[i][1], D = shapes[i][2];
        const struct attn_shape s = {65536, 0, 65536, Hq, Hkv, D, (int64_t)Hq * D,
                                     (int64_t)Hkv * D, (float)(1.0 / sqrt((double)D)), NULL};
        const bool got = attention_wgmma_supported(&s) != 0;
        t_check(got == expect, "wgmma path for Hq %d Hkv %d D %d: %d, expected %d on cc %d.%d", Hq,
                Hkv, D, got, expect, major, minor);
    }
    /* no kernels for D 32 (the quickstart's) or 96, nor for rows that are not 16-byte multiples */
    const struct attn_shape d32 = {512, 0, 512, 4, 2, 32, 128, 64, 0.17f, NULL};
    const struct attn_shape d96 = {512, 0, 512, 4, 2, 96, 384, 192, 0.1f, NULL};
    const struct attn_shape odd = {512, 0, 512, 4, 2, 64, 260, 128, 0.125f, NULL};
    t_check(!attention_wgmma_supported(&d32) && !attention_wgmma_supported(&d96) &&
                !attention_wgmma_supported(&odd),
            "wgmma path claims D 32, D 96 or a 520-byte row");
    printf("  %-44s %s on cc %d.%d\n", "wgmma path for the shipped dense shapes",
           expect ? "taken" : "not taken (not sm_90a)", major, minor);
}

/* Dense attention through attention_forward_cuda / attention_backward_cuda (the wgmma kernels on
 * an sm_90 device) against the CPU reference, with test_stage3's checks: D 64 and 128, groups 1, 2,
 * 3, 4, 6, 7, 8, 16, lengths that are not multiples of the 128-row and 64-key tiles, chunks of a
 * sequence at q_pos0 > 0 with keys past the chunk, padded rows, gradients added onto a prefill, two
 * backward runs bitwise identical. Tolerances (relative L2): 1e-2 for out (bf16 output and bf16 P
 * in P V, ~2^-9 each), 3e-2 for gradients (bf16 P, dS and the bf16 sum with the prefill). The
 * backward picks its dK/dV block shape from the grid against the multiprocessor count: these short
 * lengths take the narrow blocks, and a second pass with a context of one multiprocessor the wide
 * ones. */
static void test_wgmma_dense(void) {
    test_wgmma_predicate();
    const struct att_case cases[] = {
        {1000, 0, 1000, 16, 1, 128}, {777, 0, 777, 4, 2, 64},   {300, 1300, 2048, 7, 1, 128},
        {513, 200, 900, 6, 2, 64},   {130, 0, 130, 3, 1, 128},  {257, 64, 400, 8, 1, 64},
        {200, 0, 200, 2, 1, 128},    {64, 1000, 1064, 1, 1, 64}, {600, 0, 600, 16, 4, 128},
        {400, 50, 450, 21, 3, 64},   {250, 0, 250, 9, 3, 64},   {129, 0, 129, 28, 4, 128},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_stage3(&cases[i], 0, i % 2 ? 8 : 0);
    const int sms = be.gpu.sm_count;
    be.gpu.sm_count = 1; /* wide dK/dV blocks */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i += 2)
        test_stage3(&cases[i], 0, i % 4 ? 8 : 0);
    be.gpu.sm_count = sms;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        printf("test_gpu: no CUDA device: skipped\n");
        MPI_Finalize();
        return 77;
    }
    backend_init(&be, DEVICE_CUDA, 0);
    printf("layer kernels\n");
    test_matmul(37, 19, 53);
    test_matmul(1000, 256, 384);
    test_norm_embed_rope_swiglu();
    test_rmsnorm(301, 200, 200);    /* a warp per row */
    test_rmsnorm(301, 1000, 1000);  /* a block per row */
    test_rmsnorm(40000, 128, 1024); /* per-head norm rows: 8192 weight-gradient ranges */
    test_rmsnorm(3000, 64, 896);    /* ... in the workspace of wider rows */
    test_bias(1, 7);
    test_bias(5000, 896);           /* Qwen2.5-0.5B's q projection */
    test_bias(3001, 130);
    test_crossentropy();
    test_adamw();
    printf("dense attention\n");
    const struct att_case cases[] = {
        {300, 0, 300, 4, 2, 64}, {128, 200, 328, 8, 1, 128}, {77, 0, 77, 6, 3, 64}, {256, 0, 256, 2, 2, 96},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_dense_attention(&cases[i]);
    printf("InfLLM-V2\n");
    struct infllm_params small = {32, 16, 64, 1, 2, 4, true, 0};
    struct infllm_params exact = small;
    exact.lse_approx = false;
    test_sparse(1600, 4, 4, 64, &exact, false);
    struct infllm_params defaults = {32, 16, 64, 1, 32, 64, true, 0};
    test_sparse(8192, 16, 2, 64, &defaults, false);
    printf("stage 3 (tensor-core paths: CP chunks, padded rows, prefilled gradients, G 1-64)\n");
    const struct att_case dense3[] = {
        {700, 1300, 2048, 16, 1, 128}, {333, 200, 600, 2, 2, 64}, {130, 64, 194, 64, 1, 64},
    };
    for (size_t i = 0; i < sizeof dense3 / sizeof dense3[0]; i++) test_stage3(&dense3[i], 0, 8);
    /* chunks of 256 tokens: block 0 (every token's) is split and reduced */
    test_stage3(&(struct att_case){1000, 3000, 4096, 16, 1, 128}, 8, 8);
    test_stage3(&(struct att_case){777, 512, 1289, 8, 2, 128}, 5, 8);
    /* G 1: a forward tile of 128 tokens, with a tail, far into the sequence */
    test_stage3(&(struct att_case){300, 2100, 2400, 2, 2, 128}, 0, 8);
    test_stage3(&(struct att_case){333, 1500, 1833, 1, 1, 128}, 7, 8);
    /* G > 2 nsel: D_i does not fit the workspace and is recomputed from out */
    test_stage3(&(struct att_case){500, 0, 500, 16, 1, 64}, 4, 8);
    /* G 48: a 64-row tile holds one token and 16 padding rows */
    test_stage3(&(struct att_case){90, 40, 200, 48, 1, 64}, 3, 8);
    printf("every GQA group size (G 1, 2, 3, 4, 6, 7, 8, 16; D 64 and 128)\n");
    test_tc_supported();
    test_every_group();
    printf("dense attention on Hopper (wgmma + TMA where the device has it)\n");
    test_wgmma_dense();
    printf("model\n");
    test_model_step(false, MODEL_TYPE_MINICPM, false, false);
    test_model_step(true, MODEL_TYPE_MINICPM, false, false);
    test_model_step(false, MODEL_TYPE_QWEN2, false, false);
    test_model_step(false, MODEL_TYPE_QWEN3, false, false);
    test_model_step(true, MODEL_TYPE_QWEN3, false, false);
    test_model_step(true, MODEL_TYPE_QWEN3, true, false);
    printf("model with documents (a call per document on the GPU)\n");
    test_model_step(false, MODEL_TYPE_MINICPM, false, true);
    test_model_step(true, MODEL_TYPE_MINICPM, false, true);
    test_ten_steps();
    backend_free(&be);
    int rc = t_finish("test_gpu");
    MPI_Finalize();
    return rc;
}
#endif
