/*
 * adamw_update.h: the elementwise AdamW update of a run of elements and the sum of squares behind
 * the global gradient norm, on the CPU (fp32 reference) and on the GPU (which also writes the bf16
 * compute copy of the updated weights). adamw.h builds the ZeRO-1 step from these.
 *
 * Dimensions: n elements. t is the 1-based optimizer step (bias correction).
 */
#ifndef INFLLM_ADAMW_UPDATE_H
#define INFLLM_ADAMW_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;  g' = grad * grad_scale;
 * master -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * master). */
void adamw_update_cpu(float *master, float *m, float *v, const float *grad, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                      int64_t t);

/* Sum of x[i]^2 in double, in fixed blocks summed in order: the same for any thread count. */
double sumsq_cpu(const float *x, int64_t n);

/* The same update on device buffers; param_bf16 (n) receives the updated weights in bf16. */
void adamw_update_cuda(float *master, float *m, float *v, const float *grad, void *param_bf16,
                       int64_t n, float lr, float beta1, float beta2, float eps,
                       float weight_decay, float grad_scale, int64_t t, const struct gpu_ctx *g);

/* Deterministic sum of squares of a device buffer (a fixed reduction tree); waits for the result.
 * workspace: sumsq_workspace_bytes() of device memory. */
double sumsq_cuda(const float *x, int64_t n, void *workspace, const struct gpu_ctx *g);
size_t sumsq_workspace_bytes(void);

#ifdef __cplusplus
}
#endif

#endif
