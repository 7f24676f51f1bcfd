/*
 * safetensors_impl.h: what the safetensors reader and writer share (private to them).
 */
#ifndef INFLLM_SAFETENSORS_IMPL_H
#define INFLLM_SAFETENSORS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"

#define ST_N_DTYPES 5
#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */

/* Length of the UTF-8 sequence at p (at most n bytes), or 0 when it is invalid: overlong forms,
 * surrogates and code points above U+10FFFF are rejected, as Rust's from_utf8 does. */
size_t st_utf8_seq(const uint8_t *p, size_t n);

/* Writes "<name>: <printf message>" into err (n bytes; err may be NULL) and returns -1. */
int st_fail(char *err, size_t n, const char *name, const char *fmt, ...) INFLLM_PRINTF(4, 5);

#endif
