/*
 * embedding.cu: CUDA embedding forward and a deterministic backward.
 *
 * Dimensions: N tokens, C channels, V vocabulary. wte and out are bf16, dwte fp32.
 * The backward groups rows by token id with a stable radix sort (rows of a token stay in row
 * order), then one block per distinct token sums its rows in that order: no float atomics, the
 * same bits every run.
 */
#include <cub/cub.cuh>

#include "common.cuh"
#include "embedding.h"

static __global__ void embedding_forward_kernel(bf16 *out, const int32_t *tokens, const bf16 *wte,
                                                int C, float scale) {
    int64_t n = blockIdx.x;
    const bf16 *row = wte + (int64_t)tokens[n] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        out[n * C + c] = to_bf(scale * bf(row[c]));
}

extern "C" void embedding_forward_cuda(void *out, const int32_t *tokens, const void *wte,
                                       int64_t N, int C, float scale, const struct gpu_ctx *g) {
    if (N == 0) return;
    embedding_forward_kernel<<<(unsigned)N, 256, 0, stream_of(g)>>>((bf16 *)out, tokens,
                                                                   (const bf16 *)wte, C, scale);
    CUDA_CHECK_LAST();
}

/* Workspace layout for N rows: sorted keys, sorted rows, run keys, run lengths, run offsets
 * (N + 1), run count, then cub's temporary storage. */
struct emb_ws {
    int32_t *keys, *rows, *run_keys, *run_len, *run_off, *n_runs;
    void *cub_tmp;
    size_t cub_bytes;
};

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

static size_t cub_bytes_for(int64_t N) {
    size_t a = 0, b = 0, c = 0;
    cub::DeviceRadixSort::SortPairs(NULL, a, (int32_t *)NULL, (int32_t *)NULL, (int32_t *)NULL,
                                    (int32_t *)NULL, (int)N);
    cub::DeviceRunLengthEncode::Encode(NULL, b, (int32_t *)NULL, (int32_t *)NULL, (int32_t *)NULL,
                                       (int32_t *)NULL, (int)N);
    cub::DeviceScan::ExclusiveSum(NULL, c, (int32_t *)NULL, (int32_t *)NULL, (int)N + 1);
    size_t m = a > b ? a : b;
    return m > c ? m : c;
}

static struct emb_ws carve(void *ws, int64_t N) {
    struct emb_ws w;
    char *p = (char *)ws;
    size_t nb = align256((size_t)(N + 1) * sizeof(int32_t));
    w.keys = (int32_t *)p, p += nb;
    w.rows = (int32_t *)p, p += nb;
    w.run_keys = (int32_t *)p, p += nb;
    w.run_len = (int32_t *)p, p += nb;
    w.run_off = (int32_t *)p, p += nb;
    w.n_runs = (int32_t *)p, p += 256;
    w.cub_tmp = p;
    w.cub_bytes = cub_bytes_for(N);
    return w;
}

extern "C" size_t embedding_backward_workspace_bytes(int64_t N) {
    return 5 * align256((size_t)(N + 1) * sizeof(int32_t)) + 256 + align256(cub_bytes_for(N));
}

static __global__ void iota_kernel(int32_t *x, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = (int32_t)i;
}

/* One block per run (distinct token): dwte[token] += scale * sum of its rows, in row order. */
static __global__ void embedding_backward_kernel(float *dwte, const bf16 *dout, const int32_t *rows,
                                                 const int32_t *run_keys, const int32_t *run_len,
                                                 const int32_t *run_off, const int32_t *n_runs,
                                                 int C, float scale) {
    int r = blockIdx.x;
    if (r >= *n_runs) return;
    int32_t token = run_keys[r], off = run_off[r], len = run_len[r];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (int i = 0; i < len; i++) acc += bf(dout[(int64_t)rows[off + i] * C + c]);
        dwte[(int64_t)token * C + c] += scale * acc;
    }
}

extern "C" void embedding_backward_cuda(float *dwte, const void *dout, const int32_t *tokens,
                                        int64_t N, int C, float scale, void *workspace,
                                        const struct gpu_ctx *g) {
    if (N == 0) return;
    cudaStream_t s = stream_of(g);
    struct emb_ws w = carve(workspace, N);
    int32_t *iota = w.run_off; /* free until the scan; holds 0..N-1 as sort values */
    iota_kernel<<<(unsigned)ceil_div(N, 256), 256, 0, s>>>(iota, N);
    CUDA_CHECK_LAST();
    size_t bytes = w.cub_bytes;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(w.cub_tmp, bytes, tokens, w.keys, iota, w.rows,
                                               (int)N, 0, 32, s));
    bytes = w.cub_bytes;
    CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(w.cub_tmp, bytes, w.keys, w.run_keys, w.run_len,
                                                  w.n_runs, (int)N, s));
    bytes = w.cub_bytes;
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(w.cub_tmp, bytes, w.run_len, w.run_off, (int)N, s));
    embedding_backward_kernel<<<(unsigned)N, 256, 0, s>>>(dwte, (const bf16 *)dout, w.rows,
                                                          w.run_keys, w.run_len, w.run_off,
                                                          w.n_runs, C, scale);
    CUDA_CHECK_LAST();
}
