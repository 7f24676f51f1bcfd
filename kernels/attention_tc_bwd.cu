/*
 * attention_tc_bwd.cu: the tensor-core backward of stage 3 (and of dense attention): bf16 mma.sync
 * m16n8k16 with fp32 accumulation, flash-attention 2 algebra with P recomputed from q, k and the
 * saved fp32 lse: P = exp(scale S - lse), dP = dO V^T, dS = P (dP - D_i), D_i = dO_i . O_i.
 *
 * Dimensions as attention.h; D is 64 or 128, key blocks of ATT_BLOCK (64), any G <= 64: query
 * tiles pack tokens x G heads plus padding rows as attention_impl.cuh says.
 * Gradient rule: ADDS into dq, dk, dv (bf16), once per element, after fp32 accumulation.
 *
 * dQ kernel: the forward's tiling. A thread block takes ROWS = 16 NW query rows of one KV group
 * (ROWS / G tokens x the G heads of the group; NW = 8 warps for dense D 128, else 4) and walks,
 * in ascending order, the union of its tokens' selected blocks (dense: every block up to its last
 * token's). K and V of the next block are fetched with cp.async into the other of two shared
 * stages while the current one is used. Per block, each warp (16 rows) whose rows read the block
 * (the union of ROWS / G tokens' selections is wider than each token's: a warp skips blocks none
 * of its rows selected) computes S = Q K^T and dP = dO V^T (A fragments of Q and dO by ldmatrix
 * from shared memory, B fragments of K and V by ldmatrix), masks each row to its own token's
 * blocks and causal keys, forms dS in registers and accumulates dQ += dS K with dS taken straight
 * from the accumulators and K through ldmatrix.trans. D_i is computed here from dO and O (and
 * saved for the dK/dV kernel when the sparse workspace has room for it).
 *
 * dK/dV kernel: a thread block per work item (KV head g, key block j, chunk of the query tokens
 * that attend to j). Dense: the tokens at or after the block, one item per (g, j). Sparse: the
 * tokens that selected j, from the inverse index (in token order), cut into chunks of
 * att_bwd_chunk_tokens tokens: block 0 and the local blocks are selected by nearly every token, so
 * one item per (g, j) would leave a long tail; items are ordered block-major (k' = j Hkv + g) so
 * the heaviest start first. The rows are gathered 128 at a time (128 / G tokens x G heads, with
 * their lse and D_i; zero padding rows after them) into one of two shared stages by cp.async while the other is used; the token
 * indices of the tile after next are fetched into a ring of three. 8 warps in RG row groups: a
 * warp owns KT 16-key tiles (KT = 1 for D 128, 2 for D 64, where each Q and dO fragment then
 * feeds two key tiles) and holds their dK, dV accumulators (KT D floats a thread); the 4 / KT
 * warps of a group cover the 64 keys and the group takes 128 / RG rows of each tile. S^T = K Q^T
 * and dP^T = V dO^T (32 rows at a time), P^T and dS^T in registers (the causal mask only in the
 * tiles that reach into the block), dV += P^T dO and dK += dS^T Q (B fragments by
 * ldmatrix.trans). At the end groups 1 .. RG-1 hand their accumulators to group 0 through shared
 * memory.
 *
 * Determinism: no float atomics anywhere. dQ rows and the dK/dV of an unsplit (g, j) have one
 * writer. A split (g, j) writes each chunk's fp32 partial to its own slot, and a third kernel adds
 * the slots in chunk order into dk, dv. Cost: the partials are written and read once (2 x 64 x D
 * floats a chunk, for the few split blocks), a kernel with one block per (g, j). The chunking
 * depends only on the shapes and the selection, so runs are bitwise reproducible.
 *
 * Fragment layouts: mma.cuh; K/V loader, row packing, mask and softmax pieces: attention_impl.cuh.
 */
#include <string.h>

#include "attention_impl.cuh"

/* dQ kernel: warps of 16 rows (two threads a row for D_i). Dense D 128 takes 128-row tiles (each
 * K/V block feeds 8 warps); sparse tiles stay at 64 rows: a warp computes only the blocks its own
 * rows selected, and two 4-warp blocks a multiprocessor hide the K/V gather better than one of 8
 * warps that mostly wait (measured on the H200: 163 ms at 128k with 64 rows, 180 with 128). */
#define BQ_WARPS(D, sparse) ((D) == 128 && !(sparse) ? 8 : 4)
#define BK_ROWS 128     /* dK/dV kernel: query rows per tile */
#define BK_THREADS 256  /* 8 warps: RG row groups x 4 / KT warps of 16 KT keys */
#define SLOT_BYTES_PER_KEY_BLOCK ((size_t)2 * ATT_BLOCK * 128 * sizeof(float)) /* D <= 128 */

/* ---------------------------------------------------------------------------------------------- */
/* Sizes                                                                                           */

int64_t att_bwd_chunk_tokens(int64_t Tq, int nsel, int64_t nblk, int D) {
    int64_t c = ceil_div(2 * Tq * (int64_t)nsel * D, (int64_t)128 * (nblk > 0 ? nblk : 1));
    if (c < 128) c = 128;
    return ceil_div(c, 128) * 128;
}

/* Slots of a split (g, j): ceil(n / chunk) <= 2 n / chunk for n > chunk tokens, so all slots of a
 * KV head are at most 2 Tq nsel / chunk <= 128 nblk / D; a slot holds 2 x 64 x D floats. */
size_t att_bwd_slot_bytes(int Hkv, int64_t nblk) {
    return (size_t)Hkv * (size_t)nblk * SLOT_BYTES_PER_KEY_BLOCK;
}

/* Shared memory of the dQ kernel: Q and dO tiles, K and V of two stages ((2 rows + 4 x 64) x LD
 * bf16), per row lse (log2 units) and D_i, sparse only: the per-token selection bitmaps and their
 * union ((tokens + 1) x words), the list of blocks to visit (uint16) and its length. */
static size_t dq_smem_bytes(int D, int rows, int tokens, int64_t nblk, bool sparse) {
    size_t words = (size_t)ceil_div(nblk, 32);
    return (size_t)(2 * rows + 4 * ATT_BLOCK) * (D + 8) * sizeof(bf16) +
           (size_t)2 * rows * sizeof(float) +
           (sparse ? (tokens + 1) * words * sizeof(uint32_t) +
                         (size_t)((nblk + 7) & ~7) * sizeof(uint16_t) + sizeof(int)
                   : 0);
}

/* Shared memory of the dK/dV kernel: K and V of the block (2 x 64 x LD), Q and dO tiles of two
 * stages (4 x 128 x LD), the O tile where D_i is recomputed (128 x LD), per stage and row lse and
 * D_i (4 x 128 floats), per stage and row the mask limit (2 x 128 ints), token indices of three
 * tiles (3 x 128 ints). The hand-over of group 1's
 * accumulators at the end reuses the Q/dO stages (4 x 32 x 2 x D / 2 floats <= 4 x 128 x LD bf16). */
static size_t kv_smem_bytes(int D, bool need_o) {
    return (size_t)(2 * ATT_BLOCK + 4 * BK_ROWS + (need_o ? BK_ROWS : 0)) * (D + 8) * sizeof(bf16) +
           (size_t)4 * BK_ROWS * sizeof(float) + (size_t)5 * BK_ROWS * sizeof(int32_t);
}

/* ---------------------------------------------------------------------------------------------- */
/* dQ                                                                                              */

template <int D, int NW>
static __global__ void __launch_bounds__(NW * 32)
    att_bwd_dq_kernel(struct att_args a, float *dvec, int G, int words) {
    constexpr int ROWS = 16 * NW, NT = 32 * NW;
    extern __shared__ __align__(16) unsigned char smraw[];
    const int LD = D + 8, tokens = ROWS / G;
    bf16 *Qs = (bf16 *)smraw, *Gs = Qs + ROWS * LD, *KV = Gs + ROWS * LD;
    float *lse2s = (float *)(KV + 4 * ATT_BLOCK * LD), *dvs = lse2s + ROWS;
    uint32_t *bits = (uint32_t *)(dvs + ROWS), *ubits = bits + tokens * words;
    uint16_t *blist = (uint16_t *)(ubits + words);
    int *nlist_s = (int *)(blist + ((a.nblk + 7) & ~7));
    const int grp = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gq = lane / 4, tq = lane % 4;
    const int64_t i0 = (int64_t)blockIdx.x * tokens;
    const float sl2 = a.scale * LOG2E; /* scores in log2 units: exp2 below */

    load_row_tile<D>(Qs, a.q, a, i0, tokens, G, grp, ROWS, NT);
    load_row_tile<D>(Gs, a.dout, a, i0, tokens, G, grp, ROWS, NT);
    cp_async_commit();
    /* Blocks to visit: each token's selection as a bitmap, and their union. */
    const int64_t last = i0 + tokens - 1 < a.Tq - 1 ? i0 + tokens - 1 : a.Tq - 1;
    if (a.sel) {
        for (int idx = threadIdx.x; idx < (tokens + 1) * words; idx += NT) bits[idx] = 0;
        __syncthreads();
        mark_selected_blocks(bits, ubits, a, grp, i0, tokens, words, NT);
    }
    cp_async_wait_all();
    __syncthreads();
    /* D_i = dO_i . O_i and lse, two threads a row (padding rows: 0 and -inf, nothing saved); warp
     * 0 then lists the union's blocks. */
    {
        int r = threadIdx.x / 2, half = threadIdx.x % 2;
        int64_t i = i0 + r / G;
        int head = grp * G + r % G;
        bool live = r / G < tokens && i < a.Tq;
        float d = 0.0f;
        if (live) {
            const bf16 *orow = a.out + i * a.q_stride + (int64_t)head * D + half * (D / 2);
            const bf16 *grow = Gs + r * LD + half * (D / 2);
#pragma unroll
            for (int c = 0; c < D / 2; c += 8)
                d += dot8(*(const uint4 *)(orow + c), *(const uint4 *)(grow + c));
        }
        d += __shfl_xor_sync(0xffffffffu, d, 1);
        if (half == 0) {
            dvs[r] = d;
            lse2s[r] = live ? a.lse_in[i * a.Hq + head] * LOG2E : -INFINITY;
            if (dvec && live) dvec[i * a.Hq + head] = d;
        }
    }
    if (a.sel && warp == 0) {
        int n = list_set_blocks(blist, ubits, words, lane);
        if (lane == 0) *nlist_s = n;
    }
    __syncthreads();
    const int nlist = a.sel ? *nlist_s : (int)((a.q_pos0 + last) / ATT_BLOCK) + 1;

    /* This warp's 16 rows; this thread holds rows r0 = 16 warp + g and r1 = r0 + 8 (padding rows
     * and rows past Tq have lse -inf: never live). */
    const int r0 = warp * 16 + gq, r1 = r0 + 8;
    const int tok[2] = {r0 / G, r1 / G};
    const float lse2[2] = {lse2s[r0], lse2s[r1]}, dval[2] = {dvs[r0], dvs[r1]};
    bool rowok[2];
#pragma unroll
    for (int h = 0; h < 2; h++) rowok[h] = lse2[h] != -INFINITY;
    float acc[D / 8][4];
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.0f;

    if (nlist > 0) {
        load_kv_block<D>(KV, KV + ATT_BLOCK * LD, a, a.sel ? blist[0] : 0, grp, NT);
        cp_async_commit();
    }
    for (int b = 0; b < nlist; b++) {
        const int st = b & 1;
        const int64_t j = a.sel ? (int64_t)blist[b] : b;
        cp_async_wait_all();
        __syncthreads(); /* block b landed; everyone is done with the other stage */
        if (b + 1 < nlist) {
            bf16 *Kn = KV + (st ^ 1) * 2 * ATT_BLOCK * LD;
            load_kv_block<D>(Kn, Kn + ATT_BLOCK * LD, a, a.sel ? (int64_t)blist[b + 1] : b + 1, grp,
                             NT);
            cp_async_commit();
        }
        const bf16 *Ks = KV + st * 2 * ATT_BLOCK * LD, *Vs = Ks + ATT_BLOCK * LD;
        /* Rows that read block j: their own token selected it (sparse), it is not past them. A
         * warp none of whose rows does skips it (the union of 64 / G tokens' selections can be
         * several times one token's). */
        const struct block_mask bm = block_mask_of(a, j, a.q_pos0 + i0);
        int lim[2];
#pragma unroll
        for (int h = 0; h < 2; h++)
            lim[h] = rowok[h] && (!a.sel || ((bits[tok[h] * words + j / 32] >> (j % 32)) & 1u))
                         ? mask_limit(bm, tok[h])
                         : -1;
        if (!__any_sync(0xffffffffu, lim[0] >= 0 || lim[1] >= 0)) continue;
        /* S = Q K^T and dP = dO V^T for this warp's 16 rows x 64 keys. */
        float s[8][4], dp[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            uint32_t qa[4], ga[4];
            const int aoff = (warp * 16 + (lane & 15)) * LD + ks * 16 + (lane >> 4) * 8;
            ldmatrix_x4(qa, Qs + aoff);
            ldmatrix_x4(ga, Gs + aoff);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                const int boff =
                    (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD + ks * 16 + ((lane >> 3) & 1) * 8;
                uint32_t kb[4], vb[4];
                ldmatrix_x4(kb, Ks + boff);
                ldmatrix_x4(vb, Vs + boff);
                mma_bf16(s[2 * np], qa, kb[0], kb[1]);
                mma_bf16(s[2 * np + 1], qa, kb[2], kb[3]);
                mma_bf16(dp[2 * np], ga, vb[0], vb[1]);
                mma_bf16(dp[2 * np + 1], ga, vb[2], vb[3]);
            }
        }
        /* dS = P (dP - D_i), P masked to the row's own blocks and causal keys. */
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int h = e >> 1;
                float p = softmax_prob(s[nt][e], sl2, -lse2[h], nt * 8 + 2 * tq + (e & 1) <= lim[h]);
                s[nt][e] = p * (dp[nt][e] - dval[h]);
            }
        /* dQ += dS K: dS's A fragments are the accumulators of two neighbouring key tiles. */
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t pa[4];
            acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int d2 = 0; d2 < D / 16; d2++) {
                uint32_t kb[4];
                ldmatrix_x4_trans(kb, Ks + (kk * 16 + (lane & 15)) * LD + d2 * 16 + (lane >> 4) * 8);
                mma_bf16(acc[2 * d2], pa, kb[0], kb[1]);
                mma_bf16(acc[2 * d2 + 1], pa, kb[2], kb[3]);
            }
        }
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        int64_t i = i0 + tok[h];
        if (tok[h] >= tokens || i >= a.Tq) continue;
        int head = grp * G + (h ? r1 : r0) % G;
        bf16 *row = a.dq + i * a.q_stride + (int64_t)head * D + 2 * tq;
#pragma unroll
        for (int dn = 0; dn < D / 8; dn++)
            add_bf16x2(row + dn * 8, a.scale * acc[dn][2 * h], a.scale * acc[dn][2 * h + 1]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* dK, dV                                                                                          */

/* Where the tiles of one work item come from. */
struct kv_item {
    int g;
    int64_t j, k0;
    const int32_t *list; /* sparse: the (g, j) list of tokens; NULL: dense */
    int64_t first;       /* dense: token of list index 0 */
    int64_t cb, ce;      /* this chunk's list indices [cb, ce) */
};

/* Token indices of tile m (tokens cb + m * ttok ..) into ring slot m % 3; -1 past the chunk. */
static __device__ __forceinline__ void fill_ring(int32_t *ring, const struct kv_item &it, int m,
                                                 int ttok) {
    int32_t *dst = ring + (m % 3) * BK_ROWS;
    for (int t = threadIdx.x; t < ttok; t += BK_THREADS) {
        int64_t x = it.cb + (int64_t)m * ttok + t;
        if (x >= it.ce)
            dst[t] = -1;
        else if (it.list)
            cp_async4(dst + t, it.list + x, true);
        else
            dst[t] = (int32_t)(it.first + x);
    }
}

/* Token of row r of a tile whose ring slot is toks (ttok tokens x G heads, then padding), or -1. */
static __device__ __forceinline__ int32_t tile_row_token(const int32_t *toks, int r, int G,
                                                         int ttok) {
    return r < ttok * G ? toks[r / G] : -1;
}

/* Q, dO (and O) rows, lse and D_i of tile m into stage m % 2, from the tokens of ring slot m % 3;
 * rows of no token (past the chunk, padding) are zero-filled. Each row's mask limit in the block
 * (mask_limit; -1 for no token) into lims, by plain stores: the barrier that publishes the
 * tile publishes them, and the inner loop reads one int2 per row pair instead of forming them. */
template <int D>
static __device__ __forceinline__ void issue_tile(bf16 *QG, bf16 *Os, float *lses, float *dvs,
                                                  int32_t *lims, const int32_t *ring,
                                                  const struct att_args &a,
                                                  const float *dvec, const struct kv_item &it,
                                                  int m, int G) {
    const int LD = D + 8, st = m & 1, ttok = BK_ROWS / G;
    const int32_t *toks = ring + (m % 3) * BK_ROWS;
    bf16 *Qd = QG + st * 2 * BK_ROWS * LD, *Gd = Qd + BK_ROWS * LD;
    for (int idx = threadIdx.x; idx < BK_ROWS * D / 8; idx += BK_THREADS) {
        int r = idx / (D / 8), c8 = (idx % (D / 8)) * 8;
        int32_t tok = tile_row_token(toks, r, G, ttok);
        bool ok = tok >= 0;
        int64_t off = ok ? (int64_t)tok * a.q_stride + (int64_t)(it.g * G + r % G) * D + c8 : 0;
        cp_async16(Qd + r * LD + c8, a.q + off, ok);
        cp_async16(Gd + r * LD + c8, a.dout + off, ok);
        if (!dvec) cp_async16(Os + r * LD + c8, a.out + off, ok);
    }
    if (threadIdx.x < BK_ROWS) {
        int r = threadIdx.x;
        int32_t tok = tile_row_token(toks, r, G, ttok);
        bool ok = tok >= 0;
        int64_t li = ok ? (int64_t)tok * a.Hq + it.g * G + r % G : 0;
        cp_async4(lses + st * BK_ROWS + r, a.lse_in + li, ok);
        if (dvec) cp_async4(dvs + st * BK_ROWS + r, dvec + li, ok);
        lims[st * BK_ROWS + r] = ok ? mask_limit(block_mask_of(a, it.j, a.q_pos0 + tok), 0) : -1;
    }
}

/* KT: 16-key tiles a warp owns (1 for D 128, 2 for D 64: each Q and dO fragment then feeds two
 * key tiles). The 8 warps are RG = 2 KT row groups of 4 / KT warps; inside a group the warps
 * split the 64 keys and the group takes rows GROWS = 128 / RG of each tile, 32 at a time. */
template <int D, int KT>
static __global__ void __launch_bounds__(BK_THREADS, 1)
    att_bwd_dkdv_kernel(struct att_args a, struct att_bwd_ws w, int G) {
    constexpr int KWARPS = 4 / KT, RG = 8 / KWARPS, GROWS = BK_ROWS / RG;
    extern __shared__ __align__(16) unsigned char smraw[];
    const int LD = D + 8, ttok = BK_ROWS / G;
    const bool need_o = w.dvec == NULL;
    bf16 *Ks = (bf16 *)smraw, *Vs = Ks + ATT_BLOCK * LD, *QG = Vs + ATT_BLOCK * LD;
    bf16 *Os = QG + 4 * BK_ROWS * LD;
    float *lses = (float *)(Os + (need_o ? BK_ROWS * LD : 0)), *dvs = lses + 2 * BK_ROWS;
    int32_t *lims = (int32_t *)(dvs + 2 * BK_ROWS), *ring = lims + 2 * BK_ROWS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
    const float sl2 = a.scale * LOG2E;

    /* This block's work item: key k' = j * Hkv + g and chunk c of the tokens attending to it. */
    int kp, c = 0;
    if (a.sel) {
        if ((int64_t)blockIdx.x >= w.item_off[a.Hkv * a.nblk]) return;
        int2 x = w.items[blockIdx.x];
        kp = x.x, c = x.y;
    } else {
        kp = blockIdx.x;
    }
    struct kv_item it;
    it.g = kp % a.Hkv;
    it.j = kp / a.Hkv;
    it.k0 = it.j * ATT_BLOCK;
    int64_t n;
    if (a.sel) {
        int64_t o = a.pair_off[it.g * a.nblk + it.j];
        n = a.pair_off[it.g * a.nblk + it.j + 1] - o;
        it.list = a.pair_rows + o;
        it.first = 0;
    } else {
        it.list = NULL;
        it.first = it.k0 > a.q_pos0 ? it.k0 - a.q_pos0 : 0;
        n = a.Tq - it.first;
    }
    if (n <= 0) return;
    const int64_t chunk = a.sel ? w.chunk : n;
    it.cb = (int64_t)c * chunk;
    it.ce = it.cb + chunk < n ? it.cb + chunk : n;
    const int ntiles = (int)((it.ce - it.cb + ttok - 1) / ttok);
    const int nslots = a.sel ? w.slot_off[kp + 1] - w.slot_off[kp] : 0;

    /* Prologue: K, V of the block and the token indices of tiles 0 and 1; then tile 0. */
    load_kv_block<D>(Ks, Vs, a, it.j, it.g, BK_THREADS);
    fill_ring(ring, it, 0, ttok);
    if (ntiles > 1) fill_ring(ring, it, 1, ttok);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
    issue_tile<D>(QG, Os, lses, dvs, lims, ring, a, w.dvec, it, 0, G);
    cp_async_commit();

    const int kw = (warp % KWARPS) * 16 * KT, rb = (warp / KWARPS) * GROWS;
    float dk[KT][D / 8][4], dv[KT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < KT; mt++)
#pragma unroll
        for (int dn = 0; dn < D / 8; dn++)
#pragma unroll
            for (int e = 0; e < 4; e++) dk[mt][dn][e] = dv[mt][dn][e] = 0.0f;

    for (int m = 0; m < ntiles; m++) {
        const int st = m & 1;
        const bf16 *Qt = QG + st * 2 * BK_ROWS * LD, *Gt = Qt + BK_ROWS * LD;
        const float *lse_t = lses + st * BK_ROWS, *dv_t = dvs + st * BK_ROWS;
        const int32_t *lim_t = lims + st * BK_ROWS;
        const int32_t *toks = ring + (m % 3) * BK_ROWS;
        cp_async_wait_all();
        __syncthreads(); /* tile m landed; everyone is done with tile m - 1 */
        if (need_o) {    /* D_i of tile m from dO and O, two threads a row */
            int r = threadIdx.x / 2, half = threadIdx.x % 2;
            float d = 0.0f;
#pragma unroll
            for (int cc = 0; cc < D / 2; cc += 8)
                d += dot8(*(const uint4 *)(Gt + r * LD + half * (D / 2) + cc),
                          *(const uint4 *)(Os + r * LD + half * (D / 2) + cc));
            d += __shfl_xor_sync(0xffffffffu, d, 1);
            if (half == 0) dvs[st * BK_ROWS + r] = d;
            __syncthreads(); /* D_i visible; the O tile free for the next one */
        }
        /* Only a tile whose first token is inside the block needs the causal mask (the tokens
         * are in ascending order). Padding rows past the chunk (token -1) need none: their Q, dO,
         * lse and D_i are zeros, so they add nothing to dK and dV. */
        const bool diag = a.q_pos0 + toks[0] < it.k0 + ATT_BLOCK - 1;
        if (m + 1 < ntiles) {
            if (m + 2 < ntiles) fill_ring(ring, it, m + 2, ttok);
            issue_tile<D>(QG, Os, lses, dvs, lims, ring, a, w.dvec, it, m + 1, G);
            cp_async_commit();
        }
        /* This warp: keys kw..kw+16KT-1 against rows rb..rb+GROWS-1 of the tile, 32 at a time
         * (not unrolled: registers go to the dK, dV accumulators). */
#pragma unroll 1
        for (int rh = rb; rh < rb + GROWS; rh += 32) {
            float s[KT][4][4], dp[KT][4][4];
#pragma unroll
            for (int mt = 0; mt < KT; mt++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[mt][nt][e] = dp[mt][nt][e] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < D / 16; ks++) {
                uint32_t ka[KT][4], va[KT][4];
#pragma unroll
                for (int mt = 0; mt < KT; mt++) {
                    const int aoff = (kw + mt * 16 + (lane & 15)) * LD + ks * 16 + (lane >> 4) * 8;
                    ldmatrix_x4(ka[mt], Ks + aoff);
                    ldmatrix_x4(va[mt], Vs + aoff);
                }
#pragma unroll
                for (int np = 0; np < 2; np++) {
                    const int boff = (rh + np * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD +
                                     ks * 16 + ((lane >> 3) & 1) * 8;
                    uint32_t qb[4], gb[4];
                    ldmatrix_x4(qb, Qt + boff);
                    ldmatrix_x4(gb, Gt + boff);
#pragma unroll
                    for (int mt = 0; mt < KT; mt++) {
                        mma_bf16(s[mt][2 * np], ka[mt], qb[0], qb[1]);
                        mma_bf16(s[mt][2 * np + 1], ka[mt], qb[2], qb[3]);
                        mma_bf16(dp[mt][2 * np], va[mt], gb[0], gb[1]);
                        mma_bf16(dp[mt][2 * np + 1], va[mt], gb[2], gb[3]);
                    }
                }
            }
            /* P^T and dS^T: element (key kw + 16 mt + g + 8 (e / 2), row rh + 8 nt + 2 t + e % 2);
             * lse -inf (a row that attends nothing): P = 0. The mask only in diagonal tiles. */
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                const int r = rh + nt * 8 + 2 * tq;
                const float2 lse2 = *(const float2 *)(lse_t + r), dd = *(const float2 *)(dv_t + r);
                const float nl[2] = {lse2.x == -INFINITY ? -INFINITY : -lse2.x * LOG2E,
                                     lse2.y == -INFINITY ? -INFINITY : -lse2.y * LOG2E};
                const float di[2] = {dd.x, dd.y};
                const int2 lm = diag ? *(const int2 *)(lim_t + r) : make_int2(0, 0);
                const int lim[2] = {lm.x, lm.y};
#pragma unroll
                for (int mt = 0; mt < KT; mt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float p = softmax_prob(s[mt][nt][e], sl2, nl[e & 1], true);
                        if (diag && kw + mt * 16 + gq + 8 * (e >> 1) > lim[e & 1]) p = 0.0f;
                        dp[mt][nt][e] = p * (dp[mt][nt][e] - di[e & 1]);
                        s[mt][nt][e] = p;
                    }
            }
            /* dV += P^T dO, dK += dS^T Q over these 32 rows (two k-steps of 16). */
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                uint32_t pa[KT][4], da[KT][4];
#pragma unroll
                for (int mt = 0; mt < KT; mt++) {
                    acc_to_a(pa[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
                    acc_to_a(da[mt], dp[mt][2 * kk], dp[mt][2 * kk + 1]);
                }
#pragma unroll
                for (int d2 = 0; d2 < D / 16; d2++) {
                    const int toff = (rh + kk * 16 + (lane & 15)) * LD + d2 * 16 + (lane >> 4) * 8;
                    uint32_t gb[4], qb[4];
                    ldmatrix_x4_trans(gb, Gt + toff);
                    ldmatrix_x4_trans(qb, Qt + toff);
#pragma unroll
                    for (int mt = 0; mt < KT; mt++) {
                        mma_bf16(dv[mt][2 * d2], pa[mt], gb[0], gb[1]);
                        mma_bf16(dv[mt][2 * d2 + 1], pa[mt], gb[2], gb[3]);
                        mma_bf16(dk[mt][2 * d2], da[mt], qb[0], qb[1]);
                        mma_bf16(dk[mt][2 * d2 + 1], da[mt], qb[2], qb[3]);
                    }
                }
            }
        }
    }

    /* Row groups 1 .. RG-1 hand their accumulators to group 0 (same keys), one group at a time,
     * through the Q/dO stages (KWARPS x KT x D x 8 floats <= 4 x 128 x LD bf16). */
    const int grp_r = warp / KWARPS;
    float *red = (float *)QG + (warp % KWARPS) * KT * (D / 8) * 8 * 32;
#pragma unroll 1
    for (int src = 1; src < RG; src++) {
        __syncthreads();
        if (grp_r == src) {
#pragma unroll
            for (int mt = 0; mt < KT; mt++)
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        red[((mt * (D / 8) + dn) * 8 + e) * 32 + lane] = dk[mt][dn][e];
                        red[((mt * (D / 8) + dn) * 8 + 4 + e) * 32 + lane] = dv[mt][dn][e];
                    }
        }
        __syncthreads();
        if (grp_r == 0) {
#pragma unroll
            for (int mt = 0; mt < KT; mt++)
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        dk[mt][dn][e] += red[((mt * (D / 8) + dn) * 8 + e) * 32 + lane];
                        dv[mt][dn][e] += red[((mt * (D / 8) + dn) * 8 + 4 + e) * 32 + lane];
                    }
        }
    }
    if (grp_r != 0) return;
    /* Out: unsplit keys straight into dk, dv; a chunk of a split key into its fp32 slot. */
    float *pk = nslots > 0
                    ? w.part + (size_t)(w.slot_off[kp] + c) * 2 * ATT_BLOCK * D
                    : NULL;
#pragma unroll
    for (int mt = 0; mt < KT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int key = kw + mt * 16 + gq + 8 * h;
            int64_t u = it.k0 + key;
            if (u >= a.Tk) continue;
            if (pk) {
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++) {
                    int d = dn * 8 + 2 * tq;
                    *(float2 *)(pk + key * D + d) =
                        make_float2(dk[mt][dn][2 * h], dk[mt][dn][2 * h + 1]);
                    *(float2 *)(pk + (ATT_BLOCK + key) * D + d) =
                        make_float2(dv[mt][dn][2 * h], dv[mt][dn][2 * h + 1]);
                }
            } else {
                int64_t off = u * a.kv_stride + (int64_t)it.g * D + 2 * tq;
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++) {
                    add_bf16x2(a.dk + off + dn * 8, a.scale * dk[mt][dn][2 * h],
                               a.scale * dk[mt][dn][2 * h + 1]);
                    add_bf16x2(a.dv + off + dn * 8, dv[mt][dn][2 * h], dv[mt][dn][2 * h + 1]);
                }
            }
        }
}

/* ---------------------------------------------------------------------------------------------- */
/* Sparse work list and the reduction of split keys                                                */

static __device__ __forceinline__ int64_t list_len(const struct att_args &a, int64_t kp) {
    int64_t g = kp % a.Hkv, j = kp / a.Hkv;
    return a.pair_off[g * a.nblk + j + 1] - a.pair_off[g * a.nblk + j];
}

/* One block: items per key k' = ceil(n / chunk), slots = items where items > 1; exclusive scans
 * in k' order, and the flat list of (k', chunk) items. Integer work: deterministic. */
static __global__ void att_bwd_worklist_kernel(struct att_args a, struct att_bwd_ws w) {
    __shared__ int32_t wsum_i[32], wsum_s[32];
    const int64_t nkeys = (int64_t)a.Hkv * a.nblk;
    const int nthreads = blockDim.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t per = (nkeys + nthreads - 1) / nthreads;
    const int64_t lo = threadIdx.x * per, hi = lo + per < nkeys ? lo + per : nkeys;
    int32_t ci = 0, cs = 0;
    for (int64_t kp = lo; kp < hi; kp++) {
        int32_t n_it = (int32_t)((list_len(a, kp) + w.chunk - 1) / w.chunk);
        ci += n_it;
        cs += n_it > 1 ? n_it : 0;
    }
    int32_t xi = ci, xs = cs;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        int32_t yi = __shfl_up_sync(0xffffffffu, xi, o), ys = __shfl_up_sync(0xffffffffu, xs, o);
        if (lane >= o) xi += yi, xs += ys;
    }
    if (lane == 31) wsum_i[warp] = xi, wsum_s[warp] = xs;
    __syncthreads();
    if (warp == 0) {
        int nw = nthreads / 32;
        int32_t vi = lane < nw ? wsum_i[lane] : 0, vs = lane < nw ? wsum_s[lane] : 0;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            int32_t yi = __shfl_up_sync(0xffffffffu, vi, o), ys = __shfl_up_sync(0xffffffffu, vs, o);
            if (lane >= o) vi += yi, vs += ys;
        }
        wsum_i[lane] = vi, wsum_s[lane] = vs;
    }
    __syncthreads();
    const int32_t total_i = wsum_i[nthreads / 32 - 1], total_s = wsum_s[nthreads / 32 - 1];
    if (total_i > w.max_items || total_s > w.max_slots) __trap(); /* sizes broke their bound */
    int32_t bi = (warp ? wsum_i[warp - 1] : 0) + xi - ci, bs = (warp ? wsum_s[warp - 1] : 0) + xs - cs;
    for (int64_t kp = lo; kp < hi; kp++) {
        int32_t n_it = (int32_t)((list_len(a, kp) + w.chunk - 1) / w.chunk);
        w.item_off[kp] = bi;
        w.slot_off[kp] = bs;
        for (int32_t cc = 0; cc < n_it; cc++) w.items[bi + cc] = make_int2((int)kp, cc);
        bi += n_it;
        bs += n_it > 1 ? n_it : 0;
    }
    if (threadIdx.x == 0) {
        w.item_off[nkeys] = total_i;
        w.slot_off[nkeys] = total_s;
    }
}

/* dk, dv of a split key += the sum of its chunks' partials, in chunk order. */
static __global__ void att_bwd_reduce_kernel(struct att_args a, struct att_bwd_ws w) {
    const int kp = blockIdx.x, D = a.D;
    const int32_t s0 = w.slot_off[kp], ns = w.slot_off[kp + 1] - s0;
    if (ns == 0) return;
    const int g = kp % a.Hkv;
    const int64_t j = kp / a.Hkv;
    for (int idx = threadIdx.x; idx < ATT_BLOCK * D / 2; idx += blockDim.x) {
        int key = 2 * idx / D, d = 2 * idx % D;
        int64_t u = j * ATT_BLOCK + key;
        if (u >= a.Tk) continue;
        float2 sk = make_float2(0.0f, 0.0f), sv = make_float2(0.0f, 0.0f);
        for (int cc = 0; cc < ns; cc++) {
            const float *p = w.part + (size_t)(s0 + cc) * 2 * ATT_BLOCK * D + (size_t)key * D + d;
            float2 x = *(const float2 *)p, y = *(const float2 *)(p + ATT_BLOCK * D);
            sk.x += x.x, sk.y += x.y, sv.x += y.x, sv.y += y.y;
        }
        int64_t off = u * a.kv_stride + (int64_t)g * D + d;
        add_bf16x2(a.dk + off, a.scale * sk.x, a.scale * sk.y);
        add_bf16x2(a.dv + off, sv.x, sv.y);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Launcher                                                                                        */

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

bool attention_tc_bwd_fits(const struct att_args *a, bool sparse, size_t smem_limit) {
    const int G = a->Hq / a->Hkv, dq_rows = 16 * BQ_WARPS(a->D, sparse);
    return dq_smem_bytes(a->D, dq_rows, dq_rows / G, a->nblk, sparse) <= smem_limit &&
           kv_smem_bytes(a->D, true) <= smem_limit;
}

template <int D, int NW>
static void launch_dq(const struct att_args *a, float *dvec, int G, int words, size_t smem,
                      cudaStream_t st) {
    CUDA_CHECK(cudaFuncSetAttribute(att_bwd_dq_kernel<D, NW>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)ceil_div(a->Tq, 16 * NW / G), (unsigned)a->Hkv);
    att_bwd_dq_kernel<D, NW><<<grid, 32 * NW, smem, st>>>(*a, dvec, G, words);
    CUDA_CHECK_LAST();
}

template <int D>
static void launch_dkdv(const struct att_args *a, const struct att_bwd_ws *w, int G,
                        int64_t nitems, size_t smem, cudaStream_t st) {
    constexpr int KT = D == 64 ? 2 : 1;
    CUDA_CHECK(cudaFuncSetAttribute(att_bwd_dkdv_kernel<D, KT>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    att_bwd_dkdv_kernel<D, KT><<<(unsigned)nitems, BK_THREADS, smem, st>>>(*a, *w, G);
    CUDA_CHECK_LAST();
}

void attention_tc_backward(const struct att_args *a, const struct att_bwd_ws *w,
                           const struct gpu_ctx *g) {
    const int G = a->Hq / a->Hkv;
    const bool sparse = a->sel != NULL;
    CHECKF(aligned16(a->q) && aligned16(a->k) && aligned16(a->v) && aligned16(a->out) &&
               aligned16(a->dout),
           "attention: q, k, v, out, dout must be 16-byte aligned for the tensor-core backward");
    CHECKF(!sparse || (w && a->pair_rows && a->pair_off),
           "sparse attention backward: the inverse index and its workspace are missing");
    const int words = sparse ? (int)ceil_div(a->nblk, 32) : 0; /* dense: no bitmaps */
    const int dq_rows = 16 * BQ_WARPS(a->D, sparse);
    size_t sq = dq_smem_bytes(a->D, dq_rows, dq_rows / G, a->nblk, sparse);
    struct att_bwd_ws none;
    memset(&none, 0, sizeof none);
    const struct att_bwd_ws *ws = sparse ? w : &none;
    size_t sk = kv_smem_bytes(a->D, ws->dvec == NULL);
    cudaStream_t st = stream_of(g);
    if (a->D == 64) launch_dq<64, BQ_WARPS(64, true)>(a, ws->dvec, G, words, sq, st);
    else if (sparse) launch_dq<128, BQ_WARPS(128, true)>(a, ws->dvec, G, words, sq, st);
    else launch_dq<128, BQ_WARPS(128, false)>(a, ws->dvec, G, words, sq, st);
    int64_t nkeys = (int64_t)a->Hkv * a->nblk, nitems = nkeys;
    if (sparse) {
        att_bwd_worklist_kernel<<<1, 1024, 0, st>>>(*a, *ws);
        CUDA_CHECK_LAST();
        /* a launch bound: at most one partial item per key plus one per `chunk` pairs */
        nitems = nkeys + ceil_div(a->Tq * a->Hkv * a->nsel, ws->chunk);
        if (nitems > ws->max_items) nitems = ws->max_items;
    }
    if (nitems > 0) {
        if (a->D == 64) launch_dkdv<64>(a, ws, G, nitems, sk, st);
        else launch_dkdv<128>(a, ws, G, nitems, sk, st);
    }
    if (sparse && nkeys > 0) {
        att_bwd_reduce_kernel<<<(unsigned)nkeys, 256, 0, st>>>(*a, *ws);
        CUDA_CHECK_LAST();
    }
}
