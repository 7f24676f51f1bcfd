/*
 * adamw.h: AdamW with decoupled weight decay, sharded over all ranks (ZeRO-1), with global-norm
 * gradient clipping.
 *
 * The flat parameter space (params.h, n_padded elements) is cut into world_size equal slices;
 * rank r owns slice r: fp32 master weights, first and second moments, and the summed gradient of
 * that slice. One optimizer step:
 *   1. reduce-scatter the ranks' fp32 gradients (sum) so each rank holds its slice's total;
 *   2. global gradient norm = sqrt(all-reduce of each slice's sum of squares);
 *   3. clip: scale = min(1, grad_clip / norm) (grad_clip 0 = off);
 *   4. AdamW on the slice:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *      w -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + wd * w)   (wd = 0 on norm weights);
 *   5. the slice is written back into the compute-dtype weights and all-gathered.
 * Weight decay follows the space's entries: matrices and embeddings decay, norms do not.
 * On one rank the slice is the whole flat space and step 1 has nothing to sum: the gradient slice
 * is the space's gradient buffer itself (no copy, no second buffer).
 * The state is one memory plan (plan.h) in the PLAN_OPTIMIZER arena.
 */
#ifndef INFLLM_ADAMW_H
#define INFLLM_ADAMW_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "grid.h"
#include "params.h"
#include "plan.h"

/* Elements of each slice are a multiple of this (aligned slices); the model pads its flat space to
 * world * ADAMW_ALIGN. */
#define ADAMW_ALIGN 64

/* The hyperparameters of one step (the config's train section). */
struct adamw_hparams {
    double weight_decay, beta1, beta2, eps;
    double grad_clip; /* global-norm clip; 0 = off */
};

/* A run of the slice with one decay setting, relative to the slice start. */
struct adamw_segment {
    int64_t start, len;
    bool decay;
};

struct adamw {
    const struct backend *be;
    struct param_space space; /* the weights and gradients stepped */
    int64_t slice_start;   /* first flat element of this rank's slice */
    int64_t slice_len;     /* n_padded / world_size */
    float *master;         /* (slice_len) fp32 master weights */
    float *m, *v;          /* (slice_len) moments */
    float *grad;           /* (slice_len) summed gradient of the slice (one rank: the space's) */
    void *sumsq_ws;        /* workspace of the sum of squares (ops_sumsq_workspace_bytes) */
    int n_seg;
    struct adamw_segment *seg;
    int64_t t;             /* optimizer steps taken */
    struct mem_plan plan;  /* owns master, m, v, the gradient slice and sumsq_ws */
};

/* Sets up rank's slice of the flat space `s` (n_padded a multiple of world * ADAMW_ALIGN) and
 * plans its state. With allocate, allocates it and copies the slice's current weights into the
 * master weights; without, only the plan exists (--dry-run: s->values and s->grads may be NULL). */
void adamw_init(struct adamw *o, const struct backend *be, const struct param_space *s, int rank,
                int world, bool allocate);
void adamw_free(struct adamw *o);

/* Steps 1-2 over all ranks: returns the global gradient norm (before clipping). The caller checks
 * it is finite before adamw_apply. */
double adamw_reduce(struct adamw *o, const struct grid *g);

/* Steps 3-5 with the norm adamw_reduce returned. */
void adamw_apply(struct adamw *o, const struct grid *g, const struct adamw_hparams *h, double lr,
                 double grad_norm);

#endif
