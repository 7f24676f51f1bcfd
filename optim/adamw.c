/*
 * adamw.c: ZeRO-1 AdamW (see adamw.h).
 */
#include "adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checked.h"
#include "ops.h"

/* Decay segments of [start, start + len) from the space's entries (padding is not decayed). */
static void build_segments(struct adamw *o) {
    const struct param_space *s = &o->space;
    o->seg = xcalloc((size_t)s->n_entries + 1, sizeof *o->seg);
    int64_t lo = o->slice_start, hi = o->slice_start + o->slice_len;
    for (int i = 0; i < s->n_entries; i++) {
        const struct param_entry *e = &s->entries[i];
        int64_t a = e->offset > lo ? e->offset : lo;
        int64_t b = e->offset + e->numel < hi ? e->offset + e->numel : hi;
        if (a >= b) continue;
        struct adamw_segment *last = o->n_seg ? &o->seg[o->n_seg - 1] : NULL;
        if (last && last->decay == e->decay && last->start + last->len == a - lo)
            last->len += b - a;
        else
            o->seg[o->n_seg++] = (struct adamw_segment){a - lo, b - a, e->decay};
    }
}

/* The optimizer's buffers (plan.h: run once to size, once to carve). With one rank the gradient
 * slice is the space's own gradient buffer. */
static void declare_state(struct adamw *o, bool one_rank) {
    struct mem_plan *p = &o->plan;
    size_t bytes = (size_t)size_mul(o->slice_len, sizeof(float));
    o->master = plan_take(p, PLAN_OPTIMIZER, "master weights (fp32)", bytes);
    o->m = plan_take(p, PLAN_OPTIMIZER, "first moment (fp32)", bytes);
    o->v = plan_take(p, PLAN_OPTIMIZER, "second moment (fp32)", bytes);
    o->grad = one_rank ? o->space.grads
                       : plan_take(p, PLAN_OPTIMIZER, "gradient slice (fp32)", bytes);
    size_t ws = ops_sumsq_workspace_bytes(o->be);
    if (ws) o->sumsq_ws = plan_take(p, PLAN_OPTIMIZER, "norm workspace", ws);
}

void adamw_init(struct adamw *o, const struct backend *be, const struct param_space *s, int rank,
                int world, bool allocate) {
    memset(o, 0, sizeof *o);
    o->be = be;
    o->space = *s;
    CHECKF(s->n_padded % ((int64_t)world * ADAMW_ALIGN) == 0,
           "flat parameters (%lld) not padded to %d ranks x %d", (long long)s->n_padded, world,
           ADAMW_ALIGN);
    o->slice_len = s->n_padded / world;
    o->slice_start = (int64_t)rank * o->slice_len;
    plan_init(&o->plan, be);
    declare_state(o, world == 1);
    if (!allocate) return;
    plan_allocate(&o->plan);
    declare_state(o, world == 1);
    plan_carved(&o->plan);
    build_segments(o);
    size_t bytes = (size_t)size_mul(o->slice_len, sizeof(float));
    float *host = xmalloc(bytes);
    backend_download_act(be, host, act_at_c(be, s->values, o->slice_start), o->slice_len);
    backend_upload(be, o->master, host, bytes);
    free(host);
}

void adamw_free(struct adamw *o) {
    plan_free(&o->plan);
    free(o->seg);
    memset(o, 0, sizeof *o);
}

double adamw_reduce(struct adamw *o, const struct grid *g) {
    if (o->grad != o->space.grads)
        comm_reduce_scatter(&g->world_dev, o->grad, o->space.grads, o->slice_len, COMM_F32);
    double sumsq = op_sumsq(o->be, o->grad, o->slice_len, o->sumsq_ws);
    comm_allreduce(&g->world, &sumsq, 1, COMM_F64, COMM_SUM);
    return sqrt(sumsq);
}

/* AdamW on one segment of the slice, writing the compute-dtype weights too. */
static void update_segment(struct adamw *o, const struct adamw_segment *sg,
                           const struct adamw_hparams *h, float lr, float scale) {
    float wd = sg->decay ? (float)h->weight_decay : 0.0f;
    float *master = o->master + sg->start, *m = o->m + sg->start, *v = o->v + sg->start;
    void *param = act_at(o->be, o->space.values, o->slice_start + sg->start);
    op_adamw_update(o->be, master, m, v, o->grad + sg->start, param, sg->len, lr,
                    (float)h->beta1, (float)h->beta2, (float)h->eps, wd, scale, o->t);
}

void adamw_apply(struct adamw *o, const struct grid *g, const struct adamw_hparams *h, double lr,
                 double grad_norm) {
    double scale = 1.0;
    if (h->grad_clip > 0 && grad_norm > h->grad_clip) scale = h->grad_clip / grad_norm;
    o->t++;
    for (int s = 0; s < o->n_seg; s++) update_segment(o, &o->seg[s], h, (float)lr, (float)scale);
    comm_allgather(&g->world_dev, o->space.values, NULL, o->slice_len, comm_act_dtype(o->be->act_size));
}
