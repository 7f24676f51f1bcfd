/*
 * test_config.c: the configuration system (src/config*.c): defaults that validate, every shipped
 * config loading, --set overrides of every key type, a random config surviving config_to_json ->
 * config_load exactly (every field of struct config compared by hand, so a field missing from the
 * key table fails here), the documentation and start-up table naming every key, and every
 * rejection path: each runs config_load (or config_validate) in a forked child whose stderr goes to
 * a pipe; the child must exit with code 2 and print exactly one line that names the key path.
 *
 * Everything compared is exact (integers, strings, doubles written with round-trip precision):
 * no tolerances. Random inputs come from a fresh seed each run (printed; replay with
 * `test_config --seed S`). Temporary files live in a mkdtemp() folder under /tmp, removed at the
 * end.
 * Run from the project root (configs/ is read relative to it).
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "config.h"
#include "hf.h"
#include "testlib.h"

static char tmp_dir[] = "/tmp/test_config.XXXXXX";

/* ---------------------------------------------------------------- helpers */

/* Writes text to <tmp_dir>/<name>; the path goes to out. */
static void write_tmp(char *out, size_t n, const char *name, const char *text) {
    snprintf(out, n, "%s/%s", tmp_dir, name);
    FILE *f = fopen(out, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        printf("FAIL cannot write %s\n", out);
        exit(1);
    }
}

/* What a child does: load `path` with `sets`, then (world > 0) validate for `world` ranks. With
 * import, the run's sequence instead: read, import model.init_from's config.json, validate. */
struct job {
    const char *path;
    int nset;
    char *const *sets;
    int world;
    bool import;
};

/* Runs the job in a child with stderr on a pipe. Returns the exit status (128 + signal when
 * killed); the child's stderr goes to err. */
static int run_child(const struct job *j, char *err, size_t n) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        static struct config c;
        if (j->import) {
            config_read(&c, j->path, j->nset, j->sets);
            hf_import_config(&c);
            config_validate(&c, j->world);
        } else {
            config_load(&c, j->path, j->nset, j->sets);
        }
        if (j->world > 0) config_validate(&c, j->world);
        config_free(&c);
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(fd[0], err + got, n - 1 - got)) > 0) got += (size_t)r;
    err[got] = '\0';
    char sink[256];
    while (read(fd[0], sink, sizeof sink) > 0) {
    }
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The job must die with exit code 2 and one line on stderr containing every `want` (NULL-ended). */
static void expect_reject(const char *what, const struct job *j, const char *const *want) {
    char err[4096];
    int rc = run_child(j, err, sizeof err);
    size_t len = strlen(err);
    bool one_line = len > 0 && err[len - 1] == '\n' && strchr(err, '\n') == err + len - 1;
    bool ok = rc == 2 && one_line && strncmp(err, "error: ", 7) == 0;
    for (int i = 0; want[i]; i++) ok = ok && strstr(err, want[i]) != NULL;
    if (!t_check(ok, "%s: exit %d, stderr: %s (wanted exit 2, one line with the key)", what, rc,
                 err))
        return;
    printf("  ok %-34s %s", what, err);
}

/* A file with `text` must be rejected with a message containing the words of want. */
#define REJECT_FILE(name, text, ...)                                                 \
    do {                                                                             \
        char p_[512];                                                                \
        write_tmp(p_, sizeof p_, "bad.json", text);                                  \
        struct job j_ = {p_, 0, NULL, 0, false};                                     \
        expect_reject(name, &j_, (const char *const[]){__VA_ARGS__, NULL});          \
    } while (0)

/* configs/quickstart.json with one --set must be rejected. */
#define REJECT_SET(name, set, ...)                                                   \
    do {                                                                             \
        char *s_[] = {set};                                                          \
        struct job j_ = {"configs/quickstart.json", 1, s_, 0, false};                \
        expect_reject(name, &j_, (const char *const[]){__VA_ARGS__, NULL});          \
    } while (0)

/* The default config (an empty file) importing a Hugging Face folder whose config.json is `hf`
 * (plus a --set `extra` when not NULL) must be rejected with a message containing want's words. */
#define REJECT_IMPORT(name, hf, extra, ...)                                          \
    do {                                                                             \
        char p_[512], b_[512], from_[600];                                           \
        write_tmp(p_, sizeof p_, "hf/config.json", hf);                              \
        write_tmp(b_, sizeof b_, "base.json", "{}");                                 \
        snprintf(from_, sizeof from_, "model.init_from=%s/hf", tmp_dir);             \
        char *s_[] = {from_, extra};                                                 \
        struct job j_ = {b_, extra ? 2 : 1, s_, 0, true};                            \
        expect_reject(name, &j_, (const char *const[]){__VA_ARGS__, NULL});          \
    } while (0)

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

/* ---------------------------------------------------------------- rejections */

/* A Hugging Face config.json goes through the same checks as our config file (config_import):
 * errors name config.json and its field. One accepted import first: the shape lands in the config,
 * with Hugging Face's defaults for absent fields. */
static void test_import(void) {
    char dir[512], path[600], from[600];
    snprintf(dir, sizeof dir, "%s/hf", tmp_dir);
    mkdir(dir, 0755);
    /* LongRoPE with both spellings of the type, as some files write it, and the original context
     * at the top level */
    const char *good = "{\"model_type\": \"minicpm\", \"vocab_size\": 512, \"hidden_size\": 64, "
                       "\"intermediate_size\": 96, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 4, \"scale_emb\": 12, \"torch_dtype\": \"bf16\", "
                       "\"rope_scaling\": {\"type\": \"longrope\", \"rope_type\": \"longrope\", "
                       "\"long_factor\": [1, 2, 3, 4, 5, 6, 7, 8], \"short_factor\": [1, 1, 1, 1, 1, "
                       "1, 1, 1]}, \"original_max_position_embeddings\": 256}";
    write_tmp(path, sizeof path, "hf/config.json", good);
    char empty[512];
    write_tmp(empty, sizeof empty, "base.json", "{}");
    snprintf(from, sizeof from, "model.init_from=%s", dir);
    char *sets[] = {from, "model.hidden_size=64"};
    static struct config c;
    config_read(&c, empty, 2, sets);
    hf_import_config(&c);
    config_validate(&c, 1);
    const struct model_config *m = &c.model;
    t_check(m->model_type == MODEL_TYPE_MINICPM && m->hidden_size == 64 &&
                m->intermediate_size == 96 && m->num_hidden_layers == 2 &&
                m->num_key_value_heads == 4 && m->head_dim == 16 && m->tie_word_embeddings &&
                m->scale_emb == 12 && m->rope_scaling_type == ROPE_TYPE_LONGROPE &&
                m->rope_long_factor.n == 8 && m->rope_long_factor.items[7] == 8 &&
                m->rope_original_max_position_embeddings == 256,
            "import: shape, MHA and tied defaults, derived head_dim, scale_emb, LongRoPE");
    config_free(&c);
    const char *base = "\"model_type\": \"llama\", \"vocab_size\": 512, \"intermediate_size\": 96, "
                       "\"num_hidden_layers\": 2";
    char hf[600];
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": -64, \"num_attention_heads\": 4}", base);
    REJECT_IMPORT("import: negative size", hf, NULL, "hf/config.json: hidden_size",
                  "expected a positive integer", "got -64");
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": \"big\", \"num_attention_heads\": 4}", base);
    REJECT_IMPORT("import: wrong type", hf, NULL, "hf/config.json: hidden_size", "got \"big\"");
    snprintf(hf, sizeof hf, "{%s, \"num_attention_heads\": 4}", base);
    REJECT_IMPORT("import: missing field", hf, NULL, "hf/config.json", "\"hidden_size\" is missing");
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": 64, \"num_attention_heads\": 4, "
             "\"num_key_value_heads\": 3}", base);
    REJECT_IMPORT("import: cross-key rule", hf, NULL, "hf/config.json: num_key_value_heads",
                  "does not divide num_attention_heads = 4");
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": 64, \"num_attention_heads\": 4, "
             "\"rope_scaling\": {\"rope_type\": \"ntk\"}}", base);
    REJECT_IMPORT("import: rope type", hf, NULL, "hf/config.json: rope_scaling.rope_type",
                  "\"ntk\"");
    snprintf(hf, sizeof hf, "{\"model_type\": \"mistral\", \"vocab_size\": 512, "
             "\"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2, "
             "\"num_attention_heads\": 4}");
    REJECT_IMPORT("import: model type", hf, NULL, "hf/config.json: model_type", "\"mistral\"");
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": 64, \"num_attention_heads\": 4}", base);
    REJECT_IMPORT("import: disagrees with --set", hf, "model.hidden_size=128",
                  "model.hidden_size is 128 but", "hf/config.json says 64");
}

/* Qwen: the family's fields and defaults (Qwen3's head_dim 128 when config.json has none; qwen2
 * ignores attention_bias, which its config class lacks), sliding windows refused. */
static void test_import_qwen(void) {
    const char *base = "\"vocab_size\": 512, \"hidden_size\": 64, \"intermediate_size\": 96, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                       "\"num_key_value_heads\": 2";
    char hf[600], path[512], empty[512], from[600];
    snprintf(hf, sizeof hf, "{\"model_type\": \"qwen3\", %s, \"attention_bias\": true, "
             "\"use_sliding_window\": false, \"sliding_window\": null}", base);
    write_tmp(path, sizeof path, "hf/config.json", hf);
    write_tmp(empty, sizeof empty, "base.json", "{}");
    snprintf(from, sizeof from, "model.init_from=%s/hf", tmp_dir);
    char *sets[] = {from};
    static struct config c;
    config_read(&c, empty, 1, sets);
    hf_import_config(&c);
    config_validate(&c, 1);
    t_check(c.model.model_type == MODEL_TYPE_QWEN3 && c.model.head_dim == 128 &&
                c.model.attention_bias && !c.model.tie_word_embeddings,
            "import qwen3: head_dim %d (128 by default), attention_bias, untied", c.model.head_dim);
    config_free(&c);
    snprintf(hf, sizeof hf, "{\"model_type\": \"qwen2\", %s, \"attention_bias\": true}", base);
    write_tmp(path, sizeof path, "hf/config.json", hf);
    config_read(&c, empty, 1, sets);
    hf_import_config(&c);
    config_validate(&c, 1);
    t_check(c.model.model_type == MODEL_TYPE_QWEN2 && c.model.head_dim == 16 &&
                !c.model.attention_bias,
            "import qwen2: derived head_dim, attention_bias not a qwen2 field");
    config_free(&c);
    snprintf(hf, sizeof hf, "{\"model_type\": \"qwen2\", %s, \"use_sliding_window\": true, "
             "\"sliding_window\": 4096}", base);
    REJECT_IMPORT("import: sliding window", hf, NULL, "hf/config.json: use_sliding_window",
                  "not implemented");
    REJECT_FILE("qwen2 with attention_bias",
                "{\"model\": {\"model_type\": \"qwen2\", \"attention_bias\": true}}",
                "model.attention_bias", "qwen2");
}

static void test_rejections(void) {
    /* unknown keys, with the closest known one */
    REJECT_FILE("unknown key", "{\"train\": {\"max_step\": 3}}", "bad.json",
                "unknown key \"train.max_step\"", "did you mean \"train.max_steps\"");
    REJECT_FILE("nested unknown key", "{\"data\": {\"synthetic\": {\"n_pair\": 4}}}",
                "\"data.synthetic.n_pair\"", "did you mean \"data.synthetic.n_pairs\"");
    REJECT_FILE("key in the wrong section", "{\"hidden_size\": 64}",
                "did you mean \"model.hidden_size\"");
    REJECT_FILE("dotted name", "{\"model.hidden_size\": 64}", "\"model.hidden_size\"", "nest");
    REJECT_FILE("duplicate key", "{\"seed\": 1, \"seed\": 2}", "\"seed\" appears twice");
    REJECT_FILE("duplicate through alias",
                "{\"model\": {\"rope_scaling\": {\"type\": \"longrope\", \"rope_type\": \"x\"}}}",
                "model.rope_scaling.rope_type", "twice");
    /* wrong type, one per kind */
    REJECT_FILE("int: string", "{\"model\": {\"hidden_size\": \"abc\"}}",
                "bad.json: model.hidden_size: expected a positive integer, got \"abc\"");
    REJECT_FILE("int64: bool", "{\"data\": {\"seq_len\": true}}", "data.seq_len",
                "expected a positive integer", "got true");
    REJECT_FILE("uint64: negative", "{\"seed\": -1}", "seed", "non-negative integer", "got -1");
    REJECT_FILE("double: string", "{\"train\": {\"lr\": \"fast\"}}", "train.lr",
                "expected a number", "got \"fast\"");
    REJECT_FILE("bool: string", "{\"model\": {\"tie_word_embeddings\": \"yes\"}}",
                "model.tie_word_embeddings", "expected true or false");
    REJECT_FILE("string: number", "{\"run_dir\": 5}", "run_dir", "expected a string", "got 5");
    REJECT_FILE("enum: bad name", "{\"train\": {\"schedule\": \"linear\"}}", "train.schedule",
                "one of \"cosine\", \"wsd\", \"constant\"", "got \"linear\"");
    REJECT_FILE("enum: number", "{\"device\": 1}", "device", "one of \"cpu\", \"cuda\"");
    REJECT_FILE("string list: string", "{\"data\": {\"train_files\": \"a.tok\"}}",
                "data.train_files", "expected a list of strings");
    REJECT_FILE("string list: mixed", "{\"data\": {\"val_files\": [\"a.tok\", 3]}}",
                "data.val_files", "expected a list of strings");
    REJECT_FILE("number list: mixed",
                "{\"model\": {\"rope_scaling\": {\"long_factor\": [1, \"x\"]}}}",
                "model.rope_scaling.long_factor", "expected a list of numbers");
    REJECT_FILE("section: number", "{\"data\": {\"synthetic\": 3}}", "data.synthetic",
                "expected an object");
    REJECT_FILE("section: null", "{\"train\": null}", "train", "expected an object");
    /* integers and ranges */
    REJECT_FILE("non-integer int", "{\"model\": {\"num_hidden_layers\": 2.5}}",
                "model.num_hidden_layers", "expected a positive integer", "got 2.5");
    REJECT_FILE("int out of range", "{\"model\": {\"hidden_size\": 3e10}}",
                "model.hidden_size", "<= 2147483647", "got 30000000000");
    REJECT_FILE("zero size", "{\"model\": {\"intermediate_size\": 0}}",
                "model.intermediate_size", "positive integer", "got 0");
    REJECT_FILE("dense_len below -1", "{\"attention\": {\"dense_len\": -2}}",
                "attention.dense_len", "integer >= -1");
    REJECT_FILE("beta at 1", "{\"train\": {\"beta2\": 1}}", "train.beta2", "[0, 1)");
    REJECT_FILE("decay_fraction above 1", "{\"train\": {\"decay_fraction\": 1.5}}",
                "train.decay_fraction", "[0, 1]");
    REJECT_FILE("seed above 2^53", "{\"seed\": 1e17}", "seed", "<= 9007199254740992");
    /* cross-key checks */
    REJECT_FILE("heads not dividing",
                "{\"model\": {\"num_attention_heads\": 6, \"num_key_value_heads\": 4}}",
                "model.num_key_value_heads", "does not divide num_attention_heads = 6");
    REJECT_FILE("hidden not divisible by heads",
                "{\"model\": {\"hidden_size\": 100, \"num_attention_heads\": 3, "
                "\"num_key_value_heads\": 1}}",
                "model.head_dim", "divide");
    REJECT_FILE("odd head_dim", "{\"model\": {\"head_dim\": 33}}", "model.head_dim", "odd");
    REJECT_FILE("seq_len vs block_size", "{\"data\": {\"seq_len\": 1000}}", "data.seq_len",
                "attention.block_size = 64");
    REJECT_FILE("seq_len vs cp chunks", "{\"parallel\": {\"cp\": 2}, \"data\": {\"seq_len\": 192}}",
                "data.seq_len", "2 x parallel.cp");
    REJECT_FILE("sparse cp chunk vs window reach",
                "{\"parallel\": {\"cp\": 2}, \"data\": {\"seq_len\": 256}, \"attention\": "
                "{\"dense_len\": -1, \"kernel_size\": 64, \"kernel_stride\": 16}}",
                "data.seq_len", "chunks of 64 tokens", "window's reach");
    REJECT_FILE("block_size vs stride", "{\"attention\": {\"block_size\": 40}}",
                "attention.block_size", "kernel_stride = 16");
    REJECT_FILE("kernel_size vs stride", "{\"attention\": {\"kernel_size\": 40}}",
                "attention.kernel_size", "kernel_stride");
    REJECT_FILE("window vs block", "{\"attention\": {\"window_size\": 100}}",
                "attention.window_size", "block_size = 64");
    REJECT_FILE("no block selected", "{\"attention\": {\"topk\": 0, \"window_size\": 0}}",
                "attention.topk");
    REJECT_FILE("topk below the forced blocks",
                "{\"attention\": {\"topk\": 1, \"init_blocks\": 1}}", "attention.topk",
                "init_blocks + 1");
    REJECT_FILE("batch not a multiple", "{\"train\": {\"global_batch_size\": 6}}",
                "train.global_batch_size", "micro_batch_size");
    REJECT_FILE("warmup beyond max_steps", "{\"train\": {\"warmup_steps\": 300}}",
                "train.warmup_steps", "max_steps = 200");
    REJECT_FILE("min_lr above lr", "{\"train\": {\"min_lr\": 0.1}}", "train.min_lr");
    REJECT_FILE("eval without batches", "{\"train\": {\"eval_batches\": 0}}",
                "train.eval_batches");
    REJECT_FILE("recompute unknown", "{\"train\": {\"recompute\": \"selective\"}}",
                "train.recompute", "\"none\", \"attention\", \"full\"");
    REJECT_FILE("longrope factor count",
                "{\"model\": {\"rope_scaling\": {\"rope_type\": \"longrope\", "
                "\"long_factor\": [1, 2], \"short_factor\": [1, 2], "
                "\"original_max_position_embeddings\": 256}}}",
                "model.rope_scaling.long_factor", "head_dim / 2 = 16");
    REJECT_FILE("unknown rope type", "{\"model\": {\"rope_scaling\": {\"rope_type\": \"ntk\"}}}",
                "model.rope_scaling.rope_type", "\"longrope\", \"llama3\"", "got \"ntk\"");
    REJECT_FILE("yarn without factor", "{\"model\": {\"rope_scaling\": {\"rope_type\": \"yarn\"}}}",
                "model.rope_scaling.factor", "positive number with rope_type yarn");
    REJECT_FILE("member of another rope type",
                "{\"model\": {\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4, "
                "\"low_freq_factor\": 1}}}",
                "model.rope_scaling.low_freq_factor", "not read by rope_type yarn");
    REJECT_FILE("llama3 band",
                "{\"model\": {\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
                "\"low_freq_factor\": 4, \"high_freq_factor\": 1}}}",
                "model.rope_scaling.high_freq_factor", "not above low_freq_factor = 4");
    REJECT_FILE("truncate without yarn",
                "{\"model\": {\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2, "
                "\"truncate\": false}}}",
                "model.rope_scaling.truncate", "yarn only");
    REJECT_FILE("longrope lists on plain RoPE",
                "{\"model\": {\"rope_scaling\": {\"short_factor\": [1]}}}",
                "model.rope_scaling.short_factor", "longrope only");
    REJECT_FILE("synthetic task vocabulary", "{\"model\": {\"vocab_size\": 100}}",
                "model.vocab_size", "synthetic");
    REJECT_FILE("synthetic task keys", "{\"data\": {\"synthetic\": {\"n_keys\": 4}}}",
                "data.synthetic.n_keys");
    REJECT_FILE("synthetic task too long", "{\"data\": {\"seq_len\": 64, \"synthetic\": "
                "{\"n_pairs\": 20, \"n_keys\": 64}}}", "data.seq_len", "too short");
    REJECT_FILE("shards without files", "{\"data\": {\"source\": \"shards\"}}",
                "data.train_files");
    REJECT_FILE("eod token with the synthetic task", "{\"data\": {\"eod_token\": 2}}",
                "data.eod_token", "data.synthetic.documents");
    REJECT_FILE("eod token past the vocabulary",
                "{\"data\": {\"source\": \"shards\", \"train_files\": [\"x.tok\"], "
                "\"eod_token\": 512}}", "data.eod_token", "model.vocab_size = 512");
    REJECT_FILE("eod token below -1", "{\"data\": {\"eod_token\": -2}}", "data.eod_token",
                "integer >= -1");
    REJECT_FILE("synthetic documents do not fit", "{\"data\": {\"seq_len\": 64, \"synthetic\": "
                "{\"documents\": 3}}}", "data.synthetic.documents is 3", "need 147");
    REJECT_FILE("a synthetic share of the synthetic task", "{\"data\": {\"synthetic\": "
                "{\"fraction\": 0.5}}}", "data.synthetic.fraction", "data.source \"shards\" to mix");
    REJECT_FILE("a synthetic share of 1", "{\"data\": {\"source\": \"shards\", \"train_files\": "
                "[\"x.tok\"], \"synthetic\": {\"fraction\": 1}}}", "data.synthetic.fraction");
    REJECT_FILE("a synthetic share that rounds to 1", "{\"data\": {\"source\": \"shards\", "
                "\"train_files\": [\"x.tok\"], \"synthetic\": {\"fraction\": 0.9999996}}}",
                "data.synthetic.fraction", "rounds to 1000000");
    REJECT_FILE("a synthetic share below a millionth", "{\"data\": {\"source\": \"shards\", "
                "\"train_files\": [\"x.tok\"], \"synthetic\": {\"fraction\": 1e-7}}}",
                "data.synthetic.fraction", "rounds to 0");
    REJECT_FILE("a synthetic share whose task does not fit", "{\"data\": {\"source\": "
                "\"shards\", \"train_files\": [\"x.tok\"], \"seq_len\": 64, \"synthetic\": "
                "{\"fraction\": 0.1, \"n_pairs\": 20, \"n_keys\": 64}}}", "data.seq_len",
                "too short");
    REJECT_FILE("empty resume", "{\"resume\": \"\"}", "resume");
    /* sizes (config_sizes.c): each past what holds it, named by its key */
    REJECT_FILE("layers past the table", "{\"model\": {\"num_hidden_layers\": 65537}}",
                "model.num_hidden_layers", "<= 65536", "got 65537");
    REJECT_FILE("q row past int", "{\"model\": {\"num_attention_heads\": 65536, "
                "\"num_key_value_heads\": 1, \"head_dim\": 65536}}", "model.num_attention_heads",
                "= 4294967296 values in a row of q", "2^31 - 1");
    REJECT_FILE("K2 window past int", "{\"attention\": {\"kernel_size\": 1073741824}}",
                "attention.kernel_size", "4 x kernel_size = 4294967296");
    REJECT_FILE("micro-batch rows past int", "{\"train\": {\"micro_batch_size\": 4194304, "
                "\"global_batch_size\": 4194304}}", "train.micro_batch_size",
                "= 2147483648 tokens in one micro-batch");
    REJECT_FILE("run tokens past 2^62", "{\"train\": {\"max_steps\": 9007199254740992, "
                "\"micro_batch_size\": 1, \"global_batch_size\": 1024}}", "train.max_steps",
                "tokens in the run", "2^62");
    REJECT_FILE("parameters past 2^62 bytes", "{\"model\": {\"vocab_size\": 2147483647, "
                "\"hidden_size\": 2147483646, \"num_attention_heads\": 2, "
                "\"num_key_value_heads\": 1, \"head_dim\": 64}}", "model.vocab_size",
                "4.61e+18 parameters", "beyond the limit of 2^62 bytes");
    REJECT_FILE("activations past 2^62 bytes", "{\"model\": {\"num_hidden_layers\": 65536, "
                "\"hidden_size\": 1048576, \"num_attention_heads\": 4, \"head_dim\": 64}, "
                "\"data\": {\"seq_len\": 2147483584}, \"train\": {\"micro_batch_size\": 1, "
                "\"global_batch_size\": 1}}", "data.seq_len", "activations of one micro-batch",
                "beyond the limit of 2^62 bytes");
#ifndef INFLLM_CUDA
    REJECT_FILE("cuda without backend", "{\"device\": \"cuda\"}", "device",
                "without the CUDA backend");
#endif
    {
        char *sets[] = {"parallel.cp=2", "data.seq_len=512"};
        struct job j = {"configs/quickstart.json", 2, sets, 3, false};
        expect_reject("ranks vs cp", &j, (const char *const[]){"parallel.cp", "ranks 3", NULL});
        struct job k = {"configs/quickstart.json", 2, sets, 8, false}; /* dp 4: 4 x 4 does not divide 8 */
        expect_reject("batch vs dp", &k,
                      (const char *const[]){"train.global_batch_size", "dp", NULL});
    }
    /* malformed files */
    REJECT_FILE("malformed JSON",
                "{\n  \"model\": {\n    \"hidden_size\": 128\n    \"x\": 1\n  }\n}\n",
                "bad.json", "line 4, column 5", "malformed JSON");
    REJECT_FILE("text after the object", "{\"seed\": 1}\n\nxyz\n", "bad.json", "line 3",
                "unexpected text");
    REJECT_FILE("not an object", "[1, 2]", "bad.json", "expected a JSON object");
    REJECT_FILE("empty file", "", "bad.json", "line 1", "malformed JSON");
    {
        char missing[512];
        snprintf(missing, sizeof missing, "%s/no_such.json", tmp_dir);
        struct job j = {missing, 0, NULL, 0, false};
        expect_reject("missing file", &j,
                      (const char *const[]){"no_such.json: cannot read: No such file", NULL});
        struct job d = {tmp_dir, 0, NULL, 0, false};
        expect_reject("folder as file", &d, (const char *const[]){"cannot read", NULL});
    }
    /* --set */
    REJECT_SET("--set bad number", "train.lr=abc",
               "--set train.lr=abc: expected a number >= 0, got \"abc\"");
    REJECT_SET("--set trailing junk", "train.lr=1e-4x", "--set train.lr=1e-4x",
               "expected a number");
    REJECT_SET("--set unknown key", "train.max_step=3", "--set train.max_step=3",
               "unknown key \"train.max_step\"", "did you mean \"train.max_steps\"");
    REJECT_SET("--set bad enum", "device=tpu", "--set device=tpu", "one of \"cpu\", \"cuda\"");
    REJECT_SET("--set bad bool", "model.tie_word_embeddings=yes", "model.tie_word_embeddings",
               "true or false");
    REJECT_SET("--set list as string", "data.train_files=a.tok", "data.train_files",
               "list of strings");
    REJECT_SET("--set no value", "train.lr", "--set train.lr", "key.path=value");
    REJECT_SET("--set section not object", "data.synthetic=5", "data.synthetic", "object");
    REJECT_SET("--set nested unknown", "data.synthetic={\"n_pair\": 1}",
               "\"data.synthetic.n_pair\"", "did you mean \"data.synthetic.n_pairs\"");
    REJECT_SET("--set nested bad type", "data.synthetic={\"n_pairs\": \"x\"}",
               "data.synthetic.n_pairs", "positive integer");
    REJECT_SET("--set breaks a cross check", "data.seq_len=100", "data.seq_len", "block_size");
}

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
    if (!mkdtemp(tmp_dir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    test_defaults();
    test_shipped_configs();
    test_set();
    test_round_trip(&r);
    test_doc_and_print();
    test_rejections();
    test_size_arithmetic();
    test_import();
    test_import_qwen();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", tmp_dir);
    return t_finish("test_config");
}
