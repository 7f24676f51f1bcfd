/*
 * bench/selection_locality.c: how many tokens a gathered K/V block serves, measured on InfLLM-V2
 * selections of a real model on real text, or of bench_attention's random inputs (on the CPU).
 *
 *   selection_locality model CONFIG [--set key=value]... [--offset TOKEN] [--tiles 8,21,64]
 *   selection_locality random [--hq 32] [--hkv 2] [--d 128] [--q-rho R[,R...]] [--tiles ...] T
 *
 * model: imports model.init_from, takes data.seq_len + 1 tokens of data.train_files[0] from token
 * --offset (default 0), runs the fp32 CPU forward in sparse mode with the config's attention keys
 * (attention.dense_len must let data.seq_len run sparse) and reads every layer's selection from
 * the model's activations (model_acts.sel). Prints the mean next-token loss and one row per layer.
 * random: bench_attention's inputs for the same arguments (queries: bench_randn seed 1, correlated
 * over tokens by --q-rho; keys: seed 2; both rounded to bf16), its InfLLM-V2 parameters (kernel
 * 32/16, block 64, window 2048, topk 64, init 1, lse_approx), selected by the CPU reference. One
 * row per rho: the way to find the --q-rho whose selections share as much as a real model's.
 *
 * The statistic is bench_attention's "a gathered block serves N tokens": per KV head the tokens
 * are cut into tiles of `tile` consecutive tokens (the sparse forward's tile holds 128 query rows
 * at D 128 and 64 at D 64, i.e. 128 / G or 64 / G tokens: 8 at Hq 32 / Hkv 2 / D 128, 21 for
 * SmolLM2's 9 / 3 / 64); a tile gathers the union of its tokens' selected blocks once, and
 * N = (token, selected block) pairs / blocks gathered, summed over tiles and KV heads.
 * "dynamic" counts only the blocks a token selected by score, leaving out the ones forced for it
 * (the init blocks and its local window of local_blocks + 1 blocks): what would remain to gather
 * per token if the forced blocks were served like dense attention over whole tiles.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "grid.h"
#include "hf.h"
#include "infllmv2.h"
#include "model.h"
#include "randn.h"
#include "safetensors.h"
#include "shard.h"

#define MAX_TILES 8
#define MAX_RHOS 16
#define MAX_SETS 64

/* (token, block) pairs and blocks gathered, all selected blocks and the dynamic ones only. */
struct sharing {
    double pairs, blocks, dyn_pairs, dyn_blocks;
};

struct tiles {
    int n;
    int size[MAX_TILES];
};

/* Adds the tiles of `tile` tokens of one selection sel (T, Hkv, nsel), block lists as the
 * selection writes them (ascending, -1 padded). seen: 2 * nblk zero bytes, left zero. */
static void sharing_add(struct sharing *r, const int32_t *sel, int64_t T, int Hkv, int nsel,
                        int tile, const struct infllm_params *p, uint8_t *seen) {
    int64_t nblk = (T + p->block_size - 1) / p->block_size;
    uint8_t *dyn_seen = seen + nblk;
    for (int g = 0; g < Hkv; g++)
        for (int64_t i0 = 0; i0 < T; i0 += tile) {
            int64_t i1 = i0 + tile < T ? i0 + tile : T;
            for (int pass = 0; pass < 2; pass++) /* count, then clear */
                for (int64_t i = i0; i < i1; i++) {
                    const int32_t *s = sel + (i * Hkv + g) * nsel;
                    int64_t own = i / p->block_size;
                    for (int k = 0; k < nsel && s[k] >= 0; k++) {
                        int32_t j = s[k];
                        if (pass == 1) {
                            seen[j] = dyn_seen[j] = 0;
                            continue;
                        }
                        r->pairs += 1;
                        if (!seen[j]) seen[j] = 1, r->blocks += 1;
                        if (j < p->init_blocks || j >= own - p->local_blocks) continue;
                        r->dyn_pairs += 1;
                        if (!dyn_seen[j]) dyn_seen[j] = 1, r->dyn_blocks += 1;
                    }
                }
        }
}

static void print_header(const char *first, const struct tiles *t) {
    printf("| %s | blocks / token (dynamic) |", first);
    for (int i = 0; i < t->n; i++) printf(" tile %d: all | dynamic |", t->size[i]);
    printf("\n|---|---|");
    for (int i = 0; i < t->n; i++) printf("---|---|");
    printf("\n");
}

/* One table row from the sums of each tile size (r[i] for t->size[i]); tokens = T * Hkv. */
static void print_row(const char *label, const struct sharing *r, const struct tiles *t,
                      double tokens) {
    printf("| %s | %.1f (%.1f) |", label, r[0].pairs / tokens, r[0].dyn_pairs / tokens);
    for (int i = 0; i < t->n; i++)
        printf(" %.2f | %.2f |", r[i].pairs / r[i].blocks,
               r[i].dyn_blocks > 0 ? r[i].dyn_pairs / r[i].dyn_blocks : 0.0);
    printf("\n");
    fflush(stdout);
}

/* "8,21,64" -> sizes; empty -> 8, the forward tile of G heads at head dim D, 64. */
static void parse_tiles(struct tiles *t, const char *arg, int G, int D) {
    t->n = 0;
    if (!arg) {
        int own = (D == 64 ? 64 : 128) / G, dflt[3] = {8, own > 0 ? own : 1, 64};
        for (int i = 0; i < 3; i++)
            if (t->n == 0 || dflt[i] != t->size[t->n - 1]) t->size[t->n++] = dflt[i];
        return;
    }
    for (const char *s = arg; *s && t->n < MAX_TILES; s += strcspn(s, ","), s += *s == ',') {
        int v = atoi(s);
        if (v <= 0) die_user("--tiles %s: expected positive integers separated by commas", arg);
        t->size[t->n++] = v;
    }
}

static void sharing_of_tiles(struct sharing *r, const int32_t *sel, int64_t T, int Hkv, int nsel,
                             const struct tiles *t, const struct infllm_params *p) {
    uint8_t *seen = xcalloc((size_t)(2 * ((T + p->block_size - 1) / p->block_size)), 1);
    for (int i = 0; i < t->n; i++) sharing_add(&r[i], sel, T, Hkv, nsel, t->size[i], p, seen);
    free(seen);
}

/* ---------------------------------------------------------------------------------------------- */
/* A real model                                                                                    */

struct model_args {
    const char *config;
    char *sets[MAX_SETS];
    int nset;
    int64_t offset;
    const char *tiles;
};

/* The next data.seq_len + 1 tokens of the first training shard from a->offset: inputs, targets. */
static void read_tokens(const struct config *c, int64_t V, int64_t offset, int32_t *tok,
                        int32_t *tgt) {
    if (c->data.train_files.n < 1) die_user("%s: data.train_files is empty", c->path);
    struct token_shard sh;
    token_shard_open(&sh, c->data.train_files.items[0], V);
    int64_t T = c->data.seq_len;
    if (offset < 0 || offset + T + 1 > sh.n_tokens)
        die_user("%s: %lld tokens, --offset %lld + data.seq_len %lld + 1 do not fit", sh.path,
                 (long long)sh.n_tokens, (long long)offset, (long long)T);
    for (int64_t i = 0; i < T; i++) {
        tok[i] = (int32_t)token_shard_get(&sh, offset + i);
        tgt[i] = (int32_t)token_shard_get(&sh, offset + i + 1);
    }
    token_shard_close(&sh);
}

static void load_model_config(struct config *c, const struct model_args *a) {
    config_load(c, a->config, a->nset, a->sets);
    if (!c->model.init_from[0]) die_user("%s: model.init_from is empty: nothing to measure", c->path);
    if (c->data.source != DATA_SOURCE_SHARDS)
        die_user("%s: data.source must be \"shards\" (the text to run)", c->path);
    if (!config_sparse(c, c->data.seq_len))
        die_user("%s: attention.dense_len %lld makes data.seq_len %lld dense: no selection",
                 c->path, (long long)c->attention.dense_len, (long long)c->data.seq_len);
    c->train.micro_batch_size = c->train.global_batch_size = 1;
    c->train.recompute = RECOMPUTE_FULL; /* only each layer's input and selection are kept */
    config_validate(c, 1);
}

static void run_model(const struct model_args *a) {
    static struct config c;
    load_model_config(&c, a);
    struct grid g;
    grid_init(&g, MPI_COMM_SELF, 1);
    struct backend be;
    backend_init(&be, DEVICE_CPU, 0);
    struct model m;
    model_init(&m, &c, &be, &g, 1, true);
    hf_import_weights(&m, c.model.init_from, m.param_buf);
    int64_t T = m.T;
    int32_t *tok = xmalloc((size_t)T * 4), *tgt = xmalloc((size_t)T * 4);
    read_tokens(&c, m.V, a->offset, tok, tgt);
    double loss = model_forward(&m, tok, tgt, false, 0.0f);
    struct tiles t;
    parse_tiles(&t, a->tiles, m.Hq / m.Hkv, m.D);
    const struct infllm_params *p = &m.attn.p;
    printf("model %s, %lld tokens of %s from token %lld, sparse (window %d, topk %d, %d blocks a "
           "token at most); mean next-token loss %.4f\n\n", c.model.init_from, (long long)T,
           c.data.train_files.items[0], (long long)a->offset, c.attention.window_size,
           c.attention.topk, m.attn.nsel, loss / (double)T);
    print_header("layer", &t);
    struct sharing all[MAX_TILES] = {{0}};
    for (int l = 0; l < m.L; l++) {
        struct sharing r[MAX_TILES] = {{0}};
        sharing_of_tiles(r, m.a.sel + (int64_t)l * T * m.Hkv * m.attn.nsel, T, m.Hkv,
                         m.attn.nsel, &t, p);
        char label[16];
        snprintf(label, sizeof label, "%d", l);
        print_row(label, r, &t, (double)T * m.Hkv);
        for (int i = 0; i < t.n; i++) {
            all[i].pairs += r[i].pairs, all[i].blocks += r[i].blocks;
            all[i].dyn_pairs += r[i].dyn_pairs, all[i].dyn_blocks += r[i].dyn_blocks;
        }
    }
    print_row("all", all, &t, (double)T * m.Hkv * m.L);
    free(tok), free(tgt);
    model_free(&m);
    backend_free(&be);
    grid_free(&g);
    config_free(&c);
}

/* ---------------------------------------------------------------------------------------------- */
/* bench_attention's random inputs                                                                 */

struct random_args {
    int Hq, Hkv, D;
    int64_t T;
    double rho[MAX_RHOS];
    int nrho;
    const char *tiles;
};

static void randn_bf16(float *h, int64_t n, uint64_t seed, int64_t width, double rho) {
    bench_randn(h, n, seed, width, rho);
    for (int64_t i = 0; i < n; i++) h[i] = st_bf16_to_f32(st_f32_to_bf16(h[i]));
}

static void run_random(const struct random_args *a) {
    int64_t T = a->T, KD = (int64_t)a->Hkv * a->D, QD = (int64_t)a->Hq * a->D;
    struct infllm_params p = {32, 16, 64, 1, 32, 64, true, 0};
    int nsel = infllm_num_selected(&p);
    int64_t L1 = infllm_num_windows(T, 32, 16), L2 = infllm_num_windows(T, 128, 64);
    float *q = xmalloc((size_t)(T * QD) * 4), *k = xmalloc((size_t)(T * KD) * 4);
    float *k1 = xmalloc((size_t)(L1 * KD) * 4), *k2 = xmalloc((size_t)(L2 * KD) * 4);
    int32_t *sel = xmalloc((size_t)(T * a->Hkv * nsel) * 4);
    randn_bf16(k, T * KD, 2, 0, 0);
    infllm_compress_cpu(k1, k, L1, a->Hkv, a->D, KD, 32, 16);
    infllm_compress_cpu(k2, k, L2, a->Hkv, a->D, KD, 128, 64);
    struct attn_shape s = {T, 0, T, a->Hq, a->Hkv, a->D, QD, KD, (float)(1.0 / sqrt(a->D)), NULL};
    struct tiles t;
    parse_tiles(&t, a->tiles, a->Hq / a->Hkv, a->D);
    printf("random inputs as bench_attention's, T %lld, Hq %d, Hkv %d, D %d, CPU selection\n\n",
           (long long)T, a->Hq, a->Hkv, a->D);
    print_header("q-rho", &t);
    for (int i = 0; i < a->nrho; i++) {
        randn_bf16(q, T * QD, 1, QD, a->rho[i]);
        infllm_select_cpu(sel, q, k1, L1, k2, L2, &s, &p);
        struct sharing r[MAX_TILES] = {{0}};
        sharing_of_tiles(r, sel, T, a->Hkv, nsel, &t, &p);
        char label[32];
        snprintf(label, sizeof label, "%.4g", a->rho[i]);
        print_row(label, r, &t, (double)T * a->Hkv);
    }
    free(q), free(k), free(k1), free(k2), free(sel);
}

/* ---------------------------------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr, "usage: selection_locality model CONFIG [--set key=value]... [--offset TOKEN] "
                    "[--tiles 8,21,64]\n"
                    "       selection_locality random [--hq 32] [--hkv 2] [--d 128] "
                    "[--q-rho R[,R...]] [--tiles 8,21,64] T\n");
    exit(2);
}

static void parse_rhos(struct random_args *a, const char *arg) {
    a->nrho = 0;
    for (const char *s = arg; *s && a->nrho < MAX_RHOS; s += strcspn(s, ","), s += *s == ',') {
        double r = atof(s);
        if (!(r >= 0 && r < 1)) die_user("--q-rho %s: expected numbers in [0, 1)", arg);
        a->rho[a->nrho++] = r;
    }
}

static void main_random(int argc, char **argv) {
    struct random_args a = {32, 2, 128, 0, {0}, 1, NULL};
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--hq") && v) a.Hq = atoi(v), i++;
        else if (!strcmp(argv[i], "--hkv") && v) a.Hkv = atoi(v), i++;
        else if (!strcmp(argv[i], "--d") && v) a.D = atoi(v), i++;
        else if (!strcmp(argv[i], "--q-rho") && v) parse_rhos(&a, v), i++;
        else if (!strcmp(argv[i], "--tiles") && v) a.tiles = v, i++;
        else if (argv[i][0] != '-' && a.T == 0) a.T = atoll(argv[i]);
        else usage();
    }
    if (a.T < 128 || a.T % 64 || a.Hq <= 0 || a.Hkv <= 0 || a.Hq % a.Hkv || a.D <= 0 || a.D % 2)
        die_user("random: need T a multiple of 64 (>= 128), Hkv dividing Hq, D even");
    run_random(&a);
}

static void main_model(int argc, char **argv) {
    struct model_args a = {0};
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--set") && v && a.nset < MAX_SETS) a.sets[a.nset++] = argv[++i];
        else if (!strcmp(argv[i], "--offset") && v) a.offset = atoll(v), i++;
        else if (!strcmp(argv[i], "--tiles") && v) a.tiles = v, i++;
        else if (argv[i][0] != '-' && !a.config) a.config = argv[i];
        else usage();
    }
    if (!a.config) usage();
    run_model(&a);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc < 2) usage();
    if (!strcmp(argv[1], "model")) main_model(argc, argv);
    else if (!strcmp(argv[1], "random")) main_random(argc, argv);
    else usage();
    MPI_Finalize();
    return 0;
}
