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

#include "config.h"

double lr_at(const struct train_config *t, int64_t step);

#endif
