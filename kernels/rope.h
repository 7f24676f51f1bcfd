/*
 * rope.h: rotary position embedding in the Hugging Face rotate-half layout (pairs (i, i + D/2)),
 * with LongRoPE frequency factors and attention scaling, forward and backward.
 *
 * Dimensions: N rows (tokens), H heads, D head dim (even). Positions are global token positions
 * (context parallelism hands each rank non-contiguous chunks), one per row.
 *
 *   angle(p, i) = p * inv_freq[i],  inv_freq[i] = 1 / (factor[i] * theta^(2i/D)),  i < D/2
 *   y[i]       = x[i] * c - x[i+D/2] * s
 *   y[i+D/2]   = x[i+D/2] * c + x[i] * s,     c = mscale * cos(angle), s = mscale * sin(angle)
 *
 * The backward applies the transpose (the same c, -s). Both work in place.
 */
#ifndef INFLLM_ROPE_H
#define INFLLM_ROPE_H

#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills cos/sin tables for positions 0..T-1: cos[p * D/2 + i] = mscale * cos(angle(p, i)).
 * Angles are computed in double. factor may be NULL (all ones). */
void rope_table_init(float *cos,            /* (T, D/2) */
                     float *sin,            /* (T, D/2) */
                     int64_t T, int D, double theta,
                     const double *factor,  /* (D/2) or NULL */
                     double mscale);

void rope_forward_cpu(float *x,              /* (N, H, D) rows of x are row_stride apart */
                      const float *cos,      /* (T, D/2) */
                      const float *sin,      /* (T, D/2) */
                      const int32_t *pos,    /* (N) global positions < T */
                      int64_t N, int H, int D, int64_t row_stride);

/* dx <- transpose rotation of dx (in place). */
void rope_backward_cpu(float *dx, const float *cos, const float *sin, const int32_t *pos,
                       int64_t N, int H, int D, int64_t row_stride);


/* CUDA: x / dx bf16, in place; tables and positions on the device. */
void rope_forward_cuda(void *x, const float *cos, const float *sin, const int32_t *pos, int64_t N,
                       int H, int D, int64_t row_stride, const struct gpu_ctx *g);
void rope_backward_cuda(void *dx, const float *cos, const float *sin, const int32_t *pos,
                        int64_t N, int H, int D, int64_t row_stride, const struct gpu_ctx *g);

#ifdef __cplusplus
}
#endif

#endif
