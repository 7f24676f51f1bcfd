/*
 * ops_cpu.c: the CPU backend's kernel table (ops_impl.h): the fp32 reference kernels (the _cpu.c
 * files) behind the table's signatures (compute-dtype tensors are float here, the gpu_ctx is
 * unused). No op needs a workspace on the CPU.
 */
#include <string.h>

#include "adamw_update.h"
#include "bias.h"
#include "crossentropy.h"
#include "elementwise.h"
#include "embedding.h"
#include "matmul.h"
#include "ops_impl.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"

static void embedding_forward(void *out, const int32_t *tokens, const void *wte, int64_t N, int C,
                              float scale, const struct gpu_ctx *g) {
    embedding_forward_cpu(out, tokens, wte, N, C, scale);
}

static void embedding_backward(float *dwte, const void *dout, const int32_t *tokens, int64_t N,
                               int C, float scale, void *workspace, const struct gpu_ctx *g) {
    embedding_backward_cpu(dwte, dout, tokens, N, C, scale);
}

static void rmsnorm_forward(void *out, float *rstd, const void *x, const void *w, int64_t N, int C,
                            float eps, const struct gpu_ctx *g) {
    rmsnorm_forward_cpu(out, rstd, x, w, N, C, eps);
}

static void rmsnorm_backward(void *dx, float *dw, const void *dout, const void *x, const void *w,
                             const float *rstd, int64_t N, int C, void *workspace,
                             const struct gpu_ctx *g) {
    rmsnorm_backward_cpu(dx, dw, dout, x, w, rstd, N, C);
}

static void rope_forward(void *x, const float *cos, const float *sin, const int32_t *pos,
                         int64_t N, int H, int D, int64_t row_stride, const struct gpu_ctx *g) {
    rope_forward_cpu(x, cos, sin, pos, N, H, D, row_stride);
}

static void rope_backward(void *dx, const float *cos, const float *sin, const int32_t *pos,
                          int64_t N, int H, int D, int64_t row_stride, const struct gpu_ctx *g) {
    rope_backward_cpu(dx, cos, sin, pos, N, H, D, row_stride);
}

static void bias_forward(void *y, const void *b, int64_t N, int C, float scale,
                         const struct gpu_ctx *g) {
    bias_forward_cpu(y, b, N, C, scale);
}

static void bias_backward(float *db, const void *dy, int64_t N, int C, float scale,
                          void *workspace, const struct gpu_ctx *g) {
    bias_backward_cpu(db, dy, N, C, scale);
}

static void matmul_forward(void *out, const void *inp, const void *w, int64_t N, int IC, int OC,
                           float alpha, bool accumulate, const struct gpu_ctx *g) {
    matmul_forward_cpu(out, inp, w, N, IC, OC, alpha, accumulate);
}

/* fp32 is the compute dtype here: the plain forward, overwriting. */
static void matmul_forward_f32(float *out, const void *inp, const void *w, int64_t N, int IC,
                               int OC, float alpha, const struct gpu_ctx *g) {
    matmul_forward_cpu(out, inp, w, N, IC, OC, alpha, false);
}

static void matmul_backward(void *dinp, float *dw, const void *dout, const void *inp,
                            const void *w, int64_t N, int IC, int OC, float alpha,
                            const struct gpu_ctx *g) {
    matmul_backward_cpu(dinp, dw, dout, inp, w, N, IC, OC, alpha);
}

static void swiglu_forward(void *out, const void *gate, const void *up, int64_t n,
                           const struct gpu_ctx *g) {
    swiglu_forward_cpu(out, gate, up, n);
}

static void swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                            const void *up, int64_t n, const struct gpu_ctx *g) {
    swiglu_backward_cpu(dgate, dup, dout, gate, up, n);
}

static void crossentropy(float *loss, void *dlogits, const float *logits, const int32_t *targets,
                         int64_t N, int64_t V, float dscale, const struct gpu_ctx *g) {
    crossentropy_forward_backward_cpu(loss, dlogits, logits, targets, N, V, dscale);
}

static void argmax_rows(int32_t *idx, const float *logits, int64_t N, int64_t V,
                        const struct gpu_ctx *g) {
    argmax_rows_cpu(idx, logits, N, V);
}

static void add_inplace(void *dst, const void *src, int64_t n, const struct gpu_ctx *g) {
    add_inplace_cpu(dst, src, n);
}

static void attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                              const struct attn_shape *s, const struct gpu_ctx *g) {
    attention_forward_cpu(out, lse, q, k, v, s);
}

static void attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *q,
                               const void *k, const void *v, const void *out, const float *lse,
                               const struct attn_shape *s, const struct gpu_ctx *g) {
    attention_backward_cpu(dq, dk, dv, dout, q, k, v, out, lse, s);
}

static void infllm_compress(void *kc, const void *k, int64_t n, int Hkv, int D, int64_t kv_stride,
                            int ksize, int kstride, const struct gpu_ctx *g) {
    infllm_compress_cpu(kc, k, n, Hkv, D, kv_stride, ksize, kstride);
}

static void infllm_select(int32_t *sel, const void *q, const void *k1, int64_t L1, const void *k2,
                          int64_t L2, const struct attn_shape *s, const struct infllm_params *p,
                          const struct gpu_ctx *g) {
    infllm_select_cpu(sel, q, k1, L1, k2, L2, s, p);
}

static void sparse_attention_forward(void *out, float *lse, const void *q, const void *k,
                                     const void *v, const int32_t *sel, int nsel, int block_size,
                                     const struct attn_shape *s, const struct gpu_ctx *g) {
    sparse_attention_forward_cpu(out, lse, q, k, v, sel, nsel, block_size, s);
}

static void sparse_attention_backward(void *dq, void *dk, void *dv, const void *dout,
                                      const void *q, const void *k, const void *v,
                                      const void *out, const float *lse, const int32_t *sel,
                                      int nsel, int block_size, const struct attn_shape *s,
                                      void *workspace, const struct gpu_ctx *g) {
    sparse_attention_backward_cpu(dq, dk, dv, dout, q, k, v, out, lse, sel, nsel, block_size, s);
}

/* The compute copy of the weights is the fp32 master itself: copied after the update. */
static void adamw_update(float *master, float *m, float *v, const float *grad, void *param,
                         int64_t n, float lr, float beta1, float beta2, float eps,
                         float weight_decay, float grad_scale, int64_t t, const struct gpu_ctx *g) {
    adamw_update_cpu(master, m, v, grad, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
    memmove(param, master, (size_t)n * sizeof(float));
}

static double sumsq(const float *x, int64_t n, void *workspace, const struct gpu_ctx *g) {
    return sumsq_cpu(x, n);
}

/* One line per layer kind (no workspaces: the *_workspace entries stay NULL). */
const struct op_table ops_cpu_table = {
    .name = "cpu",
    .embedding_forward = embedding_forward, .embedding_backward = embedding_backward,
    .rmsnorm_forward = rmsnorm_forward, .rmsnorm_backward = rmsnorm_backward,
    .rope_forward = rope_forward, .rope_backward = rope_backward,
    .bias_forward = bias_forward, .bias_backward = bias_backward,
    .matmul_forward = matmul_forward, .matmul_forward_f32 = matmul_forward_f32,
    .matmul_backward = matmul_backward,
    .swiglu_forward = swiglu_forward, .swiglu_backward = swiglu_backward,
    .crossentropy = crossentropy, .argmax_rows = argmax_rows, .add_inplace = add_inplace,
    .attention_forward = attention_forward, .attention_backward = attention_backward,
    .infllm_compress = infllm_compress, .infllm_select = infllm_select,
    .sparse_attention_forward = sparse_attention_forward,
    .sparse_attention_backward = sparse_attention_backward,
    .adamw_update = adamw_update, .sumsq = sumsq,
};
