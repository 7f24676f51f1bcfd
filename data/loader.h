/*
 * loader.h: the resumable, layout-independent data loader.
 *
 * The data is a stream of sequences of seq_len + 1 tokens (inputs are the first seq_len, targets
 * the last seq_len), numbered 0, 1, 2, ... Sequence number g is a pure function of the seed and g:
 * from token shards, epoch e = g / n_windows reads window perm_e[g % n_windows] where perm_e is a
 * seeded shuffle of all windows (windows are the non-overlapping seq_len-token spans of each shard,
 * each plus its next token); from the synthetic task, it is synthetic_sequence(seed, g).
 * Optimizer step s reads sequences [s * global_batch, (s + 1) * global_batch), whatever the rank
 * layout: the trainer's step alone says what comes next, so a loader keeps no position.
 *
 * Mixing: from token shards, a share of the training stream may be the synthetic task
 * (synthetic_ppm millionths, spread evenly): sequence g is then synthetic sequence
 * S(g) = floor(g ppm / 1e6) when S(g + 1) > S(g), else shard sequence g - S(g), so either
 * stream is read in its own order, once each, and g alone still says which.
 *
 * Documents: a sequence may hold several documents (document masking, docs/DATA.md). Their starts
 * are a pure function of the sequence too: after every end-of-document token of a shard window
 * (eod), or where the synthetic task packed its documents (synthetic_documents > 1). They change
 * neither the tokens nor the order of the stream.
 */
#ifndef INFLLM_LOADER_H
#define INFLLM_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "shard.h"
#include "synthetic.h"

enum data_source { DATA_SOURCE_SYNTHETIC = 0, DATA_SOURCE_SHARDS = 1 };

/* What one stream reads: the config's data section (config_loader_source in src/config.h), whose
 * values config_validate has checked (seq_len >= 1, a synthetic task that fits seq_len + 1 tokens,
 * at least one training shard). */
struct loader_source {
    enum data_source source;
    int64_t seq_len;             /* T: sequences of T + 1 tokens */
    uint64_t seed;
    bool val;                    /* the validation stream */
    struct synthetic_task task;  /* DATA_SOURCE_SYNTHETIC */
    int n_files;                 /* DATA_SOURCE_SHARDS: the token shards, in order */
    char *const *files;
    const char *files_key;       /* the key that lists them, for messages ("data.train_files") */
    int64_t vocab_size;          /* every token must be below it */
    bool eod;                    /* DATA_SOURCE_SHARDS: documents end at eod_token */
    int32_t eod_token;
    int synthetic_documents;     /* synthetic sequences: documents per sequence (0 or 1: one) */
    int64_t synthetic_ppm;       /* DATA_SOURCE_SHARDS, training stream: millionths of the sequences
                                    that are the synthetic task (0 .. 999999; 0 = none) */
    char *const *answer_files;   /* DATA_SOURCE_SHARDS: NULL, or (n_files) shards of the same token
                                    counts whose tokens are 1 at scored answers, else 0 */
    const char *answer_key;      /* the key that lists them ("data.val_answer_files") */
    /* Optional: called after each shard of the opening check (every token is read once: a cold
     * terabyte takes minutes) with the shards and bytes done so far and in all, for progress. */
    void (*on_open)(void *ctx, int done, int n, int64_t bytes_done, int64_t bytes_total);
    void *on_open_ctx;
};

struct loader {
    int64_t seq_len;
    uint64_t seed;
    enum data_source source;
    struct synthetic_task task;      /* DATA_SOURCE_SYNTHETIC */
    int n_shards;                    /* DATA_SOURCE_SHARDS */
    struct token_shard *shards;      /* (n_shards) */
    int64_t *window_start;           /* (n_shards + 1) first global window index of each shard, prefix sums */
    int64_t n_windows;
    int64_t *perm;                   /* (n_windows) shuffle of the cached epoch; NULL for validation (file order) */
    int64_t perm_epoch;              /* epoch perm belongs to, -1 = none */
    bool eod;                        /* documents end after eod_token (shards) */
    int32_t eod_token;
    int documents;                   /* synthetic documents per sequence (1: one) */
    int64_t synthetic_ppm;           /* shards mixed with the synthetic task (loader_source) */
    uint64_t digest;                 /* of the shards' contents (loader_digest) */
    struct token_shard *answers;     /* (n_shards) answer masks of the shards, or NULL */
    int32_t *answer_buf;             /* (seq_len + 1) one window of an answer mask */
};

/* Opens the training stream or (s->val) the validation stream. The validation stream reads its
 * files (data.val_files) in file order (no shuffle), or for the synthetic source a separate seed.
 * Shards source with no files for validation: the stream has no sequences (loader_epoch_size()
 * returns 0 and loader_read() fails a CHECK; callers check first). Bad files, or no shard holding
 * seq_len + 1 tokens, are user errors (exit 2) naming the file or s->files_key. */
void loader_init(struct loader *l, const struct loader_source *s);
void loader_free(struct loader *l);

/* Writes sequence g (seq_len + 1 tokens). answer (seq_len + 1 bytes, may be NULL) marks scored
 * retrieval positions for the synthetic task (answer[i] = 1: tokens[i] is a queried value, i.e.
 * target i - 1 is scored); for shards, the same window of their answer masks (answer_files), else
 * all zero. Random access: any g in any order gives the same
 * tokens. Not thread-safe (it caches the current epoch's shuffle). */
void loader_read(struct loader *l, int64_t g, int32_t *tokens, uint8_t *answer);

/* loader_read, and doc_first (seq_len + 1 bytes): 1 where token i starts a document (i = 0
 * always), else 0. Shards with eod: a document starts after every eod_token (token i - 1 is
 * eod_token); synthetic: at each packed task's BOS; otherwise only at 0. */
void loader_read_docs(struct loader *l, int64_t g, int32_t *tokens, uint8_t *answer,
                      uint8_t *doc_first);

/* Index in the source's file list of the shard sequence g is read from (shards only; g is not a
 * synthetic sequence of a mix). */
int loader_file_of(struct loader *l, int64_t g);

/* Whether sequence g is the synthetic task's (the synthetic source, or a mix's share). */
bool loader_is_synthetic(const struct loader *l, int64_t g);

/* How many of the sequences [first, first + n) are the synthetic task's. */
int64_t loader_synthetic_count(const struct loader *l, int64_t first, int64_t n);

/* A fingerprint of the shards, in list order: an xxHash64 over each one's header, size and first
 * and last 64 KiB of tokens (0 for the synthetic source). A checkpoint records it, so a resume can
 * tell that files under the same names now hold other data. */
uint64_t loader_digest(const struct loader *l);

/* Number of windows in one epoch of the shards (0 for the unbounded synthetic stream, and for a
 * shards validation stream without data.val_files); a mix reads them among its synthetic ones. */
int64_t loader_epoch_size(const struct loader *l);

#endif
