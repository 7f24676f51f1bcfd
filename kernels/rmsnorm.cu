/*
 * rmsnorm.cu: CUDA RMSNorm forward and backward (bf16 x, w, out, dx; fp32 rstd and dw).
 *
 * Dimensions: N rows, C channels. One block per row. The weight gradient is reduced
 * deterministically: each block of the first pass sums a fixed range of rows into its own fp32
 * partial row, a second pass adds the partials in order.
 */
#include "common.cuh"
#include "rmsnorm.h"

#define RMS_THREADS 256
#define RMS_PARTS 256 /* row ranges of the weight-gradient reduction */

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

extern "C" void rmsnorm_forward_cuda(void *out, float *rstd, const void *x, const void *w,
                                     int64_t N, int C, float eps, const struct gpu_ctx *g) {
    if (N == 0) return;
    rmsnorm_forward_kernel<<<(unsigned)N, RMS_THREADS, 0, stream_of(g)>>>(
        (bf16 *)out, rstd, (const bf16 *)x, (const bf16 *)w, C, eps);
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

extern "C" size_t rmsnorm_backward_workspace_bytes(int C) {
    return (size_t)RMS_PARTS * (size_t)C * sizeof(float);
}

extern "C" void rmsnorm_backward_cuda(void *dx, float *dw, const void *dout, const void *x,
                                      const void *w, const float *rstd, int64_t N, int C,
                                      void *workspace, const struct gpu_ctx *g) {
    if (N == 0) return;
    cudaStream_t s = stream_of(g);
    rmsnorm_backward_dx_kernel<<<(unsigned)N, RMS_THREADS, 0, s>>>(
        (bf16 *)dx, (const bf16 *)dout, (const bf16 *)x, (const bf16 *)w, rstd, C);
    CUDA_CHECK_LAST();
    int64_t rows_per_part = ceil_div(N, RMS_PARTS);
    int parts = (int)ceil_div(N, rows_per_part);
    dim3 grid((unsigned)ceil_div(C, 128), (unsigned)parts);
    rmsnorm_backward_dw_partial<<<grid, 128, 0, s>>>((float *)workspace, (const bf16 *)dout,
                                                      (const bf16 *)x, rstd, N, C, rows_per_part);
    CUDA_CHECK_LAST();
    rmsnorm_backward_dw_sum<<<(unsigned)ceil_div(C, 256), 256, 0, s>>>(dw, (const float *)workspace,
                                                                      parts, C);
    CUDA_CHECK_LAST();
}
