/*
 * checked.c: size arithmetic that cannot wrap (see checked.h).
 */
#include "checked.h"

#include "check.h"

int64_t sat_mul(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return SIZE_SAT;
    if (a != 0 && b > SIZE_SAT / a) return SIZE_SAT;
    return a * b;
}

int64_t sat_add(int64_t a, int64_t b) {
    if (a < 0 || b < 0 || a > SIZE_SAT - b) return SIZE_SAT;
    return a + b;
}

/* r = a op b, computed saturating: returned when within SIZE_LIMIT, else the run stops. */
static int64_t within_limit(int64_t r, int64_t a, char op, int64_t b, const char *file, int line) {
    if (r > SIZE_LIMIT)
        die_at(file, line, op == '*' ? "size_mul" : "size_add", "size %lld %c %lld is negative or "
               "beyond 2^62 (a size the config's validation should have bounded)", (long long)a,
               op, (long long)b);
    return r;
}

int64_t size_mul_at(int64_t a, int64_t b, const char *file, int line) {
    return within_limit(sat_mul(a, b), a, '*', b, file, line);
}

int64_t size_add_at(int64_t a, int64_t b, const char *file, int line) {
    return within_limit(sat_add(a, b), a, '+', b, file, line);
}
