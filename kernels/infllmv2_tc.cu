/*
 * infllmv2_tc.cu: InfLLM-V2 stages 1-2 (../shared/INFLLMV2.md) on tensor cores: bf16
 * mma.sync.m16n8k16 with fp32 accumulation, scores, normalisation, head sum, max-pool and top-k
 * fused per tile of query tokens. Nothing O(T^2) exists anywhere: a thread block holds the pooled
 * block scores of its own tokens (tokens x nblk floats) in shared memory and writes only the
 * selection.
 *
 * Dimensions as infllmv2.h; G = Hq / Hkv, C1/C2 the fine/coarse compressed keys, per = B / stride
 * (4), back = (kernel_size - 1) / stride (1): block j pools the fine keys [j*per - back, j*per + per).
 *
 * Work split: a thread block takes one KV group and consecutive tokens (latest first), in NW = 4
 * or 8 warps of 32 query rows each. The product is computed transposed, S^T = K Q^T: compressed
 * keys are the M side (a 64-key tile = 4 m-tiles of 16, A fragments by ldmatrix from shared
 * memory), a warp's 32 query rows the N side (4 n-tiles, B fragments kept in registers for the
 * whole block). Any G <= 32: a warp's 32 rows (slots) are packed so that thread column tq of the
 * accumulators (lanes 4g + tq) holds slots 8 tq .. 8 tq + 7, and those hold whole tokens: for
 * G <= 8, tpt <= 8 / G tokens of G heads each and padding after them; for G > 8, tpq = 2 or 4
 * thread columns per token, 8 heads each. The sum over a token's G heads is then an in-thread
 * add (plus one or two shuffles for G > 8), and a padding slot only costs its share of the MMA.
 * The warps form NR row groups x NK key parts (template NK = 1, 2, 4): the NK warps of a row group
 * hold the same 32 rows and take 4 / NK of the m-tiles of every key tile, so that few tokens (the
 * block scores of each take nblk floats of shared memory: small G at long T) still keep 8 warps
 * busy. The launcher picks NW, NK and tpt from the device's shared memory and occupancy.
 * Tiles stream through two shared-memory buffers (cp.async, the next tile loads while this one is
 * computed): first the normaliser keys (C2 with lse_approx, else C1), giving each query row its
 * running max and sum in registers (merged over the NK key parts once), then C1:
 * p = exp2(s * log2e - (m + log2 l)) summed over the group's heads, staged per row group (64 keys
 * + a carry of the previous tile's last 8), max-pooled into
 * the block scores of the blocks whose pooling window ends in the tile. Top-k, per token by one
 * warp: keys mapped to order-preserving integers, a lower bound (every lane's m-th best) filters
 * the candidates, bisection on the key bits finds the nsel-th best, and ballots write the kept
 * blocks ascending (ties: lower block first, as the CPU reference).
 *
 * Numerics: the same definitions as infllmv2_cpu.c, with a different fp32 summation order (tensor
 * cores, exp2 of a fused argument), so scores differ from the CPU's by fp32 rounding. Equal inputs
 * still give bitwise equal scores (every key column sees the same instruction sequence), so exact
 * ties break exactly as on the CPU. Bitwise deterministic.
 */
#include "infllmv2_impl.cuh"
#include "mma.cuh"

#define SEL_TILE 64     /* compressed keys per tile */
#define TC_CARRY 8      /* staged keys of the previous tile: pooling windows reach back <= 8 */
#define TC_STAGE (TC_CARRY + SEL_TILE)
#define TC_CAP 512      /* top-k candidates a warp compacts; more falls back to the whole row */
#define TC_MAX_WARPS 8
#define SEL_MAX_G 32    /* one token's heads fill at most a warp's 32 rows */

struct seltc_args {
    int32_t *sel;             /* (Tq, Hkv, nsel) */
    const bf16 *q;            /* (Tq, Hq, D), q_stride apart */
    const bf16 *k1, *kn;      /* C1 (L1, Hkv, D) and the normaliser keys (Ln, Hkv, D) */
    int64_t L1, Ln, Tq, q_pos0, q_stride, KD;
    int nblk, nsel, Hkv;
    int ks, st, nks, nst, per, back, bs, init, local;
    float sl2;                /* scale * log2(e) */
    int G, tpt, tpq;          /* row packing: G <= 8: tpt tokens a thread column; else tpq columns
                                 a token */
    int nr;                   /* row groups: warps / NK */
};

/* Tokens of a warp's 32 rows. */
static __host__ __device__ __forceinline__ int sel_tokens_per_warp(int G, int tpt, int tpq) {
    return G <= 8 ? 4 * tpt : 4 / tpq;
}

/* Token (within the warp, -1 for padding) and head of a warp's query slot rho (0..31). A thread
 * column's 8 slots hold tpt tokens of 8 / tpt slots each (G <= 8: the first G are the heads, the
 * rest padding), or (G > 8) 8 heads of the token of tpq columns. */
static __device__ __forceinline__ int2 slot_row(int rho, int G, int tpt, int tpq) {
    const int c = rho / 8, x = rho % 8;
    if (G <= 8) {
        const int sz = 8 / tpt;
        return x % sz < G ? make_int2(c * tpt + x / sz, x % sz) : make_int2(-1, 0);
    }
    const int h = (c % tpq) * 8 + x;
    return h < G ? make_int2(c / tpq, h) : make_int2(-1, 0);
}

/* (m, l) of a running softmax (log2 units) merged with another (mo, lo). */
static __device__ __forceinline__ void merge_ml(float &m, float &l, float mo, float lo) {
    const float mx = fmaxf(m, mo);
    l = (m == -INFINITY ? 0.0f : l * fast_exp2(m - mx)) + (mo == -INFINITY ? 0.0f : lo * fast_exp2(mo - mx));
    m = mx;
}

/* The A fragment of a 16x16 tile stored row-major (rows `ld` elements apart). */
static __device__ __forceinline__ void ldmatrix_a_tile(uint32_t a[4], const bf16 *tile, int ld) {
    int lane = threadIdx.x % 32;
    ldmatrix_x4(a, tile + (lane % 16) * ld + (lane / 16) * 8);
}

/* Compressed keys (windows ks, stride st) visible to a token at t: c*st + ks - 1 <= t, at most L. */
static __device__ __forceinline__ int64_t visible(int64_t t, int ks, int st, int64_t L) {
    int64_t n = t + 1 >= ks ? (t + 1 - ks) / st + 1 : 0;
    return n < L ? n : L;
}

/* Shared memory: two key tiles (SEL_TILE x (D + 8) bf16), block scores (tokens x nblk floats,
 * reused as order keys by the top-k), per-row-group staging (tokens of a warp x TC_STAGE floats),
 * the NK > 1 normaliser hand-over (nw x 32 x 2 floats), per-warp top-k candidates (TC_CAP),
 * per-token visible key counts (normaliser keys, C1). */
static size_t seltc_smem_bytes(int D, int nw, int nk, int tpw, int64_t nblk) {
    const int nr = nw / nk, tokens = nr * tpw;
    return (size_t)2 * SEL_TILE * (D + 8) * sizeof(bf16) + (size_t)tokens * nblk * sizeof(float) +
           (size_t)nr * tpw * TC_STAGE * sizeof(float) +
           (nk > 1 ? (size_t)nw * 64 * sizeof(float) : 0) + (size_t)nw * TC_CAP * sizeof(uint32_t) +
           (size_t)2 * tokens * sizeof(int);
}

/* Integer whose unsigned order is the float order (-inf smallest, +inf largest; no NaN here). */
static __device__ __forceinline__ uint32_t order_key(float v) {
    uint32_t u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ int count_ge(const uint32_t *src, int len, uint32_t x) {
    int c = 0;
    for (int i = threadIdx.x % 32; i < len; i += 32) c += src[i] >= x;
    return (int)__reduce_add_sync(0xffffffffu, (unsigned)c);
}

/* Stage 2b for one token (one warp): the CPU's order (score desc, block asc) over the candidate
 * blocks 0..bt (blocks past bt score -inf and rank after them, so they are never kept), forced
 * blocks at +inf, NaN as -inf; the first nsel kept, written ascending into out, -1 after.
 * score (bt + 1 floats) is overwritten with order keys; buf holds TC_CAP keys. */
static __device__ void topk_row(int32_t *out, float *score, uint32_t *buf, int bt, int nsel,
                                int init, int local) {
    const unsigned FULL = 0xffffffffu;
    const int lane = threadIdx.x % 32;
    const unsigned lt = (1u << lane) - 1u;
    const int n = bt + 1;
    uint32_t *key = (uint32_t *)score;
    if (n <= nsel) {
        for (int x = lane; x < nsel; x += 32) out[x] = x < n ? x : -1;
        return;
    }
    /* Keys in place, and each lane's three best. */
    uint32_t k0 = 0, k1 = 0, k2 = 0;
    for (int j = lane; j < n; j += 32) {
        float v = score[j];
        if (j < init || j >= bt - local) v = INFINITY;
        if (v != v) v = -INFINITY;
        uint32_t x = order_key(v), hi;
        key[j] = x;
        hi = max(k0, x), x = min(k0, x), k0 = hi;
        hi = max(k1, x), x = min(k1, x), k1 = hi;
        k2 = max(k2, x);
    }
    /* Every lane has m keys >= its m-th best >= lo, so at least 32 m >= nsel keys are >= lo: the
     * nsel-th best is >= lo (lo = 0, no filter, when nsel > 96 or a lane has fewer than m keys). */
    int m = (nsel + 31) / 32;
    uint32_t lo = __reduce_min_sync(FULL, m == 1 ? k0 : m == 2 ? k1 : m == 3 ? k2 : 0u);
    int cnt = 0;
    for (int base = 0; base < n; base += 32) {
        int j = base + lane;
        uint32_t x = j < n ? key[j] : 0u;
        bool f = j < n && x >= lo;
        unsigned b = __ballot_sync(FULL, f);
        int pos = cnt + __popc(b & lt);
        if (f && pos < TC_CAP) buf[pos] = x;
        cnt += __popc(b);
    }
    __syncwarp();
    /* count_ge over the candidates is exact for x >= lo and >= nsel below it: bisection finds
     * the largest v with count(>= v) >= nsel, the nsel-th best key. */
    const uint32_t *src = cnt <= TC_CAP ? buf : key;
    int len = cnt <= TC_CAP ? cnt : n;
    uint32_t v = 0;
    for (int bit = 31; bit >= 0; bit--) {
        uint32_t cand = v | (1u << bit);
        if (count_ge(src, len, cand) >= nsel) v = cand;
    }
    int r = nsel - count_ge(src, len, v + 1u); /* keys equal to v kept, lowest blocks first */
    int pos = 0, eq = 0;
    for (int base = 0; base < n; base += 32) {
        int j = base + lane;
        uint32_t x = j < n ? key[j] : 0u;
        bool gt = j < n && x > v, is_eq = j < n && x == v;
        unsigned eb = __ballot_sync(FULL, is_eq);
        bool take = gt || (is_eq && eq + __popc(eb & lt) < r);
        eq += __popc(eb);
        unsigned tb = __ballot_sync(FULL, take);
        if (take) out[pos + __popc(tb & lt)] = j;
        pos += __popc(tb);
    }
    for (int x = pos + lane; x < nsel; x += 32) out[x] = -1;
    __syncwarp();
}

/* Issues the loads of tile q (normaliser tiles first, then C1) into one buffer. */
template <int D>
static __device__ __forceinline__ void load_tile(bf16 *dst, const struct seltc_args &a, int q,
                                                 int nt1, int grp) {
    const bool norm = q < nt1;
    const bf16 *src = norm ? a.kn : a.k1;
    const int64_t L = norm ? a.Ln : a.L1, c0 = (int64_t)(norm ? q : q - nt1) * SEL_TILE;
    for (int idx = threadIdx.x; idx < SEL_TILE * D / 8; idx += blockDim.x) {
        int r = idx / (D / 8), c8 = (idx % (D / 8)) * 8;
        bool ok = c0 + r < L;
        const bf16 *p = ok ? src + (c0 + r) * a.KD + (int64_t)grp * D + c8 : a.k1;
        cp_async16(dst + r * (D + 8) + c8, p, ok);
    }
    cp_async_commit();
}

/* The NK warps of a row group share its staging: a warp barrier for NK = 1, else the block's. */
template <int NK>
static __device__ __forceinline__ void group_sync(void) {
    if (NK == 1) __syncwarp();
    else __syncthreads();
}

/* Waits for tile q (issued one iteration earlier), issues tile q + 1 into the other buffer, and
 * returns tile q once the whole block sees it. */
template <int D>
static __device__ __forceinline__ const bf16 *next_tile(bf16 *kt, const struct seltc_args &a,
                                                        int q, int ntiles, int nt1, int grp) {
    if (q + 1 < ntiles) {
        load_tile<D>(kt + ((q + 1) & 1) * SEL_TILE * (D + 8), a, q + 1, nt1, grp);
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    __syncthreads();
    return kt + (q & 1) * SEL_TILE * (D + 8);
}

/* S^T of m-tiles mbase .. mbase + MI - 1 of key tile K against the warp's 32 query slots. */
template <int D, int MI>
static __device__ __forceinline__ void tile_scores(float acc[MI][4][4], const bf16 *K, int mbase,
                                                   const uint32_t qb[4][D / 16][2]) {
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) acc[mi][nt][0] = acc[mi][nt][1] = acc[mi][nt][2] = acc[mi][nt][3] = 0.0f;
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
        uint32_t af[MI][4];
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
            ldmatrix_a_tile(af[mi], K + (mbase + mi) * 16 * (D + 8) + k * 16, D + 8);
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int nt = 0; nt < 4; nt++) mma_bf16(acc[mi][nt], af[mi], qb[nt][k][0], qb[nt][k][1]);
    }
}

/* The normaliser (m, l) of this thread's 8 slots: merged over the 8 lanes holding the same slots,
 * then over the NK key parts of the row group in part order (through nrm), so that every warp of
 * the group gets the same bits. */
template <int NK>
static __device__ __forceinline__ void merge_normaliser(float m[4][2], float l[4][2], float *nrm,
                                                        int warp, int rg, int nr) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int x = 0; x < 8; x++)
#pragma unroll
        for (int off = 4; off < 32; off <<= 1)
            merge_ml(m[x / 2][x % 2], l[x / 2][x % 2], __shfl_xor_sync(0xffffffffu, m[x / 2][x % 2], off),
                     __shfl_xor_sync(0xffffffffu, l[x / 2][x % 2], off));
    if (NK == 1) return;
    const int tq = lane % 4;
    if (lane < 4)
#pragma unroll
        for (int x = 0; x < 8; x++) {
            nrm[(warp * 32 + 8 * tq + x) * 2] = m[x / 2][x % 2];
            nrm[(warp * 32 + 8 * tq + x) * 2 + 1] = l[x / 2][x % 2];
        }
    __syncthreads();
#pragma unroll
    for (int x = 0; x < 8; x++) {
        const float *src = nrm + ((size_t)rg * 32 + 8 * tq + x) * 2;
        float mm = src[0], ll = src[1];
        for (int kp = 1; kp < NK; kp++) merge_ml(mm, ll, src[kp * nr * 64], src[kp * nr * 64 + 1]);
        m[x / 2][x % 2] = mm, l[x / 2][x % 2] = ll;
    }
}

/* Stages N tokens' sums v[0 .. N-1] of one key: token tw0 + y at dst[(tw0 + y) TC_STAGE], -inf
 * where the key (c0k, from C1's start) is past the token's visible ones (nv1; all visible when
 * full). Selects, no branches: the caller's switch on the packing is the only one. */
template <int N>
static __device__ __forceinline__ void stage_tokens(float *dst, const float v[8], int tw0, bool full,
                                                    int c0k, const int *nv1) {
#pragma unroll
    for (int y = 0; y < N; y++) {
        const int nv = full ? 0x7fffffff : nv1[tw0 + y];
        dst[(tw0 + y) * TC_STAGE] = c0k < nv ? v[y] : -INFINITY;
    }
}

/* The sums over each token's heads of one key's 8 slot values v of this thread (padding slots
 * hold 0), as a tree: tpt tokens of 8 / tpt slots; G > 8: one token, then over its tpq columns
 * (shuffles), staged by the column that holds the whole (tw0: this thread's first token). */
static __device__ __forceinline__ void stage_key(float *dst, float v[8], int tpt, int tpq, int tw0,
                                                 bool full, int c0k, const int *nv1) {
    switch (tpt) {
    case 8:
        stage_tokens<8>(dst, v, tw0, full, c0k, nv1);
        return;
    case 4:
#pragma unroll
        for (int x = 0; x < 4; x++) v[x] = v[2 * x] + v[2 * x + 1];
        stage_tokens<4>(dst, v, tw0, full, c0k, nv1);
        return;
    case 2:
        v[0] = (v[0] + v[1]) + (v[2] + v[3]), v[1] = (v[4] + v[5]) + (v[6] + v[7]);
        stage_tokens<2>(dst, v, tw0, full, c0k, nv1);
        return;
    default:
        v[0] = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
        if (tpq > 1) v[0] += __shfl_xor_sync(0xffffffffu, v[0], 1);
        if (tpq > 2) v[0] += __shfl_xor_sync(0xffffffffu, v[0], 2);
        if ((threadIdx.x & (tpq - 1)) == 0) stage_tokens<1>(dst, v, tw0, full, c0k, nv1); /* tpq 1, 2, 4 */
    }
}

/* Stage 2a for the blocks whose pooling window [j*per - back, j*per + per) ends in C1's tile at c0:
 * the max of the staged keys into the row group's block scores (bsc: tpw tokens x nblk), then the
 * tile's last TC_CARRY keys carried to the front for the next tile. The group's NK warps share it.
 * per divides SEL_TILE (64), so it and nbt are powers of two: shifts, not divisions. */
template <int NK>
static __device__ __forceinline__ void pool_tile(float *bsc, float *stage,
                                                 const struct seltc_args &a, int c0, int tpw,
                                                 int kpart) {
    const int nbt = SEL_TILE / a.per, lg_nbt = __ffs(nbt) - 1, lane = threadIdx.x % 32;
    const int jbase = c0 >> (__ffs(a.per) - 1);
    for (int idx = kpart * 32 + lane; idx < tpw * nbt; idx += NK * 32) {
        const int tw = idx >> lg_nbt, jj = idx & (nbt - 1), j = jbase + jj;
        if (j >= a.nblk) continue;
        const float *sr = stage + tw * TC_STAGE + TC_CARRY;
        float val = -INFINITY;
        for (int c = jj * a.per - a.back; c < jj * a.per + a.per; c++) val = fmaxf(val, sr[c]);
        bsc[(size_t)tw * a.nblk + j] = val;
    }
    group_sync<NK>();
    for (int idx = kpart * 32 + lane; idx < tpw * TC_CARRY; idx += NK * 32) {
        float *sr = stage + (idx / TC_CARRY) * TC_STAGE;
        sr[idx % TC_CARRY] = sr[SEL_TILE + idx % TC_CARRY];
    }
    group_sync<NK>();
}

template <int D, int NK>
static __global__ void __launch_bounds__(TC_MAX_WARPS * 32) __maxnreg__(D == 64 ? 128 : 168)
    select_tc_kernel(struct seltc_args a) {
    extern __shared__ __align__(16) unsigned char smraw[];
    /* A warp takes MPW = 4 / NK m-tiles of each key tile, MI at a time (MP passes). */
    constexpr int LD = D + 8, KS = D / 16, MPW = 4 / NK, MI = MPW >= 2 ? 2 : 1, MP = MPW / MI;
    const int G = a.G, nw = blockDim.x / 32, tpw = sel_tokens_per_warp(G, a.tpt, a.tpq);
    const int tokens = a.nr * tpw;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
    const int rg = NK == 1 ? warp : warp % a.nr, kpart = NK == 1 ? 0 : warp / a.nr;
    const int tok0 = rg * tpw; /* the row group's first token */
    const int grp = blockIdx.y;
    bf16 *kt = (bf16 *)smraw;
    float *bsc = (float *)(kt + 2 * SEL_TILE * LD);
    float *stage = bsc + (size_t)tokens * a.nblk + (size_t)rg * tpw * TC_STAGE;
    float *nrm = bsc + (size_t)tokens * a.nblk + (size_t)a.nr * tpw * TC_STAGE;
    uint32_t *cand = (uint32_t *)(nrm + (NK > 1 ? nw * 64 : 0));
    int *nvn = (int *)(cand + nw * TC_CAP), *nv1 = nvn + tokens;

    /* Heaviest (latest) tokens first, so the short causal blocks fill the tail. */
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * tokens;
    const int64_t i_last = (i0 + tokens < a.Tq ? i0 + tokens : a.Tq) - 1;
    const int64_t t_first = a.q_pos0 + i0, t_last = a.q_pos0 + i_last;
    const int bt_last = (int)(t_last / a.bs);

    /* B fragments of the row group's 32 query slots: lane (g, t) loads column g of n-tile nt,
     * slot 8 (g / 2) + 2 nt + g % 2 (zeros for padding and tokens past Tq). */
    uint32_t qb[4][KS][2];
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        const int2 th = slot_row(8 * (gq >> 1) + 2 * nt + (gq & 1), G, a.tpt, a.tpq);
        const int64_t i = i0 + tok0 + th.x;
        const bool ok = th.x >= 0 && i < a.Tq;
        const bf16 *qr = a.q + (ok ? i * a.q_stride + (int64_t)(grp * G + th.y) * D + 2 * tq : 0);
#pragma unroll
        for (int k = 0; k < KS; k++) {
            qb[nt][k][0] = ok ? *(const uint32_t *)(qr + k * 16) : 0u;
            qb[nt][k][1] = ok ? *(const uint32_t *)(qr + k * 16 + 8) : 0u;
        }
    }
    /* This thread's accumulator slots 8 tq + x (x = 2 nt + column) that are padding. */
    unsigned pad = 0;
#pragma unroll
    for (int x = 0; x < 8; x++)
        if (slot_row(8 * tq + x, G, a.tpt, a.tpq).x < 0) pad |= 1u << x;
    const int nb_used = bt_last + 1 < a.nblk ? bt_last + 1 : a.nblk;
    for (int idx = threadIdx.x; idx < tokens * nb_used; idx += blockDim.x)
        bsc[(idx / nb_used) * a.nblk + idx % nb_used] = -INFINITY;
    for (int idx = kpart * 32 + lane; idx < tpw * TC_CARRY; idx += NK * 32)
        stage[(idx / TC_CARRY) * TC_STAGE + idx % TC_CARRY] = -INFINITY;
    for (int tk = threadIdx.x; tk < tokens; tk += blockDim.x) {
        int64_t t = a.q_pos0 + i0 + tk;
        t = t < t_last ? t : t_last; /* tokens past Tq: computed like the last, never written */
        nvn[tk] = (int)visible(t, a.nks, a.nst, a.Ln);
        nv1[tk] = (int)visible(t, a.ks, a.st, a.L1);
    }

    /* Tiles: the normaliser's, then C1's up to the last block with a visible window. */
    const int nt1 = (int)((visible(t_last, a.nks, a.nst, a.Ln) + SEL_TILE - 1) / SEL_TILE);
    const int64_t n1 = visible(t_last, a.ks, a.st, a.L1);
    int nt2 = 0;
    if (n1 > 0) {
        int64_t jmax = (n1 - 1 + a.back) / a.per;
        if (jmax > bt_last) jmax = bt_last;
        if (jmax > a.nblk - 1) jmax = a.nblk - 1;
        nt2 = (int)((jmax * a.per + a.per - 1) / SEL_TILE) + 1;
    }
    const int ntiles = nt1 + nt2;
    const int nvn_first = (int)visible(t_first, a.nks, a.nst, a.Ln);
    const int nv1_first = (int)visible(t_first, a.ks, a.st, a.L1);

    /* Normaliser of this thread's slots 2 nt + e (log2 units) over the normaliser tiles, then the
     * bias of C1's tiles. Two loops, so that neither phase holds the other's registers. */
    float nb[4][2];
    {
        float m[4][2], l[4][2];
#pragma unroll
        for (int x = 0; x < 8; x++) m[x / 2][x % 2] = -INFINITY, l[x / 2][x % 2] = 0.0f;
        if (ntiles > 0) load_tile<D>(kt, a, 0, nt1, grp);
        for (int q = 0; q < nt1; q++) {
            const bf16 *K = next_tile<D>(kt, a, q, ntiles, nt1, grp);
            const int c0 = q * SEL_TILE;
            const bool full = c0 + SEL_TILE <= nvn_first;
#pragma unroll
            for (int mp = 0; mp < MP; mp++) {
                const int mbase = kpart * MPW + mp * MI; /* first m-tile of this pass */
                float acc[MI][4][4];
                tile_scores<D, MI>(acc, K, mbase, qb);
                /* acc[mi][nt][e]: key c0 + 16 (mbase + mi) + g (+8 for e >= 2), slot
                 * 8 tq + 2 nt + (e & 1) of the row group. */
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float s[2 * MI];
#pragma unroll
                        for (int x = 0; x < 2 * MI; x++) s[x] = acc[x / 2][nt][e + 2 * (x % 2)] * a.sl2;
                        if (!full) {
                            const int tw = slot_row(8 * tq + 2 * nt + e, G, a.tpt, a.tpq).x;
                            const int nv = nvn[tok0 + (tw < 0 ? 0 : tw)];
#pragma unroll
                            for (int x = 0; x < 2 * MI; x++)
                                if (c0 + mbase * 16 + gq + x * 8 >= nv) s[x] = -INFINITY;
                        }
                        float mx = s[0];
#pragma unroll
                        for (int x = 1; x < 2 * MI; x++) mx = fmaxf(mx, s[x]);
                        if (mx > m[nt][e]) {
                            l[nt][e] *= fast_exp2(m[nt][e] - mx);
                            m[nt][e] = mx;
                        }
                        if (m[nt][e] != -INFINITY) {
                            float sum = 0.0f;
#pragma unroll
                            for (int x = 0; x < 2 * MI; x++) sum += fast_exp2(s[x] - m[nt][e]);
                            l[nt][e] += sum;
                        }
                    }
            }
            __syncthreads(); /* the buffer is free for the tile after next */
        }
        merge_normaliser<NK>(m, l, nrm, warp, rg, a.nr);
        /* l = 0 (nothing visible, t < 127 with lse_approx): every p is 0, never NaN */
#pragma unroll
        for (int x = 0; x < 8; x++)
            nb[x / 2][x % 2] = l[x / 2][x % 2] > 0.0f && !((pad >> x) & 1u)
                                   ? -(m[x / 2][x % 2] + log2f(l[x / 2][x % 2]))
                                   : -INFINITY;
    }
    /* This thread's first token (within the row group) in C1's staging. */
    const int tw0 = G <= 8 ? tq * a.tpt : tq >> (a.tpq >> 1);
    for (int q = nt1; q < ntiles; q++) {
        const bf16 *K = next_tile<D>(kt, a, q, ntiles, nt1, grp);
        const int c0 = (q - nt1) * SEL_TILE; /* C1 has < 2^26 keys (nblk <= 2^24) */
        const bool full = c0 + SEL_TILE <= nv1_first;
#pragma unroll
        for (int mp = 0; mp < MP; mp++) {
            const int mbase = kpart * MPW + mp * MI;
            float acc[MI][4][4];
            tile_scores<D, MI>(acc, K, mbase, qb);
            /* p = exp(scale q.k - m) / l, in place. */
#pragma unroll
            for (int mi = 0; mi < MI; mi++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        acc[mi][nt][e] = fast_exp2(fmaf(acc[mi][nt][e], a.sl2, nb[nt][e & 1]));
            /* Sum over each token's heads, mask keys the token cannot see, stage. */
#pragma unroll
            for (int mi = 0; mi < MI; mi++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int kk = mbase * 16 + gq + mi * 16 + h * 8;
                    float v[8];
#pragma unroll
                    for (int x = 0; x < 8; x++) v[x] = acc[mi][x / 2][(x % 2) + 2 * h];
                    stage_key(stage + TC_CARRY + kk, v, a.tpt, a.tpq, tw0, full, c0 + kk,
                              nv1 + tok0);
                }
        }
        group_sync<NK>();
        pool_tile<NK>(bsc + (size_t)tok0 * a.nblk, stage, a, c0, tpw, kpart);
        __syncthreads(); /* the buffer is free for the tile after next */
    }
    __syncthreads();
    for (int tk = warp; tk < tokens; tk += nw) {
        int64_t i = i0 + tk;
        if (i >= a.Tq) break;
        int bt = (int)((a.q_pos0 + i) / a.bs);
        topk_row(a.sel + (i * a.Hkv + grp) * a.nsel, bsc + (size_t)tk * a.nblk,
                 cand + warp * TC_CAP, bt, a.nsel, a.init, a.local);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Launcher                                                                                        */

typedef void (*seltc_kernel)(struct seltc_args);

/* A launch shape: warps, key parts, row packing. */
struct seltc_config {
    seltc_kernel fn;
    int nw, nk, tpt, tpq;
    size_t smem;
};

static seltc_kernel pick_kernel(int D, int nk) {
    switch (D * 8 + nk) {
    case 64 * 8 + 1: return select_tc_kernel<64, 1>;
    case 64 * 8 + 2: return select_tc_kernel<64, 2>;
    case 64 * 8 + 4: return select_tc_kernel<64, 4>;
    case 128 * 8 + 1: return select_tc_kernel<128, 1>;
    case 128 * 8 + 2: return select_tc_kernel<128, 2>;
    case 128 * 8 + 4: return select_tc_kernel<128, 4>;
    default: return NULL;
    }
}

/* Shapes the kernel takes: D 64 or 128, G <= 32, block_size / kernel_stride dividing 64,
 * (kernel_size - 1) / kernel_stride <= TC_CARRY, at most 2^24 blocks. */
static bool seltc_shape_ok(const struct attn_shape *s, const struct infllm_params *p) {
    if ((s->D != 64 && s->D != 128) || s->Hkv <= 0 || s->Hq % s->Hkv != 0) return false;
    if (s->Hq / s->Hkv > SEL_MAX_G || s->q_stride % 2 != 0) return false;
    const int st = p->kernel_stride, bs = p->block_size;
    if (st <= 0 || bs % st != 0 || SEL_TILE % (bs / st) != 0 || (p->kernel_size - 1) / st > TC_CARRY)
        return false;
    return ceil_div(s->Tk, bs) <= (1 << 24);
}

/* Resident warps a multiprocessor holds of config c (registers and shared memory). */
static int seltc_resident_warps(const struct seltc_config *c) {
    int blocks = 0;
    CUDA_CHECK(cudaFuncSetAttribute(c->fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)c->smem));
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, c->fn, c->nw * 32, c->smem));
    return blocks * c->nw;
}

/* The launch shape for D, G and nblk, or false when none fits the shared memory. First the plain
 * one (NK 1, full packing) with NW 8 or 4, whichever keeps more warps resident (8 on a tie: each
 * block reads every key tile once for all its rows), as measured for G 8 and 16. When it fits with
 * fewer than 8 resident warps (small G or long T: the block scores of 8 warps' tokens do not fit),
 * the one among all (NW 8, 4; NK 1, 2, 4; tpt from 8 / G down to 1) with the most resident warps
 * up to 8, then the most real rows a block (a key tile serves them all), then the fewest key parts.
 * With occupancy = false only the fit is checked. */
static bool seltc_choose(struct seltc_config *best, int D, int G, int64_t nblk, bool occupancy) {
    const size_t limit = smem_optin_bytes();
    const int tpq = G <= 8 ? 1 : G <= 16 ? 2 : 4, tpt_max = G <= 8 ? 8 / G : 1;
    int best_warps = -1;
    for (int nw = TC_MAX_WARPS; nw >= 4; nw /= 2) {
        const int tpw = sel_tokens_per_warp(G, tpt_max, tpq);
        struct seltc_config c = {pick_kernel(D, 1), nw, 1, tpt_max, tpq,
                                 seltc_smem_bytes(D, nw, 1, tpw, nblk)};
        if (c.smem > limit) continue;
        if (!occupancy) {
            *best = c;
            return true;
        }
        int w = seltc_resident_warps(&c);
        if (w > best_warps) best_warps = w, *best = c;
    }
    if (best_warps >= 8) return true;
    double best_score = -1;
    for (int tpt = tpt_max; tpt >= 1; tpt /= 2)
        for (int nk = 1; nk <= 4; nk *= 2)
            for (int nw = TC_MAX_WARPS; nw >= 4; nw /= 2) {
                const int tpw = sel_tokens_per_warp(G, tpt, tpq);
                struct seltc_config c = {pick_kernel(D, nk), nw, nk, tpt, tpq,
                                         seltc_smem_bytes(D, nw, nk, tpw, nblk)};
                if (c.smem > limit) continue;
                if (!occupancy) {
                    *best = c;
                    return true;
                }
                const int w = seltc_resident_warps(&c);
                const double score = (w < 8 ? w : 8) * 1e6 + (double)(nw / nk) * tpw * G;
                if (score > best_score) best_score = score, *best = c;
            }
    return best_score >= 0 || best_warps >= 0;
}

extern "C" bool infllm_select_tc_supported(const struct attn_shape *s,
                                           const struct infllm_params *p) {
    struct seltc_config c;
    return seltc_shape_ok(s, p) &&
           seltc_choose(&c, s->D, s->Hq / s->Hkv, ceil_div(s->Tk, p->block_size), false);
}

void infllm_select_tc(int32_t *sel, const bf16 *q, const bf16 *k1, int64_t L1, const bf16 *k2,
                      int64_t L2, const struct attn_shape *s, const struct infllm_params *p,
                      const struct gpu_ctx *g) {
    const int G = s->Hq / s->Hkv, D = s->D;
    const int64_t nblk = ceil_div(s->Tk, p->block_size);
    CHECKF(((uintptr_t)q & 3) == 0 && ((uintptr_t)k1 & 15) == 0 && ((uintptr_t)k2 & 15) == 0,
           "selection: q must be 4-byte and the compressed keys 16-byte aligned");
    struct seltc_config c;
    CHECKF(seltc_choose(&c, D, G, nblk, true), "selection: no launch shape for G %d, %lld blocks", G,
           (long long)nblk);
    struct seltc_args a;
    a.sel = sel, a.q = q, a.k1 = k1;
    a.kn = p->lse_approx ? k2 : k1;
    a.L1 = L1, a.Ln = p->lse_approx ? L2 : L1;
    a.Tq = s->Tq, a.q_pos0 = s->q_pos0, a.q_stride = s->q_stride, a.KD = (int64_t)s->Hkv * D;
    a.nblk = (int)nblk, a.nsel = infllm_num_selected(p), a.Hkv = s->Hkv;
    a.ks = p->kernel_size, a.st = p->kernel_stride;
    a.nks = p->lse_approx ? 4 * p->kernel_size : p->kernel_size;
    a.nst = p->lse_approx ? 4 * p->kernel_stride : p->kernel_stride;
    a.per = p->block_size / p->kernel_stride, a.back = (p->kernel_size - 1) / p->kernel_stride;
    a.bs = p->block_size;
    a.init = p->init_blocks, a.local = p->local_blocks;
    a.sl2 = s->scale * LOG2E;
    a.G = G, a.tpt = c.tpt, a.tpq = c.tpq, a.nr = c.nw / c.nk;
    const int tokens = a.nr * sel_tokens_per_warp(G, c.tpt, c.tpq);
    CUDA_CHECK(cudaFuncSetAttribute(c.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)c.smem));
    dim3 grid((unsigned)ceil_div(s->Tq, tokens), (unsigned)s->Hkv);
    c.fn<<<grid, c.nw * 32, c.smem, stream_of(g)>>>(a);
    CUDA_CHECK_LAST();
}
