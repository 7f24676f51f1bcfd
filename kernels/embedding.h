/*
 * embedding.h: token embedding lookup, forward and backward.
 *
 * Dimensions: N tokens (all sequences of the micro-batch on this rank, flattened), C channels,
 * V vocabulary.  Gradient rule (every kernel of this folder): backward functions ADD into their
 * d-outputs; the caller zeroes them when a fresh gradient is wanted.
 */
#ifndef INFLLM_EMBEDDING_H
#define INFLLM_EMBEDDING_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[n, :] = scale * wte[tokens[n], :].  Tokens must lie in [0, V). */
void embedding_forward_cpu(float *out,             /* (N, C) */
                           const int32_t *tokens,  /* (N) */
                           const float *wte,       /* (V, C) */
                           int64_t N, int C, float scale);

/* dwte[tokens[n], :] += scale * dout[n, :].  Deterministic: the sum over tokens runs in token
 * order for every row of dwte, whatever the thread count. */
void embedding_backward_cpu(float *dwte,            /* (V, C) */
                            const float *dout,      /* (N, C) */
                            const int32_t *tokens,  /* (N) */
                            int64_t N, int C, float scale);


/* CUDA: bf16 out/wte/dout, fp32 dwte (see gpu.h). The backward groups rows by token with a stable
 * sort and sums each token's rows in order (deterministic); it needs
 * embedding_backward_workspace_bytes(N) bytes of device workspace. */
void embedding_forward_cuda(void *out, const int32_t *tokens, const void *wte, int64_t N, int C,
                            float scale, const struct gpu_ctx *g);
void embedding_backward_cuda(float *dwte, const void *dout, const int32_t *tokens, int64_t N,
                             int C, float scale, void *workspace, const struct gpu_ctx *g);
size_t embedding_backward_workspace_bytes(int64_t N);

#ifdef __cplusplus
}
#endif

#endif
