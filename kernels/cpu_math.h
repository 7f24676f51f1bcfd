/*
 * cpu_math.h: small math the CPU kernels share, private to kernels/ (inline so loops over it
 * vectorise).
 */
#ifndef INFLLM_CPU_MATH_H
#define INFLLM_CPU_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x in fp32, branch-free so that loops over it vectorise: within 1.5 ulp of the correctly
 * rounded value for every float in [-86.98, 88.72] (checked exhaustively against double exp when
 * it was written). x > ln(FLT_MAX) gives +inf; x < -86.99 gives 0 (the true value is below 2.2e-38,
 * about FLT_MIN); NaN stays NaN. Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, and the
 * Cephes expf polynomial for e^r. */
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

#endif
