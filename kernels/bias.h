/*
 * bias.h: a bias added to every row of a projection's output, forward and backward.
 *
 * Dimensions: N rows (tokens), C channels (the projection's output width: Hq*D, Hkv*D, or the
 * hidden size). `scale` multiplies the bias (MiniCPM's residual scale on the o projection, else 1).
 * Gradient rule: backward ADDS into db.
 */
#ifndef INFLLM_BIAS_H
#define INFLLM_BIAS_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[n, c] += scale * b[c]. */
void bias_forward_cpu(float *y,        /* (N, C) */
                      const float *b,  /* (C) */
                      int64_t N, int C, float scale);

/* db[c] += scale * sum_n dy[n, c], the rows summed in row order (deterministic). */
void bias_backward_cpu(float *db,        /* (C) */
                       const float *dy,  /* (N, C) */
                       int64_t N, int C, float scale);

/* CUDA: bf16 y, b and dy, fp32 db. The backward sums fixed row ranges into
 * bias_backward_workspace_bytes(C) bytes of device workspace (fp32 partial rows), then adds the
 * partials in order: no atomics, the same bits on every run. */
void bias_forward_cuda(void *y, const void *b, int64_t N, int C, float scale,
                       const struct gpu_ctx *g);
void bias_backward_cuda(float *db, const void *dy, int64_t N, int C, float scale, void *workspace,
                        const struct gpu_ctx *g);
size_t bias_backward_workspace_bytes(int C);

#ifdef __cplusplus
}
#endif

#endif
