/*
 * plan.h: the memory plan. Every buffer a run keeps is declared once: name, bytes and arena (its
 * lifetime, which also says whether it lives in the backend's memory or on the host). Each arena
 * is one allocation; freeing is one release per arena. What --dry-run and the start of training
 * print is this table.
 *
 * An owner (the model, its attention layer, the optimizer, the trainer) writes one declaring
 * function that calls plan_take for each buffer and keeps the pointer it returns, and runs it
 * twice: on a plan being sized (plan_take records the buffer and returns NULL), then, after
 * plan_allocate, on the same plan carving (plan_take returns the buffer's place in its arena, and
 * checks that the declarations come in the same order with the same sizes). Sizing and carving are
 * the same code, so they cannot disagree; adding a buffer is adding one plan_take.
 *
 * Every buffer starts at a multiple of PLAN_ALIGN bytes into its arena (whose base is as aligned as
 * the allocator makes it: 64 bytes on the CPU, 256 under CUDA, PLAN_ALIGN on the host) and starts
 * zero-filled.
 */
#ifndef INFLLM_PLAN_H
#define INFLLM_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "backend.h"

/* Lifetimes. All but PLAN_HOST are backend memory (device memory under CUDA). */
enum plan_arena {
    PLAN_WEIGHTS,   /* parameters in the compute dtype: the run */
    PLAN_GRADS,     /* parameter gradients (fp32), summed over a step's micro-batches */
    PLAN_OPTIMIZER, /* this rank's optimizer shard: master weights, moments, gradient slice */
    PLAN_ACTS,      /* saved activations: a micro-batch's forward to its backward */
    PLAN_SCRATCH,   /* temporaries of a layer or an op, reused by every layer */
    PLAN_HOST,      /* host staging of a micro-batch (tokens, targets, losses) */
    PLAN_ARENA_COUNT
};

#define PLAN_MAX_ENTRIES 64
#define PLAN_ALIGN 256

struct plan_entry {
    const char *name;      /* static text, e.g. "residual x" */
    enum plan_arena arena;
    size_t bytes;
    size_t offset;         /* in its arena */
};

struct mem_plan {
    const struct backend *be;
    int n;                                 /* entries declared */
    struct plan_entry entry[PLAN_MAX_ENTRIES];
    size_t arena_bytes[PLAN_ARENA_COUNT];
    void *arena[PLAN_ARENA_COUNT];         /* NULL until plan_allocate (and for empty arenas) */
    bool allocated;
    int carved;                            /* entries handed out by the carving pass */
};

/* An empty plan whose backend arenas come from be. */
void plan_init(struct mem_plan *p, const struct backend *be);

/* Declares a buffer of `bytes` in arena a: NULL while sizing; while carving, its address. */
void *plan_take(struct mem_plan *p, enum plan_arena a, const char *name, size_t bytes);

/* Allocates every non-empty arena (one block each, zero-filled) and starts the carving pass. */
void plan_allocate(struct mem_plan *p);

/* Ends the carving pass: every declared buffer must have been taken again. */
void plan_carved(const struct mem_plan *p);

/* Releases the arenas; every pointer plan_take gave is then invalid. */
void plan_free(struct mem_plan *p);

/* Bytes of the backend arenas (host = false) or of the host arena (host = true). */
size_t plan_bytes(const struct mem_plan *p, bool host);

/* "weights", "gradients", ... */
const char *plan_arena_name(enum plan_arena a);

/* Prints the entries of n plans as one table (arena, name, MiB; arena by arena), then each
 * arena's total and the total of backend and host memory. */
void plan_print(const struct mem_plan *const *plans, int n, FILE *f);

#endif
