/*
 * rmsnorm.cu: CUDA RMSNorm forward and backward (bf16 x, w, out, dx; fp32 rstd and dw).
 *
 * Dimensions: N rows, C channels. One block per row; short rows (C <= RMS_WARP_MAX_C: Qwen3's
 * per-head norm of q and k, rows of one head dim) take one warp per row instead, eight rows a
 * block. The weight gradient is reduced deterministically (colsum.cuh): fixed row ranges into fp32
 * partial rows, then the partials added in order.
 */
#include "colsum.cuh"
#include "common.cuh"
#include "rmsnorm.h"

#define RMS_THREADS 256
#define RMS_WARP_MAX_C 256 /* rows up to this long: one warp per row */
#define RMS_WARP_ROWS 8    /* rows (warps) per block of the warp kernels */

static __global__ void rmsnorm_forward_kernel(bf16 *out, float *rstd, const bf16 *x, const bf16 *w,
                                              int C, float eps) {
    __shared__ float shared[32];
    int64_t n = blockIdx.x;
    const bf16 *xr = x + n * C;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = bf(xr[c]);
        ss += v * v;
    }
    ss = block_sum(ss, shared);
    float r = rsqrtf(ss / (float)C + eps);
    if (threadIdx.x == 0) rstd[n] = r;
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[n * C + c] = to_bf(bf(xr[c]) * r * bf(w[c]));
}

/* The same with one warp per row (short rows). */
static __global__ void rmsnorm_forward_warp_kernel(bf16 *out, float *rstd, const bf16 *x,
                                                   const bf16 *w, int64_t N, int C, float eps) {
    int64_t n = (int64_t)blockIdx.x * RMS_WARP_ROWS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (n >= N) return;
    const bf16 *xr = x + n * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float v = bf(xr[c]);
        ss += v * v;
    }
    ss = warp_sum(ss);
    float r = rsqrtf(ss / (float)C + eps);
    if (lane == 0) rstd[n] = r;
    for (int c = lane; c < C; c += 32) out[n * C + c] = to_bf(bf(xr[c]) * r * bf(w[c]));
}

extern "C" void rmsnorm_forward_cuda(void *out, float *rstd, const void *x, const void *w,
                                     int64_t N, int C, float eps, const struct gpu_ctx *g) {
    if (N == 0) return;
    if (C <= RMS_WARP_MAX_C) {
        rmsnorm_forward_warp_kernel<<<(unsigned)ceil_div(N, RMS_WARP_ROWS), 32 * RMS_WARP_ROWS, 0,
                                      stream_of(g)>>>((bf16 *)out, rstd, (const bf16 *)x,
                                                      (const bf16 *)w, N, C, eps);
    } else {
        rmsnorm_forward_kernel<<<(unsigned)N, RMS_THREADS, 0, stream_of(g)>>>(
            (bf16 *)out, rstd, (const bf16 *)x, (const bf16 *)w, C, eps);
    }
    CUDA_CHECK_LAST();
}

/* dx += r w g - r^3 / C * x * sum_k(w_k g_k x_k). */
static __global__ void rmsnorm_backward_dx_kernel(bf16 *dx, const bf16 *dout, const bf16 *x,
                                                  const bf16 *w, const float *rstd, int C) {
    __shared__ float shared[32];
    int64_t n = blockIdx.x;
    const bf16 *xr = x + n * C, *gr = dout + n * C;
    float dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += bf(w[c]) * bf(gr[c]) * bf(xr[c]);
    dot = block_sum(dot, shared);
    float r = rstd[n];
    float k = r * r * r * dot / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float d = r * bf(w[c]) * bf(gr[c]) - k * bf(xr[c]);
        dx[n * C + c] = to_bf(bf(dx[n * C + c]) + d);
    }
}

/* The same with one warp per row (short rows). */
static __global__ void rmsnorm_backward_dx_warp_kernel(bf16 *dx, const bf16 *dout, const bf16 *x,
                                                       const bf16 *w, const float *rstd, int64_t N,
                                                       int C) {
    int64_t n = (int64_t)blockIdx.x * RMS_WARP_ROWS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (n >= N) return;
    const bf16 *xr = x + n * C, *gr = dout + n * C;
    float dot = 0.0f;
    for (int c = lane; c < C; c += 32) dot += bf(w[c]) * bf(gr[c]) * bf(xr[c]);
    dot = warp_sum(dot);
    float r = rstd[n];
    float k = r * r * r * dot / (float)C;
    for (int c = lane; c < C; c += 32) {
        float d = r * bf(w[c]) * bf(gr[c]) - k * bf(xr[c]);
        dx[n * C + c] = to_bf(bf(dx[n * C + c]) + d);
    }
}

extern "C" size_t rmsnorm_backward_workspace_bytes(int C) { return colsum_workspace_bytes(C); }

extern "C" void rmsnorm_backward_cuda(void *dx, float *dw, const void *dout, const void *x,
                                      const void *w, const float *rstd, int64_t N, int C,
                                      void *workspace, const struct gpu_ctx *g) {
    if (N == 0) return;
    cudaStream_t s = stream_of(g);
    if (C <= RMS_WARP_MAX_C) {
        rmsnorm_backward_dx_warp_kernel<<<(unsigned)ceil_div(N, RMS_WARP_ROWS),
                                          32 * RMS_WARP_ROWS, 0, s>>>(
            (bf16 *)dx, (const bf16 *)dout, (const bf16 *)x, (const bf16 *)w, rstd, N, C);
    } else {
        rmsnorm_backward_dx_kernel<<<(unsigned)N, RMS_THREADS, 0, s>>>(
            (bf16 *)dx, (const bf16 *)dout, (const bf16 *)x, (const bf16 *)w, rstd, C);
    }
    CUDA_CHECK_LAST();
    colsum_ordered(dw, (const bf16 *)dout, (const bf16 *)x, rstd, N, C, 1.0f, workspace, s);
}
