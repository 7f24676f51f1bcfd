/*
 * infllmv2.cu: CUDA stages 0-2 of InfLLM-V2 (../shared/INFLLMV2.md): key compression and the
 * streaming block selection. Stage 3 (block-sparse attention) lives in attention.cu.
 *
 * Dimensions as infllmv2.h. The selection runs one thread block per (tile of query rows, KV group):
 * compressed keys stream through shared-memory tiles shared by the tile's rows; each row's
 * group-summed stage-1 scores are pooled into its block scores (nblk floats in shared memory) as
 * the tiles go by, so nothing is O(T^2) and nothing reaches device memory but the selection. Top-k
 * is a bitonic sort of (score, block) pairs in shared memory: descending score, ascending block on
 * ties, the CPU reference's order. Results are bitwise deterministic.
 * This CUDA-core kernel is the exact reference on the GPU and takes the shapes the tensor-core
 * selection of infllmv2_tc.cu does not (infllm_select_tc_supported: D 64/128, G up to 32, the
 * default windows cover every model shape).
 */
#include "infllmv2_impl.cuh"

#define SEL_THREADS 256
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
    int Hq, Hkv, D, nsel, sort_n, rows;
    float scale;
    struct infllm_params p;
};

/* (score, block) precedes (score', block') in selection order. */
static __device__ __forceinline__ bool before(float s, int b, float s2, int b2) {
    return s > s2 || (s == s2 && b < b2);
}

#define SEL_TILE 64 /* compressed keys per shared-memory tile */

/* Shared layout (floats unless said): q of the block's rows and the group's heads
 * (rows * G, D + 4), a tile of compressed keys (SEL_TILE, D + 4), per (row, head) scores of the
 * tile (rows * G, SEL_TILE), per (row, head) normaliser m and l, the tile's group sums
 * (rows, SEL_TILE), block scores (rows, nblk), and the sort buffer of one row (sort_n floats and
 * sort_n ints). Rows of 4-float padding keep the float4 reads of different keys in different banks. */
struct sel_smem {
    float *q, *kt, *sx, *m, *l, *st, *bsc, *skey;
    int *sidx;
};

static __host__ __device__ size_t select_smem_floats(int rows, int G, int D, int64_t nblk,
                                                     int sort_n) {
    return (size_t)rows * G * (D + 4) + (size_t)SEL_TILE * (D + 4) + (size_t)rows * G * SEL_TILE +
           2 * (size_t)rows * G + (size_t)rows * SEL_TILE + (size_t)rows * nblk + 2 * (size_t)sort_n;
}

static __device__ struct sel_smem carve(float *sm, int rows, int G, int D, int64_t nblk,
                                        int sort_n) {
    struct sel_smem s;
    s.q = sm;
    s.kt = s.q + rows * G * (D + 4);
    s.sx = s.kt + SEL_TILE * (D + 4);
    s.m = s.sx + rows * G * SEL_TILE;
    s.l = s.m + rows * G;
    s.st = s.l + rows * G;
    s.bsc = s.st + rows * SEL_TILE;
    s.skey = s.bsc + rows * nblk;
    s.sidx = (int *)(s.skey + sort_n);
    return s;
}

/* Loads keys [c0, c0 + n) of KV head g (row stride KD) into the padded tile, zero past n. */
static __device__ void load_tile(float *kt, const bf16 *keys, int64_t c0, int n, int64_t KD, int g,
                                 int D) {
    for (int idx = threadIdx.x; idx < SEL_TILE * D; idx += blockDim.x) {
        int c = idx / D, d = idx % D;
        kt[c * (D + 4) + d] = c < n ? bf(keys[(c0 + c) * KD + (int64_t)g * D + d]) : 0.0f;
    }
}

/* sx[rh][c] = scale * q[rh] . kt[c] for all (row, head) rh and tile keys c; each thread takes one
 * key and four (row, head) vectors at a time, reading both through float4. */
static __device__ void tile_dots(float *sx, const float *qs, const float *kt, int RG, int D,
                                 float scale) {
    int c = threadIdx.x % SEL_TILE, part = threadIdx.x / SEL_TILE, parts = blockDim.x / SEL_TILE;
    const float *kr = kt + c * (D + 4);
    for (int rh0 = part * 4; rh0 < RG; rh0 += parts * 4) {
        float acc[4] = {0, 0, 0, 0};
        int nr = RG - rh0 < 4 ? RG - rh0 : 4;
        for (int d = 0; d < D; d += 4) {
            float4 k4 = *(const float4 *)(kr + d);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (i >= nr) break;
                float4 q4 = *(const float4 *)(qs + (rh0 + i) * (D + 4) + d);
                acc[i] += q4.x * k4.x + q4.y * k4.y + q4.z * k4.z + q4.w * k4.w;
            }
        }
        for (int i = 0; i < nr; i++) sx[(rh0 + i) * SEL_TILE + c] = scale * acc[i];
    }
}

/* Visible compressed keys of window ksize / stride for a token at t, at most L. */
static __device__ __forceinline__ int64_t n_visible(int64_t t, int ks, int st, int64_t L) {
    int64_t n = t + 1 >= ks ? (t + 1 - ks) / st + 1 : 0;
    return n < L ? n : L;
}

/* One block: `rows` consecutive query rows x one KV group. Stage 1 streams the keys through shared
 * tiles (normaliser pass over K2 or K1, then the K1 pass that sums probabilities over the group's
 * heads), stage 2 max-pools into per-row block scores as tiles go by, then each row's top-k. */
static __global__ void select_kernel(struct sel_args a) {
    extern __shared__ float sm[];
    int G = a.Hq / a.Hkv, D = a.D, R = a.rows, RG = R * G;
    int grp = blockIdx.y;
    int64_t i0 = (int64_t)blockIdx.x * R;
    struct sel_smem s = carve(sm, R, G, D, a.nblk, a.sort_n);
    int ks = a.p.kernel_size, st = a.p.kernel_stride, bs = a.p.block_size;
    int64_t KD = (int64_t)a.Hkv * D;
    for (int idx = threadIdx.x; idx < RG * D; idx += blockDim.x) {
        int rh = idx / D, d = idx % D, r = rh / G, h = grp * G + rh % G;
        int64_t i = i0 + r;
        s.q[rh * (D + 4) + d] = i < a.Tq ? bf(a.q[i * a.q_stride + (int64_t)h * D + d]) : 0.0f;
    }
    for (int idx = threadIdx.x; idx < RG; idx += blockDim.x) {
        s.m[idx] = -INFINITY;
        s.l[idx] = 0.0f;
    }
    for (int64_t idx = threadIdx.x; idx < (int64_t)R * a.nblk; idx += blockDim.x) s.bsc[idx] = -INFINITY;
    /* Normaliser: running max and rescaled sum, per (row, head), over the visible keys in order. */
    const bf16 *nk = a.p.lse_approx ? a.k2 : a.k1;
    int nks = a.p.lse_approx ? 4 * ks : ks, nst = a.p.lse_approx ? 4 * st : st;
    int64_t Ln = a.p.lse_approx ? a.L2 : a.L1;
    int64_t last = a.q_pos0 + (i0 + R - 1 < a.Tq ? i0 + R - 1 : a.Tq - 1);
    int64_t nn_max = n_visible(last, nks, nst, Ln);
    for (int64_t c0 = 0; c0 < nn_max; c0 += SEL_TILE) {
        int n = (int)(nn_max - c0 < SEL_TILE ? nn_max - c0 : SEL_TILE);
        __syncthreads();
        load_tile(s.kt, nk, c0, n, KD, grp, D);
        __syncthreads();
        tile_dots(s.sx, s.q, s.kt, RG, D, a.scale);
        __syncthreads();
        for (int rh = threadIdx.x; rh < RG; rh += blockDim.x) {
            int64_t t = a.q_pos0 + i0 + rh / G;
            int64_t nv = n_visible(t, nks, nst, Ln) - c0;
            float m = s.m[rh], l = s.l[rh];
            for (int c = 0; c < n && c < nv; c++) {
                float x = s.sx[rh * SEL_TILE + c];
                if (x > m) {
                    l = l * expf(m - x);
                    m = x;
                }
                l += expf(x - m);
            }
            s.m[rh] = m;
            s.l[rh] = l;
        }
    }
    /* K1 pass: group sums of probabilities, pooled into block scores as the tiles go by. */
    int per = bs / st, back = (ks - 1) / st;
    int64_t n1_max = n_visible(last, ks, st, a.L1);
    for (int64_t c0 = 0; c0 < n1_max; c0 += SEL_TILE) {
        int n = (int)(n1_max - c0 < SEL_TILE ? n1_max - c0 : SEL_TILE);
        __syncthreads();
        load_tile(s.kt, a.k1, c0, n, KD, grp, D);
        __syncthreads();
        tile_dots(s.sx, s.q, s.kt, RG, D, a.scale);
        __syncthreads();
        for (int idx = threadIdx.x; idx < R * SEL_TILE; idx += blockDim.x) {
            int r = idx / SEL_TILE, c = idx % SEL_TILE;
            int64_t t = a.q_pos0 + i0 + r;
            float acc = 0.0f;
            if (c < n && c0 + c < n_visible(t, ks, st, a.L1))
                for (int h = 0; h < G; h++) {
                    float l = s.l[r * G + h];
                    if (l > 0.0f) acc += expf(s.sx[(r * G + h) * SEL_TILE + c] - s.m[r * G + h]) / l;
                }
            s.st[idx] = acc;
        }
        __syncthreads();
        /* Blocks whose pooling window meets this tile: max over the window's visible keys here. */
        int64_t j_lo = c0 / per, j_hi = (c0 + n - 1 + back) / per;
        if (j_hi > a.nblk - 1) j_hi = a.nblk - 1;
        int64_t nj = j_hi - j_lo + 1;
        for (int64_t idx = threadIdx.x; idx < R * nj; idx += blockDim.x) {
            int r = (int)(idx / nj);
            int64_t j = j_lo + idx % nj;
            int64_t t = a.q_pos0 + i0 + r;
            int64_t nv = n_visible(t, ks, st, a.L1);
            int64_t lo = j * per - back, hi = (j + 1) * per - 1;
            if (lo < c0) lo = c0;
            if (hi > c0 + n - 1) hi = c0 + n - 1;
            if (hi > nv - 1) hi = nv - 1;
            float v = -INFINITY;
            for (int64_t c = lo; c <= hi; c++) v = fmaxf(v, s.st[r * SEL_TILE + (c - c0)]);
            float *b = &s.bsc[r * a.nblk + j];
            *b = fmaxf(*b, v);
        }
    }
    /* Top-k per row: forced blocks to +inf, sort (score desc, block asc), keep the first nsel that
     * are not past the row's own block, written ascending. */
    for (int r = 0; r < R; r++) {
        int64_t i = i0 + r;
        if (i >= a.Tq) break;
        int64_t t = a.q_pos0 + i, bt = t / bs;
        __syncthreads();
        for (int j = threadIdx.x; j < a.sort_n; j += blockDim.x) {
            float v = -INFINITY;
            if (j < a.nblk) {
                v = s.bsc[r * a.nblk + j];
                if (j < a.p.init_blocks || (j <= bt && j >= bt - a.p.local_blocks)) v = INFINITY;
            }
            s.skey[j] = v;
            s.sidx[j] = j < a.nblk ? j : INT32_MAX;
        }
        __syncthreads();
        for (int k = 2; k <= a.sort_n; k <<= 1)
            for (int jj = k >> 1; jj > 0; jj >>= 1) {
                for (int x = threadIdx.x; x < a.sort_n; x += blockDim.x) {
                    int y = x ^ jj;
                    if (y <= x) continue;
                    bool up = (x & k) == 0;
                    bool swap = up ? before(s.skey[y], s.sidx[y], s.skey[x], s.sidx[x])
                                   : before(s.skey[x], s.sidx[x], s.skey[y], s.sidx[y]);
                    if (swap) {
                        float tk = s.skey[x];
                        s.skey[x] = s.skey[y];
                        s.skey[y] = tk;
                        int ti = s.sidx[x];
                        s.sidx[x] = s.sidx[y];
                        s.sidx[y] = ti;
                    }
                }
                __syncthreads();
            }
        /* Mark the kept blocks in the (now free) key buffer, then write them ascending: thread j's
         * position is the number of kept blocks below j (a block-wide count, done by warp 0). */
        int take = a.nsel < a.sort_n ? a.nsel : a.sort_n;
        __syncthreads();
        int *mark = (int *)s.skey;
        int keep_b[4];
        for (int q = 0; q < 4; q++) keep_b[q] = -1;
        for (int x = threadIdx.x; x < take; x += blockDim.x) {
            int b = s.sidx[x];
            keep_b[x / blockDim.x] = b <= bt && b < a.nblk ? b : -1;
        }
        __syncthreads();
        for (int j = threadIdx.x; j < a.sort_n; j += blockDim.x) mark[j] = 0;
        __syncthreads();
        for (int q = 0; q < 4; q++)
            if (keep_b[q] >= 0) mark[keep_b[q]] = 1;
        __syncthreads();
        if (threadIdx.x == 0) {
            int32_t *out = a.sel + (i * a.Hkv + grp) * a.nsel;
            int n = 0;
            for (int j = 0; j < a.nblk && n < a.nsel; j++)
                if (mark[j]) out[n++] = j;
            for (int q = n; q < a.nsel; q++) out[q] = -1;
        }
    }
}

extern "C" void infllm_select_cuda(int32_t *sel, const void *q, const void *k1, int64_t L1,
                                   const void *k2, int64_t L2, const struct attn_shape *s,
                                   const struct infllm_params *p, const struct gpu_ctx *g) {
    CHECKF(s->doc_start == NULL, "selection: a document is its own call (doc_start must be NULL)");
    if (s->Tq == 0) return;
    if (infllm_select_tc_supported(s, p)) {
        infllm_select_tc(sel, (const bf16 *)q, (const bf16 *)k1, L1, (const bf16 *)k2, L2, s, p, g);
        return;
    }
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
    CHECKF(s->D % 4 == 0 && s->D <= SEL_MAX_D, "selection: head dim %d (a multiple of 4 up to %d)",
           s->D, SEL_MAX_D);
    CHECKF(a.nsel <= 4 * SEL_THREADS, "selection: %d blocks kept per query exceed %d", a.nsel,
           4 * SEL_THREADS);
    /* As many rows per block as fit in 200 KB of shared memory (key tiles are shared by them). */
    int rows = 16;
    while (rows > 1 && select_smem_floats(rows, G, s->D, a.nblk, sort_n) * 4 > (200u << 10)) rows /= 2;
    size_t smem = select_smem_floats(rows, G, s->D, a.nblk, sort_n) * 4;
    CHECKF(smem <= smem_optin_bytes(), "selection: %zu bytes of shared memory for T = %lld", smem,
           (long long)s->Tk);
    a.rows = rows;
    CUDA_CHECK(cudaFuncSetAttribute(select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
    dim3 grid((unsigned)ceil_div(s->Tq, rows), (unsigned)s->Hkv);
    select_kernel<<<grid, SEL_THREADS, smem, stream_of(g)>>>(a);
    CUDA_CHECK_LAST();
}
