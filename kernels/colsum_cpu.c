/*
 * colsum_cpu.c: CPU reference of colsum.h.
 *
 * Each thread owns a range of channels (whole 16-channel blocks, so no two threads write one cache
 * line) and sums its rows in order into double accumulators.
 */
#include <stdlib.h>

#include <omp.h>

#include "check.h"
#include "colsum.h"

/* The channels [*c0, *c1) of C the calling thread owns, split as evenly as whole blocks go. */
static void thread_channels(int64_t C, int64_t *c0, int64_t *c1) {
    int64_t blocks = (C + 15) / 16, t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t hi = 16 * (blocks * (t + 1) / nt);
    *c0 = 16 * (blocks * t / nt);
    *c1 = hi < C ? hi : C;
}

/* acc (c1 - c0) += the rows' terms of channels [c0, c1). */
static void sum_rows(double *acc, const float *a, const float *b, const float *r, int64_t N, int C,
                     int64_t c0, int64_t c1) {
    int64_t width = c1 - c0;
    for (int64_t n = 0; n < N; n++) {
        const float *an = a + n * C + c0;
        double rn = r ? r[n] : 1.0;
        if (b) {
            const float *bn = b + n * C + c0;
#pragma omp simd
            for (int64_t c = 0; c < width; c++) acc[c] += (double)an[c] * bn[c] * rn;
        } else {
#pragma omp simd
            for (int64_t c = 0; c < width; c++) acc[c] += (double)an[c] * rn;
        }
    }
}

void colsum_cpu(float *out, const float *a, const float *b, const float *r, int64_t N, int C,
                float scale) {
#pragma omp parallel
    {
        int64_t c0, c1;
        thread_channels(C, &c0, &c1);
        if (c0 < c1) {
            double *acc = xcalloc((size_t)(c1 - c0), sizeof(double));
            sum_rows(acc, a, b, r, N, C, c0, c1);
            for (int64_t c = c0; c < c1; c++) out[c] += (float)(scale * acc[c - c0]);
            free(acc);
        }
    }
}
