/*
 * test_synthetic.c: the built-in synthetic retrieval task (data/synthetic.c): the layout of a
 * sequence (BOS, records in the body, queries at the end, answers marked), the filler's Markov
 * chain (the same successors for any seed), the fit rules of synthetic_check, and the loader's
 * synthetic streams (training = synthetic_sequence(seed, g), validation a stream of its own).
 *
 * Everything is exact integer data, so every comparison is exact, except the filler statistics,
 * whose bounds are stated with their sampling noise. Inputs come from a fresh seed each run
 * (printed; replay with `test_synthetic --seed S`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "loader.h"
#include "synthetic.h"
#include "testlib.h"

/* loader_init on the config's training or validation stream. */
static void open_stream(struct loader *l, const struct config *c, bool val) {
    struct loader_source s = config_loader_source(c, val);
    loader_init(l, &s);
}

/* Parses one sequence against the layout of synthetic.c; returns the number of problems. */
static int parse_synthetic(const struct synthetic_task *task, const int32_t *t, const uint8_t *answer,
                           int64_t len) {
    const int np = task->n_pairs, nq = task->n_queries;
    const int32_t key0 = SYNTH_FIRST, val0 = SYNTH_FIRST + task->n_keys, fill0 = val0 + task->n_values;
    const int64_t qstart = len - 4 * (int64_t)nq, F = qstart - 1 - 4 * (int64_t)np;
    int32_t *value_of = xmalloc((size_t)task->n_keys * sizeof *value_of); /* key -> value, -1 unset */
    int32_t *asked = xcalloc((size_t)task->n_keys, sizeof *asked);
    for (int k = 0; k < task->n_keys; k++) value_of[k] = -1;
    int bad = t[0] != SYNTH_BOS;
    for (int64_t i = 0; i < qstart; i++) bad += answer[i] != 0;
    int j = 0;
    for (int64_t i = 1; i < qstart; i++) {
        if (t[i] >= fill0 && t[i] < task->vocab_size) continue;
        if (t[i] != SYNTH_KEY || i + 3 >= qstart || j >= np) return bad + 1000;
        int32_t k = t[i + 2] - key0, v = t[i + 3] - val0;
        bad += k < 0 || k >= task->n_keys || t[i + 1] != SYNTH_VAL || v < 0 || v >= task->n_values;
        if (k < 0 || k >= task->n_keys) return bad + 1000;
        bad += value_of[k] != -1; /* keys distinct within the sequence */
        value_of[k] = v;
        int64_t off = i - 1 - 4 * (int64_t)j; /* filler before record j: inside its stratum */
        bad += off < (int64_t)j * F / np || off > ((int64_t)j + 1) * F / np;
        j++;
        i += 3;
    }
    bad += j != np;
    for (int q = 0; q < nq; q++) {
        const int32_t *rec = t + qstart + 4 * q;
        const uint8_t *a = answer + qstart + 4 * q;
        int32_t k = rec[2] - key0;
        bad += rec[0] != SYNTH_QUERY || rec[1] != SYNTH_VAL || k < 0 || k >= task->n_keys;
        if (k < 0 || k >= task->n_keys) continue;
        bad += value_of[k] < 0 || rec[3] - val0 != value_of[k];
        bad += a[0] != 0 || a[1] != 0 || a[2] != 0 || a[3] != 1;
        asked[k]++;
    }
    /* Queries ask distinct pairs until all were asked: counts differ by at most one. */
    int lo = nq / np, hi = (nq + np - 1) / np;
    for (int k = 0; k < task->n_keys; k++)
        if (value_of[k] >= 0) bad += asked[k] < lo || asked[k] > hi;
    free(value_of);
    free(asked);
    return bad;
}

static void test_synthetic_layout(struct t_rng *r, const struct synthetic_task *task, int64_t len) {
    int32_t *t = xmalloc((size_t)len * sizeof *t), *t2 = xmalloc((size_t)len * sizeof *t2);
    uint8_t *a = xmalloc((size_t)len), *a2 = xmalloc((size_t)len);
    uint64_t seed = t_rng_u64(r);
    int bad = 0, differs = 0, range = 0, det = 0;
    for (int s = 0; s < 20; s++) {
        int64_t index = (int64_t)(t_rng_u64(r) % 1000000);
        synthetic_sequence(task, seed, index, len, t, a);
        for (int64_t i = 0; i < len; i++) range += t[i] < 0 || t[i] >= task->vocab_size;
        bad += parse_synthetic(task, t, a, len);
        synthetic_sequence(task, seed + 1, index, len, t2, a2); /* other work between the calls */
        differs += memcmp(t, t2, (size_t)len * sizeof *t) != 0;
        synthetic_sequence(task, seed, index, len, t2, a2);
        det += memcmp(t, t2, (size_t)len * sizeof *t) != 0 || memcmp(a, a2, (size_t)len) != 0;
    }
    t_check(range == 0, "synthetic len %lld: %d tokens outside [0, vocab)", (long long)len, range);
    t_check(bad == 0, "synthetic len %lld: %d layout problems (records, queries, answers)",
            (long long)len, bad);
    t_check(det == 0, "synthetic len %lld: %d sequences not reproducible", (long long)len, det);
    t_check(differs == 20, "synthetic len %lld: another seed gave the same sequence %d times",
            (long long)len, 20 - differs);
    free(t);
    free(t2);
    free(a);
    free(a2);
}

/* Filler bigrams concentrate on a few successors, the same ones for any seed. */
static void test_synthetic_filler(struct t_rng *r) {
    enum { NF = 64 };
    struct synthetic_task task = {
        .vocab_size = 4 + 40 + 50 + NF, .n_pairs = 8, .n_queries = 4, .n_keys = 40, .n_values = 50};
    const int64_t len = 150001, fill0 = 4 + 40 + 50;
    int32_t *t = xmalloc((size_t)len * sizeof *t);
    int counts[2][NF][NF] = {0};
    for (int s = 0; s < 2; s++) {
        synthetic_sequence(&task, t_rng_u64(r), 0, len, t, NULL);
        for (int64_t i = 1; i + 1 < len; i++)
            if (t[i] >= fill0 && t[i + 1] >= fill0) counts[s][t[i] - fill0][t[i + 1] - fill0]++;
    }
    /* Top-4 successors carry 15/16 of the mass plus 4/NF of the uniform 1/16 (0.941; less when two
     * successors coincide, never below 15/16 = 0.9375); 0.92 leaves > 10 sigma of sampling noise.
     * The likeliest successor (>= 1/2) is compared where both seeds have >= 1000 transitions from
     * the token: its lead over the next (1/4, or 3/8 where two others coincide) is then > 4 sigma;
     * a rarely visited token (~150 transitions) could swap them by chance. */
    int64_t top = 0, total = 0;
    int same_best = 0, compared = 0;
    for (int f = 0; f < NF; f++) {
        int c[NF], best[2] = {0, 0}, n[2] = {0, 0};
        for (int s = 0; s < 2; s++)
            for (int g = 0; g < NF; g++) {
                n[s] += counts[s][f][g];
                if (counts[s][f][g] > counts[s][f][best[s]]) best[s] = g;
            }
        if (n[0] >= 1000 && n[1] >= 1000) compared++, same_best += best[0] == best[1];
        memcpy(c, counts[0][f], sizeof c);
        for (int k = 0; k < 4; k++) {
            int m = 0;
            for (int g = 1; g < NF; g++) m = c[g] > c[m] ? g : m;
            top += c[m];
            c[m] = -1;
        }
        for (int g = 0; g < NF; g++) total += counts[0][f][g];
    }
    t_check(total > 100000 && (double)top / (double)total > 0.92,
            "filler: top-4 successors carry %.3f of %lld transitions, expected > 0.92",
            (double)top / (double)total, (long long)total);
    t_check(compared >= NF / 2 && same_best == compared,
            "filler: the likeliest successor differs between seeds for %d of %d tokens (of %d)",
            compared - same_best, compared, NF);
    free(t);
}

static void test_synthetic_check(void) {
    struct synthetic_task task = {
        .vocab_size = 4 + 30 + 20 + 16, .n_pairs = 10, .n_queries = 6, .n_keys = 30, .n_values = 20};
    char err[512] = "";
    int64_t min_len = 1 + 4 * (10 + 6);
    t_check(synthetic_check(&task, min_len, err, sizeof err) == 0,
            "synthetic_check: tight fit rejected: %s", err);
    t_check(synthetic_check(&task, min_len - 1, err, sizeof err) == -1 && strstr(err, "too short"),
            "synthetic_check: short sequence: \"%s\"", err);
    task.vocab_size--;
    t_check(synthetic_check(&task, min_len, err, sizeof err) == -1 && strstr(err, "model.vocab_size"),
            "synthetic_check: small vocabulary: \"%s\"", err);
    task.vocab_size++;
    task.n_keys = 9;
    t_check(synthetic_check(&task, min_len, err, sizeof err) == -1 && strstr(err, "n_keys"),
            "synthetic_check: fewer keys than pairs: \"%s\"", err);
}

/* The loader's synthetic streams: training = synthetic_sequence(seed, g), validation another seed. */
static void test_loader_synthetic(struct t_rng *r) {
    struct config c;
    config_defaults(&c);
    c.seed = t_rng_u64(r);
    c.data.source = DATA_SOURCE_SYNTHETIC;
    c.data.seq_len = 253;
    c.model.vocab_size = 512;
    c.data.synthetic =
        (struct synthetic_config){.n_pairs = 6, .n_queries = 3, .n_keys = 100, .n_values = 100};
    struct loader tr, va;
    open_stream(&tr, &c, false);
    open_stream(&va, &c, true);
    t_check(loader_epoch_size(&tr) == 0 && loader_epoch_size(&va) == 0, "synthetic epoch size not 0");
    struct synthetic_task task = {
        .vocab_size = 512, .n_pairs = 6, .n_queries = 3, .n_keys = 100, .n_values = 100};
    int32_t got[254], ref[254], val[254];
    uint8_t a[254], aref[254];
    int bad = 0, same_val = 0;
    for (int i = 0; i < 10; i++) {
        int64_t g = (int64_t)(t_rng_u64(r) % 100000);
        loader_read(&tr, g, got, a);
        synthetic_sequence(&task, c.seed, g, 254, ref, aref);
        bad += memcmp(got, ref, sizeof got) != 0 || memcmp(a, aref, sizeof a) != 0;
        loader_read(&va, g, val, NULL);
        same_val += memcmp(val, ref, sizeof val) == 0;
    }
    t_check(bad == 0, "loader synthetic: %d sequences differ from synthetic_sequence(seed, g)", bad);
    t_check(same_val == 0, "loader synthetic: validation repeats %d training sequences", same_val);
    loader_free(&tr);
    loader_free(&va);
    config_free(&c);
}

static void test_synthetic(struct t_rng *r) {
    struct synthetic_task task = {
        .vocab_size = 300, .n_pairs = 13, .n_queries = 5, .n_keys = 40, .n_values = 50};
    test_synthetic_layout(r, &task, 1001);
    test_synthetic_layout(r, &task, 1 + 4 * (13 + 5)); /* no filler at all */
    struct synthetic_task many = {
        .vocab_size = 4 + 3 + 7 + 16, .n_pairs = 3, .n_queries = 8, .n_keys = 3, .n_values = 7};
    test_synthetic_layout(r, &many, 97); /* queries repeat pairs */
    test_synthetic_filler(r);
    test_synthetic_check();
    test_loader_synthetic(r);
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 2 && strcmp(argv[1], "--seed") == 0
                        ? strtoull(argv[2], NULL, 10)
                        : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
    printf("test_synthetic: seed %llu\n", (unsigned long long)seed);
    struct t_rng r = {seed};
    test_synthetic(&r);
    return t_finish("test_synthetic");
}
