/*
 * infllmv2_setup.c: one InfLLM-V2 problem for the tests of kernels/infllmv2.h (see
 * infllmv2_setup.h).
 */
#include "infllmv2_setup.h"

#include <math.h>
#include <stdlib.h>

#include "check.h"

const struct params_row P_SMALL = {32, 16, 64, 1, 2, 4};
const struct params_row P_DEFAULT = {32, 16, 64, 1, 32, 64};
static const struct params_row P_TINY = {32, 16, 64, 1, 1, 1};
static const struct params_row P_B32 = {32, 16, 32, 2, 3, 5};
static const struct params_row P_W24 = {24, 8, 32, 1, 2, 3};
static const struct params_row P_B128 = {32, 16, 128, 1, 2, 3};

const struct problem PROBLEMS[] = {
    /* name               T     Hq Hkv D   params      lse    stage-3 row step */
    {"T100 guard",        100,  4, 2,  32, &P_SMALL,   true,  1},
    {"T200 G1 exact",     200,  2, 2,  16, &P_TINY,    false, 1},
    {"T500 w24/8 B32",    500,  4, 2,  24, &P_W24,     true,  1},
    {"T700 B32",          700,  4, 2,  16, &P_B32,     false, 1},
    {"T900 B128",         900,  2, 1,  64, &P_B128,    true,  1},
    {"T1100 G4",          1100, 4, 1,  32, &P_SMALL,   true,  1},
    {"T4096 G8",          4096, 8, 1,  16, &P_SMALL,   true,  5},
    {"T4096 G2 exact",    4096, 4, 2,  16, &P_SMALL,   false, 0},
    {"T8192 defaults",    8192, 2, 1,  16, &P_DEFAULT, true,  13},
    {NULL},
};

double *to_double(const float *x, int64_t n) {
    double *y = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

float *normal_buf(struct t_rng *rng, int64_t n, float std) {
    float *x = xmalloc((size_t)n * sizeof(float));
    t_fill_normal(rng, x, n, std);
    return x;
}

struct setup setup_make(struct t_rng *rng, const char *name, int64_t T, int Hq, int Hkv, int D,
                        struct params_row pr, bool lse_approx) {
    struct setup st = {.name = name};
    st.s = (struct attn_shape){.Tq = T, .q_pos0 = 0, .Tk = T, .Hq = Hq, .Hkv = Hkv, .D = D,
                               .q_stride = (int64_t)Hq * D + 3, .kv_stride = (int64_t)Hkv * D + 5,
                               .scale = 1.0f / sqrtf((float)D)};
    st.p = (struct infllm_params){.kernel_size = pr.ks, .kernel_stride = pr.st,
                                  .block_size = pr.B, .init_blocks = pr.init,
                                  .local_blocks = pr.local, .topk = pr.topk,
                                  .lse_approx = lse_approx};
    int64_t nq = T * st.s.q_stride, nk = T * st.s.kv_stride;
    st.q = normal_buf(rng, nq, 1.0f);
    st.dout = normal_buf(rng, nq, 1.0f);
    st.k = normal_buf(rng, nk, 1.0f);
    st.v = normal_buf(rng, nk, 1.0f);
    st.qd = to_double(st.q, nq), st.doutd = to_double(st.dout, nq);
    st.kd = to_double(st.k, nk), st.vd = to_double(st.v, nk);
    st.L1 = infllm_num_windows(T, pr.ks, pr.st);
    st.L2 = lse_approx ? infllm_num_windows(T, 4 * pr.ks, 4 * pr.st) : 0;
    st.nblk = (T + pr.B - 1) / pr.B;
    st.nsel = infllm_num_selected(&st.p);
    int64_t KD = (int64_t)Hkv * D;
    st.k1 = xmalloc((size_t)(st.L1 * KD) * sizeof(float));
    infllm_compress_cpu(st.k1, st.k, st.L1, Hkv, D, st.s.kv_stride, pr.ks, pr.st);
    st.k2 = NULL;
    if (st.L2 > 0) {
        st.k2 = xmalloc((size_t)(st.L2 * KD) * sizeof(float));
        infllm_compress_cpu(st.k2, st.k, st.L2, Hkv, D, st.s.kv_stride, 4 * pr.ks, 4 * pr.st);
    }
    st.sel = xmalloc((size_t)(T * Hkv * st.nsel) * sizeof(int32_t));
    infllm_select_cpu(st.sel, st.q, st.k1, st.L1, st.k2, st.L2, &st.s, &st.p);
    return st;
}

struct setup problem_setup(struct t_rng *rng, const struct problem *pb) {
    return setup_make(rng, pb->name, pb->T, pb->Hq, pb->Hkv, pb->D, *pb->pr, pb->lse_approx);
}

void setup_free(struct setup *st) {
    free(st->q), free(st->k), free(st->v), free(st->dout);
    free(st->qd), free(st->kd), free(st->vd), free(st->doutd);
    free(st->k1), free(st->k2), free(st->sel);
}

double ref_logit(const double *q, const double *key, int D, double scale) {
    double a = 0;
    for (int d = 0; d < D; d++) a += q[d] * key[d];
    return scale * a;
}
