/*
 * schedule.h: learning-rate schedules. Steps count from 0; the warmup ramps linearly to lr over
 * warmup_steps (step s of the warmup uses lr * (s + 1) / warmup_steps), then:
 *   cosine    lr -> min_lr along half a cosine, reaching min_lr at the last step (max_steps - 1);
 *   wsd       warmup-stable-decay: lr until the last decay_fraction of the run, then linear to min_lr
 *             at the last step;
 *   constant  lr.
 */
#ifndef INFLLM_SCHEDULE_H
#define INFLLM_SCHEDULE_H

#include <stdint.h>

enum lr_schedule { LR_SCHEDULE_COSINE = 0, LR_SCHEDULE_WSD = 1, LR_SCHEDULE_CONSTANT = 2 };

/* A schedule (the config's train section). */
struct lr_params {
    enum lr_schedule schedule;
    double lr, min_lr;
    int64_t warmup_steps, max_steps;
    double decay_fraction; /* wsd */
};

double lr_at(const struct lr_params *t, int64_t step);

#endif
