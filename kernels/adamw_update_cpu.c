/*
 * adamw_update_cpu.c: CPU reference of adamw_update.h.
 */
#include <math.h>
#include <stdlib.h>

#include "adamw_update.h"
#include "check.h"

void adamw_update_cpu(float *master, float *m, float *v, const float *grad, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                      int64_t t) {
    float bc1 = (float)(1.0 - pow(beta1, (double)t));
    float bc2 = (float)(1.0 - pow(beta2, (double)t));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float update = (mi / bc1) / (sqrtf(vi / bc2) + eps);
        master[i] -= lr * (update + weight_decay * master[i]);
    }
}

double sumsq_cpu(const float *x, int64_t n) {
    double s = 0;
    /* Fixed-size blocks summed in order: the same result for any thread count. */
    const int64_t blk = 4096;
    int64_t nb = (n + blk - 1) / blk;
    double *part = xcalloc((size_t)nb + 1, sizeof(double));
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        double acc = 0;
        int64_t hi = (b + 1) * blk < n ? (b + 1) * blk : n;
        for (int64_t i = b * blk; i < hi; i++) acc += (double)x[i] * x[i];
        part[b] = acc;
    }
    for (int64_t b = 0; b < nb; b++) s += part[b];
    free(part);
    return s;
}
