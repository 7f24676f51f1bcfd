/*
 * randn.h: the benchmarks' random inputs, on the host: unit normals from a fixed 64-bit LCG and
 * Box-Muller, optionally correlated over tokens. bench_attention uploads them to the device;
 * selection_locality runs the CPU selection on them, so both see the same queries for a seed.
 */
#ifndef INFLLM_BENCH_RANDN_H
#define INFLLM_BENCH_RANDN_H

#include <stdint.h>

/* h[0..n) = unit normals from `seed`. rho > 0 correlates neighbouring tokens (rows of `width`
 * values) as an AR(1) sequence: x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t, each value still a unit
 * normal, correlation rho^k at distance k. */
void bench_randn(float *h, int64_t n, uint64_t seed, int64_t width, double rho);

#endif
