/*
 * swiglu.cu: CUDA SwiGLU forward and backward, elementwise on bf16 (math in fp32).
 *
 * Dimensions: n = N * I elements.
 */
#include "common.cuh"
#include "swiglu.h"

static __global__ void swiglu_forward_kernel(bf16 *out, const bf16 *gate, const bf16 *up,
                                             int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a = bf(gate[i]);
    out[i] = to_bf(a / (1.0f + __expf(-a)) * bf(up[i]));
}

/* y = silu(a) b: dy/da = sigma(a) (1 + a (1 - sigma(a))) b, dy/db = silu(a). */
static __global__ void swiglu_backward_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout,
                                              const bf16 *gate, const bf16 *up, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a = bf(gate[i]), b = bf(up[i]), g = bf(dout[i]);
    float sg = 1.0f / (1.0f + __expf(-a));
    dgate[i] = to_bf(bf(dgate[i]) + g * b * sg * (1.0f + a * (1.0f - sg)));
    dup[i] = to_bf(bf(dup[i]) + g * a * sg);
}

extern "C" void swiglu_forward_cuda(void *out, const void *gate, const void *up, int64_t n,
                                    const struct gpu_ctx *g) {
    if (n == 0) return;
    swiglu_forward_kernel<<<(unsigned)ceil_div(n, 256), 256, 0, stream_of(g)>>>(
        (bf16 *)out, (const bf16 *)gate, (const bf16 *)up, n);
    CUDA_CHECK_LAST();
}

extern "C" void swiglu_backward_cuda(void *dgate, void *dup, const void *dout, const void *gate,
                                     const void *up, int64_t n, const struct gpu_ctx *g) {
    if (n == 0) return;
    swiglu_backward_kernel<<<(unsigned)ceil_div(n, 256), 256, 0, stream_of(g)>>>(
        (bf16 *)dgate, (bf16 *)dup, (const bf16 *)dout, (const bf16 *)gate, (const bf16 *)up, n);
    CUDA_CHECK_LAST();
}
