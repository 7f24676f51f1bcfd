/*
 * elementwise.h: small elementwise ops the orchestration needs between kernels.
 *
 * Dimensions: n elements.
 */
#ifndef INFLLM_ELEMENTWISE_H
#define INFLLM_ELEMENTWISE_H

#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] += src[i]. */
void add_inplace_cpu(float *dst, const float *src, int64_t n);


/* CUDA: dst += src on bf16; conversions. */
void add_inplace_cuda(void *dst, const void *src, int64_t n, const struct gpu_ctx *g);
void f32_to_bf16_cuda(void *dst, const float *src, int64_t n, const struct gpu_ctx *g);
void bf16_to_f32_cuda(float *dst, const void *src, int64_t n, const struct gpu_ctx *g);

#ifdef __cplusplus
}
#endif

#endif
