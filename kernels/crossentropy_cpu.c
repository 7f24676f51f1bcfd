/*
 * crossentropy_cpu.c: CPU reference of crossentropy.h.
 *
 * Dimensions: N rows, V vocabulary (int64). Threads split the rows; the reductions within a row
 * are `omp simd` reductions (vector lanes, then the lanes combined, in an order fixed by the
 * compiled code), so they vectorise and the result does not depend on the thread count.
 *
 * Precision: logits and the softmax are fp32; the sum of exponentials is accumulated in double
 * (fp32 over V = 128k terms would lose ~4 digits in the worst case), so the loss is
 * log(sum) + max - logit[target] with the log in double. exp is exp_f32 (cpu_math.h), not libm's expf,
 * because libm's does not vectorise (the head's softmax otherwise costs as much as its GEMM).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "cpu_math.h"
#include "crossentropy.h"


static float row_max(const float *row, int64_t V) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t v = 0; v < V; v++) m = row[v] > m ? row[v] : m;
    return m;
}

/* e[v] = exp(x[v] - m); e may equal x (each element is read before it is written). */
static void exp_shifted(float *e, const float *x, int64_t n, float m) {
#pragma omp simd
    for (int64_t v = 0; v < n; v++) e[v] = exp_f32(x[v] - m);
}

/* sum_v exp(row[v] - m), accumulated in double. When e is not NULL the exponentials are also
 * stored there (e may alias row); otherwise they go through a stack buffer in chunks. Two loops
 * per chunk because GCC does not vectorise the exp and the reduction fused in one. */
static double row_sum_exp(float *e, const float *row, int64_t V, float m) {
    enum { CHUNK = 2048 };
    float buf[CHUNK];
    double s = 0;
    for (int64_t v0 = 0; v0 < V; v0 += CHUNK) {
        int64_t len = V - v0 < CHUNK ? V - v0 : CHUNK;
        float *x = e ? e + v0 : buf;
        exp_shifted(x, row + v0, len, m);
#pragma omp simd reduction(+ : s)
        for (int64_t v = 0; v < len; v++) s += x[v];
    }
    return s;
}

/* One row: returns its loss; d (V) or NULL receives dscale * (softmax - onehot(t)), t >= 0. */
static float row_loss(float *d, const float *row, int32_t t, int64_t V, float dscale) {
    float target_logit = row[t]; /* read before d (possibly row itself) is written */
    float m = row_max(row, V);
    if (!d) return (float)((double)m + log(row_sum_exp(NULL, row, V, m)) - target_logit);
    double s = row_sum_exp(d, row, V, m);
    float scale = (float)(dscale / s);
    for (int64_t v = 0; v < V; v++) d[v] *= scale;
    d[t] -= dscale;
    return (float)((double)m + log(s) - target_logit);
}

void crossentropy_forward_backward_cpu(float *loss, float *dlogits, const float *logits,
                                       const int32_t *targets, int64_t N, int64_t V,
                                       float dscale) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        int32_t t = targets[n];
        CHECKF(t < V, "target %d of row %lld is outside the vocabulary of %lld", (int)t,
               (long long)n, (long long)V);
        float *d = dlogits ? dlogits + n * V : NULL;
        if (t < 0) { /* no loss on this row */
            loss[n] = 0.0f;
            if (d) memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        loss[n] = row_loss(d, logits + n * V, t, V, dscale);
    }
}

void argmax_rows_cpu(int32_t *idx, const float *logits, int64_t N, int64_t V) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = logits + n * V;
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        idx[n] = (int32_t)best;
    }
}
