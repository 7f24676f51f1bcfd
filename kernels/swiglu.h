/*
 * swiglu.h: the SwiGLU gate, y = silu(gate) * up, silu(x) = x / (1 + exp(-x)), forward and backward.
 *
 * Dimensions: n = N * I elements (N tokens, I intermediate channels), elementwise.
 * Gradient rule: backward ADDS into dgate and dup.
 */
#ifndef INFLLM_SWIGLU_H
#define INFLLM_SWIGLU_H

#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

void swiglu_forward_cpu(float *out,          /* (n) */
                        const float *gate,   /* (n) */
                        const float *up,     /* (n) */
                        int64_t n);

void swiglu_backward_cpu(float *dgate,       /* (n) */
                         float *dup,         /* (n) */
                         const float *dout,  /* (n) */
                         const float *gate,  /* (n) */
                         const float *up,    /* (n) */
                         int64_t n);


/* CUDA: bf16 tensors, fp32 math. */
void swiglu_forward_cuda(void *out, const void *gate, const void *up, int64_t n,
                         const struct gpu_ctx *g);
void swiglu_backward_cuda(void *dgate, void *dup, const void *dout, const void *gate,
                          const void *up, int64_t n, const struct gpu_ctx *g);

#ifdef __cplusplus
}
#endif

#endif
