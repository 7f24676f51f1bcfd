/*
 * schedule.c: learning-rate schedules (see schedule.h).
 */
#include "schedule.h"

#include <math.h>

/* Fraction in [0, 1] of the way from `from` to the last step. */
static double progress(int64_t step, int64_t from, int64_t last) {
    if (last <= from) return 1.0;
    double p = (double)(step - from) / (double)(last - from);
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

double lr_at(const struct lr_params *t, int64_t step) {
    if (step < t->warmup_steps) return t->lr * (double)(step + 1) / (double)t->warmup_steps;
    int64_t last = t->max_steps - 1;
    switch (t->schedule) {
    case LR_SCHEDULE_COSINE: {
        double p = progress(step, t->warmup_steps, last);
        return t->min_lr + (t->lr - t->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
    }
    case LR_SCHEDULE_WSD: {
        int64_t decay_steps = (int64_t)llround(t->decay_fraction * (double)t->max_steps);
        int64_t start = t->max_steps - decay_steps;
        if (start < t->warmup_steps) start = t->warmup_steps;
        if (step < start) return t->lr;
        return t->lr + (t->min_lr - t->lr) * progress(step, start - 1, last);
    }
    case LR_SCHEDULE_CONSTANT: return t->lr;
    }
    return t->lr;
}
