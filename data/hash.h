/*
 * hash.h: the one 64-bit mixing function of the project, splitmix64's finaliser. Everything random
 * is a pure function of a seed and a counter through it: the random weight init (src/model.c), the
 * loader's epoch shuffles (loader.c) and the synthetic task (synthetic.c). Changing it changes
 * every run's data and initial weights.
 */
#ifndef INFLLM_HASH_H
#define INFLLM_HASH_H

#include <stdint.h>

/* A bijective mix of z (Stafford's variant 13, as in splitmix64). */
uint64_t mix64(uint64_t z);

#endif
