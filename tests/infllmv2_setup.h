/*
 * infllmv2_setup.h: what test_infllmv2_select.c and test_infllmv2_sparse.c share: one InfLLM-V2
 * problem (random inputs in fp32 and float64, the kernel's stages 0-2 run on them), the table of
 * problems both check in the same order from one seed, and the float64 logit both references use.
 *
 * Dimensions: T tokens (Tq = Tk = T, q_pos0 = 0), Hq / Hkv heads, G = Hq / Hkv, D head dim; L1, L2
 * compressed windows of K1 and K2, nblk blocks, nsel selected blocks per (token, KV head).
 */
#ifndef INFLLM_TEST_INFLLMV2_SETUP_H
#define INFLLM_TEST_INFLLMV2_SETUP_H

#include <stdbool.h>
#include <stdint.h>

#include "attention.h"
#include "infllmv2.h"
#include "testlib.h"

struct setup {
    const char *name;
    struct attn_shape s;    /* Tq = Tk = T, q_pos0 = 0 */
    struct infllm_params p;
    float *q, *k, *v, *dout;      /* (T, Hq, D) q_stride apart; k, v (T, Hkv, D) kv_stride apart */
    double *qd, *kd, *vd, *doutd; /* the same in float64 */
    int64_t L1, L2, nblk;
    int nsel;
    float *k1, *k2;  /* kernel stage 0: (L1, Hkv, D), (L2, Hkv, D) or NULL */
    int32_t *sel;    /* kernel stages 1-2: (T, Hkv, nsel) */
};

/* kernel_size, kernel_stride, block_size, init_blocks, local_blocks, topk */
struct params_row {
    int ks, st, B, init, local, topk;
};
extern const struct params_row P_SMALL;   /* window 128: top-k drops */
extern const struct params_row P_DEFAULT; /* MiniCPM4.1 */

/* One row of the table of problems. */
struct problem {
    const char *name;
    int64_t T;
    int Hq, Hkv, D;
    const struct params_row *pr;
    bool lse_approx;
    int64_t s3_row_step; /* stage 3 checked on the rows i % s3_row_step == 0; 0: not checked */
};
/* The problems, ended by a row whose name is NULL; each program draws them in this order. */
extern const struct problem PROBLEMS[];

double *to_double(const float *x, int64_t n);
float *normal_buf(struct t_rng *rng, int64_t n, float std);

/* Random inputs (row strides wider than Hq * D and Hkv * D) and the kernel's K1, K2, selection. */
struct setup setup_make(struct t_rng *rng, const char *name, int64_t T, int Hq, int Hkv, int D,
                        struct params_row pr, bool lse_approx);
struct setup problem_setup(struct t_rng *rng, const struct problem *pb);
void setup_free(struct setup *st);

/* scale * q . key over D, float64. */
double ref_logit(const double *q, const double *key, int D, double scale);

#endif
