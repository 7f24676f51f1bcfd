/*
 * attention.cu: CUDA causal GQA attention over key blocks, dense or restricted to the selected
 * blocks of InfLLM-V2 (stage 3), forward and backward. bf16 q, k, v, out and gradients; fp32
 * scores, softmax statistics and accumulators.
 *
 * Dimensions as attention.h: Tq query rows at global positions q_pos0 + i, Tk keys, Hq / Hkv heads,
 * G = Hq / Hkv, D head dim (D <= 256), blocks of BS keys (the sparse block size; 64 in dense mode).
 * A query row's key blocks are 0 .. b(pos) (dense) or its selection (sparse, sel (Tq, Hkv, nsel)
 * ascending, -1 padded); within a block only keys <= pos count.
 *
 * This is the simple, exact path (correct for every shape; memory O(T)): one warp per
 * (query row, head) streams its key blocks for the forward and dQ, with lanes over keys for the
 * scores and over channels for the accumulation; dK/dV use one thread block per (key block, KV
 * head) that walks, in row order, the (row, head) pairs that attend to it, with the block's keys,
 * values and accumulators in shared memory. No float atomics: the result is deterministic.
 * The tensor-core paths (attention_tc.cu, attention_tc_bwd.cu) run every shape they support
 * (attention_tc_supported: D 64 or 128, 64-key blocks, any G up to 64); these kernels are their
 * exact reference on the GPU and take the other shapes.
 */
#include <cub/cub.cuh>

#include "attention.h"
#include "attention_impl.cuh"
#include "attention_wgmma.h"
#include "check.h"
#include "checked.h"
#include "infllmv2.h"

/* Number of key blocks of row i and the j-th of them. */
static __device__ __forceinline__ int row_blocks(const struct att_args &a, int64_t i, int g,
                                                 int64_t pos) {
    if (!a.sel) return (int)(pos / a.bs) + 1;
    const int32_t *s = a.sel + (i * a.Hkv + g) * a.nsel;
    int n = 0;
    while (n < a.nsel && s[n] >= 0) n++;
    return n;
}

static __device__ __forceinline__ int64_t row_block(const struct att_args &a, int64_t i, int g,
                                                    int idx) {
    return a.sel ? a.sel[(i * a.Hkv + g) * a.nsel + idx] : idx;
}

/* Dot product of a shared fp32 vector with a bf16 row of D elements. */
static __device__ __forceinline__ float dot_row(const float *x, const bf16 *row, int D) {
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += x[d] * bf(row[d]);
    return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* Forward: one warp per (row, head).                                                              */

static __global__ void att_forward_kernel(struct att_args a) {
    __shared__ float qs[ATT_WARPS][ATT_MAX_D];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t i = (int64_t)blockIdx.x * ATT_WARPS + warp;
    int h = blockIdx.y, g = h / (a.Hq / a.Hkv), D = a.D;
    if (i >= a.Tq) return;
    int64_t pos = a.q_pos0 + i;
    const bf16 *qrow = a.q + i * a.q_stride + (int64_t)h * D;
    for (int d = lane; d < D; d += 32) qs[warp][d] = bf(qrow[d]);
    __syncwarp();
    float o[ATT_MAX_D / 32];
#pragma unroll
    for (int r = 0; r < ATT_MAX_D / 32; r++) o[r] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    int nb = row_blocks(a, i, g, pos);
    for (int b = 0; b < nb; b++) {
        int64_t j0 = row_block(a, i, g, b) * a.bs;
        for (int64_t t0 = j0; t0 < j0 + a.bs && t0 <= pos; t0 += 32) {
            int64_t u = t0 + lane;
            bool live = u <= pos && u < j0 + a.bs && u < a.Tk;
            float s = live ? a.scale * dot_row(qs[warp], a.k + u * a.kv_stride + (int64_t)g * D, D)
                           : -INFINITY;
            float mnew = fmaxf(m, warp_max(s));
            float p = live ? __expf(s - mnew) : 0.0f;
            float alpha = __expf(m - mnew); /* m = -inf at first: 0 */
            l = l * alpha + warp_sum(p);
            int nk = (int)min((int64_t)32, min(j0 + a.bs, pos + 1) - t0);
#pragma unroll
            for (int r = 0; r < ATT_MAX_D / 32; r++) o[r] *= alpha;
            for (int kk = 0; kk < nk; kk++) {
                float pk = __shfl_sync(0xffffffffu, p, kk);
                const bf16 *vrow = a.v + (t0 + kk) * a.kv_stride + (int64_t)g * D;
#pragma unroll
                for (int r = 0; r < ATT_MAX_D / 32; r++) {
                    int d = lane + 32 * r;
                    if (d < D) o[r] += pk * bf(vrow[d]);
                }
            }
            m = mnew;
        }
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    bf16 *orow = a.o + i * a.q_stride + (int64_t)h * D;
#pragma unroll
    for (int r = 0; r < ATT_MAX_D / 32; r++) {
        int d = lane + 32 * r;
        if (d < D) orow[d] = to_bf(o[r] * inv);
    }
    if (lane == 0) a.lse[i * a.Hq + h] = m + __logf(l);
}

/* ---------------------------------------------------------------------------------------------- */
/* Backward dQ: one warp per (row, head).                                                          */

static __global__ void att_backward_dq_kernel(struct att_args a) {
    __shared__ float qs[ATT_WARPS][ATT_MAX_D];
    __shared__ float gs[ATT_WARPS][ATT_MAX_D];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t i = (int64_t)blockIdx.x * ATT_WARPS + warp;
    int h = blockIdx.y, g = h / (a.Hq / a.Hkv), D = a.D;
    if (i >= a.Tq) return;
    int64_t pos = a.q_pos0 + i, row = i * a.q_stride + (int64_t)h * D;
    float di = 0.0f;
    for (int d = lane; d < D; d += 32) {
        qs[warp][d] = bf(a.q[row + d]);
        gs[warp][d] = bf(a.dout[row + d]);
        di += gs[warp][d] * bf(a.out[row + d]);
    }
    di = warp_sum(di);
    __syncwarp();
    float lse = a.lse_in[i * a.Hq + h];
    float dq[ATT_MAX_D / 32];
#pragma unroll
    for (int r = 0; r < ATT_MAX_D / 32; r++) dq[r] = 0.0f;
    int nb = row_blocks(a, i, g, pos);
    for (int b = 0; b < nb; b++) {
        int64_t j0 = row_block(a, i, g, b) * a.bs;
        for (int64_t t0 = j0; t0 < j0 + a.bs && t0 <= pos; t0 += 32) {
            int64_t u = t0 + lane;
            bool live = u <= pos && u < j0 + a.bs && u < a.Tk;
            float ds = 0.0f;
            if (live) {
                const bf16 *krow = a.k + u * a.kv_stride + (int64_t)g * D;
                const bf16 *vrow = a.v + u * a.kv_stride + (int64_t)g * D;
                float p = __expf(a.scale * dot_row(qs[warp], krow, D) - lse);
                ds = p * (dot_row(gs[warp], vrow, D) - di);
            }
            int nk = (int)min((int64_t)32, min(j0 + a.bs, pos + 1) - t0);
            for (int kk = 0; kk < nk; kk++) {
                float dk = __shfl_sync(0xffffffffu, ds, kk);
                const bf16 *krow = a.k + (t0 + kk) * a.kv_stride + (int64_t)g * D;
#pragma unroll
                for (int r = 0; r < ATT_MAX_D / 32; r++) {
                    int d = lane + 32 * r;
                    if (d < D) dq[r] += dk * bf(krow[d]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_MAX_D / 32; r++) {
        int d = lane + 32 * r;
        if (d < D) a.dq[row + d] = to_bf(bf(a.dq[row + d]) + a.scale * dq[r]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Backward dK, dV: one block per (key block j, KV head g).                                        */

/* Shared layout (floats): K and V of the block (bs x (D + 1), padded against bank conflicts),
 * dK and dV accumulators (bs x D), per warp q and dO (D each), p and dS (bs each). */
static size_t dkdv_shared_bytes(int bs, int D) {
    return sizeof(float) * ((size_t)2 * bs * (D + 1) + (size_t)2 * bs * D +
                            (size_t)DKDV_WARPS * (2 * D + 2 * bs));
}

/* Row `idx` of the rows attending to block j of group g, or -1 past the end. Dense: rows whose
 * position reaches the block, in order. */
static __device__ __forceinline__ int64_t pair_row(const struct att_args &a, int g, int64_t j,
                                                   int64_t idx, int64_t count) {
    if (idx >= count) return -1;
    if (!a.sel) {
        int64_t first = j * a.bs - a.q_pos0;
        return (first > 0 ? first : 0) + idx;
    }
    return a.pair_rows[a.pair_off[g * a.nblk + j] + idx];
}

static __global__ void att_backward_dkdv_kernel(struct att_args a) {
    extern __shared__ float sm[];
    int bs = a.bs, D = a.D, G = a.Hq / a.Hkv;
    int64_t j = blockIdx.x;
    int g = blockIdx.y;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *ks = sm, *vs = ks + bs * (D + 1), *dks = vs + bs * (D + 1), *dvs = dks + bs * D;
    float *wq = dvs + bs * D + warp * (2 * D + 2 * bs), *wg = wq + D, *wp = wg + D, *wds = wp + bs;
    int64_t j0 = j * bs, nkeys = min((int64_t)bs, a.Tk - j0);
    if (nkeys <= 0) return;
    for (int idx = threadIdx.x; idx < bs * D; idx += blockDim.x) {
        int u = idx / D, d = idx % D;
        float kv = 0.0f, vv = 0.0f;
        if (u < nkeys) {
            kv = bf(a.k[(j0 + u) * a.kv_stride + (int64_t)g * D + d]);
            vv = bf(a.v[(j0 + u) * a.kv_stride + (int64_t)g * D + d]);
        }
        ks[u * (D + 1) + d] = kv;
        vs[u * (D + 1) + d] = vv;
        dks[idx] = 0.0f;
        dvs[idx] = 0.0f;
    }
    int64_t count;
    if (a.sel) {
        count = a.pair_off[g * a.nblk + j + 1] - a.pair_off[g * a.nblk + j];
    } else {
        int64_t first = j0 - a.q_pos0;
        count = a.Tq - (first > 0 ? first : 0);
        if (count < 0) count = 0;
    }
    __syncthreads();
    /* Pairs (row, head) in row-major order, DKDV_WARPS at a time (one per warp). */
    int64_t npairs = count * G;
    for (int64_t base = 0; base < npairs; base += DKDV_WARPS) {
        int64_t pidx = base + warp;
        int64_t i = pidx < npairs ? pair_row(a, g, j, pidx / G, count) : -1;
        if (i >= 0) {
            int h = g * G + (int)(pidx % G);
            int64_t row = i * a.q_stride + (int64_t)h * D, pos = a.q_pos0 + i;
            float di = 0.0f;
            for (int d = lane; d < D; d += 32) {
                wq[d] = bf(a.q[row + d]);
                wg[d] = bf(a.dout[row + d]);
                di += wg[d] * bf(a.out[row + d]);
            }
            di = warp_sum(di);
            __syncwarp();
            float lse = a.lse_in[i * a.Hq + h];
            for (int u = lane; u < bs; u += 32) {
                float p = 0.0f, ds = 0.0f;
                if (u < nkeys && j0 + u <= pos) {
                    float s = 0.0f, dp = 0.0f;
                    for (int d = 0; d < D; d++) {
                        s += wq[d] * ks[u * (D + 1) + d];
                        dp += wg[d] * vs[u * (D + 1) + d];
                    }
                    p = __expf(a.scale * s - lse);
                    ds = p * (dp - di);
                }
                wp[u] = p;
                wds[u] = ds;
            }
        } else {
            /* No pair for this warp: q and dO are zeroed with p and dS, so the accumulation
             * below never multiplies 0 by what shared memory held before (a batch's idle warps
             * would read an earlier kernel's leftovers, and 0 x inf is NaN). */
            for (int d = lane; d < D; d += 32) wq[d] = wg[d] = 0.0f;
            for (int u = lane; u < bs; u += 32) wp[u] = wds[u] = 0.0f;
        }
        __syncthreads();
        /* Accumulate the batch in warp order: each (u, d) element is owned by one thread. */
        for (int idx = threadIdx.x; idx < bs * D; idx += blockDim.x) {
            int u = idx / D, d = idx % D;
            float ak = dks[idx], av = dvs[idx];
            for (int w = 0; w < DKDV_WARPS; w++) {
                const float *q_w = sm + 2 * bs * (D + 1) + 2 * bs * D + w * (2 * D + 2 * bs);
                const float *g_w = q_w + D, *p_w = g_w + D, *ds_w = p_w + bs;
                av += p_w[u] * g_w[d];
                ak += ds_w[u] * q_w[d];
            }
            dks[idx] = ak;
            dvs[idx] = av;
        }
        __syncthreads();
    }
    for (int idx = threadIdx.x; idx < nkeys * D; idx += blockDim.x) {
        int u = idx / D, d = idx % D;
        int64_t off = (j0 + u) * a.kv_stride + (int64_t)g * D + d;
        a.dk[off] = to_bf(bf(a.dk[off]) + a.scale * dks[idx]);
        a.dv[off] = to_bf(bf(a.dv[off]) + dvs[idx]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Launchers                                                                                       */

/* The CUDA kernels do not take a document mask (attn_shape.doc_start): the attention layer runs
 * each document as a call of its own on CUDA, and this stops any other caller before a silently
 * wrong result. */
static void refuse_documents(const struct attn_shape *s) {
    CHECKF(s->doc_start == NULL, "attention: the CUDA kernels take no doc_start (run each document "
           "as a call of its own)");
}

static struct att_args args_of(const struct attn_shape *s, int bs) {
    refuse_documents(s);
    struct att_args a;
    memset(&a, 0, sizeof a);
    a.Tq = s->Tq;
    a.q_pos0 = s->q_pos0;
    a.Tk = s->Tk;
    a.q_stride = s->q_stride;
    a.kv_stride = s->kv_stride;
    a.Hq = s->Hq;
    a.Hkv = s->Hkv;
    a.D = s->D;
    a.scale = s->scale;
    a.bs = bs;
    a.nblk = ceil_div(s->Tk, bs);
    CHECKF(s->D <= ATT_MAX_D, "attention head dim %d > %d", s->D, ATT_MAX_D);
    return a;
}

static void forward(struct att_args a, const struct gpu_ctx *g) {
    if (a.Tq == 0) return;
    if (attention_tc_supports(&a, a.sel != NULL)) { /* tensor cores where the shape allows */
        attention_tc_forward(&a, g);
        return;
    }
    dim3 grid((unsigned)ceil_div(a.Tq, ATT_WARPS), (unsigned)a.Hq);
    att_forward_kernel<<<grid, ATT_WARPS * 32, 0, stream_of(g)>>>(a);
    CUDA_CHECK_LAST();
}

/* The tensor-core kernels where the shape allows (w: the sparse mode's scratch, or NULL), else
 * the simple ones. */
static void backward(struct att_args a, const struct att_bwd_ws *w, const struct gpu_ctx *g) {
    if (a.Tq == 0) return;
    if (attention_tc_supports(&a, a.sel != NULL)) {
        attention_tc_backward(&a, w, g);
        return;
    }
    dim3 grid((unsigned)ceil_div(a.Tq, ATT_WARPS), (unsigned)a.Hq);
    att_backward_dq_kernel<<<grid, ATT_WARPS * 32, 0, stream_of(g)>>>(a);
    CUDA_CHECK_LAST();
    size_t smem = dkdv_shared_bytes(a.bs, a.D);
    CUDA_CHECK(cudaFuncSetAttribute(att_backward_dkdv_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid2((unsigned)a.nblk, (unsigned)a.Hkv);
    att_backward_dkdv_kernel<<<grid2, DKDV_WARPS * 32, smem, stream_of(g)>>>(a);
    CUDA_CHECK_LAST();
}

extern "C" bool attention_tc_supported(const struct attn_shape *s, int block_size, bool sparse) {
    struct att_args a = args_of(s, block_size);
    return attention_tc_supports(&a, sparse);
}

extern "C" void attention_forward_cuda(void *out, float *lse, const void *q, const void *k,
                                       const void *v, const struct attn_shape *s,
                                       const struct gpu_ctx *g) {
    refuse_documents(s);
    if (attention_wgmma_forward(out, lse, q, k, v, s, g)) return; /* Hopper: wgmma + TMA */
    struct att_args a = args_of(s, ATT_BLOCK);
    a.q = (const bf16 *)q, a.k = (const bf16 *)k, a.v = (const bf16 *)v;
    a.o = (bf16 *)out, a.lse = lse;
    forward(a, g);
}

extern "C" void attention_backward_cuda(void *dq, void *dk, void *dv, const void *dout,
                                        const void *q, const void *k, const void *v,
                                        const void *out, const float *lse,
                                        const struct attn_shape *s, const struct gpu_ctx *g) {
    refuse_documents(s);
    if (attention_wgmma_backward(dq, dk, dv, dout, q, k, v, out, lse, s, g)) return; /* Hopper */
    struct att_args a = args_of(s, ATT_BLOCK);
    a.q = (const bf16 *)q, a.k = (const bf16 *)k, a.v = (const bf16 *)v;
    a.out = (const bf16 *)out, a.dout = (const bf16 *)dout, a.lse_in = lse;
    a.dq = (bf16 *)dq, a.dk = (bf16 *)dk, a.dv = (bf16 *)dv;
    backward(a, NULL, g);
}

extern "C" void sparse_attention_forward_cuda(void *out, float *lse, const void *q, const void *k,
                                              const void *v, const int32_t *sel, int nsel,
                                              int block_size, const struct attn_shape *s,
                                              const struct gpu_ctx *g) {
    struct att_args a = args_of(s, block_size);
    a.q = (const bf16 *)q, a.k = (const bf16 *)k, a.v = (const bf16 *)v;
    a.o = (bf16 *)out, a.lse = lse;
    a.sel = sel, a.nsel = nsel;
    forward(a, g);
}

extern "C" bool sparse_attention_split_supported(const struct attn_shape *s,
                                                 const struct infllm_params *p) {
    struct att_args a = args_of(s, p->block_size);
    return p->block_size == ATT_BLOCK && p->init_blocks >= 0 && p->local_blocks >= 0 &&
           p->topk > p->init_blocks && attention_tc_supports(&a, true);
}

extern "C" void sparse_attention_forward_split_cuda(void *out, float *lse, const void *q,
                                                    const void *k, const void *v,
                                                    const int32_t *sel, int nsel,
                                                    const struct infllm_params *p,
                                                    const struct attn_shape *s,
                                                    const struct gpu_ctx *g) {
    if (!sparse_attention_split_supported(s, p)) {
        sparse_attention_forward_cuda(out, lse, q, k, v, sel, nsel, p->block_size, s, g);
        return;
    }
    struct att_args a = args_of(s, p->block_size);
    if (a.Tq == 0) return;
    a.q = (const bf16 *)q, a.k = (const bf16 *)k, a.v = (const bf16 *)v;
    a.o = (bf16 *)out, a.lse = lse;
    a.sel = sel, a.nsel = nsel;
    a.init_blocks = p->init_blocks, a.local_blocks = p->local_blocks;
    a.split = ATT_SPLIT_DYNAMIC;
    attention_tc_forward(&a, g);
    a.split = ATT_SPLIT_FORCED;
    attention_tc_forward(&a, g);
}

/* ---------------------------------------------------------------------------------------------- */
/* The inverse of the selection: for each (KV head g, block j) the rows that selected it, in row
 * order (a stable radix sort of (g * nblk + j) keys with row values; -1 entries sort last), then
 * the tensor-core backward's scratch: its work list, the fp32 partial slots of split blocks, and
 * D_i, which lives in the unsorted keys and rows once the sort has consumed them (when it fits:
 * Tq Hq <= 2 Tq Hkv nsel, i.e. G <= 2 nsel; otherwise the kernels recompute D_i from out). */

struct inv_ws {
    int32_t *keys, *rows, *skeys, *srows, *off;
    void *cub_tmp;
    size_t cub_bytes;
    struct att_bwd_ws tc;
};

static size_t a256(size_t x) { return (x + 255) & ~(size_t)255; }

static size_t inv_cub_bytes(int64_t M) {
    size_t b = 0;
    cub::DeviceRadixSort::SortPairs(NULL, b, (int32_t *)NULL, (int32_t *)NULL, (int32_t *)NULL,
                                    (int32_t *)NULL, (int)M);
    return b;
}

/* Work items of the tensor-core dK/dV kernel: one per key at most, plus one per 128 pairs (the
 * smallest chunk). */
static int64_t tc_max_items(int64_t Tq, int Hkv, int nsel, int64_t nblk) {
    return (int64_t)Hkv * nblk + ceil_div(Tq * Hkv * nsel, 128);
}

/* The next region of `bytes` at *off (256-byte aligned) in the workspace at base; NULL when base
 * is NULL (sizing). */
static void *take(char *base, size_t *off, size_t bytes) {
    void *p = base ? base + *off : NULL;
    *off += a256(bytes);
    return p;
}

/* The workspace's regions, one after another: with base NULL only their sizes add up, so sizing
 * (sparse_attention_backward_workspace_bytes) and carving (inv_carve) are this one function.
 * Returns the bytes the workspace needs. */
static size_t inv_layout(char *base, int64_t Tq, int Hkv, int nsel, int64_t nblk,
                         struct inv_ws *w) {
    int64_t M = sat_mul(sat_mul(Tq, Hkv), nsel), nkeys = sat_mul(Hkv, nblk);
    if (M >= INT32_MAX || nkeys >= INT32_MAX) /* at sizing, before the run: the config's sizes */
        die_user("sparse attention backward (CUDA): %lld query rows x %d KV heads x %d selected "
                 "blocks = %lld (row, block) pairs in one call, over the 2^31 - 1 of its int32 "
                 "sort; lower attention.topk or data.seq_len, or raise parallel.cp",
                 (long long)Tq, Hkv, nsel, (long long)M);
    size_t off = 0;
    w->keys = (int32_t *)take(base, &off, (size_t)M * 4);
    w->rows = (int32_t *)take(base, &off, (size_t)M * 4);
    w->skeys = (int32_t *)take(base, &off, (size_t)M * 4);
    w->srows = (int32_t *)take(base, &off, (size_t)M * 4);
    w->off = (int32_t *)take(base, &off, (size_t)(nkeys + 2) * 4);
    w->cub_bytes = inv_cub_bytes(M);
    w->cub_tmp = take(base, &off, w->cub_bytes);
    w->tc.item_off = (int32_t *)take(base, &off, (size_t)(nkeys + 1) * 4);
    w->tc.slot_off = (int32_t *)take(base, &off, (size_t)(nkeys + 1) * 4);
    w->tc.max_items = tc_max_items(Tq, Hkv, nsel, nblk);
    w->tc.items = (int2 *)take(base, &off, (size_t)w->tc.max_items * 8);
    w->tc.part = (float *)take(base, &off, att_bwd_slot_bytes(Hkv, nblk));
    return off;
}

extern "C" size_t sparse_attention_backward_workspace_bytes(int64_t Tq, int Hkv, int nsel,
                                                            int64_t nblk) {
    struct inv_ws w;
    return inv_layout(NULL, Tq, Hkv, nsel, nblk, &w);
}

extern "C" int64_t sparse_attention_backward_chunk(int64_t Tq, int nsel, int64_t nblk, int D) {
    return att_bwd_chunk_tokens(Tq, nsel, nblk, D);
}

static struct inv_ws inv_carve(void *ws, int64_t M, const struct att_args *a, int nsel) {
    struct inv_ws w;
    memset(&w, 0, sizeof w);
    inv_layout((char *)ws, a->Tq, a->Hkv, nsel, a->nblk, &w);
    bool dvec_fits = (size_t)(a->Tq * a->Hq) * 4 <= 2 * a256((size_t)M * 4);
    w.tc.dvec = dvec_fits ? (float *)w.keys : NULL;
    w.tc.max_slots = (int64_t)(att_bwd_slot_bytes(a->Hkv, a->nblk) /
                               ((size_t)2 * ATT_BLOCK * a->D * sizeof(float)));
    w.tc.chunk = att_bwd_chunk_tokens(a->Tq, nsel, a->nblk, a->D);
    return w;
}

static __global__ void inv_keys_kernel(int32_t *keys, int32_t *rows, const int32_t *sel,
                                       int64_t Tq, int Hkv, int nsel, int64_t nblk) {
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= Tq * Hkv * nsel) return;
    int64_t i = e / ((int64_t)Hkv * nsel);
    int g = (int)((e / nsel) % Hkv);
    int32_t j = sel[e];
    keys[e] = j >= 0 ? (int32_t)(g * nblk + j) : (int32_t)(Hkv * nblk);
    rows[e] = (int32_t)i;
}

/* off[k] = first position of key k in the sorted keys (lower bound), k = 0 .. nkeys. */
static __global__ void inv_offsets_kernel(int32_t *off, const int32_t *skeys, int64_t M,
                                          int64_t nkeys) {
    int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k > nkeys) return;
    int64_t lo = 0, hi = M;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (skeys[mid] < k) lo = mid + 1; else hi = mid;
    }
    off[k] = (int32_t)lo;
}

extern "C" void sparse_attention_backward_cuda(void *dq, void *dk, void *dv, const void *dout,
                                               const void *q, const void *k, const void *v,
                                               const void *out, const float *lse,
                                               const int32_t *sel, int nsel, int block_size,
                                               const struct attn_shape *s, void *workspace,
                                               const struct gpu_ctx *g) {
    struct att_args a = args_of(s, block_size);
    if (a.Tq == 0) return;
    cudaStream_t st = stream_of(g);
    int64_t M = a.Tq * a.Hkv * nsel, nkeys = a.Hkv * a.nblk;
    CHECKF(M < INT32_MAX && nkeys < INT32_MAX, "selection too large for the int32 inverse index");
    struct inv_ws w = inv_carve(workspace, M, &a, nsel);
    inv_keys_kernel<<<(unsigned)ceil_div(M, 256), 256, 0, st>>>(w.keys, w.rows, sel, a.Tq, a.Hkv,
                                                                nsel, a.nblk);
    CUDA_CHECK_LAST();
    size_t bytes = w.cub_bytes;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(w.cub_tmp, bytes, w.keys, w.skeys, w.rows, w.srows,
                                               (int)M, 0, 32, st));
    inv_offsets_kernel<<<(unsigned)ceil_div(nkeys + 1, 256), 256, 0, st>>>(w.off, w.skeys, M,
                                                                           nkeys);
    CUDA_CHECK_LAST();
    a.q = (const bf16 *)q, a.k = (const bf16 *)k, a.v = (const bf16 *)v;
    a.out = (const bf16 *)out, a.dout = (const bf16 *)dout, a.lse_in = lse;
    a.dq = (bf16 *)dq, a.dk = (bf16 *)dk, a.dv = (bf16 *)dv;
    a.sel = sel, a.nsel = nsel;
    a.pair_rows = w.srows, a.pair_off = w.off;
    backward(a, &w.tc, g);
}
