/*
 * test_ops.c: the op dispatch of kernels/ops.h.
 *
 *   query    ops_supports: the CPU backend (the reference) has every op; a CUDA build's CUDA
 *            backend has every op too, a CPU-only build's none; an op id out of range is supported
 *            nowhere; op names are distinct.
 *   wiring   every op that ops_supports says the CPU backend has, run through op_* on a CPU
 *            backend, gives bitwise what its reference kernel gives when called directly on the
 *            same inputs and the same prefilled outputs (a table entry that points at another
 *            kernel, or passes arguments in another order, fails). Ops the query says are missing
 *            would be skipped and are counted.
 *
 * Sizes are tiny (every output fits in one buffer of BUF floats); inputs are random normals from a
 * fresh seed each run (printed; replay with `test_ops --seed S`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adamw_update.h"
#include "bias.h"
#include "check.h"
#include "crossentropy.h"
#include "elementwise.h"
#include "embedding.h"
#include "matmul.h"
#include "ops.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"
#include "testlib.h"

#define BUF 4096
#define NIN 4  /* float inputs */
#define NOUT 3 /* float outputs, prefilled */

/* Sizes: N rows, C channels, V vocabulary, H heads of D; attention over T tokens, Hq = 2 query
 * heads on Hkv = 1 KV head, blocks of BS tokens. */
enum { N = 6, C = 8, V = 16, H = 2, D = 4, T = 8, BS = 4, NSEL = 2 };

struct fixture {
    struct backend be;
    float *in[NIN];           /* random inputs */
    float *ref[NOUT];         /* outputs of the direct kernel call */
    float *got[NOUT];         /* outputs of the op_* call (same prefill) */
    int32_t *tokens, *targets, *pos, *sel;
    int32_t *iref, *igot;     /* integer outputs */
    double dref, dgot;        /* scalar results */
    struct attn_shape s;
    struct infllm_params p;
};

static void check_embedding_forward(struct fixture *f) {
    embedding_forward_cpu(f->ref[0], f->tokens, f->in[0], N, C, 1.5f);
    op_embedding_forward(&f->be, f->got[0], f->tokens, f->in[0], N, C, 1.5f);
}

static void check_embedding_backward(struct fixture *f) {
    embedding_backward_cpu(f->ref[0], f->in[0], f->tokens, N, C, 1.5f);
    op_embedding_backward(&f->be, f->got[0], f->in[0], f->tokens, N, C, 1.5f, NULL);
}

static void check_rmsnorm_forward(struct fixture *f) {
    rmsnorm_forward_cpu(f->ref[0], f->ref[1], f->in[0], f->in[1], N, C, 1e-5f);
    op_rmsnorm_forward(&f->be, f->got[0], f->got[1], f->in[0], f->in[1], N, C, 1e-5f);
}

static void check_rmsnorm_backward(struct fixture *f) {
    rmsnorm_backward_cpu(f->ref[0], f->ref[1], f->in[0], f->in[1], f->in[2], f->in[3], N, C);
    op_rmsnorm_backward(&f->be, f->got[0], f->got[1], f->in[0], f->in[1], f->in[2], f->in[3], N,
                        C, NULL);
}

static void check_rope_forward(struct fixture *f) {
    rope_forward_cpu(f->ref[0], f->in[0], f->in[1], f->pos, N, H, D, H * D);
    op_rope_forward(&f->be, f->got[0], f->in[0], f->in[1], f->pos, N, H, D, H * D);
}

static void check_rope_backward(struct fixture *f) {
    rope_backward_cpu(f->ref[0], f->in[0], f->in[1], f->pos, N, H, D, H * D);
    op_rope_backward(&f->be, f->got[0], f->in[0], f->in[1], f->pos, N, H, D, H * D);
}

static void check_bias_forward(struct fixture *f) {
    bias_forward_cpu(f->ref[0], f->in[0], N, C, 0.5f);
    op_bias_forward(&f->be, f->got[0], f->in[0], N, C, 0.5f);
}

static void check_bias_backward(struct fixture *f) {
    bias_backward_cpu(f->ref[0], f->in[0], N, C, 0.5f);
    op_bias_backward(&f->be, f->got[0], f->in[0], N, C, 0.5f, NULL);
}

static void check_matmul_forward(struct fixture *f) {
    matmul_forward_cpu(f->ref[0], f->in[0], f->in[1], N, C, 5, 0.5f, true);
    op_matmul_forward(&f->be, f->got[0], f->in[0], f->in[1], N, C, 5, 0.5f, true);
}

static void check_matmul_forward_f32(struct fixture *f) {
    matmul_forward_cpu(f->ref[0], f->in[0], f->in[1], N, C, 5, 0.5f, false);
    op_matmul_forward_f32(&f->be, f->got[0], f->in[0], f->in[1], N, C, 5, 0.5f);
}

static void check_matmul_backward(struct fixture *f) {
    matmul_backward_cpu(f->ref[0], f->ref[1], f->in[0], f->in[1], f->in[2], N, C, 5, 0.5f);
    op_matmul_backward(&f->be, f->got[0], f->got[1], f->in[0], f->in[1], f->in[2], N, C, 5, 0.5f);
}

static void check_swiglu_forward(struct fixture *f) {
    swiglu_forward_cpu(f->ref[0], f->in[0], f->in[1], N * C);
    op_swiglu_forward(&f->be, f->got[0], f->in[0], f->in[1], N * C);
}

static void check_swiglu_backward(struct fixture *f) {
    swiglu_backward_cpu(f->ref[0], f->ref[1], f->in[0], f->in[1], f->in[2], N * C);
    op_swiglu_backward(&f->be, f->got[0], f->got[1], f->in[0], f->in[1], f->in[2], N * C);
}

static void check_crossentropy(struct fixture *f) {
    crossentropy_forward_backward_cpu(f->ref[0], f->ref[1], f->in[0], f->targets, N, V, 0.25f);
    op_crossentropy(&f->be, f->got[0], f->got[1], f->in[0], f->targets, N, V, 0.25f);
}

static void check_argmax_rows(struct fixture *f) {
    argmax_rows_cpu(f->iref, f->in[0], N, V);
    op_argmax_rows(&f->be, f->igot, f->in[0], N, V);
}

static void check_add_inplace(struct fixture *f) {
    add_inplace_cpu(f->ref[0], f->in[0], N * C);
    op_add_inplace(&f->be, f->got[0], f->in[0], N * C);
}

static void check_attention_forward(struct fixture *f) {
    attention_forward_cpu(f->ref[0], f->ref[1], f->in[0], f->in[1], f->in[2], &f->s);
    op_attention_forward(&f->be, f->got[0], f->got[1], f->in[0], f->in[1], f->in[2], &f->s);
}

static void check_attention_backward(struct fixture *f) {
    float **r = f->ref, **g = f->got, **i = f->in;
    attention_backward_cpu(r[0], r[1], r[2], i[0], i[1], i[2], i[3], i[0], i[1], &f->s);
    op_attention_backward(&f->be, g[0], g[1], g[2], i[0], i[1], i[2], i[3], i[0], i[1], &f->s);
}

static void check_infllm_compress(struct fixture *f) {
    infllm_compress_cpu(f->ref[0], f->in[0], 3, 1, D, D, 4, 2);
    op_infllm_compress(&f->be, f->got[0], f->in[0], 3, 1, D, D, 4, 2);
}

static void check_infllm_select(struct fixture *f) {
    infllm_select_cpu(f->iref, f->in[0], f->in[1], 3, NULL, 0, &f->s, &f->p);
    op_infllm_select(&f->be, f->igot, f->in[0], f->in[1], 3, NULL, 0, &f->s, &f->p);
}

static void check_sparse_attention_forward(struct fixture *f) {
    float **r = f->ref, **g = f->got, **i = f->in;
    sparse_attention_forward_cpu(r[0], r[1], i[0], i[1], i[2], f->sel, NSEL, BS, &f->s);
    op_sparse_attention_forward(&f->be, g[0], g[1], i[0], i[1], i[2], f->sel, NSEL, BS, &f->s);
}

static void check_sparse_attention_backward(struct fixture *f) {
    float **r = f->ref, **g = f->got, **i = f->in;
    sparse_attention_backward_cpu(r[0], r[1], r[2], i[0], i[1], i[2], i[3], i[0], i[1], f->sel,
                                  NSEL, BS, &f->s);
    op_sparse_attention_backward(&f->be, g[0], g[1], g[2], i[0], i[1], i[2], i[3], i[0], i[1],
                                 f->sel, NSEL, BS, &f->s, NULL);
}

/* The compute copy of the weights (got[2]) equals the fp32 master on the CPU. */
static void check_adamw_update(struct fixture *f) {
    float **r = f->ref, **g = f->got;
    adamw_update_cpu(r[0], r[1], r[2], f->in[0], N * C, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3);
    memcpy(r[2] + N * C, r[0], (size_t)(N * C) * sizeof(float));
    op_adamw_update(&f->be, g[0], g[1], g[2], f->in[0], g[2] + N * C, N * C, 1e-2f, 0.9f, 0.95f,
                    1e-8f, 0.1f, 0.5f, 3);
}

static void check_sumsq(struct fixture *f) {
    f->dref = sumsq_cpu(f->in[0], BUF);
    f->dgot = op_sumsq(&f->be, f->in[0], BUF, NULL);
}

static void (*const checks[OP_COUNT])(struct fixture *) = {
    [OP_EMBEDDING_FORWARD] = check_embedding_forward,
    [OP_EMBEDDING_BACKWARD] = check_embedding_backward,
    [OP_RMSNORM_FORWARD] = check_rmsnorm_forward,
    [OP_RMSNORM_BACKWARD] = check_rmsnorm_backward,
    [OP_ROPE_FORWARD] = check_rope_forward,
    [OP_ROPE_BACKWARD] = check_rope_backward,
    [OP_BIAS_FORWARD] = check_bias_forward,
    [OP_BIAS_BACKWARD] = check_bias_backward,
    [OP_MATMUL_FORWARD] = check_matmul_forward,
    [OP_MATMUL_FORWARD_F32] = check_matmul_forward_f32,
    [OP_MATMUL_BACKWARD] = check_matmul_backward,
    [OP_SWIGLU_FORWARD] = check_swiglu_forward,
    [OP_SWIGLU_BACKWARD] = check_swiglu_backward,
    [OP_CROSSENTROPY] = check_crossentropy,
    [OP_ARGMAX_ROWS] = check_argmax_rows,
    [OP_ADD_INPLACE] = check_add_inplace,
    [OP_ATTENTION_FORWARD] = check_attention_forward,
    [OP_ATTENTION_BACKWARD] = check_attention_backward,
    [OP_INFLLM_COMPRESS] = check_infllm_compress,
    [OP_INFLLM_SELECT] = check_infllm_select,
    [OP_SPARSE_ATTENTION_FORWARD] = check_sparse_attention_forward,
    [OP_SPARSE_ATTENTION_BACKWARD] = check_sparse_attention_backward,
    [OP_ADAMW_UPDATE] = check_adamw_update,
    [OP_SUMSQ] = check_sumsq,
};

static void test_query(void) {
    for (int i = 0; i < OP_COUNT; i++) {
        enum op_id op = (enum op_id)i;
        t_check(ops_supports(DEVICE_CPU, op), "the CPU backend lacks %s", op_name(op));
#ifdef INFLLM_CUDA
        t_check(ops_supports(DEVICE_CUDA, op), "the CUDA backend lacks %s", op_name(op));
#else
        t_check(!ops_supports(DEVICE_CUDA, op), "a CPU-only build claims CUDA %s", op_name(op));
#endif
        t_check(op_name(op)[0] != '\0' && checks[op] != NULL, "op %d: a name and a check", i);
        for (int j = 0; j < i; j++)
            t_check(strcmp(op_name(op), op_name((enum op_id)j)) != 0, "ops %d and %d: one name",
                    i, j);
    }
    t_check(!ops_supports(DEVICE_CPU, OP_COUNT), "OP_COUNT is not an op");
}

/* Fresh random inputs and identical random prefills of ref and got. */
static void refill(struct fixture *f, struct t_rng *r) {
    for (int i = 0; i < NIN; i++) t_fill_normal(r, f->in[i], BUF, 1.0f);
    for (int i = 0; i < NOUT; i++) {
        t_fill_normal(r, f->ref[i], BUF, 1.0f);
        memcpy(f->got[i], f->ref[i], BUF * sizeof(float));
    }
    for (int i = 0; i < BUF; i++) f->iref[i] = f->igot[i] = -7;
    for (int i = 0; i < N; i++) {
        f->tokens[i] = (int32_t)(t_rng_u64(r) % V);
        f->targets[i] = i == 2 ? -1 : (int32_t)(t_rng_u64(r) % V);
        f->pos[i] = (int32_t)(t_rng_u64(r) % T);
    }
    f->dref = f->dgot = -1;
}

static void test_wiring(struct t_rng *r) {
    struct fixture f;
    memset(&f, 0, sizeof f);
    backend_init(&f.be, DEVICE_CPU, 0);
    for (int i = 0; i < NIN; i++) f.in[i] = xmalloc(BUF * sizeof(float));
    for (int i = 0; i < NOUT; i++) {
        f.ref[i] = xmalloc(BUF * sizeof(float));
        f.got[i] = xmalloc(BUF * sizeof(float));
    }
    f.tokens = xmalloc(N * 4), f.targets = xmalloc(N * 4), f.pos = xmalloc(N * 4);
    f.iref = xmalloc(BUF * 4), f.igot = xmalloc(BUF * 4);
    f.sel = xmalloc(T * NSEL * 4);
    for (int i = 0; i < T; i++) { /* block 0, and the query's own block 1 from position 4 on */
        f.sel[i * NSEL] = 0;
        f.sel[i * NSEL + 1] = i / BS == 1 ? 1 : -1;
    }
    f.s = (struct attn_shape){.Tq = T, .q_pos0 = 0, .Tk = T, .Hq = 2, .Hkv = 1, .D = D,
                              .q_stride = 2 * D, .kv_stride = D, .scale = 0.5f};
    f.p = (struct infllm_params){.kernel_size = 4, .kernel_stride = 2, .block_size = BS,
                                 .init_blocks = 1, .local_blocks = 0, .topk = NSEL};
    int skipped = 0;
    for (int i = 0; i < OP_COUNT; i++) {
        enum op_id op = (enum op_id)i;
        if (!ops_supports(DEVICE_CPU, op)) {
            skipped++;
            continue;
        }
        refill(&f, r);
        checks[op](&f);
        bool same = f.dref == f.dgot && memcmp(f.iref, f.igot, BUF * 4) == 0;
        for (int k = 0; k < NOUT; k++) same = same && memcmp(f.ref[k], f.got[k], BUF * 4) == 0;
        t_check(same, "op_%s on the CPU backend differs from its kernel called directly",
                op_name(op));
    }
    printf("  %d of %d ops compared through the CPU backend's dispatch with their kernels (%d not "
           "supported, skipped)\n", OP_COUNT - skipped, OP_COUNT, skipped);
    for (int i = 0; i < NIN; i++) free(f.in[i]);
    for (int i = 0; i < NOUT; i++) free(f.ref[i]), free(f.got[i]);
    free(f.tokens), free(f.targets), free(f.pos), free(f.iref), free(f.igot), free(f.sel);
    backend_free(&f.be);
}

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if (argc == 3 && strcmp(argv[1], "--seed") == 0) seed = strtoull(argv[2], NULL, 10);
    printf("test_ops: seed %llu\n", (unsigned long long)seed);
    struct t_rng r = {seed};
    test_query();
    test_wiring(&r);
    return t_finish("test_ops");
}
