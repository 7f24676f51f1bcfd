/*
 * bias.cu: CUDA bias forward and backward (bf16 y, b, dy; fp32 db).
 *
 * Dimensions: N rows, C channels. The forward is elementwise. The backward is deterministic
 * (colsum.cuh): fixed row ranges into fp32 partial rows, then the partials added in order.
 */
#include "bias.h"
#include "colsum.cuh"
#include "common.cuh"

static __global__ void bias_forward_kernel(bf16 *y, const bf16 *b, int64_t n, int C, float scale) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = to_bf(bf(y[i]) + scale * bf(b[i % C]));
}

extern "C" void bias_forward_cuda(void *y, const void *b, int64_t N, int C, float scale,
                                  const struct gpu_ctx *g) {
    int64_t n = N * (int64_t)C;
    if (n == 0) return;
    bias_forward_kernel<<<(unsigned)ceil_div(n, 256), 256, 0, stream_of(g)>>>(
        (bf16 *)y, (const bf16 *)b, n, C, scale);
    CUDA_CHECK_LAST();
}

extern "C" size_t bias_backward_workspace_bytes(int C) { return colsum_workspace_bytes(C); }

extern "C" void bias_backward_cuda(float *db, const void *dy, int64_t N, int C, float scale,
                                   void *workspace, const struct gpu_ctx *g) {
    colsum_ordered(db, (const bf16 *)dy, NULL, NULL, N, C, scale, workspace, stream_of(g));
}
