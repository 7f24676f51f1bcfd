/*
 * config_jobs.h: what test_config.c and test_config_reject.c share: a temporary folder under /tmp
 * (mkdtemp()), files written into it, and a config load run in a forked child whose stderr is
 * captured, so that a load which exits (as every rejection does) is a result, not the test's end.
 */
#ifndef INFLLM_TEST_CONFIG_JOBS_H
#define INFLLM_TEST_CONFIG_JOBS_H

#include <stdbool.h>
#include <stddef.h>

/* The folder, "/tmp/test_config.XXXXXX" until tmp_create() fills in the X. */
extern char tmp_dir[];

/* mkdtemp() of tmp_dir; prints "FAIL mkdtemp" and exits 1 when it fails. */
void tmp_create(void);
/* Removes tmp_dir and what it holds (a warning when it cannot). */
void tmp_remove(void);

/* Writes text to <tmp_dir>/<name>; the path goes to out. */
void write_tmp(char *out, size_t n, const char *name, const char *text);

/* What a child does: load `path` with `sets`, then (world > 0) validate for `world` ranks. With
 * import, the run's sequence instead: read, import model.init_from's config.json, validate. */
struct job {
    const char *path;
    int nset;
    char *const *sets;
    int world;
    bool import;
};

/* Runs the job in a child with stderr on a pipe. Returns the exit status (128 + signal when
 * killed); the child's stderr goes to err. */
int run_child(const struct job *j, char *err, size_t n);

#endif
