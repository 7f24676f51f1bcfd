/*
 * test_optim.c: AdamW against a float64 transcription of its formula over several steps, the
 * learning-rate schedules against their definitions, and the ZeRO-1 step on one rank: weight decay
 * only on matrices, clipping by the global norm, weights written back.
 *
 * Tolerances: the fp32 update differs from float64 by rounding of a few operations per step
 * (relative 1e-6 per step, 10 steps): rtol 1e-5 with atol 1e-7. Schedules are computed in double
 * on both sides: 1e-12.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "adamw_update.h"
#include "check.h"
#include "config.h"
#include "grid.h"
#include "model.h"
#include "schedule.h"
#include "testlib.h"

static void test_update(void) {
    struct t_rng r = {7};
    enum { n = 1003, steps = 10 };
    float w[n], m[n], v[n], g[n];
    double wd_[n], md[n], vd[n];
    t_fill_normal(&r, w, n, 1.0f);
    memset(m, 0, sizeof m);
    memset(v, 0, sizeof v);
    for (int i = 0; i < n; i++) wd_[i] = w[i], md[i] = 0, vd[i] = 0;
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, decay = 0.1, scale = 0.5;
    for (int t = 1; t <= steps; t++) {
        t_fill_normal(&r, g, n, 0.3f);
        adamw_update_cpu(w, m, v, g, n, (float)lr, (float)b1, (float)b2, (float)eps, (float)decay,
                         (float)scale, t);
        for (int i = 0; i < n; i++) {
            double gi = (double)g[i] * scale;
            md[i] = b1 * md[i] + (1 - b1) * gi;
            vd[i] = b2 * vd[i] + (1 - b2) * gi * gi;
            double mh = md[i] / (1 - pow(b1, t)), vh = vd[i] / (1 - pow(b2, t));
            wd_[i] -= lr * (mh / (sqrt(vh) + eps) + decay * wd_[i]);
        }
    }
    float ref[n];
    for (int i = 0; i < n; i++) ref[i] = (float)wd_[i];
    t_close("adamw update over 10 steps", w, ref, n, 1e-7, 1e-5);
}

static void test_schedules(void) {
    struct lr_params t = {0};
    t.lr = 1e-3;
    t.min_lr = 1e-4;
    t.max_steps = 100;
    t.warmup_steps = 10;
    t.schedule = LR_SCHEDULE_COSINE;
    t_check(fabs(lr_at(&t, 0) - 1e-4) < 1e-12, "warmup step 0: %g", lr_at(&t, 0));
    t_check(fabs(lr_at(&t, 9) - 1e-3) < 1e-12, "warmup last step: %g", lr_at(&t, 9));
    t_check(fabs(lr_at(&t, 10) - 1e-3) < 1e-12, "cosine start: %g", lr_at(&t, 10));
    t_check(fabs(lr_at(&t, 99) - 1e-4) < 1e-12, "cosine end: %g", lr_at(&t, 99));
    t_check(fabs(lr_at(&t, 54) - (1e-4 + 0.9e-3 * 0.5 * (1 + cos(M_PI * 44.0 / 89.0)))) < 1e-12,
            "cosine middle: %g", lr_at(&t, 54));
    for (int s = 11; s < 100; s++)
        if (!t_check(lr_at(&t, s) <= lr_at(&t, s - 1), "cosine decreasing at %d", s)) break;

    t.schedule = LR_SCHEDULE_WSD;
    t.decay_fraction = 0.2; /* decay over the last 20 steps: 80..99 */
    t_check(fabs(lr_at(&t, 50) - 1e-3) < 1e-12, "wsd stable: %g", lr_at(&t, 50));
    t_check(fabs(lr_at(&t, 79) - 1e-3) < 1e-12, "wsd last stable step: %g", lr_at(&t, 79));
    t_check(lr_at(&t, 80) < 1e-3 && lr_at(&t, 80) > 9e-4, "wsd first decay step: %g",
            lr_at(&t, 80));
    t_check(fabs(lr_at(&t, 99) - 1e-4) < 1e-12, "wsd end: %g", lr_at(&t, 99));

    t.schedule = LR_SCHEDULE_CONSTANT;
    t_check(fabs(lr_at(&t, 99) - 1e-3) < 1e-12, "constant: %g", lr_at(&t, 99));
}

/* ZeRO-1 on one rank over a tiny model: zero gradients and weight decay shrink matrices by
 * (1 - lr wd) and leave norm weights alone; a large gradient is clipped to the global norm. */
static void test_zero_step(struct grid *g) {
    static struct config c;
    config_defaults(&c);
    c.model.vocab_size = 40;
    c.model.hidden_size = 16;
    c.model.intermediate_size = 24;
    c.model.num_hidden_layers = 2;
    c.model.num_attention_heads = 2;
    c.model.num_key_value_heads = 1;
    c.model.head_dim = 8;
    c.data.seq_len = 64;
    c.data.synthetic = (struct synthetic_config){.n_pairs = 1, .n_queries = 1, .n_keys = 4,
                                                 .n_values = 4};
    c.train.micro_batch_size = 1;
    c.train.global_batch_size = 1;
    c.train.weight_decay = 0.5;
    c.train.grad_clip = 1.0;
    config_validate(&c, 1);
    struct backend be;
    backend_init(&be, DEVICE_CPU, 0);
    struct model m;
    model_init(&m, &c, &be, g, ADAMW_ALIGN, true);
    model_init_weights(&m, 3);
    struct adamw o;
    grid_attach_device(g, false, 0, NULL);
    struct param_space space = model_param_space(&m);
    adamw_init(&o, &be, &space, 0, 1, true);
    const struct train_config *t = &c.train;
    struct adamw_hparams hp = {t->weight_decay, t->beta1, t->beta2, t->eps, t->grad_clip};
    float *before = xmalloc((size_t)m.n_params_padded * sizeof(float));
    memcpy(before, m.param_buf, (size_t)m.n_params_padded * sizeof(float));

    model_zero_grad(&m);
    double norm = adamw_reduce(&o, g);
    t_check(norm == 0, "zero gradient has norm %g", norm);
    adamw_apply(&o, g, &hp, 0.1, norm);
    const float *w = m.param_buf;
    int bad_decay = 0, bad_norm = 0;
    for (int e = 0; e < m.n_params_entries; e++) {
        const struct param_entry *p = &m.params[e];
        for (int64_t i = 0; i < p->numel; i++) {
            float b = before[p->offset + i], a = w[p->offset + i];
            if (p->decay && fabsf(a - b * (1 - 0.1f * 0.5f)) > 1e-6f * fabsf(b) + 1e-9f) bad_decay++;
            if (!p->decay && a != b) bad_norm++;
        }
    }
    t_check(bad_decay == 0, "%d matrix weights not decayed by (1 - lr wd)", bad_decay);
    t_check(bad_norm == 0, "%d norm weights changed under zero gradient", bad_norm);

    /* Gradient of norm 10 on one element: clipped to 1, so Adam's first step moves it by lr. */
    model_zero_grad(&m);
    m.grad_buf[5] = 10.0f;
    memcpy(before, m.param_buf, (size_t)m.n_params_padded * sizeof(float));
    norm = adamw_reduce(&o, g);
    t_check(fabs(norm - 10.0) < 1e-6, "global norm %g, expected 10", norm);
    adamw_apply(&o, g, &hp, 0.1, norm);
    t_check(w[5] < before[5], "clipped step moved the weight the right way");

    free(before);
    adamw_free(&o);
    model_free(&m);
    backend_free(&be);
    config_free(&c);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    struct grid g;
    grid_init(&g, MPI_COMM_SELF, 1);
    test_update();
    test_schedules();
    test_zero_step(&g);
    grid_free(&g);
    int rc = t_finish("test_optim");
    MPI_Finalize();
    return rc;
}
