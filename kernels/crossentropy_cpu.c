/*
 * crossentropy_cpu.c: CPU reference of crossentropy.h.
 *
 * Dimensions: N rows, V vocabulary (int64). Threads split the rows; the reductions within a row
 * are `omp simd` reductions (vector lanes, then the lanes combined, in an order fixed by the
 * compiled code), so they vectorise and the result does not depend on the thread count.
 *
 * Precision: logits and the softmax are fp32; the sum of exponentials is accumulated in double
 * (fp32 over V = 128k terms would lose ~4 digits in the worst case), so the loss is
 * log(sum) + max - logit[target] with the log in double. exp is exp_f32 below, not libm's expf,
 * because libm's does not vectorise (the head's softmax otherwise costs as much as its GEMM).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "crossentropy.h"

/* e^x in fp32, branch-free so that loops over it vectorise: within 1.5 ulp of the correctly
 * rounded value for every float in [-86.98, 88.72] (checked exhaustively against double exp when
 * it was written). x > ln(FLT_MAX) gives +inf; x < -86.99 gives 0 (the true value is below 2.2e-38,
 * about FLT_MIN); NaN stays NaN. Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, and the
 * Cephes expf polynomial for e^r. A copy lives in swiglu_cpu.c. */
static inline float exp_f32(float x) {
    /* Unconditional compares only: a nested ?: would keep a branch (-ftrapping-math). */
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.72283f ? 88.72283f : xc;
    float t = xc * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23 + round(x / ln2) */
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f; /* ln2, high part */
    r = r - n * -2.12194440e-4f;     /* ln2, low part */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* n sits in the low mantissa bits of t. Scale by 2^(n-1) * 2 so that n = 128 (x close to
     * ln(FLT_MAX)) stays representable; n = -126 gives exponent field 0, i.e. 0. */
    uint32_t tbits, sbits;
    memcpy(&tbits, &t, sizeof tbits);
    sbits = (tbits - 0x4B400000u + 126u) << 23;
    float half_scale;
    memcpy(&half_scale, &sbits, sizeof half_scale);
    float y = p * half_scale * 2.0f;
    y = x > 88.72283f ? INFINITY : y;
    return x < -87.0f ? 0.0f : y;
}

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
