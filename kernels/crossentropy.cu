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

/* One block per row: each thread keeps its best (value, index), then a block-wide reduction that
 * prefers the larger value and, on ties, the lower index. */
static __global__ void argmax_kernel(int32_t *idx, const float *logits, int64_t V) {
    __shared__ float bv[CE_THREADS];
    __shared__ int64_t bi[CE_THREADS];
    const float *row = logits + (int64_t)blockIdx.x * V;
    float best = -INFINITY;
    int64_t at = V; /* past the end: loses every comparison */
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
        if (row[v] > best || (row[v] == best && v < at)) best = row[v], at = v;
    bv[threadIdx.x] = best;
    bi[threadIdx.x] = at;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            float ov = bv[threadIdx.x + s];
            int64_t oi = bi[threadIdx.x + s];
            if (ov > bv[threadIdx.x] || (ov == bv[threadIdx.x] && oi < bi[threadIdx.x]))
                bv[threadIdx.x] = ov, bi[threadIdx.x] = oi;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) idx[blockIdx.x] = (int32_t)(bi[0] < V ? bi[0] : 0);
}

extern "C" void argmax_rows_cuda(int32_t *idx, const float *logits, int64_t N, int64_t V,
                                 const struct gpu_ctx *g) {
    if (N == 0) return;
    argmax_kernel<<<(unsigned)N, CE_THREADS, 0, stream_of(g)>>>(idx, logits, V);
    CUDA_CHECK_LAST();
}
