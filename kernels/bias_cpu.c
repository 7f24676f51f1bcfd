/*
 * bias_cpu.c: CPU reference of bias.h.
 *
 * Dimensions: N rows, C channels. The forward splits rows across threads; the backward gives each
 * thread a range of channels (whole 16-channel blocks, so no two threads write one cache line) and
 * sums its rows in row order into double accumulators: any thread count gives the same bits.
 * Gradient rule: the backward ADDS into db.
 */
#include <stdlib.h>

#include <omp.h>

#include "bias.h"
#include "check.h"

void bias_forward_cpu(float *y, const float *b, int64_t N, int C, float scale) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *row = y + n * C;
        for (int c = 0; c < C; c++) row[c] += scale * b[c];
    }
}

void bias_backward_cpu(float *db, const float *dy, int64_t N, int C, float scale) {
    int64_t blocks = ((int64_t)C + 15) / 16;
#pragma omp parallel
    {
        int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t c0 = 16 * (blocks * t / nt), c1 = 16 * (blocks * (t + 1) / nt);
        c1 = c1 < C ? c1 : C;
        if (c0 < c1) {
            int64_t width = c1 - c0;
            double *acc = xcalloc((size_t)width, sizeof(double));
            for (int64_t n = 0; n < N; n++) {
                const float *g = dy + n * C + c0;
#pragma omp simd
                for (int64_t c = 0; c < width; c++) acc[c] += g[c];
            }
            for (int64_t c = 0; c < width; c++) db[c0 + c] += (float)(scale * acc[c]);
            free(acc);
        }
    }
}
