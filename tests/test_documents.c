/*
 * test_documents.c: document masking on the CPU reference. A sequence that packs several documents
 * gives the loss and the gradients of the documents run one by one, each as a sequence of its own.
 *
 * Method: one model of the packed length T (document masking on) and, per document of length n,
 * one model of length n rounded up to the block size (no documents; the rounding tokens come after
 * the document and have no target, so causal attention keeps them out of the document's rows and
 * their zero loss gradient adds nothing). Same config otherwise, same seeded weights, random
 * tokens; targets: random, -1 where the packed sequence's next token starts a document (what the
 * trainer does) and on a few other rows. Checks:
 *   - every row's loss equals the loss of the same row of its document alone, bitwise: the CPU
 *     kernels compute a row with the same operations whatever the other rows (matmul_cpu.c's
 *     fixed reduction order; attention_cpu.c reads a document's keys in pieces counted from its
 *     start), and positions restart at each document;
 *   - the summed loss (double) and every parameter gradient (grad_scale 1) equal the sum over the
 *     documents alone up to fp32 reassociation: the weight gradients sum the same row terms in
 *     another order (one GEMM over all rows against one per document, added up). Tolerance 2e-6
 *     of the largest gradient element, against observed ~1e-7; a row of another document seen by
 *     attention, a position not restarted, or a window across a boundary moves them by 1e-2 or
 *     more;
 *   - train.recompute "full" gives the packed loss and gradient bit for bit, and so does one call
 *     per dense document (the layout the CUDA backend uses, whose kernels take no doc_start)
 *     instead of one call per run of dense documents.
 * Cases: dense (documents starting mid-block, a one-token document), sparse (every document
 * InfLLM-V2, top-k dropping blocks, with and without use_nope), and mixed (attention.dense_len 64:
 * a long sparse document between short dense ones, in a sparse sequence).
 * A layer-level check: the selection of a sparse document's rows in the packed sequence equals the
 * selection of the document alone (block indices relative to the document's start).
 *
 * Data: the loader's document starts (loader_read_docs) on token shards with data.eod_token (a
 * start after every end-of-document token, the tokens and their order the same as without it),
 * and on the synthetic task with data.synthetic.documents (each packed task whole: BOS only at the
 * starts, its queries answered, lengths at least the task's minimum, a pure function of the
 * sequence number; documents 1 is the plain task). The trainer: one training step's targets are -1
 * exactly where the next token starts a document, and its loss is the mean over the others.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "grid.h"
#include "loader.h"
#include "model.h"
#include "shard.h"
#include "synthetic.h"
#include "testlib.h"
#include "train.h"

#define MAX_DOCS 8

struct case_desc {
    const char *name;
    int64_t T;                 /* packed length, a multiple of the block size */
    int64_t dense_len;         /* attention.dense_len */
    bool nope;
    int ndocs;
    int64_t starts[MAX_DOCS];  /* ascending from 0 */
};

static void setup_config(struct config *c, const struct case_desc *k, int64_t T, bool documents) {
    config_defaults(c);
    struct model_config *m = &c->model;
    m->vocab_size = 61;
    m->hidden_size = 24;
    m->intermediate_size = 40;
    m->num_hidden_layers = 2;
    m->num_attention_heads = 4;
    m->num_key_value_heads = 2;
    m->head_dim = 8;
    m->initializer_range = 0.2;
    c->data.seq_len = T;
    c->data.synthetic = (struct synthetic_config){.n_pairs = 1, .n_queries = 0, .n_keys = 8,
                                                  .n_values = 8, .documents = documents ? 2 : 1};
    c->train.micro_batch_size = 1;
    c->train.global_batch_size = 1;
    struct attention_config *a = &c->attention;
    a->kernel_size = 8;
    a->kernel_stride = 4;
    a->block_size = 16;
    a->window_size = 16;
    a->init_blocks = 1;
    a->topk = 2;
    a->dense_len = k->dense_len;
    a->use_nope = k->nope;
    config_validate(c, 1);
}

struct run {
    struct config c;
    struct backend be;
    struct model m;
    double loss;
};

/* Forward and backward of one sequence (grad_scale 1) on a fresh model of length T; dense_runs
 * false: one attention call per dense document (as on CUDA). */
static void run_model(struct run *r, const struct case_desc *k, int64_t T, bool documents,
                      enum recompute recompute, bool dense_runs, const int32_t *tok,
                      const int32_t *tgt, const uint8_t *doc_first, const struct grid *g) {
    setup_config(&r->c, k, T, documents);
    r->c.train.recompute = recompute;
    backend_init(&r->be, DEVICE_CPU, 0);
    model_init(&r->m, &r->c, &r->be, g, 64, true);
    r->m.attn.dense_runs = dense_runs;
    model_init_weights(&r->m, 77);
    if (documents) model_set_documents(&r->m, doc_first);
    model_zero_grad(&r->m);
    r->loss = model_forward(&r->m, tok, tgt, true, 1.0f);
    model_backward(&r->m);
}

static void run_free(struct run *r) {
    model_free(&r->m);
    backend_free(&r->be);
    config_free(&r->c);
}

/* Selection rows [a, a + n) of layer 0 of the packed run against rows [0, n) of the document's.
 * The two may keep different counts (nsel is bounded by the blocks of the sequence, and the
 * document alone is shorter): the lists are compared in the wider count, the shorter padded -1. */
static void check_selection(const char *name, int d, const struct run *packed,
                            const struct run *alone, int64_t a, int64_t n) {
    const struct model *p = &packed->m, *q = &alone->m;
    int np = p->attn.nsel, nq = q->attn.nsel, w = np > nq ? np : nq, H = p->Hkv;
    int32_t *gp = xmalloc((size_t)(n * H * w) * sizeof(int32_t));
    int32_t *gq = xmalloc((size_t)(n * H * w) * sizeof(int32_t));
    for (int64_t r = 0; r < n * H; r++)
        for (int x = 0; x < w; x++) {
            gp[r * w + x] = x < np ? p->a.sel[(a * H + r) * np + x] : -1;
            gq[r * w + x] = x < nq ? q->a.sel[r * nq + x] : -1;
        }
    char what[160];
    snprintf(what, sizeof what, "%s: document %d selection (layer 0)", name, d);
    t_equal_i32(what, gp, gq, n * H * w);
    free(gp), free(gq);
}

static void run_case(const struct case_desc *k, const struct grid *g) {
    int64_t T = k->T, B = 16; /* block size */
    struct t_rng rng = {0xd0c5 + (uint64_t)T};
    int32_t *tok = xmalloc((size_t)T * sizeof(int32_t)), *tgt = xmalloc((size_t)T * sizeof(int32_t));
    uint8_t *first = xcalloc((size_t)T, 1);
    for (int d = 0; d < k->ndocs; d++) first[k->starts[d]] = 1;
    for (int64_t i = 0; i < T; i++) {
        tok[i] = (int32_t)(t_rng_u64(&rng) % 61);
        bool cut = i + 1 < T && first[i + 1]; /* the next token starts a document */
        tgt[i] = cut || i % 13 == 4 ? -1 : (int32_t)(t_rng_u64(&rng) % 61);
    }
    static struct run packed, other, alone;
    run_model(&packed, k, T, true, RECOMPUTE_NONE, true, tok, tgt, first, g);
    int64_t np = packed.m.n_params_padded;
    for (int variant = 0; variant < 2; variant++) {
        run_model(&other, k, T, true, variant ? RECOMPUTE_NONE : RECOMPUTE_FULL, variant == 0,
                  tok, tgt, first, g);
        int64_t differ = 0;
        for (int64_t i = 0; i < np; i++) differ += other.m.grad_buf[i] != packed.m.grad_buf[i];
        t_check(other.loss == packed.loss && differ == 0, "%s: %s: loss %.17g vs %.17g, %lld "
                "gradient entries differ", k->name, variant ? "a call per dense document" :
                "recompute full", other.loss, packed.loss, (long long)differ);
        run_free(&other);
    }

    double *sum = xcalloc((size_t)np, sizeof(double)), loss = 0, row_diff = 0;
    int32_t *ptok = xmalloc((size_t)T * sizeof(int32_t)), *ptgt = xmalloc((size_t)T * sizeof(int32_t));
    for (int d = 0; d < k->ndocs; d++) {
        int64_t a = k->starts[d], n = (d + 1 < k->ndocs ? k->starts[d + 1] : T) - a;
        int64_t Td = (n + B - 1) / B * B;
        for (int64_t i = 0; i < Td; i++) {
            ptok[i] = i < n ? tok[a + i] : 0;
            ptgt[i] = i < n ? tgt[a + i] : -1;
        }
        run_model(&alone, k, Td, false, RECOMPUTE_NONE, true, ptok, ptgt, NULL, g);
        t_check(alone.m.sparse == (k->dense_len < 0 || n >= k->dense_len),
                "%s: document %d of %lld tokens: alone it runs %s", k->name, d, (long long)n,
                alone.m.sparse ? "sparse" : "dense");
        for (int64_t i = 0; i < n; i++) {
            double x = fabs((double)alone.m.loss_host[i] - packed.m.loss_host[a + i]);
            row_diff = x > row_diff ? x : row_diff;
        }
        if (alone.m.sparse && packed.m.sparse) check_selection(k->name, d, &packed, &alone, a, n);
        loss += alone.loss;
        for (int64_t i = 0; i < np; i++) sum[i] += alone.m.grad_buf[i];
        run_free(&alone);
    }
    double gmax = 0, gdiff = 0;
    for (int64_t i = 0; i < np; i++) {
        gmax = fmax(gmax, fabs(sum[i]));
        gdiff = fmax(gdiff, fabs(sum[i] - packed.m.grad_buf[i]));
    }
    double lrel = fabs(loss - packed.loss) / fabs(loss);
    printf("  %-14s %d documents: loss packed %.9f, alone %.9f (relative difference %.2g), "
           "largest row-loss difference %.2g, gradient max |difference| / max |g| %.2g\n",
           k->name, k->ndocs, packed.loss, loss, lrel, row_diff, gdiff / gmax);
    t_check(row_diff == 0, "%s: a row's loss differs from alone by %.3g", k->name, row_diff);
    t_check(lrel <= 1e-6, "%s: summed loss differs by %.3g relative", k->name, lrel);
    t_check(gdiff <= 2e-6 * gmax, "%s: gradients differ by %.3g of max |g| %.3g", k->name,
            gdiff / gmax, gmax);
    run_free(&packed);
    free(sum), free(ptok), free(ptgt), free(tok), free(tgt), free(first);
}

/* ---- data ---- */

/* Shards with end-of-document tokens: document starts right after each, nothing else changed. */
static void test_eod_shards(const char *dir) {
    enum { N = 700, V = 50, EOD = 7 };
    const int64_t T = 64;
    struct t_rng rng = {0xe0d};
    uint32_t *tok = xmalloc(N * sizeof *tok);
    for (int i = 0; i < N; i++) tok[i] = (uint32_t)(t_rng_u64(&rng) % V);
    char path[600];
    snprintf(path, sizeof path, "%s/eod.tok", dir);
    token_shard_write(path, tok, N, V);
    static struct config c;
    config_defaults(&c);
    c.model.vocab_size = V;
    c.data.seq_len = T;
    c.data.source = DATA_SOURCE_SHARDS;
    c.data.train_files.n = 1;
    c.data.train_files.items[0] = xstrdup(path);
    struct loader plain, docs;
    struct loader_source src = config_loader_source(&c, false);
    loader_init(&plain, &src);
    c.data.eod_token = EOD;
    t_check(config_documents(&c), "eod shards: config_documents is false");
    src = config_loader_source(&c, false);
    loader_init(&docs, &src);
    int32_t a[65], b[65];
    uint8_t first[65];
    int bad = 0, starts = 0;
    for (int64_t g = 0; g < 3 * loader_epoch_size(&docs); g++) {
        loader_read(&plain, g, a, NULL);
        loader_read_docs(&docs, g, b, NULL, first);
        bad += memcmp(a, b, sizeof a) != 0 || first[0] != 1;
        for (int i = 1; i <= T; i++) {
            bad += first[i] != (b[i - 1] == EOD);
            starts += first[i];
        }
    }
    t_check(bad == 0 && starts > 0, "eod shards: %d sequences with other tokens or starts (%d "
            "starts seen)", bad, starts);
    loader_free(&plain);
    loader_free(&docs);
    config_free(&c);
    free(tok);
}

/* Packed synthetic tasks: structure, purity, and the loader's stream. */
static void test_synthetic_documents(void) {
    const struct synthetic_task task = {.vocab_size = 200, .n_pairs = 3, .n_queries = 2,
                                        .n_keys = 20, .n_values = 30};
    enum { LEN = 301, DOCS = 4 };
    const int64_t need = 1 + 4 * (3 + 2);
    int32_t t[LEN], t2[LEN];
    uint8_t ans[LEN], first[LEN], first2[LEN];
    int bad = 0, varied = 0;
    for (int64_t g = 0; g < 50; g++) {
        synthetic_packed(&task, 99, g, LEN, DOCS, t, ans, first);
        int n = 0, answers = 0, last = 0;
        for (int i = 0; i < LEN; i++) {
            bad += (t[i] == SYNTH_BOS) != (first[i] == 1); /* BOS exactly at the starts */
            answers += ans[i];
            if (i > 0 && first[i]) {
                bad += i - last < need;
                varied += i - last != LEN / DOCS;
                last = i;
            }
            n += first[i];
        }
        bad += n != DOCS || first[0] != 1 || LEN - last < need || answers != DOCS * 2;
        synthetic_packed(&task, 99, g, LEN, DOCS, t2, NULL, first2);
        bad += memcmp(t, t2, sizeof t) != 0 || memcmp(first, first2, sizeof first) != 0;
    }
    t_check(bad == 0 && varied > 0, "synthetic documents: %d problems (starts, lengths, answers, "
            "purity), %d lengths off the even split", bad, varied);
    char err[400];
    t_check(synthetic_check_packed(&task, DOCS * need, DOCS, err, sizeof err) == 0 &&
                synthetic_check_packed(&task, DOCS * need - 1, DOCS, err, sizeof err) == -1 &&
                strstr(err, "data.synthetic.documents"),
            "synthetic documents: the tight fit or its refusal is wrong (\"%s\")", err);
    /* the loader: documents > 1 packs, 1 is the plain task with one start */
    struct loader_source src = {.source = DATA_SOURCE_SYNTHETIC, .seq_len = LEN - 1, .seed = 99,
                                .task = task, .synthetic_documents = DOCS};
    struct loader l;
    loader_init(&l, &src);
    loader_read_docs(&l, 7, t2, NULL, first2);
    synthetic_packed(&task, 99, 7, LEN, DOCS, t, NULL, first);
    bad = memcmp(t, t2, sizeof t) != 0 || memcmp(first, first2, sizeof first) != 0;
    loader_free(&l);
    src.synthetic_documents = 1;
    loader_init(&l, &src);
    loader_read_docs(&l, 7, t2, NULL, first2);
    synthetic_sequence(&task, 99, 7, LEN, t, NULL);
    bad += memcmp(t, t2, sizeof t) != 0 || first2[0] != 1 || memchr(first2 + 1, 1, LEN - 1);
    loader_free(&l);
    t_check(bad == 0, "synthetic documents: the loader's stream differs");
}

/* One training step with packed synthetic tasks: targets and the loss's denominator. */
static void test_trainer_step(const char *dir, const struct grid *g) {
    static struct config c;
    struct case_desc k = {"trainer", 256, 100, false, 0, {0}};
    setup_config(&c, &k, 256, true);
    c.data.synthetic = (struct synthetic_config){.n_pairs = 4, .n_queries = 2, .n_keys = 8,
                                                 .n_values = 8, .documents = 3};
    snprintf(c.run_dir, sizeof c.run_dir, "%s/run", dir);
    snprintf(c.resume, sizeof c.resume, "none");
    config_validate(&c, 1);
    struct trainer tr;
    trainer_init(&tr, &c, (struct grid *)g, TRAINER_TRAIN);
    double norm, loss = trainer_step(&tr, 1e-3, &norm);
    const struct model *m = &tr.model;
    int64_t cut = 0, wrong = 0, scored = 0;
    double sum = 0;
    for (int64_t p = 0; p < m->T; p++) {
        bool starts = tr.seq_doc[p + 1] != 0;
        cut += starts;
        wrong += starts ? tr.targets[p] != -1 : tr.targets[p] != tr.seq[p + 1];
        scored += tr.targets[p] >= 0;
        sum += m->loss_host[p];
    }
    t_check(cut == 2 && wrong == 0, "trainer: %lld of 2 document starts, %lld targets wrong",
            (long long)cut, (long long)wrong);
    t_check(fabs(loss - sum / (double)scored) <= 1e-12 * fabs(loss),
            "trainer: step loss %.12g, the mean over the %lld targets is %.12g", loss,
            (long long)scored, sum / (double)scored);
    trainer_free(&tr);
    config_free(&c);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    struct grid g;
    grid_init(&g, MPI_COMM_SELF, 1);
    const struct case_desc cases[] = {
        {"dense", 96, 1 << 20, false, 4, {0, 37, 38, 80}},
        {"sparse", 256, -1, false, 3, {0, 70, 200}},
        {"sparse-nope", 224, -1, true, 4, {0, 3, 101, 190}},
        {"mixed", 192, 64, false, 4, {0, 20, 150, 180}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], &g);
    char dir[] = "/tmp/infllm-test-documents-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    test_eod_shards(dir);
    test_synthetic_documents();
    test_trainer_step(dir, &g);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    grid_free(&g);
    int rc = t_finish("test_documents");
    MPI_Finalize();
    return rc;
}
