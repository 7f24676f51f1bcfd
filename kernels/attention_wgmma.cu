/*
 * attention_wgmma.cu: dense causal GQA attention forward on Hopper (sm_90a): wgmma with fp32
 * accumulators, K/V tiles brought by the bulk tensor copy engine (TMA) into a pipeline of shared
 * stages guarded by mbarriers, warp-specialised (one producer warpgroup, two consumer warpgroups),
 * the softmax of one tile overlapped with the P V product of the previous one (FlashAttention-3's
 * structure, written here from its description). Also the path's predicate, shared with the
 * backward (attention_wgmma_bwd.cu).
 *
 * Dimensions as attention.h: Tq query rows at global positions q_pos0 + i, Tk keys, Hq / Hkv heads,
 * G = Hq / Hkv (any positive integer), D 64 or 128. bf16 in and out, fp32 softmax statistics; lse
 * in natural log.
 *
 * A thread block takes FW_ROWS = 128 query rows of one query head h (KV head h / G; the G heads of
 * a group share K/V tiles through L2) and walks the key tiles of FW_KEYS = 128 that its rows see,
 * last (diagonal, masked) first. Warpgroup 0 is the producer: one thread issues the TMA copies of
 * the Q tile once and of K and V into FW_STAGES stages, each stage with a "full" barrier (the copy
 * landed, counted in bytes) and an "empty" barrier (the 8 consumer warps are done with it).
 * Warpgroups 1 and 2 each own 64 rows. Per tile: S = Q K^T (wgmma, both operands in shared
 * memory), the online softmax in registers (exp2 units, the scale folded into one FMA), then
 * O += P V with P straight from the S accumulators as wgmma's register A operand and V as its
 * transposed (MN-major) B operand. The loop issues S of tile n and P V of tile n - 1 together and
 * does the softmax of tile n while the tensor cores run P V (O is rescaled after it completes), and
 * the two warpgroups take turns to issue (named barriers), so one's softmax overlaps the other's
 * products.
 * Blocks run from the last query tile to the first, so the longest start first.
 */
#include "attention_wgmma.h"
#include "mma.cuh"

#ifdef INFLLM_WGMMA
#include "hopper.cuh"

#define FW_ROWS 128    /* query rows of a block: two consumer warpgroups of 64 */
#define FW_KEYS 128    /* keys of a K/V tile */
#define FW_STAGES 2    /* K/V stages in flight */
#define FW_THREADS 384 /* warpgroup 0 produces, 1 and 2 consume */
#define FW_TURN 4      /* named barriers 4, 5: consumer warpgroup 0's, 1's turn to issue */
#define FW_PRODUCER_REGS 24
#define FW_CONSUMER_REGS 240 /* 128 x (24 + 2 x 240) <= 64k registers */
#define LOG2E 1.4426950408889634f

size_t attention_wgmma_bwd_smem(int D); /* attention_wgmma_bwd.cu */

struct wg_fwd_params {
    bf16 *o;        /* (Tq, Hq, D), q_stride elements between rows */
    float *lse;     /* (Tq, Hq) */
    int64_t Tq, q_pos0, q_stride;
    int Hq, G;
    float scale;
};

/* Shared memory: the Q tile (FW_ROWS x D), K and V of FW_STAGES stages (FW_KEYS x D each), bf16
 * in 64-column blocks (hopper.cuh), then the mbarriers (Q; full and empty of K and V per stage),
 * and 1024 bytes to align the base. */
static size_t fw_smem_bytes(int D) {
    return 1024 + (size_t)(FW_ROWS + 2 * FW_STAGES * FW_KEYS) * D * 2 + 8 * (1 + 4 * FW_STAGES);
}

/* Barrier addresses: Q, then full K, empty K, full V, empty V of each stage. */
#define BAR_FULL_K(b, s) ((b) + 8 * (1 + (s)))
#define BAR_EMPTY_K(b, s) ((b) + 8 * (1 + FW_STAGES + (s)))
#define BAR_FULL_V(b, s) ((b) + 8 * (1 + 2 * FW_STAGES + (s)))
#define BAR_EMPTY_V(b, s) ((b) + 8 * (1 + 3 * FW_STAGES + (s)))

/* The producer thread: Q once, then K and V of tiles ntiles - 1 .. 0 through the stages. */
template <int D>
static __device__ __forceinline__ void fwd_produce(const CUtensorMap *tm_q, const CUtensorMap *tm_k,
                                                   const CUtensorMap *tm_v, uint32_t sq, uint32_t sk,
                                                   uint32_t sv, uint32_t bars, int h, int kvh,
                                                   int i0, int ntiles) {
    constexpr uint32_t KV_BYTES = FW_KEYS * D * 2;
    tma_prefetch_map(tm_k);
    tma_prefetch_map(tm_v);
    mbar_expect_tx(bars, FW_ROWS * D * 2);
    tma_load_tile<D>(sq, tm_q, h * D, i0, FW_ROWS, bars);
    for (int it = 0; it < ntiles; it++) {
        const int st = it % FW_STAGES, j0 = (ntiles - 1 - it) * FW_KEYS;
        const uint32_t ph = (it / FW_STAGES) & 1;
        mbar_wait(BAR_EMPTY_K(bars, st), ph ^ 1);
        mbar_expect_tx(BAR_FULL_K(bars, st), KV_BYTES);
        tma_load_tile<D>(sk + st * KV_BYTES, tm_k, kvh * D, j0, FW_KEYS, BAR_FULL_K(bars, st));
        mbar_wait(BAR_EMPTY_V(bars, st), ph ^ 1);
        mbar_expect_tx(BAR_FULL_V(bars, st), KV_BYTES);
        tma_load_tile<D>(sv + st * KV_BYTES, tm_v, kvh * D, j0, FW_KEYS, BAR_FULL_V(bars, st));
    }
}

/* S = Q K^T for this warpgroup's 64 rows (qa: their first row in column block 0) and the FW_KEYS
 * keys of a K stage (kt), issued as one commit group. */
template <int D>
static __device__ __forceinline__ void fwd_qk(float (&s)[FW_KEYS / 2], uint32_t qa, uint32_t kt) {
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
        const uint64_t da = wg_desc(qa + (ks / 4) * FW_ROWS * 128 + (ks % 4) * 32, 16, 1024);
        const uint64_t db = wg_desc(kt + (ks / 4) * FW_KEYS * 128 + (ks % 4) * 32, 16, 1024);
        wgmma_ss_n128(s, da, db, ks > 0);
    }
    wgmma_commit();
}

/* O += P V: P (64 x FW_KEYS) from registers, V (FW_KEYS x D) of a stage (vt) as MN-major B. */
template <int D>
static __device__ __forceinline__ void fwd_pv(float (&o)[D / 2], const uint32_t (&pf)[FW_KEYS / 16][4],
                                              uint32_t vt) {
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < FW_KEYS / 16; kk++) {
        const uint64_t db = wg_desc(vt + kk * 16 * 128, FW_KEYS * 128, 1024);
        wgmma_rs<D>(o, pf[kk], db, 1);
    }
    wgmma_commit();
}

/* Online softmax of one tile in place: s becomes P (unnormalised, exp2 units); m (raw score units)
 * and the thread's partial row sums l move on; alpha is the factor O must take. With mask, column
 * c of row half h counts only when c <= lim[h]. */
static __device__ __forceinline__ void fwd_softmax(float (&s)[FW_KEYS / 2], float (&m)[2],
                                                   float (&l)[2], float (&alpha)[2], bool mask,
                                                   const int (&lim)[2], float sl2, int tq) {
    float mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f}, msc[2];
#pragma unroll
    for (int j = 0; j < FW_KEYS / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int h = e >> 1, c = 8 * j + 2 * tq + (e & 1);
            if (mask && c > lim[h]) s[4 * j + e] = -INFINITY;
            mx[h] = fmaxf(mx[h], s[4 * j + e]);
        }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
        const float mn = fmaxf(m[h], mx[h]);
        msc[h] = mn == -INFINITY ? 0.0f : mn * sl2; /* no key yet: every p is 0 */
        alpha[h] = fast_exp2(m[h] * sl2 - msc[h]);
        m[h] = mn;
    }
#pragma unroll
    for (int j = 0; j < FW_KEYS / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int h = e >> 1;
            const float pv = fast_exp2(fmaf(s[4 * j + e], sl2, -msc[h]));
            s[4 * j + e] = pv;
            sum[h] += pv;
        }
    l[0] = l[0] * alpha[0] + sum[0];
    l[1] = l[1] * alpha[1] + sum[1];
}

/* Causal limits of the two rows this thread holds against a tile starting at key j0 (the last
 * column each row sees, -1 for none) and whether the tile needs them at all for this warpgroup. */
static __device__ __forceinline__ bool tile_limits(int (&lim)[2], int64_t pos0, int64_t pos_wg,
                                                   int64_t j0) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        int64_t e = pos0 + 8 * h - j0;
        lim[h] = (int)(e < -1 ? -1 : e > FW_KEYS ? FW_KEYS : e);
    }
    return j0 + FW_KEYS - 1 > pos_wg;
}

template <int D>
static __device__ __forceinline__ void fwd_consume(const struct wg_fwd_params &p, uint32_t sq,
                                                   uint32_t sk, uint32_t sv, uint32_t bars, int h,
                                                   int64_t i0, int ntiles) {
    constexpr uint32_t KV_BYTES = FW_KEYS * D * 2;
    const int cw = threadIdx.x / 128 - 1, lt = threadIdx.x % 128, warp = lt / 32, lane = lt % 32;
    const int tq = lane % 4;
    const int64_t r0 = i0 + cw * 64 + warp * 16 + lane / 4; /* this thread's rows: r0, r0 + 8 */
    const int64_t pos0 = p.q_pos0 + r0, pos_wg = p.q_pos0 + i0 + cw * 64;
    const float sl2 = p.scale * LOG2E;
    const uint32_t qa = sq + cw * 64 * 128;
    float o[D / 2], s[FW_KEYS / 2], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, alpha[2];
    uint32_t pf[FW_KEYS / 16][4];
    int lim[2];
#pragma unroll
    for (int i = 0; i < D / 2; i++) o[i] = 0.0f;
    mbar_wait(bars, 0);
    /* The two warpgroups take turns to issue their products (named barriers FW_TURN + cw), so
     * that one's softmax runs while the other's products do; warpgroup 0 starts. */
    if (cw == 1) named_bar_arrive(FW_TURN, 256);
    /* Tile ntiles - 1 (it = 0): S, softmax, P. */
    mbar_wait(BAR_FULL_K(bars, 0), 0);
    named_bar_sync(FW_TURN + cw, 256);
    fwd_qk<D>(s, qa, sk);
    named_bar_arrive(FW_TURN + (cw ^ 1), 256);
    wgmma_wait<0>();
    acc_fence(s);
    mbar_arrive_warp(BAR_EMPTY_K(bars, 0));
    bool mask = tile_limits(lim, pos0, pos_wg, (int64_t)(ntiles - 1) * FW_KEYS);
    fwd_softmax(s, m, l, alpha, mask, lim, sl2, tq);
    wg_acc_to_a(pf, s);
    for (int it = 1; it < ntiles; it++) {
        const int st = it % FW_STAGES, pst = (it - 1) % FW_STAGES;
        const uint32_t ph = (it / FW_STAGES) & 1, pph = ((it - 1) / FW_STAGES) & 1;
        mbar_wait(BAR_FULL_K(bars, st), ph);
        named_bar_sync(FW_TURN + cw, 256);
        fwd_qk<D>(s, qa, sk + st * KV_BYTES);
        mbar_wait(BAR_FULL_V(bars, pst), pph);
        fwd_pv<D>(o, pf, sv + pst * KV_BYTES);
        named_bar_arrive(FW_TURN + (cw ^ 1), 256);
        wgmma_wait<1>(); /* S of this tile done; P V of the previous one may run on */
        acc_fence(s);
        mbar_arrive_warp(BAR_EMPTY_K(bars, st));
        mask = tile_limits(lim, pos0, pos_wg, (int64_t)(ntiles - 1 - it) * FW_KEYS);
        fwd_softmax(s, m, l, alpha, mask, lim, sl2, tq);
        wgmma_wait<0>();
        acc_fence(o);
        mbar_arrive_warp(BAR_EMPTY_V(bars, pst));
#pragma unroll
        for (int i = 0; i < D / 2; i++) o[i] *= alpha[(i >> 1) & 1];
        wg_acc_to_a(pf, s);
    }
    const int lst = (ntiles - 1) % FW_STAGES;
    mbar_wait(BAR_FULL_V(bars, lst), ((ntiles - 1) / FW_STAGES) & 1);
    named_bar_sync(FW_TURN + cw, 256);
    fwd_pv<D>(o, pf, sv + lst * KV_BYTES);
    if (cw == 0) named_bar_arrive(FW_TURN + 1, 256); /* every turn taken is given back once */
    wgmma_wait<0>();
    acc_fence(o);
    mbar_arrive_warp(BAR_EMPTY_V(bars, lst));
    /* Row sums over the quad, normalise, store O and lse. */
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        float lh = l[hh];
        lh += __shfl_xor_sync(0xffffffffu, lh, 1);
        lh += __shfl_xor_sync(0xffffffffu, lh, 2);
        const int64_t r = r0 + 8 * hh;
        if (r >= p.Tq) continue;
        const float inv = lh > 0.0f ? 1.0f / lh : 0.0f;
        bf16 *orow = p.o + r * p.q_stride + (int64_t)h * D + 2 * tq;
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            *(__nv_bfloat162 *)(orow + 8 * j) =
                __floats2bfloat162_rn(o[4 * j + 2 * hh] * inv, o[4 * j + 2 * hh + 1] * inv);
        if (tq == 0) p.lse[r * p.Hq + h] = lh > 0.0f ? m[hh] * p.scale + logf(lh) : -INFINITY;
    }
}

template <int D>
static __global__ void __launch_bounds__(FW_THREADS, 1)
    att_fwd_wgmma_kernel(const __grid_constant__ CUtensorMap tm_q,
                         const __grid_constant__ CUtensorMap tm_k,
                         const __grid_constant__ CUtensorMap tm_v, struct wg_fwd_params p) {
    constexpr uint32_t KV_BYTES = FW_KEYS * D * 2;
    extern __shared__ unsigned char smraw[];
    const uint32_t sq = (smem_u32(smraw) + 1023) & ~1023u;
    const uint32_t sk = sq + FW_ROWS * D * 2, sv = sk + FW_STAGES * KV_BYTES;
    const uint32_t bars = sv + FW_STAGES * KV_BYTES;
    const int h = blockIdx.y;
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FW_ROWS;
    const int64_t last = (i0 + FW_ROWS < p.Tq ? i0 + FW_ROWS : p.Tq) - 1;
    const int ntiles = (int)((p.q_pos0 + last) / FW_KEYS) + 1;
    if (threadIdx.x == 0) {
        mbar_init(bars, 1);
        for (int s = 0; s < FW_STAGES; s++) {
            mbar_init(BAR_FULL_K(bars, s), 1);
            mbar_init(BAR_EMPTY_K(bars, s), 8); /* one arrival per consumer warp */
            mbar_init(BAR_FULL_V(bars, s), 1);
            mbar_init(BAR_EMPTY_V(bars, s), 8);
        }
        mbar_init_fence();
    }
    __syncthreads();
    if (threadIdx.x < 128) {
        regs_release<FW_PRODUCER_REGS>();
        if (threadIdx.x == 0)
            fwd_produce<D>(&tm_q, &tm_k, &tm_v, sq, sk, sv, bars, h, h / p.G, (int)i0, ntiles);
        return;
    }
    regs_claim<FW_CONSUMER_REGS>();
    fwd_consume<D>(p, sq, sk, sv, bars, h, i0, ntiles);
}

template <int D>
static void fwd_launch(void *out, float *lse, const void *q, const void *k, const void *v,
                       const struct attn_shape *s, cudaStream_t st) {
    CUtensorMap tq, tk, tv;
    tmap_bf16_2d(&tq, q, (int64_t)s->Hq * D, s->Tq, s->q_stride, FW_ROWS);
    tmap_bf16_2d(&tk, k, (int64_t)s->Hkv * D, s->Tk, s->kv_stride, FW_KEYS);
    tmap_bf16_2d(&tv, v, (int64_t)s->Hkv * D, s->Tk, s->kv_stride, FW_KEYS);
    struct wg_fwd_params p = {(bf16 *)out, lse, s->Tq, s->q_pos0, s->q_stride, s->Hq,
                              s->Hq / s->Hkv, s->scale};
    const size_t smem = fw_smem_bytes(D);
    CUDA_CHECK(cudaFuncSetAttribute(att_fwd_wgmma_kernel<D>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)ceil_div(s->Tq, FW_ROWS), (unsigned)s->Hq);
    att_fwd_wgmma_kernel<D><<<grid, FW_THREADS, smem, st>>>(tq, tk, tv, p);
    CUDA_CHECK_LAST();
}
#endif /* INFLLM_WGMMA */

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" int attention_wgmma_supported(const struct attn_shape *s) {
#ifdef INFLLM_WGMMA
    if ((s->D != 64 && s->D != 128) || s->Hkv <= 0 || s->Hq % s->Hkv != 0) return 0;
    if (s->q_stride % 8 != 0 || s->kv_stride % 8 != 0) return 0; /* 16-byte rows */
    if (s->q_stride < (int64_t)s->Hq * s->D || s->kv_stride < (int64_t)s->Hkv * s->D) return 0;
    if (s->Tk >= INT32_MAX || s->Tq >= INT32_MAX) return 0; /* TMA coordinates are int32 */
    int dev, major, minor, smem;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    const size_t need = fw_smem_bytes(s->D) > attention_wgmma_bwd_smem(s->D)
                            ? fw_smem_bytes(s->D)
                            : attention_wgmma_bwd_smem(s->D);
    return major == 9 && minor == 0 && (size_t)smem >= need ? 1 : 0;
#else
    (void)s;
    return 0; /* built without sm_90a kernels */
#endif
}

extern "C" int attention_wgmma_forward(void *out, float *lse, const void *q, const void *k,
                                       const void *v, const struct attn_shape *s,
                                       const struct gpu_ctx *g) {
    if (!attention_wgmma_supported(s)) return 0;
    if (!aligned16(q) || !aligned16(k) || !aligned16(v) || !aligned16(out)) return 0;
#ifdef INFLLM_WGMMA
    if (s->Tq == 0) return 1;
    if (s->D == 64) fwd_launch<64>(out, lse, q, k, v, s, stream_of(g));
    else fwd_launch<128>(out, lse, q, k, v, s, stream_of(g));
#endif
    return 1;
}
