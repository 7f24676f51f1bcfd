/*
 * rope.cu: CUDA rotary embedding, forward and backward (transpose), in place on bf16 rows.
 *
 * Dimensions: N rows, H heads, D head dim; one thread per rotated pair (i, i + D/2).
 */
#include "common.cuh"
#include "rope.h"

static __global__ void rope_kernel(bf16 *x, const float *cos, const float *sin, const int32_t *pos,
                                   int64_t N, int H, int D, int64_t row_stride, float sign) {
    int half = D / 2;
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t total = N * H * half;
    if (idx >= total) return;
    int i = (int)(idx % half);
    int h = (int)((idx / half) % H);
    int64_t n = idx / ((int64_t)half * H);
    int64_t p = pos[n];
    float c = cos[p * half + i], s = sign * sin[p * half + i];
    bf16 *row = x + n * row_stride + (int64_t)h * D;
    float a = bf(row[i]), b = bf(row[i + half]);
    row[i] = to_bf(a * c - b * s);
    row[i + half] = to_bf(b * c + a * s);
}

static void launch(void *x, const float *cos, const float *sin, const int32_t *pos, int64_t N,
                   int H, int D, int64_t row_stride, float sign, const struct gpu_ctx *g) {
    int64_t total = N * H * (D / 2);
    if (total == 0) return;
    rope_kernel<<<(unsigned)ceil_div(total, 256), 256, 0, stream_of(g)>>>(
        (bf16 *)x, cos, sin, pos, N, H, D, row_stride, sign);
    CUDA_CHECK_LAST();
}

extern "C" void rope_forward_cuda(void *x, const float *cos, const float *sin, const int32_t *pos,
                                  int64_t N, int H, int D, int64_t row_stride,
                                  const struct gpu_ctx *g) {
    launch(x, cos, sin, pos, N, H, D, row_stride, 1.0f, g);
}

extern "C" void rope_backward_cuda(void *dx, const float *cos, const float *sin, const int32_t *pos,
                                   int64_t N, int H, int D, int64_t row_stride,
                                   const struct gpu_ctx *g) {
    launch(dx, cos, sin, pos, N, H, D, row_stride, -1.0f, g);
}
