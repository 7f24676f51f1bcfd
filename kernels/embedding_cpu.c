/*
 * embedding_cpu.c: CPU reference of embedding.h.
 *
 * Dimensions: N tokens, C channels, V vocabulary. The forward splits the tokens among threads;
 * the backward splits the channels (whole 16-channel blocks, so no two threads write one cache
 * line) and every thread walks all tokens in order, so each element of dwte is summed in token
 * order by one thread whatever the thread count. Gradient rule: the backward ADDS into dwte.
 */
#include <omp.h>

#include "check.h"
#include "embedding.h"

void embedding_forward_cpu(float *out, const int32_t *tokens, const float *wte, int64_t N, int C,
                           float scale) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        CHECKF(tokens[n] >= 0, "token %d at row %lld is negative", (int)tokens[n], (long long)n);
        const float *row = wte + (int64_t)tokens[n] * C;
        float *o = out + n * C;
        for (int c = 0; c < C; c++) o[c] = scale * row[c];
    }
}

void embedding_backward_cpu(float *dwte, const float *dout, const int32_t *tokens, int64_t N,
                            int C, float scale) {
    int64_t blocks = ((int64_t)C + 15) / 16;
#pragma omp parallel
    {
        int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t c0 = 16 * (blocks * t / nt), c1 = 16 * (blocks * (t + 1) / nt);
        c1 = c1 < C ? c1 : C;
        for (int64_t n = 0; n < N; n++) {
            float *d = dwte + (int64_t)tokens[n] * C;
            const float *g = dout + n * C;
            for (int64_t c = c0; c < c1; c++) d[c] += scale * g[c];
        }
    }
}
