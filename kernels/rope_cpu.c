/*
 * rope_cpu.c: CPU reference of rope.h (rotate-half layout, LongRoPE factors, mscale).
 *
 * Dimensions: N rows (tokens), H heads, D head dim (even), T positions in the tables.
 * The tables are computed in double and stored in fp32; the rotation is fp32, in place, threads
 * splitting the rows. The backward is the same rotation with -sin (the transpose).
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "rope.h"

void rope_table_init(float *cos_t, float *sin_t, int64_t T, int D, double theta,
                     const double *factor, double mscale) {
    CHECK(D > 0 && D % 2 == 0);
    int half = D / 2;
    double *inv_freq = xmalloc((size_t)half * sizeof(double)); /* (D/2) */
    for (int i = 0; i < half; i++)
        inv_freq[i] = 1.0 / ((factor ? factor[i] : 1.0) * pow(theta, (double)(2 * i) / D));
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * inv_freq[i];
            cos_t[p * half + i] = (float)(mscale * cos(a));
            sin_t[p * half + i] = (float)(mscale * sin(a));
        }
    free(inv_freq);
}

/* x[n, h, :] <- rotation by (c, sign * s) of the pairs (i, i + D/2), for every row and head. */
static void rotate(float *x, const float *cos_t, const float *sin_t, const int32_t *pos, int64_t N,
                   int H, int D, int64_t row_stride, float sign) {
    int half = D / 2;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *restrict c = cos_t + (int64_t)pos[n] * half;
        const float *restrict s = sin_t + (int64_t)pos[n] * half;
        for (int h = 0; h < H; h++) {
            float *restrict lo = x + n * row_stride + (int64_t)h * D, *restrict hi = lo + half;
            for (int i = 0; i < half; i++) {
                float a = lo[i], b = hi[i], si = sign * s[i];
                lo[i] = a * c[i] - b * si;
                hi[i] = b * c[i] + a * si;
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
