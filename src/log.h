/*
 * log.h: what a run tells its user. Rank 0 alone prints progress on stdout (one fixed-format line
 * per step) and appends the same figures as JSON lines to <run_dir>/metrics.jsonl; diagnostics go
 * to stderr. Other ranks stay quiet unless they fail (check.h).
 */
#ifndef INFLLM_LOG_H
#define INFLLM_LOG_H

#include <stdbool.h>
#include <stdio.h>

#include "check.h"

struct logger {
    bool root;          /* this rank prints */
    FILE *metrics;      /* <run_dir>/metrics.jsonl opened for append (root only), or NULL */
};

/* Opens the metrics file under run_dir (creating the folder) on the root rank. */
void log_init(struct logger *lg, const char *run_dir, bool root);
void log_close(struct logger *lg);

/* printf on stdout from the root rank only, flushed. */
void log_info(const struct logger *lg, const char *fmt, ...) INFLLM_PRINTF(2, 3);

/* Appends one JSON object (the text between the braces is formatted) as a line of metrics.jsonl
 * and flushes it. */
void log_metrics(const struct logger *lg, const char *fmt, ...) INFLLM_PRINTF(2, 3);

/* Monotonic seconds. */
double now_seconds(void);

/* "1h02m", "3m41s", "12.3s". */
void format_duration(char *buf, size_t n, double seconds);

/* "812", "10.1k", "3.45M". */
void format_count(char *buf, size_t n, double value);

#endif
