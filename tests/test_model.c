/*
 * test_model.c: the whole model's gradient against finite differences, on tiny configs that cover
 * Llama and MiniCPM (muP scales, tied head), Qwen2 (q, k, v biases), Qwen3 (per-head q and k
 * RMSNorm, with and without attention_bias), attention_bias on MiniCPM (the o bias under the
 * residual scale), dense and InfLLM-V2 sparse attention (with and without use_nope and
 * lse_approx), a fused head that works through the rows in several chunks, and batches of several
 * sequences. Head dim x heads (32) differs from the hidden size (24) everywhere. Biases and head-norm
 * weights get random values (not their zero / one init), so every term of their backward counts.
 *
 * Method: for each parameter tensor kind, a random direction d over that tensor's elements; the
 * analytic directional derivative g . d against central differences of the mean loss,
 * Richardson-extrapolated from steps h = 2e-3 and 1e-3 (the model's curvature makes the plain
 * central difference off by ~1e-3 relative at these steps). The forward is fp32: its rounding
 * (~1e-7 relative per row) leaves ~5e-5 of noise on a difference, so the tolerance is 3e-3
 * relative plus 1e-4 absolute; directional derivatives are 2e-3 .. 2, and a wrong term (a missing
 * scale, a sign, a dropped branch) moves them by tens of percent.
 * In sparse mode the selection is held fixed across the perturbed forwards (reuse_selection), as
 * the method defines the backward: selection is a constant of the step.
 * Recomputation (train.recompute "attention" and "full") must give the same loss and the same
 * gradient bit for bit as keeping every activation: it re-runs the same ops on the same inputs.
 * The memory plan (kernels/plan.h): the plan-only model declares the same buffers as the allocated
 * one, and every buffer of the allocated one lies aligned inside its arena, apart from the others,
 * and zero-filled (those the model has not written yet).
 * A top-k budget past the sequence's blocks is dense attention: selection sized by the sequence,
 * loss and gradient equal to the dense model's up to fp32 reassociation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "grid.h"
#include "model.h"
#include "testlib.h"

struct case_desc {
    const char *name;
    enum model_type type;
    bool tied, sparse, nope, lse_approx;
    int B;
    int64_t T;
    int64_t head_rows; /* 0: the model's choice; else fewer rows per head chunk (a remainder too) */
    bool attention_bias;
};

static void setup_config(struct config *c, const struct case_desc *k) {
    config_defaults(c);
    struct model_config *m = &c->model;
    m->model_type = k->type;
    m->attention_bias = k->attention_bias;
    m->vocab_size = 61;
    m->hidden_size = 24;
    m->intermediate_size = 40;
    m->num_hidden_layers = 2;
    m->num_attention_heads = 4;
    m->num_key_value_heads = 2;
    m->head_dim = 8;
    m->tie_word_embeddings = k->tied;
    m->scale_emb = 3.0;
    m->scale_depth = 1.4;
    m->dim_model_base = 8;
    m->initializer_range = 0.2; /* large enough that the loss depends on every weight visibly */
    c->data.seq_len = k->T;
    c->data.synthetic = (struct synthetic_config){.n_pairs = 2, .n_queries = 1, .n_keys = 8,
                                                  .n_values = 8};
    c->train.micro_batch_size = k->B;
    c->train.global_batch_size = k->B;
    struct attention_config *a = &c->attention;
    a->kernel_size = 8;
    a->kernel_stride = 4;
    a->block_size = 16;
    a->window_size = 16;
    a->init_blocks = 1;
    a->topk = 2;
    a->dense_len = k->sparse ? -1 : 1 << 30;
    a->use_nope = k->nope;
    a->lse_approx = k->lse_approx;
    config_validate(c, 1);
}

/* model_init_weights, then random biases and head-norm weights. */
static void init_weights(struct model *m, uint64_t seed) {
    model_init_weights(m, seed);
    struct t_rng r = {seed ^ 0xb1a5};
    t_randomize_extras(&r, m->params, m->n_params_entries, m->param_buf);
}

static double mean_loss(struct model *m, const int32_t *tok, const int32_t *tgt) {
    return model_forward(m, tok, tgt, false, 0.0f) / (double)m->N;
}

/* Central difference of the mean loss along d with step h. */
static double central(struct model *m, const int32_t *tok, const int32_t *tgt, const float *d,
                      double h) {
    float *w = m->param_buf;
    int64_t n = m->n_params_padded;
    float *saved = xmalloc((size_t)n * sizeof(float));
    memcpy(saved, w, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) w[i] = saved[i] + (float)(h * d[i]);
    double lp = mean_loss(m, tok, tgt);
    for (int64_t i = 0; i < n; i++) w[i] = saved[i] - (float)(h * d[i]);
    double lm = mean_loss(m, tok, tgt);
    memcpy(w, saved, (size_t)n * sizeof(float));
    free(saved);
    return (lp - lm) / (2 * h);
}

/* Richardson extrapolation of two central differences (h and h/2): the h^2 term of the model's
 * curvature cancels, leaving O(h^4) and the fp32 noise of the loss (~5e-5 here). */
static double richardson(struct model *m, const int32_t *tok, const int32_t *tgt, const float *d) {
    const double h = 2e-3; /* weights are O(0.2-1), d is N(0, 1) */
    return (4 * central(m, tok, tgt, d, h / 2) - central(m, tok, tgt, d, h)) / 3;
}

/* Loss and gradient of one step with train.recompute = mode, against the reference (none). */
static void check_recompute(const struct case_desc *k, const struct grid *g, uint64_t seed,
                            enum recompute mode, const int32_t *tok, const int32_t *tgt,
                            double ref_loss, const float *ref_grad) {
    static struct config c;
    setup_config(&c, k);
    c.train.recompute = mode;
    struct backend be;
    backend_init(&be, DEVICE_CPU, 0);
    struct model m;
    model_init(&m, &c, &be, g, 64, true);
    init_weights(&m, seed);
    if (k->head_rows) m.head_rows = k->head_rows;
    model_zero_grad(&m);
    double loss = model_forward(&m, tok, tgt, true, (float)(1.0 / (double)m.N)) / (double)m.N;
    model_backward(&m);
    int64_t differ = 0;
    for (int64_t i = 0; i < m.n_params_padded; i++) differ += m.grad_buf[i] != ref_grad[i];
    t_check(loss == ref_loss && differ == 0,
            "%s: recompute %s: loss %.9g vs %.9g, %lld of %lld gradient entries differ", k->name,
            config_recompute_name(mode), loss, ref_loss, (long long)differ, (long long)m.n_params_padded);
    model_free(&m);
    backend_free(&be);
    config_free(&c);
}

static void run_case(const struct case_desc *k, const struct grid *g, uint64_t seed) {
    static struct config c;
    setup_config(&c, k);
    struct backend be;
    backend_init(&be, DEVICE_CPU, 0);
    struct model m;
    model_init(&m, &c, &be, g, 64, true);
    init_weights(&m, seed);
    if (k->head_rows) m.head_rows = k->head_rows; /* smaller than allocated: always fits */
    t_check(m.sparse == k->sparse, "%s: sparse mode is %d", k->name, m.sparse);

    struct t_rng r = {seed};
    int32_t *tok = xmalloc((size_t)m.N * sizeof(int32_t)), *tgt = xmalloc((size_t)m.N * sizeof(int32_t));
    for (int64_t i = 0; i < m.N; i++) {
        tok[i] = (int32_t)(t_rng_u64(&r) % (uint64_t)m.V);
        tgt[i] = i % 17 == 5 ? -1 : (int32_t)(t_rng_u64(&r) % (uint64_t)m.V); /* a few unscored */
    }

    model_zero_grad(&m);
    double loss = model_forward(&m, tok, tgt, true, (float)(1.0 / (double)m.N)) / (double)m.N;
    model_backward(&m);
    t_check(isfinite(loss) && loss > 0, "%s: loss %g", k->name, loss);
    check_recompute(k, g, seed, RECOMPUTE_ATTENTION, tok, tgt, loss, m.grad_buf);
    check_recompute(k, g, seed, RECOMPUTE_FULL, tok, tgt, loss, m.grad_buf);
    m.reuse_selection = true;

    /* One direction per HF tensor kind (all layers of it together). */
    const char *kinds[] = {"embed_tokens", "input_layernorm", "q_proj.weight", "k_proj.weight",
                           "v_proj.weight", "o_proj.weight", "post_attention_layernorm",
                           "gate_proj", "up_proj", "down_proj", "model.norm", "lm_head",
                           "q_proj.bias", "k_proj.bias", "v_proj.bias", "o_proj.bias", "q_norm",
                           "k_norm"};
    float *d = xcalloc((size_t)m.n_params_padded, sizeof(float));
    for (size_t kind = 0; kind < sizeof kinds / sizeof kinds[0]; kind++) {
        memset(d, 0, (size_t)m.n_params_padded * sizeof(float));
        int64_t nd = 0;
        for (int e = 0; e < m.n_params_entries; e++) {
            const struct param_entry *p = &m.params[e];
            if (!strstr(p->name, kinds[kind])) continue;
            t_fill_normal(&r, d + p->offset, p->numel, 1.0f);
            nd += p->numel;
        }
        if (nd == 0) continue; /* lm_head when tied, a tensor the family lacks */
        double analytic = 0;
        for (int64_t i = 0; i < m.n_params_padded; i++) analytic += (double)m.grad_buf[i] * d[i];
        double numeric = richardson(&m, tok, tgt, d);
        double err = fabs(numeric - analytic);
        double tol = 3e-3 * fabs(numeric) + 1e-4;
        t_check(err <= tol, "%s: %s: analytic %.8g vs finite difference %.8g (err %.3g > tol %.3g)",
                k->name, kinds[kind], analytic, numeric, err, tol);
        if (getenv("TEST_VERBOSE"))
            printf("  %-12s %-26s analytic %+.8e numeric %+.8e rel %.2e\n", k->name, kinds[kind],
                   analytic, numeric, err / (fabs(numeric) + 1e-30));
    }
    free(d);
    free(tok);
    free(tgt);
    model_free(&m);
    backend_free(&be);
    config_free(&c);
}

/* The model's plan: sizing and carving agree, every buffer aligned inside its arena, no overlap. */
static void test_plan(const struct case_desc *k, const struct grid *g) {
    static struct config c;
    setup_config(&c, k);
    struct backend be;
    backend_init(&be, DEVICE_CPU, 0);
    struct model sized, m;
    model_init(&sized, &c, &be, g, 64, false);
    model_init(&m, &c, &be, g, 64, true);
    const struct mem_plan *p = &m.plan;
    t_check(sized.plan.n == p->n && p->n > 20, "plan: %d buffers planned, %d carved",
            sized.plan.n, p->n);
    size_t end[PLAN_ARENA_COUNT] = {0};
    for (int i = 0; i < p->n && i < sized.plan.n; i++) {
        const struct plan_entry *e = &p->entry[i], *s = &sized.plan.entry[i];
        t_check(strcmp(e->name, s->name) == 0 && e->bytes == s->bytes && e->arena == s->arena,
                "plan entry %d: %s (%zu bytes) carved as %s (%zu)", i, s->name, s->bytes, e->name,
                e->bytes);
        t_check(e->offset % PLAN_ALIGN == 0 && e->offset >= end[e->arena] &&
                    e->offset + e->bytes <= p->arena_bytes[e->arena] && p->arena[e->arena],
                "plan entry %s: offset %zu, %zu bytes, arena of %zu", e->name, e->offset,
                e->bytes, p->arena_bytes[e->arena]);
        end[e->arena] = e->offset + e->bytes;
    }
    const unsigned char *acts = p->arena[PLAN_ACTS];
    size_t nonzero = 0;
    for (size_t i = 0; i < p->arena_bytes[PLAN_ACTS]; i++) nonzero += acts[i] != 0;
    t_check(nonzero == 0, "plan: %zu bytes of the fresh activation arena are not zero", nonzero);
    t_check(plan_bytes(p, false) == plan_bytes(&sized.plan, false) && plan_bytes(p, true) > 0,
            "plan: sized and allocated totals agree");
    model_free(&sized);
    model_free(&m);
    backend_free(&be);
    config_free(&c);
}

/* One training step of a fresh model m (seeded weights): its mean loss; m keeps the gradient. */
static double step_loss(struct model *m, const struct config *c, const struct backend *be,
                        const struct grid *g, const int32_t *tok, const int32_t *tgt) {
    model_init(m, c, be, g, 64, true);
    model_init_weights(m, 5);
    model_zero_grad(m);
    double loss = model_forward(m, tok, tgt, true, (float)(1.0 / (double)m->N)) / (double)m->N;
    model_backward(m);
    return loss;
}

/* A budget past the sequence's blocks (attention.topk 2^31 - 1: "keep every block") selects every
 * block up to the query's own: the selection is sized by the sequence (nsel = its 8 blocks, not
 * topk + local_blocks), and loss and gradient are dense attention's up to fp32 reassociation
 * (blocks of 16 keys instead of the dense kernel's chunks): 1e-6 relative on the loss, 1e-5 of the
 * largest gradient entry (a wrong block or a missing key moves them by percents). */
static void test_budget_past_sequence(const struct grid *g) {
    const struct case_desc k = {"llama-sparse-all", MODEL_TYPE_LLAMA, true, true, false, true,
                                2, 128, 0, false};
    static struct config sparse, dense;
    setup_config(&sparse, &k);
    sparse.attention.topk = 2147483647;
    config_validate(&sparse, 1);
    setup_config(&dense, &k);
    dense.attention.dense_len = 1 << 30;
    struct t_rng r = {77};
    int64_t N = k.B * k.T;
    int32_t *tok = xmalloc((size_t)N * sizeof(int32_t)), *tgt = xmalloc((size_t)N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) {
        tok[i] = (int32_t)(t_rng_u64(&r) % 61);
        tgt[i] = (int32_t)(t_rng_u64(&r) % 61);
    }
    struct backend be;
    backend_init(&be, DEVICE_CPU, 0);
    struct model ms, md;
    double ls = step_loss(&ms, &sparse, &be, g, tok, tgt);
    double ld = step_loss(&md, &dense, &be, g, tok, tgt);
    t_check(ms.sparse && !md.sparse && ms.attn.nsel == 8,
            "topk 2^31 - 1: sparse %d, nsel %d, expected the sequence's 8 blocks", ms.sparse,
            ms.attn.nsel);
    size_t sel_bytes = 0;
    for (int i = 0; i < ms.plan.n; i++)
        if (strcmp(ms.plan.entry[i].name, "selected blocks (int32)") == 0)
            sel_bytes = ms.plan.entry[i].bytes;
    t_check(sel_bytes == (size_t)(2 * N * 2 * 8 * 4), "selection buffer of %zu bytes, expected "
            "L 2 x N %lld x Hkv 2 x 8 blocks x 4", sel_bytes, (long long)N);
    double gmax = 0, err = 0;
    for (int64_t i = 0; i < md.n_params_padded; i++) {
        gmax = fmax(gmax, fabs(md.grad_buf[i]));
        err = fmax(err, fabs((double)ms.grad_buf[i] - md.grad_buf[i]));
    }
    t_check(fabs(ls - ld) <= 1e-6 * fabs(ld) && err <= 1e-5 * gmax,
            "topk 2^31 - 1 vs dense: loss %.9g vs %.9g, gradient max difference %.3g of %.3g",
            ls, ld, err, gmax);
    if (getenv("TEST_VERBOSE"))
        printf("  budget past the sequence: loss %.9g vs dense %.9g, gradient diff %.3g of %.3g\n",
               ls, ld, err, gmax);
    model_free(&ms);
    model_free(&md);
    backend_free(&be);
    free(tok);
    free(tgt);
    config_free(&sparse);
    config_free(&dense);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    struct grid g;
    grid_init(&g, MPI_COMM_SELF, 1);
    /* name, type, tied, sparse, use_nope, lse_approx, B, T, head rows, attention_bias */
    const struct case_desc cases[] = {
        {"llama-dense", MODEL_TYPE_LLAMA, false, false, false, true, 2, 48, 0, false},
        {"minicpm-dense", MODEL_TYPE_MINICPM, true, false, false, true, 1, 64, 7, false},
        {"llama-sparse", MODEL_TYPE_LLAMA, true, true, false, true, 2, 128, 0, false},
        {"minicpm-sparse-nope-exact", MODEL_TYPE_MINICPM, false, true, true, false, 1, 144, 0, false},
        {"qwen2-dense", MODEL_TYPE_QWEN2, true, false, false, true, 2, 48, 0, false},
        {"qwen3-sparse-nope", MODEL_TYPE_QWEN3, false, true, true, false, 1, 128, 0, false},
        {"qwen3-bias-dense", MODEL_TYPE_QWEN3, false, false, false, true, 1, 64, 7, true},
        {"minicpm-bias-dense", MODEL_TYPE_MINICPM, true, false, false, true, 2, 48, 0, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], &g, 1000 + i);
    test_plan(&cases[2], &g);
    test_plan(&cases[5], &g);
    test_budget_past_sequence(&g);
    grid_free(&g);
    int rc = t_finish("test_model");
    MPI_Finalize();
    return rc;
}
