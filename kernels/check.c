/*
 * check.c: the fail-fast policy (see check.h).
 */
#include "check.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int mpi_alive(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

/* "[rank N] " when more than one rank runs, else "". */
static void rank_prefix(char *buf, size_t n) {
    buf[0] = '\0';
    if (!mpi_alive()) return;
    int size = 1, rank = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (size > 1) snprintf(buf, n, "[rank %d] ", rank);
}

void infllm_exit(int code) {
    fflush(stdout);
    fflush(stderr);
    if (mpi_alive()) {
        int size = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
        MPI_Finalize();
    }
#if defined(__SANITIZE_ADDRESS__)
    /* A process stopping on an error still holds what it was working with: that is not a leak,
     * so the sanitizer build skips the exit-time leak check on these paths only. */
    if (code != EXIT_CODE_OK) _exit(code);
#endif
    exit(code);
}

static void vreport(const char *fmt, va_list ap, const char *file, int line, const char *func) {
    char prefix[32];
    rank_prefix(prefix, sizeof prefix);
    fflush(stdout);
    fprintf(stderr, "%serror: ", prefix);
    vfprintf(stderr, fmt, ap);
    if (file) fprintf(stderr, " (%s at %s:%d)", func, file, line);
    fputc('\n', stderr);
    fflush(stderr);
}

void die_at(const char *file, int line, const char *func, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap, file, line, func);
    va_end(ap);
    infllm_exit(EXIT_CODE_INTERNAL);
}

void die_user(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap, NULL, 0, NULL);
    va_end(ap);
    infllm_exit(EXIT_CODE_USER);
}

void die_mpi(const char *file, int line, const char *func, const char *call, int rc) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    die_at(file, line, func, "%s failed: %s", call, msg);
}

void *xmalloc_at(size_t bytes, const char *file, int line) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die_at(file, line, "xmalloc", "out of host memory allocating %zu bytes", bytes);
    return p;
}

void *xcalloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die_at(file, line, "xcalloc", "out of host memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc_at(void *p, size_t bytes, const char *file, int line) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) die_at(file, line, "xrealloc", "out of host memory allocating %zu bytes", bytes);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}
