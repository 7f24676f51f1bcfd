/*
 * check.h: the one fail-fast policy of the program.
 *
 * Two kinds of failure exist and each has one way out:
 *   - a broken invariant or a failed library call (CHECK, MPI_CHECK, and CUDA_CHECK & co in
 *     cuda_check.h): the message names the statement, function, file and line, then every rank
 *     is aborted (MPI_Abort) with exit code 1, so no rank hangs in a collective;
 *   - bad input from the user (config, data, checkpoint): die_user() prints one line that names the
 *     file, key or offset and what was expected, and exits with code 2 (all ranks).
 * Allocation failures are invariant failures that also say how many bytes were asked for.
 */
#ifndef INFLLM_CHECK_H
#define INFLLM_CHECK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define INFLLM_NORETURN __attribute__((noreturn))
#define INFLLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define INFLLM_NORETURN
#define INFLLM_PRINTF(a, b)
#endif

/* Exit codes shared by every command. */
enum exit_code {
    EXIT_CODE_OK = 0,
    EXIT_CODE_INTERNAL = 1, /* invariant or library failure */
    EXIT_CODE_USER = 2,     /* bad config, data or checkpoint */
    EXIT_CODE_DIVERGED = 3, /* training diverged (non-finite values, a train.guard limit) */
    EXIT_CODE_SKIP = 77,    /* a test that cannot run here (CTest SKIP_RETURN_CODE) */
};

/* Ends the process with `code`; with more than one MPI rank alive, aborts them all. */
void infllm_exit(int code) INFLLM_NORETURN;

/* Internal failure: "error: <msg> (<func> at <file>:<line>)" on stderr, then infllm_exit(1). */
void die_at(const char *file, int line, const char *func, const char *fmt, ...) INFLLM_NORETURN
    INFLLM_PRINTF(4, 5);

/* User failure: "error: <msg>" on stderr (one line), then infllm_exit(2). */
void die_user(const char *fmt, ...) INFLLM_NORETURN INFLLM_PRINTF(1, 2);

/* Whether the user errors from now on are ones every rank meets alike (reading and checking the
 * config: the same files and arguments everywhere). While on, with several ranks, die_user prints
 * its line on rank 0 only, and every other rank waits for rank 0 to end the job (exit code 2 on
 * all ranks); a rank still running after DIE_USER_GRACE_S seconds met an error of its own, and
 * prints it with its rank and ends the job itself. */
void die_user_collective(int on);
#define DIE_USER_GRACE_S 10

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) die_at(__FILE__, __LINE__, __func__, "check failed: %s", #cond); \
    } while (0)

#define CHECKF(cond, ...)                                                     \
    do {                                                                      \
        if (!(cond)) die_at(__FILE__, __LINE__, __func__, __VA_ARGS__);       \
    } while (0)

/* MPI calls: the MPI error string is part of the message. */
void die_mpi(const char *file, int line, const char *func, const char *call, int rc) INFLLM_NORETURN;
#define MPI_CHECK(call)                                                       \
    do {                                                                      \
        int mpi_rc_ = (call);                                                 \
        if (mpi_rc_ != 0) die_mpi(__FILE__, __LINE__, __func__, #call, mpi_rc_); \
    } while (0)

/* Allocation that never returns NULL (size 0 gives a valid unique pointer). */
void *xmalloc_at(size_t bytes, const char *file, int line);
void *xcalloc_at(size_t count, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t bytes, const char *file, int line);
char *xstrdup(const char *s);
#define xmalloc(bytes) xmalloc_at((bytes), __FILE__, __LINE__)
#define xcalloc(count, size) xcalloc_at((count), (size), __FILE__, __LINE__)
#define xrealloc(p, bytes) xrealloc_at((p), (bytes), __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif

#endif
