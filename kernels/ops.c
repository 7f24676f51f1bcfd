/*
 * ops.c: the dispatch of ops.h: the backend's kernel table (ops_impl.h), one call per op, inside
 * the op's profiler region.
 */
#include "ops.h"

#include "check.h"
#include "ops_impl.h"
#include "profile.h"

/* The kernel table of each device this binary was built with (NULL: not built). */
static const struct op_table *table_of_device(enum device_kind device) {
    switch (device) {
    case DEVICE_CPU: return &ops_cpu_table;
    case DEVICE_CUDA:
#ifdef INFLLM_CUDA
        return &ops_cuda_table;
#else
        return NULL;
#endif
    }
    return NULL;
}

/* The table of a started backend (backend_init refuses a device this binary lacks). */
static const struct op_table *ops_of(const struct backend *be) {
    const struct op_table *t = table_of_device(be->device);
    CHECKF(t != NULL, "no kernels for device %d in this build", (int)be->device);
    return t;
}

const char *op_name(enum op_id op) {
    static const char *const names[OP_COUNT] = {
        "embedding_forward", "embedding_backward", "rmsnorm_forward", "rmsnorm_backward",
        "rope_forward", "rope_backward", "bias_forward", "bias_backward", "matmul_forward",
        "matmul_forward_f32", "matmul_backward", "swiglu_forward", "swiglu_backward",
        "crossentropy", "argmax_rows", "add_inplace", "attention_forward", "attention_backward",
        "infllm_compress", "infllm_select", "sparse_attention_forward",
        "sparse_attention_backward", "adamw_update", "sumsq"};
    CHECKF((int)op >= 0 && op < OP_COUNT, "op %d", (int)op);
    return names[op];
}

/* Whether the table has an entry for op. */
static bool has(const struct op_table *t, enum op_id op) {
    switch (op) {
    case OP_EMBEDDING_FORWARD: return t->embedding_forward != NULL;
    case OP_EMBEDDING_BACKWARD: return t->embedding_backward != NULL;
    case OP_RMSNORM_FORWARD: return t->rmsnorm_forward != NULL;
    case OP_RMSNORM_BACKWARD: return t->rmsnorm_backward != NULL;
    case OP_ROPE_FORWARD: return t->rope_forward != NULL;
    case OP_ROPE_BACKWARD: return t->rope_backward != NULL;
    case OP_BIAS_FORWARD: return t->bias_forward != NULL;
    case OP_BIAS_BACKWARD: return t->bias_backward != NULL;
    case OP_MATMUL_FORWARD: return t->matmul_forward != NULL;
    case OP_MATMUL_FORWARD_F32: return t->matmul_forward_f32 != NULL;
    case OP_MATMUL_BACKWARD: return t->matmul_backward != NULL;
    case OP_SWIGLU_FORWARD: return t->swiglu_forward != NULL;
    case OP_SWIGLU_BACKWARD: return t->swiglu_backward != NULL;
    case OP_CROSSENTROPY: return t->crossentropy != NULL;
    case OP_ARGMAX_ROWS: return t->argmax_rows != NULL;
    case OP_ADD_INPLACE: return t->add_inplace != NULL;
    case OP_ATTENTION_FORWARD: return t->attention_forward != NULL;
    case OP_ATTENTION_BACKWARD: return t->attention_backward != NULL;
    case OP_INFLLM_COMPRESS: return t->infllm_compress != NULL;
    case OP_INFLLM_SELECT: return t->infllm_select != NULL;
    case OP_SPARSE_ATTENTION_FORWARD: return t->sparse_attention_forward != NULL;
    case OP_SPARSE_ATTENTION_BACKWARD: return t->sparse_attention_backward != NULL;
    case OP_ADAMW_UPDATE: return t->adamw_update != NULL;
    case OP_SUMSQ: return t->sumsq != NULL;
    case OP_COUNT: break;
    }
    return false;
}

bool ops_supports(enum device_kind device, enum op_id op) {
    const struct op_table *t = table_of_device(device);
    return t != NULL && (int)op >= 0 && op < OP_COUNT && has(t, op);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

size_t ops_workspace_bytes(const struct backend *be, int64_t N, int C, int64_t Tq, int Hkv,
                           int nsel, int64_t nblk) {
    const struct op_table *t = ops_of(be);
    size_t b = 0;
    if (t->embedding_backward_workspace) b = max_sz(b, t->embedding_backward_workspace(N));
    if (t->rmsnorm_backward_workspace) b = max_sz(b, t->rmsnorm_backward_workspace(C));
    if (t->bias_backward_workspace) b = max_sz(b, t->bias_backward_workspace(C));
    if (nsel > 0 && t->sparse_attention_backward_workspace)
        b = max_sz(b, t->sparse_attention_backward_workspace(Tq, Hkv, nsel, nblk));
    return b;
}

size_t ops_sumsq_workspace_bytes(const struct backend *be) {
    const struct op_table *t = ops_of(be);
    return t->sumsq_workspace ? t->sumsq_workspace() : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Ops outside any profiler region of their own (charged to the enclosing one, or "other")        */

void op_embedding_forward(const struct backend *be, void *out, const int32_t *tokens,
                          const void *wte, int64_t N, int C, float scale) {
    ops_of(be)->embedding_forward(out, tokens, wte, N, C, scale, &be->gpu);
}

void op_embedding_backward(const struct backend *be, float *dwte, const void *dout,
                           const int32_t *tokens, int64_t N, int C, float scale, void *workspace) {
    ops_of(be)->embedding_backward(dwte, dout, tokens, N, C, scale, workspace, &be->gpu);
}

void op_rmsnorm_forward(const struct backend *be, void *out, float *rstd, const void *x,
                        const void *w, int64_t N, int C, float eps) {
    ops_of(be)->rmsnorm_forward(out, rstd, x, w, N, C, eps, &be->gpu);
}

void op_rmsnorm_backward(const struct backend *be, void *dx, float *dw, const void *dout,
                         const void *x, const void *w, const float *rstd, int64_t N, int C,
                         void *workspace) {
    ops_of(be)->rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C, workspace, &be->gpu);
}

void op_rope_forward(const struct backend *be, void *x, const float *cos, const float *sin,
                     const int32_t *pos, int64_t N, int H, int D, int64_t row_stride) {
    ops_of(be)->rope_forward(x, cos, sin, pos, N, H, D, row_stride, &be->gpu);
}

void op_rope_backward(const struct backend *be, void *dx, const float *cos, const float *sin,
                      const int32_t *pos, int64_t N, int H, int D, int64_t row_stride) {
    ops_of(be)->rope_backward(dx, cos, sin, pos, N, H, D, row_stride, &be->gpu);
}

void op_bias_forward(const struct backend *be, void *y, const void *b, int64_t N, int C,
                     float scale) {
    ops_of(be)->bias_forward(y, b, N, C, scale, &be->gpu);
}

void op_bias_backward(const struct backend *be, float *db, const void *dy, int64_t N, int C,
                      float scale, void *workspace) {
    ops_of(be)->bias_backward(db, dy, N, C, scale, workspace, &be->gpu);
}

void op_swiglu_forward(const struct backend *be, void *out, const void *gate, const void *up,
                       int64_t n) {
    ops_of(be)->swiglu_forward(out, gate, up, n, &be->gpu);
}

void op_swiglu_backward(const struct backend *be, void *dgate, void *dup, const void *dout,
                        const void *gate, const void *up, int64_t n) {
    ops_of(be)->swiglu_backward(dgate, dup, dout, gate, up, n, &be->gpu);
}

void op_add_inplace(const struct backend *be, void *dst, const void *src, int64_t n) {
    ops_of(be)->add_inplace(dst, src, n, &be->gpu);
}

void op_adamw_update(const struct backend *be, float *master, float *m, float *v,
                     const float *grad, void *param, int64_t n, float lr, float beta1, float beta2,
                     float eps, float weight_decay, float grad_scale, int64_t t) {
    ops_of(be)->adamw_update(master, m, v, grad, param, n, lr, beta1, beta2, eps, weight_decay,
                             grad_scale, t, &be->gpu);
}

double op_sumsq(const struct backend *be, const float *x, int64_t n, void *workspace) {
    return ops_of(be)->sumsq(x, n, workspace, &be->gpu);
}

/* ---------------------------------------------------------------------------------------------- */
/* Ops with a profiler region: GEMMs, the loss head, attention, the InfLLM-V2 selection            */

void op_matmul_forward(const struct backend *be, void *out, const void *inp, const void *w,
                       int64_t N, int IC, int OC, float alpha, bool accumulate) {
    prof_begin(PROF_GEMM);
    ops_of(be)->matmul_forward(out, inp, w, N, IC, OC, alpha, accumulate, &be->gpu);
    prof_end();
}

void op_matmul_forward_f32(const struct backend *be, float *out, const void *inp, const void *w,
                           int64_t N, int IC, int OC, float alpha) {
    prof_begin(PROF_GEMM);
    ops_of(be)->matmul_forward_f32(out, inp, w, N, IC, OC, alpha, &be->gpu);
    prof_end();
}

void op_matmul_backward(const struct backend *be, void *dinp, float *dw, const void *dout,
                        const void *inp, const void *w, int64_t N, int IC, int OC, float alpha) {
    prof_begin(PROF_GEMM);
    ops_of(be)->matmul_backward(dinp, dw, dout, inp, w, N, IC, OC, alpha, &be->gpu);
    prof_end();
}

void op_crossentropy(const struct backend *be, float *loss, void *dlogits, const float *logits,
                     const int32_t *targets, int64_t N, int64_t V, float dscale) {
    prof_begin(PROF_HEAD);
    ops_of(be)->crossentropy(loss, dlogits, logits, targets, N, V, dscale, &be->gpu);
    prof_end();
}

void op_argmax_rows(const struct backend *be, int32_t *idx, const float *logits, int64_t N,
                    int64_t V) {
    prof_begin(PROF_HEAD);
    ops_of(be)->argmax_rows(idx, logits, N, V, &be->gpu);
    prof_end();
}

void op_attention_forward(const struct backend *be, void *out, float *lse, const void *q,
                          const void *k, const void *v, const struct attn_shape *s) {
    prof_begin(PROF_ATTENTION);
    ops_of(be)->attention_forward(out, lse, q, k, v, s, &be->gpu);
    prof_end();
}

void op_attention_backward(const struct backend *be, void *dq, void *dk, void *dv,
                           const void *dout, const void *q, const void *k, const void *v,
                           const void *out, const float *lse, const struct attn_shape *s) {
    prof_begin(PROF_ATTENTION);
    ops_of(be)->attention_backward(dq, dk, dv, dout, q, k, v, out, lse, s, &be->gpu);
    prof_end();
}

void op_infllm_compress(const struct backend *be, void *kc, const void *k, int64_t n, int Hkv,
                        int D, int64_t kv_stride, int ksize, int kstride) {
    prof_begin(PROF_SELECTION);
    ops_of(be)->infllm_compress(kc, k, n, Hkv, D, kv_stride, ksize, kstride, &be->gpu);
    prof_end();
}

void op_infllm_select(const struct backend *be, int32_t *sel, const void *q, const void *k1,
                      int64_t L1, const void *k2, int64_t L2, const struct attn_shape *s,
                      const struct infllm_params *p) {
    prof_begin(PROF_SELECTION);
    ops_of(be)->infllm_select(sel, q, k1, L1, k2, L2, s, p, &be->gpu);
    prof_end();
}

void op_sparse_attention_forward(const struct backend *be, void *out, float *lse, const void *q,
                                 const void *k, const void *v, const int32_t *sel, int nsel,
                                 int block_size, const struct attn_shape *s) {
    prof_begin(PROF_ATTENTION);
    ops_of(be)->sparse_attention_forward(out, lse, q, k, v, sel, nsel, block_size, s, &be->gpu);
    prof_end();
}

void op_sparse_attention_backward(const struct backend *be, void *dq, void *dk, void *dv,
                                  const void *dout, const void *q, const void *k, const void *v,
                                  const void *out, const float *lse, const int32_t *sel, int nsel,
                                  int block_size, const struct attn_shape *s, void *workspace) {
    prof_begin(PROF_ATTENTION);
    ops_of(be)->sparse_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, sel, nsel,
                                          block_size, s, workspace, &be->gpu);
    prof_end();
}
