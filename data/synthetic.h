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

#endif
