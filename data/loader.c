/*
 * loader.c: the resumable data loader of loader.h.
 *
 * Legend: T seq_len, W windows in all shards together, g global sequence number, e epoch, w window.
 *
 * Shards: window w of a shard with n tokens covers tokens [w T, w T + T + 1); the shard holds
 * (n - 1) / T windows (none when n < T + 1). Windows are numbered across the shards of the list in
 * order (window_start is the prefix sum). Training stream: epoch e = g / W reads window
 * perm_e[g % W], perm_e a Fisher-Yates shuffle of 0 .. W-1 seeded from (seed, e); the permutation
 * of the last epoch asked for is cached and recomputed (O(W)) when another epoch is read.
 * Validation stream: data.val_files read in file order without shuffling (sequence g is window
 * g % W), so every evaluation sees the same sequences; with no val_files it has no sequences.
 * Synthetic: synthetic_sequence(seed, g) for training, seed ^ LOADER_VAL_SALT for validation
 * (synthetic_packed with several documents per sequence).
 * Mix (shards training stream with synthetic_ppm = p > 0): S(g) = floor(g p / 1e6) synthetic
 * sequences come before g; g is synthetic sequence S(g) when S(g + 1) > S(g), else shard sequence
 * g - S(g) (the unmixed stream's numbering, so its epochs and shuffles are unchanged).
 * Documents (loader_read_docs): a start after every eod_token of the window (shards), or the packed
 * synthetic documents' starts; computed from the sequence alone, so resuming needs nothing more.
 *
 * A loader keeps no read position: the trainer's step number chooses the sequences. A loader is not
 * safe to share between threads (the cached epoch).
 */
#include "loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "checked.h"
#include "fsutil.h"
#include "hash.h"

#define LOADER_VAL_SALT 0x76616C6964617465ull  /* "validate": the synthetic validation stream */
#define LOADER_PERM_SALT 0x7065726D75746531ull /* "permute1": the epoch shuffles */

static void init_synthetic(struct loader *l, const struct loader_source *s) {
    l->task = s->task;
    if (s->val) l->seed ^= LOADER_VAL_SALT;
}

/* Dies naming data.seq_len and the longest shard when no shard holds a full window. */
static void die_no_windows(const struct loader *l, const char *key) {
    int longest = 0;
    for (int i = 1; i < l->n_shards; i++)
        if (l->shards[i].n_tokens > l->shards[longest].n_tokens) longest = i;
    die_user("%s: no shard holds data.seq_len + 1 = %lld tokens: the longest, %s, has %lld", key,
             (long long)(l->seq_len + 1), l->shards[longest].path,
             (long long)l->shards[longest].n_tokens);
}

/* The answer masks: shards of tokens 0 / 1, each as long as its token shard. */
static void open_answers(struct loader *l, const struct loader_source *s) {
    l->answers = xcalloc((size_t)s->n_files, sizeof *l->answers);
    l->answer_buf = xcalloc((size_t)size_add(l->seq_len, 1), sizeof *l->answer_buf);
    for (int i = 0; i < s->n_files; i++) {
        char err[600];
        if (token_shard_check(&l->answers[i], s->answer_files[i], 2, err, sizeof err) != 0)
            die_user("%s: %s (an answer mask holds one flag, 0 or 1, per token of its data shard)",
                     s->answer_key, err);
        if (l->answers[i].n_tokens != l->shards[i].n_tokens)
            die_user("%s: %s holds %lld tokens, but its data shard %s holds %lld; expected one "
                     "answer flag (0 or 1) per token", s->answer_key, s->answer_files[i],
                     (long long)l->answers[i].n_tokens, s->files[i],
                     (long long)l->shards[i].n_tokens);
    }
}

/* Bytes of the files together, for the progress of their opening check (0 for a file that
 * cannot be read now: token_shard_open names it next). */
static int64_t bytes_of(const struct loader_source *s) {
    int64_t total = 0;
    for (int i = 0; i < s->n_files; i++) {
        struct stat st;
        if (stat(s->files[i], &st) == 0 && S_ISREG(st.st_mode)) total = size_add(total, st.st_size);
    }
    return total;
}

/* Adds shard s to a running fingerprint: its header (magic to vocabulary: the size, the width and
 * the token count), then its first and last 64 KiB of tokens (overlapping in a short one). */
static void digest_shard(struct xxh64 *h, const struct token_shard *s) {
    const size_t edge = 64 << 10, payload = s->file_bytes - SHARD_HEADER_BYTES;
    size_t k = payload < edge ? payload : edge;
    xxh64_update(h, s->map, SHARD_HEADER_BYTES);
    xxh64_update(h, s->map + SHARD_HEADER_BYTES, k);
    xxh64_update(h, s->map + s->file_bytes - k, k);
}

uint64_t loader_digest(const struct loader *l) { return l->digest; }

static void init_shards(struct loader *l, const struct loader_source *s) {
    l->n_shards = s->n_files;
    l->shards = xcalloc((size_t)(s->n_files > 0 ? s->n_files : 1), sizeof *l->shards);
    l->window_start = xcalloc((size_t)s->n_files + 1, sizeof *l->window_start);
    int64_t total = s->on_open ? bytes_of(s) : 0, done = 0;
    struct xxh64 h;
    xxh64_init(&h, 0);
    for (int i = 0; i < s->n_files; i++) {
        token_shard_open(&l->shards[i], s->files[i], s->vocab_size);
        digest_shard(&h, &l->shards[i]);
        int64_t n = l->shards[i].n_tokens;
        int64_t windows = n > l->seq_len ? (n - 1) / l->seq_len : 0;
        l->window_start[i + 1] = size_add(l->window_start[i], windows);
        done = size_add(done, (int64_t)l->shards[i].file_bytes);
        if (s->on_open) s->on_open(s->on_open_ctx, i + 1, s->n_files, done, total);
    }
    l->n_windows = l->window_start[s->n_files];
    l->digest = xxh64_digest(&h);
    if (s->answer_files) open_answers(l, s);
    if (s->n_files > 0 && l->n_windows == 0) die_no_windows(l, s->files_key);
    if (!s->val)
        l->perm = xmalloc((size_t)size_mul(l->n_windows > 0 ? l->n_windows : 1, sizeof *l->perm));
}

void loader_init(struct loader *l, const struct loader_source *s) {
    memset(l, 0, sizeof *l);
    CHECKF(s->seq_len >= 1, "loader_init: seq_len %lld", (long long)s->seq_len);
    l->seq_len = s->seq_len;
    l->seed = s->seed;
    l->source = s->source;
    l->perm_epoch = -1;
    l->eod = s->eod;
    l->eod_token = s->eod_token;
    l->documents = s->synthetic_documents > 1 ? s->synthetic_documents : 1;
    if (l->source == DATA_SOURCE_SYNTHETIC) {
        init_synthetic(l, s);
        return;
    }
    CHECKF(s->synthetic_ppm >= 0 && s->synthetic_ppm < 1000000 && (!s->val || !s->synthetic_ppm),
           "loader_init: synthetic_ppm %lld (val %d)", (long long)s->synthetic_ppm, s->val);
    init_shards(l, s);
    l->synthetic_ppm = s->synthetic_ppm;
    if (l->synthetic_ppm) init_synthetic(l, s);
}

void loader_free(struct loader *l) {
    for (int i = 0; i < l->n_shards; i++) token_shard_close(&l->shards[i]);
    for (int i = 0; l->answers && i < l->n_shards; i++) token_shard_close(&l->answers[i]);
    free(l->answers);
    free(l->answer_buf);
    free(l->shards);
    free(l->window_start);
    free(l->perm);
    memset(l, 0, sizeof *l);
}

int64_t loader_epoch_size(const struct loader *l) {
    return l->source == DATA_SOURCE_SHARDS ? l->n_windows : 0;
}

/* perm = the shuffle of epoch e (Fisher-Yates, splitmix64 stream from (seed, e)). */
static void compute_perm(struct loader *l, int64_t e) {
    int64_t n = l->n_windows;
    for (int64_t i = 0; i < n; i++) l->perm[i] = i;
    uint64_t state = mix64(l->seed ^ mix64((uint64_t)e ^ LOADER_PERM_SALT));
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t u = mix64(state += 0x9E3779B97F4A7C15ull);
        int64_t j = (int64_t)(((unsigned __int128)u * (uint64_t)(i + 1)) >> 64);
        int64_t x = l->perm[i];
        l->perm[i] = l->perm[j];
        l->perm[j] = x;
    }
    l->perm_epoch = e;
}

/* Shard holding global window w: the last i with window_start[i] <= w. */
static int shard_of_window(const struct loader *l, int64_t w) {
    int lo = 0, hi = l->n_shards - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (l->window_start[mid] <= w)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* A shard that changed under the run stops it here, before the step uses the tokens: nothing of
 * the step is saved and the last checkpoint stays the newest. */
static void copy_window(const struct token_shard *s, int64_t first, int64_t n, int32_t *tokens) {
    char err[1024];
    if (token_shard_read(s, first, n, tokens, err, sizeof err) != 0)
        die_user("%s; the run stops without saving (the last checkpoint is intact)", err);
}

/* Global window of sequence g. */
static int64_t window_of(struct loader *l, int64_t g) {
    CHECKF(l->n_windows > 0, "loader_read: the stream has no sequences (a validation stream without "
                             "data.val_files); check loader_epoch_size() first");
    int64_t e = g / l->n_windows, w = g % l->n_windows;
    if (l->perm) {
        if (l->perm_epoch != e) compute_perm(l, e);
        w = l->perm[w];
    }
    return w;
}

/* Synthetic sequences of a mix before sequence g: floor(g ppm / 1e6), exact for any g >= 0. */
static int64_t synthetic_before(const struct loader *l, int64_t g) {
    return (int64_t)((unsigned __int128)(uint64_t)g * (uint64_t)l->synthetic_ppm / 1000000u);
}

bool loader_is_synthetic(const struct loader *l, int64_t g) {
    if (l->source == DATA_SOURCE_SYNTHETIC) return true;
    return l->synthetic_ppm > 0 && synthetic_before(l, g + 1) > synthetic_before(l, g);
}

int64_t loader_synthetic_count(const struct loader *l, int64_t first, int64_t n) {
    CHECKF(first >= 0 && n >= 0, "loader_synthetic_count: [%lld, +%lld)", (long long)first,
           (long long)n);
    if (l->source == DATA_SOURCE_SYNTHETIC) return n;
    return synthetic_before(l, first + n) - synthetic_before(l, first);
}

int loader_file_of(struct loader *l, int64_t g) {
    CHECKF(l->source == DATA_SOURCE_SHARDS && g >= 0 && !loader_is_synthetic(l, g),
           "loader_file_of: sequence %lld", (long long)g);
    return shard_of_window(l, window_of(l, g - synthetic_before(l, g)));
}

/* Shard sequence s (the unmixed stream's number). */
static void read_shards(struct loader *l, int64_t s, int32_t *tokens, uint8_t *answer) {
    int64_t w = window_of(l, s), len = l->seq_len + 1;
    int f = shard_of_window(l, w);
    int64_t first = size_mul(w - l->window_start[f], l->seq_len);
    copy_window(&l->shards[f], first, len, tokens);
    if (!answer) return;
    if (!l->answers) {
        memset(answer, 0, (size_t)len);
        return;
    }
    copy_window(&l->answers[f], first, len, l->answer_buf);
    for (int64_t i = 0; i < len; i++) answer[i] = l->answer_buf[i] != 0;
}

void loader_read(struct loader *l, int64_t g, int32_t *tokens, uint8_t *answer) {
    loader_read_docs(l, g, tokens, answer, NULL);
}

void loader_read_docs(struct loader *l, int64_t g, int32_t *tokens, uint8_t *answer,
                      uint8_t *doc_first) {
    CHECKF(g >= 0, "loader_read: sequence %lld", (long long)g);
    int64_t len = l->seq_len + 1;
    bool synthetic = loader_is_synthetic(l, g);
    if (synthetic) {
        int64_t s = l->source == DATA_SOURCE_SYNTHETIC ? g : synthetic_before(l, g);
        if (l->documents > 1) {
            synthetic_packed(&l->task, l->seed, s, len, l->documents, tokens, answer, doc_first);
            return;
        }
        synthetic_sequence(&l->task, l->seed, s, len, tokens, answer);
    } else {
        read_shards(l, g - synthetic_before(l, g), tokens, answer);
    }
    if (!doc_first) return;
    doc_first[0] = 1; /* a synthetic task is one document: its tokens are no end-of-document marks */
    for (int64_t i = 1; i < len; i++)
        doc_first[i] = !synthetic && l->eod && tokens[i - 1] == l->eod_token;
}
