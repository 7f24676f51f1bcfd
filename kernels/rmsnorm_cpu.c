/*
 * rmsnorm_cpu.c: CPU reference of rmsnorm.h. Row sums in double (the reference should not add its
 * own rounding); the weight gradient is reduced over rows in row order per channel.
 */
#include <math.h>

#include "rmsnorm.h"

void rmsnorm_forward_cpu(float *out, float *rstd, const float *x, const float *w, int64_t N, int C,
                         float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        rstd[n] = r;
        float *o = out + n * C;
        for (int c = 0; c < C; c++) o[c] = xr[c] * r * w[c];
    }
}

void rmsnorm_backward_cpu(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int64_t N, int C) {
    /* dx_c = r w_c g_c - r^3 / C * x_c * sum_k w_k g_k x_k */
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *g = dout + n * C;
        double dot = 0;
        for (int c = 0; c < C; c++) dot += (double)w[c] * g[c] * xr[c];
        float r = rstd[n];
        float k = (float)((double)r * r * r * dot / C);
        float *d = dx + n * C;
        for (int c = 0; c < C; c++) d[c] += r * w[c] * g[c] - k * xr[c];
    }
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double acc = 0;
        for (int64_t n = 0; n < N; n++) acc += (double)dout[n * C + c] * x[n * C + c] * rstd[n];
        dw[c] += (float)acc;
    }
}
