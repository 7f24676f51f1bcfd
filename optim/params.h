/*
 * params.h: the flat parameter space. Every parameter tensor of the model lies in one buffer, one
 * tensor after another (each holding all layers), in the backend's compute dtype, and its gradient
 * in an fp32 buffer at the same offsets; the flat length is padded so that every rank's ZeRO-1
 * slice is equal and aligned. The model lays it out (src/model.c), the optimizer shards it
 * (adamw.h), checkpoints, import and export walk its entries by name.
 */
#ifndef INFLLM_PARAMS_H
#define INFLLM_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#define MODEL_NAME_MAX 96

/* One Hugging Face tensor inside the flat parameter buffer. */
struct param_entry {
    char name[MODEL_NAME_MAX];  /* e.g. "model.layers.3.self_attn.q_proj.weight" */
    int64_t offset;             /* elements from the start of the flat buffer */
    int ndim;                   /* 1 or 2 */
    int64_t shape[2];           /* [out, in] for matrices, [C] for norms */
    int64_t numel;
    bool decay;                 /* AdamW weight decay applies (matrices) or not (norm weights) */
    bool is_norm;               /* initialised to ones */
};

/* The flat space as a whole. */
struct param_space {
    const struct param_entry *entries; /* (n_entries) in offset order */
    int n_entries;
    int64_t n_padded;                  /* flat length */
    void *values;                      /* (n_padded) compute dtype */
    float *grads;                      /* (n_padded) fp32 */
};

#endif
