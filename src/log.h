/*
 * log.h: what a run tells its user. Rank 0 alone prints progress on stdout (one fixed-format line
 * per step) and appends the same figures as JSON lines to <run_dir>/metrics.jsonl; diagnostics go
 * to stderr. Other ranks stay quiet unless they fail (check.h).
 *
 * metrics.jsonl never holds a partial line: each record is one write() of whole lines, and a write
 * that fails (disk full, quota, I/O error) is undone (the file is cut back to its length before).
 * The record is then kept in memory, a warning goes to stderr (the first failure, then every 100th),
 * and the next record retries every kept one, in order: nothing is lost if space comes back. What
 * is still unwritten when the run ends is a user error (exit 2) naming the count and the reason,
 * after the final checkpoint. A file left ending in a partial line by a crash is cut back to its
 * last complete line when a run opens it, so a resumed run starts on a fresh line.
 */
#ifndef INFLLM_LOG_H
#define INFLLM_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"

struct logger {
    bool root;          /* this rank prints */
    int metrics_fd;     /* <run_dir>/metrics.jsonl opened for append (root only), or -1 */
    char metrics_path[4096];
    char *pending;      /* records not written yet (whole lines) */
    size_t pending_len, pending_cap;
    int64_t failures;   /* failed writes since the last success */
};

/* Opens the metrics file under run_dir (creating the folder) on the root rank; it must be a
 * regular file (a FIFO or a device is a user error, never a hang). */
void log_init(struct logger *lg, const char *run_dir, bool root);

/* Writes what is pending and closes; records that still cannot be written are a user error. */
void log_close(struct logger *lg);

/* printf on stdout from the root rank only, flushed. */
void log_info(const struct logger *lg, const char *fmt, ...) INFLLM_PRINTF(2, 3);

/* Appends one JSON object (the text between the braces is formatted) as a line of metrics.jsonl
 * (see above for a failed write). */
void log_metrics(struct logger *lg, const char *fmt, ...) INFLLM_PRINTF(2, 3);

/* Monotonic seconds. */
double now_seconds(void);

/* "1h02m", "3m41s", "12.3s". */
void format_duration(char *buf, size_t n, double seconds);

/* "812", "10.1k", "3.45M". */
void format_count(char *buf, size_t n, double value);

#endif
