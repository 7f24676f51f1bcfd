/*
 * crossentropy.h: softmax cross-entropy over the vocabulary, forward and backward in one pass.
 *
 * Dimensions: N rows (tokens of one chunk; the model feeds the lm head a few rows at a time so no
 * full N x V logits tensor exists), V vocabulary (int64: 128k x V overflows 32 bits).
 * A target < 0 marks a row without loss: its loss is 0 and its gradient row is zero.
 */
#ifndef INFLLM_CROSSENTROPY_H
#define INFLLM_CROSSENTROPY_H

#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For each row n: loss[n] = logsumexp(logits[n]) - logits[n, targets[n]] (fp32, max-subtracted),
 * and, when dlogits is not NULL, dlogits[n, :] = dscale * (softmax(logits[n]) - onehot(targets[n])).
 * dlogits OVERWRITES (it may alias logits, which turns the logits buffer into its gradient). */
void crossentropy_forward_backward_cpu(float *loss,            /* (N) */
                                       float *dlogits,         /* (N, V) or NULL */
                                       const float *logits,    /* (N, V) */
                                       const int32_t *targets, /* (N) */
                                       int64_t N, int64_t V, float dscale);

/* idx[n] = the index of the largest logit of row n (the lowest index on ties): the model's
 * prediction, for accuracies. */
void argmax_rows_cpu(int32_t *idx, const float *logits, int64_t N, int64_t V);

/* CUDA: fp32 logits and loss, bf16 dlogits (a separate buffer; NULL = loss only). */
void crossentropy_forward_backward_cuda(float *loss, void *dlogits, const float *logits,
                                        const int32_t *targets, int64_t N, int64_t V, float dscale,
                                        const struct gpu_ctx *g);
void argmax_rows_cuda(int32_t *idx, const float *logits, int64_t N, int64_t V,
                      const struct gpu_ctx *g);

#ifdef __cplusplus
}
#endif

#endif
