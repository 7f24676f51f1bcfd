/*
 * test_eval_stats.c: what an evaluation measures beyond the mean loss (src/eval_stats.h) and the
 * answer masks the loader reads beside validation shards (data.val_answer_files):
 *   - position buckets: every position lands in the bucket of its edges, nothing past the last;
 *   - answer spans: runs of scored rows, whole only when every row's argmax is its target, against
 *     a plain reference on random masks and predictions;
 *   - the loader: the answer window matches the mask shard's window token for token, a shard
 *     without answers reads all zero, loader_file_of names each window's file.
 * Exact integer data: every comparison is exact. Random inputs from a printed seed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "eval_stats.h"
#include "loader.h"
#include "shard.h"
#include "testlib.h"

static void test_buckets(void) {
    struct float_list edges = {.n = 3, .items = {4, 8, 16}};
    struct eval_buckets b;
    eval_buckets_init(&b, &edges);
    for (int64_t pos = 0; pos < 20; pos++) eval_buckets_add(&b, pos, (double)pos);
    /* [0, 4): 0+1+2+3, [4, 8): 4..7, [8, 16): 8..15; 16..19 in none */
    t_check(b.tokens[0] == 4 && b.tokens[1] == 4 && b.tokens[2] == 8,
            "bucket counts %lld %lld %lld, expected 4 4 8", (long long)b.tokens[0],
            (long long)b.tokens[1], (long long)b.tokens[2]);
    t_check(b.loss[0] == 6 && b.loss[1] == 22 && b.loss[2] == 92, "bucket sums %g %g %g",
            b.loss[0], b.loss[1], b.loss[2]);
    struct float_list none = {.n = 0};
    eval_buckets_init(&b, &none);
    eval_buckets_add(&b, 3, 1.0); /* no buckets: nothing counted, nothing written */
    t_check(b.n == 0, "no buckets: n %d", b.n);
}

/* Spans of one row list, the plain way: for each scored row, is it a span's first row, and does
 * that span hold a wrong row. */
static void spans_reference(int64_t counts[2], const uint8_t *scored, const int32_t *argmax,
                            const int32_t *targets, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (!scored[i] || (i > 0 && scored[i - 1])) continue;
        int64_t j = i;
        bool whole = true;
        while (j < n && scored[j]) whole &= argmax[j] == targets[j], j++;
        counts[0]++;
        counts[1] += whole;
    }
}

static void test_spans(struct t_rng *r) {
    enum { N = 200 };
    uint8_t scored[N], rows[N];
    int32_t argmax[N], targets[N];
    for (int trial = 0; trial < 200; trial++) {
        double p_scored = t_rng_uniform(r), p_wrong = 0.3 * t_rng_uniform(r);
        for (int i = 0; i < N; i++) {
            scored[i] = t_rng_uniform(r) < p_scored;
            targets[i] = (int32_t)(t_rng_u64(r) % 50);
            argmax[i] = t_rng_uniform(r) < p_wrong ? (targets[i] + 1) % 50 : targets[i];
            rows[i] = !scored[i] ? EVAL_ROW_NONE
                      : argmax[i] == targets[i] ? EVAL_ROW_RIGHT : EVAL_ROW_WRONG;
        }
        int64_t got[2] = {0, 0}, ref[2] = {0, 0};
        eval_spans_add(got, rows, N);
        spans_reference(ref, scored, argmax, targets, N);
        if (!t_check(got[0] == ref[0] && got[1] == ref[1],
                     "spans trial %d: %lld whole of %lld, expected %lld of %lld", trial,
                     (long long)got[1], (long long)got[0], (long long)ref[1], (long long)ref[0]))
            break;
    }
    /* a fixed case: spans [1, 3), [4, 5), [6, 9); the middle row of the last one is wrong */
    const uint8_t s2[10] = {0, 2, 2, 0, 2, 0, 2, 1, 2, 0};
    int64_t c2[2] = {0, 0};
    eval_spans_add(c2, s2, 10);
    t_check(c2[0] == 3 && c2[1] == 2, "fixed spans: %lld whole of %lld, expected 2 of 3",
            (long long)c2[1], (long long)c2[0]);
}

/* Two data shards with masks; the validation stream reads them in order. */
static void test_loader_answers(struct t_rng *r, const char *dir) {
    const int64_t T = 16, n[2] = {3 * T + 1, 2 * T + 5};
    char tok[2][512], ans[2][512];
    uint32_t *mask[2];
    for (int f = 0; f < 2; f++) {
        uint32_t *t = xmalloc((size_t)n[f] * sizeof *t);
        mask[f] = xmalloc((size_t)n[f] * sizeof *mask[f]);
        for (int64_t i = 0; i < n[f]; i++) {
            t[i] = (uint32_t)(t_rng_u64(r) % 1000);
            mask[f][i] = t_rng_uniform(r) < 0.2;
        }
        snprintf(tok[f], sizeof tok[f], "%s/v%d.tok", dir, f);
        snprintf(ans[f], sizeof ans[f], "%s/v%d.ans.tok", dir, f);
        token_shard_write(tok[f], t, n[f], 1000);
        token_shard_write(ans[f], mask[f], n[f], 2);
        free(t);
    }
    char *files[2] = {tok[0], tok[1]}, *answers[2] = {ans[0], ans[1]};
    struct loader_source src = {.source = DATA_SOURCE_SHARDS, .seq_len = T, .val = true,
                                .n_files = 2, .files = files, .files_key = "data.val_files",
                                .vocab_size = 1000, .answer_files = answers,
                                .answer_key = "data.val_answer_files"};
    struct loader l;
    loader_init(&l, &src);
    int32_t seq[17];
    uint8_t a[17];
    const int file_of[5] = {0, 0, 0, 1, 1}, window_of[5] = {0, 1, 2, 0, 1};
    t_check(loader_epoch_size(&l) == 5, "windows %lld, expected 5", (long long)loader_epoch_size(&l));
    for (int g = 0; g < 5; g++) {
        loader_read(&l, g, seq, a);
        int bad = loader_file_of(&l, g) != file_of[g];
        for (int64_t i = 0; i <= T; i++) bad += a[i] != mask[file_of[g]][window_of[g] * T + i];
        t_check(bad == 0, "answer window of sequence %d: %d mismatches", g, bad);
    }
    loader_free(&l);
    src.answer_files = NULL; /* no masks: all zero */
    loader_init(&l, &src);
    loader_read(&l, 1, seq, a);
    int ones = 0;
    for (int64_t i = 0; i <= T; i++) ones += a[i];
    t_check(ones == 0, "no answer files: %d answers read", ones);
    loader_free(&l);
    for (int f = 0; f < 2; f++) {
        unlink(tok[f]);
        unlink(ans[f]);
        free(mask[f]);
    }
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 2 && strcmp(argv[1], "--seed") == 0 ? strtoull(argv[2], NULL, 10)
                                                                : (uint64_t)time(NULL);
    printf("test_eval_stats: seed %llu\n", (unsigned long long)seed);
    struct t_rng r = {seed};
    char dir[] = "/tmp/infllm_test_eval_stats_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    test_buckets();
    test_spans(&r);
    test_loader_answers(&r, dir);
    rmdir(dir);
    return t_finish("test_eval_stats");
}
