/*
 * matmul.h: the linear layer without bias, y = alpha * x @ W^T, with W stored [out, in] row-major
 * (the Hugging Face layout), forward and backward.
 *
 * Dimensions: N rows (tokens), IC input channels, OC output channels.
 * Gradient rule: backward ADDS into dinp and dw.
 * Deterministic: every output element is summed by one thread in a fixed order.
 */
#ifndef INFLLM_MATMUL_H
#define INFLLM_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out = alpha * inp @ w^T, or out += alpha * inp @ w^T when accumulate. */
void matmul_forward_cpu(float *out,        /* (N, OC) */
                        const float *inp,  /* (N, IC) */
                        const float *w,    /* (OC, IC) */
                        int64_t N, int IC, int OC, float alpha, bool accumulate);

/* dinp += alpha * dout @ w;  dw += alpha * dout^T @ inp.  Either output may be NULL (skipped). */
void matmul_backward_cpu(float *dinp,        /* (N, IC) */
                         float *dw,          /* (OC, IC) */
                         const float *dout,  /* (N, OC) */
                         const float *inp,   /* (N, IC) */
                         const float *w,     /* (OC, IC) */
                         int64_t N, int IC, int OC, float alpha);


/* CUDA through cuBLASLt: bf16 operands, fp32 accumulation; out and dinp bf16, dw fp32.
 * matmul_forward_f32_cuda writes fp32 results (the lm head's logits). */
void matmul_forward_cuda(void *out, const void *inp, const void *w, int64_t N, int IC, int OC,
                         float alpha, bool accumulate, const struct gpu_ctx *g);
void matmul_forward_f32_cuda(float *out, const void *inp, const void *w, int64_t N, int IC, int OC,
                             float alpha, const struct gpu_ctx *g);
void matmul_backward_cuda(void *dinp, float *dw, const void *dout, const void *inp, const void *w,
                          int64_t N, int IC, int OC, float alpha, const struct gpu_ctx *g);

#ifdef __cplusplus
}
#endif

#endif
