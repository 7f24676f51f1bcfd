/*
 * elementwise.cu: CUDA elementwise helpers: accumulate, fp32 <-> bf16 conversion.
 *
 * Dimensions: n elements.
 */
#include "common.cuh"
#include "elementwise.h"

static __global__ void add_inplace_kernel(bf16 *dst, const bf16 *src, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = to_bf(bf(dst[i]) + bf(src[i]));
}

static __global__ void f32_to_bf16_kernel(bf16 *dst, const float *src, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = to_bf(src[i]);
}

static __global__ void bf16_to_f32_kernel(float *dst, const bf16 *src, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = bf(src[i]);
}

#define GRID(n) (unsigned)ceil_div((n), 256), 256, 0, stream_of(g)

extern "C" void add_inplace_cuda(void *dst, const void *src, int64_t n, const struct gpu_ctx *g) {
    if (n == 0) return;
    add_inplace_kernel<<<GRID(n)>>>((bf16 *)dst, (const bf16 *)src, n);
    CUDA_CHECK_LAST();
}

extern "C" void f32_to_bf16_cuda(void *dst, const float *src, int64_t n, const struct gpu_ctx *g) {
    if (n == 0) return;
    f32_to_bf16_kernel<<<GRID(n)>>>((bf16 *)dst, src, n);
    CUDA_CHECK_LAST();
}

extern "C" void bf16_to_f32_cuda(float *dst, const void *src, int64_t n, const struct gpu_ctx *g) {
    if (n == 0) return;
    bf16_to_f32_kernel<<<GRID(n)>>>(dst, (const bf16 *)src, n);
    CUDA_CHECK_LAST();
}
