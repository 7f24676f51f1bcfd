/*
 * synthetic.h: the built-in long-context task, so a run needs no download.
 *
 * Key-value retrieval over filler text. Each sequence starts with BOS, then filler drawn from a
 * fixed order-1 Markov chain (learnable, so the loss falls early), with n_pairs records
 * "KEY VAL k v" scattered through it; it ends with n_queries records "QUERY VAL k v" asking for
 * keys placed earlier (the farther the better), so predicting v needs attention across the whole
 * sequence. Everything is a pure function of (seed, sequence index): any rank can produce any
 * sequence, and a resumed run sees the same data.
 *
 * Vocabulary: 0 BOS, 1 KEY, 2 VAL, 3 QUERY, then n_keys key tokens, n_values value tokens, and the
 * rest of the vocabulary (at least 16 tokens) is filler. The exact layout (where records go, the
 * filler chain, how queries pick keys) is in synthetic.c's header and docs/DATA.md.
 */
#ifndef INFLLM_SYNTHETIC_H
#define INFLLM_SYNTHETIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum synthetic_token { SYNTH_BOS = 0, SYNTH_KEY = 1, SYNTH_VAL = 2, SYNTH_QUERY = 3, SYNTH_FIRST = 4 };

struct synthetic_task {
    int64_t vocab_size;
    int n_pairs, n_queries, n_keys, n_values;
};

/* Returns 0 when the task fits in `len` tokens and the vocabulary, else -1 with a reason in err. */
int synthetic_check(const struct synthetic_task *task, int64_t len, char *err, size_t err_len);

/* Writes sequence `index` of the stream `seed`: len tokens. When answer is not NULL, answer[i] is 1
 * where tokens[i] is a queried value (the position a retrieval accuracy is scored at), else 0. */
void synthetic_sequence(const struct synthetic_task *task, uint64_t seed, int64_t index,
                        int64_t len, int32_t *tokens, uint8_t *answer);

/* synthetic_check for `documents` tasks packed in `len` tokens (each at least BOS + 4 (n_pairs +
 * n_queries) tokens); documents 1 is synthetic_check itself. */
int synthetic_check_packed(const struct synthetic_task *task, int64_t len, int documents,
                           char *err, size_t err_len);

/* Sequence `index` as `documents` (>= 2) whole tasks back to back: random lengths of at least the
 * task's minimum that add up to len (the free tokens split at sorted uniform cut points), task d a
 * synthetic_sequence of its length from a seed of its own. doc_first (len bytes, may be NULL) is 1
 * at each task's BOS (position 0 included), answer as synthetic_sequence's, over all tasks. A pure
 * function of (seed, index) like synthetic_sequence. */
void synthetic_packed(const struct synthetic_task *task, uint64_t seed, int64_t index, int64_t len,
                      int documents, int32_t *tokens, uint8_t *answer, uint8_t *doc_first);

#endif
