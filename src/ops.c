/*
 * ops.c: the dispatch of ops.h: a plain switch on the backend's device per op; the CUDA cases are
 * compiled in CUDA builds only (backend_init refuses "cuda" otherwise).
 */
#include "ops.h"

#include "check.h"
#include "crossentropy.h"
#include "elementwise.h"
#include "embedding.h"
#include "matmul.h"
#include "profile.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"

#ifdef INFLLM_CUDA
#define ON_CUDA(be, call)                                                      \
    do {                                                                       \
        if ((be)->device == DEVICE_CUDA) {                                     \
            call;                                                              \
            return;                                                            \
        }                                                                      \
    } while (0)
#else
#define ON_CUDA(be, call) ((void)0)
#endif

/* The same dispatch inside a profiled region (profile.h): cuda_call or cpu_call, bracketed. */
#ifdef INFLLM_CUDA
#define IN_REGION(region, be, cuda_call, cpu_call)                             \
    do {                                                                       \
        prof_begin(region);                                                    \
        if ((be)->device == DEVICE_CUDA)                                       \
            cuda_call;                                                         \
        else                                                                   \
            cpu_call;                                                          \
        prof_end();                                                            \
    } while (0)
#else
#define IN_REGION(region, be, cuda_call, cpu_call)                             \
    do {                                                                       \
        prof_begin(region);                                                    \
        cpu_call;                                                              \
        prof_end();                                                            \
    } while (0)
#endif

#ifdef INFLLM_CUDA
static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }
#endif

size_t ops_workspace_bytes(const struct backend *be, int64_t N, int C, int64_t Tq, int Hkv,
                           int nsel, int64_t nblk) {
    if (be->device == DEVICE_CPU) return 0;
#ifdef INFLLM_CUDA
    size_t b = max_sz(embedding_backward_workspace_bytes(N), rmsnorm_backward_workspace_bytes(C));
    if (nsel > 0) b = max_sz(b, sparse_attention_backward_workspace_bytes(Tq, Hkv, nsel, nblk));
    return b;
#else
    return 0;
#endif
}

void op_embedding_forward(const struct backend *be, void *out, const int32_t *tokens,
                          const void *wte, int64_t N, int C, float scale) {
    ON_CUDA(be, embedding_forward_cuda(out, tokens, wte, N, C, scale, &be->gpu));
    embedding_forward_cpu(out, tokens, wte, N, C, scale);
}

void op_embedding_backward(const struct backend *be, float *dwte, const void *dout,
                           const int32_t *tokens, int64_t N, int C, float scale, void *workspace) {
    ON_CUDA(be, embedding_backward_cuda(dwte, dout, tokens, N, C, scale, workspace, &be->gpu));
    embedding_backward_cpu(dwte, dout, tokens, N, C, scale);
}

void op_rmsnorm_forward(const struct backend *be, void *out, float *rstd, const void *x,
                        const void *w, int64_t N, int C, float eps) {
    ON_CUDA(be, rmsnorm_forward_cuda(out, rstd, x, w, N, C, eps, &be->gpu));
    rmsnorm_forward_cpu(out, rstd, x, w, N, C, eps);
}

void op_rmsnorm_backward(const struct backend *be, void *dx, float *dw, const void *dout,
                         const void *x, const void *w, const float *rstd, int64_t N, int C,
                         void *workspace) {
    ON_CUDA(be, rmsnorm_backward_cuda(dx, dw, dout, x, w, rstd, N, C, workspace, &be->gpu));
    rmsnorm_backward_cpu(dx, dw, dout, x, w, rstd, N, C);
}

void op_rope_forward(const struct backend *be, void *x, const float *cos, const float *sin,
                     const int32_t *pos, int64_t N, int H, int D, int64_t row_stride) {
    ON_CUDA(be, rope_forward_cuda(x, cos, sin, pos, N, H, D, row_stride, &be->gpu));
    rope_forward_cpu(x, cos, sin, pos, N, H, D, row_stride);
}

void op_rope_backward(const struct backend *be, void *dx, const float *cos, const float *sin,
                      const int32_t *pos, int64_t N, int H, int D, int64_t row_stride) {
    ON_CUDA(be, rope_backward_cuda(dx, cos, sin, pos, N, H, D, row_stride, &be->gpu));
    rope_backward_cpu(dx, cos, sin, pos, N, H, D, row_stride);
}

void op_matmul_forward(const struct backend *be, void *out, const void *inp, const void *w,
                       int64_t N, int IC, int OC, float alpha, bool accumulate) {
    IN_REGION(PROF_GEMM, be,
              matmul_forward_cuda(out, inp, w, N, IC, OC, alpha, accumulate, &be->gpu),
              matmul_forward_cpu(out, inp, w, N, IC, OC, alpha, accumulate));
}

void op_matmul_forward_f32(const struct backend *be, float *out, const void *inp, const void *w,
                           int64_t N, int IC, int OC, float alpha) {
    IN_REGION(PROF_GEMM, be,
              matmul_forward_f32_cuda(out, inp, w, N, IC, OC, alpha, &be->gpu),
              matmul_forward_cpu(out, inp, w, N, IC, OC, alpha, false));
}

void op_matmul_backward(const struct backend *be, void *dinp, float *dw, const void *dout,
                        const void *inp, const void *w, int64_t N, int IC, int OC, float alpha) {
    IN_REGION(PROF_GEMM, be,
              matmul_backward_cuda(dinp, dw, dout, inp, w, N, IC, OC, alpha, &be->gpu),
              matmul_backward_cpu(dinp, dw, dout, inp, w, N, IC, OC, alpha));
}

void op_swiglu_forward(const struct backend *be, void *out, const void *gate, const void *up,
                       int64_t n) {
    ON_CUDA(be, swiglu_forward_cuda(out, gate, up, n, &be->gpu));
    swiglu_forward_cpu(out, gate, up, n);
}

void op_swiglu_backward(const struct backend *be, void *dgate, void *dup, const void *dout,
                        const void *gate, const void *up, int64_t n) {
    ON_CUDA(be, swiglu_backward_cuda(dgate, dup, dout, gate, up, n, &be->gpu));
    swiglu_backward_cpu(dgate, dup, dout, gate, up, n);
}

void op_crossentropy(const struct backend *be, float *loss, void *dlogits, const float *logits,
                     const int32_t *targets, int64_t N, int64_t V, float dscale) {
    IN_REGION(PROF_HEAD, be,
              crossentropy_forward_backward_cuda(loss, dlogits, logits, targets, N, V, dscale,
                                                 &be->gpu),
              crossentropy_forward_backward_cpu(loss, dlogits, logits, targets, N, V, dscale));
}

void op_argmax_rows(const struct backend *be, int32_t *idx, const float *logits, int64_t N,
                    int64_t V) {
    IN_REGION(PROF_HEAD, be,
              argmax_rows_cuda(idx, logits, N, V, &be->gpu),
              argmax_rows_cpu(idx, logits, N, V));
}

void op_add_inplace(const struct backend *be, void *dst, const void *src, int64_t n) {
    ON_CUDA(be, add_inplace_cuda(dst, src, n, &be->gpu));
    add_inplace_cpu(dst, src, n);
}

enum comm_dtype op_act_dtype(const struct backend *be) {
    return be->act_size == sizeof(float) ? COMM_F32 : COMM_BF16;
}

void op_attention_forward(const struct backend *be, void *out, float *lse, const void *q,
                          const void *k, const void *v, const struct attn_shape *s) {
    IN_REGION(PROF_ATTENTION, be,
              attention_forward_cuda(out, lse, q, k, v, s, &be->gpu),
              attention_forward_cpu(out, lse, q, k, v, s));
}

void op_attention_backward(const struct backend *be, void *dq, void *dk, void *dv,
                           const void *dout, const void *q, const void *k, const void *v,
                           const void *out, const float *lse, const struct attn_shape *s) {
    IN_REGION(PROF_ATTENTION, be,
              attention_backward_cuda(dq, dk, dv, dout, q, k, v, out, lse, s, &be->gpu),
              attention_backward_cpu(dq, dk, dv, dout, q, k, v, out, lse, s));
}

void op_infllm_compress(const struct backend *be, void *kc, const void *k, int64_t n, int Hkv,
                        int D, int64_t kv_stride, int ksize, int kstride) {
    IN_REGION(PROF_SELECTION, be,
              infllm_compress_cuda(kc, k, n, Hkv, D, kv_stride, ksize, kstride, &be->gpu),
              infllm_compress_cpu(kc, k, n, Hkv, D, kv_stride, ksize, kstride));
}

void op_infllm_select(const struct backend *be, int32_t *sel, const void *q, const void *k1,
                      int64_t L1, const void *k2, int64_t L2, const struct attn_shape *s,
                      const struct infllm_params *p) {
    IN_REGION(PROF_SELECTION, be,
              infllm_select_cuda(sel, q, k1, L1, k2, L2, s, p, &be->gpu),
              infllm_select_cpu(sel, q, k1, L1, k2, L2, s, p));
}

void op_sparse_attention_forward(const struct backend *be, void *out, float *lse, const void *q,
                                 const void *k, const void *v, const int32_t *sel, int nsel,
                                 int block_size, const struct attn_shape *s) {
    IN_REGION(PROF_ATTENTION, be,
              sparse_attention_forward_cuda(out, lse, q, k, v, sel, nsel, block_size, s,
                                            &be->gpu),
              sparse_attention_forward_cpu(out, lse, q, k, v, sel, nsel, block_size, s));
}

void op_sparse_attention_backward(const struct backend *be, void *dq, void *dk, void *dv,
                                  const void *dout, const void *q, const void *k, const void *v,
                                  const void *out, const float *lse, const int32_t *sel, int nsel,
                                  int block_size, const struct attn_shape *s, void *workspace) {
    IN_REGION(PROF_ATTENTION, be,
              sparse_attention_backward_cuda(dq, dk, dv, dout, q, k, v, out, lse, sel, nsel,
                                             block_size, s, workspace, &be->gpu),
              sparse_attention_backward_cpu(dq, dk, dv, dout, q, k, v, out, lse, sel, nsel,
                                            block_size, s));
}
