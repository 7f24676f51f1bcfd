/*
 * common.cuh: device helpers shared by the .cu files of kernels/: bf16 conversion and arithmetic
 * (dot8, add_bf16x2), warp and block reductions, launch checking. Included by .cu files only.
 */
#ifndef INFLLM_COMMON_CUH
#define INFLLM_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_check.h"
#include "gpu.h"

typedef __nv_bfloat16 bf16;

static inline cudaStream_t stream_of(const struct gpu_ctx *g) { return (cudaStream_t)g->stream; }

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Dynamic plus static shared memory one thread block may opt into on the current device (227 KiB
 * on an H100 / H200): every launcher sizes its tiles against this, not a constant. */
static inline size_t smem_optin_bytes(void) {
    int dev = 0, bytes = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return (size_t)bytes;
}

static __device__ __forceinline__ float bf(const bf16 x) { return __bfloat162float(x); }

/* Dot product of 8 bf16 pairs held in two uint4. */
static __device__ __forceinline__ float dot8(uint4 x, uint4 y) {
    const __nv_bfloat162 *x2 = (const __nv_bfloat162 *)&x, *y2 = (const __nv_bfloat162 *)&y;
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float2 a = __bfloat1622float2(x2[e]), b = __bfloat1622float2(y2[e]);
        s += a.x * b.x + a.y * b.y;
    }
    return s;
}

/* row[0..1] += (x, y) in bf16. */
static __device__ __forceinline__ void add_bf16x2(bf16 *row, float x, float y) {
    __nv_bfloat162 *p = (__nv_bfloat162 *)row;
    float2 old = __bfloat1622float2(*p);
    *p = __floats2bfloat162_rn(old.x + x, old.y + y);
}
static __device__ __forceinline__ bf16 to_bf(float x) { return __float2bfloat16_rn(x); }

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
 * `shared` holds 32 floats. The order of additions is fixed for a given blockDim. */
static __device__ __forceinline__ float block_sum(float v, float *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shared[lane] : 0.0f;
    return warp_sum(v);
}

static __device__ __forceinline__ float block_max(float v, float *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shared[lane] : -INFINITY;
    return warp_max(v);
}

#endif
