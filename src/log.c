/*
 * log.c: rank-0 progress, metrics file, small formatting helpers (see log.h).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"

#define METRICS_PENDING_MAX ((size_t)64 << 20) /* kept records beyond this are a user error */

/* Cuts a last line without its newline (a crash mid-write) so the next record starts a line. */
static void drop_partial_line(struct logger *lg, off_t size) {
    char tail[4096];
    off_t end = size, keep = -1;
    while (end > 0 && keep < 0) {
        off_t from = end > (off_t)sizeof tail ? end - (off_t)sizeof tail : 0;
        ssize_t r = pread(lg->metrics_fd, tail, (size_t)(end - from), from);
        if (r != end - from) return; /* unreadable: leave it, the next record still gets a line */
        if (end == size && tail[r - 1] == '\n') return;
        for (ssize_t i = r - 1; i >= 0 && keep < 0; i--)
            if (tail[i] == '\n') keep = from + i + 1;
        end = from;
    }
    if (keep < 0) keep = 0;
    if (ftruncate(lg->metrics_fd, keep) != 0)
        die_user("%s: cannot cut its partial last line: %s", lg->metrics_path, strerror(errno));
    fprintf(stderr, "warning: %s: removed a partial last line of %lld bytes (a run ended while "
            "writing it)\n", lg->metrics_path, (long long)(size - keep));
}

void log_init(struct logger *lg, const char *run_dir, bool root) {
    memset(lg, 0, sizeof *lg);
    lg->root = root;
    lg->metrics_fd = -1;
    if (!root) return;
    make_dirs(run_dir);
    snprintf(lg->metrics_path, sizeof lg->metrics_path, "%s/metrics.jsonl", run_dir);
    int fd = open(lg->metrics_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
                  0644);
    if (fd < 0) die_user("%s: cannot open for append: %s", lg->metrics_path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        die_user("%s: is %s, expected a regular file", lg->metrics_path,
                 fs_kind((unsigned)st.st_mode));
    fcntl(fd, F_SETFL, O_APPEND);
    lg->metrics_fd = fd;
    if (st.st_size > 0) drop_partial_line(lg, st.st_size);
}

/* Writes every pending record in one write(); undoes a partial write. True when none is left. */
static bool flush_pending(struct logger *lg) {
    if (lg->pending_len == 0) return true;
    struct stat st;
    off_t before = fstat(lg->metrics_fd, &st) == 0 ? st.st_size : -1;
    const char *p = lg->pending;
    size_t left = lg->pending_len;
    int e = 0;
    while (left > 0) {
        ssize_t w = write(lg->metrics_fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            e = w < 0 ? errno : ENOSPC;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (left == 0) {
        if (lg->failures)
            fprintf(stderr, "metrics: %s is writable again; the %zu bytes kept are written\n",
                    lg->metrics_path, lg->pending_len);
        lg->pending_len = 0;
        lg->failures = 0;
        return true;
    }
    if (before >= 0 && ftruncate(lg->metrics_fd, before) != 0) /* never leave half a record */
        e = errno;
    if (lg->failures++ % 100 == 0)
        fprintf(stderr, "warning: %s: cannot write a metrics record (%s); %zu bytes kept in "
                "memory and retried with the next record\n", lg->metrics_path, strerror(e),
                lg->pending_len);
    return false;
}

void log_close(struct logger *lg) {
    if (lg->metrics_fd >= 0) {
        bool ok = flush_pending(lg);
        if (!ok || fsync(lg->metrics_fd) != 0 || close(lg->metrics_fd) != 0) {
            size_t lines = 0;
            for (size_t i = 0; i < lg->pending_len; i++) lines += lg->pending[i] == '\n';
            die_user("%s: %zu metrics record(s) could not be written (%s); the run itself and its "
                     "checkpoints are complete", lg->metrics_path, lines,
                     ok ? strerror(errno) : "see the warnings above");
        }
    }
    free(lg->pending);
    lg->pending = NULL;
    lg->metrics_fd = -1;
}

void log_info(const struct logger *lg, const char *fmt, ...) {
    if (!lg->root) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void log_metrics(struct logger *lg, const char *fmt, ...) {
    if (lg->metrics_fd < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    CHECK(n >= 0);
    size_t need = lg->pending_len + (size_t)n + 4;
    if (need > METRICS_PENDING_MAX)
        die_user("%s: %zu bytes of metrics records could not be written (disk full?); stopping",
                 lg->metrics_path, lg->pending_len);
    if (need > lg->pending_cap) {
        lg->pending_cap = need * 2;
        lg->pending = xrealloc(lg->pending, lg->pending_cap);
    }
    char *at = lg->pending + lg->pending_len;
    *at = '{';
    va_start(ap, fmt);
    vsnprintf(at + 1, (size_t)n + 1, fmt, ap);
    va_end(ap);
    memcpy(at + 1 + n, "}\n", 2);
    lg->pending_len += (size_t)n + 3;
    flush_pending(lg);
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
