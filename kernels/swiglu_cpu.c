/*
 * swiglu_cpu.c: CPU reference of swiglu.h.
 *
 * Dimensions: n elements (N tokens x I channels), elementwise; threads split the elements.
 * Math in fp32 with exp_f32 (cpu_math.h) (libm's expf does not vectorise and would make this elementwise
 * op cost as much as a GEMM of the MLP). Gradient rule: the backward ADDS into dgate and dup.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu_math.h"
#include "swiglu.h"

void swiglu_forward_cpu(float *out, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float a = gate[i];
        out[i] = a / (1.0f + exp_f32(-a)) * up[i];
    }
}

/* y = silu(a) b: dy/da = s(a) (1 + a (1 - s(a))) b, dy/db = silu(a) = a s(a), s the sigmoid.
 * 1 - s is taken as e^-a s for a >= 0: the subtraction loses the digits of a small 1 - s, which
 * cost up to ~4e-6 relative error in dgate at large positive gates (measured). */
void swiglu_backward_cpu(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float a = gate[i], e = exp_f32(-a), s = 1.0f / (1.0f + e);
        float one_minus_s = a < 0.0f ? 1.0f - s : e * s; /* e * s is inf * 0 for a < -88 */
        dgate[i] += dout[i] * up[i] * s * (1.0f + a * one_minus_s);
        dup[i] += dout[i] * a * s;
    }
}
