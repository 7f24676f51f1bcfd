/*
 * config.h: the one run configuration, its defaults, and its loader.
 *
 * A config is a JSON file (sections model, attention, data, train, parallel, checkpoint, log, plus
 * the top-level keys run_dir, device, seed, resume) overlaid on the defaults of config_defaults(),
 * then overridden by `--set key.path=value` options. Every key lives in one table in config_table.c
 * (name, type, field, default, documentation); the loader, the --set parser, the start-up table and
 * docs/CONFIG.md all come from that table. Unknown keys, wrong types and impossible values are
 * rejected before any work with one line naming the file, the key path and what was expected
 * (exit code 2).
 */
#ifndef INFLLM_CONFIG_H
#define INFLLM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"  /* enum device_kind */
#include "loader.h"   /* enum data_source */
#include "rope.h"     /* enum rope_type */
#include "schedule.h" /* enum lr_schedule */

struct cJSON;

#define CONFIG_STR_MAX 1024
#define CONFIG_LIST_MAX 256   /* entries of a string or number list */

enum model_type {
    MODEL_TYPE_LLAMA = 0,
    MODEL_TYPE_MINICPM = 1,
    MODEL_TYPE_QWEN2 = 2,
    MODEL_TYPE_QWEN3 = 3,
};
enum recompute { RECOMPUTE_NONE = 0, RECOMPUTE_ATTENTION = 1, RECOMPUTE_FULL = 2 };

struct string_list {
    int n;
    char *items[CONFIG_LIST_MAX]; /* owned, NUL-terminated */
};

struct float_list {
    int n;
    double items[CONFIG_LIST_MAX];
};

/* Model shape; key names are those of Hugging Face config.json. */
struct model_config {
    enum model_type model_type;   /* "llama" | "minicpm" | "qwen2" | "qwen3" */
    int64_t vocab_size;
    int hidden_size;              /* C */
    int intermediate_size;        /* I */
    int num_hidden_layers;        /* L */
    int num_attention_heads;      /* Hq */
    int num_key_value_heads;      /* Hkv */
    int head_dim;                 /* D; 0 in the file means hidden_size / num_attention_heads */
    double rope_theta;
    double rms_norm_eps;
    bool tie_word_embeddings;
    bool attention_bias;          /* bias on q, k, v and o (llama, minicpm, qwen3); qwen2: false,
                                     its q, k, v biases come with the model type */
    bool use_sliding_window;      /* qwen2 / qwen3 sliding-window layers: not implemented, false */
    double scale_emb;             /* minicpm: h0 = embed * scale_emb */
    double scale_depth;           /* minicpm: residual branch * scale_depth / sqrt(L) */
    double dim_model_base;        /* minicpm: logits from h / (hidden_size / dim_model_base) */
    double initializer_range;     /* std of the random init (when not imported) */
    int64_t max_position_embeddings;
    /* rope_scaling (model.rope_scaling.*): the type and its parameters, 0 = unset (rope.h) */
    enum rope_type rope_scaling_type;     /* "" (ROPE_TYPE_DEFAULT) when absent */
    double rope_factor;                   /* linear, dynamic, yarn, llama3; longrope optional */
    double rope_attention_factor;         /* yarn, longrope: 0 = derived */
    double rope_beta_fast, rope_beta_slow;        /* yarn: 0 = 32, 1 */
    double rope_mscale, rope_mscale_all_dim;      /* yarn: 0 = unset */
    bool rope_truncate;                           /* yarn */
    double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    struct float_list rope_long_factor;   /* longrope: head_dim / 2 entries */
    struct float_list rope_short_factor;  /* longrope: head_dim / 2 entries */
    int64_t rope_original_max_position_embeddings; /* 0 = max_position_embeddings (yarn, ...) */
    bool rope_override; /* with init_from: our RoPE keys replace config.json's */
    char init_from[CONFIG_STR_MAX]; /* Hugging Face folder to start from; "" = random init */
};

/* InfLLM-V2 keys (../shared/INFLLMV2.md). */
struct attention_config {
    int kernel_size;      /* K1 window */
    int kernel_stride;    /* K1 stride */
    int block_size;       /* key block selected by top-k */
    int init_blocks;      /* always-selected first blocks */
    int window_size;      /* local window in tokens; local_blocks = window_size / block_size */
    int topk;             /* dynamic budget; selection keeps topk + local_blocks blocks */
    int64_t dense_len;    /* T < dense_len: dense attention; -1: always sparse */
    bool use_nope;        /* selection from pre-RoPE q and k */
    bool lse_approx;      /* stage-1 normaliser from coarse keys K2 */
};

struct synthetic_config {
    int n_pairs;          /* key-value pairs hidden in each sequence */
    int n_queries;        /* queries asked at the end of each sequence */
    int n_keys;           /* distinct key tokens */
    int n_values;         /* distinct value tokens */
    bool answers_only;    /* the loss covers only the queried values, not every token */
    int documents;        /* documents packed in each sequence (1: the task alone) */
    double fraction;      /* shards: share of the training sequences that are the task; 0 = none */
};

struct data_config {
    int64_t seq_len;                  /* T tokens per sequence (inputs; targets are shifted by one) */
    enum data_source source;          /* "synthetic" | "shards" */
    struct string_list train_files;   /* token shards (paths) */
    struct string_list val_files;     /* token shards for validation; empty = synthetic or none */
    struct string_list val_answer_files; /* answer masks of val_files (0 / 1 per token); empty = none */
    int64_t eod_token;                /* shards: a document ends after this token; -1 = none */
    struct synthetic_config synthetic;
};

struct train_config {
    int64_t max_steps;
    int micro_batch_size;     /* sequences per forward/backward on one dp group */
    int global_batch_size;    /* sequences per optimizer step, all ranks together */
    double lr;
    double min_lr;
    int64_t warmup_steps;
    enum lr_schedule schedule;
    double decay_fraction;    /* wsd: final fraction of max_steps spent decaying */
    double weight_decay;
    double beta1, beta2, eps;
    double grad_clip;         /* global-norm clip; 0 = off */
    int64_t eval_every;       /* steps between validation runs; 0 = never */
    int eval_batches;         /* sequences per validation run */
    struct float_list eval_buckets; /* upper edges (tokens) of the loss-by-position buckets */
    enum recompute recompute;
    int64_t exit_after_steps; /* checkpoint and exit 0 after this many steps of this invocation;
                                 0 = run to max_steps (time-sliced jobs, resume tests) */
    double guard_loss_spike;  /* stop when loss > this x running mean loss; 0 = off */
    double guard_grad_norm;   /* stop when the gradient norm (before clipping) > this; 0 = off */
};

struct parallel_config {
    int cp;                   /* ranks sharing one sequence; dp = world size / cp */
};

struct checkpoint_config {
    int64_t every;            /* steps between checkpoints; 0 = only at the end */
    int keep_last;            /* complete checkpoints kept; 0 = all */
    bool at_end;              /* checkpoint after the last step */
};

struct log_config {
    int64_t every;            /* steps between printed lines */
    int64_t profile_step;     /* the step whose time is split by region (profile.h); 0 = none */
};

#define CONFIG_MAX_KEYS 128

/* Who set a key (struct config's `given`). */
enum config_given {
    CONFIG_DEFAULT = 0,  /* left at its default */
    CONFIG_GIVEN = 1,    /* the config file or a --set */
    CONFIG_IMPORTED = 2, /* config_import (an imported model's config.json) */
};

struct config {
    char path[CONFIG_STR_MAX];     /* file it came from, for messages */
    uint8_t given[CONFIG_MAX_KEYS]; /* per key of the table: an enum config_given */
    char import_file[CONFIG_STR_MAX]; /* the file config_import took keys from, for messages */
    char import_section[32];       /* the section of those keys ("model") */
    char run_dir[CONFIG_STR_MAX];
    enum device_kind device;
    uint64_t seed;
    char resume[CONFIG_STR_MAX];   /* "auto" | "none" | checkpoint path */
    struct model_config model;
    struct attention_config attention;
    struct data_config data;
    struct train_config train;
    struct parallel_config parallel;
    struct checkpoint_config checkpoint;
    struct log_config log;
};

/* Fills every field with its default. */
void config_defaults(struct config *c);

/* Reads `path` over the defaults, then applies `nset` overrides "key.path=value" (values parse as
 * JSON, or as a bare string when they are not JSON), without the cross-key validation. On any
 * error: one line on stderr naming the file and key, exit code 2. A run's config is config_read,
 * then the import of model.init_from's config.json (hf_import_config, which sets values through
 * config_import), then config_validate: one validation for both files. */
void config_read(struct config *c, const char *path, int nset, char *const *sets);

/* config_read, then config_validate (for a config that is complete in itself: model.init_from is
 * not imported, so the file's own model keys stand, as in a checkpoint's train_config.json). */
void config_load(struct config *c, const char *path, int nset, char *const *sets);

/* Cross-key checks and derived defaults (head_dim = 0 -> hidden / heads, ...). Dies with exit code 2
 * naming the key. `world_size` checks the parallel layout against the rank count (0 when not yet
 * known: config_load passes 0, the command line checks with the real count). */
void config_validate(struct config *c, int world_size);

/* Releases the owned strings of the lists. */
void config_free(struct config *c);

/* Prints the config as a two-column table (key, value). */
void config_print(const struct config *c, FILE *f);

/* Writes the config as JSON (the same keys the loader reads); the caller frees with free(). */
char *config_to_json(const struct config *c);

/* Writes the Markdown documentation of every key (docs/CONFIG.md is this output). */
void config_write_doc(FILE *f);

/* Whether `key` (a dotted path such as "model.hidden_size") was given by the file, a --set or an
 * import, as opposed to left at its default. */
bool config_is_set(const struct config *c, const char *key);

/* Takes the keys of `section` ("model") from another file's object `obj`, whose member names are
 * our key paths without "<section>." (a Hugging Face config.json: "hidden_size" is
 * model.hidden_size). The same checks as a config file apply (type, range, unknown and duplicate
 * keys), and a failure names `file` and the member. A key the config file or a --set gave must
 * agree, or the run stops naming both values. Later config_validate errors about an imported key
 * name `file` and the member too. */
void config_import(struct config *c, const struct cJSON *obj, const char *section,
                   const char *file);

/* The JSON object of a file (a config, an imported config.json); the caller frees it
 * (cJSON_Delete). Every failure is one user error naming the file: unreadable, not a regular file,
 * over FS_TEXT_MAX, malformed (with line, column and the text there), not an object. */
struct cJSON *config_parse_file(const char *path);

/* The value of `key` as JSON, as config_to_json writes it; the caller frees it (cJSON_Delete). */
struct cJSON *config_key_json(const struct config *c, const char *key);

/* Compares c with `saved` (a config as config_to_json writes it: a checkpoint's
 * train_config.json) key by key, skipping keys saved lacks (a file older than the key). Writes
 * "key old -> new" for each difference, joined by ", ", into out (n bytes, cut with "..."), sets
 * *data_order when one of them changes which sequences the training stream reads (seed,
 * train.global_batch_size, data.* but data.val_*), and returns how many differ. */
int config_changes(const struct config *c, const struct cJSON *saved, char *out, size_t n,
                   bool *data_order);

/* The keys of the table, for tests and tools: count and dotted path of key i. */
int config_key_count(void);
const char *config_key_name(int i);

/* "none", "attention" or "full". */
const char *config_recompute_name(enum recompute r);

/* "llama", "minicpm", "qwen2" or "qwen3": the model_type of config.json. */
const char *config_model_type_name(enum model_type t);

/* The training stream (val false) or the validation stream (val true) of the data section, for
 * loader_init; its strings point into c. */
struct loader_source config_loader_source(const struct config *c, bool val);

/* Derived quantities. */
int config_local_blocks(const struct config *c);            /* window_size / block_size */
bool config_sparse(const struct config *c, int64_t seq_len); /* sparse attention at this length? */
/* Whether the training stream holds synthetic task sequences: the synthetic source, or shards
 * mixed with it (data.synthetic.fraction > 0). */
bool config_synthetic(const struct config *c);
/* Whether sequences may hold several documents (document masking): data.eod_token with shards,
 * data.synthetic.documents > 1 with the synthetic task (alone or mixed in). */
bool config_documents(const struct config *c);

#endif
