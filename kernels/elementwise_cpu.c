/*
 * elementwise_cpu.c: CPU reference of elementwise.h.
 */
#include "elementwise.h"

void add_inplace_cpu(float *dst, const float *src, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}
