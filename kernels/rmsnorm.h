/*
 * rmsnorm.h: RMSNorm, y = x / sqrt(mean(x^2) + eps) * w, forward and backward.
 *
 * Dimensions: N rows (tokens), C channels. rstd is kept in fp32 for the backward.
 * Gradient rule: backward ADDS into dx and dw.
 */
#ifndef INFLLM_RMSNORM_H
#define INFLLM_RMSNORM_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

void rmsnorm_forward_cpu(float *out,      /* (N, C) */
                         float *rstd,     /* (N) 1 / sqrt(mean(x^2) + eps) */
                         const float *x,  /* (N, C) */
                         const float *w,  /* (C) */
                         int64_t N, int C, float eps);

/* dx += d/dx, dw += d/dw (sum over rows in row order, deterministic). */
void rmsnorm_backward_cpu(float *dx,          /* (N, C) */
                          float *dw,          /* (C) */
                          const float *dout,  /* (N, C) */
                          const float *x,     /* (N, C) */
                          const float *w,     /* (C) */
                          const float *rstd,  /* (N) */
                          int64_t N, int C);


/* CUDA: bf16 out/x/w/dx, fp32 rstd and dw. The backward reduces dw over row ranges into
 * rmsnorm_backward_workspace_bytes(C) bytes of device workspace, then in order (deterministic);
 * that size never shrinks as C grows, so the workspace of the widest rows serves every C below.
 * Rows of C <= 256 (per-head norms) run one warp per row. */
void rmsnorm_forward_cuda(void *out, float *rstd, const void *x, const void *w, int64_t N, int C,
                          float eps, const struct gpu_ctx *g);
void rmsnorm_backward_cuda(void *dx, float *dw, const void *dout, const void *x, const void *w,
                           const float *rstd, int64_t N, int C, void *workspace,
                           const struct gpu_ctx *g);
size_t rmsnorm_backward_workspace_bytes(int C);

#ifdef __cplusplus
}
#endif

#endif
