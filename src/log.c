/*
 * log.c: rank-0 progress, metrics file, small formatting helpers (see log.h).
 */
#include "log.h"

#include <errno.h>
#include "fsutil.h"
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

void log_init(struct logger *lg, const char *run_dir, bool root) {
    lg->root = root;
    lg->metrics = NULL;
    if (!root) return;
    make_dirs(run_dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    lg->metrics = fopen(path, "a");
    if (!lg->metrics) die_user("%s: cannot open for append: %s", path, strerror(errno));
}

void log_close(struct logger *lg) {
    if (lg->metrics) fclose(lg->metrics);
    lg->metrics = NULL;
}

void log_info(const struct logger *lg, const char *fmt, ...) {
    if (!lg->root) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void log_metrics(const struct logger *lg, const char *fmt, ...) {
    if (!lg->metrics) return;
    va_list ap;
    va_start(ap, fmt);
    fputc('{', lg->metrics);
    vfprintf(lg->metrics, fmt, ap);
    fputs("}\n", lg->metrics);
    va_end(ap);
    fflush(lg->metrics);
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void format_duration(char *buf, size_t n, double s) {
    if (s < 0 || s != s) s = 0;
    if (s < 60)
        snprintf(buf, n, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

void format_count(char *buf, size_t n, double v) {
    if (v < 1e3)
        snprintf(buf, n, "%.0f", v);
    else if (v < 1e6)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else if (v < 1e9)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else
        snprintf(buf, n, "%.2fG", v / 1e9);
}
