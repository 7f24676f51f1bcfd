/*
 * crossentropy.cu: CUDA softmax cross-entropy over fp32 logits, loss and gradient in one kernel.
 *
 * Dimensions: N rows (one chunk of the fused head), V vocabulary. One block per row: max, sum of
 * exponentials (fp32, max-subtracted), loss; then dlogits = dscale * (softmax - onehot) written in
 * bf16 for the head's backward GEMMs. Rows with target < 0 get loss 0 and a zero gradient.
 */
#include "common.cuh"
#include "crossentropy.h"

#define CE_THREADS 512

static __global__ void crossentropy_kernel(float *loss, bf16 *dlogits, const float *logits,
                                           const int32_t *targets, int64_t V, float dscale) {
    __shared__ float shared[32];
    int64_t n = blockIdx.x;
    const float *row = logits + n * V;
    int32_t target = targets[n];
    float m = -INFINITY;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, row[v]);
    m = block_max(m, shared);
    float s = 0.0f;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) s += __expf(row[v] - m);
    s = block_sum(s, shared);
    float lse = m + __logf(s);
    if (threadIdx.x == 0) loss[n] = target < 0 ? 0.0f : lse - row[target];
    if (!dlogits) return;
    bf16 *drow = dlogits + n * V;
    float scale = target < 0 ? 0.0f : dscale;
    float inv = 1.0f / s;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        float p = __expf(row[v] - m) * inv;
        drow[v] = to_bf(scale * (p - (v == target ? 1.0f : 0.0f)));
    }
}

extern "C" void crossentropy_forward_backward_cuda(float *loss, void *dlogits, const float *logits,
                                                   const int32_t *targets, int64_t N, int64_t V,
                                                   float dscale, const struct gpu_ctx *g) {
    if (N == 0) return;
    crossentropy_kernel<<<(unsigned)N, CE_THREADS, 0, stream_of(g)>>>(loss, (bf16 *)dlogits, logits,
                                                                      targets, V, dscale);
    CUDA_CHECK_LAST();
}
