/*
 * attn_cpu_impl.h: the stage-3 machinery shared by attention_cpu.c (dense) and infllmv2_cpu.c
 * (block-sparse), private to kernels/. A row's keys are either [0, pos] (sel NULL) or the
 * selected blocks of its KV group cut at pos.
 */
#ifndef INFLLM_ATTN_CPU_IMPL_H
#define INFLLM_ATTN_CPU_IMPL_H

#include <stdint.h>

#include "attention.h"

struct attn_rows {
    const struct attn_shape *s;
    const int32_t *sel;   /* (Tq, Hkv, nsel) or NULL for dense */
    int nsel;
    int block_size;
};

/* Inverse of a selection: rows[off[g * nblk + j] .. off[g * nblk + j + 1]) are the query rows
 * (ascending) whose selection for KV head g holds block j. */
struct attn_inverse {
    int64_t nblk;
    int64_t *off;   /* (Hkv * nblk + 1) */
    int32_t *rows;  /* (entries) query rows (Tq < 2^31) */
};

void attn_rows_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const struct attn_rows *r);

/* ADDS into dq, dk, dv; inv is required when r->sel is set (NULL for dense). */
void attn_rows_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        const struct attn_rows *r, const struct attn_inverse *inv);

#endif
