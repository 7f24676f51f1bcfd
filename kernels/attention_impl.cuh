/*
 * attention_impl.cuh: what the CUDA attention files share (private to kernels/): the argument
 * struct of the stage-3 kernels, the tensor-core paths' entry points and the device pieces all
 * three tensor-core kernels (forward, dQ, dK/dV) use: the K/V block loader, the query-tile loader
 * with its row packing, the causal/selection mask and the softmax probability (the mma / ldmatrix
 * / cp.async primitives: mma.cuh).
 *
 * Row packing of the tensor-core kernels: a tile of R query rows of one KV group holds
 * tokens = floor(R / G) consecutive tokens x the G heads of the group (they share each token's
 * selection); row r is token r / G, head r % G, and the R - tokens * G rows past them are padding
 * (zeros in, nothing out). Any G <= R works; G dividing R wastes nothing.
 */
#ifndef INFLLM_ATTENTION_IMPL_CUH
#define INFLLM_ATTENTION_IMPL_CUH

#include "mma.cuh"

#define ATT_MAX_D 256
#define ATT_BLOCK 64            /* keys of a key block: dense mode's blocks and the tensor-core
                                   kernels' K/V tiles (sparse mode needs block_size = ATT_BLOCK) */
#define ATT_MAX_BLOCKS 65536    /* key blocks of a sparse call: the block lists are uint16 */
#define ATT_TC_MAX_G 64         /* the smallest tensor-core query tile: one token of 64 heads */
#define ATT_WARPS 8             /* warps per block of the row kernels */
#define DKDV_WARPS 8            /* warps (pairs per batch) of the dK/dV kernel */

/* Which part of a sparse call's blocks the tensor-core forward serves (att_args.split). A token's
 * forced blocks are the init blocks and its local window (forced_block); the selection of
 * infllm_select always holds them. The split forward runs DYNAMIC (the selection less each token's
 * forced blocks, written as a partial output and lse), then FORCED (the forced blocks of every
 * token of the tile, the same for all tokens of a 64-token block, with no selection read), which
 * merges its partial softmax with the dynamic one's by their log-sum-exps. */
enum att_split { ATT_SPLIT_NONE = 0, ATT_SPLIT_DYNAMIC = 1, ATT_SPLIT_FORCED = 2 };

struct att_args {
    const bf16 *q, *k, *v, *out, *dout;
    bf16 *o, *dq, *dk, *dv;
    float *lse;
    const float *lse_in;
    const int32_t *sel;        /* NULL: dense */
    int nsel, bs;
    int64_t Tq, q_pos0, Tk, q_stride, kv_stride;
    int Hq, Hkv, D;
    float scale;
    const int32_t *pair_rows;  /* dK/dV of sparse mode: rows attending to each (g, block) ... */
    const int32_t *pair_off;   /* ... in [pair_off[g * nblk + j], pair_off[g * nblk + j + 1]) */
    int64_t nblk;
    int split;                 /* enum att_split (forward only; NONE elsewhere) */
    int init_blocks, local_blocks; /* the forced blocks, for split != NONE (infllm_params) */
};

/* Device scratch of the tensor-core backward in sparse mode (carved from the sparse workspace).
 * Keys k' = j * Hkv + g (block-major, so the heaviest blocks, 0 and the early ones, come first). */
struct att_bwd_ws {
    float *dvec;               /* (Tq, Hq) D_i = dout_i . out_i, or NULL: recomputed from out */
    int32_t *item_off;         /* (Hkv * nblk + 1) first work item of key k'; [Hkv * nblk] = count */
    int32_t *slot_off;         /* (Hkv * nblk + 1) first partial slot of key k' (split keys only) */
    int2 *items;               /* (max_items) work item: (k', chunk) */
    float *part;               /* (max_slots, 2, 64, D) fp32 partial dK, dV of one chunk */
    int64_t max_items, max_slots;
    int64_t chunk;             /* query tokens per work item */
};

/* Whether the tensor-core kernels (forward and backward) take this call's shape: D 64 or 128,
 * block size ATT_BLOCK, G = Hq / Hkv <= ATT_TC_MAX_G, 16-byte rows (strides multiples of 8),
 * sparse: at most ATT_MAX_BLOCKS blocks, and every kernel's tiles (with the per-token selection
 * bitmaps, which grow with Tk) fitting the device's shared memory. The dispatcher runs them
 * exactly when this holds (attention_tc.cu; attention_tc_bwd_fits: the backward's tiles). */
bool attention_tc_supports(const struct att_args *a, bool sparse);
bool attention_tc_bwd_fits(const struct att_args *a, bool sparse, size_t smem_limit);

/* The tensor-core forward (attention_tc.cu), for shapes attention_tc_supports. */
void attention_tc_forward(const struct att_args *a, const struct gpu_ctx *g);

/* The tensor-core backward (attention_tc_bwd.cu), same shapes; ADDS into dq, dk, dv. Dense mode:
 * w may be NULL. Sparse mode: needs the inverse index (a->pair_rows, pair_off) and w.
 * Deterministic (no float atomics). */
void attention_tc_backward(const struct att_args *a, const struct att_bwd_ws *w,
                           const struct gpu_ctx *g);

/* Query tokens per dK/dV work item of the sparse backward: the smallest multiple of 128 that is
 * >= 128 and >= 2 Tq nsel D / (128 nblk), so that the partial slots of the split keys fit in
 * Hkv * nblk * 64 KiB whatever the selection (att_bwd_slot_bytes). */
int64_t att_bwd_chunk_tokens(int64_t Tq, int nsel, int64_t nblk, int D);
size_t att_bwd_slot_bytes(int Hkv, int64_t nblk);

/* ---------------------------------------------------------------------------------------------- */
/* Device pieces of the three tensor-core kernels. Shared rows are D + 8 bf16 apart (the padding
 * puts the 8 rows of an ldmatrix 8x8 matrix on 32 different banks). */

/* K and V rows of key block j (KV head grp) into Ks, Vs by cp.async from nthreads threads; zeros
 * past Tk. The caller commits. */
template <int D>
static __device__ __forceinline__ void load_kv_block(bf16 *Ks, bf16 *Vs, const struct att_args &a,
                                                     int64_t j, int grp, int nthreads) {
    const int LD = D + 8;
    for (int idx = threadIdx.x; idx < ATT_BLOCK * D / 8; idx += nthreads) {
        int r = idx / (D / 8), c8 = (idx % (D / 8)) * 8;
        int64_t u = j * ATT_BLOCK + r;
        bool ok = u < a.Tk;
        int64_t off = ok ? u * a.kv_stride + (int64_t)grp * D + c8 : 0;
        cp_async16(Ks + r * LD + c8, a.k + off, ok);
        cp_async16(Vs + r * LD + c8, a.v + off, ok);
    }
}

/* Rows 0 .. rows-1 of a query tile of src (q, dout: (Tq, Hq, D), q_stride apart) by cp.async, in
 * the row packing above: `tokens` tokens from i0 of KV group grp; padding rows and tokens past Tq
 * are zero-filled. The caller commits. */
template <int D>
static __device__ __forceinline__ void load_row_tile(bf16 *dst, const bf16 *src,
                                                     const struct att_args &a, int64_t i0,
                                                     int tokens, int G, int grp, int rows,
                                                     int nthreads) {
    const int LD = D + 8;
    for (int idx = threadIdx.x; idx < rows * D / 8; idx += nthreads) {
        int r = idx / (D / 8), c8 = (idx % (D / 8)) * 8, t = r / G;
        int64_t i = i0 + t;
        bool ok = t < tokens && i < a.Tq;
        int64_t off = ok ? i * a.q_stride + (int64_t)(grp * G + r % G) * D + c8 : 0;
        cp_async16(dst + r * LD + c8, src + off, ok);
    }
}

/* The mask, in two steps so that the per-row part is 32-bit: block_mask_of(a, j, pos0) once a
 * key block j, for rows of tokens at global positions pos0 + t (0 <= t < 1024), then
 * mask_limit(m, t) a row: the last key of the block (0 .. ATT_BLOCK - 1, from its first key) the
 * row sees (causal, keys < Tk), or -1 when it sees none. A row whose token did not select the
 * block gets -1 from its caller instead. */
struct block_mask {
    int rel;  /* position of token t = 0 relative to the block's first key, clamped to [-1024, 64] */
    int kend; /* last key of the block below Tk */
};

static __device__ __forceinline__ struct block_mask block_mask_of(const struct att_args &a,
                                                                  int64_t j, int64_t pos0) {
    const int64_t k0 = j * ATT_BLOCK, rel = pos0 - k0, kend = a.Tk - 1 - k0;
    struct block_mask m;
    m.rel = (int)(rel < -1024 ? -1024 : rel > ATT_BLOCK ? ATT_BLOCK : rel);
    m.kend = (int)(kend < ATT_BLOCK - 1 ? kend : ATT_BLOCK - 1);
    return m;
}

static __device__ __forceinline__ int mask_limit(struct block_mask m, int t) {
    return max(min(m.rel + t, m.kend), -1);
}

/* The softmax probability of one score in log2 units: 2^(s sl2 + bias) with sl2 = scale log2(e)
 * and bias = -(the row's running max, forward, or its lse, backward) in log2 units; 0 for a
 * masked key. One FMA and one ex2: the forward, dQ and dK/dV kernels all form P with it. The
 * forward has already set its masked scores to -inf (2^-inf = 0) for its row max, and passes
 * live = true: a mask predicate used twice costs more than the select. */
static __device__ __forceinline__ float softmax_prob(float s, float sl2, float bias, bool live) {
    return live ? fast_exp2(fmaf(s, sl2, bias)) : 0.0f;
}

/* Whether key block j is one of the forced blocks of the token at global position pos: j below
 * init_blocks, or in its local window b(pos) - local_blocks .. b(pos). */
static __device__ __forceinline__ bool forced_block(const struct att_args &a, int64_t j,
                                                    int64_t pos) {
    const int64_t bt = pos / ATT_BLOCK;
    return j < a.init_blocks || (j >= bt - a.local_blocks && j <= bt);
}

/* ---------------------------------------------------------------------------------------------- */
/* Block-level: sets bit j of bits[tk] (token tk's row of words 32-bit words) and of ubits (the
 * union) for every block j selected by tokens i0 .. i0 + tokens - 1 of KV group grp (rows past Tq
 * and -1 entries skipped; split DYNAMIC: the token's forced blocks too). The words must be zero; a
 * barrier must follow. */
static __device__ __forceinline__ void mark_selected_blocks(uint32_t *bits, uint32_t *ubits,
                                                            const struct att_args &a, int grp,
                                                            int64_t i0, int tokens, int words,
                                                            int nthreads) {
    for (int idx = threadIdx.x; idx < tokens * a.nsel; idx += nthreads) {
        int tk = idx / a.nsel;
        int64_t i = i0 + tk;
        if (i >= a.Tq) continue;
        int32_t j = a.sel[(i * a.Hkv + grp) * a.nsel + idx % a.nsel];
        if (j < 0 || (a.split == ATT_SPLIT_DYNAMIC && forced_block(a, j, a.q_pos0 + i))) continue;
        atomicOr(&bits[tk * words + j / 32], 1u << (j % 32));
        atomicOr(&ubits[j / 32], 1u << (j % 32));
    }
}

/* Warp-level: lists the set bits of ubits (words 32-bit words, bit j = block j) in ascending order
 * into blist and returns their count (in every lane). Called by one whole warp. */
static __device__ __forceinline__ int list_set_blocks(uint16_t *blist, const uint32_t *ubits,
                                                      int words, int lane) {
    int n = 0;
    for (int w0 = 0; w0 < words; w0 += 32) {
        uint32_t word = w0 + lane < words ? ubits[w0 + lane] : 0u;
        int cnt = __popc(word), incl = cnt;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            int y = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += y;
        }
        int at = n + incl - cnt;
        while (word) {
            blist[at++] = (uint16_t)((w0 + lane) * 32 + __ffs(word) - 1);
            word &= word - 1;
        }
        n += __shfl_sync(0xffffffffu, incl, 31);
    }
    return n;
}

#endif
