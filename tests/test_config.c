/*
 * test_config.c: the configuration system (src/config*.c) accepting what it should: defaults that
 * validate, every shipped config loading, --set overrides of every key type, a random config
 * surviving config_to_json -> config_load exactly (every field of struct config compared by hand,
 * so a field missing from the key table fails here), the documentation and start-up table naming
 * every key, and the saturating size arithmetic of checked.h. What it must refuse, and the import
 * of a Hugging Face config.json, are test_config_reject.c.
 *
 * Everything compared is exact (integers, strings, doubles written with round-trip precision):
 * no tolerances. Random inputs come from a fresh seed each run (printed; replay with
 * `test_config --seed S`). Temporary files live in a mkdtemp() folder under /tmp, removed at the
 * end.
 * Run from the project root (configs/ is read relative to it).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "config.h"
#include "config_jobs.h"
#include "testlib.h"

/* ---------------------------------------------------------------- defaults and shipped configs */

static void test_defaults(void) {
    static struct config c;
    config_defaults(&c);
    config_validate(&c, 1); /* dies (the test fails with exit 2) when the defaults are invalid */
    const struct attention_config *a = &c.attention;
    t_check(a->kernel_size == 32 && a->kernel_stride == 16 && a->block_size == 64 &&
                a->init_blocks == 1 && a->window_size == 2048 && a->topk == 64 &&
                a->dense_len == 8192 && !a->use_nope && a->lse_approx,
            "attention defaults are InfLLM-V2's (32/16/64/1/2048/64/8192/false/true)");
    t_check(c.model.head_dim == 32, "derived head_dim 128 / 4 = 32, got %d", c.model.head_dim);
    t_check(c.model.max_position_embeddings == 512, "derived max_position_embeddings = 512");
    t_check(c.device == DEVICE_CPU && c.seed == 1234 && strcmp(c.resume, "auto") == 0 &&
                strcmp(c.run_dir, "runs/default") == 0,
            "top-level defaults");
    t_check(c.train.max_steps == 200 && c.train.micro_batch_size == 4 &&
                c.train.global_batch_size == 8 && c.train.lr == 3e-3 && c.train.min_lr == 3e-4 &&
                c.train.schedule == LR_SCHEDULE_COSINE && c.train.recompute == RECOMPUTE_NONE,
            "train defaults");
    t_check(config_local_blocks(&c) == 32, "local_blocks 2048 / 64 = 32");
    t_check(!config_sparse(&c, 8191) && config_sparse(&c, 8192), "dense below 8192, sparse at it");
    for (int i = 0; i < config_key_count(); i++)
        t_check(!config_is_set(&c, config_key_name(i)), "default %s marked as given",
                config_key_name(i));
    c.attention.dense_len = -1;
    t_check(config_sparse(&c, 64) && config_sparse(&c, 1), "dense_len -1: always sparse");
    t_check(config_key_name(-1) == NULL && config_key_name(config_key_count()) == NULL,
            "config_key_name out of range is NULL");
}

/* Every .json file of configs/ loads and validates (on a binary without CUDA, with device=cpu;
 * without the Hugging Face folder a config imports from: model.init_from is cleared). */
static void test_shipped_configs(void) {
    DIR *d = opendir("configs");
    if (!t_check(d != NULL, "configs/ not found: run from the project root")) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0) continue;
        char path[600], err[4096];
        snprintf(path, sizeof path, "configs/%s", e->d_name);
#ifdef INFLLM_CUDA
        char *sets[] = {"model.init_from="};
        struct job j = {path, 1, sets, 0, false};
#else
        char *sets[] = {"model.init_from=", "device=cpu"};
        struct job j = {path, 2, sets, 0, false};
#endif
        int rc = run_child(&j, err, sizeof err);
        t_check(rc == 0, "%s: exit %d: %s", path, rc, err);
        n++;
    }
    closedir(d);
    t_check(n >= 4, "found %d configs, expected at least 4", n);
    printf("  %d shipped configs load and validate\n", n);

    static struct config c;
    char *cpu[] = {"device=cpu", "model.init_from="};
    config_load(&c, "configs/sparse_cpu.json", 0, NULL);
    t_check(c.data.seq_len == 2048 && config_sparse(&c, c.data.seq_len) &&
                config_local_blocks(&c) == 2 && c.attention.topk == 4,
            "sparse_cpu: sparse at 2048 with 2 local blocks and topk 4");
    config_free(&c);
    config_load(&c, "configs/quickstart.json", 0, NULL);
    t_check(!config_sparse(&c, c.data.seq_len), "quickstart: dense");
    t_check(config_is_set(&c, "model.hidden_size") && !config_is_set(&c, "model.head_dim"),
            "config_is_set: hidden_size given, head_dim not");
    config_free(&c);
    config_load(&c, "configs/finetune_64k.json", 2, cpu);
    t_check(c.model.model_type == MODEL_TYPE_MINICPM && c.parallel.cp == 8 &&
                c.data.source == DATA_SOURCE_SHARDS && c.data.train_files.n > 0 &&
                config_sparse(&c, 65536) && !config_sparse(&c, 4096),
            "finetune_64k: minicpm, cp 8, shards, sparse at 64k and dense at 4k");
    config_validate(&c, 16); /* dp 2 x cp 8 */
    config_free(&c);
}

/* ---------------------------------------------------------------- --set */

static void test_set(void) {
    static struct config c;
    char *sets[] = {
        "model.hidden_size=256",            /* int (head_dim derived again: 64) */
        "data.seq_len=1024",                /* int64 */
        "seed=9007199254740992",            /* uint64 at its limit 2^53 */
        "train.lr=1e-4",                    /* double */
        "train.min_lr=1e-5",
        "model.tie_word_embeddings=false",  /* bool */
        "run_dir=runs/x y",                 /* bare string */
        "resume=2024",                      /* a number-looking string key stays a string */
        "train.schedule=wsd",               /* enum, bare */
        "data.source=\"synthetic\"",        /* enum, JSON */
        "data.train_files=[\"a.tok\",\"b.tok\"]", /* string list */
        "data.train_files=[\"c.tok\"]",     /* a later --set wins, the old list is freed */
        "model.rope_scaling.type=longrope", /* alias of rope_type */
        "model.rope_scaling.rope_type=\"longrope\"", /* JSON string */
        "model.rope_scaling.long_factor=[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,"
        "23,24,25,26,27,28,29,30,31,32.5]", /* number list: head_dim / 2 = 32 entries */
        "model.rope_scaling.short_factor=[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
        "1,1,1,0.5]",
        "model.rope_scaling.original_max_position_embeddings=512",
        "data.synthetic={\"n_pairs\": 5, \"n_queries\": 3}", /* a section as a JSON object */
        "attention.dense_len=-1",
    };
    int nset = (int)(sizeof sets / sizeof sets[0]);
    config_load(&c, "configs/quickstart.json", nset, sets);
    t_check(c.model.hidden_size == 256 && c.model.head_dim == 64, "int: hidden 256, head_dim 64");
    t_check(c.data.seq_len == 1024 && c.model.max_position_embeddings == 1024, "int64 seq_len");
    t_check(c.seed == 9007199254740992ull, "uint64 seed 2^53");
    t_check(c.train.lr == 1e-4 && c.train.min_lr == 1e-5, "double lr");
    t_check(!c.model.tie_word_embeddings, "bool false");
    t_check(strcmp(c.run_dir, "runs/x y") == 0, "bare string run_dir: %s", c.run_dir);
    t_check(strcmp(c.resume, "2024") == 0, "number-looking string stays text: %s", c.resume);
    t_check(c.train.schedule == LR_SCHEDULE_WSD && c.data.source == DATA_SOURCE_SYNTHETIC, "enums");
    t_check(c.data.train_files.n == 1 && strcmp(c.data.train_files.items[0], "c.tok") == 0,
            "string list replaced by the later --set");
    t_check(c.model.rope_scaling_type == ROPE_TYPE_LONGROPE &&
                c.model.rope_long_factor.n == 32 && c.model.rope_long_factor.items[31] == 32.5 &&
                c.model.rope_short_factor.items[31] == 0.5 &&
                c.model.rope_original_max_position_embeddings == 512,
            "rope_scaling through the alias and number lists");
    t_check(c.data.synthetic.n_pairs == 5 && c.data.synthetic.n_queries == 3 &&
                c.data.synthetic.n_keys == 64,
            "section object sets its keys and leaves the others");
    t_check(c.attention.dense_len == -1 && config_sparse(&c, 64), "dense_len -1");
    t_check(config_is_set(&c, "model.rope_scaling.rope_type") &&
                config_is_set(&c, "model.rope_scaling.type") &&
                config_is_set(&c, "data.synthetic.n_queries") &&
                !config_is_set(&c, "attention.topk"),
            "config_is_set after --set (alias included)");
    config_free(&c);
    t_check(c.data.train_files.n == 0, "config_free empties the lists");
}

/* ---------------------------------------------------------------- round trip */

static double rand_in(struct t_rng *r, double lo, double hi) {
    return lo + (hi - lo) * t_rng_uniform(r);
}

/* A printable string with JSON-hostile characters (quotes, backslash, tab, UTF-8). */
static void rand_string(struct t_rng *r, char *out, size_t cap) {
    static const char *const parts[] = {"a", "Z", "/", "\"", "\\", "\t", " ", "\xc3\xa9", "9", "-"};
    size_t n = 1 + t_rng_u64(r) % 40;
    out[0] = 'r';
    out[1] = '\0';
    for (size_t i = 0; i < n && strlen(out) + 3 < cap; i++)
        strcat(out, parts[t_rng_u64(r) % (sizeof parts / sizeof parts[0])]);
}

/* A random rope type with random values of the members it reads (the others stay unset). */
static void randomize_rope(struct t_rng *r, struct model_config *m) {
    enum rope_type t = (enum rope_type)(t_rng_u64(r) % 6);
    m->rope_scaling_type = t;
    m->rope_override = t_rng_u64(r) % 2;
    m->rope_original_max_position_embeddings = 1 + (int64_t)(t_rng_u64(r) % 100000);
    if (t != ROPE_TYPE_DEFAULT && t != ROPE_TYPE_LONGROPE) m->rope_factor = rand_in(r, 1, 64);
    if (t == ROPE_TYPE_YARN) {
        m->rope_attention_factor = rand_in(r, 0.5, 2);
        m->rope_beta_fast = rand_in(r, 8, 64);
        m->rope_beta_slow = rand_in(r, 0.5, 2);
        m->rope_mscale = rand_in(r, 0.1, 2);
        m->rope_mscale_all_dim = rand_in(r, 0.1, 2);
        m->rope_truncate = t_rng_u64(r) % 2;
    }
    if (t == ROPE_TYPE_LLAMA3) {
        m->rope_low_freq_factor = rand_in(r, 0.5, 2);
        m->rope_high_freq_factor = m->rope_low_freq_factor + rand_in(r, 0.5, 8);
    }
    if (t != ROPE_TYPE_LONGROPE) return;
    m->rope_factor = rand_in(r, 1, 64);
    m->rope_attention_factor = rand_in(r, 0.5, 2);
    m->rope_long_factor.n = m->rope_short_factor.n = m->head_dim / 2;
    for (int i = 0; i < m->head_dim / 2; i++) {
        m->rope_long_factor.items[i] = rand_in(r, 1e-3, 100);
        m->rope_short_factor.items[i] = rand_in(r, 1e-3, 100);
    }
}

/* Random values for every field, kept valid (config_load validates the written file). */
static void randomize(struct t_rng *r, struct config *c) {
    struct model_config *m = &c->model;
    rand_string(r, c->run_dir, sizeof c->run_dir);
    rand_string(r, c->resume, sizeof c->resume);
    m->init_from[0] = '\0'; /* a folder named here would be imported by config_load */
    c->seed = t_rng_u64(r) >> 11; /* < 2^53 */
    m->model_type = (enum model_type)(t_rng_u64(r) % 4);
    m->attention_bias = m->model_type != MODEL_TYPE_QWEN2 && t_rng_u64(r) % 2;
    m->num_key_value_heads = 1 + (int)(t_rng_u64(r) % 4);
    m->num_attention_heads = m->num_key_value_heads * (1 + (int)(t_rng_u64(r) % 4));
    m->head_dim = 2 * (2 + (int)(t_rng_u64(r) % 39)); /* >= 4: dynamic RoPE needs head_dim > 2 */
    m->hidden_size = 1 + (int)(t_rng_u64(r) % 3000);
    m->intermediate_size = 1 + (int)(t_rng_u64(r) % 9000);
    m->num_hidden_layers = 1 + (int)(t_rng_u64(r) % 60);
    m->vocab_size = 1000 + (int64_t)(t_rng_u64(r) % 200000);
    m->rope_theta = rand_in(r, 1, 1e6);
    m->rms_norm_eps = rand_in(r, 1e-7, 1e-4);
    m->tie_word_embeddings = t_rng_u64(r) % 2;
    m->scale_emb = rand_in(r, 0.1, 20);
    m->scale_depth = rand_in(r, 0.1, 3);
    m->dim_model_base = rand_in(r, 1, 1024);
    m->initializer_range = rand_in(r, 0, 0.2);
    m->max_position_embeddings = 1 + (int64_t)(t_rng_u64(r) % 1000000);
    randomize_rope(r, m);

    struct attention_config *a = &c->attention;
    a->kernel_stride = 1 + (int)(t_rng_u64(r) % 32);
    a->kernel_size = a->kernel_stride * (1 + (int)(t_rng_u64(r) % 4));
    a->block_size = a->kernel_stride * (1 + (int)(t_rng_u64(r) % 8));
    a->init_blocks = (int)(t_rng_u64(r) % 4);
    a->window_size = a->block_size * (int)(t_rng_u64(r) % 40);
    a->topk = a->init_blocks + 1 + (int)(t_rng_u64(r) % 100); /* at least init_blocks + 1 */
    a->dense_len = (int64_t)(t_rng_u64(r) % 100000) - 1;
    a->use_nope = t_rng_u64(r) % 2;
    a->lse_approx = t_rng_u64(r) % 2;

    c->parallel.cp = 1 + (int)(t_rng_u64(r) % 4);
    /* k blocks per chunk, a multiple of 4 and at least 12: with sparse cp, a chunk is then a
     * multiple of the 4 x kernel_stride unit and longer than a window's reach (<= 12 strides) */
    int64_t chunk = 2LL * c->parallel.cp * a->block_size, k = 4 * (3 + (int64_t)(t_rng_u64(r) % 16));
    if (chunk * k < 128) k = 4 * ((128 + 4 * chunk - 1) / (4 * chunk)); /* synthetic records */
    c->data.seq_len = chunk * k;
    c->data.source = (enum data_source)(t_rng_u64(r) % 2);
    struct string_list *lists[2] = {&c->data.train_files, &c->data.val_files};
    for (int l = 0; l < 2; l++) {
        lists[l]->n = 1 + (int)(t_rng_u64(r) % 5);
        for (int i = 0; i < lists[l]->n; i++) {
            char s[64];
            rand_string(r, s, sizeof s);
            lists[l]->items[i] = strdup(s);
        }
    }
    struct synthetic_config *s = &c->data.synthetic;
    s->n_pairs = 1 + (int)(t_rng_u64(r) % 8);
    s->n_queries = (int)(t_rng_u64(r) % 8);
    s->n_keys = s->n_pairs + (int)(t_rng_u64(r) % 100);
    s->n_values = 1 + (int)(t_rng_u64(r) % 100);
    s->answers_only = t_rng_u64(r) % 2;
    s->fraction = c->data.source == DATA_SOURCE_SHARDS && t_rng_u64(r) % 2 ? rand_in(r, 1e-6, 0.99) : 0;

    struct train_config *t = &c->train;
    t->max_steps = 1 + (int64_t)(t_rng_u64(r) % 100000);
    t->warmup_steps = (int64_t)(t_rng_u64(r) % (uint64_t)(t->max_steps + 1));
    t->micro_batch_size = 1 + (int)(t_rng_u64(r) % 8);
    t->global_batch_size = t->micro_batch_size * (1 + (int)(t_rng_u64(r) % 8));
    t->lr = rand_in(r, 1e-6, 1e-1);
    t->min_lr = t->lr * t_rng_uniform(r);
    t->schedule = (enum lr_schedule)(t_rng_u64(r) % 3);
    t->decay_fraction = t_rng_uniform(r);
    t->weight_decay = rand_in(r, 0, 1);
    t->beta1 = t_rng_uniform(r);
    t->beta2 = t_rng_uniform(r);
    t->eps = rand_in(r, 1e-12, 1e-6);
    t->grad_clip = rand_in(r, 0, 10);
    t->eval_every = (int64_t)(t_rng_u64(r) % 1000);
    t->eval_batches = 1 + (int)(t_rng_u64(r) % 64);
    t->recompute = (enum recompute)(t_rng_u64(r) % 3);
    t->exit_after_steps = (int64_t)(t_rng_u64(r) % 1000);
    t->guard_loss_spike = t_rng_u64(r) % 2 ? rand_in(r, 1, 10) : 0;
    t->guard_grad_norm = t_rng_u64(r) % 2 ? rand_in(r, 1, 1e4) : 0;
    c->checkpoint.every = (int64_t)(t_rng_u64(r) % 1000);
    c->checkpoint.keep_last = (int)(t_rng_u64(r) % 10);
    c->checkpoint.at_end = t_rng_u64(r) % 2;
    c->log.every = 1 + (int64_t)(t_rng_u64(r) % 100);
    c->log.profile_step = (int64_t)(t_rng_u64(r) % 100);
#ifdef INFLLM_CUDA
    c->device = (enum device_kind)(t_rng_u64(r) % 2);
#else
    c->device = DEVICE_CPU;
#endif
    /* documents: as many synthetic tasks as fit (at most 3) */
    bool docs = t_rng_u64(r) % 2;
    c->data.eod_token = docs && c->data.source == DATA_SOURCE_SHARDS
                            ? (int64_t)(t_rng_u64(r) % (uint64_t)m->vocab_size)
                            : -1;
    int fit = (int)((c->data.seq_len + 1) / (1 + 4 * (s->n_pairs + s->n_queries)));
    s->documents = docs || c->data.source == DATA_SOURCE_SHARDS
                       ? 1 + (int)(t_rng_u64(r) % (uint64_t)(fit < 3 ? fit : 3))
                       : 1;
}

/* Every field of struct config, by hand (independent of the key table). Returns the first field
 * that differs, or NULL. */
static const char *first_difference(const struct config *a, const struct config *b) {
#define SAME(f)                        \
    if (memcmp(&a->f, &b->f, sizeof a->f) != 0) return #f
#define SAME_STR(f)                    \
    if (strcmp(a->f, b->f) != 0) return #f
#define SAME_NUMS(f)                                                            \
    if (a->f.n != b->f.n) return #f;                                            \
    for (int i = 0; i < a->f.n; i++)                                            \
        if (a->f.items[i] != b->f.items[i]) return #f
#define SAME_STRS(f)                                                            \
    if (a->f.n != b->f.n) return #f;                                            \
    for (int i = 0; i < a->f.n; i++)                                            \
        if (strcmp(a->f.items[i], b->f.items[i]) != 0) return #f
    SAME_STR(run_dir); SAME(device); SAME(seed); SAME_STR(resume);
    SAME(model.model_type); SAME(model.vocab_size); SAME(model.hidden_size);
    SAME(model.intermediate_size); SAME(model.num_hidden_layers); SAME(model.num_attention_heads);
    SAME(model.num_key_value_heads); SAME(model.head_dim); SAME(model.rope_theta);
    SAME(model.rms_norm_eps); SAME(model.tie_word_embeddings); SAME(model.attention_bias);
    SAME(model.use_sliding_window); SAME(model.scale_emb);
    SAME(model.scale_depth); SAME(model.dim_model_base); SAME(model.initializer_range);
    SAME(model.max_position_embeddings); SAME(model.rope_scaling_type);
    SAME(model.rope_factor); SAME(model.rope_attention_factor); SAME(model.rope_beta_fast);
    SAME(model.rope_beta_slow); SAME(model.rope_mscale); SAME(model.rope_mscale_all_dim);
    SAME(model.rope_truncate); SAME(model.rope_low_freq_factor); SAME(model.rope_high_freq_factor);
    SAME_NUMS(model.rope_long_factor); SAME_NUMS(model.rope_short_factor);
    SAME(model.rope_original_max_position_embeddings); SAME(model.rope_override);
    SAME_STR(model.init_from);
    SAME(attention.kernel_size); SAME(attention.kernel_stride); SAME(attention.block_size);
    SAME(attention.init_blocks); SAME(attention.window_size); SAME(attention.topk);
    SAME(attention.dense_len); SAME(attention.use_nope); SAME(attention.lse_approx);
    SAME(data.seq_len); SAME(data.source); SAME_STRS(data.train_files); SAME_STRS(data.val_files);
    SAME_STRS(data.val_answer_files); SAME_NUMS(train.eval_buckets);
    SAME(data.synthetic.n_pairs); SAME(data.synthetic.n_queries); SAME(data.synthetic.n_keys);
    SAME(data.synthetic.n_values); SAME(data.synthetic.answers_only);
    SAME(data.eod_token); SAME(data.synthetic.documents); SAME(data.synthetic.fraction);
    SAME(train.max_steps); SAME(train.micro_batch_size); SAME(train.global_batch_size);
    SAME(train.lr); SAME(train.min_lr); SAME(train.warmup_steps); SAME(train.schedule);
    SAME(train.decay_fraction); SAME(train.weight_decay); SAME(train.beta1); SAME(train.beta2);
    SAME(train.eps); SAME(train.grad_clip); SAME(train.eval_every); SAME(train.eval_batches);
    SAME(train.recompute); SAME(train.exit_after_steps); SAME(train.guard_loss_spike);
    SAME(train.guard_grad_norm);
    SAME(parallel.cp); SAME(checkpoint.every); SAME(checkpoint.keep_last); SAME(checkpoint.at_end); SAME(log.every);
    SAME(log.profile_step);
    return NULL;
#undef SAME
#undef SAME_STR
#undef SAME_NUMS
#undef SAME_STRS
}

/* The hand-written comparison above covers this many keys (rope_scaling counted as four). */
enum { FIELDS_COMPARED = 85 };

static void test_round_trip(struct t_rng *r) {
    static struct config a, b;
    for (int round = 0; round < 20; round++) {
        config_defaults(&a);
        randomize(r, &a);
        config_validate(&a, a.parallel.cp); /* must hold, or the reload would die */
        char *json = config_to_json(&a);
        char path[512];
        write_tmp(path, sizeof path, "round_trip.json", json);
        free(json);
        config_load(&b, path, 0, NULL);
        snprintf(b.path, sizeof b.path, "%s", a.path); /* the only field that may differ */
        const char *diff = first_difference(&a, &b);
        if (!t_check(diff == NULL, "round trip %d: %s differs after config_to_json -> config_load",
                     round, diff ? diff : ""))
            break;
        for (int i = 0; i < config_key_count(); i++)
            if (!t_check(config_is_set(&b, config_key_name(i)), "round trip: %s not written",
                         config_key_name(i)))
                break;
        config_free(&a);
        config_free(&b);
    }
    t_check(config_key_count() == FIELDS_COMPARED,
            "the key table has %d keys, the round-trip comparison covers %d fields: update both",
            config_key_count(), FIELDS_COMPARED);
    printf("  20 random configs survive config_to_json -> config_load exactly (%d keys)\n",
           config_key_count());
}

/* ---------------------------------------------------------------- documentation and table */

static void test_doc_and_print(void) {
    char *doc = NULL, *table = NULL;
    size_t doc_len = 0, table_len = 0;
    FILE *f = open_memstream(&doc, &doc_len);
    config_write_doc(f);
    fclose(f);
    static struct config c;
    config_defaults(&c);
    config_validate(&c, 1);
    f = open_memstream(&table, &table_len);
    config_print(&c, f);
    fclose(f);
    int missing_doc = 0, missing_table = 0;
    for (int i = 0; i < config_key_count(); i++) {
        char quoted[200], row[200];
        snprintf(quoted, sizeof quoted, "| `%s` |", config_key_name(i));
        snprintf(row, sizeof row, "  %s ", config_key_name(i));
        if (!t_check(strstr(doc, quoted) != NULL, "doc has no row for %s", config_key_name(i)))
            missing_doc++;
        if (!t_check(strstr(table, row) != NULL, "config_print has no row for %s",
                     config_key_name(i)))
            missing_table++;
    }
    const char *sections[] = {"## model", "## attention", "## data", "## train", "## parallel",
                              "## checkpoint", "## log"};
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++)
        t_check(strstr(doc, sections[s]) != NULL, "doc has no section %s", sections[s]);
    printf("  doc (%zu bytes) and table name all %d keys\n", doc_len, config_key_count());
    free(doc);
    free(table);
}


/* ---------------------------------------------------------------- size arithmetic */

/* checked.h: saturating products and sums at the edges of int64_t; and a budget past the
 * sequence's blocks whose sum with the window wraps int is accepted (config_load would exit 2). */
static void test_size_arithmetic(void) {
    const int64_t big = (int64_t)1 << 31;
    t_check(sat_mul(big, big) == SIZE_LIMIT && sat_mul(big, 2 * big) == SIZE_SAT &&
                sat_mul(SIZE_SAT, 0) == 0 && sat_mul(-1, 2) == SIZE_SAT &&
                sat_mul(3037000499, 3037000499) == 9223372030926249001 &&
                sat_mul(3037000500, 3037000500) == SIZE_SAT,
            "sat_mul at the edges of int64_t");
    t_check(sat_add(SIZE_SAT - 1, 1) == SIZE_SAT && sat_add(SIZE_SAT, 1) == SIZE_SAT &&
                sat_add(1, -1) == SIZE_SAT && size_add(SIZE_LIMIT - 1, 1) == SIZE_LIMIT &&
                size_mul(big, big) == SIZE_LIMIT,
            "sat_add and size_mul / size_add up to SIZE_LIMIT");
    static struct config c;
    char *sets[] = {"attention.topk=2147483647", "attention.dense_len=-1",
                    "attention.window_size=2147483584"};
    config_load(&c, "configs/quickstart.json", 3, sets);
    t_check(c.attention.topk == 2147483647 && config_local_blocks(&c) == 33554431,
            "topk 2^31 - 1 with a window of 2^31 - 64 tokens: accepted");
    config_free(&c);
}

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if (argc == 3 && strcmp(argv[1], "--seed") == 0) seed = strtoull(argv[2], NULL, 10);
    printf("test_config: seed %llu\n", (unsigned long long)seed);
    struct t_rng r = {seed};
    tmp_create();
    test_defaults();
    test_shipped_configs();
    test_set();
    test_round_trip(&r);
    test_doc_and_print();
    test_size_arithmetic();
    tmp_remove();
    return t_finish("test_config");
}
