/*
 * rope_cpu.c: CPU reference of rope.h: the frequencies of each rope type, the cos/sin tables
 * (rotate-half layout, attention scaling folded in), the rotation.
 *
 * Dimensions: N rows (tokens), H heads, D head dim (even), T positions in the tables.
 * The tables are computed in double and stored in fp32; the rotation is fp32, in place, threads
 * splitting the rows. The backward is the same rotation with -sin (the transpose).
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "rope.h"

#define ROPE_PI 3.14159265358979323846 /* Python's math.pi */

/* ---- frequencies of the rope types (transformers' modeling_rope_utils.py, in double) ---- */

static void default_frequencies(double *inv, int D, double theta) {
    for (int i = 0; i < D / 2; i++) inv[i] = 1.0 / pow(theta, (double)(2 * i) / D);
}

/* YaRN's get_mscale: 0.1 * m * ln(s) + 1 for s > 1, else 1. */
static double yarn_mscale(double s, double m) { return s <= 1.0 ? 1.0 : 0.1 * m * log(s) + 1.0; }

/* The dimension at which a frequency turns `rotations` times over `len` positions. */
static double yarn_correction_dim(double rotations, int D, double theta, double len) {
    return D * log(len / (rotations * 2.0 * ROPE_PI)) / (2.0 * log(theta));
}

/* YaRN: frequencies below the correction range are interpolated (/ factor), above it kept,
 * linearly mixed inside it; the attention factor from attention_factor, or mscale / mscale_all_dim,
 * or factor alone. beta_fast / beta_slow 0 mean 32 / 1 (transformers: `or 32`, `or 1`). */
static double yarn_frequencies(double *inv, const struct rope_params *p) {
    int D = p->D;
    double f = p->factor, orig = (double)p->original_max_position_embeddings;
    double fast = p->beta_fast != 0.0 ? p->beta_fast : 32.0;
    double slow = p->beta_slow != 0.0 ? p->beta_slow : 1.0;
    double low = yarn_correction_dim(fast, D, p->theta, orig);
    double high = yarn_correction_dim(slow, D, p->theta, orig);
    if (p->truncate) low = floor(low), high = ceil(high);
    if (low < 0.0) low = 0.0;
    if (high > D - 1) high = D - 1;
    if (low == high) high += 0.001; /* no singular ramp */
    for (int i = 0; i < D / 2; i++) {
        double pos_freq = pow(p->theta, (double)(2 * i) / D);
        double ramp = ((double)i - low) / (high - low);
        ramp = ramp < 0.0 ? 0.0 : ramp > 1.0 ? 1.0 : ramp;
        double keep = 1.0 - ramp; /* weight of the unscaled (extrapolated) frequency */
        inv[i] = 1.0 / (f * pos_freq) * (1.0 - keep) + 1.0 / pos_freq * keep;
    }
    if (p->attention_factor != 0.0) return p->attention_factor;
    if (p->mscale != 0.0 && p->mscale_all_dim != 0.0)
        return yarn_mscale(f, p->mscale) / yarn_mscale(f, p->mscale_all_dim);
    return yarn_mscale(f, 1.0);
}

/* Llama 3.1: wavelengths above original / low_freq_factor are divided by factor, those below
 * original / high_freq_factor kept, the band between smoothly mixed. */
static void llama3_frequencies(double *inv, const struct rope_params *p) {
    double orig = (double)p->original_max_position_embeddings, f = p->factor;
    double lo = p->low_freq_factor, hi = p->high_freq_factor;
    double low_wavelen = orig / lo, high_wavelen = orig / hi;
    default_frequencies(inv, p->D, p->theta);
    for (int i = 0; i < p->D / 2; i++) {
        double wavelen = 2.0 * ROPE_PI / inv[i];
        if (wavelen > low_wavelen) {
            inv[i] /= f;
        } else if (wavelen >= high_wavelen) {
            double smooth = (orig / wavelen - lo) / (hi - lo);
            inv[i] = (1.0 - smooth) * inv[i] / f + smooth * inv[i];
        }
    }
}

/* LongRoPE: long factors beyond the original context, short ones within; attention factor given,
 * or sqrt(1 + ln(s) / ln(orig)) with s = factor (or max_position_embeddings / orig) when s > 1. */
static double longrope_frequencies(double *inv, const struct rope_params *p) {
    int64_t orig = p->original_max_position_embeddings;
    const double *ext = p->T > orig ? p->long_factor : p->short_factor;
    for (int i = 0; i < p->D / 2; i++)
        inv[i] = 1.0 / (ext[i] * pow(p->theta, (double)(2 * i) / p->D));
    if (p->attention_factor != 0.0) return p->attention_factor;
    double s = p->factor != 0.0 ? p->factor
                                : (double)p->max_position_embeddings / (double)orig;
    return s <= 1.0 ? 1.0 : sqrt(1.0 + log(s) / log((double)orig));
}

double rope_frequencies(double *inv_freq, const struct rope_params *p) {
    CHECK(p->D > 0 && p->D % 2 == 0);
    switch (p->type) {
    case ROPE_TYPE_DEFAULT: default_frequencies(inv_freq, p->D, p->theta); return 1.0;
    case ROPE_TYPE_LINEAR:
        default_frequencies(inv_freq, p->D, p->theta);
        for (int i = 0; i < p->D / 2; i++) inv_freq[i] /= p->factor;
        return 1.0;
    case ROPE_TYPE_DYNAMIC: {
        CHECK(p->D > 2 && p->max_position_embeddings > 0);
        double len = (double)(p->T > p->max_position_embeddings ? p->T : p->max_position_embeddings);
        double grow = p->factor * len / (double)p->max_position_embeddings - (p->factor - 1.0);
        default_frequencies(inv_freq, p->D, p->theta * pow(grow, (double)p->D / (p->D - 2)));
        return 1.0;
    }
    case ROPE_TYPE_YARN: return yarn_frequencies(inv_freq, p);
    case ROPE_TYPE_LONGROPE: return longrope_frequencies(inv_freq, p);
    case ROPE_TYPE_LLAMA3: llama3_frequencies(inv_freq, p); return 1.0;
    }
    CHECKF(false, "rope_frequencies: unknown rope type %d", (int)p->type);
    return 1.0;
}

/* ---- tables and rotation ---- */

void rope_table_fill(float *cos_t, float *sin_t, int64_t T, int D, const double *inv_freq,
                     double mscale) {
    CHECK(D > 0 && D % 2 == 0);
    int half = D / 2;
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * inv_freq[i];
            cos_t[p * half + i] = (float)(mscale * cos(a));
            sin_t[p * half + i] = (float)(mscale * sin(a));
        }
}

void rope_table_init(float *cos_t, float *sin_t, int64_t T, int D, double theta,
                     const double *factor, double mscale) {
    CHECK(D > 0 && D % 2 == 0);
    int half = D / 2;
    double *inv_freq = xmalloc((size_t)half * sizeof(double)); /* (D/2) */
    for (int i = 0; i < half; i++)
        inv_freq[i] = 1.0 / ((factor ? factor[i] : 1.0) * pow(theta, (double)(2 * i) / D));
    rope_table_fill(cos_t, sin_t, T, D, inv_freq, mscale);
    free(inv_freq);
}

/* x[n, h, :] <- rotation by (c, sign * s) of the pairs (i, i + D/2), for every row and head. */
static void rotate(float *x, const float *cos_t, const float *sin_t, const int32_t *pos, int64_t N,
                   int H, int D, int64_t row_stride, float sign) {
    int half = D / 2;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *restrict c = cos_t + (int64_t)pos[n] * half;
        const float *restrict s = sin_t + (int64_t)pos[n] * half;
        for (int h = 0; h < H; h++) {
            float *restrict lo = x + n * row_stride + (int64_t)h * D, *restrict hi = lo + half;
            for (int i = 0; i < half; i++) {
                float a = lo[i], b = hi[i], si = sign * s[i];
                lo[i] = a * c[i] - b * si;
                hi[i] = b * c[i] + a * si;
            }
        }
    }
}

void rope_forward_cpu(float *x, const float *cos_t, const float *sin_t, const int32_t *pos,
                      int64_t N, int H, int D, int64_t row_stride) {
    rotate(x, cos_t, sin_t, pos, N, H, D, row_stride, 1.0f);
}

void rope_backward_cpu(float *dx, const float *cos_t, const float *sin_t, const int32_t *pos,
                       int64_t N, int H, int D, int64_t row_stride) {
    rotate(dx, cos_t, sin_t, pos, N, H, D, row_stride, -1.0f);
}
