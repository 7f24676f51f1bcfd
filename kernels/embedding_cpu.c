/*
 * embedding_cpu.c: CPU reference of embedding.h.
 */
#include <omp.h>

#include "embedding.h"

void embedding_forward_cpu(float *out, const int32_t *tokens, const float *wte, int64_t N, int C,
                           float scale) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = wte + (int64_t)tokens[n] * C;
        float *o = out + n * C;
        for (int c = 0; c < C; c++) o[c] = scale * row[c];
    }
}

/* Threads split the channels: each (token, channel) element is summed by one thread in token
 * order, so the result does not depend on the thread count. */
void embedding_backward_cpu(float *dwte, const float *dout, const int32_t *tokens, int64_t N,
                            int C, float scale) {
#pragma omp parallel
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int c0 = (int)((int64_t)C * tid / nt), c1 = (int)((int64_t)C * (tid + 1) / nt);
        for (int64_t n = 0; n < N; n++) {
            float *d = dwte + (int64_t)tokens[n] * C;
            const float *g = dout + n * C;
            for (int c = c0; c < c1; c++) d[c] += scale * g[c];
        }
    }
}
