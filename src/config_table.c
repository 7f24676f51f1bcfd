/*
 * config_table.c: the key table of the config (see config.h, config_keys.h), and what each key
 * expects in words. config.c loads files and --set options through it, config_validate.c holds the
 * rules across keys, config_sizes.c the size rules, config_output.c writes the config out (JSON,
 * start-up table, docs/CONFIG.md) from the same table.
 *
 * Each row of `config_keys` names a dotted key path, its type, its field in struct config (offsetof), its
 * default (JSON text, parsed by the same setter as a user's value: a bad default fails at start),
 * its bounds and one line of documentation. The loader walks the JSON object and looks each member
 * up in the table; the --set parser, config_defaults, the start-up table, config_to_json and
 * docs/CONFIG.md walk the table. Adding a key is adding a row (and the field in config.h).
 *
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "config_keys.h"
#include "fsutil.h"
#include "synthetic.h"

static const char *const device_names[] = {"cpu", "cuda", NULL};
static const char *const model_type_names[] = {"llama", "minicpm", "qwen2", "qwen3", NULL};
static const char *const schedule_names[] = {"cosine", "wsd", "constant", NULL};
static const char *const source_names[] = {"synthetic", "shards", NULL};
static const char *const recompute_names[] = {"none", "attention", "full", NULL};
/* In the order of enum rope_type (rope.h). */
static const char *const rope_type_names[] = {"", "linear", "dynamic", "yarn", "longrope", "llama3",
                                              NULL};

const char *config_recompute_name(enum recompute r) { return recompute_names[r]; }
const char *config_model_type_name(enum model_type t) { return model_type_names[t]; }
const char *config_rope_type_name(enum rope_type t) { return rope_type_names[t]; }

#define INT_TOP 2147483647.0       /* INT32_MAX */
#define INT64_TOP 9007199254740992.0 /* 2^53: the largest integer a JSON number holds exactly */

#define CAP(field) sizeof(((struct config *)0)->field)
/* Row builders: (path, field, default, ..., doc). */
#define ROW_INT(p, f, d, lo, doc) \
    {p, KT_INT, KEY_FIELD(f), d, lo, INT_TOP, false, false, NULL, 0, doc}
#define ROW_I64(p, f, d, lo, hi, doc) \
    {p, KT_INT64, KEY_FIELD(f), d, lo, hi, false, false, NULL, 0, doc}
#define ROW_DBL(p, f, d, lo, hi, lo_open, hi_open, doc) \
    {p, KT_DOUBLE, KEY_FIELD(f), d, lo, hi, lo_open, hi_open, NULL, 0, doc}
#define ROW_BOOL(p, f, d, doc) {p, KT_BOOL, KEY_FIELD(f), d, 0, 0, false, false, NULL, 0, doc}
#define ROW_STR(p, f, d, doc) \
    {p, KT_STRING, KEY_FIELD(f), d, 0, 0, false, false, NULL, CAP(f), doc}
#define ROW_ENUM(p, f, d, names, doc) \
    {p, KT_ENUM, KEY_FIELD(f), d, 0, 0, false, false, names, 0, doc}
#define ROW_LIST(p, t, f, doc) {p, t, KEY_FIELD(f), "[]", 0, 0, false, false, NULL, 0, doc}
#define NUM_ANY -DBL_MAX, DBL_MAX

const struct key_desc config_keys[] = {
    /* top level */
    ROW_STR("run_dir", run_dir, "\"runs/default\"",
            "Folder of the run: metrics.jsonl and ckpt/ (checkpoints) live here; not empty."),
    ROW_ENUM("device", device, "\"cpu\"", device_names,
             "Backend: `cpu` (fp32 reference) or `cuda` (bf16 weights and activations, fp32 master "
             "weights, moments, reductions and softmax statistics); `cuda` needs a binary built "
             "with the CUDA backend."),
    {"seed", KT_U64, KEY_FIELD(seed), "1234", 0, INT64_TOP, false, false, NULL, 0,
     "Seeds the weight init and the synthetic data; the same seed gives the same run on any rank "
     "layout."},
    ROW_STR("resume", resume, "\"auto\"",
            "`auto`: continue from the checkpoint <run_dir>/ckpt/latest names, or when it is "
            "missing, broken or not intact from the newest intact step folder; start afresh when "
            "there is none (docs/RELIABILITY.md); `none`: start afresh (an existing ckpt/ is moved "
            "aside, not deleted); any other string: the checkpoint folder to continue from."),
    /* model */
    ROW_ENUM("model.model_type", model.model_type, "\"llama\"", model_type_names,
             "`llama`; `minicpm` (adds scale_emb, scale_depth, dim_model_base); `qwen2` (Qwen2 / "
             "Qwen2.5: biases on the q, k and v projections); `qwen3` (RMSNorm of each head's q "
             "and k before RoPE)."),
    ROW_I64("model.vocab_size", model.vocab_size, "512", 1, INT_TOP,
            "Vocabulary size V (token ids are int32)."),
    ROW_INT("model.hidden_size", model.hidden_size, "128", 1, "Hidden size C."),
    ROW_INT("model.intermediate_size", model.intermediate_size, "384", 1,
            "SwiGLU inner size I."),
    {"model.num_hidden_layers", KT_INT, KEY_FIELD(model.num_hidden_layers), "4", 1, 65536, false,
     false, NULL, 0, "Layers L (the parameter table holds one entry per tensor and layer)."},
    ROW_INT("model.num_attention_heads", model.num_attention_heads, "4", 1, "Query heads Hq."),
    ROW_INT("model.num_key_value_heads", model.num_key_value_heads, "2", 1,
            "Key/value heads Hkv (GQA); must divide num_attention_heads."),
    ROW_INT("model.head_dim", model.head_dim, "0", 0,
            "Head dim D, even; 0 = hidden_size / num_attention_heads (which must then divide)."),
    ROW_DBL("model.rope_theta", model.rope_theta, "10000", 0, DBL_MAX, true, false,
            "RoPE base. Raising it for long-context training (ABF) over an imported model needs "
            "model.rope_override."),
    ROW_DBL("model.rms_norm_eps", model.rms_norm_eps, "1e-5", 0, 1, true, false,
            "RMSNorm epsilon."),
    ROW_BOOL("model.tie_word_embeddings", model.tie_word_embeddings, "true",
             "The lm head reuses the token embedding matrix."),
    ROW_BOOL("model.attention_bias", model.attention_bias, "false",
             "Biases on the q, k, v and o projections (llama, minicpm, qwen3). Must be false for "
             "qwen2, whose q, k and v biases (and no o bias) come with the model type."),
    ROW_BOOL("model.use_sliding_window", model.use_sliding_window, "false",
             "qwen2 / qwen3: sliding-window attention in the upper layers. Not implemented: "
             "must be false (every layer attends over the whole causal context)."),
    ROW_DBL("model.scale_emb", model.scale_emb, "1", 0, DBL_MAX, true, false,
            "minicpm: embeddings are multiplied by this. Ignored by the other model types."),
    ROW_DBL("model.scale_depth", model.scale_depth, "1.4", 0, DBL_MAX, true, false,
            "minicpm: each residual branch is scaled by scale_depth / sqrt(num_hidden_layers). "
            "Ignored by the other model types."),
    ROW_DBL("model.dim_model_base", model.dim_model_base, "256", 0, DBL_MAX, true, false,
            "minicpm: logits come from h / (hidden_size / dim_model_base). Ignored by the other "
            "model types."),
    ROW_DBL("model.initializer_range", model.initializer_range, "0.02", 0, DBL_MAX, false, false,
            "Std of the normal init of every matrix when not imported (norm weights start at 1)."),
    ROW_I64("model.max_position_embeddings", model.max_position_embeddings, "0", 0, INT64_TOP,
            "Context the model is built for (exported): dynamic's base length, longrope's scale "
            "without a factor, the default of original_max_position_embeddings; 0 = "
            "data.seq_len."),
    ROW_ENUM("model.rope_scaling.rope_type", model.rope_scaling_type, "\"\"", rope_type_names,
             "RoPE variant, as Hugging Face's rope_type: `\"\"` plain RoPE, `linear`, `dynamic` "
             "(NTK-aware; trains with the theta transformers computes for data.seq_len), `yarn`, "
             "`longrope` (MiniCPM4), `llama3` (Llama 3.1/3.2). `type` is accepted for "
             "`rope_type`, as some config.json files write it. Each type takes the members below "
             "marked with its name; a member another type reads must stay 0."),
    ROW_DBL("model.rope_scaling.factor", model.rope_factor, "0", 0, DBL_MAX, false, false,
            "linear, dynamic, yarn, llama3: the context scaling factor (required, positive); "
            "longrope: optional, 0 = max_position_embeddings / original_max_position_embeddings "
            "(it sets longrope's attention scaling)."),
    ROW_I64("model.rope_scaling.original_max_position_embeddings",
            model.rope_original_max_position_embeddings, "0", 0, INT64_TOP,
            "yarn, longrope, llama3: the pretraining context; 0 = max_position_embeddings "
            "(transformers' default). Kept, unused, with linear and dynamic."),
    ROW_DBL("model.rope_scaling.attention_factor", model.rope_attention_factor, "0", 0, DBL_MAX,
            false, false,
            "yarn, longrope: multiplies cos and sin (so q.k by its square); 0 = derived: yarn "
            "0.1 ln(factor) + 1 (or the mscale ratio below), longrope sqrt(1 + ln(s) / "
            "ln(original)) with s = factor, 1 when s <= 1."),
    ROW_DBL("model.rope_scaling.beta_fast", model.rope_beta_fast, "0", 0, DBL_MAX, false, false,
            "yarn: rotations over the original context above which frequencies are kept; 0 = 32."),
    ROW_DBL("model.rope_scaling.beta_slow", model.rope_beta_slow, "0", 0, DBL_MAX, false, false,
            "yarn: rotations below which frequencies are divided by factor; 0 = 1."),
    ROW_DBL("model.rope_scaling.mscale", model.rope_mscale, "0", 0, DBL_MAX, false, false,
            "yarn: with mscale_all_dim (both non-zero, no attention_factor) the attention factor "
            "is (0.1 mscale ln(factor) + 1) / (0.1 mscale_all_dim ln(factor) + 1); 0 = unset."),
    ROW_DBL("model.rope_scaling.mscale_all_dim", model.rope_mscale_all_dim, "0", 0, DBL_MAX,
            false, false, "yarn: see mscale; 0 = unset."),
    ROW_BOOL("model.rope_scaling.truncate", model.rope_truncate, "true",
             "yarn: round the correction range outwards to whole dimensions (transformers' "
             "default); false only with yarn."),
    ROW_DBL("model.rope_scaling.low_freq_factor", model.rope_low_freq_factor, "0", 0, DBL_MAX,
            false, false,
            "llama3: wavelengths above original_max_position_embeddings / low_freq_factor are "
            "divided by factor (required, positive)."),
    ROW_DBL("model.rope_scaling.high_freq_factor", model.rope_high_freq_factor, "0", 0, DBL_MAX,
            false, false,
            "llama3: wavelengths below original_max_position_embeddings / high_freq_factor are "
            "kept, the band up to original / low_freq_factor is mixed smoothly (required, above "
            "low_freq_factor)."),
    ROW_LIST("model.rope_scaling.long_factor", KT_NUMLIST, model.rope_long_factor,
             "longrope: head_dim / 2 positive frequency factors used when data.seq_len > "
             "original_max_position_embeddings."),
    ROW_LIST("model.rope_scaling.short_factor", KT_NUMLIST, model.rope_short_factor,
             "longrope: head_dim / 2 positive frequency factors used otherwise."),
    ROW_BOOL("model.rope_override", model.rope_override, "false",
             "With model.init_from: `true` lets this config's model.rope_theta, "
             "model.max_position_embeddings and model.rope_scaling.* replace the imported "
             "config.json's (long-context adaptation: a raised rope_theta, a scaling for the "
             "target length; the export then describes the RoPE trained); `false`: they must "
             "agree with it."),
    ROW_STR("model.init_from", model.init_from, "\"\"",
            "Hugging Face folder (config.json + safetensors) to start from; its config.json sets "
            "the model shape (an explicit, different model key is an error). `\"\"` = random "
            "init."),
    /* attention */
    ROW_INT("attention.kernel_size", attention.kernel_size, "32", 1,
            "InfLLM-V2: window of the fine compressed keys K1 in tokens (K2 uses 4x); a multiple "
            "of kernel_stride."),
    ROW_INT("attention.kernel_stride", attention.kernel_stride, "16", 1,
            "InfLLM-V2: stride of K1 in tokens (K2 uses 4x); divides kernel_size and block_size."),
    ROW_INT("attention.block_size", attention.block_size, "64", 1,
            "InfLLM-V2: key block that top-k selects, in tokens; data.seq_len must be a multiple."),
    ROW_INT("attention.init_blocks", attention.init_blocks, "1", 0,
            "InfLLM-V2: first blocks always selected (attention sink)."),
    ROW_INT("attention.window_size", attention.window_size, "2048", 0,
            "InfLLM-V2: local window in tokens, a multiple of block_size; the local_blocks = "
            "window_size / block_size blocks before the query's own are always selected."),
    ROW_INT("attention.topk", attention.topk, "64", 0,
            "InfLLM-V2: dynamic budget; each query keeps topk + local_blocks blocks (at least 1), "
            "at most the sequence's: a larger budget is dense attention, with buffers sized by "
            "the sequence's blocks."),
    ROW_I64("attention.dense_len", attention.dense_len, "8192", -1, INT64_TOP,
            "Sequences shorter than this many tokens use dense attention, longer ones sparse; "
            "-1 = always sparse."),
    ROW_BOOL("attention.use_nope", attention.use_nope, "false",
             "InfLLM-V2: block selection from pre-RoPE q and k."),
    ROW_BOOL("attention.lse_approx", attention.lse_approx, "true",
             "InfLLM-V2: stage-1 normaliser from the coarse keys K2 (false: exact over K1)."),
    /* data */
    ROW_I64("data.seq_len", data.seq_len, "512", 1, INT_TOP,
            "Tokens per training sequence T (inputs; targets are shifted by one); a multiple of "
            "attention.block_size."),
    ROW_ENUM("data.source", data.source, "\"synthetic\"", source_names,
             "`synthetic` (built-in retrieval task, no files) or `shards` (token shards)."),
    ROW_LIST("data.train_files", KT_STRLIST, data.train_files,
             "Token shards to train on (data/prepare.py writes them); at least one with `shards`."),
    ROW_LIST("data.val_files", KT_STRLIST, data.val_files,
             "Token shards for validation; empty with `shards` = no validation."),
    ROW_LIST("data.val_answer_files", KT_STRLIST, data.val_answer_files,
             "One answer mask per data.val_files entry (a token shard of as many tokens, each 0 or "
             "1; bench/needles.py writes them): the targets marked 1 are scored answers, and an "
             "evaluation reports per file the answer spans (runs of consecutive marked tokens) "
             "whose every token is the model's argmax (teacher forcing), spans crossing cp ranks "
             "included; empty = none."),
    ROW_I64("data.eod_token", data.eod_token, "-1", -1, INT_TOP,
            "`shards`: the end-of-document token (the tokenizer's EOS, which `data/prepare.py "
            "--append-eos` writes after every document); a new document starts after each one. "
            "Each document of a sequence is then attended alone: causal within it, InfLLM-V2 over "
            "its own blocks when it is at least attention.dense_len tokens long and dense "
            "otherwise; RoPE positions restart at its start; the token after an end of document "
            "is not a target (docs/DATA.md). -1 = sequences are not cut into documents. On CUDA "
            "each document is an attention call of its own (slower with many short ones)."),
    ROW_INT("data.synthetic.n_pairs", data.synthetic.n_pairs, "8", 1,
            "Synthetic task: key-value records hidden in each sequence."),
    {"data.synthetic.n_queries", KT_INT, KEY_FIELD(data.synthetic.n_queries), "4", 0, INT_TOP,
     false, false, NULL, 0, "Synthetic task: queries at the end of each sequence."},
    ROW_INT("data.synthetic.n_keys", data.synthetic.n_keys, "64", 1,
            "Synthetic task: distinct key tokens (at least n_pairs)."),
    ROW_INT("data.synthetic.n_values", data.synthetic.n_values, "64", 1,
            "Synthetic task: distinct value tokens. The vocabulary must hold 4 + n_keys + n_values "
            "+ 16 filler tokens."),
    ROW_BOOL("data.synthetic.answers_only", data.synthetic.answers_only, "false",
             "Synthetic task: the loss covers only the retrieval answers (the queried values): the "
             "retrieval skill gets the whole training signal instead of a few percent of it; false "
             "trains a language model on every token."),
    ROW_INT("data.synthetic.documents", data.synthetic.documents, "1", 1,
            "Synthetic task: documents packed into each sequence, each a whole task (BOS, records, "
            "queries) of a random length of at least 1 + 4 (n_pairs + n_queries) tokens, attended "
            "alone as with data.eod_token; 1 = one task per sequence (no document masking)."),
    ROW_DBL("data.synthetic.fraction", data.synthetic.fraction, "0", 0, 1, false, true,
            "`shards`: this share of the training sequences, rounded to millionths and spread "
            "evenly, is the synthetic task (its tokens are ids of the model's vocabulary like any "
            "other; answers_only and documents apply to them); the shards' windows fill the rest "
            "in their usual order. The training lines report its retrieval accuracy. Validation "
            "(data.val_files) is not mixed. 0 = shards only."),
    /* train */
    ROW_I64("train.max_steps", train.max_steps, "200", 1, INT64_TOP,
            "Optimizer steps of the whole run."),
    ROW_INT("train.micro_batch_size", train.micro_batch_size, "4", 1,
            "Sequences per forward/backward of one dp group."),
    ROW_INT("train.global_batch_size", train.global_batch_size, "8", 1,
            "Sequences per optimizer step over all ranks; a multiple of micro_batch_size x dp "
            "(gradient accumulation makes up the rest)."),
    ROW_DBL("train.lr", train.lr, "3e-3", 0, DBL_MAX, false, false, "Peak learning rate."),
    ROW_DBL("train.min_lr", train.min_lr, "3e-4", 0, DBL_MAX, false, false,
            "Learning rate at the last step (cosine and wsd); at most lr."),
    ROW_I64("train.warmup_steps", train.warmup_steps, "20", 0, INT64_TOP,
            "Linear warmup steps; at most max_steps."),
    ROW_ENUM("train.schedule", train.schedule, "\"cosine\"", schedule_names,
             "`cosine`, `wsd` (warmup-stable-decay, linear decay) or `constant`."),
    ROW_DBL("train.decay_fraction", train.decay_fraction, "0.2", 0, 1, false, false,
            "wsd: final fraction of max_steps spent decaying."),
    ROW_DBL("train.weight_decay", train.weight_decay, "0.1", 0, DBL_MAX, false, false,
            "AdamW decoupled weight decay (matrices and embeddings; never norm weights)."),
    ROW_DBL("train.beta1", train.beta1, "0.9", 0, 1, false, true, "AdamW beta1."),
    ROW_DBL("train.beta2", train.beta2, "0.95", 0, 1, false, true, "AdamW beta2."),
    ROW_DBL("train.eps", train.eps, "1e-8", 0, 1, false, false, "AdamW epsilon."),
    ROW_DBL("train.grad_clip", train.grad_clip, "1.0", 0, DBL_MAX, false, false,
            "Clip the global gradient norm to this; 0 = off."),
    ROW_I64("train.eval_every", train.eval_every, "50", 0, INT64_TOP,
            "Steps between validation runs (and at the last step); 0 = never."),
    ROW_INT("train.eval_batches", train.eval_batches, "8", 0,
            "Sequences per validation run; at least 1 when eval_every > 0."),
    ROW_LIST("train.eval_buckets", KT_NUMLIST, train.eval_buckets,
             "Upper edges, in tokens, of the position buckets by which `infllm-train eval` reports "
             "the loss: bucket i holds the targets at positions [edge i-1, edge i) of their "
             "document (of the sequence without data.eod_token), edge -1 = 0; positions from the "
             "last edge on are in no bucket. Ascending integers >= 1; [] = none."),
    ROW_ENUM("train.recompute", train.recompute, "\"none\"", recompute_names,
             "Activation recomputation: `none` keeps every activation of every layer; `attention` "
             "keeps the attention branch (ln1, q, k, v, attention output, lse) of one layer only "
             "and recomputes it in the backward (the selection is kept, never recomputed); `full` "
             "keeps only each layer's input (and selection) and recomputes the whole layer. Same "
             "results bit for bit; costs about one more attention forward (`attention`) or one "
             "more layer forward (`full`) per layer."),
    ROW_I64("train.exit_after_steps", train.exit_after_steps, "0", 0, INT64_TOP,
            "Checkpoint and exit 0 after this many steps of this invocation (time-sliced jobs); "
            "0 = run to max_steps."),
    ROW_DBL("train.guard.loss_spike", train.guard_loss_spike, "0", 0, DBL_MAX, false, false,
            "Divergence guard: stop the run (exit code 3, before the weights are updated and "
            "before any checkpoint of that step) when a step's loss exceeds this multiple of the "
            "running mean of the earlier steps' losses (exponential, 5% weight per step, armed "
            "after 10 steps, carried in checkpoints); 0 = off; 2 to 4 catches a blow-up. "
            "Non-finite losses and gradients always stop the run."),
    ROW_DBL("train.guard.grad_norm", train.guard_grad_norm, "0", 0, DBL_MAX, false, false,
            "Divergence guard: stop the run (exit code 3, before the weights are updated) when the "
            "global gradient norm before clipping exceeds this; 0 = off."),
    /* parallel */
    ROW_INT("parallel.cp", parallel.cp, "1", 1,
            "Ranks sharing each sequence (context parallelism); must divide the rank count; "
            "dp = ranks / cp."),
    /* checkpoint */
    ROW_I64("checkpoint.every", checkpoint.every, "0", 0, INT64_TOP,
            "Steps between checkpoints; 0 = only at the end (and on SIGTERM / SIGUSR1)."),
    ROW_INT("checkpoint.keep_last", checkpoint.keep_last, "2", 0,
            "Complete checkpoints kept (older ones of this run are removed once a new one is "
            "complete; checkpoints of other runs are never removed); 0 = all."),
    ROW_BOOL("checkpoint.at_end", checkpoint.at_end, "true",
             "Checkpoint after the last step. `false` is for benchmarks and throwaway runs: the "
             "end of the run is then not resumable unless `checkpoint.every` or a stop signal "
             "(which always checkpoints) saved it."),
    /* log */
    ROW_I64("log.every", log.every, "1", 1, INT64_TOP,
            "Steps between printed lines (metrics.jsonl gets every step)."),
    ROW_I64("log.profile_step", log.profile_step, "0", 0, INT64_TOP,
            "Step whose time is split by kind of work (GEMMs, attention, selection, "
            "communication, loss head, optimizer, other) and printed as a `profile` line and a "
            "metrics.jsonl record; every region synchronises the device, so that step runs "
            "slower. 0 = none."),
};

#define NKEYS ((int)(sizeof config_keys / sizeof config_keys[0]))
_Static_assert(sizeof config_keys / sizeof config_keys[0] <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");
const int config_nkeys = NKEYS;

/* ---------------------------------------------------------------------------------------------- */
/* What a key expects, in words                                                                    */

/* Appends printf output to buf (of size n). */
void config_append(char *buf, size_t n, const char *fmt, ...) {
    size_t used = strlen(buf);
    if (used + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, n - used, fmt, ap);
    va_end(ap);
}

bool config_integer_type(enum key_type t) {
    return t == KT_INT || t == KT_INT64 || t == KT_U64;
}

/* The noun phrase of what the key holds ("positive integer", "number in [0, 1)", ...), without an
 * article; show_max adds the upper limit (of an integer, a string's length, a list's length) even
 * when it is only the type's own. */
void config_describe(const struct key_desc *k, bool show_max, char *buf, size_t n) {
    buf[0] = '\0';
    if (config_integer_type(k->type)) {
        if (k->min == 1)
            config_append(buf, n, "positive integer");
        else if (k->min == 0)
            config_append(buf, n, "non-negative integer");
        else
            config_append(buf, n, "integer >= %.0f", k->min);
        double natural = k->type == KT_INT ? INT_TOP : INT64_TOP;
        if (show_max || k->max < natural) config_append(buf, n, " <= %.0f", k->max);
        return;
    }
    switch (k->type) {
    case KT_DOUBLE:
        if (k->min == -DBL_MAX && k->max == DBL_MAX)
            config_append(buf, n, "number");
        else if (k->max == DBL_MAX && k->min == 0 && k->min_open)
            config_append(buf, n, "positive number");
        else if (k->max == DBL_MAX)
            config_append(buf, n, "number %s %g", k->min_open ? ">" : ">=", k->min);
        else
            config_append(buf, n, "number in %c%g, %g%c", k->min_open ? '(' : '[', k->min, k->max,
                   k->max_open ? ')' : ']');
        return;
    case KT_BOOL: config_append(buf, n, "true or false"); return;
    case KT_STRING:
        config_append(buf, n, "string");
        if (show_max) config_append(buf, n, " of at most %zu bytes", k->cap - 1);
        return;
    case KT_ENUM:
        config_append(buf, n, "one of");
        for (int i = 0; k->names[i]; i++) config_append(buf, n, "%s \"%s\"", i ? "," : "", k->names[i]);
        return;
    case KT_STRLIST:
    case KT_NUMLIST:
        config_append(buf, n, "list of ");
        if (show_max) config_append(buf, n, "at most %d ", CONFIG_LIST_MAX);
        config_append(buf, n, "%s", k->type == KT_STRLIST ? "strings" : "numbers");
        return;
    default: return;
    }
}
