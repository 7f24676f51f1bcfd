/*
 * ops.h: each op of the model and the optimizer, run by the backend's kernels.
 *
 * Dispatch is one table of kernels per backend (ops_impl.h): the CPU table holds the fp32
 * reference kernels (the _cpu.c files), the CUDA table the launchers of the .cu files (CUDA
 * builds). Each op_* looks up the table of be->device and calls its entry, inside the profiler region of
 * the op's kind (profile.h): no other branching. ops_supports answers "does this backend have this
 * op" without starting the backend (as ggml's supports_op): tests ask it before running an op.
 *
 * Signatures follow the kernels (the headers of kernels/): outputs first, then inputs, then sizes;
 * weights and activations are `void *` in the backend's compute dtype, statistics, logits,
 * parameter gradients and optimizer state are `float *`. Same accumulate/overwrite rules as the
 * kernels. Ops that take `workspace` need ops_workspace_bytes() (or ops_sumsq_workspace_bytes())
 * bytes of backend memory there (none on the CPU).
 */
#ifndef INFLLM_OPS_H
#define INFLLM_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "attention.h"
#include "backend.h"
#include "infllmv2.h"

/* Every op, for ops_supports. */
enum op_id {
    OP_EMBEDDING_FORWARD,
    OP_EMBEDDING_BACKWARD,
    OP_RMSNORM_FORWARD,
    OP_RMSNORM_BACKWARD,
    OP_ROPE_FORWARD,
    OP_ROPE_BACKWARD,
    OP_BIAS_FORWARD,
    OP_BIAS_BACKWARD,
    OP_MATMUL_FORWARD,
    OP_MATMUL_FORWARD_F32,
    OP_MATMUL_BACKWARD,
    OP_SWIGLU_FORWARD,
    OP_SWIGLU_BACKWARD,
    OP_CROSSENTROPY,
    OP_ARGMAX_ROWS,
    OP_ADD_INPLACE,
    OP_ATTENTION_FORWARD,
    OP_ATTENTION_BACKWARD,
    OP_INFLLM_COMPRESS,
    OP_INFLLM_SELECT,
    OP_SPARSE_ATTENTION_FORWARD,
    OP_SPARSE_ATTENTION_BACKWARD,
    OP_ADAMW_UPDATE,
    OP_SUMSQ,
    OP_COUNT
};

/* "rmsnorm_forward", ... (the op_* function without its prefix). */
const char *op_name(enum op_id op);

/* Whether a backend of this device has the op in this build (false for every op of a device this
 * binary was built without). */
bool ops_supports(enum device_kind device, enum op_id op);

/* Workspace the ops below need for N rows, C channels (the widest rows a norm's or a bias's
 * backward reduces: the hidden size or a projection's output width), and sparse attention over Tq
 * rows of Hkv heads with nsel selected of nblk blocks (nsel 0: dense). */
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

/* y (N, C) += scale * b (C) on every row; db (fp32) += scale * column sums of dy (bias.h). */
void op_bias_forward(const struct backend *be, void *y, const void *b, int64_t N, int C,
                     float scale);
void op_bias_backward(const struct backend *be, float *db, const void *dy, int64_t N, int C,
                      float scale, void *workspace);

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

/* AdamW on n elements of a ZeRO-1 slice (kernels/adamw_update.h): master, moments and the
 * compute-dtype weights param (n) are updated; t is the 1-based optimizer step. */
void op_adamw_update(const struct backend *be, float *master, float *m, float *v,
                     const float *grad, void *param, int64_t n, float lr, float beta1, float beta2,
                     float eps, float weight_decay, float grad_scale, int64_t t);

/* Sum of x[i]^2 (n fp32 elements), deterministic, waited for; workspace of
 * ops_sumsq_workspace_bytes() bytes. */
double op_sumsq(const struct backend *be, const float *x, int64_t n, void *workspace);
size_t ops_sumsq_workspace_bytes(const struct backend *be);

#endif
