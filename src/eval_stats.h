/*
 * eval_stats.h: what an evaluation measures beyond the mean loss, row by row on the host: the loss
 * by position bucket (train.eval_buckets) and answer spans predicted whole (needle retrieval,
 * data.val_answer_files). Pure functions of the rows they are given; the trainer sums them over
 * its micro-batches and ranks.
 */
#ifndef INFLLM_EVAL_STATS_H
#define INFLLM_EVAL_STATS_H

#include <stdint.h>

#include "config.h"

#define EVAL_MAX_BUCKETS CONFIG_LIST_MAX

/* Loss by position: bucket i holds targets at positions [edge[i - 1], edge[i]), edge[-1] = 0. */
struct eval_buckets {
    int n;                              /* buckets in use; 0 = none */
    int64_t edge[EVAL_MAX_BUCKETS];     /* (n) upper edges, ascending, exclusive */
    double loss[EVAL_MAX_BUCKETS];      /* (n) summed loss of the targets in the bucket */
    int64_t tokens[EVAL_MAX_BUCKETS];   /* (n) how many */
};

/* Empty buckets with the edges of the config list (validated: ascending integers >= 1). */
void eval_buckets_init(struct eval_buckets *b, const struct float_list *edges);

/* Adds one target's loss at position pos (>= 0) to its bucket; nothing past the last edge. */
void eval_buckets_add(struct eval_buckets *b, int64_t pos, double loss);

/* One row of a sequence, for the answer spans: not an answer, an answer the model's argmax
 * missed, an answer it predicted exactly. Ordered, so that the rows that cp ranks hold of one
 * sequence combine by a maximum (each position is some rank's; the others hold EVAL_ROW_NONE). */
enum eval_row { EVAL_ROW_NONE = 0, EVAL_ROW_WRONG = 1, EVAL_ROW_RIGHT = 2 };

/* Answer spans of one sequence's rows in position order (n rows, enum eval_row): a span is a
 * maximal run of consecutive answer rows; it is correct when every one of its rows is
 * EVAL_ROW_RIGHT. Adds the spans to counts[0] and the correct ones to counts[1]. */
void eval_spans_add(int64_t counts[2], const uint8_t *rows, int64_t n);

#endif
