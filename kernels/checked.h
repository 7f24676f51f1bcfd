/*
 * checked.h: size arithmetic that cannot wrap.
 *
 * Sizes are products of counts that come from the user: config keys, an imported config.json,
 * state.json. In int they wrap, and a wrapped size allocates too little and is then written out
 * of bounds; in int64_t a product of several keys can still wrap. Every size derived from user
 * numbers is computed with these, in int64_t, overflow checked:
 *   sat_mul, sat_add    saturate at SIZE_SAT (INT64_MAX) and stay there through further sat_*
 *                       calls: validation code computes a whole product, compares it with a limit
 *                       once and names the key itself (config_validate);
 *   size_mul, size_add  fail fast on a negative operand or a result past SIZE_LIMIT (2^62):
 *                       validation keeps every size of a run below it, so reaching it is a broken
 *                       invariant, reported with the call site and both operands (exit 1), never
 *                       a wrapped size.
 * SIZE_LIMIT leaves room to add up a few sizes (the arenas of a plan) without wrapping.
 */
#ifndef INFLLM_CHECKED_H
#define INFLLM_CHECKED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SIZE_LIMIT ((int64_t)1 << 62) /* the largest size (elements or bytes) a run may use */
#define SIZE_SAT INT64_MAX            /* what sat_mul and sat_add give past INT64_MAX */

/* a * b for a, b >= 0; SIZE_SAT when either is negative or the product exceeds INT64_MAX. */
int64_t sat_mul(int64_t a, int64_t b);

/* a + b for a, b >= 0; SIZE_SAT when either is negative or the sum exceeds INT64_MAX. */
int64_t sat_add(int64_t a, int64_t b);

/* a * b and a + b of sizes, checked: dies (exit 1) naming file:line when an operand is negative or
 * the result exceeds SIZE_LIMIT. */
int64_t size_mul_at(int64_t a, int64_t b, const char *file, int line);
int64_t size_add_at(int64_t a, int64_t b, const char *file, int line);
#define size_mul(a, b) size_mul_at((int64_t)(a), (int64_t)(b), __FILE__, __LINE__)
#define size_mul3(a, b, c) size_mul(size_mul(a, b), c)
#define size_add(a, b) size_add_at((int64_t)(a), (int64_t)(b), __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif

#endif
