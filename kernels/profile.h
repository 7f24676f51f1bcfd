/*
 * profile.h: where one training step's time goes, by kind of work (log.profile_step).
 *
 * Regions are bracketed where the work is issued: GEMMs in ops.c, attention and the InfLLM-V2
 * selection in ops.c, collectives in parallel/comm.c, the loss head in model.c, the optimizer in
 * train.c. While a step is profiled every bracket synchronises the device and reads the host
 * clock, so each kernel's time lands in its own region (the step itself runs slower by the
 * synchronisations; the other steps are untouched: a disabled bracket is one branch). Time is
 * exclusive: a region nested in another (a GEMM inside the loss head, a collective inside the
 * optimizer) is charged to the inner one; time outside every region (norms, RoPE, SwiGLU, copies,
 * the embedding) is "other".
 */
#ifndef INFLLM_PROFILE_H
#define INFLLM_PROFILE_H

#include <stdbool.h>
#include <stdio.h>

enum prof_region {
    PROF_OTHER,
    PROF_GEMM,
    PROF_ATTENTION,
    PROF_SELECTION,
    PROF_COMM,
    PROF_HEAD,
    PROF_OPTIMIZER,
    PROF_COUNT
};

/* Starts profiling: sync(ctx) makes the device's queued work complete. Clears the totals. */
void prof_start(void (*sync)(const void *ctx), const void *ctx);

/* Stops profiling and returns the seconds spent in each region since prof_start (exclusive). */
void prof_stop(double seconds[PROF_COUNT]);

/* The region's name ("gemm", "attention", ...). */
const char *prof_name(enum prof_region r);

/* Brackets a region; no-ops unless profiling. Regions nest (at most 8 deep). */
void prof_begin(enum prof_region r);
void prof_end(void);

#endif
