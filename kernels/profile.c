/*
 * profile.c: exclusive time per region of one step (see profile.h). One profiler per process: a
 * rank profiles its own step.
 */
#include "profile.h"

#include <string.h>
#include <time.h>

#include "check.h"

#define PROF_DEPTH 8

static struct {
    bool on;
    void (*sync)(const void *ctx);
    const void *ctx;
    double seconds[PROF_COUNT];
    enum prof_region stack[PROF_DEPTH];
    int depth;   /* stack[0] is PROF_OTHER */
    double last; /* when the time since was last charged */
} prof;

/* Monotonic seconds. */
static double clock_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Charges the time since the last charge to the innermost open region. */
static void charge(void) {
    prof.sync(prof.ctx);
    double now = clock_now();
    prof.seconds[prof.stack[prof.depth - 1]] += now - prof.last;
    prof.last = now;
}

void prof_start(void (*sync)(const void *ctx), const void *ctx) {
    memset(&prof, 0, sizeof prof);
    prof.sync = sync;
    prof.ctx = ctx;
    prof.depth = 1;
    prof.stack[0] = PROF_OTHER;
    sync(ctx);
    prof.last = clock_now();
    prof.on = true;
}

void prof_stop(double seconds[PROF_COUNT]) {
    CHECK(prof.on && prof.depth == 1);
    charge();
    memcpy(seconds, prof.seconds, sizeof prof.seconds);
    prof.on = false;
}

const char *prof_name(enum prof_region r) {
    static const char *const names[PROF_COUNT] = {"other",     "gemm", "attention", "selection",
                                                  "comm",      "head", "optimizer"};
    return names[r];
}

void prof_begin(enum prof_region r) {
    if (!prof.on) return;
    CHECK(prof.depth < PROF_DEPTH);
    charge();
    prof.stack[prof.depth++] = r;
}

void prof_end(void) {
    if (!prof.on) return;
    CHECK(prof.depth > 1);
    charge();
    prof.depth--;
}
