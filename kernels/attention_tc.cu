/*
 * attention_tc.cu: the tensor-core forward of stage 3 (and of dense attention): bf16 mma.sync
 * m16n8k16 with fp32 accumulation, online softmax in registers (flash-attention 2 algebra).
 *
 * Dimensions as attention.h; D is 64 or 128, key blocks of ATT_BLOCK (64), any G <= 64.
 * A thread block takes ROWS = 16 MT NW query rows of one KV group, packed as attention_impl.cuh
 * says: ROWS / G consecutive tokens x the G heads of the group, which share each token's selection
 * (InfLLM-V2 selects per token and KV group), and ROWS mod G padding rows. It walks, in ascending
 * order, the union of its tokens' selected blocks (dense: every block up to the last token's), one
 * 64-key block at a time. K and V of the next block are fetched with cp.async into the other of
 * two shared stages while the current one is used.
 * Each of the NW warps owns MT tiles of 16 rows: S = Q K^T on tensor cores (B fragments of K by
 * ldmatrix, each used for the MT row tiles), each row masked to its own token's blocks and causal
 * positions, online softmax in exp2 units, O += P V with P taken straight from the S accumulators
 * and V through ldmatrix.trans. A row tile none of whose rows selected the block skips it (the
 * union of ROWS / G tokens' selections is wider than each token's); a warp with no such tile
 * skips the block. Q's A fragments stay in registers when they fit (MT D <= 128), else they are
 * re-read from shared memory by ldmatrix (one x4 per row tile and 16 channels, shared by 8 mma).
 * Thread blocks run from the last query tile to the first: the causal tiles with the most blocks
 * start first, so the short ones fill the tail.
 *
 * Fragment layouts: mma.cuh; K/V loader, row packing, mask and softmax pieces: attention_impl.cuh.
 */
#include "attention_impl.cuh"

/* Shared memory: the Q tile (rows x (D + 8) bf16), K and V of two stages (4 x 64 x (D + 8) bf16),
 * sparse only: per-token selection bitmaps and their union ((tokens + 1) x words, words =
 * ceil(nblk / 32)), the list of blocks to visit (uint16) and its length. */
static size_t fwd_smem_bytes(int rows, int D, int tokens, int64_t nblk, bool sparse) {
    size_t words = (size_t)ceil_div(nblk, 32);
    return (size_t)(rows + 4 * ATT_BLOCK) * (D + 8) * sizeof(bf16) +
           (sparse ? (tokens + 1) * words * sizeof(uint32_t) +
                         (size_t)((nblk + 7) & ~7) * sizeof(uint16_t) + sizeof(int)
                   : 0);
}

/* FORCED: split FORCED (a compile-time flag, so the other calls keep their code). */
template <int D, int MT, int NW, bool FORCED>
static __global__ void __launch_bounds__(NW * 32)
    att_fwd_tc_kernel(struct att_args a, int G, int words) {
    constexpr int ROWS = 16 * MT * NW, NT = NW * 32, LD = D + 8;
    constexpr bool QREG = MT * D <= 128;
    extern __shared__ __align__(16) unsigned char smraw[];
    const int tokens = ROWS / G;
    bf16 *Qs = (bf16 *)smraw, *KV = Qs + ROWS * LD;
    uint32_t *bits = (uint32_t *)(KV + 4 * ATT_BLOCK * LD), *ubits = bits + tokens * words;
    uint16_t *blist = (uint16_t *)(ubits + words);
    int *nlist_s = (int *)(blist + ((a.nblk + 7) & ~7));
    const int grp = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gq = lane / 4, tq = lane % 4;
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * tokens;
    const float sl2 = a.scale * LOG2E; /* scores in log2 units: exp2 below */

    load_row_tile<D>(Qs, a.q, a, i0, tokens, G, grp, ROWS, NT);
    cp_async_commit();
    /* Blocks to visit: each token's selection as a bitmap, their union, then its list. Split
     * FORCED: no selection; blocks 0 .. nfi - 1, then fj0 .. the last token's block. */
    const int64_t last = i0 + tokens - 1 < a.Tq - 1 ? i0 + tokens - 1 : a.Tq - 1;
    const bool forced = FORCED;
    int nlist, nfi = 0;
    int64_t fj0 = 0;
    if (forced) {
        const int64_t bl = (a.q_pos0 + last) / ATT_BLOCK, bf = (a.q_pos0 + i0) / ATT_BLOCK;
        nfi = (int)(a.init_blocks < bl + 1 ? a.init_blocks : bl + 1);
        fj0 = bf - a.local_blocks > nfi ? bf - a.local_blocks : nfi;
        nlist = nfi + (int)(bl >= fj0 ? bl - fj0 + 1 : 0);
    } else if (a.sel) {
        for (int idx = threadIdx.x; idx < (tokens + 1) * words; idx += NT) bits[idx] = 0;
        __syncthreads();
        mark_selected_blocks(bits, ubits, a, grp, i0, tokens, words, NT);
        __syncthreads();
        if (warp == 0) {
            int n = list_set_blocks(blist, ubits, words, lane);
            if (lane == 0) *nlist_s = n;
        }
        __syncthreads();
        nlist = *nlist_s;
    } else {
        int64_t jmax = (a.q_pos0 + last) / ATT_BLOCK;
        nlist = (int)(jmax + 1 < a.nblk ? jmax + 1 : a.nblk);
    }
    /* Key block of list entry b. */
    auto block_at = [&](int b) -> int64_t {
        return forced ? (b < nfi ? b : fj0 + (b - nfi)) : a.sel ? (int64_t)blist[b] : b;
    };
    if (nlist > 0) {
        load_kv_block<D>(KV, KV + ATT_BLOCK * LD, a, block_at(0), grp, NT);
        cp_async_commit();
    }

    /* This warp's row tiles; in tile mt this thread holds rows r = 16 (MT warp + mt) + g and
     * r + 8 (h = 0, 1), of token r / G (padding rows: token >= ntok). */
    const int rbase = warp * 16 * MT;
    const int ntok = (int)(a.Tq - i0 < tokens ? a.Tq - i0 : tokens); /* tokens inside Tq */
    int tok[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) tok[mt][h] = (rbase + mt * 16 + gq + 8 * h) / G;
    float m[MT][2], l[MT][2], o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
        for (int dn = 0; dn < D / 8; dn++)
            o[mt][dn][0] = o[mt][dn][1] = o[mt][dn][2] = o[mt][dn][3] = 0.0f;
    }
    uint32_t qr[QREG ? MT : 1][QREG ? D / 16 : 1][4];
    /* Lane addresses (shared space, bytes) of the ldmatrix loads: Q's A fragments (row tile 0,
     * channels 0), K's B fragments (keys 0-15, channels 0) and V's (keys 0-15, channels 0) of
     * stage 0; the loops add compile-time offsets. */
    const uint32_t sm0 = (uint32_t)__cvta_generic_to_shared(smraw);
    const uint32_t qaddr = sm0 + ((rbase + (lane & 15)) * LD + (lane >> 4) * 8) * 2;
    const uint32_t kbase = sm0 + (ROWS * LD + ((lane & 7) + ((lane >> 4) << 3)) * LD +
                                  ((lane >> 3) & 1) * 8) * 2;
    const uint32_t vbase = sm0 + ((ROWS + ATT_BLOCK) * LD + (lane & 15) * LD + (lane >> 4) * 8) * 2;

    for (int b = 0; b < nlist; b++) {
        const int st = b & 1;
        const int64_t j = block_at(b);
        cp_async_wait_all();
        __syncthreads(); /* block b (and Q) landed; everyone is done with the other stage */
        if (b + 1 < nlist) {
            bf16 *Kn = KV + (st ^ 1) * 2 * ATT_BLOCK * LD;
            load_kv_block<D>(Kn, Kn + ATT_BLOCK * LD, a, block_at(b + 1), grp, NT);
            cp_async_commit();
        }
        if (QREG && b == 0) {
#pragma unroll
            for (int mt = 0; mt < (QREG ? MT : 1); mt++)
#pragma unroll
                for (int ks = 0; ks < (QREG ? D / 16 : 1); ks++)
                    ldsm_x4(qr[mt][ks], qaddr + (mt * 16 * LD + ks * 16) * 2);
        }
        const uint32_t kaddr = kbase + st * (2 * ATT_BLOCK * LD * 2);
        const uint32_t vaddr = vbase + st * (2 * ATT_BLOCK * LD * 2);
        /* lim: the last key of the block the row sees (-1: its token did not select the block, or
         * the block is past it); a row tile whose rows all have -1 skips the block. */
        const struct block_mask bm = block_mask_of(a, j, a.q_pos0 + i0);
        int lim[MT][2];
        bool need[MT], any = false;
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int t = tok[mt][h];
                bool ok = t < ntok &&
                          (forced ? forced_block(a, j, a.q_pos0 + i0 + t)
                                  : !a.sel || ((bits[t * words + j / 32] >> (j % 32)) & 1u));
                lim[mt][h] = ok ? mask_limit(bm, t) : -1;
            }
            need[mt] = __any_sync(0xffffffffu, lim[mt][0] >= 0 || lim[mt][1] >= 0);
            any = any || need[mt];
        }
        if (!any) continue;
        /* S = Q K^T for this warp's row tiles x 64 keys. */
        float s[MT][8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 8; nt++) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            uint32_t qa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                if (QREG) {
#pragma unroll
                    for (int e = 0; e < 4; e++) qa[mt][e] = qr[QREG ? mt : 0][QREG ? ks : 0][e];
                } else if (need[mt]) {
                    ldsm_x4(qa[mt], qaddr + (mt * 16 * LD + ks * 16) * 2);
                }
            }
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t kb[4];
                ldsm_x4(kb, kaddr + (np * 16 * LD + ks * 16) * 2);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    if (!need[mt]) continue;
                    mma_bf16(s[mt][2 * np], qa[mt], kb[0], kb[1]);
                    mma_bf16(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
                }
            }
        }
        /* Online softmax, in raw score units for the max (p = 2^(s sl2 - m sl2)). */
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            if (!need[mt]) continue;
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    /* masked scores to -inf once (their p is then 0), one select an element */
                    const int h = e >> 1;
                    s[mt][nt][e] = nt * 8 + 2 * tq + (e & 1) <= lim[mt][h] ? s[mt][nt][e] : -INFINITY;
                    mx[h] = fmaxf(mx[h], s[mt][nt][e]);
                }
            float bias[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
                float mn = fmaxf(m[mt][h], mx[h]);
                bias[h] = mn == -INFINITY ? 0.0f : -mn * sl2; /* no key yet: every p is 0 */
                float alpha = fast_exp2(fmaf(m[mt][h], sl2, bias[h]));
                m[mt][h] = mn;
                l[mt][h] *= alpha;
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++) o[mt][dn][2 * h] *= alpha, o[mt][dn][2 * h + 1] *= alpha;
            }
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int h = e >> 1;
                    float p = softmax_prob(s[mt][nt][e], sl2, bias[h], true);
                    s[mt][nt][e] = p;
                    l[mt][h] += p;
                }
        }
        /* O += P V: P's A fragments are the S accumulators of two neighbouring key tiles. */
#pragma unroll
        for (int k2 = 0; k2 < 4; k2++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) acc_to_a(pa[mt], s[mt][2 * k2], s[mt][2 * k2 + 1]);
#pragma unroll
            for (int d2 = 0; d2 < D / 16; d2++) {
                uint32_t vb[4];
                ldsm_x4_trans(vb, vaddr + (k2 * 16 * LD + d2 * 16) * 2);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    if (!need[mt]) continue;
                    mma_bf16(o[mt][2 * d2], pa[mt], vb[0], vb[1]);
                    mma_bf16(o[mt][2 * d2 + 1], pa[mt], vb[2], vb[3]);
                }
            }
        }
    }
    cp_async_wait_all(); /* Q's copy, when no block was visited */
    /* Split FORCED: the dynamic pass's lse of each row, read by the row's 4 threads before its
     * first thread overwrites it. */
    float lse_dyn[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = rbase + mt * 16 + gq + 8 * h;
            lse_dyn[mt][h] = forced && tok[mt][h] < ntok
                                 ? a.lse[(i0 + tok[mt][h]) * a.Hq + grp * G + r % G]
                                 : -INFINITY;
        }
    __syncwarp();
    /* Row sums over the 4 threads of a row, then normalise and store. */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float lh = l[mt][h];
            lh += __shfl_xor_sync(0xffffffffu, lh, 1);
            lh += __shfl_xor_sync(0xffffffffu, lh, 2);
            if (tok[mt][h] >= ntok) continue;
            int r = rbase + mt * 16 + gq + 8 * h;
            int64_t i = i0 + tok[mt][h];
            int head = grp * G + r % G;
            float inv = lh > 0.0f ? 1.0f / lh : 0.0f;
            float lse = lh > 0.0f ? m[mt][h] * a.scale + logf(lh) : -INFINITY;
            bf16 *orow = a.o + i * a.q_stride + (int64_t)head * D;
            if (forced) { /* merge with the dynamic pass's normalised output and lse */
                const float mx = fmaxf(lse, lse_dyn[mt][h]);
                float wf = 0.0f, wd = 0.0f;
                if (mx != -INFINITY) {
                    wf = expf(lse - mx), wd = expf(lse_dyn[mt][h] - mx);
                    const float sum = wf + wd;
                    lse = mx + logf(sum);
                    wf /= sum, wd /= sum;
                }
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++) {
                    __nv_bfloat162 *at = (__nv_bfloat162 *)(orow + dn * 8 + 2 * tq);
                    const float2 od = __bfloat1622float2(*at);
                    *at = __floats2bfloat162_rn(o[mt][dn][2 * h] * inv * wf + od.x * wd,
                                                o[mt][dn][2 * h + 1] * inv * wf + od.y * wd);
                }
            } else {
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++)
                    *(__nv_bfloat162 *)(orow + dn * 8 + 2 * tq) =
                        __floats2bfloat162_rn(o[mt][dn][2 * h] * inv, o[mt][dn][2 * h + 1] * inv);
            }
            if (tq == 0) a.lse[i * a.Hq + head] = lse;
        }
}

/* Tiles measured on an H200 (causal, 8k-64k tokens): 128 rows (4 warps x 32) everywhere but D 64
 * block-sparse, where the narrower union of 64 rows' tokens pays more (G 8: 7% faster). D 128
 * block-sparse (G 16) with 64 rows (4 warps x 16) or 128 rows as 8 warps x 16 was slower: 131 and
 * 192 ms at 128k against 128 ms, 24.0 and 28.9 at 32k against 20.1. */
static int fwd_rows(int D, bool sparse) { return D == 64 && sparse ? 64 : 128; }

bool attention_tc_supports(const struct att_args *a, bool sparse) {
    if ((a->D != 64 && a->D != 128) || a->bs != ATT_BLOCK) return false;
    if (a->Hkv <= 0 || a->Hq % a->Hkv != 0 || a->Hq / a->Hkv > ATT_TC_MAX_G) return false;
    if (a->q_stride % 8 != 0 || a->kv_stride % 8 != 0) return false; /* 16-byte rows */
    if (sparse && a->nblk > ATT_MAX_BLOCKS) return false;
    int G = a->Hq / a->Hkv, rows = fwd_rows(a->D, sparse);
    size_t limit = smem_optin_bytes();
    return fwd_smem_bytes(rows, a->D, rows / G, a->nblk, sparse) <= limit &&
           attention_tc_bwd_fits(a, sparse, limit);
}

template <int D, int MT, int NW, bool FORCED>
static void launch_one(const struct att_args *a, const struct gpu_ctx *g, int G) {
    const int rows = 16 * MT * NW, tokens = rows / G;
    const bool sparse = a->sel != NULL;
    const int words = sparse ? (int)ceil_div(a->nblk, 32) : 0;
    size_t smem = fwd_smem_bytes(rows, D, tokens, a->nblk, sparse);
    dim3 grid((unsigned)ceil_div(a->Tq, tokens), (unsigned)a->Hkv);
    CUDA_CHECK(cudaFuncSetAttribute(att_fwd_tc_kernel<D, MT, NW, FORCED>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    att_fwd_tc_kernel<D, MT, NW, FORCED><<<grid, NW * 32, smem, stream_of(g)>>>(*a, G, words);
    CUDA_CHECK_LAST();
}

template <int D, int MT, int NW>
static void launch_fwd(const struct att_args *a, const struct gpu_ctx *g, int G) {
    if (a->split == ATT_SPLIT_FORCED) launch_one<D, MT, NW, true>(a, g, G);
    else launch_one<D, MT, NW, false>(a, g, G);
}

void attention_tc_forward(const struct att_args *a, const struct gpu_ctx *g) {
    const int G = a->Hq / a->Hkv;
    CHECKF(((uintptr_t)a->q & 15) == 0 && ((uintptr_t)a->k & 15) == 0 &&
               ((uintptr_t)a->v & 15) == 0,
           "attention: q, k, v must be 16-byte aligned for the tensor-core forward");
    if (a->D == 64)
        a->sel ? launch_fwd<64, 1, 4>(a, g, G) : launch_fwd<64, 2, 4>(a, g, G);
    else
        launch_fwd<128, 2, 4>(a, g, G);
}
