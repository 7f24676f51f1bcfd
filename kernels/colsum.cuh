/*
 * colsum.cuh: deterministic column sums for the gradients of per-channel parameters (RMSNorm's
 * weight, the projections' bias). Included by rmsnorm.cu and bias.cu only.
 *
 *   out[c] += scale * sum_n a[n, c] * b[n, c] * r[n]      a, b bf16 (N, C); r fp32 (N); b, r may
 *                                                          be NULL (read as 1)
 *
 * First pass: the rows split into ranges of equal length, one thread per (range, channel) sums its
 * range in row order into an fp32 partial row of the workspace (threads of a block take
 * consecutive channels of a row: coalesced). Second pass: one thread per channel adds the partials
 * in range order. No atomics: the same bits on every run. COLSUM_PARTS ranges for rows of at least
 * COLSUM_MIN_COLS channels; shorter rows (per-head norms, head dim 64-128; the bias of a narrow KV
 * projection) get proportionally more ranges, at most COLSUM_MAX_PARTS (a grid dimension), so the
 * first pass has as many threads. parts x C never exceeds colsum_workspace_bytes(C) / 4, which grows
 * with C: a workspace sized for the widest rows serves every narrower one.
 */
#ifndef INFLLM_COLSUM_CUH
#define INFLLM_COLSUM_CUH

#include "common.cuh"

#define COLSUM_PARTS 256
#define COLSUM_MIN_COLS 1024
#define COLSUM_MAX_PARTS 8192
#define COLSUM_THREADS 128

static __global__ void colsum_partial_kernel(float *partial, const bf16 *a, const bf16 *b,
                                             const float *r, int64_t N, int C,
                                             int64_t rows_per_part) {
    int p = blockIdx.y;
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int64_t lo = p * rows_per_part, hi = lo + rows_per_part < N ? lo + rows_per_part : N;
    float acc = 0.0f;
    for (int64_t n = lo; n < hi; n++) {
        float v = bf(a[n * C + c]);
        if (b) v *= bf(b[n * C + c]);
        if (r) v *= r[n];
        acc += v;
    }
    partial[(int64_t)p * C + c] = acc;
}

static __global__ void colsum_finish_kernel(float *out, const float *partial, int parts, int C,
                                            float scale) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int p = 0; p < parts; p++) acc += partial[(int64_t)p * C + c];
    out[c] += scale * acc;
}

static inline size_t colsum_workspace_bytes(int C) {
    return (size_t)COLSUM_PARTS * (size_t)(C > COLSUM_MIN_COLS ? C : COLSUM_MIN_COLS) *
           sizeof(float);
}

/* The launches of both passes on stream s (workspace: colsum_workspace_bytes(C) bytes). */
static inline void colsum_ordered(float *out, const bf16 *a, const bf16 *b, const float *r,
                                  int64_t N, int C, float scale, void *workspace, cudaStream_t s) {
    if (N == 0 || C == 0) return;
    int64_t max_parts = C >= COLSUM_MIN_COLS ? COLSUM_PARTS
                                             : (int64_t)COLSUM_PARTS * COLSUM_MIN_COLS / C;
    max_parts = max_parts < COLSUM_MAX_PARTS ? max_parts : COLSUM_MAX_PARTS;
    int64_t rows_per_part = ceil_div(N, max_parts);
    int parts = (int)ceil_div(N, rows_per_part);
    dim3 grid((unsigned)ceil_div(C, COLSUM_THREADS), (unsigned)parts);
    colsum_partial_kernel<<<grid, COLSUM_THREADS, 0, s>>>((float *)workspace, a, b, r, N, C,
                                                          rows_per_part);
    CUDA_CHECK_LAST();
    colsum_finish_kernel<<<(unsigned)ceil_div(C, 256), 256, 0, s>>>(out, (const float *)workspace,
                                                                   parts, C, scale);
    CUDA_CHECK_LAST();
}

#endif
