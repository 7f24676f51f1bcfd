/*
 * infllmv2.cu: CUDA stages 0-2 of InfLLM-V2 (../shared/INFLLMV2.md): key compression and the
 * streaming block selection. Stage 3 (block-sparse attention) lives in attention.cu.
 *
 * Dimensions as infllmv2.h. The selection runs one thread block per (query row, KV group): the
 * group-summed stage-1 scores of that row (L1 floats) and its block scores (nblk floats) live in
 * shared memory and never reach device memory, so nothing is O(T^2). Top-k is a bitonic sort of
 * (score, block) pairs in shared memory: descending score, ascending block on ties, exactly the
 * CPU reference's order. Results are bitwise deterministic.
 */
#include "common.cuh"
#include "infllmv2.h"

#define SEL_THREADS 256
#define SEL_MAX_G 32     /* query heads per KV group held in shared memory */
#define SEL_MAX_D 256

/* Stage 0: kc[c, h, :] = mean of the window's rows (fp32 sum in row order). */
static __global__ void compress_kernel(bf16 *kc, const bf16 *k, int64_t n, int Hkv, int D,
                                       int64_t kv_stride, int ksize, int kstride) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t KD = (int64_t)Hkv * D;
    if (idx >= n * KD) return;
    int64_t c = idx / KD, hd = idx % KD;
    const bf16 *src = k + c * kstride * kv_stride + hd;
    float s = 0.0f;
    for (int r = 0; r < ksize; r++) s += bf(src[(int64_t)r * kv_stride]);
    kc[idx] = to_bf(s / (float)ksize);
}

extern "C" void infllm_compress_cuda(void *kc, const void *k, int64_t n, int Hkv, int D,
                                     int64_t kv_stride, int ksize, int kstride,
                                     const struct gpu_ctx *g) {
    int64_t total = n * Hkv * D;
    if (total <= 0) return;
    compress_kernel<<<(unsigned)ceil_div(total, 256), 256, 0, stream_of(g)>>>(
        (bf16 *)kc, (const bf16 *)k, n, Hkv, D, kv_stride, ksize, kstride);
    CUDA_CHECK_LAST();
}

struct sel_args {
    int32_t *sel;
    const bf16 *q, *k1, *k2;
    int64_t L1, L2, Tq, q_pos0, nblk, q_stride;
    int Hq, Hkv, D, nsel, sort_n;
    float scale;
    struct infllm_params p;
};

/* (score, block) precedes (score', block') in selection order. */
static __device__ __forceinline__ bool before(float s, int b, float s2, int b2) {
    return s > s2 || (s == s2 && b < b2);
}

/* Shared layout: q of the group's heads (G x D), per-head max and sum (G each), S (L1), block
 * scores and indices (sort_n each). */
static size_t select_shared_bytes(int G, int D, int64_t L1, int sort_n) {
    return sizeof(float) * ((size_t)G * D + 2 * (size_t)G + (size_t)L1) +
           (sizeof(float) + sizeof(int)) * (size_t)sort_n;
}

static __global__ void select_kernel(struct sel_args a) {
    extern __shared__ float sm[];
    int G = a.Hq / a.Hkv, D = a.D;
    int64_t i = blockIdx.x;
    int grp = blockIdx.y;
    int64_t t = a.q_pos0 + i;
    float *qs = sm, *mh = qs + G * D, *lh = mh + G, *S = lh + G, *score = S + a.L1;
    int *blk = (int *)(score + a.sort_n);
    int ks = a.p.kernel_size, st = a.p.kernel_stride, bs = a.p.block_size;
    for (int idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
        int h = grp * G + idx / D;
        qs[idx] = bf(a.q[i * a.q_stride + (int64_t)h * D + idx % D]);
    }
    __syncthreads();
    /* Visible compressed keys: K1[c] iff c*st + ks - 1 <= t; K2[e] iff e*4st + 4ks - 1 <= t. */
    int64_t nv1 = t + 1 >= ks ? (t + 1 - ks) / st + 1 : 0;
    if (nv1 > a.L1) nv1 = a.L1;
    int64_t nv2 = t + 1 >= 4 * ks ? (t + 1 - 4 * ks) / (4 * st) + 1 : 0;
    if (nv2 > a.L2) nv2 = a.L2;
    const bf16 *norm_keys = a.p.lse_approx ? a.k2 : a.k1;
    int64_t nnorm = a.p.lse_approx ? nv2 : nv1;
    int64_t KD = (int64_t)a.Hkv * D;
    __shared__ float red[32];
    /* Normaliser per head: running max and sum over the visible normalising keys. */
    for (int h = 0; h < G; h++) {
        float m = -INFINITY;
        for (int64_t e = threadIdx.x; e < nnorm; e += blockDim.x) {
            const bf16 *kr = norm_keys + e * KD + (int64_t)grp * D;
            float s = 0.0f;
            for (int d = 0; d < D; d++) s += qs[h * D + d] * bf(kr[d]);
            m = fmaxf(m, a.scale * s);
        }
        m = block_max(m, red);
        float l = 0.0f;
        for (int64_t e = threadIdx.x; e < nnorm; e += blockDim.x) {
            const bf16 *kr = norm_keys + e * KD + (int64_t)grp * D;
            float s = 0.0f;
            for (int d = 0; d < D; d++) s += qs[h * D + d] * bf(kr[d]);
            l += expf(a.scale * s - m);
        }
        l = block_sum(l, red);
        if (threadIdx.x == 0) {
            mh[h] = m;
            lh[h] = l;
        }
        __syncthreads();
    }
    /* Stage 1: S[c] = sum over heads of exp(scale q.K1[c] - m) / l, 0 when invisible or l = 0. */
    for (int64_t c = threadIdx.x; c < a.L1; c += blockDim.x) {
        float acc = 0.0f;
        if (c < nv1) {
            const bf16 *kr = a.k1 + c * KD + (int64_t)grp * D;
            for (int h = 0; h < G; h++) {
                if (!(lh[h] > 0.0f)) continue;
                float s = 0.0f;
                for (int d = 0; d < D; d++) s += qs[h * D + d] * bf(kr[d]);
                acc += expf(a.scale * s - mh[h]) / lh[h];
            }
        }
        S[c] = acc;
    }
    __syncthreads();
    /* Stage 2a: max-pool over the compressed keys overlapping each block, then forced blocks. */
    int64_t bt = t / bs;
    int per = bs / st, back = ks / st - 1;
    for (int j = threadIdx.x; j < a.sort_n; j += blockDim.x) {
        float v = -INFINITY;
        if (j < a.nblk) {
            int64_t lo = (int64_t)j * per - back, hi = (int64_t)(j + 1) * per - 1;
            if (lo < 0) lo = 0;
            if (hi > nv1 - 1) hi = nv1 - 1;
            for (int64_t c = lo; c <= hi; c++) v = fmaxf(v, S[c]);
            if (j < a.p.init_blocks || (j <= bt && j >= bt - a.p.local_blocks)) v = INFINITY;
        }
        score[j] = v;
        blk[j] = j < a.nblk ? j : INT32_MAX;
    }
    __syncthreads();
    /* Stage 2b: bitonic sort into selection order. */
    for (int k = 2; k <= a.sort_n; k <<= 1) {
        for (int jj = k >> 1; jj > 0; jj >>= 1) {
            for (int x = threadIdx.x; x < a.sort_n; x += blockDim.x) {
                int y = x ^ jj;
                if (y <= x) continue;
                bool up = (x & k) == 0;
                bool swap = up ? before(score[y], blk[y], score[x], blk[x])
                               : before(score[x], blk[x], score[y], blk[y]);
                if (swap) {
                    float ts = score[x];
                    score[x] = score[y];
                    score[y] = ts;
                    int tb = blk[x];
                    blk[x] = blk[y];
                    blk[y] = tb;
                }
            }
            __syncthreads();
        }
    }
    /* The first nsel, minus blocks past b(t), written ascending: thread 0 (nsel is small). */
    if (threadIdx.x == 0) {
        int32_t *out = a.sel + (i * a.Hkv + grp) * a.nsel;
        int n = 0;
        int take = a.nsel < a.sort_n ? a.nsel : a.sort_n;
        for (int r = 0; r < take; r++) {
            int b = blk[r];
            if (b <= bt && b < a.nblk) {
                int pos = n++;
                while (pos > 0 && out[pos - 1] > b) {
                    out[pos] = out[pos - 1];
                    pos--;
                }
                out[pos] = b;
            }
        }
        for (int r = n; r < a.nsel; r++) out[r] = -1;
    }
}

extern "C" void infllm_select_cuda(int32_t *sel, const void *q, const void *k1, int64_t L1,
                                   const void *k2, int64_t L2, const struct attn_shape *s,
                                   const struct infllm_params *p, const struct gpu_ctx *g) {
    if (s->Tq == 0) return;
    struct sel_args a;
    a.sel = sel;
    a.q = (const bf16 *)q, a.k1 = (const bf16 *)k1, a.k2 = (const bf16 *)k2;
    a.L1 = L1, a.L2 = L2, a.Tq = s->Tq, a.q_pos0 = s->q_pos0, a.q_stride = s->q_stride;
    a.Hq = s->Hq, a.Hkv = s->Hkv, a.D = s->D, a.scale = s->scale, a.p = *p;
    a.nsel = infllm_num_selected(p);
    a.nblk = ceil_div(s->Tk, p->block_size);
    int sort_n = 1;
    while (sort_n < a.nblk) sort_n <<= 1;
    a.sort_n = sort_n;
    int G = s->Hq / s->Hkv;
    CHECKF(G <= SEL_MAX_G && s->D <= SEL_MAX_D, "selection: group %d or head dim %d too large", G,
           s->D);
    size_t smem = select_shared_bytes(G, s->D, L1, sort_n);
    CUDA_CHECK(cudaFuncSetAttribute(select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
    dim3 grid((unsigned)s->Tq, (unsigned)s->Hkv);
    select_kernel<<<grid, SEL_THREADS, smem, stream_of(g)>>>(a);
    CUDA_CHECK_LAST();
}
