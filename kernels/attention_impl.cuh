/*
 * attention_impl.cuh: what the CUDA attention files share (private to kernels/): the argument
 * struct of the stage-3 kernels, the tensor-core paths' entry points, and the union-of-blocks
 * listing both tensor-core passes use (the mma / ldmatrix / cp.async primitives: mma.cuh).
 */
#ifndef INFLLM_ATTENTION_IMPL_CUH
#define INFLLM_ATTENTION_IMPL_CUH

#include "mma.cuh"

#define ATT_MAX_D 256
#define ATT_DENSE_BLOCK 64
#define ATT_WARPS 8            /* warps per block of the row kernels */
#define DKDV_WARPS 8           /* warps (pairs per batch) of the dK/dV kernel */

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

/* The tensor-core forward (attention_tc.cu): returns false, doing nothing, for shapes it does not
 * cover (then the simple kernels run): D 64 or 128, G dividing 64, 64-key blocks. */
bool attention_tc_forward(const struct att_args *a, const struct gpu_ctx *g);

/* The tensor-core backward (attention_tc_bwd.cu), same shapes as the forward; ADDS into dq, dk,
 * dv. Dense mode: w may be NULL. Sparse mode: needs the inverse index (a->pair_rows, pair_off)
 * and w; returns false, doing nothing, where it does not apply. Deterministic (no float atomics). */
bool attention_tc_backward(const struct att_args *a, const struct att_bwd_ws *w,
                           const struct gpu_ctx *g);

/* Query tokens per dK/dV work item of the sparse backward: the smallest multiple of 128 that is
 * >= 128 and >= 2 Tq nsel D / (128 nblk), so that the partial slots of the split keys fit in
 * Hkv * nblk * 64 KiB whatever the selection (att_bwd_slot_bytes). */
int64_t att_bwd_chunk_tokens(int64_t Tq, int nsel, int64_t nblk, int D);
size_t att_bwd_slot_bytes(int Hkv, int64_t nblk);

/* ---------------------------------------------------------------------------------------------- */
/* Block-level: sets bit j of bits[tk] (token tk's row of words 32-bit words) and of ubits (the
 * union) for every block j selected by tokens i0 .. i0 + tokens - 1 of KV group grp (rows past Tq
 * and -1 entries skipped). The words must be zero; a barrier must follow. */
static __device__ __forceinline__ void mark_selected_blocks(uint32_t *bits, uint32_t *ubits,
                                                            const struct att_args &a, int grp,
                                                            int64_t i0, int tokens, int words,
                                                            int nthreads) {
    for (int idx = threadIdx.x; idx < tokens * a.nsel; idx += nthreads) {
        int tk = idx / a.nsel;
        int64_t i = i0 + tk;
        if (i >= a.Tq) continue;
        int32_t j = a.sel[(i * a.Hkv + grp) * a.nsel + idx % a.nsel];
        if (j < 0) continue;
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
