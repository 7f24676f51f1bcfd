/*
 * test_data.c: the data layer: token shards (round trip, byte layout, rejection of corrupt files),
 * the loader (exact windows, one visit per window per epoch, determinism, random access, as a
 * resumed step reads, epoch boundaries, validation order, user errors, shards mixed with the
 * synthetic task). The synthetic task itself: tests/test_synthetic.c.
 *
 * Everything is exact integer data, so every comparison is exact (no tolerances).
 * Inputs are drawn from a fresh seed each run (printed, so a failure can be replayed with
 * `test_data --seed S`). Temporary files live in a mkdtemp() folder under /tmp, removed at the end.
 *
 * Second mode, for tests/test_prepare.sh: `test_data --check-shards VOCAB FILE...` validates each
 * file with token_shard_check() against the model vocabulary VOCAB and prints one line per file;
 * exit 0 when all are valid.
 *
 * Legend: T seq_len, W windows, V vocabulary, n tokens.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "loader.h"
#include "shard.h"
#include "synthetic.h"
#include "testlib.h"

#define MAX_SHARDS 8
#define MAX_WINDOWS 64

/* ---------------------------------------------------------------- helpers */

static void path_in(char *out, size_t n, const char *dir, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

static void write_bytes(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(b, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = xmalloc((size_t)len);
    CHECK(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* The shard bytes, built here independently of shard.c from the table in shard.h. */
static uint8_t *shard_bytes(const uint32_t *tokens, int64_t n, uint64_t vocab, int width, size_t *len) {
    *len = 32 + (size_t)n * (size_t)width;
    uint8_t *b = xcalloc(*len, 1);
    memcpy(b, "INFLTOK1", 8);
    put_le(b + 8, 1, 4);
    put_le(b + 12, (uint64_t)width, 4);
    put_le(b + 16, (uint64_t)n, 8);
    put_le(b + 24, vocab, 8);
    for (int64_t i = 0; i < n; i++) put_le(b + 32 + i * width, tokens[i], width);
    return b;
}

static uint32_t *random_tokens(struct t_rng *r, int64_t n, uint32_t vocab) {
    uint32_t *t = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *t);
    for (int64_t i = 0; i < n; i++) t[i] = (uint32_t)(t_rng_u64(r) % vocab);
    return t;
}

/* Runs fn(arg) in a child; expects exit code `code` and `substr` in its stderr. */
typedef void (*death_fn)(void *arg);
static void expect_death(const char *what, int code, const char *substr, death_fn fn, void *arg) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn(arg);
        _exit(99);
    }
    close(fds[1]);
    char buf[2048];
    size_t len = 0;
    ssize_t k;
    while ((k = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)k;
    buf[len] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    int got = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    t_check(got == code && strstr(buf, substr) != NULL && strncmp(buf, "error: ", 7) == 0,
            "%s: exit %d (expected %d), stderr \"%s\" (expected to contain \"%s\")", what, got, code,
            buf, substr);
}

/* ---------------------------------------------------------------- shards */

/* Writes with token_shard_write, compares the bytes with shard_bytes(), reads every token back. */
static void test_round_trip(struct t_rng *r, const char *dir, int64_t n, uint64_t vocab) {
    char path[512];
    path_in(path, sizeof path, dir, "round.tok");
    uint32_t *t = random_tokens(r, n, (uint32_t)(vocab - 1));
    if (n > 0) t[n / 2] = (uint32_t)(vocab - 1); /* the largest legal token */
    token_shard_write(path, t, n, (int64_t)vocab);
    int width = vocab <= 65536 ? 2 : 4;
    size_t want_len, got_len;
    uint8_t *want = shard_bytes(t, n, vocab, width, &want_len);
    uint8_t *got = read_bytes(path, &got_len);
    t_check(got_len == want_len && memcmp(got, want, want_len) == 0,
            "round trip n %lld vocab %llu: file bytes differ from the shard.h layout", (long long)n,
            (unsigned long long)vocab);
    struct token_shard s;
    char err[512] = "";
    int rc = token_shard_check(&s, path, (int64_t)vocab, err, sizeof err);
    t_check(rc == 0, "round trip n %lld vocab %llu: check failed: %s", (long long)n,
            (unsigned long long)vocab, err);
    if (rc == 0) {
        t_check(s.token_bytes == width && s.n_tokens == n && s.vocab_size == (int64_t)vocab &&
                    strcmp(s.path, path) == 0,
                "round trip header fields: width %d n %lld vocab %lld", s.token_bytes,
                (long long)s.n_tokens, (long long)s.vocab_size);
        int64_t bad = -1;
        for (int64_t i = 0; i < n && bad < 0; i++)
            if (token_shard_get(&s, i) != t[i]) bad = i;
        t_check(bad < 0, "round trip n %lld vocab %llu: token %lld differs", (long long)n,
                (unsigned long long)vocab, (long long)bad);
        token_shard_close(&s);
    }
    free(t);
    free(want);
    free(got);
}

/* token_shard_read on a file that changes under the mapping: a clean error naming what changed,
 * never a crash. The SIGBUS case simulates the race the size check cannot see (the file shrinks
 * between the check and the copy) by letting the check see the shrunken size. */
static bool read_fails_with(struct token_shard *s, int64_t first, int64_t n, const char *substr) {
    int32_t *out = malloc((size_t)n * sizeof *out);
    char err[512] = "";
    int rc = token_shard_read(s, first, n, out, err, sizeof err);
    free(out);
    return t_check(rc != 0 && strstr(err, substr) && strstr(err, s->path),
                   "token_shard_read: rc %d, \"%s\", expected the path and \"%s\"", rc, err, substr);
}

static void test_shard_changes(struct t_rng *r, const char *dir) {
    char path[512], other[512];
    path_in(path, sizeof path, dir, "live.tok");
    path_in(other, sizeof other, dir, "other.tok");
    int64_t n = 8192; /* 16 KiB of tokens: several pages */
    uint32_t *t = random_tokens(r, n, 999);
    token_shard_write(path, t, n, 1000);
    struct token_shard s;
    char err[512];
    CHECK(token_shard_check(&s, path, 1000, err, sizeof err) == 0);
    int32_t got[64];
    t_check(token_shard_read(&s, n - 64, 64, got, err, sizeof err) == 0 && got[63] == (int32_t)t[n - 1],
            "token_shard_read of an unchanged shard: %s", err);
    /* Each case below is one check: the modification time is set back to the open's (as a write
     * within the file system's timestamp tick of the open leaves it) except where it is tested. */
    int fd = open(path, O_WRONLY);
    struct stat st;
    CHECK(fd >= 0 && fstat(fd, &st) == 0);
    struct timespec opened[2] = {{0, UTIME_OMIT}, st.st_mtim}, later[2] = {{0, UTIME_OMIT}, st.st_mtim};
    later[1].tv_sec += 1;
    /* rewritten in place with valid tokens: only the modification time tells */
    uint16_t small = 7, big = 4000;
    CHECK(pwrite(fd, &small, 2, SHARD_HEADER_BYTES + 2 * 10) == 2 && futimens(fd, later) == 0);
    read_fails_with(&s, 0, 64, "was written to while training (modified 1.000 s after");
    CHECK(futimens(fd, opened) == 0);
    t_check(token_shard_read(&s, 0, 64, got, err, sizeof err) == 0 && got[10] == 7,
            "token_shard_read with the open's modification time: %s", err);
    /* a token past the vocabulary */
    CHECK(pwrite(fd, &big, 2, SHARD_HEADER_BYTES + 2 * 10) == 2 && futimens(fd, opened) == 0);
    read_fails_with(&s, 0, 64, "is 4000, not below 1000: the shard was rewritten");
    /* truncated: the size check */
    CHECK(ftruncate(fd, 4096) == 0 && futimens(fd, opened) == 0);
    read_fails_with(&s, 0, 64, "is now 4096 bytes, was 16416");
    /* the fault itself: the check sees the new size, the copy reaches past the end */
    size_t real = s.file_bytes;
    s.file_bytes = 4096;
    read_fails_with(&s, n - 64, 64, "faulted (SIGBUS)");
    s.file_bytes = real;
    CHECK(ftruncate(fd, (off_t)real) == 0 && futimens(fd, opened) == 0);
    close(fd);
    /* replaced by another file, then removed */
    token_shard_write(other, t, n, 1000);
    CHECK(rename(other, path) == 0);
    read_fails_with(&s, 0, 64, "now names another file");
    CHECK(unlink(path) == 0);
    read_fails_with(&s, 0, 64, "no longer exists");
    token_shard_close(&s);
    free(t);
}

/* Writes `b` to a file and expects token_shard_check to reject it with the path and `substr`. */
static void expect_reject(const char *dir, const char *what, const uint8_t *b, size_t len,
                          int64_t model_vocab, const char *substr) {
    char path[512];
    path_in(path, sizeof path, dir, "bad.tok");
    write_bytes(path, b, len);
    struct token_shard s;
    char err[512] = "";
    int rc = token_shard_check(&s, path, model_vocab, err, sizeof err);
    t_check(rc == -1 && strncmp(err, path, strlen(path)) == 0 && strstr(err, substr) != NULL,
            "reject %s: rc %d, message \"%s\" (expected \"%s: ...%s...\")", what, rc, err, path,
            substr);
    if (rc == 0) token_shard_close(&s);
}

static void open_bad_shard(void *path) {
    struct token_shard s;
    token_shard_open(&s, path, 0);
}

static void test_corrupt_shards(struct t_rng *r, const char *dir) {
    const int64_t n = 500;
    const uint64_t vocab = 32000;
    uint32_t *t = random_tokens(r, n, (uint32_t)vocab);
    size_t len;
    uint8_t *good = shard_bytes(t, n, vocab, 2, &len);
    uint8_t *b = xmalloc(len + 8);
#define FRESH() memcpy(b, good, len)
    FRESH();
    memcpy(b, "ABCDEFGH", 8);
    expect_reject(dir, "magic", b, len, 0, "offset 0: bad magic \"ABCDEFGH\", expected \"INFLTOK1\"");
    FRESH();
    put_le(b + 8, 2, 4);
    expect_reject(dir, "version", b, len, 0, "offset 8: version 2, expected 1");
    FRESH();
    put_le(b + 12, 3, 4);
    expect_reject(dir, "width", b, len, 0, "offset 12: token width 3 bytes");
    FRESH();
    put_le(b + 24, 0, 8);
    expect_reject(dir, "vocab 0", b, len, 0, "offset 24: vocabulary size 0");
    FRESH();
    expect_reject(dir, "truncated", b, len - 1, 0,
                  "file is 1031 bytes, header says 32 + 500 tokens x 2 bytes = 1032");
    FRESH();
    b[len] = 0;
    expect_reject(dir, "extra byte", b, len + 1, 0, "file is 1033 bytes");
    FRESH();
    put_le(b + 16, UINT64_MAX / 2, 8);
    expect_reject(dir, "huge count", b, len, 0, "token count too large");
    FRESH();
    put_le(b + 32 + 7 * 2, 32000, 2);
    expect_reject(dir, "token >= header vocab", b, len, 0,
                  "token 7 at offset 46 is 32000, not below the shard's vocabulary 32000");
    FRESH();
    int64_t k = 100 + (int64_t)(t_rng_u64(r) % 300);
    put_le(b + 32 + k * 2, 31000, 2);
    for (int64_t i = 0; i < k; i++) put_le(b + 32 + i * 2, t[i] % 20000, 2);
    char msg[128];
    snprintf(msg, sizeof msg, "token %lld at offset %lld is 31000, not below the model vocabulary",
             (long long)k, (long long)(32 + 2 * k));
    expect_reject(dir, "token >= model vocab", b, len, 20000, msg);
    expect_reject(dir, "empty file", b, 0, 0, "file is 0 bytes, shorter than the 32-byte header");
    expect_reject(dir, "short file", b, 20, 0, "file is 20 bytes, shorter than the 32-byte header");
#undef FRESH
    /* The intact file passes with the model vocabulary equal to the header's (the bound is < vocab). */
    struct token_shard s;
    char err[512] = "";
    char path[512];
    path_in(path, sizeof path, dir, "good.tok");
    write_bytes(path, good, len);
    int rc = token_shard_check(&s, path, (int64_t)vocab, err, sizeof err);
    t_check(rc == 0, "valid shard rejected: %s", err);
    if (rc == 0) token_shard_close(&s);
    path_in(path, sizeof path, dir, "missing.tok");
    rc = token_shard_check(&s, path, 0, err, sizeof err);
    t_check(rc == -1 && strstr(err, "cannot open") != NULL, "missing file: \"%s\"", err);
    /* token_shard_open dies with exit 2 and the same line. */
    path_in(path, sizeof path, dir, "bad.tok");
    memcpy(b, good, len);
    put_le(b + 8, 7, 4);
    write_bytes(path, b, len);
    expect_death("token_shard_open on a bad version", 2, "offset 8: version 7, expected 1",
                 open_bad_shard, path);
    free(t);
    free(good);
    free(b);
}

/* ---------------------------------------------------------------- loader over shards */

struct shard_set {
    int n;
    char paths[MAX_SHARDS][512];
    uint32_t *tokens[MAX_SHARDS];
    int64_t len[MAX_SHARDS];
    /* the test's own window list: shard and first token of every window, in shard order */
    int64_t n_windows;
    int win_shard[MAX_WINDOWS];
    int64_t win_first[MAX_WINDOWS];
};

static void shard_set_add(struct shard_set *ss, struct t_rng *r, const char *dir, int64_t n,
                          uint32_t vocab, int64_t T) {
    int i = ss->n++;
    CHECK(i < MAX_SHARDS);
    char name[64];
    snprintf(name, sizeof name, "loader_%d.tok", i);
    path_in(ss->paths[i], sizeof ss->paths[i], dir, name);
    ss->tokens[i] = random_tokens(r, n, vocab);
    ss->len[i] = n;
    token_shard_write(ss->paths[i], ss->tokens[i], n, vocab);
    for (int64_t first = 0; first + T + 1 <= n; first += T) {
        CHECK(ss->n_windows < MAX_WINDOWS);
        ss->win_shard[ss->n_windows] = i;
        ss->win_first[ss->n_windows++] = first;
    }
}

static void shard_set_free(struct shard_set *ss) {
    for (int i = 0; i < ss->n; i++) free(ss->tokens[i]);
}

/* Window of the test's list whose T + 1 tokens equal seq, or -1. */
static int match_window(const struct shard_set *ss, const int32_t *seq, int64_t T) {
    for (int64_t w = 0; w < ss->n_windows; w++) {
        const uint32_t *t = ss->tokens[ss->win_shard[w]] + ss->win_first[w];
        int64_t i = 0;
        while (i <= T && (uint32_t)seq[i] == t[i]) i++;
        if (i > T) return (int)w;
    }
    return -1;
}

/* loader_init on the config's training or validation stream. */
static void open_stream(struct loader *l, const struct config *c, bool val) {
    struct loader_source s = config_loader_source(c, val);
    loader_init(l, &s);
}

static void config_set_files(struct string_list *list, const struct shard_set *ss, const int *which,
                             int n) {
    list->n = n;
    for (int i = 0; i < n; i++) list->items[i] = xstrdup(ss->paths[which[i]]);
}

static void config_shards(struct config *c, const struct shard_set *ss, int64_t T, int64_t vocab,
                          uint64_t seed) {
    config_defaults(c);
    c->seed = seed;
    c->model.vocab_size = vocab;
    c->data.seq_len = T;
    c->data.source = DATA_SOURCE_SHARDS;
    int all[MAX_SHARDS];
    for (int i = 0; i < ss->n; i++) all[i] = i;
    config_set_files(&c->data.train_files, ss, all, ss->n);
}

/* order[g] = test-list window of sequence g for g < n_seq, checking every read on the way. */
static void read_order(struct loader *l, const struct shard_set *ss, int64_t n_seq, int *order) {
    int64_t T = l->seq_len;
    int32_t *seq = xmalloc((size_t)(T + 1) * sizeof *seq);
    uint8_t *answer = xmalloc((size_t)(T + 1));
    int bad_match = 0, bad_perm = 0, bad_answer = 0;
    for (int64_t g = 0; g < n_seq; g++) {
        memset(answer, 0xAA, (size_t)(T + 1));
        loader_read(l, g, seq, answer);
        order[g] = match_window(ss, seq, T);
        bad_match += order[g] < 0;
        /* the window the loader's permutation names is the one whose tokens came back */
        bad_perm += l->perm && order[g] != l->perm[g % l->n_windows];
        for (int64_t i = 0; i <= T; i++) bad_answer += answer[i] != 0;
    }
    t_check(bad_match == 0, "loader: %d sequences match no window of the shards", bad_match);
    t_check(bad_perm == 0, "loader: %d sequences are not the window perm[] names", bad_perm);
    t_check(bad_answer == 0, "loader: answer[] not all zero for shards (%d bytes)", bad_answer);
    free(seq);
    free(answer);
}

static void expect_each_window_once(const int *order, int64_t W, int64_t epoch) {
    int count[MAX_WINDOWS] = {0};
    int bad = 0;
    for (int64_t i = 0; i < W; i++)
        if (order[epoch * W + i] >= 0) count[order[epoch * W + i]]++;
    for (int64_t w = 0; w < W; w++) bad += count[w] != 1;
    t_check(bad == 0, "epoch %lld: %d windows not read exactly once", (long long)epoch, bad);
}

static bool same_orders(const int *a, const int *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

#define EPOCHS 3

static void test_loader_train(struct t_rng *r, const struct shard_set *ss, int64_t T, int64_t vocab) {
    uint64_t seed = t_rng_u64(r);
    struct config c;
    config_shards(&c, ss, T, vocab, seed);
    struct loader l, l2, l3;
    open_stream(&l, &c, false);
    const int64_t W = ss->n_windows;
    t_check(loader_epoch_size(&l) == W, "epoch size %lld, expected %lld",
            (long long)loader_epoch_size(&l), (long long)W);
    int order[EPOCHS * MAX_WINDOWS], again[EPOCHS * MAX_WINDOWS], other[EPOCHS * MAX_WINDOWS];
    read_order(&l, ss, EPOCHS * W, order);
    for (int e = 0; e < EPOCHS; e++) expect_each_window_once(order, W, e);
    t_check(!same_orders(order, order + W, W) && !same_orders(order + W, order + 2 * W, W),
            "epochs 0, 1, 2 are not shuffled differently");

    open_stream(&l2, &c, false);
    read_order(&l2, ss, EPOCHS * W, again);
    t_check(same_orders(order, again, EPOCHS * W), "two loaders with the same seed disagree");
    c.seed = seed + 1;
    open_stream(&l3, &c, false);
    read_order(&l3, ss, EPOCHS * W, other);
    t_check(!same_orders(order, other, EPOCHS * W), "a different seed gives the same order");

    /* Random access (what a resumed step does): any g, in any order, across epoch boundaries. */
    int32_t *seq = xmalloc((size_t)(T + 1) * sizeof *seq);
    int bad = 0;
    int64_t probes[] = {W - 1, W, W - 1, 2 * W, 0, 2 * W - 1, W + 1};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        loader_read(&l2, probes[i], seq, NULL);
        bad += match_window(ss, seq, T) != order[probes[i]];
    }
    for (int i = 0; i < 60; i++) {
        int64_t g = (int64_t)(t_rng_u64(r) % (uint64_t)(EPOCHS * W));
        loader_read(&l2, g, seq, NULL);
        bad += match_window(ss, seq, T) != order[g];
    }
    t_check(bad == 0, "random access: %d reads differ from the sequential order", bad);
    free(seq);
    loader_free(&l);
    loader_free(&l2);
    loader_free(&l3);
    config_free(&c);
}

static void init_and_read(void *arg) {
    struct config *c = arg;
    struct loader l;
    open_stream(&l, c, false);
    int32_t seq[64];
    loader_read(&l, 0, seq, NULL);
}

static void init_val_and_read(void *arg) {
    struct config *c = arg;
    struct loader l;
    open_stream(&l, c, true);
    int32_t seq[64];
    loader_read(&l, 0, seq, NULL);
}

/* Validation: file order, no shuffle; no val_files = no sequences; user errors. */
static void test_loader_val_and_errors(struct t_rng *r, const struct shard_set *ss, int64_t T,
                                       int64_t vocab) {
    struct config c;
    config_shards(&c, ss, T, vocab, t_rng_u64(r));
    struct loader l;
    open_stream(&l, &c, true);
    t_check(loader_epoch_size(&l) == 0, "val loader without val_files: epoch size %lld",
            (long long)loader_epoch_size(&l));
    loader_free(&l);
    expect_death("reading an empty val stream", 1, "no sequences", init_val_and_read, &c);

    int val_which[] = {3, 0}; /* D then A: file order of the list, not of the folder */
    config_set_files(&c.data.val_files, ss, val_which, 2);
    open_stream(&l, &c, true);
    int64_t W = 0;
    int expect[MAX_WINDOWS];
    for (int f = 0; f < 2; f++)
        for (int64_t w = 0; w < ss->n_windows; w++)
            if (ss->win_shard[w] == val_which[f]) expect[W++] = (int)w;
    t_check(loader_epoch_size(&l) == W, "val epoch size %lld, expected %lld",
            (long long)loader_epoch_size(&l), (long long)W);
    int order[2 * MAX_WINDOWS];
    read_order(&l, ss, 2 * W, order);
    int bad = 0;
    for (int64_t g = 0; g < 2 * W; g++) bad += order[g] != expect[g % W];
    t_check(bad == 0, "val stream: %d sequences out of file order", bad);
    loader_free(&l);

    /* Shards shorter than T + 1 everywhere: exit 2 naming data.seq_len and the longest shard. */
    c.data.seq_len = 1000;
    expect_death("all shards too short", 2, "data.seq_len + 1 = 1001", init_and_read, &c);
    /* A token the model's vocabulary cannot embed. */
    c.data.seq_len = T;
    c.model.vocab_size = 100;
    expect_death("token >= model.vocab_size", 2, "not below the model vocabulary", init_and_read, &c);
    c.model.vocab_size = vocab;
    config_free(&c);
}

/* Shards mixed with the synthetic task (data.synthetic.fraction): the shard sequences are the
 * unmixed stream in its order, the synthetic ones synthetic_sequence(seed, 0, 1, 2, ...), their
 * count over any run of n sequences floor or ceil of n x fraction, documents only at a synthetic
 * sequence's start even where its tokens hold the end-of-document token. */
static void test_loader_mix(struct t_rng *r, const struct shard_set *ss, int64_t T, int64_t vocab) {
    struct config c;
    config_shards(&c, ss, T, vocab, t_rng_u64(r));
    c.data.eod_token = SYNTH_KEY; /* in every record of the task: no document end there */
    c.data.synthetic = (struct synthetic_config){
        .n_pairs = 4, .n_queries = 2, .n_keys = 10, .n_values = 10, .documents = 1};
    struct synthetic_task task = {vocab, 4, 2, 10, 10};
    struct loader plain, mix;
    open_stream(&plain, &c, false);
    const double fractions[3] = {0.25, 1.0 / 3, 0.01 + 0.9 * t_rng_uniform(r)};
    int64_t n = 30 * ss->n_windows; /* over 2 epochs of the shards at a fraction up to 0.91 */
    int32_t *seq = xmalloc((size_t)(T + 1) * sizeof *seq), *ref = xmalloc((size_t)(T + 1) * 4);
    uint8_t *ans = xmalloc((size_t)(T + 1)), *aref = xmalloc((size_t)(T + 1));
    uint8_t *doc = xmalloc((size_t)(T + 1));
    for (int k = 0; k < 3; k++) {
        c.data.synthetic.fraction = fractions[k];
        open_stream(&mix, &c, false);
        int64_t ppm = llround(fractions[k] * 1e6), n_syn = 0, n_shard = 0;
        int bad_shard = 0, bad_syn = 0, bad_docs = 0, bad_count = 0;
        for (int64_t g = 0; g < n; g++) {
            bool syn = loader_is_synthetic(&mix, g);
            loader_read_docs(&mix, g, seq, ans, doc);
            if (syn) {
                synthetic_sequence(&task, c.seed, n_syn++, T + 1, ref, aref);
                bad_syn += memcmp(seq, ref, (size_t)(T + 1) * sizeof *seq) != 0 ||
                           memcmp(ans, aref, (size_t)(T + 1)) != 0;
                for (int64_t i = 1; i <= T; i++) bad_docs += doc[i] != 0;
            } else {
                loader_read(&plain, n_shard++, ref, NULL);
                bad_shard += memcmp(seq, ref, (size_t)(T + 1) * sizeof *seq) != 0;
                for (int64_t i = 0; i <= T; i++) bad_syn += ans[i] != 0;
            }
            bad_docs += doc[0] != 1;
            bad_count += n_syn != (int64_t)((g + 1) * ppm / 1000000);
        }
        for (int i = 0; i < 50; i++) { /* any run of sequences: floor or ceil of its share */
            int64_t first = (int64_t)(t_rng_u64(r) % (uint64_t)n), len = (int64_t)(t_rng_u64(r) % 200);
            int64_t count = 0;
            for (int64_t g = first; g < first + len; g++) count += loader_is_synthetic(&mix, g);
            double want = (double)len * (double)ppm / 1e6;
            bad_count += count != loader_synthetic_count(&mix, first, len) ||
                         count < floor(want) || count > ceil(want);
        }
        t_check(bad_shard == 0 && bad_syn == 0 && bad_docs == 0 && bad_count == 0 && n_syn > 0,
                "mix %.4f: %lld synthetic of %lld; differ: %d shard, %d synthetic sequences, %d "
                "document starts, %d counts", fractions[k], (long long)n_syn, (long long)n,
                bad_shard, bad_syn, bad_docs, bad_count);
        loader_free(&mix);
    }
    free(seq), free(ref), free(ans), free(aref), free(doc);
    loader_free(&plain);
    config_free(&c);
}

/* The opening check's progress: one call per shard, in order, bytes growing to the files' sum. */
struct progress_log {
    int calls, bad;
    int64_t last_bytes, total;
};

static void record_progress(void *ctx, int done, int n, int64_t bytes_done, int64_t bytes_total) {
    struct progress_log *p = ctx;
    p->bad += done != p->calls + 1 || n != 4 || bytes_done < p->last_bytes ||
              bytes_total != p->total;
    p->calls++;
    p->last_bytes = bytes_done;
}

static void test_loader_progress(struct t_rng *r, const struct shard_set *ss, int64_t T,
                                 int64_t vocab) {
    struct config c;
    config_shards(&c, ss, T, vocab, t_rng_u64(r));
    struct loader_source s = config_loader_source(&c, false);
    struct progress_log p = {0};
    for (int i = 0; i < ss->n; i++) {
        struct stat st;
        CHECK(stat(ss->paths[i], &st) == 0);
        p.total += st.st_size;
    }
    s.on_open = record_progress;
    s.on_open_ctx = &p;
    struct loader l;
    loader_init(&l, &s);
    t_check(p.calls == ss->n && p.bad == 0 && p.last_bytes == p.total,
            "open progress: %d calls for %d shards, %d out of order, %lld of %lld bytes",
            p.calls, ss->n, p.bad, (long long)p.last_bytes, (long long)p.total);
    loader_free(&l);
    config_free(&c);
}

/* A file listed twice is read twice an epoch (how a set is up-weighted, docs/DATA.md). */
static void test_loader_repeat(struct t_rng *r, const struct shard_set *ss, int64_t T,
                               int64_t vocab) {
    struct config c;
    config_shards(&c, ss, T, vocab, t_rng_u64(r));
    for (int i = 0; i < c.data.train_files.n; i++) free(c.data.train_files.items[i]);
    int twice[2] = {0, 0}; /* A, A */
    config_set_files(&c.data.train_files, ss, twice, 2);
    struct loader l;
    open_stream(&l, &c, false);
    int64_t W = 0;
    for (int64_t w = 0; w < ss->n_windows; w++) W += ss->win_shard[w] == 0;
    int count[MAX_WINDOWS] = {0}, bad = 0;
    int32_t *seq = xmalloc((size_t)(T + 1) * sizeof *seq);
    for (int64_t g = 0; g < 2 * W; g++) { /* one epoch */
        loader_read(&l, g, seq, NULL);
        int w = match_window(ss, seq, T);
        bad += w < 0;
        count[w >= 0 ? w : 0] += w >= 0;
    }
    free(seq);
    for (int64_t w = 0; w < ss->n_windows; w++) bad += count[w] != (ss->win_shard[w] == 0 ? 2 : 0);
    t_check(loader_epoch_size(&l) == 2 * W && bad == 0,
            "a file listed twice: epoch of %lld sequences (expected %lld), %d windows not read "
            "twice", (long long)loader_epoch_size(&l), (long long)(2 * W), bad);
    loader_free(&l);
    config_free(&c);
}

static void test_loader(struct t_rng *r, const char *dir) {
    /* T = 37 so nothing lines up with a power of two; shard lengths exercise every edge:
     * 12 windows plus a spare token, exactly T + 1 (one window), shorter than T + 1 (none),
     * 7 windows plus T - 1 spare tokens, and a u32 shard. */
    const int64_t T = 37, vocab = 70000;
    struct shard_set ss = {0};
    shard_set_add(&ss, r, dir, 12 * T + 2, 50000, T); /* A: u16 */
    shard_set_add(&ss, r, dir, T + 1, 50000, T);      /* B */
    shard_set_add(&ss, r, dir, T, 50000, T);          /* C: no window */
    shard_set_add(&ss, r, dir, 8 * T, 70000, T);      /* D: u32, 7 windows */
    t_check(ss.n_windows == 20, "test setup: %lld windows", (long long)ss.n_windows);
    test_loader_train(r, &ss, T, vocab);
    test_loader_val_and_errors(r, &ss, T, vocab);
    test_loader_mix(r, &ss, T, vocab);
    test_loader_repeat(r, &ss, T, vocab);
    test_loader_progress(r, &ss, T, vocab);
    shard_set_free(&ss);
}

/* ---------------------------------------------------------------- main */

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        path_in(path, sizeof path, dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* --check-shards VOCAB FILE...: one line per file, exit 0 when all are valid. */
static int check_shards(int argc, char **argv) {
    int64_t vocab = argc > 2 ? strtoll(argv[2], NULL, 10) : 0;
    int bad = argc < 4;
    for (int i = 3; i < argc; i++) {
        struct token_shard s;
        char err[512];
        if (token_shard_check(&s, argv[i], vocab, err, sizeof err) != 0) {
            printf("invalid %s\n", err);
            bad++;
            continue;
        }
        printf("ok %s: %lld tokens x %d bytes, vocabulary %lld\n", argv[i], (long long)s.n_tokens,
               s.token_bytes, (long long)s.vocab_size);
        token_shard_close(&s);
    }
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--check-shards") == 0) return check_shards(argc, argv);
    uint64_t seed = argc > 2 && strcmp(argv[1], "--seed") == 0
                        ? strtoull(argv[2], NULL, 10)
                        : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
    printf("test_data: seed %llu\n", (unsigned long long)seed);
    struct t_rng r = {seed};
    char dir[] = "/tmp/infllm_test_data_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);

    test_round_trip(&r, dir, 1237, 65536); /* u16 at its largest vocabulary */
    test_round_trip(&r, dir, 1237, 65537); /* u32 from the first vocabulary that needs it */
    test_round_trip(&r, dir, 0, 32000);    /* an empty shard is valid */
    test_round_trip(&r, dir, 1, 3);
    test_corrupt_shards(&r, dir);
    test_shard_changes(&r, dir);
    test_loader(&r, dir);

    remove_dir(dir);
    return t_finish("test_data");
}
