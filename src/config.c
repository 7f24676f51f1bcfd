/*
 * config.c: the key table and everything built from it (see config.h).
 *
 * Each row of `keys` names a dotted key path, its type, its field in struct config, its default
 * (as JSON text, parsed by the same setter as a user's value), its bounds and one line of
 * documentation. The loader walks the JSON object and looks each member up in the table; the
 * --set parser, the start-up table, config_to_json and docs/CONFIG.md walk the table.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fsutil.h"
#include "synthetic.h"

enum key_type {
    KT_INT,      /* int */
    KT_INT64,    /* int64_t */
    KT_U64,      /* uint64_t (seed) */
    KT_DOUBLE,   /* double */
    KT_BOOL,     /* bool */
    KT_STRING,   /* char[CONFIG_STR_MAX] */
    KT_ENUM,     /* an enum stored as int; names[value] */
    KT_STRLIST,  /* struct string_list */
    KT_NUMLIST,  /* struct float_list */
};

struct key_desc {
    const char *path;
    enum key_type type;
    size_t offset;
    const char *def;           /* default, JSON text */
    double min, max;           /* numeric bounds, inclusive */
    const char *const *names;  /* KT_ENUM: value names, NULL-terminated */
    size_t cap;                /* KT_STRING: capacity of the field */
    const char *doc;
};

static const char *const device_names[] = {"cpu", "cuda", NULL};
static const char *const model_type_names[] = {"llama", "minicpm", NULL};
static const char *const schedule_names[] = {"cosine", "wsd", "constant", NULL};
static const char *const source_names[] = {"synthetic", "shards", NULL};
static const char *const recompute_names[] = {"none", "attention", "full", NULL};

#define F(field) offsetof(struct config, field)
#define CAP(field) sizeof(((struct config *)0)->field)
#define I32 1, 2147483647.0
#define NONNEG 0, 9.0e15
#define POS64 1, 9.0e15
#define ANY -DBL_MAX, DBL_MAX

static const struct key_desc keys[] = {
    /* top level */
    {"run_dir", KT_STRING, F(run_dir), "\"runs/default\"", 0, 0, NULL, CAP(run_dir),
     "Folder of the run: metrics.jsonl and ckpt/ (checkpoints) live here."},
    {"device", KT_ENUM, F(device), "\"cpu\"", 0, 0, device_names, 0,
     "Backend: \"cpu\" (fp32 reference) or \"cuda\" (bf16 weights and activations, fp32 "
     "master weights, moments and reductions)."},
    {"seed", KT_U64, F(seed), "1234", 0, 9007199254740992.0, NULL, 0,
     "Seeds the weight init and the data order; the same seed gives the same run on any rank "
     "layout."},
    {"resume", KT_STRING, F(resume), "\"auto\"", 0, 0, NULL, CAP(resume),
     "\"auto\": continue from <run_dir>/ckpt/latest when it exists; \"none\": start afresh; "
     "a checkpoint folder: continue from it."},
    /* model */
    {"model.model_type", KT_ENUM, F(model.model_type), "\"llama\"", 0, 0, model_type_names, 0,
     "\"llama\" or \"minicpm\" (adds scale_emb, scale_depth, dim_model_base)."},
    {"model.vocab_size", KT_INT64, F(model.vocab_size), "512", 1, 2147483647.0, NULL, 0,
     "Vocabulary size V (token ids are int32)."},
    {"model.hidden_size", KT_INT, F(model.hidden_size), "128", I32, NULL, 0, "Hidden size C."},
    {"model.intermediate_size", KT_INT, F(model.intermediate_size), "384", I32, NULL, 0,
     "SwiGLU inner size I."},
    {"model.num_hidden_layers", KT_INT, F(model.num_hidden_layers), "4", I32, NULL, 0,
     "Layers L."},
    {"model.num_attention_heads", KT_INT, F(model.num_attention_heads), "4", I32, NULL, 0,
     "Query heads Hq."},
    {"model.num_key_value_heads", KT_INT, F(model.num_key_value_heads), "2", I32, NULL, 0,
     "Key/value heads Hkv (GQA); must divide num_attention_heads."},
    {"model.head_dim", KT_INT, F(model.head_dim), "0", 0, 2147483647.0, NULL, 0,
     "Head dim D (even); 0 = hidden_size / num_attention_heads."},
    {"model.rope_theta", KT_DOUBLE, F(model.rope_theta), "10000", 1e-9, DBL_MAX, NULL, 0,
     "RoPE base."},
    {"model.rms_norm_eps", KT_DOUBLE, F(model.rms_norm_eps), "1e-5", 0, 1, NULL, 0,
     "RMSNorm epsilon."},
    {"model.tie_word_embeddings", KT_BOOL, F(model.tie_word_embeddings), "true", 0, 0, NULL, 0,
     "The lm head reuses the token embedding."},
    {"model.scale_emb", KT_DOUBLE, F(model.scale_emb), "1", ANY, NULL, 0,
     "minicpm: embeddings are multiplied by this (ignored for llama)."},
    {"model.scale_depth", KT_DOUBLE, F(model.scale_depth), "1.4", ANY, NULL, 0,
     "minicpm: each residual branch is scaled by scale_depth / sqrt(num_hidden_layers) "
     "(ignored for llama)."},
    {"model.dim_model_base", KT_DOUBLE, F(model.dim_model_base), "256", 1e-9, DBL_MAX, NULL, 0,
     "minicpm: logits come from h / (hidden_size / dim_model_base) (ignored for llama)."},
    {"model.initializer_range", KT_DOUBLE, F(model.initializer_range), "0.02", 0, DBL_MAX, NULL, 0,
     "Std of the normal init of every matrix when not imported (norm weights start at 1)."},
    {"model.max_position_embeddings", KT_INT64, F(model.max_position_embeddings), "0", NONNEG,
     NULL, 0, "Context the model is built for (exported; LongRoPE's scale); 0 = data.seq_len."},
    {"model.rope_scaling.rope_type", KT_STRING, F(model.rope_scaling_type), "\"\"", 0, 0, NULL, CAP(model.rope_scaling_type),
     "\"\" (plain RoPE) or \"longrope\" (MiniCPM4's LongRoPE)."},
    {"model.rope_scaling.long_factor", KT_NUMLIST, F(model.rope_long_factor), "[]", 0, 0, NULL, 0,
     "LongRoPE: head_dim / 2 frequency factors used when data.seq_len > "
     "original_max_position_embeddings."},
    {"model.rope_scaling.short_factor", KT_NUMLIST, F(model.rope_short_factor), "[]", 0, 0, NULL,
     0, "LongRoPE: head_dim / 2 frequency factors used otherwise."},
    {"model.rope_scaling.original_max_position_embeddings", KT_INT64,
     F(model.rope_original_max_position_embeddings), "0", NONNEG, NULL, 0,
     "LongRoPE: the pretraining context; attention scaling sqrt(1 + ln(s) / ln(original)) with "
     "s = max_position_embeddings / original."},
    {"model.init_from", KT_STRING, F(model.init_from), "\"\"", 0, 0, NULL, CAP(model.init_from),
     "Hugging Face folder (config.json + safetensors) to start from; its config.json sets the "
     "model shape (an explicit, different model key is an error). \"\" = random init."},
    /* attention */
    {"attention.kernel_size", KT_INT, F(attention.kernel_size), "32", I32, NULL, 0,
     "InfLLM-V2: window of the fine compressed keys K1 (K2 uses 4x)."},
    {"attention.kernel_stride", KT_INT, F(attention.kernel_stride), "16", I32, NULL, 0,
     "InfLLM-V2: stride of K1 (K2 uses 4x); divides kernel_size and block_size."},
    {"attention.block_size", KT_INT, F(attention.block_size), "64", I32, NULL, 0,
     "InfLLM-V2: key block that top-k selects; data.seq_len must be a multiple."},
    {"attention.init_blocks", KT_INT, F(attention.init_blocks), "1", 0, 2147483647.0, NULL, 0,
     "InfLLM-V2: first blocks always selected (attention sink)."},
    {"attention.window_size", KT_INT, F(attention.window_size), "2048", 0, 2147483647.0, NULL, 0,
     "InfLLM-V2: local window in tokens; local_blocks = window_size / block_size blocks before "
     "the query's own are always selected."},
    {"attention.topk", KT_INT, F(attention.topk), "64", 0, 2147483647.0, NULL, 0,
     "InfLLM-V2: dynamic budget; each query keeps topk + local_blocks blocks."},
    {"attention.dense_len", KT_INT64, F(attention.dense_len), "8192", -1, 9.0e15, NULL, 0,
     "Sequences shorter than this use dense attention, longer ones sparse; -1 = always sparse."},
    {"attention.use_nope", KT_BOOL, F(attention.use_nope), "false", 0, 0, NULL, 0,
     "InfLLM-V2: block selection from pre-RoPE q and k."},
    {"attention.lse_approx", KT_BOOL, F(attention.lse_approx), "true", 0, 0, NULL, 0,
     "InfLLM-V2: stage-1 normaliser from the coarse keys K2 (false: exact over K1)."},
    /* data */
    {"data.seq_len", KT_INT64, F(data.seq_len), "512", 1, 2147483647.0, NULL, 0,
     "Tokens per training sequence T (inputs; targets are shifted by one)."},
    {"data.source", KT_ENUM, F(data.source), "\"synthetic\"", 0, 0, source_names, 0,
     "\"synthetic\" (built-in retrieval task, no files) or \"shards\" (token shards)."},
    {"data.train_files", KT_STRLIST, F(data.train_files), "[]", 0, 0, NULL, 0,
     "Token shards to train on (data/prepare.py writes them)."},
    {"data.val_files", KT_STRLIST, F(data.val_files), "[]", 0, 0, NULL, 0,
     "Token shards for validation; empty with shards = no validation."},
    {"data.synthetic.n_pairs", KT_INT, F(data.synthetic.n_pairs), "8", I32, NULL, 0,
     "Synthetic task: key-value records hidden in each sequence."},
    {"data.synthetic.n_queries", KT_INT, F(data.synthetic.n_queries), "4", I32, NULL, 0,
     "Synthetic task: queries at the end of each sequence."},
    {"data.synthetic.n_keys", KT_INT, F(data.synthetic.n_keys), "64", I32, NULL, 0,
     "Synthetic task: distinct key tokens (at least n_pairs)."},
    {"data.synthetic.n_values", KT_INT, F(data.synthetic.n_values), "64", I32, NULL, 0,
     "Synthetic task: distinct value tokens."},
    /* train */
    {"train.max_steps", KT_INT64, F(train.max_steps), "200", POS64, NULL, 0,
     "Optimizer steps of the whole run."},
    {"train.micro_batch_size", KT_INT, F(train.micro_batch_size), "4", I32, NULL, 0,
     "Sequences per forward/backward of one dp group."},
    {"train.global_batch_size", KT_INT, F(train.global_batch_size), "8", I32, NULL, 0,
     "Sequences per optimizer step over all ranks; a multiple of micro_batch_size x dp "
     "(gradient accumulation makes up the rest)."},
    {"train.lr", KT_DOUBLE, F(train.lr), "3e-3", 0, DBL_MAX, NULL, 0, "Peak learning rate."},
    {"train.min_lr", KT_DOUBLE, F(train.min_lr), "3e-4", 0, DBL_MAX, NULL, 0,
     "Learning rate at the last step (cosine and wsd)."},
    {"train.warmup_steps", KT_INT64, F(train.warmup_steps), "20", NONNEG, NULL, 0,
     "Linear warmup steps."},
    {"train.schedule", KT_ENUM, F(train.schedule), "\"cosine\"", 0, 0, schedule_names, 0,
     "\"cosine\", \"wsd\" (warmup-stable-decay, linear decay) or \"constant\"."},
    {"train.decay_fraction", KT_DOUBLE, F(train.decay_fraction), "0.2", 0, 1, NULL, 0,
     "wsd: final fraction of max_steps spent decaying."},
    {"train.weight_decay", KT_DOUBLE, F(train.weight_decay), "0.1", 0, DBL_MAX, NULL, 0,
     "AdamW decoupled weight decay (matrices and embeddings; never norm weights)."},
    {"train.beta1", KT_DOUBLE, F(train.beta1), "0.9", 0, 0.999999, NULL, 0, "AdamW beta1."},
    {"train.beta2", KT_DOUBLE, F(train.beta2), "0.95", 0, 0.999999999, NULL, 0, "AdamW beta2."},
    {"train.eps", KT_DOUBLE, F(train.eps), "1e-8", 0, 1, NULL, 0, "AdamW epsilon."},
    {"train.grad_clip", KT_DOUBLE, F(train.grad_clip), "1.0", 0, DBL_MAX, NULL, 0,
     "Clip the global gradient norm to this; 0 = off."},
    {"train.eval_every", KT_INT64, F(train.eval_every), "50", NONNEG, NULL, 0,
     "Steps between validation runs (and at the last step); 0 = never."},
    {"train.eval_batches", KT_INT, F(train.eval_batches), "8", 0, 2147483647.0, NULL, 0,
     "Sequences per validation run."},
    {"train.recompute", KT_ENUM, F(train.recompute), "\"none\"", 0, 0, recompute_names, 0,
     "Activation recomputation: only \"none\" is implemented; \"attention\" and \"full\" are "
     "refused until they exist."},
    {"train.exit_after_steps", KT_INT64, F(train.exit_after_steps), "0", NONNEG, NULL, 0,
     "Checkpoint and exit 0 after this many steps of this invocation (time-sliced jobs); 0 = run "
     "to max_steps."},
    /* parallel */
    {"parallel.cp", KT_INT, F(parallel.cp), "1", I32, NULL, 0,
     "Ranks sharing each sequence (context parallelism); dp = ranks / cp."},
    /* checkpoint */
    {"checkpoint.every", KT_INT64, F(checkpoint.every), "0", NONNEG, NULL, 0,
     "Steps between checkpoints; 0 = only at the end (and on SIGTERM / SIGUSR1)."},
    {"checkpoint.keep_last", KT_INT, F(checkpoint.keep_last), "2", 0, 2147483647.0, NULL, 0,
     "Complete checkpoints kept (older ones are removed after a new one is complete); 0 = all."},
    /* log */
    {"log.every", KT_INT64, F(log.every), "1", POS64, NULL, 0,
     "Steps between printed lines (metrics.jsonl gets every step)."},
};

#define NKEYS ((int)(sizeof keys / sizeof keys[0]))
_Static_assert(sizeof keys / sizeof keys[0] <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

/* ---------------------------------------------------------------------------------------------- */
/* Setting one key from a JSON value                                                               */

/* Where a value came from, for messages: "<file>: <key>" or "--set <arg>". */
struct origin {
    const char *file; /* NULL for --set */
    const char *arg;  /* the --set argument */
};

static void field_die(const struct origin *o, const struct key_desc *k, const char *expected,
                      const cJSON *got) INFLLM_NORETURN;

static void field_die(const struct origin *o, const struct key_desc *k, const char *expected,
                      const cJSON *got) {
    char *text = got ? cJSON_PrintUnformatted(got) : NULL;
    if (o->file)
        die_user("%s: %s: expected %s, got %s", o->file, k->path, expected, text ? text : "nothing");
    die_user("--set %s: expected %s, got %s", o->arg, expected, text ? text : "nothing");
}

static void *field(struct config *c, const struct key_desc *k) { return (char *)c + k->offset; }

static double number_in_bounds(const struct origin *o, const struct key_desc *k, const cJSON *v,
                               bool whole) {
    char expected[160];
    if (whole)
        snprintf(expected, sizeof expected, "an integer in [%.0f, %.0f]", k->min, k->max);
    else if (k->min == -DBL_MAX)
        snprintf(expected, sizeof expected, "a number");
    else
        snprintf(expected, sizeof expected, "a number >= %g%s", k->min,
                 k->max < DBL_MAX ? " and <= max" : "");
    if (!cJSON_IsNumber(v)) field_die(o, k, expected, v);
    double d = v->valuedouble;
    if (!isfinite(d) || (whole && d != floor(d)) || d < k->min || d > k->max)
        field_die(o, k, expected, v);
    return d;
}

static void set_value(struct config *c, const struct key_desc *k, const cJSON *v,
                      const struct origin *o) {
    void *f = field(c, k);
    switch (k->type) {
    case KT_INT: *(int *)f = (int)number_in_bounds(o, k, v, true); break;
    case KT_INT64: *(int64_t *)f = (int64_t)number_in_bounds(o, k, v, true); break;
    case KT_U64: *(uint64_t *)f = (uint64_t)number_in_bounds(o, k, v, true); break;
    case KT_DOUBLE: *(double *)f = number_in_bounds(o, k, v, false); break;
    case KT_BOOL:
        if (!cJSON_IsBool(v)) field_die(o, k, "true or false", v);
        *(bool *)f = cJSON_IsTrue(v);
        break;
    case KT_STRING:
        if (!cJSON_IsString(v)) field_die(o, k, "a string", v);
        if (strlen(v->valuestring) >= k->cap) field_die(o, k, "a shorter string", v);
        snprintf((char *)f, k->cap, "%s", v->valuestring);
        break;
    case KT_ENUM: {
        char expected[160] = "one of";
        for (int i = 0; k->names[i]; i++) {
            size_t n = strlen(expected);
            snprintf(expected + n, sizeof expected - n, "%s \"%s\"", i ? "," : "", k->names[i]);
        }
        if (!cJSON_IsString(v)) field_die(o, k, expected, v);
        int i = 0;
        while (k->names[i] && strcmp(k->names[i], v->valuestring) != 0) i++;
        if (!k->names[i]) field_die(o, k, expected, v);
        *(int *)f = i;
        break;
    }
    case KT_STRLIST: {
        struct string_list *l = f;
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > CONFIG_LIST_MAX)
            field_die(o, k, "a list of strings", v);
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (!cJSON_IsString(e)) field_die(o, k, "a list of strings", v);
        for (int i = 0; i < l->n; i++) free(l->items[i]);
        l->n = 0;
        cJSON_ArrayForEach(e, v) l->items[l->n++] = xstrdup(e->valuestring);
        break;
    }
    case KT_NUMLIST: {
        struct float_list *l = f;
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > CONFIG_LIST_MAX)
            field_die(o, k, "a list of numbers", v);
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (!cJSON_IsNumber(e)) field_die(o, k, "a list of numbers", v);
        l->n = 0;
        cJSON_ArrayForEach(e, v) l->items[l->n++] = e->valuedouble;
        break;
    }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Lookup, with a suggestion for a mistyped key                                                    */

static int find_key(const char *path) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].path, path) == 0) return i;
    return -1;
}

/* Whether some key lives under `prefix.` (a section or nested object). */
static bool is_section(const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < NKEYS; i++)
        if (strncmp(keys[i].path, prefix, n) == 0 && keys[i].path[n] == '.') return true;
    return false;
}

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 80 || lb > 80) return 99;
    int d[81][81];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

static void die_unknown(const struct origin *o, const char *path) INFLLM_NORETURN;

static void die_unknown(const struct origin *o, const char *path) {
    int best = -1, best_d = 1 << 30;
    for (int i = 0; i < NKEYS; i++) {
        int dd = edit_distance(path, keys[i].path);
        if (dd < best_d) best_d = dd, best = i;
    }
    char hint[200] = " (every key is listed in docs/CONFIG.md)";
    if (best >= 0 && best_d <= 3)
        snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", keys[best].path);
    if (o->file) die_user("%s: unknown key \"%s\"%s", o->file, path, hint);
    die_user("--set %s: unknown key \"%s\"%s", o->arg, path, hint);
}

/* Applies every member of object `obj` found at `prefix` ("" for the root). */
static void apply_object(struct config *c, const cJSON *obj, const char *prefix,
                         const struct origin *o) {
    const cJSON *m;
    cJSON_ArrayForEach(m, obj) {
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", m->string);
        int idx = find_key(path);
        if (idx >= 0) {
            set_value(c, &keys[idx], m, o);
            c->given[idx] = 1;
        } else if (is_section(path) && cJSON_IsObject(m)) {
            apply_object(c, m, path, o);
        } else if (is_section(path) && cJSON_IsNull(m)) {
            continue; /* "rope_scaling": null, as Hugging Face writes it */
        } else if (is_section(path)) {
            if (o->file) die_user("%s: %s: expected an object, got a %s", o->file, path,
                                  cJSON_IsArray(m) ? "list" : "value");
            die_user("--set %s: %s is a section, set one of its keys", o->arg, path);
        } else {
            die_unknown(o, path);
        }
    }
}

/* Duplicate keys in one JSON object are refused: cJSON would keep both silently. */
static void check_duplicates(const cJSON *obj, const char *prefix, const char *file) {
    const cJSON *a, *b;
    cJSON_ArrayForEach(a, obj) {
        for (b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                die_user("%s: key \"%s%s%s\" appears twice", file, prefix, prefix[0] ? "." : "",
                         a->string);
        if (cJSON_IsObject(a)) {
            char path[256];
            snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", a->string);
            check_duplicates(a, path, file);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Defaults, load, --set                                                                           */

void config_defaults(struct config *c) {
    memset(c, 0, sizeof *c);
    struct origin o = {"(built-in defaults)", NULL};
    for (int i = 0; i < NKEYS; i++) {
        cJSON *v = cJSON_Parse(keys[i].def);
        CHECKF(v != NULL, "bad default for %s", keys[i].path);
        set_value(c, &keys[i], v, &o);
        cJSON_Delete(v);
    }
}

/* Line and column of byte offset `at` in text. */
static void line_col(const char *text, size_t at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at && text[i]; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static void apply_set(struct config *c, const char *arg) {
    struct origin o = {NULL, arg};
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) die_user("--set %s: expected key.path=value", arg);
    char path[256];
    size_t n = (size_t)(eq - arg);
    if (n >= sizeof path) die_user("--set %s: key too long", arg);
    memcpy(path, arg, n);
    path[n] = '\0';
    int idx = find_key(path);
    if (idx < 0) die_unknown(&o, path);
    const char *text = eq + 1;
    cJSON *v = cJSON_Parse(text);
    if (!v) v = cJSON_CreateString(text); /* a bare string: --set device=cuda */
    set_value(c, &keys[idx], v, &o);
    c->given[idx] = 1;
    cJSON_Delete(v);
}

void config_load(struct config *c, const char *path, int nset, char *const *sets) {
    config_defaults(c);
    snprintf(c->path, sizeof c->path, "%s", path);
    size_t len = 0;
    char *text = read_file(path, &len, false);
    if (!text) die_user("%s: cannot read: %s", path, strerror(errno));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root && end) { /* only whitespace may follow the value */
        const char *p = end;
        while (p < text + len && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (p < text + len) {
            int line, col;
            line_col(text, (size_t)(p - text), &line, &col);
            die_user("%s: line %d, column %d: unexpected text after the JSON object", path, line, col);
        }
    }
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : len;
        int line, col;
        line_col(text, off, &line, &col);
        die_user("%s: line %d, column %d: malformed JSON", path, line, col);
    }
    if (!cJSON_IsObject(root)) die_user("%s: expected a JSON object at the top level", path);
    check_duplicates(root, "", path);
    struct origin o = {path, NULL};
    apply_object(c, root, "", &o);
    cJSON_Delete(root);
    free(text);
    for (int i = 0; i < nset; i++) apply_set(c, sets[i]);
    config_validate(c, 0);
}

void config_free(struct config *c) {
    for (int i = 0; i < NKEYS; i++) {
        if (keys[i].type != KT_STRLIST) continue;
        struct string_list *l = field(c, &keys[i]);
        for (int j = 0; j < l->n; j++) free(l->items[j]);
        l->n = 0;
    }
}

bool config_is_set(const struct config *c, const char *key) {
    int idx = find_key(key);
    CHECKF(idx >= 0, "config_is_set: no key %s", key);
    return c->given[idx] != 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Validation                                                                                      */

static void bad(const struct config *c, const char *key, const char *fmt, ...)
    INFLLM_PRINTF(3, 4) INFLLM_NORETURN;

static void bad(const struct config *c, const char *key, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    die_user("%s: %s: %s", c->path[0] ? c->path : "config", key, msg);
}

static void validate_model(struct config *c) {
    struct model_config *m = &c->model;
    if (m->num_attention_heads % m->num_key_value_heads != 0)
        bad(c, "model.num_key_value_heads", "%d does not divide num_attention_heads = %d",
            m->num_key_value_heads, m->num_attention_heads);
    if (m->head_dim == 0) {
        if (m->hidden_size % m->num_attention_heads != 0)
            bad(c, "model.head_dim", "0 (derived) needs num_attention_heads = %d to divide "
                "hidden_size = %d; set head_dim", m->num_attention_heads, m->hidden_size);
        m->head_dim = m->hidden_size / m->num_attention_heads;
    }
    if (m->head_dim % 2 != 0) bad(c, "model.head_dim", "%d is odd, expected an even size (RoPE pairs)", m->head_dim);
    if (m->max_position_embeddings == 0) m->max_position_embeddings = c->data.seq_len;
    if (m->rope_scaling_type[0] && strcmp(m->rope_scaling_type, "longrope") != 0)
        bad(c, "model.rope_scaling.rope_type", "\"%s\", expected \"\" or \"longrope\"",
            m->rope_scaling_type);
    if (strcmp(m->rope_scaling_type, "longrope") == 0) {
        int half = m->head_dim / 2;
        if (m->rope_long_factor.n != half)
            bad(c, "model.rope_scaling.long_factor", "%d entries, expected head_dim / 2 = %d",
                m->rope_long_factor.n, half);
        if (m->rope_short_factor.n != half)
            bad(c, "model.rope_scaling.short_factor", "%d entries, expected head_dim / 2 = %d",
                m->rope_short_factor.n, half);
        if (m->rope_original_max_position_embeddings <= 0)
            bad(c, "model.rope_scaling.original_max_position_embeddings",
                "expected a positive integer with longrope");
    }
}

static void validate_attention(struct config *c) {
    const struct attention_config *a = &c->attention;
    if (a->block_size % a->kernel_stride != 0)
        bad(c, "attention.block_size", "%d is not a multiple of kernel_stride = %d",
            a->block_size, a->kernel_stride);
    if (a->kernel_size % a->kernel_stride != 0)
        bad(c, "attention.kernel_size", "%d is not a multiple of kernel_stride = %d",
            a->kernel_size, a->kernel_stride);
    if (a->window_size % a->block_size != 0)
        bad(c, "attention.window_size", "%d is not a multiple of block_size = %d",
            a->window_size, a->block_size);
    if (c->data.seq_len % a->block_size != 0)
        bad(c, "data.seq_len", "%lld is not a multiple of attention.block_size = %d",
            (long long)c->data.seq_len, a->block_size);
}

static void validate_train(struct config *c, int world_size) {
    const struct train_config *t = &c->train;
    int cp = c->parallel.cp;
    if (world_size <= 0) { /* rank count not known yet: check the layout-free parts only */
        if (t->global_batch_size % t->micro_batch_size != 0)
            bad(c, "train.global_batch_size", "%d is not a multiple of micro_batch_size = %d",
                t->global_batch_size, t->micro_batch_size);
        world_size = cp;
    }
    if (world_size % cp != 0)
        bad(c, "parallel.cp", "%d does not divide the number of ranks %d", cp, world_size);
    int dp = world_size / cp;
    if (cp > 1 && c->data.seq_len % (2LL * cp * c->attention.block_size) != 0)
        bad(c, "data.seq_len", "%lld is not a multiple of 2 x parallel.cp x block_size = %lld "
            "(each rank holds two equal chunks of whole blocks)", (long long)c->data.seq_len,
            2LL * cp * c->attention.block_size);
    if (t->global_batch_size % (t->micro_batch_size * dp) != 0)
        bad(c, "train.global_batch_size", "%d is not a multiple of micro_batch_size x dp = %d x %d",
            t->global_batch_size, t->micro_batch_size, dp);
    if (t->warmup_steps > t->max_steps)
        bad(c, "train.warmup_steps", "%lld exceeds max_steps = %lld", (long long)t->warmup_steps,
            (long long)t->max_steps);
    if (t->min_lr > t->lr) bad(c, "train.min_lr", "%g exceeds lr = %g", t->min_lr, t->lr);
    if (t->recompute != RECOMPUTE_NONE)
        bad(c, "train.recompute", "only \"none\" is implemented in this build");
}

void config_validate(struct config *c, int world_size) {
    validate_model(c);
    validate_attention(c);
    validate_train(c, world_size);
#ifndef INFLLM_CUDA
    if (c->device == DEVICE_CUDA)
        bad(c, "device", "\"cuda\", but this binary was built without CUDA; expected \"cpu\"");
#endif
    if (c->data.source == DATA_SOURCE_SYNTHETIC) {
        const struct synthetic_config *s = &c->data.synthetic;
        struct synthetic_task task = {c->model.vocab_size, s->n_pairs, s->n_queries, s->n_keys,
                                      s->n_values};
        char err[512];
        if (synthetic_check(&task, c->data.seq_len + 1, err, sizeof err) != 0)
            bad(c, "data.synthetic", "%s", err);
    } else if (c->data.train_files.n == 0) {
        bad(c, "data.train_files", "empty, expected at least one token shard with data.source "
            "\"shards\"");
    }
}

int config_local_blocks(const struct config *c) {
    return c->attention.window_size / c->attention.block_size;
}

bool config_sparse(const struct config *c, int64_t seq_len) {
    return c->attention.dense_len < 0 || seq_len >= c->attention.dense_len;
}

/* ---------------------------------------------------------------------------------------------- */
/* Output: JSON, table, documentation                                                              */

static cJSON *value_json(const struct config *c, const struct key_desc *k) {
    const void *f = (const char *)c + k->offset;
    switch (k->type) {
    case KT_INT: return cJSON_CreateNumber(*(const int *)f);
    case KT_INT64: return cJSON_CreateNumber((double)*(const int64_t *)f);
    case KT_U64: return cJSON_CreateNumber((double)*(const uint64_t *)f);
    case KT_DOUBLE: return cJSON_CreateNumber(*(const double *)f);
    case KT_BOOL: return cJSON_CreateBool(*(const bool *)f);
    case KT_STRING: return cJSON_CreateString((const char *)f);
    case KT_ENUM: return cJSON_CreateString(k->names[*(const int *)f]);
    case KT_STRLIST: {
        const struct string_list *l = f;
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < l->n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(l->items[i]));
        return a;
    }
    case KT_NUMLIST: {
        const struct float_list *l = f;
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < l->n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(l->items[i]));
        return a;
    }
    }
    return cJSON_CreateNull();
}

char *config_to_json(const struct config *c) {
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; i < NKEYS; i++) {
        /* Walk/create the objects of the dotted path, then add the leaf. */
        char path[256];
        snprintf(path, sizeof path, "%s", keys[i].path);
        cJSON *obj = root;
        char *part = path, *dot;
        while ((dot = strchr(part, '.'))) {
            *dot = '\0';
            cJSON *sub = cJSON_GetObjectItemCaseSensitive(obj, part);
            if (!sub) sub = cJSON_AddObjectToObject(obj, part);
            obj = sub;
            part = dot + 1;
        }
        cJSON_AddItemToObject(obj, part, value_json(c, &keys[i]));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

void config_print(const struct config *c, FILE *f) {
    fprintf(f, "config (%s):\n", c->path[0] ? c->path : "defaults");
    for (int i = 0; i < NKEYS; i++) {
        cJSON *v = value_json(c, &keys[i]);
        char *text = cJSON_PrintUnformatted(v);
        size_t n = strlen(text);
        fprintf(f, "  %-52s %.*s%s\n", keys[i].path, n > 60 ? 57 : (int)n, text, n > 60 ? "..." : "");
        free(text);
        cJSON_Delete(v);
    }
}

static const char *type_name(const struct key_desc *k) {
    switch (k->type) {
    case KT_INT:
    case KT_INT64:
    case KT_U64: return "integer";
    case KT_DOUBLE: return "number";
    case KT_BOOL: return "bool";
    case KT_STRING: return "string";
    case KT_ENUM: return "enum";
    case KT_STRLIST: return "list of strings";
    case KT_NUMLIST: return "list of numbers";
    }
    return "?";
}

static const struct {
    const char *prefix, *title, *intro;
} sections[] = {
    {"", "Top level", "Where the run lives, which backend runs it, and where it resumes from."},
    {"model.", "model",
     "The transformer's shape, with the key names of a Hugging Face config.json. With "
     "model.init_from, the imported folder's config.json supplies them."},
    {"attention.", "attention",
     "InfLLM-V2 dense-sparse switchable attention (../shared/INFLLMV2.md). Defaults are those of "
     "MiniCPM4.1. No key adds parameters: a model trained dense runs unchanged in sparse mode."},
    {"data.", "data", "The token stream: the built-in synthetic retrieval task or token shards "
                      "(docs/DATA.md)."},
    {"train.", "train", "Optimisation: batch, schedule, AdamW, evaluation, stopping."},
    {"parallel.", "parallel", "How ranks share the work: cp ranks per sequence, dp = ranks / cp."},
    {"checkpoint.", "checkpoint", "Checkpoints in <run_dir>/ckpt (docs/FORMATS.md)."},
    {"log.", "log", "Progress output."},
};

void config_write_doc(FILE *f) {
    fprintf(f, "# Configuration reference\n\n"
               "A config is a JSON object of the sections below; a key left out keeps its default, "
               "an unknown key, a wrong type or an impossible value stops the run before any work "
               "with one line naming the file and the key (exit code 2). Any key can be overridden "
               "on the command line: `--set key.path=value` (the value is JSON, or a bare "
               "string). This file is the output of `infllm-train config-doc`.\n");
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
        fprintf(f, "\n## %s\n\n%s\n\n| key | type | default | meaning |\n|---|---|---|---|\n",
                sections[s].title, sections[s].intro);
        size_t pn = strlen(sections[s].prefix);
        for (int i = 0; i < NKEYS; i++) {
            const char *p = keys[i].path;
            bool top = strchr(p, '.') == NULL;
            if (pn == 0 ? !top : strncmp(p, sections[s].prefix, pn) != 0) continue;
            fprintf(f, "| `%s` | %s", p, type_name(&keys[i]));
            if (keys[i].type == KT_ENUM) {
                fprintf(f, ":");
                for (int e = 0; keys[i].names[e]; e++)
                    fprintf(f, "%s `%s`", e ? "," : "", keys[i].names[e]);
            }
            fprintf(f, " | `%s` | %s |\n", keys[i].def, keys[i].doc);
        }
    }
}

int config_key_count(void) { return NKEYS; }

const char *config_key_name(int i) { return i >= 0 && i < NKEYS ? keys[i].path : NULL; }
