/*
 * adamw.h: AdamW with decoupled weight decay, sharded over all ranks (ZeRO-1), with global-norm
 * gradient clipping.
 *
 * The flat parameter space (model.h, n_params_padded elements) is cut into world_size equal
 * slices; rank r owns slice r: fp32 master weights, first and second moments, and the summed
 * gradient of that slice. One optimizer step:
 *   1. reduce-scatter the ranks' fp32 gradients (sum) so each rank holds its slice's total;
 *   2. global gradient norm = sqrt(all-reduce of each slice's sum of squares);
 *   3. clip: scale = min(1, grad_clip / norm) (grad_clip 0 = off);
 *   4. AdamW on the slice:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *      w -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + wd * w)   (wd = 0 on norm weights);
 *   5. the slice is written back into the compute-dtype weights and all-gathered.
 * Weight decay follows the model's param entries: matrices and embeddings decay, norms do not.
 * On one rank the slice is the whole flat space and step 1 has nothing to sum: the gradient slice
 * is the model's gradient buffer itself (no copy, no second buffer).
 */
#ifndef INFLLM_ADAMW_H
#define INFLLM_ADAMW_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "comm.h"
#include "config.h"
#include "grid.h"
#include "model.h"

/* Elements of each slice are a multiple of this (aligned slices); model_init pads to world * it. */
#define ADAMW_ALIGN 64

/* A run of the slice with one decay setting, relative to the slice start. */
struct adamw_segment {
    int64_t start, len;
    bool decay;
};

struct adamw {
    const struct backend *be;
    int64_t slice_start;   /* first flat element of this rank's slice */
    int64_t slice_len;     /* n_params_padded / world_size */
    float *master;         /* (slice_len) fp32 master weights */
    float *m, *v;          /* (slice_len) moments */
    float *grad;           /* (slice_len) summed gradient of the slice (one rank: the model's) */
    bool grad_is_model;    /* grad aliases the model's gradient buffer (one rank) */
    void *sumsq_ws;        /* device workspace of the sum of squares (CUDA) */
    int n_seg;
    struct adamw_segment *seg;
    int64_t t;             /* optimizer steps taken */
};

/* Sets up rank's slice of the model's flat space (model_init must have padded it to a multiple of
 * world * ADAMW_ALIGN) and copies the current weights of the slice into the master weights. */
void adamw_init(struct adamw *o, const struct backend *be, const struct model *mdl, int rank,
                int world);
void adamw_free(struct adamw *o);

/* Device (or host) bytes adamw_init allocates per rank for a model of n_params_padded elements. */
size_t adamw_state_bytes(int64_t n_params_padded, int world);

/* Steps 1-2 over all ranks: returns the global gradient norm (before clipping). The caller checks
 * it is finite before adamw_apply. */
double adamw_reduce(struct adamw *o, const struct model *mdl, const struct grid *g);

/* Steps 3-5 with the norm adamw_reduce returned. */
void adamw_apply(struct adamw *o, struct model *mdl, const struct grid *g,
                 const struct train_config *t, double lr, double grad_norm);

#endif
