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

/* die_user_collective's setting: 1 while every rank meets the same user errors. */
static int user_errors_collective;

void die_user_collective(int on) { user_errors_collective = on; }

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

/* One "error:" line; ranked: with "[rank N] " when several ranks run. The line is formatted first
 * and written at once, so that the messages of other processes sharing the terminal (mpirun's
 * abort notice, another rank) cannot land inside it. */
static void vreport(const char *fmt, va_list ap, const char *file, int line, const char *func,
                    int ranked) {
    char prefix[32] = "", where[512] = "", small[1024];
    if (ranked) rank_prefix(prefix, sizeof prefix);
    va_list again;
    va_copy(again, ap);
    int len = vsnprintf(small, sizeof small, fmt, ap);
    char *msg = len >= (int)sizeof small ? malloc((size_t)len + 1) : NULL;
    if (msg) vsnprintf(msg, (size_t)len + 1, fmt, again);
    va_end(again);
    if (file) snprintf(where, sizeof where, " (%s at %s:%d)", func, file, line);
    fflush(stdout);
    fprintf(stderr, "%serror: %s%s\n", prefix, msg ? msg : small, where);
    fflush(stderr);
    free(msg);
}

void die_at(const char *file, int line, const char *func, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap, file, line, func, 1);
    va_end(ap);
    infllm_exit(EXIT_CODE_INTERNAL);
}

/* Under die_user_collective on a rank other than 0 of several: waits for rank 0, which meets the
 * same error, to end the job (its MPI_Abort stops this process); returns when the grace period
 * ran out (an error of this rank only). 0 on rank 0, alone, or outside the collective phase. */
static int wait_for_rank0(void) {
    if (!user_errors_collective || !mpi_alive()) return 0;
    int size = 1, rank = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (size == 1 || rank == 0) return 0;
    fflush(stdout);
    for (int i = 0; i < DIE_USER_GRACE_S * 20; i++) usleep(50000);
    return 1;
}

void die_user(const char *fmt, ...) {
    int own = wait_for_rank0(); /* returns on rank 0, or when this rank's error is its own */
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap, NULL, 0, NULL, own || !user_errors_collective); /* the job's line: unranked */
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
