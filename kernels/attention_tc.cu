/*
 * attention_tc.cu: the tensor-core forward of stage 3 (and of dense attention): bf16 mma.sync
 * m16n8k16 with fp32 accumulation, online softmax in registers (flash-attention 2 algebra).
 *
 * Dimensions as attention.h; G = Hq / Hkv divides 64, D is 64 or 128, key blocks of 64.
 * A thread block takes 64 query rows of one KV group: 64 / G consecutive tokens x the G heads of
 * the group, which share each token's selection (InfLLM-V2 selects per token and KV group). It
 * walks, in ascending order, the union of its tokens' selected blocks (dense: every block up to
 * the last token's), one 64-key block at a time: K and V of the block in shared memory, S = Q K^T
 * on tensor cores, each row masked to its own token's blocks and causal positions, P V on tensor
 * cores with P taken straight from the S accumulators. 4 warps, 16 rows each; a warp skips the
 * blocks of the union that none of its rows selected.
 *
 * Fragment layouts of mma.m16n8k16: attention_impl.cuh (with the mma and ldmatrix helpers).
 * Shared rows are padded by 8 bf16 so the fragment loads of 8 rows hit 32 different banks.
 */
#include "attention_impl.cuh"

#define TC_ROWS 64
#define TC_KEYS 64
#define TC_THREADS 128

/* Shared memory: Q, K, V tiles (64 x (D + 8) bf16 each), then per-token selection bitmaps
 * (tokens x words) and their union (words), words = ceil(nblk / 32). */
static size_t tc_smem_bytes(int D, int tokens, int words) {
    return (size_t)3 * TC_ROWS * (D + 8) * sizeof(bf16) +
           (size_t)(tokens + 1) * words * sizeof(uint32_t);
}

template <int D>
static __global__ void __launch_bounds__(TC_THREADS)
    att_fwd_tc_kernel(struct att_args a, int G, int words) {
    extern __shared__ __align__(16) unsigned char smraw[];
    const int LD = D + 8, tokens = TC_ROWS / G;
    bf16 *Qs = (bf16 *)smraw, *Ks = Qs + TC_ROWS * LD, *Vs = Ks + TC_KEYS * LD;
    uint32_t *bits = (uint32_t *)(Vs + TC_KEYS * LD), *ubits = bits + tokens * words;
    const int grp = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gq = lane / 4, tq = lane % 4;
    const int64_t i0 = (int64_t)blockIdx.x * tokens;
    const float sl2 = a.scale * 1.4426950408889634f; /* scores in log2 units: exp2 below */

    /* Q tile: row r is token i0 + r / G, head grp * G + r % G. */
    for (int idx = threadIdx.x; idx < TC_ROWS * D / 8; idx += TC_THREADS) {
        int r = idx / (D / 8), c8 = (idx % (D / 8)) * 8;
        int64_t i = i0 + r / G;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (i < a.Tq)
            val = *(const uint4 *)(a.q + i * a.q_stride + (int64_t)(grp * G + r % G) * D + c8);
        *(uint4 *)(Qs + r * LD + c8) = val;
    }
    /* Blocks to visit: each token's selection as a bitmap, and their union. */
    for (int idx = threadIdx.x; idx < (tokens + 1) * words; idx += TC_THREADS) bits[idx] = 0;
    __syncthreads();
    int64_t last = i0 + tokens - 1 < a.Tq - 1 ? i0 + tokens - 1 : a.Tq - 1;
    if (a.sel) {
        for (int idx = threadIdx.x; idx < tokens * a.nsel; idx += TC_THREADS) {
            int tk = idx / a.nsel;
            int64_t i = i0 + tk;
            if (i >= a.Tq) continue;
            int32_t j = a.sel[(i * a.Hkv + grp) * a.nsel + idx % a.nsel];
            if (j < 0) continue;
            atomicOr(&bits[tk * words + j / 32], 1u << (j % 32));
            atomicOr(&ubits[j / 32], 1u << (j % 32));
        }
    } else {
        int64_t jmax = (a.q_pos0 + last) / TC_KEYS;
        for (int64_t j = threadIdx.x; j <= jmax; j += TC_THREADS)
            atomicOr(&ubits[j / 32], 1u << (j % 32));
    }
    __syncthreads();

    /* This warp's 16 rows; this thread holds rows r0 = 16 warp + g and r1 = r0 + 8. */
    uint32_t qa[D / 16][4];
    const int r0 = warp * 16 + gq, r1 = r0 + 8;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
        qa[ks][0] = ld32(Qs + r0 * LD + ks * 16 + 2 * tq);
        qa[ks][1] = ld32(Qs + r1 * LD + ks * 16 + 2 * tq);
        qa[ks][2] = ld32(Qs + r0 * LD + ks * 16 + 2 * tq + 8);
        qa[ks][3] = ld32(Qs + r1 * LD + ks * 16 + 2 * tq + 8);
    }
    const int tok[2] = {r0 / G, r1 / G};
    const bool valid[2] = {i0 + tok[0] < a.Tq, i0 + tok[1] < a.Tq};
    const int64_t pos[2] = {a.q_pos0 + i0 + tok[0], a.q_pos0 + i0 + tok[1]};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[D / 8][4];
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;

    for (int w = 0; w < words; w++) {
        uint32_t word = ubits[w];
        while (word) {
            int j = w * 32 + __ffs(word) - 1;
            word &= word - 1;
            int64_t k0 = (int64_t)j * TC_KEYS;
            __syncthreads();
            for (int idx = threadIdx.x; idx < TC_KEYS * D / 8; idx += TC_THREADS) {
                int r = idx / (D / 8), c8 = (idx % (D / 8)) * 8;
                uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
                if (k0 + r < a.Tk) {
                    int64_t off = (k0 + r) * a.kv_stride + (int64_t)grp * D + c8;
                    kv = *(const uint4 *)(a.k + off);
                    vv = *(const uint4 *)(a.v + off);
                }
                *(uint4 *)(Ks + r * LD + c8) = kv;
                *(uint4 *)(Vs + r * LD + c8) = vv;
            }
            __syncthreads();
            /* Mask: the row's token must have selected block j (sparse) and see the key. A warp
             * none of whose rows reads the block skips it (all its P would be 0: a no-op). */
            bool blk_ok[2];
#pragma unroll
            for (int h = 0; h < 2; h++)
                blk_ok[h] = valid[h] && pos[h] >= k0 &&
                            (!a.sel || ((bits[tok[h] * words + w] >> (j % 32)) & 1u));
            if (!__any_sync(0xffffffffu, blk_ok[0] || blk_ok[1])) continue;
            /* S = Q K^T for this warp's 16 rows x 64 keys. */
            float s[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
                for (int ks = 0; ks < D / 16; ks++) {
                    const bf16 *kr = Ks + (nt * 8 + gq) * LD + ks * 16 + 2 * tq;
                    mma_bf16(s[nt], qa[ks], ld32(kr), ld32(kr + 8));
                }
            }
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int h = e >> 1;
                    int64_t u = k0 + nt * 8 + 2 * tq + (e & 1);
                    bool ok = blk_ok[h] && u <= pos[h] && u < a.Tk;
                    s[nt][e] = ok ? s[nt][e] * sl2 : -INFINITY;
                    mx[h] = fmaxf(mx[h], s[nt][e]);
                }
            float alpha[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
                float mn = fmaxf(m[h], mx[h]);
                alpha[h] = mn == -INFINITY ? 1.0f : exp2f(m[h] - mn);
                m[h] = mn;
            }
            float sum[2] = {0.0f, 0.0f};
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int h = e >> 1;
                    float p = m[h] == -INFINITY ? 0.0f : exp2f(s[nt][e] - m[h]);
                    s[nt][e] = p;
                    sum[h] += p;
                }
#pragma unroll
            for (int h = 0; h < 2; h++) l[h] = l[h] * alpha[h] + sum[h];
#pragma unroll
            for (int dn = 0; dn < D / 8; dn++) {
                o[dn][0] *= alpha[0], o[dn][1] *= alpha[0];
                o[dn][2] *= alpha[1], o[dn][3] *= alpha[1];
            }
            /* O += P V: P's A fragments are the S accumulators of two neighbouring key tiles. */
#pragma unroll
            for (int k2 = 0; k2 < 4; k2++) {
                uint32_t pa[4] = {pack_bf16(s[2 * k2][0], s[2 * k2][1]),
                                  pack_bf16(s[2 * k2][2], s[2 * k2][3]),
                                  pack_bf16(s[2 * k2 + 1][0], s[2 * k2 + 1][1]),
                                  pack_bf16(s[2 * k2 + 1][2], s[2 * k2 + 1][3])};
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++) {
                    uint32_t b0, b1;
                    ldmatrix_x2_trans(b0, b1, Vs + (k2 * 16 + lane % 16) * LD + dn * 8);
                    mma_bf16(o[dn], pa, b0, b1);
                }
            }
        }
    }
    /* Row sums over the 4 threads of a row, then normalise and store. */
#pragma unroll
    for (int h = 0; h < 2; h++) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        if (!valid[h]) continue;
        int r = h ? r1 : r0;
        int64_t i = i0 + tok[h];
        int head = grp * G + r % G;
        float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        bf16 *orow = a.o + i * a.q_stride + (int64_t)head * D;
#pragma unroll
        for (int dn = 0; dn < D / 8; dn++)
            *(__nv_bfloat162 *)(orow + dn * 8 + 2 * tq) =
                __floats2bfloat162_rn(o[dn][2 * h] * inv, o[dn][2 * h + 1] * inv);
        if (tq == 0)
            a.lse[i * a.Hq + head] =
                l[h] > 0.0f ? m[h] * 0.6931471805599453f + logf(l[h]) : -INFINITY;
    }
}

bool attention_tc_forward(const struct att_args *a, const struct gpu_ctx *g) {
    int G = a->Hq / a->Hkv;
    if ((a->D != 64 && a->D != 128) || a->bs != TC_KEYS || TC_ROWS % G != 0) return false;
    if (a->q_stride % 8 != 0 || a->kv_stride % 8 != 0) return false; /* 16-byte rows */
    int tokens = TC_ROWS / G;
    int words = (int)((a->nblk + 31) / 32);
    size_t smem = tc_smem_bytes(a->D, tokens, words);
    if (smem > (227u << 10)) return false;
    dim3 grid((unsigned)ceil_div(a->Tq, tokens), (unsigned)a->Hkv);
    if (a->D == 64) {
        CUDA_CHECK(cudaFuncSetAttribute(att_fwd_tc_kernel<64>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        att_fwd_tc_kernel<64><<<grid, TC_THREADS, smem, stream_of(g)>>>(*a, G, words);
    } else {
        CUDA_CHECK(cudaFuncSetAttribute(att_fwd_tc_kernel<128>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        att_fwd_tc_kernel<128><<<grid, TC_THREADS, smem, stream_of(g)>>>(*a, G, words);
    }
    CUDA_CHECK_LAST();
    return true;
}
