/*
 * attention_wgmma_bwd.cu: dense causal GQA attention backward on Hopper (sm_90a), wgmma + TMA,
 * warp-specialised like the forward (attention_wgmma.cu): warpgroup 0 produces (one thread issues
 * the TMA copies into mbarrier-guarded stages), warpgroups 1 and 2 compute. flash-attention 2
 * algebra with P recomputed from q, k and the saved fp32 lse: P = exp(scale S - lse),
 * dP = dO V^T, dS = P (dP - D_i), D_i = dO_i . O_i; dV = P^T dO, dK = scale dS^T Q,
 * dQ = scale dS K.
 *
 * Dimensions as attention.h: Tq query rows at global positions q_pos0 + i, Tk keys, Hq / Hkv heads,
 * G = Hq / Hkv (any positive integer), D 64 or 128. Gradient rule: ADDS into dq, dk, dv (bf16),
 * once per element, after fp32 accumulation.
 *
 * Deterministic by construction, with no workspace and no atomics: two kernels, each output
 * element reduced by one thread in a fixed order.
 *  - dQ kernel: a block per (128 query rows, query head), the forward's tiling. It walks the key
 *    tiles of DQ_KEYS = 64 its rows see (K and V through the stages); per tile and warpgroup
 *    (64 rows): S = Q K^T and dP = dO V^T (both operands in shared memory), dS in registers, then
 *    dQ += dS K with dS as the register A operand and K as the transposed (MN-major) B operand;
 *    dQ of one tile is issued with S and dP of the next and runs while the next dS is formed.
 *    D_i and lse of its rows are computed once at the start (O and dO read from global memory).
 *  - dK/dV kernel: a block per (key block, KV head), blocks of the most work (key block 0) first.
 *    K and V stay in shared memory; the block walks work items (64 query rows, one of the G heads
 *    of the group) from the first rows that see its keys; Q and dO of each item come through the
 *    stages. Per item and warpgroup (64 keys): S^T = K Q^T and dP^T = V dO^T, while they run lse
 *    and D_i of the item's rows (D_i from O in global memory and dO in the stage), P^T in
 *    registers, then dV += P^T dO (P^T as the register A operand, dO as MN-major B) runs while
 *    dS^T is formed, then dK += dS^T Q. Wide blocks (128 keys) give each warpgroup 64 keys of
 *    every item; narrow blocks (64 keys), for grids too small to balance, give the warpgroups
 *    alternate items and add warpgroup 1's dK, dV into warpgroup 0's through shared memory.
 * The price of determinism without a dQ accumulator: S and dP are computed twice (once per kernel),
 * 7 products where an atomic dQ would need 5.
 */
#include "attention_wgmma.h"
#include "mma.cuh"

#ifdef INFLLM_WGMMA
#include "hopper.cuh"

#define BW_THREADS 384 /* warpgroup 0 produces, 1 and 2 consume */
#define DQ_ROWS 128    /* dQ kernel: query rows of a block */
#define DQ_KEYS 64     /* dQ kernel: keys of a K/V tile */
#define DQ_STAGES 2    /* dQ kernel: K/V stages */
#define KV_ROWS 64     /* dK/dV kernel: query rows of a work item */
#define BW_PRODUCER_REGS 24
#define BW_CONSUMER_REGS 240
#define LOG2E 1.4426950408889634f

struct wg_bwd_params {
    const bf16 *out, *dout; /* (Tq, Hq, D), q_stride elements between rows */
    const float *lse;       /* (Tq, Hq) */
    bf16 *dq;               /* (Tq, Hq, D) */
    bf16 *dk, *dv;          /* (Tk, Hkv, D), kv_stride elements between rows */
    int64_t Tq, q_pos0, Tk, q_stride, kv_stride;
    int Hq, G;
    float scale;
};

/* Shared memory of both kernels: two resident tiles of `rows` x D (dQ: Q and dO; dK/dV: K and V),
 * `stages` stages of two tiles of `srows` x D (dQ: K and V; dK/dV: Q and dO), then 512 floats of
 * row statistics and the mbarriers (resident; full and empty per stage). */
static size_t bw_smem_bytes(int rows, int srows, int stages, int D) {
    return 1024 + (size_t)(2 * rows + 2 * stages * srows) * D * 2 + 4 * 512 + 8 * (1 + 2 * stages);
}

#define BAR_FULL(b, s) ((b) + 8 * (1 + (s)))
#define BAR_EMPTY(b, s, stages) ((b) + 8 * (1 + (stages) + (s)))

/* The resident barrier, and full / empty of each stage; `release` arrivals empty a stage (one per
 * consumer warp that reads it). */
static __device__ __forceinline__ void bw_init_barriers(uint32_t bars, int stages, int release) {
    if (threadIdx.x == 0) {
        mbar_init(bars, 1);
        for (int s = 0; s < stages; s++) {
            mbar_init(BAR_FULL(bars, s), 1);
            mbar_init(BAR_EMPTY(bars, s, stages), release);
        }
        mbar_init_fence();
    }
    __syncthreads();
}

/* Both tiles of `rows` rows starting at row r0, columns col0 .. col0 + D - 1 of two tensor maps,
 * into t0 and t1 (each D / 64 column blocks of rows x 128 bytes), completing on bar. */
template <int D>
static __device__ __forceinline__ void load_pair(uint32_t t0, uint32_t t1, const CUtensorMap *m0,
                                                 const CUtensorMap *m1, int col0, int r0, int rows,
                                                 uint32_t bar) {
    mbar_expect_tx(bar, 2 * rows * D * 2);
#pragma unroll
    for (int c = 0; c < D / 64; c++) {
        tma_load_2d(t0 + c * rows * 128, m0, col0 + c * 64, r0, bar);
        tma_load_2d(t1 + c * rows * 128, m1, col0 + c * 64, r0, bar);
    }
}

/* C (64 x N) = A (64 x D, rows of a K-major tile at a) B^T (B: N x D, K-major tile at b); tiles of
 * arows and brows rows per column block. Not committed. */
template <int D>
static __device__ __forceinline__ void gemm_ss_n64(float (&c)[32], uint32_t a, int arows, uint32_t b,
                                                   int brows) {
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
        const uint32_t off = (ks % 4) * 32;
        wgmma_ss_n64(c, wg_desc(a + (ks / 4) * arows * 128 + off, 16, 1024),
                     wg_desc(b + (ks / 4) * brows * 128 + off, 16, 1024), ks > 0);
    }
}

/* C (64 x D) += A (64 x 64, register fragments) B (64 x D, the MN-major tile at b, brows rows per
 * column block). Not committed. */
template <int D>
static __device__ __forceinline__ void gemm_rs_k64(float (&c)[D / 2], const uint32_t (&a)[4][4],
                                                   uint32_t b, int brows) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) wgmma_rs<D>(c, a[kk], wg_desc(b + kk * 16 * 128, brows * 128, 1024), 1);
}

/* lse of a row in log2 units; +inf for a row past Tq or one that attends nothing, so P = 0. */
static __device__ __forceinline__ float lse_log2(const struct wg_bwd_params &p, int64_t r, int h) {
    const float v = r < p.Tq ? p.lse[r * p.Hq + h] : -INFINITY;
    return v == -INFINITY ? INFINITY : v * LOG2E;
}

/* acc (64 x D accumulator of this warpgroup, rows base + 16 warp + g (+ 8)) times mul, added into
 * the bf16 rows of dst (row stride `stride`, column offset col0) below `nrows`. */
template <int D>
static __device__ __forceinline__ void add_rows(bf16 *dst, const float (&acc)[D / 2], float mul,
                                                int64_t base, int64_t nrows, int64_t stride,
                                                int64_t col0) {
    const int lt = threadIdx.x % 128, lane = lt % 32;
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int64_t r = base + (lt / 32) * 16 + lane / 4 + 8 * hh;
        if (r >= nrows) continue;
        bf16 *row = dst + r * stride + col0 + 2 * (lane % 4);
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            add_bf16x2(row + 8 * j, mul * acc[4 * j + 2 * hh], mul * acc[4 * j + 2 * hh + 1]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* dQ                                                                                              */

/* S = Q K^T and dP = dO V^T of key tile `it` for this warpgroup's 64 rows, one commit group. */
template <int D>
static __device__ __forceinline__ void dq_issue_sdp(float (&s)[32], float (&dp)[32], uint32_t qa,
                                                    uint32_t doa, uint32_t skv, uint32_t bars,
                                                    int it) {
    constexpr uint32_t TILE = DQ_KEYS * D * 2;
    const int st = it % DQ_STAGES;
    mbar_wait(BAR_FULL(bars, st), (it / DQ_STAGES) & 1);
    wgmma_fence();
    gemm_ss_n64<D>(s, qa, DQ_ROWS, skv + st * 2 * TILE, DQ_KEYS);
    gemm_ss_n64<D>(dp, doa, DQ_ROWS, skv + st * 2 * TILE + TILE, DQ_KEYS);
    wgmma_commit();
}

/* The rows' fixed quantities in the dQ loop. */
struct dq_rows {
    float lse2[2], di[2];
    int64_t pos0, pos_wg; /* position of this thread's first row, of the warpgroup's first row */
    float sl2;
    int tq;
};

/* dS = P (dP - D_i) of key tile it in place of S (fp32), P masked to the causal keys. */
static __device__ __forceinline__ void dq_form_ds(float (&s)[32], const float (&dp)[32],
                                                  const struct dq_rows &rw, int it) {
    const int64_t j0 = (int64_t)it * DQ_KEYS;
    const bool mask = j0 + DQ_KEYS - 1 > rw.pos_wg;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int hh = e >> 1;
            float pr = fast_exp2(fmaf(s[4 * j + e], rw.sl2, -rw.lse2[hh]));
            if (mask && j0 + 8 * j + 2 * rw.tq + (e & 1) > rw.pos0 + 8 * hh) pr = 0.0f;
            s[4 * j + e] = pr * (dp[4 * j + e] - rw.di[hh]);
        }
}

template <int D>
static __device__ __forceinline__ void dq_consume(const struct wg_bwd_params &p, uint32_t sq,
                                                  uint32_t sdo, uint32_t skv, float *stats,
                                                  uint32_t bars, int h, int64_t i0, int ntiles) {
    const int cw = threadIdx.x / 128 - 1, lt = threadIdx.x % 128, lane = lt % 32;
    float *lse2s = stats + cw * 64, *dis = stats + 128 + cw * 64;
    { /* lse and D_i of this warpgroup's 64 rows, two threads a row */
        const int row = lt / 2, half = lt % 2;
        const int64_t r = i0 + cw * 64 + row;
        float d = 0.0f;
        if (r < p.Tq) {
            const int64_t off = r * p.q_stride + (int64_t)h * D + half * (D / 2);
#pragma unroll
            for (int c = 0; c < D / 2; c += 8)
                d += dot8(*(const uint4 *)(p.out + off + c), *(const uint4 *)(p.dout + off + c));
        }
        d += __shfl_xor_sync(0xffffffffu, d, 1);
        if (half == 0) dis[row] = d, lse2s[row] = lse_log2(p, r, h);
        named_bar_sync(2 + cw, 128);
    }
    const int rr = (lt / 32) * 16 + lane / 4; /* this thread's rows: rr, rr + 8 of the warpgroup */
    const struct dq_rows rw = {{lse2s[rr], lse2s[rr + 8]}, {dis[rr], dis[rr + 8]},
                               p.q_pos0 + i0 + cw * 64 + rr, p.q_pos0 + i0 + cw * 64,
                               p.scale * LOG2E, lane % 4};
    const uint32_t qa = sq + cw * 64 * 128, doa = sdo + cw * 64 * 128;
    constexpr uint32_t TILE = DQ_KEYS * D * 2;
    float acc[D / 2], s[32], dp[32];
    uint32_t f[4][4];
#pragma unroll
    for (int i = 0; i < D / 2; i++) acc[i] = 0.0f;
    mbar_wait(bars, 0);
    dq_issue_sdp<D>(s, dp, qa, doa, skv, bars, 0);
    wgmma_wait<0>();
    acc_fence(s);
    acc_fence(dp);
    dq_form_ds(s, dp, rw, 0);
    wg_acc_to_a(f, s);
    /* Tile it: S/dP of it and dQ += dS K of it - 1 are issued together; dS of it is formed while
     * the latter runs. */
    for (int it = 1; it < ntiles; it++) {
        const int pst = (it - 1) % DQ_STAGES;
        dq_issue_sdp<D>(s, dp, qa, doa, skv, bars, it);
        wgmma_fence();
        gemm_rs_k64<D>(acc, f, skv + pst * 2 * TILE, DQ_KEYS);
        wgmma_commit();
        wgmma_wait<1>();
        acc_fence(s);
        acc_fence(dp);
        dq_form_ds(s, dp, rw, it);
        wgmma_wait<0>();
        acc_fence(acc);
        mbar_arrive_warp(BAR_EMPTY(bars, pst, DQ_STAGES));
        wg_acc_to_a(f, s);
    }
    const int lst = (ntiles - 1) % DQ_STAGES;
    wgmma_fence();
    gemm_rs_k64<D>(acc, f, skv + lst * 2 * TILE, DQ_KEYS);
    wgmma_commit();
    wgmma_wait<0>();
    acc_fence(acc);
    mbar_arrive_warp(BAR_EMPTY(bars, lst, DQ_STAGES));
    add_rows<D>(p.dq, acc, p.scale, i0 + cw * 64, p.Tq, p.q_stride, (int64_t)h * D);
}

template <int D>
static __global__ void __launch_bounds__(BW_THREADS, 1)
    att_bwd_dq_wgmma_kernel(const __grid_constant__ CUtensorMap tm_q,
                            const __grid_constant__ CUtensorMap tm_do,
                            const __grid_constant__ CUtensorMap tm_k,
                            const __grid_constant__ CUtensorMap tm_v, struct wg_bwd_params p) {
    constexpr uint32_t TILE = DQ_KEYS * D * 2;
    extern __shared__ unsigned char smraw[];
    const uint32_t sq = (smem_u32(smraw) + 1023) & ~1023u, sdo = sq + DQ_ROWS * D * 2;
    const uint32_t skv = sdo + DQ_ROWS * D * 2, sstat = skv + DQ_STAGES * 2 * TILE;
    const uint32_t bars = sstat + 4 * 512;
    float *stats = (float *)(smraw + (sstat - smem_u32(smraw)));
    const int h = blockIdx.y;
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * DQ_ROWS;
    const int64_t last = (i0 + DQ_ROWS < p.Tq ? i0 + DQ_ROWS : p.Tq) - 1;
    const int ntiles = (int)((p.q_pos0 + last) / DQ_KEYS) + 1;
    bw_init_barriers(bars, DQ_STAGES, 8);
    if (threadIdx.x < 128) {
        regs_release<BW_PRODUCER_REGS>();
        if (threadIdx.x != 0) return;
        const int kvh = h / p.G;
        load_pair<D>(sq, sdo, &tm_q, &tm_do, h * D, (int)i0, DQ_ROWS, bars);
        for (int it = 0; it < ntiles; it++) {
            const int st = it % DQ_STAGES;
            mbar_wait(BAR_EMPTY(bars, st, DQ_STAGES), ((it / DQ_STAGES) & 1) ^ 1);
            load_pair<D>(skv + st * 2 * TILE, skv + st * 2 * TILE + TILE, &tm_k, &tm_v, kvh * D,
                         it * DQ_KEYS, DQ_KEYS, BAR_FULL(bars, st));
        }
        return;
    }
    regs_claim<BW_CONSUMER_REGS>();
    dq_consume<D>(p, sq, sdo, skv, stats, bars, h, i0, ntiles);
}

/* ---------------------------------------------------------------------------------------------- */
/* dK, dV                                                                                          */

/* The two shapes of a dK/dV block. Wide: 128 keys, the consumer warpgroups 64 each, both reading
 * every work item (half the Q/dO bytes per product; they meet once an item for the statistics).
 * Narrow: 64 keys, the warpgroups taking alternate items (twice as many blocks, for grids that
 * wide blocks would leave unbalanced), their dK, dV added through shared memory at the end. */
static constexpr int kv_keys(bool wide) { return wide ? 128 : 64; }
static constexpr int kv_stages(bool wide) { return wide ? 2 : 4; } /* narrow: two a warpgroup */

/* The most shared memory a backward kernel takes: the narrow dK/dV block's. */
size_t attention_wgmma_bwd_smem(int D) {
    return bw_smem_bytes(kv_keys(false), KV_ROWS, kv_stages(false), D);
}

/* lse (log2 units) and D_i of rows row0 .. row0 + 128 / TPR - 1 of the item into lse2s, dis, TPR
 * threads a row; dO from the stage (the swizzled tile at dot), O from memory. */
template <int D, int TPR>
static __device__ __forceinline__ void item_stats(const struct wg_bwd_params &p, float *lse2s,
                                                  float *dis, uint32_t dot, int64_t i0, int h,
                                                  int row0) {
    const int lt = threadIdx.x % 128, row = row0 + lt / TPR, part = lt % TPR;
    const int64_t r = i0 + row;
    float d = 0.0f;
    if (r < p.Tq) {
        const bf16 *orow = p.out + r * p.q_stride + (int64_t)h * D;
#pragma unroll
        for (int c = part * (D / TPR); c < (part + 1) * (D / TPR); c += 8) {
            const int chunk = (c % 64) / 8;
            const uint32_t a = dot + (c / 64) * KV_ROWS * 128 + row * 128 + ((chunk ^ (row & 7)) * 16);
            uint4 g;
            asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                         : "=r"(g.x), "=r"(g.y), "=r"(g.z), "=r"(g.w)
                         : "r"(a));
            d += dot8(*(const uint4 *)(orow + c), g);
        }
    }
#pragma unroll
    for (int o = 1; o < TPR; o <<= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
    if (part == 0) dis[row] = d, lse2s[row] = lse_log2(p, r, h);
}

/* The fixed quantities of a dK/dV block for one consumer warpgroup. */
struct kv_ctx {
    int64_t kfirst, key0; /* the warpgroup's first key; this thread's keys key0, key0 + 8 */
    int64_t n0;           /* the block's first key */
    int g, m_first;       /* KV head; first query tile (of KV_ROWS rows) that sees the block */
    float sl2;
    int tq;
};

/* One work item (KV_ROWS query rows of head h from row i0) for this warpgroup's 64 keys (ka, va:
 * their K and V rows in tiles of kv_keys(WIDE) rows), Q and dO in the stage at qt, dot. */
template <int D, bool WIDE>
static __device__ __forceinline__ void kv_item(float (&dk)[D / 2], float (&dv)[D / 2],
                                               const struct wg_bwd_params &p,
                                               const struct kv_ctx &c, uint32_t ka, uint32_t va,
                                               uint32_t qt, uint32_t dot, float *lse2s, float *dis,
                                               int64_t i0, int h) {
    float s[32], dp[32];
    uint32_t fp[4][4], fd[4][4];
    const int cw = threadIdx.x / 128 - 1;
    wgmma_fence();
    gemm_ss_n64<D>(s, ka, kv_keys(WIDE), qt, KV_ROWS);
    gemm_ss_n64<D>(dp, va, kv_keys(WIDE), dot, KV_ROWS);
    wgmma_commit();
    /* the statistics while S^T and dP^T run: wide, each warpgroup half of the rows */
    if constexpr (WIDE) {
        item_stats<D, 4>(p, lse2s, dis, dot, i0, h, cw * 32);
        named_bar_sync(1, 256);
    } else {
        item_stats<D, 2>(p, lse2s, dis, dot, i0, h, 0);
        named_bar_sync(2 + cw, 128);
    }
    wgmma_wait<0>();
    acc_fence(s);
    acc_fence(dp);
    /* P^T: element (key key0 + 8 (e / 2), row i0 + 8 j + 2 tq + e % 2), causal keys only. */
    const bool mask = p.q_pos0 + i0 < c.kfirst + 63;
    const int64_t lim = p.q_pos0 + i0 + 2 * c.tq - c.key0; /* key0 + 8 hh <= q_pos0 + row */
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const float2 l2 = *(const float2 *)(lse2s + 8 * j + 2 * c.tq);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float pr = fast_exp2(fmaf(s[4 * j + e], c.sl2, -(e & 1 ? l2.y : l2.x)));
            if (mask && 8 * (e >> 1) > lim + 8 * j + (e & 1)) pr = 0.0f;
            s[4 * j + e] = pr;
        }
    }
    /* dV += P^T dO runs while dS^T = P^T (dP^T - D_i) is formed, then dK += dS^T Q */
    wg_acc_to_a(fp, s);
    wgmma_fence();
    gemm_rs_k64<D>(dv, fp, dot, KV_ROWS);
    wgmma_commit();
    acc_fence(dp); /* keeps dS^T after the dV issue */
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const float2 d2 = *(const float2 *)(dis + 8 * j + 2 * c.tq);
#pragma unroll
        for (int e = 0; e < 4; e++) dp[4 * j + e] = s[4 * j + e] * (dp[4 * j + e] - (e & 1 ? d2.y : d2.x));
    }
    wg_acc_to_a(fd, dp);
    wgmma_fence();
    gemm_rs_k64<D>(dk, fd, qt, KV_ROWS);
    wgmma_commit();
    wgmma_wait<0>();
    acc_fence(dk);
    acc_fence(dv);
}

/* Wide: both warpgroups take every item (stage it % 2) and write their own keys. Narrow:
 * warpgroup cw takes items cw, cw + 2, ... (stage it % 4), then warpgroup 1's dK, dV go through
 * shared memory (the stages) to warpgroup 0, which adds them in and writes. */
template <int D, bool WIDE>
static __device__ __forceinline__ void dkdv_consume(const struct wg_bwd_params &p, uint32_t sk,
                                                    uint32_t sv, uint32_t sqd, float *red,
                                                    float *stats, uint32_t bars,
                                                    const struct kv_ctx &c, int nitems) {
    constexpr uint32_t TILE = KV_ROWS * D * 2;
    constexpr int STAGES = kv_stages(WIDE);
    const int cw = threadIdx.x / 128 - 1, lt = threadIdx.x % 128;
    const uint32_t koff = WIDE ? cw * 64 * 128 : 0; /* this warpgroup's keys in the K, V tiles */
    float dk[D / 2], dv[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; i++) dk[i] = dv[i] = 0.0f;
    mbar_wait(bars, 0);
    for (int it = WIDE ? 0 : cw; it < nitems; it += WIDE ? 1 : 2) {
        const int st = it % STAGES, h = c.g * p.G + it % p.G;
        const int64_t i0 = (int64_t)(c.m_first + it / p.G) * KV_ROWS;
        /* statistics buffers: two (by item parity), per warpgroup when narrow */
        float *lse2s = WIDE ? stats + (it & 1) * 128 : stats + cw * 256 + ((it >> 1) & 1) * 128;
        mbar_wait(BAR_FULL(bars, st), (it / STAGES) & 1);
        kv_item<D, WIDE>(dk, dv, p, c, sk + koff, sv + koff, sqd + st * 2 * TILE,
                         sqd + st * 2 * TILE + TILE, lse2s, lse2s + 64, i0, h);
        mbar_arrive_warp(BAR_EMPTY(bars, st, STAGES));
    }
    if constexpr (!WIDE) {
        named_bar_sync(1, 256); /* both warpgroups are past the stages */
        if (cw == 1) {
#pragma unroll
            for (int i = 0; i < D / 2; i++)
                red[i * 128 + lt] = dk[i], red[(D / 2 + i) * 128 + lt] = dv[i];
        }
        named_bar_sync(1, 256);
        if (cw == 1) return;
#pragma unroll
        for (int i = 0; i < D / 2; i++)
            dk[i] += red[i * 128 + lt], dv[i] += red[(D / 2 + i) * 128 + lt];
    }
    add_rows<D>(p.dk, dk, p.scale, c.kfirst, p.Tk, p.kv_stride, (int64_t)c.g * D);
    add_rows<D>(p.dv, dv, 1.0f, c.kfirst, p.Tk, p.kv_stride, (int64_t)c.g * D);
}

template <int D, bool WIDE>
static __global__ void __launch_bounds__(BW_THREADS, 1)
    att_bwd_dkdv_wgmma_kernel(const __grid_constant__ CUtensorMap tm_q,
                              const __grid_constant__ CUtensorMap tm_do,
                              const __grid_constant__ CUtensorMap tm_k,
                              const __grid_constant__ CUtensorMap tm_v, struct wg_bwd_params p) {
    constexpr uint32_t TILE = KV_ROWS * D * 2;
    constexpr int KEYS = kv_keys(WIDE), STAGES = kv_stages(WIDE);
    extern __shared__ unsigned char smraw[];
    const uint32_t sk = (smem_u32(smraw) + 1023) & ~1023u, sv = sk + KEYS * D * 2;
    const uint32_t sqd = sv + KEYS * D * 2, sstat = sqd + STAGES * 2 * TILE;
    const uint32_t bars = sstat + 4 * 512;
    float *stats = (float *)(smraw + (sstat - smem_u32(smraw)));
    float *red = (float *)(smraw + (sqd - smem_u32(smraw))); /* narrow: 2 x 64 x D floats */
    struct kv_ctx c;
    c.g = blockIdx.y;
    c.n0 = (int64_t)blockIdx.x * KEYS;
    const int64_t first = c.n0 - p.q_pos0;
    c.m_first = (int)((first > 0 ? first : 0) / KV_ROWS);
    const int nitems = ((int)((p.Tq + KV_ROWS - 1) / KV_ROWS) - c.m_first) * p.G;
    bw_init_barriers(bars, STAGES, WIDE ? 8 : 4);
    if (threadIdx.x < 128) {
        regs_release<BW_PRODUCER_REGS>();
        if (threadIdx.x != 0) return;
        load_pair<D>(sk, sv, &tm_k, &tm_v, c.g * D, (int)c.n0, KEYS, bars);
        for (int it = 0; it < nitems; it++) {
            const int st = it % STAGES, h = c.g * p.G + it % p.G;
            mbar_wait(BAR_EMPTY(bars, st, STAGES), ((it / STAGES) & 1) ^ 1);
            load_pair<D>(sqd + st * 2 * TILE, sqd + st * 2 * TILE + TILE, &tm_q, &tm_do, h * D,
                         (c.m_first + it / p.G) * KV_ROWS, KV_ROWS, BAR_FULL(bars, st));
        }
        return;
    }
    regs_claim<BW_CONSUMER_REGS>();
    const int lt = threadIdx.x % 128;
    c.kfirst = c.n0 + (WIDE ? (threadIdx.x / 128 - 1) * 64 : 0);
    c.key0 = c.kfirst + (lt / 32) * 16 + (lt % 32) / 4;
    c.sl2 = p.scale * LOG2E;
    c.tq = lt % 4;
    dkdv_consume<D, WIDE>(p, sk, sv, sqd, red, stats, bars, c, nitems);
}

/* ---------------------------------------------------------------------------------------------- */
/* Launchers                                                                                       */

template <int D, bool WIDE>
static void dkdv_launch(const CUtensorMap &tq, const CUtensorMap &tdo, const CUtensorMap &tk,
                        const CUtensorMap &tv, const struct wg_bwd_params &p, dim3 grid, size_t smem,
                        cudaStream_t st) {
    CUDA_CHECK(cudaFuncSetAttribute(att_bwd_dkdv_wgmma_kernel<D, WIDE>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    att_bwd_dkdv_wgmma_kernel<D, WIDE><<<grid, BW_THREADS, smem, st>>>(tq, tdo, tk, tv, p);
    CUDA_CHECK_LAST();
}

template <int D>
static void bwd_launch(const struct wg_bwd_params &p, const void *q, const void *k, const void *v,
                       const struct attn_shape *s, int sm_count, cudaStream_t st) {
    const int64_t qcols = (int64_t)s->Hq * D, kcols = (int64_t)s->Hkv * D;
    CUtensorMap tq, tdo, tk, tv;
    /* dQ: Q and dO in 128-row boxes, K and V in 64-row boxes */
    tmap_bf16_2d(&tq, q, qcols, s->Tq, s->q_stride, DQ_ROWS);
    tmap_bf16_2d(&tdo, p.dout, qcols, s->Tq, s->q_stride, DQ_ROWS);
    tmap_bf16_2d(&tk, k, kcols, s->Tk, s->kv_stride, DQ_KEYS);
    tmap_bf16_2d(&tv, v, kcols, s->Tk, s->kv_stride, DQ_KEYS);
    size_t smem = bw_smem_bytes(DQ_ROWS, DQ_KEYS, DQ_STAGES, D);
    CUDA_CHECK(cudaFuncSetAttribute(att_bwd_dq_wgmma_kernel<D>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)ceil_div(s->Tq, DQ_ROWS), (unsigned)s->Hq);
    att_bwd_dq_wgmma_kernel<D><<<grid, BW_THREADS, smem, st>>>(tq, tdo, tk, tv, p);
    CUDA_CHECK_LAST();
    /* dK/dV: key blocks past the last query row get no gradient and no block. Wide blocks unless
     * they would number under 1.5 per multiprocessor: causal blocks differ in work (the first sees
     * every row), so too few of them leave the last wave unbalanced. Measured on the H200, Hq 32 /
     * Hkv 2, D 128, whole backward: 128 wide blocks (8k) 7.39 ms against narrow 5.75; 256 (16k)
     * 18.16 against 22.60; 512 (32k) 74.5 against 88.6. */
    const int64_t seen = s->q_pos0 + s->Tq < s->Tk ? s->q_pos0 + s->Tq : s->Tk;
    const bool wide = 2 * s->Hkv * ceil_div(seen, kv_keys(true)) >= 3 * (int64_t)sm_count;
    tmap_bf16_2d(&tq, q, qcols, s->Tq, s->q_stride, KV_ROWS);
    tmap_bf16_2d(&tdo, p.dout, qcols, s->Tq, s->q_stride, KV_ROWS);
    tmap_bf16_2d(&tk, k, kcols, s->Tk, s->kv_stride, kv_keys(wide));
    tmap_bf16_2d(&tv, v, kcols, s->Tk, s->kv_stride, kv_keys(wide));
    smem = bw_smem_bytes(kv_keys(wide), KV_ROWS, kv_stages(wide), D);
    dim3 grid2((unsigned)ceil_div(seen, kv_keys(wide)), (unsigned)s->Hkv);
    if (wide) dkdv_launch<D, true>(tq, tdo, tk, tv, p, grid2, smem, st);
    else dkdv_launch<D, false>(tq, tdo, tk, tv, p, grid2, smem, st);
}
#endif /* INFLLM_WGMMA */

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" int attention_wgmma_backward(void *dq, void *dk, void *dv, const void *dout,
                                        const void *q, const void *k, const void *v,
                                        const void *out, const float *lse,
                                        const struct attn_shape *s, const struct gpu_ctx *g) {
    if (!attention_wgmma_supported(s)) return 0;
    const void *ptrs[] = {dq, dk, dv, dout, q, k, v, out};
    for (int i = 0; i < 8; i++)
        if (!aligned16(ptrs[i])) return 0;
#ifdef INFLLM_WGMMA
    if (s->Tq == 0) return 1;
    struct wg_bwd_params p = {(const bf16 *)out, (const bf16 *)dout, lse, (bf16 *)dq, (bf16 *)dk,
                              (bf16 *)dv, s->Tq, s->q_pos0, s->Tk, s->q_stride, s->kv_stride,
                              s->Hq, s->Hq / s->Hkv, s->scale};
    int sms = g->sm_count;
    if (sms <= 0) {
        int dev;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    }
    if (s->D == 64) bwd_launch<64>(p, q, k, v, s, sms, stream_of(g));
    else bwd_launch<128>(p, q, k, v, s, sms, stream_of(g));
#endif
    return 1;
}
