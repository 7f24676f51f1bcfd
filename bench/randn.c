/*
 * randn.c: the benchmarks' random inputs (see randn.h).
 */
#include "randn.h"

#include <math.h>

void bench_randn(float *h, int64_t n, uint64_t seed, int64_t width, double rho) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i += 2) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u1 = ((s >> 11) + 0.5) * 0x1.0p-53;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u2 = (s >> 11) * 0x1.0p-53, r = sqrt(-2 * log(u1));
        h[i] = (float)(r * cos(6.283185307179586 * u2));
        if (i + 1 < n) h[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
    if (rho > 0)
        for (int64_t i = width; i < n; i++)
            h[i] = (float)(rho * h[i - width] + sqrt(1 - rho * rho) * h[i]);
}
