/*
 * bias.cu: CUDA bias forward and backward (bf16 y, b, dy; fp32 db).
 *
 * Dimensions: N rows, C channels. The forward is elementwise. The backward is deterministic: the
 * first pass gives each block column a fixed range of rows (one thread per channel, reading
 * consecutive channels of a row: coalesced) and writes one fp32 partial row per range; the second
 * adds the partials in range order into db.
 */
#include "bias.h"
#include "common.cuh"

#define BIAS_PARTS 256   /* row ranges of the backward's reduction */
#define BIAS_THREADS 128 /* channels per block of the first pass */

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

/* partial[p, c] = sum over the rows of range p of dy[n, c], in row order. */
static __global__ void bias_backward_partial(float *partial, const bf16 *dy, int64_t N, int C,
                                             int64_t rows_per_part) {
    int p = blockIdx.y;
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int64_t lo = p * rows_per_part, hi = lo + rows_per_part < N ? lo + rows_per_part : N;
    float acc = 0.0f;
    for (int64_t n = lo; n < hi; n++) acc += bf(dy[n * C + c]);
    partial[(int64_t)p * C + c] = acc;
}

static __global__ void bias_backward_sum(float *db, const float *partial, int parts, int C,
                                         float scale) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int p = 0; p < parts; p++) acc += partial[(int64_t)p * C + c];
    db[c] += scale * acc;
}

extern "C" size_t bias_backward_workspace_bytes(int C) {
    return (size_t)BIAS_PARTS * (size_t)C * sizeof(float);
}

extern "C" void bias_backward_cuda(float *db, const void *dy, int64_t N, int C, float scale,
                                   void *workspace, const struct gpu_ctx *g) {
    if (N == 0 || C == 0) return;
    cudaStream_t s = stream_of(g);
    int64_t rows_per_part = ceil_div(N, BIAS_PARTS);
    int parts = (int)ceil_div(N, rows_per_part);
    dim3 grid((unsigned)ceil_div(C, BIAS_THREADS), (unsigned)parts);
    bias_backward_partial<<<grid, BIAS_THREADS, 0, s>>>((float *)workspace, (const bf16 *)dy, N, C,
                                                         rows_per_part);
    CUDA_CHECK_LAST();
    bias_backward_sum<<<(unsigned)ceil_div(C, 256), 256, 0, s>>>(db, (const float *)workspace,
                                                                parts, C, scale);
    CUDA_CHECK_LAST();
}
