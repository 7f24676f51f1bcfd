/*
 * ops.h: each layer op of the model, dispatched to the CPU reference kernel or the CUDA kernel of
 * the backend. Signatures follow the kernels (the headers of kernels/): outputs first, then inputs,
 * then sizes; weights and activations are `void *` in the backend's compute dtype, statistics,
 * logits and parameter gradients are `float *`. Same accumulate/overwrite rules as the kernels.
 * Ops that take `workspace` need ops_workspace_bytes() bytes of backend memory there (none on the
 * CPU).
 */
#ifndef INFLLM_OPS_H
#define INFLLM_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "attention.h"
#include "backend.h"
#include "comm.h"
#include "infllmv2.h"

/* Workspace the ops below need for N rows, C channels, and sparse attention over Tq rows of
 * Hkv heads with nsel selected of nblk blocks (nsel 0: dense). */
size_t ops_workspace_bytes(const struct backend *be, int64_t N, int C, int64_t Tq, int Hkv,
                           int nsel, int64_t nblk);

void op_embedding_forward(const struct backend *be, void *out, const int32_t *tokens,
                          const void *wte, int64_t N, int C, float scale);
void op_embedding_backward(const struct backend *be, float *dwte, const void *dout,
                           const int32_t *tokens, int64_t N, int C, float scale, void *workspace);

void op_rmsnorm_forward(const struct backend *be, void *out, float *rstd, const void *x,
                        const void *w, int64_t N, int C, float eps);
void op_rmsnorm_backward(const struct backend *be, void *dx, float *dw, const void *dout,
                         const void *x, const void *w, const float *rstd, int64_t N, int C,
                         void *workspace);

void op_rope_forward(const struct backend *be, void *x, const float *cos, const float *sin,
                     const int32_t *pos, int64_t N, int H, int D, int64_t row_stride);
void op_rope_backward(const struct backend *be, void *dx, const float *cos, const float *sin,
                      const int32_t *pos, int64_t N, int H, int D, int64_t row_stride);

void op_matmul_forward(const struct backend *be, void *out, const void *inp, const void *w,
                       int64_t N, int IC, int OC, float alpha, bool accumulate);
/* out (fp32) = alpha * inp @ w^T: the lm head's logits. */
void op_matmul_forward_f32(const struct backend *be, float *out, const void *inp, const void *w,
                           int64_t N, int IC, int OC, float alpha);
void op_matmul_backward(const struct backend *be, void *dinp, float *dw, const void *dout,
                        const void *inp, const void *w, int64_t N, int IC, int OC, float alpha);

void op_swiglu_forward(const struct backend *be, void *out, const void *gate, const void *up,
                       int64_t n);
void op_swiglu_backward(const struct backend *be, void *dgate, void *dup, const void *dout,
                        const void *gate, const void *up, int64_t n);

/* fp32 logits; dlogits in the compute dtype (on the CPU it may alias logits). */
void op_crossentropy(const struct backend *be, float *loss, void *dlogits, const float *logits,
                     const int32_t *targets, int64_t N, int64_t V, float dscale);

/* idx (N) = argmax of each row of fp32 logits (lowest index on ties). */
void op_argmax_rows(const struct backend *be, int32_t *idx, const float *logits, int64_t N,
                    int64_t V);

/* dst += src (n elements of the compute dtype). */
void op_add_inplace(const struct backend *be, void *dst, const void *src, int64_t n);

/* The comm dtype of the backend's compute dtype (to move weights and activations). */
enum comm_dtype op_act_dtype(const struct backend *be);

void op_attention_forward(const struct backend *be, void *out, float *lse, const void *q,
                          const void *k, const void *v, const struct attn_shape *s);
void op_attention_backward(const struct backend *be, void *dq, void *dk, void *dv,
                           const void *dout, const void *q, const void *k, const void *v,
                           const void *out, const float *lse, const struct attn_shape *s);

void op_infllm_compress(const struct backend *be, void *kc, const void *k, int64_t n, int Hkv,
                        int D, int64_t kv_stride, int ksize, int kstride);
void op_infllm_select(const struct backend *be, int32_t *sel, const void *q, const void *k1,
                      int64_t L1, const void *k2, int64_t L2, const struct attn_shape *s,
                      const struct infllm_params *p);
void op_sparse_attention_forward(const struct backend *be, void *out, float *lse, const void *q,
                                 const void *k, const void *v, const int32_t *sel, int nsel,
                                 int block_size, const struct attn_shape *s);
void op_sparse_attention_backward(const struct backend *be, void *dq, void *dk, void *dv,
                                  const void *dout, const void *q, const void *k, const void *v,
                                  const void *out, const float *lse, const int32_t *sel, int nsel,
                                  int block_size, const struct attn_shape *s, void *workspace);

#endif
