/*
 * test_rope.c: the RoPE frequencies of every rope type (kernels/rope_cpu.c rope_frequencies) and
 * the cos/sin tables built from them (rope_table_fill), against float64 reference formulas written
 * here another way: through wavelengths and rotation counts (the YaRN and Llama 3.1 papers' terms)
 * rather than transformers' code paths, exp / log instead of pow.
 *
 *   default  inv_i = exp(-(2i/D) ln theta)
 *   linear   inv_i / factor
 *   dynamic  theta' = theta (factor T / max - factor + 1)^(D / (D - 2)) when T > max, else theta
 *   yarn     lo, hi = the dims where a frequency turns beta_fast and beta_slow times over the
 *            original context (floor / ceil with truncate); inv_i = default_i ((1 - w) / factor
 *            + w), w = clamp((hi - i) / (hi - lo), 0, 1) the weight of the unscaled frequency;
 *            attention factor 0.1 ln(factor) + 1, or the mscale ratio, or the given one
 *   llama3   rotations over the original context n_i = original / wavelength_i: n < low: / factor,
 *            n > high: kept, between: mixed by (n - low) / (high - low)
 *   longrope inv_i = default_i / factor_i (long factors when T > original), attention factor
 *            sqrt(1 + ln(s) / ln(original))
 *
 * Frequencies: relative 1e-13 (double against double). Tables: fp32 storage of values computed in
 * double (6e-8 relative) plus the angle's double rounding (~1e-16 x p radians): atol 1e-10,
 * rtol 1.2e-7 up to p = 70000.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rope.h"
#include "testlib.h"

#define PI 3.14159265358979323846

static double ref_default(int i, int D, double theta) { return exp(-(2.0 * i / D) * log(theta)); }

/* The dimension index (fractional) at which a frequency turns `rotations` times over len tokens:
 * rotations = len / wavelength, wavelength = 2 pi theta^(2d/D). */
static double dim_of_rotations(double rotations, int D, double theta, double len) {
    return D / 2.0 * log(len / (2.0 * PI * rotations)) / log(theta);
}

static double ref_yarn(double *inv, const struct rope_params *p) {
    double fast = p->beta_fast ? p->beta_fast : 32, slow = p->beta_slow ? p->beta_slow : 1;
    double orig = (double)p->original_max_position_embeddings;
    double lo = dim_of_rotations(fast, p->D, p->theta, orig);
    double hi = dim_of_rotations(slow, p->D, p->theta, orig);
    if (p->truncate) lo = floor(lo), hi = ceil(hi);
    lo = fmax(lo, 0.0);
    hi = fmin(hi, p->D - 1.0);
    if (hi == lo) hi += 0.001;
    for (int i = 0; i < p->D / 2; i++) {
        double w = fmin(fmax((hi - i) / (hi - lo), 0.0), 1.0); /* 1: keep, 0: interpolate */
        inv[i] = ref_default(i, p->D, p->theta) * ((1.0 - w) / p->factor + w);
    }
    double f = p->factor;
    if (p->attention_factor) return p->attention_factor;
    double m = f > 1 ? 0.1 * log(f) : 0.0;
    if (p->mscale && p->mscale_all_dim) return (p->mscale * m + 1) / (p->mscale_all_dim * m + 1);
    return m + 1;
}

static void ref_llama3(double *inv, const struct rope_params *p) {
    double orig = (double)p->original_max_position_embeddings;
    for (int i = 0; i < p->D / 2; i++) {
        double base = ref_default(i, p->D, p->theta);
        double n = orig * base / (2.0 * PI); /* rotations over the original context */
        if (n < p->low_freq_factor) {
            inv[i] = base / p->factor;
        } else if (n > p->high_freq_factor) {
            inv[i] = base;
        } else {
            double s = (n - p->low_freq_factor) / (p->high_freq_factor - p->low_freq_factor);
            inv[i] = base * ((1.0 - s) / p->factor + s);
        }
    }
}

/* The reference frequencies and attention scaling of p. */
static double ref_frequencies(double *inv, const struct rope_params *p) {
    int D = p->D;
    double theta = p->theta, mscale = 1.0;
    if (p->type == ROPE_TYPE_YARN) return ref_yarn(inv, p);
    if (p->type == ROPE_TYPE_LLAMA3) {
        ref_llama3(inv, p);
        return 1.0;
    }
    if (p->type == ROPE_TYPE_DYNAMIC && p->T > p->max_position_embeddings)
        theta *= exp((double)D / (D - 2) *
                     log(p->factor * p->T / (double)p->max_position_embeddings - p->factor + 1));
    for (int i = 0; i < D / 2; i++) inv[i] = ref_default(i, D, theta);
    if (p->type == ROPE_TYPE_LINEAR)
        for (int i = 0; i < D / 2; i++) inv[i] /= p->factor;
    if (p->type == ROPE_TYPE_LONGROPE) {
        double orig = (double)p->original_max_position_embeddings;
        const double *ext = p->T > p->original_max_position_embeddings ? p->long_factor
                                                                         : p->short_factor;
        for (int i = 0; i < D / 2; i++) inv[i] /= ext[i];
        double s = p->factor ? p->factor : p->max_position_embeddings / orig;
        mscale = p->attention_factor ? p->attention_factor
                                     : (s > 1 ? sqrt(1 + log(s) / log(orig)) : 1.0);
    }
    return mscale;
}

/* rope_frequencies and rope_table_fill of p against the reference, on T positions. */
static void check_type(const char *what, const struct rope_params *p) {
    int half = p->D / 2;
    double *inv = xmalloc((size_t)half * sizeof(double)), *ref = xmalloc((size_t)half * sizeof(double));
    double ms = rope_frequencies(inv, p), ref_ms = ref_frequencies(ref, p);
    char buf[160];
    snprintf(buf, sizeof buf, "%s: inv_freq", what);
    t_close_d(buf, inv, ref, half, 0.0, 1e-13);
    t_check(fabs(ms - ref_ms) <= 1e-15 * ref_ms, "%s: attention scaling %.17g, reference %.17g",
            what, ms, ref_ms);
    int64_t n = p->T * half;
    float *c = xmalloc((size_t)n * sizeof(float)), *s = xmalloc((size_t)n * sizeof(float));
    double *cr = xmalloc((size_t)n * sizeof(double)), *sr = xmalloc((size_t)n * sizeof(double));
    rope_table_fill(c, s, p->T, p->D, inv, ms);
    for (int64_t q = 0; q < p->T; q++)
        for (int i = 0; i < half; i++) {
            cr[q * half + i] = ref_ms * cos((double)q * ref[i]);
            sr[q * half + i] = ref_ms * sin((double)q * ref[i]);
        }
    double *cg = xmalloc((size_t)n * sizeof(double)), *sg = xmalloc((size_t)n * sizeof(double));
    for (int64_t k = 0; k < n; k++) cg[k] = c[k], sg[k] = s[k];
    snprintf(buf, sizeof buf, "%s: cos table (T=%lld)", what, (long long)p->T);
    t_close_d(buf, cg, cr, n, 1e-10, 1.2e-7);
    snprintf(buf, sizeof buf, "%s: sin table", what);
    t_close_d(buf, sg, sr, n, 1e-10, 1.2e-7);
    free(inv), free(ref), free(c), free(s), free(cr), free(sr), free(cg), free(sg);
    printf("  ok %-44s attention scaling %.6f\n", what, ms);
}

/* The variants, on Llama-like and small shapes; T beyond the original context where it matters. */
static void test_types(struct t_rng *rng) {
    double longf[64], shortf[64];
    for (int i = 0; i < 64; i++) longf[i] = 1 + 40 * t_rng_uniform(rng), shortf[i] = 1 + t_rng_uniform(rng);
    struct rope_params base = {.D = 128, .T = 4096, .theta = 500000, .max_position_embeddings = 4096,
                               .original_max_position_embeddings = 1024, .truncate = true};
    struct rope_params p = base;
    check_type("default D=128 theta=5e5", &p);
    p = base, p.type = ROPE_TYPE_LINEAR, p.factor = 4;
    check_type("linear factor 4", &p);
    p = base, p.type = ROPE_TYPE_DYNAMIC, p.factor = 2, p.max_position_embeddings = 1024;
    check_type("dynamic factor 2, T 4x max", &p);
    p.T = 512;
    check_type("dynamic factor 2, T below max (plain)", &p);
    p = base, p.type = ROPE_TYPE_YARN, p.factor = 4, p.theta = 10000;
    check_type("yarn factor 4, defaults", &p);
    p.truncate = false;
    check_type("yarn factor 4, defaults, no truncation", &p);
    p.beta_fast = 16, p.beta_slow = 2, p.mscale = 0.8, p.mscale_all_dim = 0.5, p.truncate = false;
    check_type("yarn betas, mscale ratio, no truncation", &p);
    p.attention_factor = 1.25;
    check_type("yarn attention_factor 1.25", &p);
    p = base, p.type = ROPE_TYPE_YARN, p.factor = 2, p.D = 8, p.theta = 1e6, p.T = 600;
    p.original_max_position_embeddings = 4; /* both correction dims clamp to 0 */
    check_type("yarn D=8: an empty correction range", &p);
    p = base, p.type = ROPE_TYPE_LLAMA3, p.factor = 8, p.low_freq_factor = 1, p.high_freq_factor = 4;
    p.original_max_position_embeddings = 8192, p.T = 70000;
    check_type("llama3 (Llama 3.1's values), T 70000", &p);
    p = base, p.type = ROPE_TYPE_LONGROPE, p.long_factor = longf, p.short_factor = shortf;
    check_type("longrope long factors, derived scaling", &p);
    p.T = 1024;
    check_type("longrope short factors (T = original)", &p);
    p.factor = 16, p.attention_factor = 0;
    check_type("longrope with factor 16", &p);
}

/* The types that ignore T give the same frequencies at every T; the plain form of rope_table_init
 * is rope_table_fill of the default frequencies, bit for bit. */
static void test_invariants(void) {
    double a[32], b[32];
    struct rope_params p = {.type = ROPE_TYPE_LLAMA3, .D = 64, .T = 100, .theta = 5e5,
                            .original_max_position_embeddings = 256, .factor = 8,
                            .low_freq_factor = 1, .high_freq_factor = 4};
    rope_frequencies(a, &p);
    p.T = 100000;
    rope_frequencies(b, &p);
    t_check(memcmp(a, b, sizeof a) == 0, "llama3 frequencies do not depend on T");
    float c1[8 * 32], s1[8 * 32], c2[8 * 32], s2[8 * 32];
    struct rope_params d = {.type = ROPE_TYPE_DEFAULT, .D = 64, .T = 8, .theta = 1e4};
    double ms = rope_frequencies(a, &d);
    rope_table_fill(c1, s1, 8, 64, a, ms);
    rope_table_init(c2, s2, 8, 64, 1e4, NULL, 1.0);
    t_check(ms == 1.0 && memcmp(c1, c2, sizeof c1) == 0 && memcmp(s1, s2, sizeof s1) == 0,
            "default frequencies = rope_table_init without factors, bit for bit");
}

int main(void) {
    struct t_rng rng = {42};
    test_types(&rng);
    test_invariants();
    return t_finish("test_rope");
}
