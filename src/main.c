/*
 * main.c: the command line.
 *
 *   infllm-train CONFIG [--set key.path=value]... [--dry-run]   train (or only check and plan)
 *   infllm-train export CKPT OUT [--dtype T] [--max-shard-bytes N] [--force]  Hugging Face folder
 *   infllm-train eval MODEL CONFIG [--set key.path=value]...     validation loss and retrieval accuracy
 *   infllm-train config-doc                                      print the config reference
 *   infllm-train --help | --version
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "checkpoint.h"
#include "fsutil.h"
#include "hf.h"
#include "log.h"
#include "config.h"
#include "grid.h"
#include "train.h"

#define INFLLM_VERSION "0.1.0"

static void usage(FILE *f) {
    fprintf(f,
            "usage: infllm-train CONFIG [--set key.path=value]... [--dry-run]\n"
            "       infllm-train export CHECKPOINT OUT_FOLDER [--dtype bfloat16|float32]\n"
            "                          [--max-shard-bytes N] [--force]\n"
            "       infllm-train eval MODEL CONFIG [--set key.path=value]...\n"
            "       infllm-train config-doc\n"
            "       infllm-train --help | --version\n"
            "\n"
            "Trains the model of CONFIG (JSON; every key in docs/CONFIG.md). Under mpirun, the\n"
            "ranks form a dp x cp grid (parallel.cp ranks share each sequence).\n"
            "  --set key.path=value  override a config key (repeatable); the value is JSON or a\n"
            "                        bare string\n"
            "  --dry-run             load and check the config, print it and the memory plan, exit\n"
            "\n"
            "export writes a Hugging Face folder (config.json, safetensors in bf16 or --dtype\n"
            "float32, the tokenizer, chat template and generation files of the imported model)\n"
            "from a checkpoint folder or its `latest` pointer file. It refuses\n"
            "a destination inside a run's checkpoint folder, and a non-empty one unless --force\n"
            "(which replaces the files of an earlier export there).\n"
            "eval measures the validation loss of MODEL (a checkpoint folder, its `latest` pointer,\n"
            "or a Hugging Face folder) on train.eval_batches sequences of CONFIG's validation data,\n"
            "and on the synthetic task the retrieval accuracy, at CONFIG's data.seq_len, in dense or\n"
            "sparse attention by CONFIG's attention.dense_len (e.g. --set attention.dense_len=-1);\n"
            "the loss by position with train.eval_buckets (e.g. --set\n"
            "train.eval_buckets=[1024,2048,4096]), and with data.val_answer_files the answer spans\n"
            "of each validation file that the model predicts whole (needle retrieval, e.g. the\n"
            "files of bench/needles.py).\n");
}

struct args {
    const char *config;
    int nset;
    char **sets;
    bool dry_run;
};

static struct args parse_args(int argc, char **argv) {
    struct args a = {0};
    a.sets = xcalloc((size_t)argc, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--set") == 0) {
            if (i + 1 >= argc) die_user("--set needs a key.path=value argument");
            a.sets[a.nset++] = argv[++i];
        } else if (strncmp(s, "--set=", 6) == 0) {
            a.sets[a.nset++] = argv[i] + 6;
        } else if (strcmp(s, "--dry-run") == 0) {
            a.dry_run = true;
        } else if (s[0] == '-') {
            usage(stderr);
            die_user("unknown option %s", s);
        } else if (!a.config) {
            a.config = s;
        } else {
            usage(stderr);
            die_user("unexpected argument %s (one CONFIG only)", s);
        }
    }
    if (!a.config) {
        usage(stderr);
        die_user("no CONFIG given");
    }
    return a;
}

/* The config of CONFIG and its --set overrides, checked against the world size, and the rank grid
 * it asks for: what the train and eval commands start from. */
static void load_run(struct config *cfg, struct grid *g, const struct args *a) {
    config_read(cfg, a->config, a->nset, a->sets);
    if (cfg->model.init_from[0]) hf_import_config(cfg); /* config.json's shape, before validation */
    int world = 1;
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
    config_validate(cfg, world);
    grid_init(g, MPI_COMM_WORLD, cfg->parallel.cp);
}

static int cmd_train(int argc, char **argv) {
    die_user_collective(1); /* arguments, config, data and plan: alike on every rank */
    struct args a = parse_args(argc, argv);
    static struct config cfg; /* large (fixed-size strings): keep it off the stack */
    struct grid g;
    load_run(&cfg, &g, &a);
    if (g.world_rank == 0) {
        printf("infllm-train %s: %s\n", INFLLM_VERSION, a.config);
        config_print(&cfg, stdout);
    }
    int rc = EXIT_CODE_OK, lock = -1;
    if (!a.dry_run && g.world_rank == 0) lock = checkpoint_lock_run(&cfg);
    struct trainer tr;
    trainer_init(&tr, &cfg, &g, a.dry_run ? TRAINER_PLAN : TRAINER_TRAIN);
    die_user_collective(0);
    if (!a.dry_run) {
        checkpoint_resume(&tr);
        if (tr.step >= cfg.train.max_steps && g.world_rank == 0)
            printf("nothing to do: the run is at step %lld of train.max_steps = %lld\n",
                   (long long)tr.step, (long long)cfg.train.max_steps);
        rc = trainer_run(&tr);
    }
    trainer_free(&tr);
    if (lock >= 0) close(lock);
    grid_free(&g);
    config_free(&cfg);
    free(a.sets);
    return rc;
}

struct export_args {
    const char *ckpt, *out;
    int64_t max_shard;       /* 0: hf_export's default */
    enum st_dtype dtype;     /* ST_BF16 (default) or ST_F32 */
    bool force;
};

static struct export_args parse_export(int argc, char **argv) {
    struct export_args a = {.dtype = ST_BF16};
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--force") == 0) {
            a.force = true;
        } else if (strcmp(s, "--dtype") == 0) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (strcmp(v, "float32") != 0 && strcmp(v, "bfloat16") != 0)
                die_user("export: --dtype needs float32 or bfloat16, got \"%s\"", v);
            a.dtype = strcmp(v, "float32") == 0 ? ST_F32 : ST_BF16;
        } else if (strcmp(s, "--max-shard-bytes") == 0) {
            char *end = NULL;
            errno = 0;
            long long v = i + 1 < argc ? strtoll(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || errno || end == argv[i + 1] || *end || v < 1)
                die_user("export: --max-shard-bytes needs a positive integer, got \"%s\"",
                         i + 1 < argc ? argv[i + 1] : "");
            a.max_shard = v;
            i++;
        } else if (s[0] == '-' && s[1] != '\0') {
            usage(stderr);
            die_user("export: unknown option %s", s);
        } else if (!a.ckpt) {
            a.ckpt = s;
        } else if (!a.out) {
            a.out = s;
        } else {
            usage(stderr);
            die_user("export: unexpected argument %s (CHECKPOINT and OUT_FOLDER only)", s);
        }
    }
    if (!a.out) {
        usage(stderr);
        die_user("export needs CHECKPOINT and OUT_FOLDER");
    }
    return a;
}

/* Entries of a folder other than . and .. (0 when it does not exist). */
static int folder_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Whether a file name is one of the weight files an export writes. */
static bool export_weight_file(const char *s) {
    size_t len = strlen(s);
    if (strcmp(s, "model.safetensors.index.json") == 0) return true;
    return strncmp(s, "model", 5) == 0 && len > 12 && strcmp(s + len - 12, ".safetensors") == 0;
}

/* The destination must be outside every checkpoint and run ckpt folder, and empty unless --force;
 * with --force, what an earlier export left that this one writes is removed first, config.json
 * before anything (a folder without it is not a model, so a stop half-way leaves nothing that
 * looks complete: hf_export writes config.json after the weights). */
static void prepare_export_dest(const struct export_args *a) {
    struct stat st;
    char why[4400], path[4400];
    if (stat(a->out, &st) == 0 && !S_ISDIR(st.st_mode))
        die_user("export: %s is %s, expected a folder", a->out, fs_kind((unsigned)st.st_mode));
    if (checkpoint_area(a->out, why, sizeof why))
        die_user("export: refusing to write into %s: %s; choose a folder outside the run's ckpt "
                 "folder", a->out, why);
    int n = folder_entries(a->out);
    if (n > 0 && !a->force)
        die_user("export: %s is not empty (%d entries); pass --force to replace the files of an "
                 "earlier export there, or choose an empty folder", a->out, n);
    if (n == 0) return;
    snprintf(path, sizeof path, "%s/config.json", a->out);
    remove_tree(path);
    fsync_path(a->out);
    DIR *d = opendir(a->out);
    if (!d) die_user("export: %s: cannot list: %s", a->out, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!export_weight_file(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", a->out, e->d_name);
        remove_tree(path);
    }
    closedir(d);
}

static int cmd_export(int argc, char **argv) {
    struct export_args a = parse_export(argc, argv);
    char ckpt[4096], cfg_path[4400];
    checkpoint_resolve_arg(a.ckpt, ckpt, sizeof ckpt);
    prepare_export_dest(&a);
    checkpoint_verify_file(ckpt, "train_config.json");
    snprintf(cfg_path, sizeof cfg_path, "%s/train_config.json", ckpt);
    static struct config cfg;
    char *sets[] = {"parallel.cp=1", "device=cpu"}; /* the layout does not matter to the weights */
    config_load(&cfg, cfg_path, 2, sets);
    struct grid g;
    grid_init(&g, MPI_COMM_SELF, 1);
    struct backend be;
    backend_init(&be, DEVICE_CPU, 0);
    struct model m;
    model_init(&m, &cfg, &be, &g, 1, false);
    float *host = xcalloc((size_t)m.n_params_padded, sizeof(float));
    checkpoint_read_weights(&m, ckpt, host);
    hf_export(&cfg, &m, host, a.out, a.max_shard, a.dtype);
    printf("exported %s (%lld parameters) to %s\n", ckpt, (long long)m.n_params, a.out);
    free(host);
    model_free(&m);
    backend_free(&be);
    grid_free(&g);
    config_free(&cfg);
    return EXIT_CODE_OK;
}

static bool has_file(const char *dir, const char *name) {
    char path[4400];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* The eval command's lines: the summary, the loss by position bucket, the answer spans per
 * validation file, then all of it as one JSON line (`eval_json: {...}`). */
static void print_eval(const char *model_dir, const struct config *cfg, const struct trainer *tr,
                       const struct eval_result *r, double seconds) {
    printf("eval: %s, %d sequences of %lld tokens, %s attention: loss %.4f (perplexity %.3f)",
           model_dir, cfg->train.eval_batches, (long long)cfg->data.seq_len,
           tr->model.sparse ? "InfLLM-V2 sparse" : "dense", r->loss, exp(r->loss));
    if (r->answers)
        printf(", retrieval accuracy %.2f%% (%lld of %lld)",
               100.0 * (double)r->correct / (double)r->answers, (long long)r->correct,
               (long long)r->answers);
    printf(" [%.1f s]\n", seconds);
    const struct eval_buckets *b = &r->buckets;
    for (int i = 0; i < b->n; i++) {
        printf("eval: positions [%lld, %lld): ", (long long)(i ? b->edge[i - 1] : 0),
               (long long)b->edge[i]);
        double mean = b->tokens[i] ? b->loss[i] / (double)b->tokens[i] : 0.0;
        if (b->tokens[i])
            printf("%lld targets, loss %.4f (perplexity %.3f)\n", (long long)b->tokens[i], mean,
                   exp(mean));
        else
            printf("no targets\n");
    }
    for (int f = 0; f < r->n_files; f++)
        printf("eval: %s: %lld of %lld answer spans whole (argmax at every token)\n",
               cfg->data.val_files.items[f], (long long)r->file_spans[2 * f + 1],
               (long long)r->file_spans[2 * f]);
    printf("eval_json: {\"model\": \"%s\", \"seq_len\": %lld, \"sparse\": %s, \"loss\": %.6f, "
           "\"answers\": %lld, \"correct\": %lld, \"accuracy\": %.6f, \"buckets\": [",
           model_dir, (long long)cfg->data.seq_len, tr->model.sparse ? "true" : "false", r->loss,
           (long long)r->answers, (long long)r->correct,
           r->answers ? (double)r->correct / (double)r->answers : 0.0);
    for (int i = 0; i < b->n; i++)
        printf("%s{\"from\": %lld, \"to\": %lld, \"targets\": %lld, \"loss\": %.6f}", i ? ", " : "",
               (long long)(i ? b->edge[i - 1] : 0), (long long)b->edge[i],
               (long long)b->tokens[i], b->tokens[i] ? b->loss[i] / (double)b->tokens[i] : 0.0);
    /* an empty bucket's loss is written as 0 with "targets": 0 (JSON has no NaN) */
    printf("], \"files\": [");
    for (int f = 0; f < r->n_files; f++)
        printf("%s{\"file\": \"%s\", \"spans\": %lld, \"whole\": %lld}", f ? ", " : "",
               cfg->data.val_files.items[f], (long long)r->file_spans[2 * f],
               (long long)r->file_spans[2 * f + 1]);
    printf("]}\n");
}

static int cmd_eval(int argc, char **argv) {
    die_user_collective(1); /* arguments, config, data and plan: alike on every rank */
    if (argc < 4) {
        usage(stderr);
        die_user("eval needs MODEL and CONFIG");
    }
    char model_dir[4096];
    checkpoint_resolve_arg(argv[2], model_dir, sizeof model_dir);
    bool checkpoint = has_file(model_dir, "state.json");
    if (!checkpoint && !has_file(model_dir, "config.json"))
        die_user("%s: neither a checkpoint (state.json) nor a Hugging Face folder (config.json)",
                 model_dir);
    struct args a = parse_args(argc - 2, argv + 2); /* CONFIG and --set options */
    static char init_from[4200];
    if (!checkpoint) { /* the folder's config.json gives the shape, its weights are imported */
        snprintf(init_from, sizeof init_from, "model.init_from=%s", model_dir);
        a.sets[a.nset++] = init_from;
    }
    static struct config cfg;
    struct grid g;
    load_run(&cfg, &g, &a);
    struct trainer tr;
    trainer_init(&tr, &cfg, &g, TRAINER_EVAL);
    die_user_collective(0);
    if (checkpoint) {
        float *host = xcalloc((size_t)tr.model.n_params_padded, sizeof(float));
        checkpoint_read_weights(&tr.model, model_dir, host);
        backend_upload_act(&tr.be, tr.model.param_buf, host, tr.model.n_params_padded);
        free(host);
    }
    double t0 = now_seconds();
    struct eval_result r = trainer_eval(&tr);
    if (g.world_rank == 0) print_eval(model_dir, &cfg, &tr, &r, now_seconds() - t0);
    trainer_free(&tr);
    grid_free(&g);
    config_free(&cfg);
    free(a.sets);
    return EXIT_CODE_OK;
}

int main(int argc, char **argv) {
    MPI_CHECK(MPI_Init(&argc, &argv));
    /* A closed stdout (`infllm-train ... | head`) must not kill a run mid-checkpoint: writes to it
     * fail with EPIPE instead, and the run goes on. */
    signal(SIGPIPE, SIG_IGN);
    int rc = EXIT_CODE_OK;
    const char *cmd = argc > 1 ? argv[1] : "";
    if (argc < 2 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        rc = argc < 2 ? EXIT_CODE_USER : EXIT_CODE_OK;
    } else if (strcmp(cmd, "--version") == 0) {
        printf("infllm-train %s\n", INFLLM_VERSION);
    } else if (strcmp(cmd, "eval") == 0) {
        rc = cmd_eval(argc, argv);
    } else if (strcmp(cmd, "export") == 0) {
        rc = cmd_export(argc, argv);
    } else if (strcmp(cmd, "config-doc") == 0) {
        config_write_doc(stdout);
    } else {
        rc = cmd_train(argc, argv);
    }
    MPI_Finalize();
    return rc;
}
