/*
 * rope.h: rotary position embedding in the Hugging Face rotate-half layout (pairs (i, i + D/2)),
 * its frequencies for the rope types of Hugging Face transformers (default, linear, dynamic, yarn,
 * longrope, llama3) with their attention scaling, and the rotation forward and backward.
 *
 * Dimensions: N rows (tokens), H heads, D head dim (even). Positions are global token positions
 * (context parallelism hands each rank non-contiguous chunks), one per row.
 *
 *   angle(p, i) = p * inv_freq[i],  i < D/2  (inv_freq: rope_frequencies, or the plain /
 *                 LongRoPE form 1 / (factor[i] * theta^(2i/D)) of rope_table_init)
 *   y[i]       = x[i] * c - x[i+D/2] * s
 *   y[i+D/2]   = x[i+D/2] * c + x[i] * s,     c = mscale * cos(angle), s = mscale * sin(angle)
 *
 * The backward applies the transpose (the same c, -s). Both work in place.
 */
#ifndef INFLLM_ROPE_H
#define INFLLM_ROPE_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The rope types of transformers' ROPE_INIT_FUNCTIONS (modeling_rope_utils.py); the values are the
 * order of the config's model.rope_scaling.rope_type names. */
enum rope_type {
    ROPE_TYPE_DEFAULT = 0,  /* theta^(-2i/D) */
    ROPE_TYPE_LINEAR = 1,   /* default / factor */
    ROPE_TYPE_DYNAMIC = 2,  /* NTK-aware: theta grown when T > max_position_embeddings */
    ROPE_TYPE_YARN = 3,     /* ramp between default and default / factor, attention factor */
    ROPE_TYPE_LONGROPE = 4, /* per-frequency long (T > original) or short factors */
    ROPE_TYPE_LLAMA3 = 5,   /* Llama 3.1: low frequencies / factor, smooth band between */
};

/* What the frequencies depend on. Optional members are 0 when unset, with transformers' meaning
 * of an absent field (rope_frequencies applies its defaults). */
struct rope_params {
    enum rope_type type;
    int D;                          /* head dim, even */
    int64_t T;                      /* sequence length the tables serve (dynamic, longrope) */
    double theta;                   /* rope_theta */
    int64_t max_position_embeddings;          /* dynamic; longrope without factor */
    int64_t original_max_position_embeddings; /* yarn, longrope, llama3: > 0 */
    double factor;                  /* linear, dynamic, yarn, llama3: > 0; longrope: 0 = max / orig */
    double attention_factor;        /* yarn, longrope: 0 = derived from factor */
    double beta_fast, beta_slow;    /* yarn: 0 = 32, 1 */
    double mscale, mscale_all_dim;  /* yarn: 0 = unset */
    bool truncate;                  /* yarn: floor / ceil the correction range */
    double low_freq_factor, high_freq_factor; /* llama3: 0 < low < high */
    const double *long_factor;      /* longrope: (D/2) */
    const double *short_factor;     /* longrope: (D/2) */
};

/* inv_freq[i] of p as transformers computes it (in double here), and the attention scaling that
 * multiplies cos and sin (returned; 1 for types without one). Dynamic gives the frequencies
 * transformers uses for a sequence of p->T tokens: theta' = theta * (factor * T / max - (factor -
 * 1))^(D / (D - 2)) when T > max_position_embeddings, else theta. */
double rope_frequencies(double *inv_freq, /* (D/2) */
                        const struct rope_params *p);

/* Fills cos/sin tables for positions 0..T-1 from frequencies: cos[p * D/2 + i] = mscale *
 * cos(p * inv_freq[i]), angles in double, stored in fp32. */
void rope_table_fill(float *cos,            /* (T, D/2) */
                     float *sin,            /* (T, D/2) */
                     int64_t T, int D,
                     const double *inv_freq, /* (D/2) */
                     double mscale);

/* rope_table_fill with inv_freq[i] = 1 / (factor[i] * theta^(2i/D)) (plain RoPE, LongRoPE's
 * factors); factor may be NULL (all ones). */
void rope_table_init(float *cos,            /* (T, D/2) */
                     float *sin,            /* (T, D/2) */
                     int64_t T, int D, double theta,
                     const double *factor,  /* (D/2) or NULL */
                     double mscale);

void rope_forward_cpu(float *x,              /* (N, H, D) rows of x are row_stride apart */
                      const float *cos,      /* (T, D/2) */
                      const float *sin,      /* (T, D/2) */
                      const int32_t *pos,    /* (N) global positions < T */
                      int64_t N, int H, int D, int64_t row_stride);

/* dx <- transpose rotation of dx (in place). */
void rope_backward_cpu(float *dx, const float *cos, const float *sin, const int32_t *pos,
                       int64_t N, int H, int D, int64_t row_stride);


/* CUDA: x / dx bf16, in place; tables and positions on the device. */
void rope_forward_cuda(void *x, const float *cos, const float *sin, const int32_t *pos, int64_t N,
                       int H, int D, int64_t row_stride, const struct gpu_ctx *g);
void rope_backward_cuda(void *dx, const float *cos, const float *sin, const int32_t *pos,
                        int64_t N, int H, int D, int64_t row_stride, const struct gpu_ctx *g);

#ifdef __cplusplus
}
#endif

#endif
