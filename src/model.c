/*
 * model.c: parameter layout, memory plan, forward and backward of the transformer (see model.h).
 *
 * Per layer l (rs = residual scale, MiniCPM's scale_depth / sqrt(L), else 1):
 *   ln1 = rmsnorm(x[l]);  q, k, v = ln1 @ Wq^T + bq, Wk^T + bk, Wv^T + bv  (biases: Qwen2,
 *   attention_bias);  Qwen3: q, k = per-head rmsnorm(q; q_norm), rmsnorm(k; k_norm) over D;
 *   RoPE(q, k);  att = attention(q, k, v)
 *   xmid = x[l] + rs * (att @ Wo^T + bo)  (bo: attention_bias)
 *   ln2 = rmsnorm(xmid);  x[l+1] = xmid + rs * swiglu(ln2 @ Wgate^T, ln2 @ Wup^T) @ Wdown^T
 * then lnf = rmsnorm(x[L]) and the fused head: logits = logit_scale * lnf @ Wlm^T chunk by chunk,
 * cross-entropy, and (training) the head's gradients straight away, so no N x V tensor exists.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checked.h"
#include "hash.h"
#include "ops.h"
#include "profile.h"
#include "rope.h"

/* Rows of logits materialised at once by the fused head: bounded so that a chunk stays small
 * (about 64 MiB of fp32 logits) whatever the vocabulary. */
#define HEAD_CHUNK_BYTES ((int64_t)64 << 20)

/* ---------------------------------------------------------------------------------------------- */
/* Parameter layout                                                                                */

enum tensor_kind {
    TENSOR_WTE, TENSOR_LN1, TENSOR_WQ, TENSOR_WK, TENSOR_WV, TENSOR_WO, TENSOR_LN2, TENSOR_WGATE,
    TENSOR_WUP, TENSOR_WDOWN, TENSOR_LNF, TENSOR_LM_HEAD,
    /* the families' extras, after the common tensors (so a Llama's layout is unchanged) */
    TENSOR_BQ, TENSOR_BK, TENSOR_BV, TENSOR_BO, TENSOR_QNORM, TENSOR_KNORM, TENSOR_COUNT
};

/* Hugging Face name pattern, per-layer shape [rows, cols] (cols 0 = 1-D), layered or not. */
struct tensor_desc {
    const char *pattern;
    int64_t rows, cols;
    bool layered;
};

static bool is_bias(enum tensor_kind t) { return t >= TENSOR_BQ && t <= TENSOR_BO; }

/* Whether the model's family has tensor t (the lm head counts, tied or not). */
static bool has_tensor(const struct model *m, enum tensor_kind t) {
    if (t == TENSOR_QNORM || t == TENSOR_KNORM) return m->qk_norm;
    if (t == TENSOR_BO) return m->o_bias;
    return is_bias(t) ? m->qkv_bias : true;
}

static void tensor_descs(const struct model *m, struct tensor_desc d[TENSOR_COUNT]) {
    int64_t D = m->D, QD = (int64_t)m->Hq * D, KD = (int64_t)m->Hkv * D;
    d[TENSOR_WTE] = (struct tensor_desc){"model.embed_tokens.weight", m->V, m->C, false};
    d[TENSOR_LN1] = (struct tensor_desc){"model.layers.%d.input_layernorm.weight", m->C, 0, true};
    d[TENSOR_WQ] = (struct tensor_desc){"model.layers.%d.self_attn.q_proj.weight", QD, m->C, true};
    d[TENSOR_WK] = (struct tensor_desc){"model.layers.%d.self_attn.k_proj.weight", KD, m->C, true};
    d[TENSOR_WV] = (struct tensor_desc){"model.layers.%d.self_attn.v_proj.weight", KD, m->C, true};
    d[TENSOR_WO] = (struct tensor_desc){"model.layers.%d.self_attn.o_proj.weight", m->C, QD, true};
    d[TENSOR_LN2] =
        (struct tensor_desc){"model.layers.%d.post_attention_layernorm.weight", m->C, 0, true};
    d[TENSOR_WGATE] = (struct tensor_desc){"model.layers.%d.mlp.gate_proj.weight", m->I, m->C, true};
    d[TENSOR_WUP] = (struct tensor_desc){"model.layers.%d.mlp.up_proj.weight", m->I, m->C, true};
    d[TENSOR_WDOWN] = (struct tensor_desc){"model.layers.%d.mlp.down_proj.weight", m->C, m->I, true};
    d[TENSOR_LNF] = (struct tensor_desc){"model.norm.weight", m->C, 0, false};
    d[TENSOR_LM_HEAD] = (struct tensor_desc){"lm_head.weight", m->V, m->C, false};
    d[TENSOR_BQ] = (struct tensor_desc){"model.layers.%d.self_attn.q_proj.bias", QD, 0, true};
    d[TENSOR_BK] = (struct tensor_desc){"model.layers.%d.self_attn.k_proj.bias", KD, 0, true};
    d[TENSOR_BV] = (struct tensor_desc){"model.layers.%d.self_attn.v_proj.bias", KD, 0, true};
    d[TENSOR_BO] = (struct tensor_desc){"model.layers.%d.self_attn.o_proj.bias", m->C, 0, true};
    d[TENSOR_QNORM] = (struct tensor_desc){"model.layers.%d.self_attn.q_norm.weight", D, 0, true};
    d[TENSOR_KNORM] = (struct tensor_desc){"model.layers.%d.self_attn.k_norm.weight", D, 0, true};
}

/* Builds the entry list and the flat offsets (-1 for an absent tensor); returns the number of
 * elements. */
static int64_t layout_params(struct model *m, int64_t tensor_offset[TENSOR_COUNT]) {
    struct tensor_desc d[TENSOR_COUNT];
    tensor_descs(m, d);
    bool tied = m->cfg->model.tie_word_embeddings;
    int64_t max_entries = size_mul(TENSOR_COUNT, m->L); /* L is bounded by the key's maximum */
    m->params = xcalloc((size_t)max_entries, sizeof *m->params);
    m->n_params_entries = 0;
    int64_t off = 0;
    for (int t = 0; t < TENSOR_COUNT; t++) {
        tensor_offset[t] = off;
        if (t == TENSOR_LM_HEAD && tied) {
            tensor_offset[t] = tensor_offset[TENSOR_WTE];
            continue;
        }
        if (!has_tensor(m, (enum tensor_kind)t)) {
            tensor_offset[t] = -1;
            continue;
        }
        int nl = d[t].layered ? m->L : 1;
        int64_t numel = size_mul(d[t].rows, d[t].cols ? d[t].cols : 1);
        for (int l = 0; l < nl; l++) {
            struct param_entry *e = &m->params[m->n_params_entries++];
            snprintf(e->name, sizeof e->name, d[t].pattern, l);
            e->offset = off;
            e->ndim = d[t].cols ? 2 : 1;
            e->shape[0] = d[t].rows;
            e->shape[1] = d[t].cols;
            e->numel = numel;
            e->is_norm = d[t].cols == 0 && !is_bias((enum tensor_kind)t);
            e->decay = d[t].cols != 0;
            off = size_add(off, numel);
        }
    }
    return off;
}

static void bind_views(struct model *m, const int64_t off[TENSOR_COUNT]) {
    void **w[TENSOR_COUNT] = {&m->w.wte,   &m->w.ln1,   &m->w.wq,  &m->w.wk,     &m->w.wv,
                              &m->w.wo,    &m->w.ln2,   &m->w.wgate, &m->w.wup,  &m->w.wdown,
                              &m->w.lnf,   &m->w.lm_head, &m->w.bq, &m->w.bk,    &m->w.bv,
                              &m->w.bo,    &m->w.q_norm, &m->w.k_norm};
    float **g[TENSOR_COUNT] = {&m->g.wte,  &m->g.ln1,   &m->g.wq,  &m->g.wk,     &m->g.wv,
                               &m->g.wo,   &m->g.ln2,   &m->g.wgate, &m->g.wup,  &m->g.wdown,
                               &m->g.lnf,  &m->g.lm_head, &m->g.bq, &m->g.bk,    &m->g.bv,
                               &m->g.bo,   &m->g.q_norm, &m->g.k_norm};
    for (int t = 0; t < TENSOR_COUNT; t++) {
        *w[t] = off[t] < 0 ? NULL : act_at(m->be, m->param_buf, off[t]);
        *g[t] = off[t] < 0 ? NULL : m->grad_buf + off[t];
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Memory plan                                                                                     */

/* Bytes of a (x b x c) elements of `elem` bytes, overflow checked (checked.h). */
static size_t nbytes(int64_t a, int64_t b, int64_t c, size_t elem) {
    return (size_t)size_mul(size_mul3(a, b, c), elem);
}

/* Qwen3's per-head norm: its inputs (the q and k projections) and rstd, held like q and k. */
static void declare_qk_norm_acts(struct model *m, struct mem_plan *p, int64_t La) {
    size_t as = m->be->act_size;
    int64_t N = m->N, QD = (int64_t)m->Hq * m->D, KD = (int64_t)m->Hkv * m->D;
    struct model_acts *a = &m->a;
    a->qpre = plan_take(p, PLAN_ACTS, "q before its head norm", nbytes(La, N, QD, as));
    a->kpre = plan_take(p, PLAN_ACTS, "k before its head norm", nbytes(La, N, KD, as));
    a->rstdq = plan_take(p, PLAN_ACTS, "rstd q heads (fp32)", nbytes(La, N, m->Hq, 4));
    a->rstdk = plan_take(p, PLAN_ACTS, "rstd k heads (fp32)", nbytes(La, N, m->Hkv, 4));
}

/* The saved activations (struct model_acts). */
static void declare_acts(struct model *m, struct mem_plan *p) {
    size_t as = m->be->act_size, f4 = sizeof(float);
    int64_t N = m->N, L = m->L, C = m->C, I = m->I;
    int64_t La = m->keep_attn ? L : 1, Lm = m->keep_mlp ? L : 1; /* layers held (recompute) */
    int64_t QD = (int64_t)m->Hq * m->D, KD = (int64_t)m->Hkv * m->D;
    struct model_acts *a = &m->a;
    a->x = plan_take(p, PLAN_ACTS, "residual x", nbytes(L + 1, N, C, as));
    a->ln1 = plan_take(p, PLAN_ACTS, "ln1", nbytes(La, N, C, as));
    a->rstd1 = plan_take(p, PLAN_ACTS, "rstd1 (fp32)", nbytes(La, N, 1, f4));
    a->q = plan_take(p, PLAN_ACTS, "q", nbytes(La, N, QD, as));
    a->k = plan_take(p, PLAN_ACTS, "k", nbytes(La, N, KD, as));
    a->v = plan_take(p, PLAN_ACTS, "v", nbytes(La, N, KD, as));
    if (m->qk_norm) declare_qk_norm_acts(m, p, La);
    a->att = plan_take(p, PLAN_ACTS, "attention out", nbytes(La, N, QD, as));
    a->lse = plan_take(p, PLAN_ACTS, "lse (fp32)", nbytes(La, N, m->Hq, f4));
    if (m->sparse)
        a->sel = plan_take(p, PLAN_ACTS, "selected blocks (int32)",
                           nbytes(L, N, (int64_t)m->Hkv * m->attn.nsel, sizeof(int32_t)));
    a->xmid = plan_take(p, PLAN_ACTS, "residual xmid", nbytes(Lm, N, C, as));
    a->ln2 = plan_take(p, PLAN_ACTS, "ln2", nbytes(Lm, N, C, as));
    a->rstd2 = plan_take(p, PLAN_ACTS, "rstd2 (fp32)", nbytes(Lm, N, 1, f4));
    a->gate = plan_take(p, PLAN_ACTS, "gate", nbytes(Lm, N, I, as));
    a->up = plan_take(p, PLAN_ACTS, "up", nbytes(Lm, N, I, as));
    a->lnf = plan_take(p, PLAN_ACTS, "final norm", nbytes(1, N, C, as));
    a->rstdf = plan_take(p, PLAN_ACTS, "rstd final (fp32)", nbytes(1, N, 1, f4));
}

/* The temporaries every layer reuses (struct model_scratch). On the CPU the logits' gradient
 * overwrites the logits in place (the cross-entropy kernel allows it): one buffer, two names. */
static void declare_scratch(struct model *m, struct mem_plan *p) {
    size_t as = m->be->act_size;
    int64_t N = m->N, C = m->C, I = m->I;
    int64_t QD = (int64_t)m->Hq * m->D, KD = (int64_t)m->Hkv * m->D;
    struct model_scratch *s = &m->s;
    s->act = plan_take(p, PLAN_SCRATCH, "swiglu out", nbytes(1, N, I, as));
    s->dact = plan_take(p, PLAN_SCRATCH, "d swiglu out", nbytes(1, N, I, as));
    s->dgate = plan_take(p, PLAN_SCRATCH, "d gate", nbytes(1, N, I, as));
    s->dup = plan_take(p, PLAN_SCRATCH, "d up", nbytes(1, N, I, as));
    s->dres = plan_take(p, PLAN_SCRATCH, "d residual", nbytes(1, N, C, as));
    s->dln = plan_take(p, PLAN_SCRATCH, "d norm out", nbytes(1, N, C, as));
    s->datt = plan_take(p, PLAN_SCRATCH, "d attention out", nbytes(1, N, QD, as));
    s->dq = plan_take(p, PLAN_SCRATCH, "dq", nbytes(1, N, QD, as));
    s->dk = plan_take(p, PLAN_SCRATCH, "dk", nbytes(1, N, KD, as));
    s->dv = plan_take(p, PLAN_SCRATCH, "dv", nbytes(1, N, KD, as));
    if (m->qk_norm)
        s->dkpre = plan_take(p, PLAN_SCRATCH, "d k before its norm", nbytes(1, N, KD, as));
    s->dlnf = plan_take(p, PLAN_SCRATCH, "d final norm out", nbytes(1, N, C, as));
    s->logits = plan_take(p, PLAN_SCRATCH, "logits chunk (fp32)",
                          nbytes(1, m->head_rows, m->V, sizeof(float)));
    s->dlogits = m->be->device == DEVICE_CPU
                     ? (void *)s->logits
                     : plan_take(p, PLAN_SCRATCH, "d logits chunk",
                                 nbytes(1, m->head_rows, m->V, as));
    int nsel = m->sparse ? m->attn.nsel : 0;
    int64_t nblk = (m->T + m->cfg->attention.block_size - 1) / m->cfg->attention.block_size;
    int wide = (int)(QD > C ? QD : C); /* the widest rows a norm or bias backward reduces */
    size_t ws = ops_workspace_bytes(m->be, N, wide, m->shard.n_local, m->Hkv, nsel, nblk);
    if (ws) s->workspace = plan_take(p, PLAN_SCRATCH, "kernel workspace", ws);
    s->loss = plan_take(p, PLAN_SCRATCH, "per-token loss (fp32)", nbytes(1, N, 1, sizeof(float)));
    s->argmax = plan_take(p, PLAN_SCRATCH, "predicted tokens", nbytes(1, N, 1, sizeof(int32_t)));
}

/* Everything the model keeps: weights and their gradients, the tables fixed for the run, the
 * attention layer's buffers, the batch, activations and scratch. Run once to size the plan and,
 * after plan_allocate, once more to carve it (plan.h). */
static void declare_buffers(struct model *m) {
    struct mem_plan *p = &m->plan;
    int64_t n = m->n_params_padded, N = m->N;
    size_t f4 = sizeof(float), i4 = sizeof(int32_t);
    m->param_buf = plan_take(p, PLAN_WEIGHTS, "weights", nbytes(1, n, 1, m->be->act_size));
    m->grad_buf = plan_take(p, PLAN_GRADS, "gradients (fp32)", nbytes(1, n, 1, f4));
    size_t rope = nbytes(m->T, m->D / 2, 1, f4);
    m->s.rope_cos = plan_take(p, PLAN_WEIGHTS, "rope cos table (fp32)", rope);
    m->s.rope_sin = plan_take(p, PLAN_WEIGHTS, "rope sin table (fp32)", rope);
    m->s.pos = plan_take(p, PLAN_WEIGHTS, "positions (int32)", nbytes(1, N, 1, i4));
    attention_layer_declare(&m->attn, p);
    m->s.tokens = plan_take(p, PLAN_ACTS, "batch tokens", nbytes(1, N, 1, i4));
    m->s.targets = plan_take(p, PLAN_ACTS, "batch targets", nbytes(1, N, 1, i4));
    declare_acts(m, p);
    declare_scratch(m, p);
    m->loss_host = plan_take(p, PLAN_HOST, "per-token loss (fp32)", nbytes(1, N, 1, f4));
    if (m->attn.documents)
        m->pos_host = plan_take(p, PLAN_HOST, "positions in their documents (int32)",
                                nbytes(1, N, 1, sizeof(int32_t)));
}

/* RoPE tables (host-computed, uploaded): the frequencies of the config's rope type for
 * sequences of T tokens, with its attention scaling folded into cos and sin. */
static void init_rope(struct model *m) {
    const struct model_config *mc = &m->cfg->model;
    int64_t half = m->D / 2;
    struct rope_params rp = {
        .type = mc->rope_scaling_type, .D = m->D, .T = m->T, .theta = mc->rope_theta,
        .max_position_embeddings = mc->max_position_embeddings,
        .original_max_position_embeddings = mc->rope_original_max_position_embeddings,
        .factor = mc->rope_factor, .attention_factor = mc->rope_attention_factor,
        .beta_fast = mc->rope_beta_fast, .beta_slow = mc->rope_beta_slow,
        .mscale = mc->rope_mscale, .mscale_all_dim = mc->rope_mscale_all_dim,
        .truncate = mc->rope_truncate, .low_freq_factor = mc->rope_low_freq_factor,
        .high_freq_factor = mc->rope_high_freq_factor, .long_factor = mc->rope_long_factor.items,
        .short_factor = mc->rope_short_factor.items};
    double *inv_freq = xmalloc((size_t)half * sizeof(double));
    double mscale = rope_frequencies(inv_freq, &rp);
    size_t bytes = nbytes(m->T, half, 1, sizeof(float));
    float *cos = xmalloc(bytes);
    float *sin = xmalloc(bytes);
    rope_table_fill(cos, sin, m->T, m->D, inv_freq, mscale);
    backend_upload(m->be, m->s.rope_cos, cos, bytes);
    backend_upload(m->be, m->s.rope_sin, sin, bytes);
    free(cos);
    free(sin);
    free(inv_freq);

    int32_t *pos = xmalloc((size_t)m->N * sizeof(int32_t));
    int64_t n = m->shard.n_local;
    for (int64_t i = 0; i < m->N; i++) pos[i] = (int32_t)seq_shard_pos(&m->shard, i % n);
    backend_upload(m->be, m->s.pos, pos, (size_t)m->N * sizeof(int32_t));
    free(pos);
}

/* Shapes and scales of the config on this rank's grid position. */
static void set_shape(struct model *m, const struct config *c, const struct grid *g) {
    const struct model_config *mc = &c->model;
    m->V = mc->vocab_size;
    m->C = mc->hidden_size;
    m->I = mc->intermediate_size;
    m->L = mc->num_hidden_layers;
    m->Hq = mc->num_attention_heads;
    m->Hkv = mc->num_key_value_heads;
    m->D = mc->head_dim;
    m->B = c->train.micro_batch_size;
    m->T = c->data.seq_len;
    m->shard = seq_shard_of(m->T, g->cp, g->cp_rank);
    m->N = (int64_t)m->B * m->shard.n_local;
    bool minicpm = mc->model_type == MODEL_TYPE_MINICPM;
    m->emb_scale = minicpm ? (float)mc->scale_emb : 1.0f;
    m->res_scale = minicpm ? (float)(mc->scale_depth / sqrt((double)m->L)) : 1.0f;
    m->logit_scale = minicpm ? (float)(mc->dim_model_base / (double)m->C) : 1.0f;
    m->qkv_bias = mc->model_type == MODEL_TYPE_QWEN2 || mc->attention_bias;
    m->o_bias = mc->attention_bias;
    m->qk_norm = mc->model_type == MODEL_TYPE_QWEN3;
    m->sparse = config_sparse(c, m->T);
    m->keep_attn = c->train.recompute == RECOMPUTE_NONE;
    m->keep_mlp = c->train.recompute != RECOMPUTE_FULL;
    int64_t rows = HEAD_CHUNK_BYTES / (m->V * (int64_t)sizeof(float));
    m->head_rows = rows < 1 ? 1 : rows > m->N ? m->N : rows;
}

void model_init(struct model *m, const struct config *c, const struct backend *be,
                const struct grid *g, int64_t pad_multiple, bool allocate) {
    memset(m, 0, sizeof *m);
    m->cfg = c;
    m->be = be;
    set_shape(m, c, g);
    int64_t off[TENSOR_COUNT];
    m->n_params = layout_params(m, off);
    CHECK(pad_multiple >= 1);
    m->n_params_padded = size_mul((m->n_params + pad_multiple - 1) / pad_multiple, pad_multiple);
    attention_layer_init(&m->attn, c, be, g, m->B);
    plan_init(&m->plan, be);
    declare_buffers(m); /* sizing */
    if (!allocate) return;
    plan_allocate(&m->plan);
    declare_buffers(m); /* carving */
    plan_carved(&m->plan);
    bind_views(m, off);
    m->attn.workspace = m->s.workspace;
    init_rope(m);
    if (m->attn.documents) model_set_documents(m, NULL);
}

void model_free(struct model *m) {
    plan_free(&m->plan);
    free(m->params);
    memset(m, 0, sizeof *m);
}

void model_print_plan(const struct model *m, const struct mem_plan *const *more, int n_more,
                      FILE *f) {
    fprintf(f, "memory plan (per rank, %s): %lld parameters (%lld padded), %lld rows per "
               "micro-batch, %s attention, recompute %s\n",
            m->be->device == DEVICE_CPU ? "host" : "device", (long long)m->n_params,
            (long long)m->n_params_padded, (long long)m->N, m->sparse ? "sparse" : "dense",
            config_recompute_name(m->cfg->train.recompute));
    const struct mem_plan *plans[4] = {&m->plan};
    CHECK(n_more >= 0 && n_more < 4);
    for (int i = 0; i < n_more; i++) plans[1 + i] = more[i];
    plan_print(plans, 1 + n_more, f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Initialisation                                                                                  */

/* N(0, 1) from the counter (seed, i): Box-Muller on two hashed uniforms. */
static double normal_at(uint64_t seed, uint64_t i) {
    uint64_t a = mix64(seed * 0x9E3779B97F4A7C15ull + 2 * i + 1);
    uint64_t b = mix64(a ^ (2 * i + 2) * 0xD1B54A32D192ED03ull);
    double u1 = ((double)(a >> 11) + 0.5) * 0x1.0p-53, u2 = (double)(b >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void model_init_weights(struct model *m, uint64_t seed) {
    float *host = xmalloc((size_t)m->n_params_padded * sizeof(float));
    double std = m->cfg->model.initializer_range;
    memset(host, 0, (size_t)m->n_params_padded * sizeof(float));
    for (int e = 0; e < m->n_params_entries; e++) {
        const struct param_entry *p = &m->params[e];
        float *dst = host + p->offset;
        if (p->is_norm) {
            for (int64_t i = 0; i < p->numel; i++) dst[i] = 1.0f;
            continue;
        }
        if (p->ndim == 1) continue; /* a bias: zeros */
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < p->numel; i++)
            dst[i] = (float)(std * normal_at(seed, (uint64_t)(p->offset + i)));
    }
    backend_upload_act(m->be, m->param_buf, host, m->n_params_padded);
    free(host);
}

void model_zero_grad(struct model *m) {
    backend_zero(m->be, m->grad_buf, (size_t)m->n_params_padded * sizeof(float));
}

struct param_space model_param_space(const struct model *m) {
    return (struct param_space){m->params, m->n_params_entries, m->n_params_padded, m->param_buf,
                                m->grad_buf};
}

/* ---------------------------------------------------------------------------------------------- */
/* Forward                                                                                         */

/* Layer l's slice of a (L, ...) buffer with `per_layer` elements per layer (NULL for NULL). */
static void *layer_at(const struct model *m, void *p, int l, int64_t per_layer) {
    return p ? act_at(m->be, p, (int64_t)l * per_layer) : NULL;
}

/* The same for fp32 buffers (rstd, gradients). */
static float *layer_at_f32(float *p, int l, int64_t per_layer) {
    return p ? p + (int64_t)l * per_layer : NULL;
}

/* Everything layer l reads and writes: its saved activations (in slot 0 of the buffers that hold
 * one layer under recomputation), weights and weight gradients. */
struct layer_views {
    void *x, *xnext, *ln1, *q, *k, *v, *att, *xmid, *ln2, *gate, *up;
    float *rstd1, *rstd2, *lse;
    int32_t *sel;                                                    /* NULL in dense mode */
    void *w_ln1, *wq, *wk, *wv, *wo, *w_ln2, *wgate, *wup, *wdown;
    float *g_ln1, *gq, *gk, *gv, *go, *g_ln2, *ggate, *gup, *gdown;
    /* the families' extras (NULL when the model has none): biases, Qwen3's head norms */
    void *qpre, *kpre, *bq, *bk, *bv, *bo, *wqn, *wkn;
    float *rstdq, *rstdk, *gbq, *gbk, *gbv, *gbo, *gqn, *gkn;
};

/* The extras of layer l's views (the attention branch's slot, like q and k). */
static void extra_views(const struct model *m, int l, struct layer_views *y) {
    int64_t N = m->N, C = m->C, D = m->D, QD = (int64_t)m->Hq * D, KD = (int64_t)m->Hkv * D;
    int la = m->keep_attn ? l : 0;
    y->qpre = layer_at(m, m->a.qpre, la, N * QD);
    y->kpre = layer_at(m, m->a.kpre, la, N * KD);
    y->rstdq = layer_at_f32(m->a.rstdq, la, N * m->Hq);
    y->rstdk = layer_at_f32(m->a.rstdk, la, N * m->Hkv);
    y->bq = layer_at(m, m->w.bq, l, QD);
    y->bk = layer_at(m, m->w.bk, l, KD);
    y->bv = layer_at(m, m->w.bv, l, KD);
    y->bo = layer_at(m, m->w.bo, l, C);
    y->wqn = layer_at(m, m->w.q_norm, l, D);
    y->wkn = layer_at(m, m->w.k_norm, l, D);
    y->gbq = layer_at_f32(m->g.bq, l, QD);
    y->gbk = layer_at_f32(m->g.bk, l, KD);
    y->gbv = layer_at_f32(m->g.bv, l, KD);
    y->gbo = layer_at_f32(m->g.bo, l, C);
    y->gqn = layer_at_f32(m->g.q_norm, l, D);
    y->gkn = layer_at_f32(m->g.k_norm, l, D);
}

static struct layer_views layer_views_of(const struct model *m, int l) {
    const struct model_acts *a = &m->a;
    int64_t N = m->N, C = m->C, I = m->I, QD = (int64_t)m->Hq * m->D, KD = (int64_t)m->Hkv * m->D;
    int la = m->keep_attn ? l : 0, lm = m->keep_mlp ? l : 0;
    struct layer_views y = {
        .x = layer_at(m, a->x, l, N * C),
        .xnext = layer_at(m, a->x, l + 1, N * C),
        .ln1 = layer_at(m, a->ln1, la, N * C),
        .q = layer_at(m, a->q, la, N * QD),
        .k = layer_at(m, a->k, la, N * KD),
        .v = layer_at(m, a->v, la, N * KD),
        .att = layer_at(m, a->att, la, N * QD),
        .xmid = layer_at(m, a->xmid, lm, N * C),
        .ln2 = layer_at(m, a->ln2, lm, N * C),
        .gate = layer_at(m, a->gate, lm, N * I),
        .up = layer_at(m, a->up, lm, N * I),
        .rstd1 = a->rstd1 + la * N,
        .rstd2 = a->rstd2 + lm * N,
        .lse = a->lse + la * N * m->Hq,
        .sel = m->sparse ? a->sel + l * N * m->Hkv * m->attn.nsel : NULL,
        .w_ln1 = layer_at(m, m->w.ln1, l, C),
        .wq = layer_at(m, m->w.wq, l, QD * C),
        .wk = layer_at(m, m->w.wk, l, KD * C),
        .wv = layer_at(m, m->w.wv, l, KD * C),
        .wo = layer_at(m, m->w.wo, l, C * QD),
        .w_ln2 = layer_at(m, m->w.ln2, l, C),
        .wgate = layer_at(m, m->w.wgate, l, I * C),
        .wup = layer_at(m, m->w.wup, l, I * C),
        .wdown = layer_at(m, m->w.wdown, l, C * I),
        .g_ln1 = m->g.ln1 + l * C,
        .gq = m->g.wq + l * QD * C,
        .gk = m->g.wk + l * KD * C,
        .gv = m->g.wv + l * KD * C,
        .go = m->g.wo + l * C * QD,
        .g_ln2 = m->g.ln2 + l * C,
        .ggate = m->g.wgate + l * I * C,
        .gup = m->g.wup + l * I * C,
        .gdown = m->g.wdown + l * C * I,
    };
    extra_views(m, l, &y);
    return y;
}

/* q, k, v of layer y from ln1: the projections, their biases (qwen2, attention_bias) and Qwen3's
 * RMSNorm of each head of q and k (rows N x H of D), which reads the projections kept in qpre and
 * kpre. Leaves pre-RoPE q, k in y->q, y->k. */
static void qkv_forward(struct model *m, const struct layer_views *y) {
    const struct backend *be = m->be;
    int64_t N = m->N;
    int C = m->C, QD = m->Hq * m->D, KD = m->Hkv * m->D;
    void *q = m->qk_norm ? y->qpre : y->q, *k = m->qk_norm ? y->kpre : y->k;
    op_matmul_forward(be, q, y->ln1, y->wq, N, C, QD, 1.0f, false);
    op_matmul_forward(be, k, y->ln1, y->wk, N, C, KD, 1.0f, false);
    op_matmul_forward(be, y->v, y->ln1, y->wv, N, C, KD, 1.0f, false);
    if (m->qkv_bias) {
        op_bias_forward(be, q, y->bq, N, QD, 1.0f);
        op_bias_forward(be, k, y->bk, N, KD, 1.0f);
        op_bias_forward(be, y->v, y->bv, N, KD, 1.0f);
    }
    if (m->qk_norm) {
        float eps = (float)m->cfg->model.rms_norm_eps;
        op_rmsnorm_forward(be, y->q, y->rstdq, q, y->wqn, N * m->Hq, m->D, eps);
        op_rmsnorm_forward(be, y->k, y->rstdk, k, y->wkn, N * m->Hkv, m->D, eps);
    }
}

/* The backward of qkv_forward's biases and head norms: from the gradients of pre-RoPE q, k (s.dq,
 * s.dk) and of v (s.dv) to those of the projections' outputs, returned in *dq, *dk (Qwen3: s.datt,
 * free once the attention's backward has run, and s.dkpre; else s.dq, s.dk themselves). */
static void qkv_extras_backward(struct model *m, const struct layer_views *y, void **dq,
                                void **dk) {
    const struct backend *be = m->be;
    struct model_scratch *s = &m->s;
    int64_t N = m->N;
    int QD = m->Hq * m->D, KD = m->Hkv * m->D;
    *dq = s->dq;
    *dk = s->dk;
    if (m->qk_norm) {
        *dq = s->datt;
        *dk = s->dkpre;
        backend_zero(be, *dq, (size_t)(N * QD) * be->act_size);
        backend_zero(be, *dk, (size_t)(N * KD) * be->act_size);
        op_rmsnorm_backward(be, *dq, y->gqn, s->dq, y->qpre, y->wqn, y->rstdq, N * m->Hq, m->D,
                            s->workspace);
        op_rmsnorm_backward(be, *dk, y->gkn, s->dk, y->kpre, y->wkn, y->rstdk, N * m->Hkv, m->D,
                            s->workspace);
    }
    if (m->qkv_bias) {
        op_bias_backward(be, y->gbq, *dq, N, QD, 1.0f, s->workspace);
        op_bias_backward(be, y->gbk, *dk, N, KD, 1.0f, s->workspace);
        op_bias_backward(be, y->gbv, s->dv, N, KD, 1.0f, s->workspace);
    }
}

/* ln1, q, k, v, the selection (when select), RoPE and the attention output of layer y. */
static void attention_branch_forward(struct model *m, const struct layer_views *y, bool select) {
    const struct backend *be = m->be;
    int64_t N = m->N;
    int C = m->C, QD = m->Hq * m->D, KD = m->Hkv * m->D;
    bool nope = m->cfg->attention.use_nope;
    op_rmsnorm_forward(be, y->ln1, y->rstd1, y->x, y->w_ln1, N, C,
                       (float)m->cfg->model.rms_norm_eps);
    qkv_forward(m, y);
    if (select && nope) attention_layer_select(&m->attn, y->sel, y->q, y->k);
    op_rope_forward(be, y->q, m->s.rope_cos, m->s.rope_sin, m->s.pos, N, m->Hq, m->D, QD);
    op_rope_forward(be, y->k, m->s.rope_cos, m->s.rope_sin, m->s.pos, N, m->Hkv, m->D, KD);
    if (select && !nope) attention_layer_select(&m->attn, y->sel, y->q, y->k);
    attention_layer_forward(&m->attn, y->att, y->lse, y->sel, y->q, y->k, y->v);
}

/* xmid = x + rs * att @ Wo^T, ln2, gate and up of layer y: what the MLP's backward reads. */
static void mlp_inputs_forward(struct model *m, const struct layer_views *y) {
    const struct backend *be = m->be;
    int64_t N = m->N;
    int C = m->C, I = m->I, QD = m->Hq * m->D;
    backend_copy(be, y->xmid, y->x, (size_t)(N * C) * be->act_size);
    op_matmul_forward(be, y->xmid, y->att, y->wo, N, QD, C, m->res_scale, true);
    if (m->o_bias) op_bias_forward(be, y->xmid, y->bo, N, C, m->res_scale);
    op_rmsnorm_forward(be, y->ln2, y->rstd2, y->xmid, y->w_ln2, N, C,
                       (float)m->cfg->model.rms_norm_eps);
    op_matmul_forward(be, y->gate, y->ln2, y->wgate, N, C, I, 1.0f, false);
    op_matmul_forward(be, y->up, y->ln2, y->wup, N, C, I, 1.0f, false);
}

static void layer_forward(struct model *m, int l) {
    const struct backend *be = m->be;
    struct layer_views y = layer_views_of(m, l);
    int64_t N = m->N;
    int C = m->C, I = m->I;
    attention_branch_forward(m, &y, m->sparse && !m->reuse_selection);
    mlp_inputs_forward(m, &y);
    op_swiglu_forward(be, m->s.act, y.gate, y.up, N * I);
    backend_copy(be, y.xnext, y.xmid, (size_t)(N * C) * be->act_size);
    op_matmul_forward(be, y.xnext, m->s.act, y.wdown, N, I, C, m->res_scale, true);
}

/* The fused head over rows [0, N): loss per row into s.loss; with want_grad, d lnf into s.dlnf and
 * the head's weight gradient accumulated. Returns the summed loss (host double). */
static double head_forward(struct model *m, bool want_grad, float grad_scale) {
    const struct backend *be = m->be;
    int64_t N = m->N, C = m->C, V = m->V;
    float *lm_grad = m->g.lm_head; /* equals g.wte when tied */
    for (int64_t r0 = 0; r0 < N; r0 += m->head_rows) {
        int64_t rows = N - r0 < m->head_rows ? N - r0 : m->head_rows;
        const void *h = act_at(be, m->a.lnf, r0 * C);
        op_matmul_forward_f32(be, m->s.logits, h, m->w.lm_head, rows, C, (int)V, m->logit_scale);
        if (m->keep_argmax) op_argmax_rows(be, m->s.argmax + r0, m->s.logits, rows, V);
        op_crossentropy(be, m->s.loss + r0, want_grad ? m->s.dlogits : NULL, m->s.logits,
                        m->s.targets + r0, rows, V, grad_scale);
        if (want_grad)
            op_matmul_backward(be, act_at(be, m->s.dlnf, r0 * C), lm_grad, m->s.dlogits, h,
                               m->w.lm_head, rows, C, (int)V, m->logit_scale);
    }
    backend_download(be, m->loss_host, m->s.loss, (size_t)N * sizeof(float));
    double sum = 0;
    for (int64_t i = 0; i < N; i++) sum += m->loss_host[i];
    return sum;
}

double model_forward(struct model *m, const int32_t *tokens, const int32_t *targets,
                     bool want_grad, float grad_scale) {
    const struct backend *be = m->be;
    int64_t N = m->N, C = m->C;
    backend_upload(be, m->s.tokens, tokens, (size_t)N * sizeof(int32_t));
    backend_upload(be, m->s.targets, targets, (size_t)N * sizeof(int32_t));
    op_embedding_forward(be, m->a.x, m->s.tokens, m->w.wte, N, C, m->emb_scale);
    for (int l = 0; l < m->L; l++) layer_forward(m, l);
    op_rmsnorm_forward(be, m->a.lnf, m->a.rstdf, layer_at(m, m->a.x, m->L, N * C), m->w.lnf, N, C,
                       (float)m->cfg->model.rms_norm_eps);
    if (want_grad) backend_zero(be, m->s.dlnf, (size_t)(N * C) * be->act_size);
    prof_begin(PROF_HEAD);
    double loss = head_forward(m, want_grad, grad_scale);
    prof_end();
    return loss;
}

void model_download_argmax(const struct model *m, int32_t *host) {
    CHECK(m->keep_argmax);
    backend_download(m->be, host, m->s.argmax, (size_t)m->N * sizeof(int32_t));
}

void model_set_documents(struct model *m, const uint8_t *doc_first) {
    CHECKF(m->attn.documents || !doc_first, "model_set_documents: the config packs no documents");
    if (!m->attn.documents) return;
    attention_layer_set_documents(&m->attn, doc_first);
    int64_t n = m->shard.n_local;
    for (int64_t i = 0; i < m->N; i++)
        m->pos_host[i] = (int32_t)(seq_shard_pos(&m->shard, i % n) - m->attn.rows_doc_host[i]);
    backend_upload(m->be, m->s.pos, m->pos_host, (size_t)m->N * sizeof(int32_t));
}

/* ---------------------------------------------------------------------------------------------- */
/* Backward                                                                                        */

static void zero_act(const struct model *m, void *p, int64_t n) {
    backend_zero(m->be, p, (size_t)n * m->be->act_size);
}

/* On entry s.dres holds d x[l+1]; on exit d x[l]. Under recomputation the activations the forward
 * did not keep are rebuilt first from x[l], with the saved selection: the same ops on the same
 * inputs, so the same values bit for bit. */
static void layer_backward(struct model *m, int l) {
    const struct backend *be = m->be;
    struct model_scratch *s = &m->s;
    struct layer_views y = layer_views_of(m, l);
    if (!m->keep_attn) attention_branch_forward(m, &y, false);
    if (!m->keep_mlp) mlp_inputs_forward(m, &y);
    int64_t N = m->N;
    int C = m->C, I = m->I, QD = m->Hq * m->D, KD = m->Hkv * m->D;

    /* MLP branch: x[l+1] = xmid + rs * swiglu(gate, up) @ Wdown^T */
    op_swiglu_forward(be, s->act, y.gate, y.up, N * I);
    zero_act(m, s->dact, N * I);
    op_matmul_backward(be, s->dact, y.gdown, s->dres, s->act, y.wdown, N, I, C, m->res_scale);
    zero_act(m, s->dgate, N * I);
    zero_act(m, s->dup, N * I);
    op_swiglu_backward(be, s->dgate, s->dup, s->dact, y.gate, y.up, N * I);
    zero_act(m, s->dln, N * C);
    op_matmul_backward(be, s->dln, y.ggate, s->dgate, y.ln2, y.wgate, N, C, I, 1.0f);
    op_matmul_backward(be, s->dln, y.gup, s->dup, y.ln2, y.wup, N, C, I, 1.0f);
    op_rmsnorm_backward(be, s->dres, y.g_ln2, s->dln, y.xmid, y.w_ln2, y.rstd2, N, C,
                        s->workspace);
    if (m->o_bias) op_bias_backward(be, y.gbo, s->dres, N, C, m->res_scale, s->workspace);

    /* Attention branch: xmid = x + rs * att @ Wo^T */
    zero_act(m, s->datt, N * QD);
    op_matmul_backward(be, s->datt, y.go, s->dres, y.att, y.wo, N, QD, C, m->res_scale);
    zero_act(m, s->dq, N * QD);
    zero_act(m, s->dk, N * KD);
    zero_act(m, s->dv, N * KD);
    attention_layer_backward(&m->attn, s->dq, s->dk, s->dv, s->datt, y.q, y.k, y.v, y.att, y.lse,
                             y.sel);
    op_rope_backward(be, s->dq, s->rope_cos, s->rope_sin, s->pos, N, m->Hq, m->D, QD);
    op_rope_backward(be, s->dk, s->rope_cos, s->rope_sin, s->pos, N, m->Hkv, m->D, KD);
    void *dq, *dk; /* of the q and k projections' outputs */
    qkv_extras_backward(m, &y, &dq, &dk);
    zero_act(m, s->dln, N * C);
    op_matmul_backward(be, s->dln, y.gq, dq, y.ln1, y.wq, N, C, QD, 1.0f);
    op_matmul_backward(be, s->dln, y.gk, dk, y.ln1, y.wk, N, C, KD, 1.0f);
    op_matmul_backward(be, s->dln, y.gv, s->dv, y.ln1, y.wv, N, C, KD, 1.0f);
    op_rmsnorm_backward(be, s->dres, y.g_ln1, s->dln, y.x, y.w_ln1, y.rstd1, N, C, s->workspace);
}

void model_backward(struct model *m) {
    const struct backend *be = m->be;
    int64_t N = m->N, C = m->C;
    zero_act(m, m->s.dres, N * C);
    op_rmsnorm_backward(be, m->s.dres, m->g.lnf, m->s.dlnf, layer_at(m, m->a.x, m->L, N * C),
                        m->w.lnf, m->a.rstdf, N, C, m->s.workspace);
    for (int l = m->L - 1; l >= 0; l--) layer_backward(m, l);
    op_embedding_backward(be, m->g.wte, m->s.dres, m->s.tokens, N, C, m->emb_scale,
                          m->s.workspace);
}
