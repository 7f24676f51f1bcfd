/*
 * infllmv2.h: InfLLM-V2 dense-sparse switchable attention (../shared/INFLLMV2.md), the fp32 CPU
 * reference of its four stages:
 *   stage 0  key compression K1 (kernel_size / kernel_stride) and K2 (4x both, with lse_approx);
 *   stage 1  group-summed importance of K1 for every query token, normalised by K2 (or exactly);
 *   stage 2  max-pool to key blocks, forced init + local blocks, top-(topk + local_blocks);
 *   stage 3  block-sparse causal attention over the selected blocks, forward and backward.
 * Stages 0-2 carry no gradient; their result, the selection, is saved for the backward.
 *
 * Dimensions and layouts as in attention.h (global positions, token-major rows). Compressed keys
 * are token-major too: kc (L, Hkv, D), so the compressed rows of a chunk of the sequence are a
 * contiguous range (what context parallelism all-gathers).
 * Selection layout: sel (Tq, Hkv, nsel) int32, each list ascending, padded at the end with -1.
 * Memory: stages 1-2 stream one query row at a time (O(L1 + nblk) scratch per thread); nothing is
 * O(T^2).
 */
#ifndef INFLLM_INFLLMV2_H
#define INFLLM_INFLLMV2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attention.h"

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

struct infllm_params {
    int kernel_size;    /* K1 window (32) */
    int kernel_stride;  /* K1 stride (16); K2 uses 4 * kernel_size / 4 * kernel_stride */
    int block_size;     /* key block (64); multiple of kernel_stride */
    int init_blocks;    /* forced first blocks (1) */
    int local_blocks;   /* window_size / block_size (32); blocks b(t)-local_blocks..b(t) forced */
    int topk;           /* dynamic budget (64); must exceed init_blocks, else the forced blocks
                           need not all fit and a token's own block can be cut */
    bool lse_approx;    /* stage-1 normaliser from K2 (true) or exact over K1 (false) */
    int64_t seq_blocks; /* blocks of the whole sequence, ceil(T / block_size): no query has more
                           to select, so a selection keeps at most this many (0: no bound) */
};

/* Number of complete windows: floor((T - ksize) / kstride) + 1, or 0 when T < ksize. */
int64_t infllm_num_windows(int64_t T, int ksize, int kstride);

/* Blocks kept per query before dropping those past its own block, the width nsel of a selection:
 * min(topk + local_blocks, seq_blocks) (the forced init blocks count within topk). A budget past
 * the sequence's blocks selects every block up to the query's own: dense attention, with buffers
 * sized by the sequence rather than the budget. Computed in 64 bits; dies when it exceeds int. */
int infllm_num_selected(const struct infllm_params *p);

/* Stage 0: kc[c, h, :] = mean of k[c*kstride .. c*kstride + ksize - 1, h, :] for c < n.
 * Row 0 of k is the first row of window 0 (callers offset k for a chunk). Sums run in row order. */
void infllm_compress_cpu(float *kc,        /* (n, Hkv, D) */
                         const float *k,   /* ((n-1)*kstride + ksize, Hkv, D), kv_stride apart */
                         int64_t n, int Hkv, int D, int64_t kv_stride, int ksize, int kstride);

/* Stage 1 for one query token at global position t and one KV head g: S[c] for c < L1,
 * the sum over the G query heads of group g of p[t,h,c] (see INFLLMV2.md); S[c] = 0 for compressed
 * keys invisible to t, and S[c] = 0 for every c when the normaliser is empty (t < 127: no NaN).
 * q_t points at the token's query row (Hq, D). k2 may be NULL when !lse_approx. */
void infllm_group_scores_cpu(float *S,            /* (L1) */
                             const float *q_t,    /* (Hq, D) */
                             int64_t t, int g,
                             const float *k1, int64_t L1,  /* (L1, Hkv, D) */
                             const float *k2, int64_t L2,  /* (L2, Hkv, D) or NULL */
                             int Hq, int Hkv, int D, float scale,
                             const struct infllm_params *p);

/* Stage 2a for token t: score[j] for blocks j < nblk: the max of S[c] over the compressed keys c
 * that overlap block j and are visible to t (-INFINITY when none), then +INFINITY for the forced
 * blocks (j < init_blocks, and b(t) - local_blocks <= j <= b(t)). Window c covers tokens
 * [c*kstride, c*kstride + ksize), so with B = block_size the overlapping c run from
 * j*B/kstride - (ksize-1)/kstride to (j+1)*B/kstride - 1 (defaults: 4j-1 .. 4j+3, the released
 * kernels' stride 4, window 5, padding 1). */
void infllm_block_scores_cpu(float *score,       /* (nblk) */
                             const float *S,     /* (L1) */
                             int64_t t, int64_t L1, int64_t nblk,
                             const struct infllm_params *p);

/* Stage 2b: the nsel highest scores (ties: lower index first; NaN ranks as -INFINITY), then blocks
 * j > b(t) dropped; the survivors written ascending into sel[0..count), the rest of sel[0..nsel)
 * set to -1. Returns count (= min(nsel, b(t) + 1) for scores from stage 2a). No allocation. */
int infllm_topk_blocks_cpu(int32_t *sel,          /* (nsel) */
                           const float *score,    /* (nblk) */
                           int64_t nblk, int nsel, int64_t t, int block_size);

/* Stages 1-2 for the query rows of a call: sel[i, g, :] for the token at q_pos0 + i.
 * k1 holds the compressed keys of the whole sequence (L1 rows), k2 likewise (L2 rows, or NULL).
 * The block count is ceil(Tk / block_size). Threads split query rows; the result does not depend
 * on the thread count. */
void infllm_select_cpu(int32_t *sel,                  /* (Tq, Hkv, nsel) */
                       const float *q,                /* (Tq, Hq, D), q_stride apart */
                       const float *k1, int64_t L1,   /* (L1, Hkv, D) */
                       const float *k2, int64_t L2,   /* (L2, Hkv, D) or NULL */
                       const struct attn_shape *s, const struct infllm_params *p);

/* Stage 3 forward: attention.h's forward restricted, for row i and head h, to the keys of the
 * blocks sel[i, h/G, :] that are <= q_pos0 + i. Each list must be strictly ascending with blocks
 * < ceil(Tk / block_size) (checked); any block_size. A row that reads no key gets out = 0 and
 * lse = -INFINITY (and no gradient in the backward). */
void sparse_attention_forward_cpu(float *out,          /* (Tq, Hq, D) */
                                  float *lse,          /* (Tq, Hq) */
                                  const float *q, const float *k, const float *v,
                                  const int32_t *sel,  /* (Tq, Hkv, nsel) */
                                  int nsel, int block_size, const struct attn_shape *s);

/* Stage 3 backward over the same selected keys; ADDS into dq, dk, dv. Deterministic: dk/dv of a key
 * block are reduced by one thread over the query rows that selected it, in row order. */
void sparse_attention_backward_cpu(float *dq, float *dk, float *dv,
                                   const float *dout, const float *q, const float *k,
                                   const float *v, const float *out, const float *lse,
                                   const int32_t *sel, int nsel, int block_size,
                                   const struct attn_shape *s);


/* CUDA versions (bf16 keys and queries; the same selection as the CPU on the same inputs up to
 * fp32 rounding of the scores). The sparse backward builds the inverse of the selection in
 * sparse_attention_backward_workspace_bytes(Tq, Hkv, nsel, ceil(Tk / block_size)) device bytes,
 * which also hold the tensor-core backward's work list and the fp32 partial dK/dV of the key
 * blocks whose token lists it splits (Hkv * nblk * 64 KiB: an fp32 dK, dV at D = 128).
 * Deterministic (no float atomics): the same inputs give bitwise identical gradients. */
void infllm_compress_cuda(void *kc, const void *k, int64_t n, int Hkv, int D, int64_t kv_stride,
                          int ksize, int kstride, const struct gpu_ctx *g);
void infllm_select_cuda(int32_t *sel, const void *q, const void *k1, int64_t L1, const void *k2,
                        int64_t L2, const struct attn_shape *s, const struct infllm_params *p,
                        const struct gpu_ctx *g);
/* Whether infllm_select_cuda runs stages 1-2 on tensor cores for this shape: D 64 or 128, any
 * G = Hq / Hkv up to 32, block_size / kernel_stride dividing 64, (kernel_size - 1) / kernel_stride
 * <= 8, an even q_stride, and the block scores of at least one warp's tokens (4 x ceil(Tk /
 * block_size) floats each) fitting the device's shared memory (T up to ~1.5M at G 16, ~0.8M at
 * G <= 8). Other shapes run the exact CUDA-core kernel, 1-2 orders of magnitude slower. Needs a
 * current CUDA device. The sparse stage 3 has its own: attention_tc_supported (attention.h). */
bool infllm_select_tc_supported(const struct attn_shape *s, const struct infllm_params *p);
void sparse_attention_forward_cuda(void *out, float *lse, const void *q, const void *k,
                                   const void *v, const int32_t *sel, int nsel, int block_size,
                                   const struct attn_shape *s, const struct gpu_ctx *g);
/* The same forward in two passes (tensor-core shapes; elsewhere it runs the one above): each
 * token's dynamic blocks (its selection less its forced blocks: j < init_blocks and its local
 * window b(t) - local_blocks .. b(t)), then its forced blocks, which are the same for every token
 * of a 64-token block and are read with no selection, the two partial softmaxes merged by their
 * log-sum-exps. Needs a selection of infllm_select with p, which holds every token's forced
 * blocks; the same output (to bf16 rounding: the dynamic part is stored once in bf16 before the
 * merge) and lse, so sparse_attention_backward_cuda takes them as they are. Not the model's path:
 * docs/PERF.md has its measurements. */
bool sparse_attention_split_supported(const struct attn_shape *s, const struct infllm_params *p);
void sparse_attention_forward_split_cuda(void *out, float *lse, const void *q, const void *k,
                                         const void *v, const int32_t *sel, int nsel,
                                         const struct infllm_params *p, const struct attn_shape *s,
                                         const struct gpu_ctx *g);
void sparse_attention_backward_cuda(void *dq, void *dk, void *dv, const void *dout, const void *q,
                                    const void *k, const void *v, const void *out,
                                    const float *lse, const int32_t *sel, int nsel, int block_size,
                                    const struct attn_shape *s, void *workspace,
                                    const struct gpu_ctx *g);
size_t sparse_attention_backward_workspace_bytes(int64_t Tq, int Hkv, int nsel, int64_t nblk);
/* Query tokens per work item of the tensor-core dK/dV kernel (64-key blocks, D 64 or 128): a key
 * block selected by more tokens is split into chunks reduced in a fixed order. Exposed for tests. */
int64_t sparse_attention_backward_chunk(int64_t Tq, int nsel, int64_t nblk, int D);

#ifdef __cplusplus
}
#endif

#endif
