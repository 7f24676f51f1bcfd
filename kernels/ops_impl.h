/*
 * ops_impl.h: one backend's kernels as a table (private to ops.c, ops_cpu.c, ops_cuda.c).
 *
 * Entries have the CUDA launchers' signatures (compute-dtype tensors as `void *`, the gpu_ctx
 * last), so the CUDA table names the launchers themselves and the CPU table adapts its reference
 * kernels (ops_cpu.c). A NULL entry is an op the backend does not have; a NULL *_workspace entry
 * means the op needs no workspace there.
 */
#ifndef INFLLM_OPS_IMPL_H
#define INFLLM_OPS_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attention.h"
#include "gpu.h"
#include "infllmv2.h"

struct op_table {
    const char *name; /* "cpu", "cuda" */
    void (*embedding_forward)(void *out, const int32_t *tokens, const void *wte, int64_t N, int C,
                              float scale, const struct gpu_ctx *g);
    void (*embedding_backward)(float *dwte, const void *dout, const int32_t *tokens, int64_t N,
                               int C, float scale, void *workspace, const struct gpu_ctx *g);
    size_t (*embedding_backward_workspace)(int64_t N);
    void (*rmsnorm_forward)(void *out, float *rstd, const void *x, const void *w, int64_t N, int C,
                            float eps, const struct gpu_ctx *g);
    void (*rmsnorm_backward)(void *dx, float *dw, const void *dout, const void *x, const void *w,
                             const float *rstd, int64_t N, int C, void *workspace,
                             const struct gpu_ctx *g);
    size_t (*rmsnorm_backward_workspace)(int C);
    void (*rope_forward)(void *x, const float *cos, const float *sin, const int32_t *pos,
                         int64_t N, int H, int D, int64_t row_stride, const struct gpu_ctx *g);
    void (*rope_backward)(void *dx, const float *cos, const float *sin, const int32_t *pos,
                          int64_t N, int H, int D, int64_t row_stride, const struct gpu_ctx *g);
    void (*bias_forward)(void *y, const void *b, int64_t N, int C, float scale,
                         const struct gpu_ctx *g);
    void (*bias_backward)(float *db, const void *dy, int64_t N, int C, float scale,
                          void *workspace, const struct gpu_ctx *g);
    size_t (*bias_backward_workspace)(int C);
    void (*matmul_forward)(void *out, const void *inp, const void *w, int64_t N, int IC, int OC,
                           float alpha, bool accumulate, const struct gpu_ctx *g);
    void (*matmul_forward_f32)(float *out, const void *inp, const void *w, int64_t N, int IC,
                               int OC, float alpha, const struct gpu_ctx *g);
    void (*matmul_backward)(void *dinp, float *dw, const void *dout, const void *inp,
                            const void *w, int64_t N, int IC, int OC, float alpha,
                            const struct gpu_ctx *g);
    void (*swiglu_forward)(void *out, const void *gate, const void *up, int64_t n,
                           const struct gpu_ctx *g);
    void (*swiglu_backward)(void *dgate, void *dup, const void *dout, const void *gate,
                            const void *up, int64_t n, const struct gpu_ctx *g);
    void (*crossentropy)(float *loss, void *dlogits, const float *logits, const int32_t *targets,
                         int64_t N, int64_t V, float dscale, const struct gpu_ctx *g);
    void (*argmax_rows)(int32_t *idx, const float *logits, int64_t N, int64_t V,
                        const struct gpu_ctx *g);
    void (*add_inplace)(void *dst, const void *src, int64_t n, const struct gpu_ctx *g);
    void (*attention_forward)(void *out, float *lse, const void *q, const void *k, const void *v,
                              const struct attn_shape *s, const struct gpu_ctx *g);
    void (*attention_backward)(void *dq, void *dk, void *dv, const void *dout, const void *q,
                               const void *k, const void *v, const void *out, const float *lse,
                               const struct attn_shape *s, const struct gpu_ctx *g);
    void (*infllm_compress)(void *kc, const void *k, int64_t n, int Hkv, int D, int64_t kv_stride,
                            int ksize, int kstride, const struct gpu_ctx *g);
    void (*infllm_select)(int32_t *sel, const void *q, const void *k1, int64_t L1, const void *k2,
                          int64_t L2, const struct attn_shape *s, const struct infllm_params *p,
                          const struct gpu_ctx *g);
    void (*sparse_attention_forward)(void *out, float *lse, const void *q, const void *k,
                                     const void *v, const int32_t *sel, int nsel, int block_size,
                                     const struct attn_shape *s, const struct gpu_ctx *g);
    void (*sparse_attention_backward)(void *dq, void *dk, void *dv, const void *dout,
                                      const void *q, const void *k, const void *v,
                                      const void *out, const float *lse, const int32_t *sel,
                                      int nsel, int block_size, const struct attn_shape *s,
                                      void *workspace, const struct gpu_ctx *g);
    size_t (*sparse_attention_backward_workspace)(int64_t Tq, int Hkv, int nsel, int64_t nblk);
    void (*adamw_update)(float *master, float *m, float *v, const float *grad, void *param,
                         int64_t n, float lr, float beta1, float beta2, float eps,
                         float weight_decay, float grad_scale, int64_t t, const struct gpu_ctx *g);
    double (*sumsq)(const float *x, int64_t n, void *workspace, const struct gpu_ctx *g);
    size_t (*sumsq_workspace)(void);
};

/* The CPU backend's table (ops_cpu.c) and, in CUDA builds, the CUDA backend's (ops_cuda.c). */
extern const struct op_table ops_cpu_table;
extern const struct op_table ops_cuda_table;

#endif
