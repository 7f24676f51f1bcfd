/*
 * rmsnorm_cpu.c: CPU reference of rmsnorm.h.
 *
 * Dimensions: N rows (tokens), C channels. Threads split the rows for the output and dx, and the
 * channels (in blocks of 16) for dw, whose sum over rows runs in row order in one thread
 * (colsum.h).
 * Precision: every reduction (sum of squares, the dot product of the backward, dw over rows) is
 * accumulated in double, so the reference adds no rounding of its own beyond fp32 storage; the
 * row reductions are `omp simd` reductions (vectorised, an order fixed by the compiled code).
 * Gradient rule: the backward ADDS into dx and dw.
 */
#include <math.h>

#include "colsum.h"
#include "rmsnorm.h"

/* sum_c x_c^2 in double. */
static double sum_squares(const float *x, int C) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += (double)x[c] * x[c];
    return s;
}

/* sum_c w_c g_c x_c in double. */
static double dot3(const float *w, const float *g, const float *x, int C) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += (double)w[c] * g[c] * x[c];
    return s;
}

void rmsnorm_forward_cpu(float *out, float *rstd, const float *x, const float *w, int64_t N, int C,
                         float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        float r = (float)(1.0 / sqrt(sum_squares(xr, C) / C + eps));
        rstd[n] = r;
        float *o = out + n * C;
        for (int c = 0; c < C; c++) o[c] = xr[c] * r * w[c];
    }
}

/* dx_c += r w_c g_c - r^3 / C * x_c * sum_k w_k g_k x_k, one row per iteration. */
static void rmsnorm_dx(float *dx, const float *dout, const float *x, const float *w,
                       const float *rstd, int64_t N, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *g = dout + n * C;
        float r = rstd[n];
        float k = (float)((double)r * r * r * dot3(w, g, xr, C) / C);
        float *d = dx + n * C;
        for (int c = 0; c < C; c++) d[c] += r * w[c] * g[c] - k * xr[c];
    }
}

void rmsnorm_backward_cpu(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int64_t N, int C) {
    rmsnorm_dx(dx, dout, x, w, rstd, N, C);
    colsum_cpu(dw, dout, x, rstd, N, C, 1.0f); /* dw_c += sum_n g_nc x_nc r_n */
}
