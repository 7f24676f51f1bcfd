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
 * Work split: a thread block takes one KV group and NW * 32 / G consecutive tokens (NW = 8 or 4
 * warps, whichever keeps more warps resident), latest tokens first; warp w owns
 * 32 query rows (32 / G tokens x their G heads). The product is computed transposed, S^T = K Q^T:
 * compressed keys are the M side (a 64-key tile = 4 m-tiles, A fragments by ldmatrix from shared
 * memory), the warp's 32 query rows the N side (4 n-tiles, B fragments kept in registers for the
 * whole block). A thread's accumulators then hold two query rows (heads) of one token per n-tile,
 * so the sum over a token's G heads is an in-thread add plus at most two shuffles.
 * Tiles stream through two shared-memory buffers (cp.async, the next tile loads while this one is
 * computed): first the normaliser keys (C2 with lse_approx, else C1), giving each query row its
 * running max and sum in registers, then C1: p = exp2(s * log2e - (m + log2 l)) summed over the
 * group's heads, staged per warp (64 keys + a carry of the previous tile's last 8), max-pooled into
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

#define TC_KEYS 64      /* compressed keys per tile */
#define TC_CARRY 8      /* staged keys of the previous tile: pooling windows reach back <= 8 */
#define TC_STAGE (TC_CARRY + TC_KEYS)
#define TC_CAP 512      /* top-k candidates a warp compacts; more falls back to the whole row */
#define TC_MAX_WARPS 8

struct seltc_args {
    int32_t *sel;             /* (Tq, Hkv, nsel) */
    const bf16 *q;            /* (Tq, Hq, D), q_stride apart */
    const bf16 *k1, *kn;      /* C1 (L1, Hkv, D) and the normaliser keys (Ln, Hkv, D) */
    int64_t L1, Ln, Tq, q_pos0, q_stride, KD;
    int nblk, nsel, Hkv;
    int ks, st, nks, nst, per, back, bs, init, local;
    float sl2;                /* scale * log2(e) */
};

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

/* Shared memory: two key tiles (TC_KEYS x (D + 8) bf16), block scores (tokens x nblk floats,
 * reused as order keys by the top-k), per-warp staging (32/G tokens x TC_STAGE floats), per-warp
 * top-k candidates (TC_CAP), per-token visible key counts (normaliser keys, C1). */
static size_t seltc_smem_bytes(int D, int G, int nw, int nblk) {
    int tokens = nw * 32 / G;
    return (size_t)2 * TC_KEYS * (D + 8) * sizeof(bf16) + (size_t)tokens * nblk * sizeof(float) +
           (size_t)nw * (32 / G) * TC_STAGE * sizeof(float) + (size_t)nw * TC_CAP * sizeof(uint32_t) +
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
    const int64_t L = norm ? a.Ln : a.L1, c0 = (int64_t)(norm ? q : q - nt1) * TC_KEYS;
    for (int idx = threadIdx.x; idx < TC_KEYS * D / 8; idx += blockDim.x) {
        int r = idx / (D / 8), c8 = (idx % (D / 8)) * 8;
        bool ok = c0 + r < L;
        const bf16 *p = ok ? src + (c0 + r) * a.KD + (int64_t)grp * D + c8 : a.k1;
        cp_async16(dst + r * (D + 8) + c8, p, ok);
    }
    cp_async_commit();
}

template <int D, int G>
static __global__ void __launch_bounds__(TC_MAX_WARPS * 32) select_tc_kernel(struct seltc_args a) {
    extern __shared__ __align__(16) unsigned char smraw[];
    constexpr int LD = D + 8, TPW = 32 / G, KS = D / 16;
    const int nw = blockDim.x / 32, tokens = nw * TPW;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
    const int grp = blockIdx.y;
    bf16 *kt = (bf16 *)smraw;
    float *bsc = (float *)(kt + 2 * TC_KEYS * LD);
    float *stage = bsc + (size_t)tokens * a.nblk + (size_t)warp * TPW * TC_STAGE;
    uint32_t *cand = (uint32_t *)(bsc + (size_t)tokens * a.nblk + (size_t)nw * TPW * TC_STAGE);
    int *nvn = (int *)(cand + nw * TC_CAP), *nv1 = nvn + tokens;

    /* Heaviest (latest) tokens first, so the short causal blocks fill the tail. */
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * tokens;
    const int64_t i_last = (i0 + tokens < a.Tq ? i0 + tokens : a.Tq) - 1;
    const int64_t t_first = a.q_pos0 + i0, t_last = a.q_pos0 + i_last;
    const int bt_last = (int)(t_last / a.bs);

    /* B fragments of the warp's 32 query rows: n-tile nt, row nt*8 + g = token r / G, head r % G. */
    uint32_t qb[4][KS][2];
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        int r = warp * 32 + nt * 8 + gq;
        int64_t i = i0 + r / G;
        const bf16 *qr = a.q + i * a.q_stride + (int64_t)(grp * G + r % G) * D + 2 * tq;
#pragma unroll
        for (int k = 0; k < KS; k++) {
            qb[nt][k][0] = i < a.Tq ? *(const uint32_t *)(qr + k * 16) : 0u;
            qb[nt][k][1] = i < a.Tq ? *(const uint32_t *)(qr + k * 16 + 8) : 0u;
        }
    }
    const int nb_used = bt_last + 1 < a.nblk ? bt_last + 1 : a.nblk;
    for (int idx = threadIdx.x; idx < tokens * nb_used; idx += blockDim.x)
        bsc[(idx / nb_used) * a.nblk + idx % nb_used] = -INFINITY;
    for (int idx = lane; idx < TPW * TC_CARRY; idx += 32)
        stage[(idx / TC_CARRY) * TC_STAGE + idx % TC_CARRY] = -INFINITY;
    for (int tk = threadIdx.x; tk < tokens; tk += blockDim.x) {
        int64_t t = a.q_pos0 + i0 + tk;
        t = t < t_last ? t : t_last; /* tokens past Tq: computed like the last, never written */
        nvn[tk] = (int)visible(t, a.nks, a.nst, a.Ln);
        nv1[tk] = (int)visible(t, a.ks, a.st, a.L1);
    }

    /* Tiles: the normaliser's, then C1's up to the last block with a visible window. */
    const int nt1 = (int)((visible(t_last, a.nks, a.nst, a.Ln) + TC_KEYS - 1) / TC_KEYS);
    const int64_t n1 = visible(t_last, a.ks, a.st, a.L1);
    int nt2 = 0;
    if (n1 > 0) {
        int64_t jmax = (n1 - 1 + a.back) / a.per;
        if (jmax > bt_last) jmax = bt_last;
        if (jmax > a.nblk - 1) jmax = a.nblk - 1;
        nt2 = (int)((jmax * a.per + a.per - 1) / TC_KEYS) + 1;
    }
    const int ntiles = nt1 + nt2;
    const int nvn_first = (int)visible(t_first, a.nks, a.nst, a.Ln);
    const int nv1_first = (int)visible(t_first, a.ks, a.st, a.L1);

    /* Normaliser of this thread's query rows nt*8 + 2tq + e (log2 units), then the bias. */
    float m[4][2], l[4][2], nb[4][2];
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int e = 0; e < 2; e++) m[nt][e] = -INFINITY, l[nt][e] = 0.0f, nb[nt][e] = -INFINITY;

    if (ntiles > 0) load_tile<D>(kt, a, 0, nt1, grp);
    for (int q = 0; q < ntiles; q++) {
        if (q + 1 < ntiles) {
            load_tile<D>(kt + ((q + 1) & 1) * TC_KEYS * LD, a, q + 1, nt1, grp);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *K = kt + (q & 1) * TC_KEYS * LD;
        const bool norm = q < nt1;
        const int64_t c0 = (int64_t)(norm ? q : q - nt1) * TC_KEYS;
        const bool full = c0 + TC_KEYS <= (norm ? nvn_first : nv1_first);
        if (q == nt1) {
            /* Merge the 8 lanes holding the same query rows, then bias = m + log2(l). */
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float mm = m[nt][e], ll = l[nt][e];
#pragma unroll
                    for (int off = 4; off < 32; off <<= 1) {
                        float mo = __shfl_xor_sync(0xffffffffu, mm, off);
                        float lo = __shfl_xor_sync(0xffffffffu, ll, off);
                        float mx = fmaxf(mm, mo);
                        ll = (mm == -INFINITY ? 0.0f : ll * fast_exp2(mm - mx)) +
                             (mo == -INFINITY ? 0.0f : lo * fast_exp2(mo - mx));
                        mm = mx;
                    }
                    /* l = 0 (nothing visible, t < 127 with lse_approx): every p is 0, never NaN */
                    nb[nt][e] = ll > 0.0f ? -(mm + log2f(ll)) : -INFINITY;
                }
        }
#pragma unroll
        for (int mp = 0; mp < 2; mp++) {
            float acc[2][4][4];
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
                    acc[mi][nt][0] = acc[mi][nt][1] = acc[mi][nt][2] = acc[mi][nt][3] = 0.0f;
#pragma unroll
            for (int k = 0; k < KS; k++) {
                uint32_t af[2][4];
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
                    ldmatrix_a_tile(af[mi], K + (mp * 2 + mi) * 16 * LD + k * 16, LD);
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
#pragma unroll
                    for (int nt = 0; nt < 4; nt++)
                        mma_bf16(acc[mi][nt], af[mi], qb[nt][k][0], qb[nt][k][1]);
            }
            /* acc[mi][nt][e]: key c0 + (2mp + mi)*16 + g (+8 for e >= 2), query row
             * nt*8 + 2tq + (e & 1) of the warp. */
            const int kl = mp * 32 + gq;
            if (norm) {
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float s[4] = {acc[0][nt][e] * a.sl2, acc[0][nt][e + 2] * a.sl2,
                                      acc[1][nt][e] * a.sl2, acc[1][nt][e + 2] * a.sl2};
                        if (!full) {
                            int nv = nvn[warp * TPW + (nt * 8 + 2 * tq + e) / G];
#pragma unroll
                            for (int x = 0; x < 4; x++)
                                if (c0 + kl + x * 8 >= nv) s[x] = -INFINITY;
                        }
                        float mx = fmaxf(fmaxf(s[0], s[1]), fmaxf(s[2], s[3]));
                        if (mx > m[nt][e]) {
                            l[nt][e] *= fast_exp2(m[nt][e] - mx);
                            m[nt][e] = mx;
                        }
                        if (m[nt][e] != -INFINITY)
                            l[nt][e] += (fast_exp2(s[0] - m[nt][e]) + fast_exp2(s[1] - m[nt][e])) +
                                        (fast_exp2(s[2] - m[nt][e]) + fast_exp2(s[3] - m[nt][e]));
                    }
                continue;
            }
            /* p = exp(scale q.k - m) / l, in place. */
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        acc[mi][nt][e] = fast_exp2(fmaf(acc[mi][nt][e], a.sl2, nb[nt][e & 1]));
            /* Sum over each token's G heads, mask keys the token cannot see, stage. */
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                const int k_lo = kl + mi * 16;
                if constexpr (G == 1) {
#pragma unroll
                    for (int nt = 0; nt < 4; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int tw = nt * 8 + 2 * tq + (e & 1), kk = k_lo + (e >> 1) * 8;
                            float val = acc[mi][nt][e];
                            if (!full && c0 + kk >= nv1[warp * TPW + tw]) val = -INFINITY;
                            stage[tw * TC_STAGE + TC_CARRY + kk] = val;
                        }
                } else {
                    /* v[x][h]: token slot x of this thread, key g (h 0) or g + 8 (h 1). G 16:
                     * n-tiles 2x, 2x+1 are token x; else n-tile nt holds token (nt*8 + 2tq) / G. */
                    constexpr int NS = G == 16 ? 2 : 4;
                    float v[NS][2];
                    int tok[NS];
#pragma unroll
                    for (int x = 0; x < NS; x++) {
                        if constexpr (G == 16) {
                            v[x][0] = (acc[mi][2 * x][0] + acc[mi][2 * x][1]) +
                                      (acc[mi][2 * x + 1][0] + acc[mi][2 * x + 1][1]);
                            v[x][1] = (acc[mi][2 * x][2] + acc[mi][2 * x][3]) +
                                      (acc[mi][2 * x + 1][2] + acc[mi][2 * x + 1][3]);
                            tok[x] = x;
                        } else {
                            v[x][0] = acc[mi][x][0] + acc[mi][x][1];
                            v[x][1] = acc[mi][x][2] + acc[mi][x][3];
                            tok[x] = (x * 8 + 2 * tq) / G;
                        }
#pragma unroll
                        for (int h = 0; h < 2; h++) {
                            if constexpr (G >= 4) v[x][h] += __shfl_xor_sync(0xffffffffu, v[x][h], 1);
                            if constexpr (G >= 8) v[x][h] += __shfl_xor_sync(0xffffffffu, v[x][h], 2);
                        }
                    }
                    if (tq % (G >= 8 ? 4 : G / 2) == 0)
#pragma unroll
                        for (int x = 0; x < NS; x++)
#pragma unroll
                            for (int h = 0; h < 2; h++) {
                                float val = v[x][h];
                                int kk = k_lo + h * 8;
                                if (!full && c0 + kk >= nv1[warp * TPW + tok[x]]) val = -INFINITY;
                                stage[tok[x] * TC_STAGE + TC_CARRY + kk] = val;
                            }
                }
            }
        }
        if (!norm) {
            /* Pool: blocks whose window [j*per - back, j*per + per) ends in this tile. */
            __syncwarp();
            const int nbt = TC_KEYS / a.per;
            const int64_t jbase = c0 / a.per;
            for (int idx = lane; idx < TPW * nbt; idx += 32) {
                int tw = idx / nbt, jj = idx % nbt;
                int64_t j = jbase + jj;
                if (j >= a.nblk) continue;
                const float *sr = stage + tw * TC_STAGE + TC_CARRY;
                float val = -INFINITY;
                for (int c = jj * a.per - a.back; c < jj * a.per + a.per; c++)
                    val = fmaxf(val, sr[c]);
                bsc[(size_t)(warp * TPW + tw) * a.nblk + j] = val;
            }
            __syncwarp();
            for (int idx = lane; idx < TPW * TC_CARRY; idx += 32) {
                float *sr = stage + (idx / TC_CARRY) * TC_STAGE;
                sr[idx % TC_CARRY] = sr[TC_KEYS + idx % TC_CARRY];
            }
            __syncwarp();
        }
        __syncthreads();
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

typedef void (*seltc_kernel)(struct seltc_args);

template <int D>
static seltc_kernel pick_g(int G) {
    switch (G) {
    case 1: return select_tc_kernel<D, 1>;
    case 2: return select_tc_kernel<D, 2>;
    case 4: return select_tc_kernel<D, 4>;
    case 8: return select_tc_kernel<D, 8>;
    case 16: return select_tc_kernel<D, 16>;
    default: return NULL;
    }
}

bool infllm_select_tc(int32_t *sel, const bf16 *q, const bf16 *k1, int64_t L1, const bf16 *k2,
                      int64_t L2, const struct attn_shape *s, const struct infllm_params *p,
                      const struct gpu_ctx *g) {
    int G = s->Hq / s->Hkv, D = s->D;
    seltc_kernel fn = D == 64 ? pick_g<64>(G) : D == 128 ? pick_g<128>(G) : NULL;
    if (!fn || s->Hq % s->Hkv != 0) return false;
    int st = p->kernel_stride, bs = p->block_size;
    if (st <= 0 || bs % st != 0 || TC_KEYS % (bs / st) != 0 || (p->kernel_size - 1) / st > TC_CARRY)
        return false;
    if (s->q_stride % 2 != 0 || ((uintptr_t)q & 3) || ((uintptr_t)k1 & 15) || ((uintptr_t)k2 & 15))
        return false;
    int64_t nblk = ceil_div(s->Tk, bs);
    if (nblk > (1 << 24)) return false;
    /* 8 or 4 warps a block: the one that keeps more warps resident (registers cap the 8-warp
     * block at one per multiprocessor; the block scores' shared memory grows with T), 8 on a tie,
     * since each block reads every key tile once for all its rows. */
    int nw = 0, best_warps = -1;
    for (int w = TC_MAX_WARPS; w >= 4; w /= 2) {
        size_t bytes = seltc_smem_bytes(D, G, w, (int)nblk);
        if (bytes > (227u << 10)) continue;
        int blocks = 0;
        CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fn, w * 32, bytes));
        if (blocks * w > best_warps) nw = w, best_warps = blocks * w;
    }
    if (nw == 0) return false;
    size_t smem = seltc_smem_bytes(D, G, nw, (int)nblk);

    struct seltc_args a;
    a.sel = sel, a.q = q, a.k1 = k1;
    a.kn = p->lse_approx ? k2 : k1;
    a.L1 = L1, a.Ln = p->lse_approx ? L2 : L1;
    a.Tq = s->Tq, a.q_pos0 = s->q_pos0, a.q_stride = s->q_stride, a.KD = (int64_t)s->Hkv * D;
    a.nblk = (int)nblk, a.nsel = infllm_num_selected(p), a.Hkv = s->Hkv;
    a.ks = p->kernel_size, a.st = st;
    a.nks = p->lse_approx ? 4 * p->kernel_size : p->kernel_size;
    a.nst = p->lse_approx ? 4 * st : st;
    a.per = bs / st, a.back = (p->kernel_size - 1) / st, a.bs = bs;
    a.init = p->init_blocks, a.local = p->local_blocks;
    a.sl2 = s->scale * 1.4426950408889634f;
    int tokens = nw * 32 / G;
    CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)ceil_div(s->Tq, tokens), (unsigned)s->Hkv);
    fn<<<grid, nw * 32, smem, stream_of(g)>>>(a);
    CUDA_CHECK_LAST();
    return true;
}
