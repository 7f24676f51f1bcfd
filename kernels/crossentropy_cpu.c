/*
 * crossentropy_cpu.c: CPU reference of crossentropy.h. The sum of exponentials is kept in double.
 */
#include <math.h>

#include "crossentropy.h"

void crossentropy_forward_backward_cpu(float *loss, float *dlogits, const float *logits,
                                       const int32_t *targets, int64_t N, int64_t V,
                                       float dscale) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = logits + n * V;
        int32_t t = targets[n];
        float m = -INFINITY;
        for (int64_t v = 0; v < V; v++) m = row[v] > m ? row[v] : m;
        double s = 0;
        for (int64_t v = 0; v < V; v++) s += exp((double)row[v] - m);
        double lse = m + log(s);
        float target_logit = t >= 0 ? row[t] : 0.0f;
        loss[n] = t >= 0 ? (float)(lse - target_logit) : 0.0f;
        if (!dlogits) continue;
        float *d = dlogits + n * V; /* may alias row: each element is read before it is written */
        float scale = t >= 0 ? dscale : 0.0f;
        for (int64_t v = 0; v < V; v++) {
            float p = (float)exp((double)row[v] - lse);
            d[v] = scale * (p - (v == t ? 1.0f : 0.0f));
        }
    }
}
