/*
 * colsum.h: deterministic column sums for the gradients of per-channel parameters (RMSNorm's
 * weight, the projections' bias): the CPU reference, private to kernels/ (the CUDA twin is
 * colsum.cuh).
 *
 * Dimensions: N rows, C channels.
 */
#ifndef INFLLM_COLSUM_H
#define INFLLM_COLSUM_H

#include <stdint.h>

/* out[c] += scale * sum_n a[n, c] * b[n, c] * r[n] (b, r may be NULL: read as 1), accumulated in
 * double in row order by the one thread that owns channel c: any thread count gives the same bits. */
void colsum_cpu(float *out,       /* (C) */
                const float *a,   /* (N, C) */
                const float *b,   /* (N, C) or NULL */
                const float *r,   /* (N) or NULL */
                int64_t N, int C, float scale);

#endif
