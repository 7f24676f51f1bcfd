/*
 * adamw.c: ZeRO-1 AdamW (see adamw.h).
 */
#include "adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"

/* Decay segments of [start, start + len) from the model's entries (padding is not decayed). */
static void build_segments(struct adamw *o, const struct model *mdl) {
    o->seg = xcalloc((size_t)mdl->n_params_entries + 1, sizeof *o->seg);
    int64_t lo = o->slice_start, hi = o->slice_start + o->slice_len;
    for (int i = 0; i < mdl->n_params_entries; i++) {
        const struct param_entry *e = &mdl->params[i];
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

void adamw_init(struct adamw *o, const struct backend *be, const struct model *mdl, int rank,
                int world) {
    memset(o, 0, sizeof *o);
    o->be = be;
    CHECKF(mdl->n_params_padded % ((int64_t)world * ADAMW_ALIGN) == 0,
           "flat parameters (%lld) not padded to %d ranks x %d", (long long)mdl->n_params_padded,
           world, ADAMW_ALIGN);
    o->slice_len = mdl->n_params_padded / world;
    o->slice_start = (int64_t)rank * o->slice_len;
    size_t bytes = (size_t)o->slice_len * sizeof(float);
    o->master = backend_alloc(be, bytes, "optimizer: master weights");
    o->m = backend_alloc(be, bytes, "optimizer: first moment");
    o->v = backend_alloc(be, bytes, "optimizer: second moment");
    o->grad_is_model = world == 1;
    o->grad = o->grad_is_model ? mdl->grad_buf
                               : backend_alloc(be, bytes, "optimizer: gradient slice");
    size_t ws = ops_sumsq_workspace_bytes(be);
    if (ws) o->sumsq_ws = backend_alloc(be, ws, "optimizer: norm workspace");
    build_segments(o, mdl);
    float *host = xmalloc(bytes);
    backend_download_act(be, host, act_at_c(be, mdl->param_buf, o->slice_start), o->slice_len);
    backend_upload(be, o->master, host, bytes);
    free(host);
}

void adamw_free(struct adamw *o) {
    backend_release(o->be, o->master);
    backend_release(o->be, o->m);
    backend_release(o->be, o->v);
    if (!o->grad_is_model) backend_release(o->be, o->grad);
    if (o->sumsq_ws) backend_release(o->be, o->sumsq_ws);
    free(o->seg);
    memset(o, 0, sizeof *o);
}

size_t adamw_state_bytes(int64_t n_params_padded, int world) {
    int buffers = world == 1 ? 3 : 4; /* master, m, v (+ the gradient slice) */
    return (size_t)buffers * (size_t)(n_params_padded / world) * sizeof(float);
}

double adamw_reduce(struct adamw *o, const struct model *mdl, const struct grid *g) {
    if (!o->grad_is_model)
        comm_reduce_scatter(&g->world_dev, o->grad, mdl->grad_buf, o->slice_len, COMM_F32);
    double sumsq = op_sumsq(o->be, o->grad, o->slice_len, o->sumsq_ws);
    comm_allreduce(&g->world, &sumsq, 1, COMM_F64, COMM_SUM);
    return sqrt(sumsq);
}

/* AdamW on one segment of the slice, writing the compute-dtype weights too. */
static void update_segment(struct adamw *o, struct model *mdl, const struct adamw_segment *sg,
                           const struct train_config *t, float lr, float scale) {
    float wd = sg->decay ? (float)t->weight_decay : 0.0f;
    float *master = o->master + sg->start, *m = o->m + sg->start, *v = o->v + sg->start;
    void *param = act_at(o->be, mdl->param_buf, o->slice_start + sg->start);
    op_adamw_update(o->be, master, m, v, o->grad + sg->start, param, sg->len, lr,
                    (float)t->beta1, (float)t->beta2, (float)t->eps, wd, scale, o->t);
}

void adamw_apply(struct adamw *o, struct model *mdl, const struct grid *g,
                 const struct train_config *t, double lr, double grad_norm) {
    double scale = 1.0;
    if (t->grad_clip > 0 && grad_norm > t->grad_clip) scale = t->grad_clip / grad_norm;
    o->t++;
    for (int s = 0; s < o->n_seg; s++) update_segment(o, mdl, &o->seg[s], t, (float)lr, (float)scale);
    comm_allgather(&g->world_dev, mdl->param_buf, NULL, o->slice_len, op_act_dtype(o->be));
}
