/*
 * swiglu_cpu.c: CPU reference of swiglu.h.
 */
#include <math.h>

#include "swiglu.h"

void swiglu_forward_cpu(float *out, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float a = gate[i];
        out[i] = a / (1.0f + expf(-a)) * up[i];
    }
}

/* y = silu(a) b: dy/da = s(a) (1 + a (1 - s(a))) b, dy/db = silu(a), s the sigmoid. */
void swiglu_backward_cpu(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float a = gate[i], s = 1.0f / (1.0f + expf(-a));
        dgate[i] += dout[i] * up[i] * s * (1.0f + a * (1.0f - s));
        dup[i] += dout[i] * a * s;
    }
}
