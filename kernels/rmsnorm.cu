/*
 * rmsnorm.cu: CUDA RMSNorm forward and backward (bf16 x, w, out, dx; fp32 rstd and dw).
 *
 * Dimensions: N rows, C channels. One block per row; short rows (C <= RMS_WARP_MAX_C: Qwen3's
 * per-head norm of q and k, rows of one head dim) take one warp per row instead, eight rows a
 * block. The weight gradient is reduced deterministically: each block of the first pass sums a
 * fixed range of rows into its own fp32 partial row, a second pass adds the partials in order;
 * short rows get more ranges (the workspace is sized for RMS_MIN_COLS columns at least).
 */
#include "common.cuh"
#include "rmsnorm.h"

#define RMS_THREADS 256
#define RMS_PARTS 256      /* row ranges of the weight-gradient reduction (rows of >= 1024) */
#define RMS_MIN_COLS 1024  /* short rows: RMS_PARTS x RMS_MIN_COLS / C ranges */
#define RMS_MAX_PARTS 8192 /* ... at most (a grid dimension) */
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

/* partial[p, c] = sum over rows of range p of g * x * r. */
static __global__ void rmsnorm_backward_dw_partial(float *partial, const bf16 *dout, const bf16 *x,
                                                   const float *rstd, int64_t N, int C,
                                                   int64_t rows_per_part) {
    int p = blockIdx.y;
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int64_t lo = p * rows_per_part, hi = lo + rows_per_part < N ? lo + rows_per_part : N;
    float acc = 0.0f;
    for (int64_t n = lo; n < hi; n++) acc += bf(dout[n * C + c]) * bf(x[n * C + c]) * rstd[n];
    partial[(int64_t)p * C + c] = acc;
}

static __global__ void rmsnorm_backward_dw_sum(float *dw, const float *partial, int parts, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int p = 0; p < parts; p++) acc += partial[(int64_t)p * C + c];
    dw[c] += acc;
}

/* Row ranges of the weight gradient's first pass: RMS_PARTS, more for short rows (at most
 * RMS_MAX_PARTS, a grid dimension), so that the pass has enough threads. parts x C never exceeds
 * RMS_PARTS x max(C, RMS_MIN_COLS), the workspace, which grows with C: a workspace sized for the
 * widest rows serves the shorter ones. */
static int64_t dw_max_parts(int C) {
    int64_t p = C >= RMS_MIN_COLS ? RMS_PARTS : (int64_t)RMS_PARTS * RMS_MIN_COLS / C;
    return p < RMS_MAX_PARTS ? p : RMS_MAX_PARTS;
}

extern "C" size_t rmsnorm_backward_workspace_bytes(int C) {
    return (size_t)RMS_PARTS * (size_t)(C > RMS_MIN_COLS ? C : RMS_MIN_COLS) * sizeof(float);
}

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
    int64_t rows_per_part = ceil_div(N, dw_max_parts(C));
    int parts = (int)ceil_div(N, rows_per_part);
    dim3 grid((unsigned)ceil_div(C, 128), (unsigned)parts);
    rmsnorm_backward_dw_partial<<<grid, 128, 0, s>>>((float *)workspace, (const bf16 *)dout,
                                                      (const bf16 *)x, rstd, N, C, rows_per_part);
    CUDA_CHECK_LAST();
    rmsnorm_backward_dw_sum<<<(unsigned)ceil_div(C, 256), 256, 0, s>>>(dw, (const float *)workspace,
                                                                      parts, C);
    CUDA_CHECK_LAST();
}
