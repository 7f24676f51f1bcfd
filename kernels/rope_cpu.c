/*
 * rope_cpu.c: CPU reference of rope.h.
 */
#include <math.h>

#include "rope.h"

void rope_table_init(float *cos_t, float *sin_t, int64_t T, int D, double theta,
                     const double *factor, double mscale) {
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        double inv = 1.0 / (pow(theta, (double)(2 * i) / D) * (factor ? factor[i] : 1.0));
        for (int64_t p = 0; p < T; p++) {
            double a = (double)p * inv;
            cos_t[p * half + i] = (float)(mscale * cos(a));
            sin_t[p * half + i] = (float)(mscale * sin(a));
        }
    }
}

static void rotate(float *x, const float *cos_t, const float *sin_t, const int32_t *pos, int64_t N,
                   int H, int D, int64_t row_stride, float sign) {
    int half = D / 2;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *c = cos_t + (int64_t)pos[n] * half, *s = sin_t + (int64_t)pos[n] * half;
        for (int h = 0; h < H; h++) {
            float *v = x + n * row_stride + (int64_t)h * D;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], si = sign * s[i];
                v[i] = a * c[i] - b * si;
                v[i + half] = b * c[i] + a * si;
            }
        }
    }
}

void rope_forward_cpu(float *x, const float *cos_t, const float *sin_t, const int32_t *pos,
                      int64_t N, int H, int D, int64_t row_stride) {
    rotate(x, cos_t, sin_t, pos, N, H, D, row_stride, 1.0f);
}

void rope_backward_cpu(float *dx, const float *cos_t, const float *sin_t, const int32_t *pos,
                       int64_t N, int H, int D, int64_t row_stride) {
    rotate(dx, cos_t, sin_t, pos, N, H, D, row_stride, -1.0f);
}
