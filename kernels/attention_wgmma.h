/*
 * attention_wgmma.h: the Hopper path of dense causal attention (attention_wgmma.cu forward,
 * attention_wgmma_bwd.cu backward): wgmma + TMA kernels built for sm_90a, taken by
 * attention_forward_cuda / attention_backward_cuda where attention_wgmma_supported says so, the
 * mma.sync kernels elsewhere. Same contract as attention.h (global positions from q_pos0, row
 * strides, fp32 lse, backward ADDS into dq, dk, dv, deterministic).
 */
#ifndef INFLLM_ATTENTION_WGMMA_H
#define INFLLM_ATTENTION_WGMMA_H

#include "attention.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the wgmma path runs this dense shape on the current device: D 64 or 128, Hq a multiple of
 * Hkv (any group size), rows of 16-byte multiples (q_stride, kv_stride multiples of 8), the build
 * holds the sm_90a kernels and the device has compute capability 9.0; else 0. The launchers also
 * need 16-byte aligned q, k, v, out, dout (the tensor maps' rule) and fall back otherwise. */
int attention_wgmma_supported(const struct attn_shape *s);

/* Run the wgmma kernels and return 1, or return 0 doing nothing where the path does not apply. */
int attention_wgmma_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                            const struct attn_shape *s, const struct gpu_ctx *g);
int attention_wgmma_backward(void *dq, void *dk, void *dv, const void *dout, const void *q,
                             const void *k, const void *v, const void *out, const float *lse,
                             const struct attn_shape *s, const struct gpu_ctx *g);

#ifdef __cplusplus
}
#endif

#endif
