/*
 * eval_stats.c: loss by position bucket and whole-span answer accuracy (eval_stats.h).
 */
#include "eval_stats.h"

#include <string.h>

#include "check.h"

void eval_buckets_init(struct eval_buckets *b, const struct float_list *edges) {
    memset(b, 0, sizeof *b);
    CHECKF(edges->n <= EVAL_MAX_BUCKETS, "eval_buckets_init: %d edges", edges->n);
    b->n = edges->n;
    for (int i = 0; i < b->n; i++) b->edge[i] = (int64_t)edges->items[i];
}

void eval_buckets_add(struct eval_buckets *b, int64_t pos, double loss) {
    int lo = 0, hi = b->n; /* first edge above pos, by bisection */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (b->edge[mid] > pos)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (lo == b->n) return;
    b->loss[lo] += loss;
    b->tokens[lo]++;
}

void eval_spans_add(int64_t counts[2], const uint8_t *rows, int64_t n) {
    for (int64_t i = 0; i < n;) {
        if (rows[i] == EVAL_ROW_NONE) {
            i++;
            continue;
        }
        bool whole = true;
        for (; i < n && rows[i] != EVAL_ROW_NONE; i++) whole = whole && rows[i] == EVAL_ROW_RIGHT;
        counts[0]++;
        counts[1] += whole;
    }
}
