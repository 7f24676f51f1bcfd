/*
 * config_sizes.c: the size rules of config_validate (see config_keys.h).
 *
 * Every size a run derives from the config is a product of keys: the width of a row, the tokens of
 * a micro-batch, the parameters, the activations, the counters of sequences and tokens. Here each
 * is computed in 64 bits with saturating arithmetic (checked.h) and compared with what the code
 * holds: int for a row's width and a micro-batch's rows (kernel arguments, CUDA grid dimensions),
 * SIZE_LIMIT (2^62) for counts and bytes. A size past its limit is one error naming the key that
 * makes it, the factors and the limit.
 *
 * The memory figures are upper bounds of the memory plans (model.c, attention_layer.c, adamw.c, the
 * CUDA workspaces), not the plans: a config within them makes no plan whose sizes can wrap. The
 * plans themselves compute every size with checked arithmetic too (size_mul), so a bound that fell
 * behind the code would stop a run with an internal error, never wrap a size.
 */
#include <stdarg.h>
#include <stdio.h>

#include "checked.h"
#include "config_keys.h"
#include "infllmv2.h"

#define INT_LIMIT 2147483647                /* 2^31 - 1 */
#define PARAM_BYTES 24                      /* weights, gradients, master weights, moments, slice */
#define LOGITS_BYTES ((int64_t)128 << 20)   /* the head's logit chunks, and their gradient */
#define PART_BYTES_PER_KEY_BLOCK ((int64_t)1 << 17) /* CUDA sparse backward, per (KV head, block) */

/* "over " for a saturated size (printed as 9.22e+18 after it), else "". */
static const char *over(int64_t v) { return v == SIZE_SAT ? "over " : ""; }

/* The error: key and message; returns -1 for config_check_sizes. */
static int fail(char *key, size_t kn, char *msg, size_t mn, const char *k, const char *fmt, ...)
    INFLLM_PRINTF(6, 7);
static int fail(char *key, size_t kn, char *msg, size_t mn, const char *k, const char *fmt, ...) {
    snprintf(key, kn, "%s", k);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, mn, fmt, ap);
    va_end(ap);
    return -1;
}

/* Blocks a query selects at data.seq_len (0 in dense mode): the attention layer's nsel. */
static int64_t selected_blocks(const struct config *c) {
    const struct attention_config *a = &c->attention;
    if (!config_sparse(c, c->data.seq_len)) return 0;
    struct infllm_params p = {.topk = a->topk, .local_blocks = config_local_blocks(c),
                              .seq_blocks = (c->data.seq_len + a->block_size - 1) / a->block_size};
    return infllm_num_selected(&p);
}

/* The shape's sizes, each saturating at SIZE_SAT. */
struct shape_sizes {
    int64_t qd, kd;          /* num_attention_heads / num_key_value_heads x head_dim */
    int64_t tokens;          /* micro_batch_size x seq_len (one rank, cp = 1: the most) */
    int64_t embed, layer;    /* parameters of the embeddings (and untied head), of one layer */
    int64_t params;          /* every parameter */
    int64_t sel_width;       /* num_key_value_heads x selected blocks */
    int64_t width;           /* values a token keeps per layer, at most (activations) */
    int64_t act_bytes;       /* activations, scratch and workspaces of a micro-batch, at most */
};

static struct shape_sizes shape_sizes(const struct config *c) {
    const struct model_config *m = &c->model;
    struct shape_sizes z;
    int64_t C = m->hidden_size, I = m->intermediate_size, L = m->num_hidden_layers;
    z.qd = sat_mul(m->num_attention_heads, m->head_dim);
    z.kd = sat_mul(m->num_key_value_heads, m->head_dim);
    z.tokens = sat_mul(c->train.micro_batch_size, c->data.seq_len);
    z.embed = sat_mul(sat_mul(m->vocab_size, C), m->tie_word_embeddings ? 1 : 2);
    /* two norms, q k v o (with room for their biases), gate up down */
    int64_t attn = sat_add(sat_mul(C, sat_add(sat_mul(2, z.qd), sat_mul(2, z.kd))),
                           sat_add(z.qd, sat_mul(2, z.kd)));
    z.layer = sat_add(sat_add(sat_mul(2, C), attn), sat_mul(3, sat_mul(C, I)));
    z.params = sat_add(sat_add(z.embed, sat_mul(L, z.layer)), C);
    z.sel_width = sat_mul(m->num_key_value_heads, selected_blocks(c));
    z.width = sat_add(sat_add(sat_add(C, z.qd), sat_add(z.kd, I)),
                      sat_add(sat_add(m->num_attention_heads, z.sel_width), (int64_t)m->head_dim + 8));
    int64_t blocks = (c->data.seq_len + c->attention.block_size - 1) / c->attention.block_size;
    int64_t acts = sat_mul(sat_mul(16, L + 4), sat_mul(z.tokens, z.width));
    int64_t parts = sat_mul(sat_mul(m->num_key_value_heads, blocks), PART_BYTES_PER_KEY_BLOCK);
    z.act_bytes = sat_add(sat_add(acts, parts), sat_add(LOGITS_BYTES, sat_mul(8, m->vocab_size)));
    return z;
}

/* Row widths, window products and row counts that kernels take as int. */
static int check_ints(const struct config *c, const struct shape_sizes *z, char *key, size_t kn,
                      char *msg, size_t mn) {
    const struct model_config *m = &c->model;
    const struct attention_config *a = &c->attention;
    if (z->qd > INT_LIMIT)
        return fail(key, kn, msg, mn,
                    m->head_dim > m->num_attention_heads ? "model.head_dim"
                                                         : "model.num_attention_heads",
                    "num_attention_heads %d x head_dim %d = %lld values in a row of q; expected "
                    "at most 2^31 - 1", m->num_attention_heads, m->head_dim, (long long)z->qd);
    if (a->lse_approx && 4LL * a->kernel_size > INT_LIMIT)
        return fail(key, kn, msg, mn, "attention.kernel_size",
                    "%d: with lse_approx the coarse keys K2 use windows of 4 x kernel_size = %lld "
                    "tokens; expected at most 2^31 - 1", a->kernel_size, 4LL * a->kernel_size);
    if (z->tokens > INT_LIMIT)
        return fail(key, kn, msg, mn, "train.micro_batch_size",
                    "%d sequences x data.seq_len %lld = %lld tokens in one micro-batch; expected "
                    "at most 2^31 - 1 (kernels take a micro-batch's rows as int)",
                    c->train.micro_batch_size, (long long)c->data.seq_len, (long long)z->tokens);
    return 0;
}

/* The key that makes the activations large: the widest part of a token's row, or the tokens. */
static const char *activation_key(const struct config *c, const struct shape_sizes *z) {
    const struct model_config *m = &c->model;
    int64_t best = z->tokens;
    const char *key = c->train.micro_batch_size > c->data.seq_len ? "train.micro_batch_size"
                                                                  : "data.seq_len";
    const struct { int64_t v; const char *key; } parts[] = {
        {m->hidden_size, "model.hidden_size"},
        {m->intermediate_size, "model.intermediate_size"},
        {z->qd, m->head_dim > m->num_attention_heads ? "model.head_dim"
                                                     : "model.num_attention_heads"},
        {z->sel_width, "attention.topk"},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (parts[i].v > best) best = parts[i].v, key = parts[i].key;
    return key;
}

/* Parameters and activations within SIZE_LIMIT bytes, alone and together. */
static int check_memory(const struct config *c, const struct shape_sizes *z, char *key, size_t kn,
                        char *msg, size_t mn) {
    const struct model_config *m = &c->model;
    int64_t param_bytes = sat_mul(z->params, PARAM_BYTES);
    if (param_bytes > SIZE_LIMIT)
        return fail(key, kn, msg, mn,
                    z->embed > sat_mul(m->num_hidden_layers, z->layer) ? "model.vocab_size"
                    : m->intermediate_size > m->hidden_size ? "model.intermediate_size"
                                                            : "model.hidden_size",
                    "the model has %s%.3g parameters (%s%.3g in the embeddings of vocab_size "
                    "%lld x hidden_size %d, %d layer(s) of %s%.3g): %s%.3g bytes with their "
                    "gradients and optimizer state, beyond the limit of 2^62 bytes",
                    over(z->params), (double)z->params, over(z->embed), (double)z->embed,
                    (long long)m->vocab_size, m->hidden_size, m->num_hidden_layers,
                    over(z->layer), (double)z->layer, over(param_bytes), (double)param_bytes);
    if (z->act_bytes > SIZE_LIMIT || sat_add(param_bytes, z->act_bytes) > SIZE_LIMIT)
        return fail(key, kn, msg, mn, activation_key(c, z),
                    "the activations of one micro-batch come to about 16 bytes x (%d layer(s) + 4) "
                    "x %lld tokens x %s%.3g values a token (hidden, q, k, v, intermediate, heads, "
                    "%s%.3g selected blocks x KV heads) = %s%.3g bytes, %s%.3g with the "
                    "parameters' state: beyond the limit of 2^62 bytes",
                    m->num_hidden_layers, (long long)z->tokens, over(z->width), (double)z->width,
                    over(z->sel_width), (double)z->sel_width, over(z->act_bytes),
                    (double)z->act_bytes, over(sat_add(param_bytes, z->act_bytes)),
                    (double)sat_add(param_bytes, z->act_bytes));
    return 0;
}

int config_check_sizes(const struct config *c, char *key, size_t kn, char *msg, size_t mn) {
    struct shape_sizes z = shape_sizes(c);
    if (check_ints(c, &z, key, kn, msg, mn) != 0) return -1;
    const struct train_config *t = &c->train;
    int64_t run_tokens = sat_mul(sat_mul(t->max_steps, t->global_batch_size), c->data.seq_len);
    if (run_tokens > SIZE_LIMIT)
        return fail(key, kn, msg, mn, "train.max_steps",
                    "%lld steps x global_batch_size %d x data.seq_len %lld = %s%.3g tokens in the "
                    "run; expected at most 2^62 (the sequence and token counters)",
                    (long long)t->max_steps, t->global_batch_size, (long long)c->data.seq_len,
                    over(run_tokens), (double)run_tokens);
    return check_memory(c, &z, key, kn, msg, mn);
}
