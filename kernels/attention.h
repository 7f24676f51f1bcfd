/*
 * attention.h: dense causal GQA attention (flash-attention algebra, fp32 log-sum-exp), forward and
 * backward, and the shape struct every attention kernel of the project takes.
 *
 * Dimensions: Tq query rows of this call, Tk key rows, Hq query heads, Hkv key/value heads,
 * G = Hq / Hkv (query head h reads KV head h / G), D head dim.
 *
 * Positions are global: query row i sits at global position q_pos0 + i and key row j at position j.
 * Query row i sees keys j <= q_pos0 + i. That lets one call serve a chunk of a sequence that context
 * parallelism placed on this rank, against the gathered keys of the whole sequence.
 * With documents (attn_shape.doc_start, the CPU dense kernels) row i also ignores the keys before
 * its document's start: several documents packed in one sequence attend each to itself.
 *
 * Layouts are token-major: q/out/dq (Tq, Hq, D) with q_stride elements between rows, k/v/dk/dv
 * (Tk, Hkv, D) with kv_stride between rows, lse (Tq, Hq) contiguous.
 * Gradient rule: backward ADDS into dq, dk, dv.
 */
#ifndef INFLLM_ATTENTION_H
#define INFLLM_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

struct attn_shape {
    int64_t Tq;         /* query rows in this call */
    int64_t q_pos0;     /* global position of query row 0 */
    int64_t Tk;         /* key rows, global positions 0..Tk-1; Tk >= q_pos0 + Tq */
    int Hq, Hkv, D;
    int64_t q_stride;   /* elements between consecutive rows of q, out, dq (>= Hq * D) */
    int64_t kv_stride;  /* elements between consecutive rows of k, v, dk, dv (>= Hkv * D) */
    float scale;        /* softmax scale tau = 1 / sqrt(D) */
    /* Document masking (dense attention only; NULL = none): doc_start[i] is the global position
     * where query row i's document starts, non-decreasing in i and <= q_pos0 + i. Row i then sees
     * keys doc_start[i] <= j <= q_pos0 + i only. Host memory for the CPU kernels; the CUDA
     * kernels do not take it (they refuse a non-NULL doc_start). */
    const int32_t *doc_start;
};

/* out[i,h] = sum_{doc(i) <= j <= pos(i)} softmax_j(scale * q[i,h] . k[j,h/G]) v[j,h/G]
 * (doc(i) = doc_start[i], or 0 without documents);
 * lse[i,h] = log sum_j exp(scale * q[i,h] . k[j,h/G]) (natural log, fp32). */
void attention_forward_cpu(float *out,       /* (Tq, Hq, D) */
                           float *lse,       /* (Tq, Hq) */
                           const float *q,   /* (Tq, Hq, D) */
                           const float *k,   /* (Tk, Hkv, D) */
                           const float *v,   /* (Tk, Hkv, D) */
                           const struct attn_shape *s);

/* With D_i = dout_i . out_i, P_ij = exp(scale q_i.k_j - lse_i), dS_ij = P_ij (dout_i . v_j - D_i):
 * dv_j += sum_i P_ij dout_i, dq_i += scale sum_j dS_ij k_j, dk_j += scale sum_i dS_ij q_i.
 * Deterministic: each output row is reduced by one thread in a fixed order. */
void attention_backward_cpu(float *dq,          /* (Tq, Hq, D) */
                            float *dk,          /* (Tk, Hkv, D) */
                            float *dv,          /* (Tk, Hkv, D) */
                            const float *dout,  /* (Tq, Hq, D) */
                            const float *q,     /* (Tq, Hq, D) */
                            const float *k,     /* (Tk, Hkv, D) */
                            const float *v,     /* (Tk, Hkv, D) */
                            const float *out,   /* (Tq, Hq, D) */
                            const float *lse,   /* (Tq, Hq) */
                            const struct attn_shape *s);


/* CUDA: bf16 q, k, v, out and gradients, fp32 lse; the same contract (deterministic). */

/* Whether the tensor-core kernels (forward, dQ, dK/dV) run this shape, dense (block_size 64) or
 * block-sparse (the selected blocks of sparse_attention_*_cuda, infllmv2.h): D 64 or 128, block
 * size 64, any G = Hq / Hkv up to 64, strides multiples of 8 elements, and (sparse) the selection
 * bitmaps of Tk / 64 blocks fitting the device's shared memory. Other shapes run the exact
 * CUDA-core kernels, 1-2 orders of magnitude slower. Needs a current CUDA device. */
bool attention_tc_supported(const struct attn_shape *s, int block_size, bool sparse);

void attention_forward_cuda(void *out, float *lse, const void *q, const void *k, const void *v,
                            const struct attn_shape *s, const struct gpu_ctx *g);
void attention_backward_cuda(void *dq, void *dk, void *dv, const void *dout, const void *q,
                             const void *k, const void *v, const void *out, const float *lse,
                             const struct attn_shape *s, const struct gpu_ctx *g);

#ifdef __cplusplus
}
#endif

#endif
