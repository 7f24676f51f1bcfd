/*
 * config_validate.c: the rules across keys (config_rules, listed in docs/CONFIG.md) that
 * config_validate enforces after loading, with the values it derives (head_dim, the RoPE defaults),
 * and the queries of a validated config (sparse, documents, the loader's source). The size rules
 * are config_sizes.c's; the key table is config_table.c's, loading config.c's.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "config_keys.h"
#include "synthetic.h"

/* ---------------------------------------------------------------------------------------------- */
/* Validation: derived defaults and checks across keys (each listed in `rules` for the docs)   */

const char *const config_rules[] = {
    "`model.head_dim` 0 becomes hidden_size / num_attention_heads (which must divide); the head "
    "dim must be even (RoPE pairs).",
    "`model.max_position_embeddings` 0 becomes data.seq_len.",
    "`model.num_attention_heads` is a multiple of `model.num_key_value_heads`.",
    "`model.attention_bias` is false with `model.model_type` `qwen2`; "
    "`model.use_sliding_window` is false.",
    "`model.rope_scaling`: a member the rope_type does not read stays 0 (`truncate` true, the "
    "lists empty); `factor` is positive with linear, dynamic, yarn and llama3; llama3 needs "
    "0 < low_freq_factor < high_freq_factor; longrope's long_factor and short_factor hold exactly "
    "head_dim / 2 positive numbers; dynamic needs head_dim > 2; "
    "original_max_position_embeddings 0 becomes max_position_embeddings with yarn, longrope and "
    "llama3.",
    "`attention.block_size` and `attention.kernel_size` are multiples of "
    "`attention.kernel_stride`; `attention.window_size` is a multiple of `attention.block_size`; "
    "topk + window_size / block_size >= 1; topk >= init_blocks + 1 (the forced blocks, init and "
    "the local window with the query's own block, must fit in the topk + local_blocks budget).",
    "`data.seq_len` is a multiple of `attention.block_size`, and of 2 x parallel.cp x block_size "
    "when parallel.cp > 1 (each rank holds two equal chunks of whole blocks).",
    "With sparse attention and parallel.cp > 1, a chunk (data.seq_len / (2 x cp) tokens) is a "
    "multiple of the compression stride (4 x kernel_stride with lse_approx, else kernel_stride) "
    "and at least one window's reach (kernel_size - kernel_stride, 4x with lse_approx).",
    "The rank count is a multiple of `parallel.cp`; `train.global_batch_size` is a multiple of "
    "micro_batch_size x dp, dp = ranks / cp (checked again by the trainer with the real rank "
    "count).",
    "`train.warmup_steps` <= max_steps; `train.min_lr` <= lr; `train.eval_batches` >= 1 when "
    "eval_every > 0.",
    "`data.source` `synthetic`: the task fits the vocabulary and data.seq_len + 1 tokens (BOS, "
    "4 tokens per record; data.synthetic.documents times that with several documents); "
    "`shards`: at least one `data.train_files` entry, and the task fits as well when "
    "`data.synthetic.fraction` > 0 (which only `shards` takes, in [5e-7, 0.9999995)).",
    "`data.eod_token` is -1 or below model.vocab_size, and only with `data.source` `shards`.",
    "`data.val_answer_files` is empty or has one entry per `data.val_files` entry; "
    "`train.eval_buckets` holds ascending integers >= 1.",
    "`device` `cuda` needs a binary built with the CUDA backend.",
    "`run_dir` and `resume` are not empty.",
    "Sizes (computed in 64 bits, saturating): num_attention_heads x head_dim, 4 x "
    "`attention.kernel_size` (with lse_approx) and micro_batch_size x seq_len (the tokens of a "
    "micro-batch) are at most 2^31 - 1; max_steps x global_batch_size x seq_len (the tokens of "
    "the run) at most 2^62; the parameters' memory (24 bytes each: weights, gradients, optimizer "
    "state), an upper bound of a micro-batch's activations and the two together at most 2^62 "
    "bytes. A selection keeps min(topk + local_blocks, seq_len / block_size) blocks, so a topk "
    "past the sequence's blocks is dense attention at the memory of dense.",
    NULL,
};

/* The numeric model.rope_scaling members, the rope types that read each (bits 1 << type) and
 * those that need it positive; every other type needs it 0 (unset). */
#define RT(t) (1u << ROPE_TYPE_##t)
static const struct rope_member {
    const char *key;
    size_t offset; /* of a double in struct config */
    unsigned used, required;
} rope_members[] = {
    {"model.rope_scaling.factor", KEY_FIELD(model.rope_factor),
     RT(LINEAR) | RT(DYNAMIC) | RT(YARN) | RT(LONGROPE) | RT(LLAMA3),
     RT(LINEAR) | RT(DYNAMIC) | RT(YARN) | RT(LLAMA3)},
    {"model.rope_scaling.attention_factor", KEY_FIELD(model.rope_attention_factor),
     RT(YARN) | RT(LONGROPE), 0},
    {"model.rope_scaling.beta_fast", KEY_FIELD(model.rope_beta_fast), RT(YARN), 0},
    {"model.rope_scaling.beta_slow", KEY_FIELD(model.rope_beta_slow), RT(YARN), 0},
    {"model.rope_scaling.mscale", KEY_FIELD(model.rope_mscale), RT(YARN), 0},
    {"model.rope_scaling.mscale_all_dim", KEY_FIELD(model.rope_mscale_all_dim), RT(YARN), 0},
    {"model.rope_scaling.low_freq_factor", KEY_FIELD(model.rope_low_freq_factor), RT(LLAMA3),
     RT(LLAMA3)},
    {"model.rope_scaling.high_freq_factor", KEY_FIELD(model.rope_high_freq_factor), RT(LLAMA3),
     RT(LLAMA3)},
};

static void validate_longrope(const struct config *c) {
    const struct model_config *m = &c->model;
    const struct float_list *lists[2] = {&m->rope_long_factor, &m->rope_short_factor};
    const char *names[2] = {"model.rope_scaling.long_factor", "model.rope_scaling.short_factor"};
    for (int i = 0; i < 2; i++) {
        if (lists[i]->n != m->head_dim / 2)
            config_bad(c, names[i], "expected head_dim / 2 = %d numbers with longrope, got %d",
                       m->head_dim / 2, lists[i]->n);
        for (int j = 0; j < lists[i]->n; j++)
            if (!(lists[i]->items[j] > 0))
                config_bad(c, names[i], "entry %d is %g, expected a positive number", j,
                           lists[i]->items[j]);
    }
}

/* What a model family allows beyond the common shape keys. */
static void validate_family(const struct config *c) {
    const struct model_config *m = &c->model;
    if (m->model_type == MODEL_TYPE_QWEN2 && m->attention_bias)
        config_bad(c, "model.attention_bias",
                   "true with model_type qwen2, expected false (qwen2 has "
                   "biases on q, k and v and none on o, whatever this key says)");
    if (m->use_sliding_window)
        config_bad(c, "model.use_sliding_window",
                   "true: sliding-window attention is not implemented; "
                   "expected false");
}

/* Each member against the type; original_max_position_embeddings 0 becomes
 * max_position_embeddings for the types that read it (transformers' default). */
static void validate_rope_scaling(struct config *c) {
    struct model_config *m = &c->model;
    enum rope_type t = m->rope_scaling_type;
    const char *name = t == ROPE_TYPE_DEFAULT ? "\"\" (plain)" : config_rope_type_name(t);
    for (size_t i = 0; i < sizeof rope_members / sizeof rope_members[0]; i++) {
        const struct rope_member *r = &rope_members[i];
        double v = *(const double *)((const char *)c + r->offset);
        if (v != 0.0 && !(r->used & (1u << t)))
            config_bad(c, r->key, "%g is not read by rope_type %s; expected 0 (unset)", v, name);
        if (v == 0.0 && (r->required & (1u << t)))
            config_bad(c, r->key, "expected a positive number with rope_type %s, got 0", name);
    }
    if (!m->rope_truncate && t != ROPE_TYPE_YARN)
        config_bad(c, "model.rope_scaling.truncate",
                   "false is read by yarn only, rope_type is %s", name);
    if (t == ROPE_TYPE_LONGROPE)
        validate_longrope(c);
    else if (m->rope_long_factor.n || m->rope_short_factor.n)
        config_bad(c, m->rope_long_factor.n ? "model.rope_scaling.long_factor"
                                     : "model.rope_scaling.short_factor",
                   "read by longrope only, rope_type is %s; expected []", name);
    if (t == ROPE_TYPE_LLAMA3 && !(m->rope_high_freq_factor > m->rope_low_freq_factor))
        config_bad(c, "model.rope_scaling.high_freq_factor", "%g is not above low_freq_factor = %g",
                   m->rope_high_freq_factor, m->rope_low_freq_factor);
    if (t == ROPE_TYPE_DYNAMIC && m->head_dim <= 2)
        config_bad(c, "model.rope_scaling.rope_type",
                   "dynamic needs head_dim > 2, got %d", m->head_dim);
    bool reads_orig = t == ROPE_TYPE_YARN || t == ROPE_TYPE_LONGROPE || t == ROPE_TYPE_LLAMA3;
    if (reads_orig && m->rope_original_max_position_embeddings == 0)
        m->rope_original_max_position_embeddings = m->max_position_embeddings;
}
#undef RT

static void validate_model(struct config *c) {
    struct model_config *m = &c->model;
    if (m->num_attention_heads % m->num_key_value_heads != 0)
        config_bad(c, "model.num_key_value_heads", "%d does not divide num_attention_heads = %d",
                   m->num_key_value_heads, m->num_attention_heads);
    if (m->head_dim == 0) {
        if (m->hidden_size % m->num_attention_heads != 0)
            config_bad(c, "model.head_dim", "0 (derived) needs num_attention_heads = %d to divide "
                       "hidden_size = %d; set head_dim", m->num_attention_heads, m->hidden_size);
        m->head_dim = m->hidden_size / m->num_attention_heads;
    }
    if (m->head_dim % 2 != 0)
        config_bad(c, "model.head_dim", "%d is odd, expected an even size (RoPE rotates pairs)",
                   m->head_dim);
    if (m->max_position_embeddings == 0) m->max_position_embeddings = c->data.seq_len;
    validate_rope_scaling(c);
    validate_family(c);
}

static void validate_attention(const struct config *c) {
    const struct attention_config *a = &c->attention;
    if (a->block_size % a->kernel_stride != 0)
        config_bad(c, "attention.block_size", "%d is not a multiple of kernel_stride = %d",
                   a->block_size, a->kernel_stride);
    if (a->kernel_size % a->kernel_stride != 0)
        config_bad(c, "attention.kernel_size", "%d is not a multiple of kernel_stride = %d",
                   a->kernel_size, a->kernel_stride);
    if (a->window_size % a->block_size != 0)
        config_bad(c, "attention.window_size", "%d is not a multiple of block_size = %d",
                   a->window_size, a->block_size);
    if ((int64_t)a->topk + a->window_size / a->block_size < 1)
        config_bad(c, "attention.topk", "0 with window_size 0 selects no block; expected topk + "
                   "window_size / block_size >= 1");
    if (a->topk < (int64_t)a->init_blocks + 1)
        config_bad(c, "attention.topk",
                   "%d cannot hold the %d forced init block(s) and the query's own "
                   "block besides the local window; expected topk >= init_blocks + 1", a->topk,
                   a->init_blocks);
    if (c->data.seq_len % a->block_size != 0)
        config_bad(c, "data.seq_len", "%lld is not a multiple of attention.block_size = %d",
                   (long long)c->data.seq_len, a->block_size);
}

/* Sparse attention under context parallelism: each chunk compresses the windows that start in it
 * and reads one window's reach past its end from the next chunk's owner (attention_layer.c). */
static void validate_cp_windows(const struct config *c, int cp) {
    const struct attention_config *a = &c->attention;
    int64_t cl = c->data.seq_len / (2LL * cp);
    int64_t unit = a->lse_approx ? 4LL * a->kernel_stride : a->kernel_stride;
    int64_t reach = (a->lse_approx ? 4LL : 1LL) * (a->kernel_size - a->kernel_stride);
    if (cl % unit != 0 || reach > cl)
        config_bad(c, "data.seq_len",
                   "%lld over 2 x parallel.cp = %lld chunks gives chunks of %lld tokens; "
            "sparse attention under context parallelism needs chunks that are a multiple of %lld "
                   "and at least %lld tokens (one compression window's reach)",
            (long long)c->data.seq_len, 2LL * cp, (long long)cl, (long long)unit, (long long)reach);
}

static void validate_parallel(const struct config *c, int world_size) {
    const struct train_config *t = &c->train;
    int cp = c->parallel.cp;
    if (world_size <= 0) world_size = cp; /* rank count not known yet: assume dp = 1 */
    if (world_size % cp != 0)
        config_bad(c, "parallel.cp", "%d does not divide the number of ranks %d", cp, world_size);
    int64_t dp = world_size / cp;
    if (cp > 1 && c->data.seq_len % (2LL * cp * c->attention.block_size) != 0)
        config_bad(c, "data.seq_len",
                   "%lld is not a multiple of 2 x parallel.cp x attention.block_size "
                   "= %lld (each rank holds two equal chunks of whole blocks)",
                   (long long)c->data.seq_len, 2LL * cp * c->attention.block_size);
    if (cp > 1 && config_sparse(c, c->data.seq_len)) validate_cp_windows(c, cp);
    if (t->global_batch_size % (t->micro_batch_size * dp) != 0)
        config_bad(c, "train.global_batch_size",
                   "%d is not a multiple of micro_batch_size x dp = %d x "
                   "%lld", t->global_batch_size, t->micro_batch_size, (long long)dp);
}

static void validate_train(const struct config *c) {
    const struct train_config *t = &c->train;
    if (t->warmup_steps > t->max_steps)
        config_bad(c, "train.warmup_steps",
                   "%lld exceeds max_steps = %lld", (long long)t->warmup_steps,
                   (long long)t->max_steps);
    if (t->min_lr > t->lr) config_bad(c, "train.min_lr", "%g exceeds lr = %g", t->min_lr, t->lr);
    if (t->eval_every > 0 && t->eval_batches == 0)
        config_bad(c, "train.eval_batches", "0 with eval_every = %lld; expected at least 1 (or set "
                   "eval_every to 0)", (long long)t->eval_every);
    const struct float_list *e = &t->eval_buckets;
    for (int i = 0; i < e->n; i++) {
        double lo = i > 0 ? e->items[i - 1] : 0;
        if (e->items[i] != floor(e->items[i]) || e->items[i] <= lo || e->items[i] > 2147483647.0)
            config_bad(c, "train.eval_buckets", "entry %d is %g; expected ascending integers in "
                       "[1, 2147483647]", i, e->items[i]);
    }
}

/* data.synthetic.fraction in millionths, as the loader spreads it. */
static int64_t synthetic_ppm(const struct synthetic_config *s) {
    return llround(s->fraction * 1e6);
}

static void validate_data(const struct config *c) {
    const struct synthetic_config *s = &c->data.synthetic;
    if (c->data.source == DATA_SOURCE_SHARDS && c->data.train_files.n == 0)
        config_bad(c, "data.train_files", "empty; expected at least one token shard with "
                   "data.source \"shards\"");
    if (s->fraction > 0 && c->data.source != DATA_SOURCE_SHARDS)
        config_bad(c, "data.synthetic.fraction", "%g with data.source \"synthetic\", whose every "
                   "sequence is the task already; expected 0, or data.source \"shards\" to mix",
                   s->fraction);
    if (s->fraction > 0 && synthetic_ppm(s) < 1)
        config_bad(c, "data.synthetic.fraction", "%g rounds to 0 millionths; expected 0 or at "
                   "least 5e-7", s->fraction);
    if (synthetic_ppm(s) >= 1000000)
        config_bad(c, "data.synthetic.fraction", "%.9g rounds to 1000000 millionths, every "
                   "sequence; expected below 0.9999995 (or data.source \"synthetic\")",
                   s->fraction);
    if (!config_synthetic(c)) return;
    struct synthetic_task task = {c->model.vocab_size, s->n_pairs, s->n_queries, s->n_keys,
                                  s->n_values};
    char err[512];
    if (synthetic_check_packed(&task, c->data.seq_len + 1, s->documents, err, sizeof err) != 0) {
        /* synthetic_check names the keys it blames; add the section when it names none */
        bool named = strncmp(err, "data.", 5) == 0 || strncmp(err, "model.", 6) == 0;
        if (named) die_user("%s: %s", c->path[0] ? c->path : "config", err);
        config_bad(c, "data.synthetic", "%s", err);
    }
}

/* The end-of-document token. */
static void validate_documents(const struct config *c) {
    const struct data_config *d = &c->data;
    if (d->eod_token >= 0 && d->source != DATA_SOURCE_SHARDS)
        config_bad(c, "data.eod_token",
                   "%lld with data.source \"synthetic\": the end-of-document token "
                   "applies to token shards; the synthetic task packs documents with "
                   "data.synthetic.documents", (long long)d->eod_token);
    if (d->val_answer_files.n > 0 && d->val_answer_files.n != d->val_files.n)
        config_bad(c, "data.val_answer_files", "%d files for %d data.val_files; expected one "
                   "answer mask per validation shard", d->val_answer_files.n, d->val_files.n);
    if (d->eod_token >= c->model.vocab_size)
        config_bad(c, "data.eod_token", "%lld is not below model.vocab_size = %lld",
                   (long long)d->eod_token, (long long)c->model.vocab_size);
}

void config_validate(struct config *c, int world_size) {
    if (c->run_dir[0] == '\0') config_bad(c, "run_dir", "expected a folder, got \"\"");
    if (c->resume[0] == '\0')
        config_bad(c, "resume", "expected \"auto\", \"none\" or a checkpoint folder, got \"\"");
#ifndef INFLLM_CUDA
    if (c->device == DEVICE_CUDA)
        config_bad(c, "device",
                   "\"cuda\", but this binary was built without the CUDA backend; expected "
                   "\"cpu\"");
#endif
    validate_model(c);
    validate_attention(c);
    char key[64], msg[600];
    if (config_check_sizes(c, key, sizeof key, msg, sizeof msg) != 0) config_bad(c, key, "%s", msg);
    validate_parallel(c, world_size);
    validate_train(c);
    validate_data(c);
    validate_documents(c);
}

struct loader_source config_loader_source(const struct config *c, bool val) {
    const struct data_config *d = &c->data;
    const struct synthetic_config *s = &d->synthetic;
    const struct string_list *files = val ? &d->val_files : &d->train_files;
    return (struct loader_source){
        .source = d->source,
        .seq_len = d->seq_len,
        .seed = c->seed,
        .val = val,
        .task = {c->model.vocab_size, s->n_pairs, s->n_queries, s->n_keys, s->n_values},
        .n_files = files->n,
        .files = files->items,
        .files_key = val ? "data.val_files" : "data.train_files",
        .vocab_size = c->model.vocab_size,
        .eod = d->source == DATA_SOURCE_SHARDS && d->eod_token >= 0,
        .eod_token = (int32_t)d->eod_token,
        .synthetic_documents = s->documents,
        .synthetic_ppm = d->source == DATA_SOURCE_SHARDS && !val ? synthetic_ppm(s) : 0,
        .answer_files = val && d->val_answer_files.n > 0 ? d->val_answer_files.items : NULL,
        .answer_key = "data.val_answer_files",
    };
}

int config_local_blocks(const struct config *c) {
    return c->attention.window_size / c->attention.block_size;
}

bool config_sparse(const struct config *c, int64_t seq_len) {
    return c->attention.dense_len < 0 || seq_len >= c->attention.dense_len;
}

bool config_synthetic(const struct config *c) {
    return c->data.source == DATA_SOURCE_SYNTHETIC || c->data.synthetic.fraction > 0;
}

bool config_documents(const struct config *c) {
    const struct data_config *d = &c->data;
    bool synthetic_docs = d->synthetic.documents > 1 && config_synthetic(c);
    return synthetic_docs || (d->source == DATA_SOURCE_SHARDS && d->eod_token >= 0);
}
