/*
 * bias_cpu.c: CPU reference of bias.h.
 *
 * Dimensions: N rows, C channels. The forward splits rows across threads; the backward is the
 * column sum of colsum.h (row order, double accumulators): any thread count gives the same bits.
 * Gradient rule: the backward ADDS into db.
 */
#include "bias.h"
#include "colsum.h"

void bias_forward_cpu(float *y, const float *b, int64_t N, int C, float scale) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *row = y + n * C;
        for (int c = 0; c < C; c++) row[c] += scale * b[c];
    }
}

void bias_backward_cpu(float *db, const float *dy, int64_t N, int C, float scale) {
    colsum_cpu(db, dy, NULL, NULL, N, C, scale);
}
