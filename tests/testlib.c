/*
 * testlib.c: shared test helpers (see testlib.h).
 */
#include "testlib.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hash.h"
#include "params.h"

static int n_checks, n_failed;

uint64_t t_rng_u64(struct t_rng *r) { return mix64(r->state += 0x9E3779B97F4A7C15ull); }

double t_rng_uniform(struct t_rng *r) { return (double)(t_rng_u64(r) >> 11) * 0x1.0p-53; }

double t_rng_normal(struct t_rng *r) {
    double u1 = t_rng_uniform(r), u2 = t_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void t_fill_normal(struct t_rng *r, float *x, int64_t n, float std) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(std * t_rng_normal(r));
}

void t_fill_uniform(struct t_rng *r, float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * t_rng_uniform(r));
}

void t_randomize_extras(struct t_rng *r, const struct param_entry *entries, int n, float *w) {
    for (int e = 0; e < n; e++) {
        const struct param_entry *p = &entries[e];
        if (strstr(p->name, "_proj.bias")) t_fill_normal(r, w + p->offset, p->numel, 0.3f);
        if (strstr(p->name, "self_attn.") && strstr(p->name, "_norm.weight"))
            t_fill_uniform(r, w + p->offset, p->numel, 0.5f, 1.5f);
    }
}

static bool close_report(const char *what, int64_t n, int64_t worst, double got, double ref,
                         double excess, int64_t nbad) {
    n_checks++;
    if (nbad == 0) return true;
    n_failed++;
    printf("FAIL %s: %lld of %lld elements out of tolerance; worst [%lld] got %.9g ref %.9g "
           "(excess %.3g)\n",
           what, (long long)nbad, (long long)n, (long long)worst, got, ref, excess);
    return false;
}

bool t_close_d(const char *what, const double *got, const double *ref, int64_t n, double atol,
               double rtol) {
    int64_t nbad = 0, worst = 0;
    double worst_excess = -1;
    for (int64_t i = 0; i < n; i++) {
        double tol = atol + rtol * fabs(ref[i]);
        double err = fabs(got[i] - ref[i]);
        bool bad = !(err <= tol); /* NaN fails */
        double excess = isnan(err) ? INFINITY : err - tol;
        if (bad) nbad++;
        if (bad && excess > worst_excess) {
            worst_excess = excess;
            worst = i;
        }
    }
    return close_report(what, n, worst, n ? got[worst] : 0, n ? ref[worst] : 0, worst_excess, nbad);
}

bool t_close(const char *what, const float *got, const float *ref, int64_t n, double atol,
             double rtol) {
    int64_t nbad = 0, worst = 0;
    double worst_excess = -1;
    for (int64_t i = 0; i < n; i++) {
        double tol = atol + rtol * fabs((double)ref[i]);
        double err = fabs((double)got[i] - (double)ref[i]);
        bool bad = !(err <= tol);
        double excess = isnan(err) ? INFINITY : err - tol;
        if (bad) nbad++;
        if (bad && excess > worst_excess) {
            worst_excess = excess;
            worst = i;
        }
    }
    return close_report(what, n, worst, n ? got[worst] : 0, n ? ref[worst] : 0, worst_excess, nbad);
}

bool t_check(bool ok, const char *fmt, ...) {
    n_checks++;
    if (ok) return true;
    n_failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return false;
}

bool t_equal_i32(const char *what, const int32_t *got, const int32_t *ref, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (got[i] != ref[i])
            return t_check(false, "%s: element %lld is %d, expected %d", what, (long long)i,
                           got[i], ref[i]);
    }
    return t_check(true, "%s", what);
}

double t_max_rel_diff(const float *a, const float *b, int64_t n) {
    double maxdiff = 0, maxref = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY;
        if (d > maxdiff) maxdiff = d;
        if (fabs((double)b[i]) > maxref) maxref = fabs((double)b[i]);
    }
    return maxdiff / (maxref > 1e-30 ? maxref : 1e-30);
}

int t_failures(void) { return n_failed; }

int t_finish(const char *name) {
    if (n_failed)
        printf("%s: %d of %d checks FAILED\n", name, n_failed, n_checks);
    else
        printf("%s: all %d checks passed\n", name, n_checks);
    return n_failed ? 1 : 0;
}
