/*
 * synthetic.c: the key-value retrieval task of synthetic.h.
 *
 * Legend: L sequence length in tokens (the loader asks for seq_len + 1), P n_pairs, Q n_queries,
 * F filler tokens in the body, NF filler vocabulary (vocab_size - SYNTH_FIRST - n_keys - n_values).
 *
 * Layout of one sequence:
 *   [0]                 BOS
 *   [1, L - 4Q)         the body: F = L - 1 - 4Q - 4P filler tokens with the P records
 *                       "KEY VAL k v" inserted; record j starts at 1 + 4j + o_j, where o_j is uniform
 *                       in [floor(jF/P), floor((j+1)F/P)] (stratified, so records cover the body
 *                       evenly and never overlap)
 *   [L - 4Q, L)         Q records "QUERY VAL k v"; k is a key stored in the body, v its value
 *                       (answer[] = 1 exactly at these v). Queries ask distinct pairs, in random
 *                       order; only when Q > P does a pair get asked again (after all were asked).
 * Keys within a sequence are distinct (sampled without replacement); values are independent uniform.
 *
 * Filler: an order-1 Markov chain over the NF filler tokens. Filler token f moves to its successor
 * s_0(f), s_1(f), s_2(f), s_3(f) with probability 1/2, 1/4, 1/8, 1/16, and to a uniform filler
 * token with probability 1/16 (so every transition is possible). The successors are a hash of
 * (f, NF) only, not of the seed: train and validation streams share the language, and a tiny model
 * learns the bigrams quickly: the chain's entropy is 1.625 + (4 + log2 NF) / 16 bits per token
 * (2.5 bits for NF = 1000, 2.8 for NF = 32000) against log2 NF for a uniform guess.
 * The chain continues across records from the last filler token.
 *
 * Randomness: a splitmix64 stream started from a hash of (seed, index), so sequence g costs O(L)
 * without generating 0 .. g - 1.
 *
 * Packed documents (synthetic_packed): n whole tasks back to back, each at least BOS + 4 (P + Q)
 * tokens; the free tokens are split at n - 1 sorted uniform cut points (a stream of (seed, index)),
 * and task d is synthetic_sequence of its length from a seed hashed with d.
 */
#include "synthetic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hash.h"

#define SYNTH_FILLER_MIN 16
#define SYNTH_SUCCESSORS 4
#define SYNTH_SEQ_SALT 0x5EC0E11CE5EED5ull /* separates the sequence hash from other uses of seed */
#define SYNTH_CHAIN_SALT 0xC4A1F111E7ull   /* filler successor table */
#define SYNTH_DOCS_SALT 0xD0C5D0C5D0C5ull   /* packed documents: cut points and their seeds */

struct synth_rng {
    uint64_t state;
};

static uint64_t rng_next(struct synth_rng *r) { return mix64(r->state += 0x9E3779B97F4A7C15ull); }

/* Uniform in [0, n) (multiply-shift; the bias is below 2^-32 for the n used here). */
static int64_t rng_below(struct synth_rng *r, int64_t n) {
    return (int64_t)(((unsigned __int128)rng_next(r) * (uint64_t)n) >> 64);
}

static int64_t filler_first(const struct synthetic_task *t) {
    return SYNTH_FIRST + (int64_t)t->n_keys + t->n_values;
}

/* Successor k of filler index f (0 <= f < nf), fixed by the vocabulary layout alone. */
static int64_t filler_successor(int64_t f, int k, int64_t nf) {
    uint64_t h = mix64(SYNTH_CHAIN_SALT ^ mix64((uint64_t)f * SYNTH_SUCCESSORS + (uint64_t)k) ^
                       ((uint64_t)nf << 32));
    return (int64_t)(h % (uint64_t)nf);
}

/* Next filler index after `prev` (-1 = no previous filler: uniform). */
static int64_t filler_next(struct synth_rng *r, int64_t prev, int64_t nf) {
    uint64_t u = rng_next(r);
    if (prev < 0) return (int64_t)(((unsigned __int128)u * (uint64_t)nf) >> 64);
    unsigned b = (unsigned)(u & 15); /* 8/16, 4/16, 2/16, 1/16 to the successors, 1/16 uniform */
    int k = b < 8 ? 0 : b < 12 ? 1 : b < 14 ? 2 : b < 15 ? 3 : -1;
    if (k >= 0) return filler_successor(prev, k, nf);
    return (int64_t)(((unsigned __int128)(u >> 4) * (uint64_t)nf) >> 60);
}

int synthetic_check(const struct synthetic_task *task, int64_t len, char *err, size_t err_len) {
    const struct synthetic_task *t = task;
    if (t->n_pairs < 1 || t->n_queries < 0 || t->n_values < 1) {
        snprintf(err, err_len,
                 "data.synthetic: n_pairs %d, n_queries %d, n_values %d; expected n_pairs >= 1, "
                 "n_queries >= 0, n_values >= 1",
                 t->n_pairs, t->n_queries, t->n_values);
        return -1;
    }
    if (t->n_keys < t->n_pairs) {
        snprintf(err, err_len,
                 "data.synthetic.n_keys is %d, expected >= data.synthetic.n_pairs (%d): the keys of "
                 "one sequence are distinct",
                 t->n_keys, t->n_pairs);
        return -1;
    }
    int64_t need_vocab = filler_first(t) + SYNTH_FILLER_MIN;
    if (t->vocab_size < need_vocab || t->vocab_size > INT32_MAX) {
        snprintf(err, err_len,
                 "model.vocab_size is %lld, the synthetic task (data.synthetic) needs at least 4 + n_keys %d + n_values "
                 "%d + %d filler tokens = %lld (and at most 2^31 - 1)",
                 (long long)t->vocab_size, t->n_keys, t->n_values, SYNTH_FILLER_MIN,
                 (long long)need_vocab);
        return -1;
    }
    int64_t need_len = 1 + 4 * ((int64_t)t->n_pairs + t->n_queries);
    if (len < need_len) {
        snprintf(err, err_len,
                 "a sequence of %lld tokens (data.seq_len + 1) is too short for the synthetic task "
                 "(data.synthetic): BOS + %d pair records + %d query records of 4 tokens = %lld",
                 (long long)len, t->n_pairs, t->n_queries, (long long)need_len);
        return -1;
    }
    return 0;
}

/* The first m entries of a uniform random permutation of 0 .. n-1 (partial Fisher-Yates). */
static void sample_distinct(struct synth_rng *r, int32_t *out, int32_t *scratch, int n, int m) {
    for (int i = 0; i < n; i++) scratch[i] = i;
    for (int i = 0; i < m; i++) {
        int j = i + (int)rng_below(r, n - i);
        int32_t x = scratch[j];
        scratch[j] = scratch[i];
        scratch[i] = x;
        out[i] = x;
    }
}

/* Filler tokens at [from, to), continuing the chain from *prev. */
static void write_filler(struct synth_rng *r, int32_t *tokens, int64_t from, int64_t to, int64_t *prev,
                         int64_t first, int64_t nf) {
    for (int64_t i = from; i < to; i++) {
        *prev = filler_next(r, *prev, nf);
        tokens[i] = (int32_t)(first + *prev);
    }
}

/* "head VAL k v": the value right after its key, in the records and in the queries alike, so the
 * value is predicted at the query's key by finding that key earlier and copying what followed it
 * (one induction step). With "head k VAL v" every VAL looks alike and retrieval needs a two-hop
 * match. */
static void write_record(int32_t *tokens, int64_t at, int32_t head, int32_t key, int32_t value) {
    tokens[at] = head;
    tokens[at + 1] = SYNTH_VAL;
    tokens[at + 2] = key;
    tokens[at + 3] = value;
}

void synthetic_sequence(const struct synthetic_task *task, uint64_t seed, int64_t index, int64_t len,
                        int32_t *tokens, uint8_t *answer) {
    char err[256];
    CHECKF(synthetic_check(task, len, err, sizeof err) == 0, "synthetic_sequence: %s", err);
    const int np = task->n_pairs, nq = task->n_queries;
    const int64_t first = filler_first(task), nf = task->vocab_size - first;
    const int32_t key0 = SYNTH_FIRST, value0 = SYNTH_FIRST + task->n_keys;
    struct synth_rng r = {mix64(seed ^ mix64((uint64_t)index ^ SYNTH_SEQ_SALT))};

    int n_scratch = task->n_keys > np ? task->n_keys : np;
    int32_t *scratch = xmalloc((size_t)n_scratch * sizeof *scratch);
    int32_t *keys = xmalloc((size_t)np * sizeof *keys);     /* (P) key index of record j */
    int32_t *values = xmalloc((size_t)np * sizeof *values); /* (P) value index of record j */
    int32_t *asked = xmalloc((size_t)np * sizeof *asked);   /* (P) record asked by query q mod P */
    sample_distinct(&r, keys, scratch, task->n_keys, np);
    for (int j = 0; j < np; j++) values[j] = (int32_t)rng_below(&r, task->n_values);
    sample_distinct(&r, asked, scratch, np, np);

    const int64_t query_start = len - 4 * (int64_t)nq;
    const int64_t n_filler = query_start - 1 - 4 * (int64_t)np; /* F */
    tokens[0] = SYNTH_BOS;
    int64_t pos = 1, prev = -1;
    for (int j = 0; j < np; j++) {
        int64_t lo = (int64_t)j * n_filler / np, hi = ((int64_t)j + 1) * n_filler / np;
        int64_t at = 1 + 4 * (int64_t)j + lo + rng_below(&r, hi - lo + 1);
        write_filler(&r, tokens, pos, at, &prev, first, nf);
        write_record(tokens, at, SYNTH_KEY, key0 + keys[j], value0 + values[j]);
        pos = at + 4;
    }
    write_filler(&r, tokens, pos, query_start, &prev, first, nf);
    for (int q = 0; q < nq; q++) {
        int j = asked[q % np];
        write_record(tokens, query_start + 4 * (int64_t)q, SYNTH_QUERY, key0 + keys[j],
                     value0 + values[j]);
    }
    if (answer) {
        for (int64_t i = 0; i < query_start; i++) answer[i] = 0;
        for (int64_t i = query_start; i < len; i++) answer[i] = (uint8_t)((i - query_start) % 4 == 3);
    }
    free(scratch);
    free(keys);
    free(values);
    free(asked);
}

/* Tokens a task needs at least: BOS and the records. */
static int64_t task_min_len(const struct synthetic_task *t) {
    return 1 + 4 * ((int64_t)t->n_pairs + t->n_queries);
}

int synthetic_check_packed(const struct synthetic_task *task, int64_t len, int documents,
                           char *err, size_t err_len) {
    if (documents <= 1) return synthetic_check(task, len, err, err_len);
    int64_t need = task_min_len(task);
    if (task->n_pairs >= 1 && task->n_queries >= 0 && len < documents * need) {
        snprintf(err, err_len,
                 "data.synthetic.documents is %d: that many tasks of at least %lld tokens (BOS + "
                 "%d pair records + %d query records of 4 tokens) need %lld, and a sequence has "
                 "%lld (data.seq_len + 1)",
                 documents, (long long)need, task->n_pairs, task->n_queries,
                 (long long)(documents * need), (long long)len);
        return -1;
    }
    return synthetic_check(task, need, err, err_len);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void synthetic_packed(const struct synthetic_task *task, uint64_t seed, int64_t index, int64_t len,
                      int documents, int32_t *tokens, uint8_t *answer, uint8_t *doc_first) {
    char err[256];
    CHECKF(documents >= 2 && synthetic_check_packed(task, len, documents, err, sizeof err) == 0,
           "synthetic_packed: %s", documents >= 2 ? err : "fewer than 2 documents");
    int64_t free_tokens = len - documents * task_min_len(task);
    struct synth_rng r = {mix64(seed ^ SYNTH_DOCS_SALT ^ mix64((uint64_t)index ^ SYNTH_SEQ_SALT))};
    int64_t *cut = xmalloc((size_t)(documents + 1) * sizeof *cut); /* cut[d]: free tokens before d */
    cut[0] = 0;
    for (int d = 1; d < documents; d++) cut[d] = rng_below(&r, free_tokens + 1);
    qsort(cut + 1, (size_t)(documents - 1), sizeof *cut, cmp_i64);
    cut[documents] = free_tokens;
    if (doc_first) memset(doc_first, 0, (size_t)len);
    int64_t at = 0;
    for (int d = 0; d < documents; d++) {
        int64_t n = task_min_len(task) + cut[d + 1] - cut[d];
        uint64_t doc_seed = mix64(seed ^ SYNTH_DOCS_SALT ^ ((uint64_t)d + 1));
        synthetic_sequence(task, doc_seed, index, n, tokens + at, answer ? answer + at : NULL);
        if (doc_first) doc_first[at] = 1;
        at += n;
    }
    CHECK(at == len);
    free(cut);
}
