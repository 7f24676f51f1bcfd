/*
 * plan.c: the memory plan (see plan.h).
 */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checked.h"

/* x rounded up to PLAN_ALIGN; x <= SIZE_LIMIT (checked by the caller), so it cannot wrap. */
static size_t align_up(size_t x) { return (x + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN; }

void plan_init(struct mem_plan *p, const struct backend *be) {
    memset(p, 0, sizeof *p);
    p->be = be;
}

/* Records a buffer while sizing. */
static void *size_one(struct mem_plan *p, enum plan_arena a, const char *name, size_t bytes) {
    CHECKF(p->n < PLAN_MAX_ENTRIES, "memory plan: more than %d buffers (raise PLAN_MAX_ENTRIES)",
           PLAN_MAX_ENTRIES);
    CHECKF(bytes <= (size_t)SIZE_LIMIT, "memory plan: \"%s\" of %zu bytes is beyond 2^62 (a size "
           "the config's validation should have bounded)", name, bytes);
    p->entry[p->n++] = (struct plan_entry){name, a, bytes, p->arena_bytes[a]};
    p->arena_bytes[a] = (size_t)size_add(p->arena_bytes[a], align_up(bytes));
    return NULL;
}

void *plan_take(struct mem_plan *p, enum plan_arena a, const char *name, size_t bytes) {
    CHECK((int)a >= 0 && a < PLAN_ARENA_COUNT);
    if (!p->allocated) return size_one(p, a, name, bytes);
    CHECKF(p->carved < p->n, "memory plan: \"%s\" was not declared while sizing", name);
    const struct plan_entry *e = &p->entry[p->carved++];
    CHECKF(e->arena == a && e->bytes == bytes && strcmp(e->name, name) == 0,
           "memory plan: carving \"%s\" (%zu bytes) where sizing declared \"%s\" (%zu bytes)",
           name, bytes, e->name, e->bytes);
    return (char *)p->arena[a] + e->offset;
}

/* Host memory for the host arena, PLAN_ALIGN-aligned and zero-filled. */
static void *host_alloc(size_t bytes) {
    void *q = NULL;
    if (posix_memalign(&q, PLAN_ALIGN, bytes) != 0)
        die_at(__FILE__, __LINE__, __func__, "out of host memory allocating %zu bytes for the "
               "host arena of the memory plan", bytes);
    memset(q, 0, bytes);
    return q;
}

void plan_allocate(struct mem_plan *p) {
    CHECK(!p->allocated);
    for (int a = 0; a < PLAN_ARENA_COUNT; a++) {
        size_t bytes = p->arena_bytes[a];
        if (bytes == 0) continue;
        p->arena[a] = a == PLAN_HOST ? host_alloc(bytes)
                                     : backend_alloc(p->be, bytes, plan_arena_name(a));
    }
    p->allocated = true;
    p->carved = 0;
}

void plan_carved(const struct mem_plan *p) {
    CHECKF(p->carved == p->n, "memory plan: %d of %d buffers carved", p->carved, p->n);
}

void plan_free(struct mem_plan *p) {
    for (int a = 0; a < PLAN_ARENA_COUNT; a++) {
        if (!p->arena[a]) continue;
        if (a == PLAN_HOST)
            free(p->arena[a]);
        else
            backend_release(p->be, p->arena[a]);
    }
    memset(p, 0, sizeof *p);
}

size_t plan_bytes(const struct mem_plan *p, bool host) {
    size_t total = 0;
    for (int a = 0; a < PLAN_ARENA_COUNT; a++)
        if ((a == PLAN_HOST) == host) total = (size_t)size_add(total, p->arena_bytes[a]);
    return total;
}

const char *plan_arena_name(enum plan_arena a) {
    static const char *const names[PLAN_ARENA_COUNT] = {
        "weights", "gradients", "optimizer", "activations", "scratch", "host"};
    return names[a];
}

static double mib(size_t bytes) { return (double)bytes / 1048576.0; }

void plan_print(const struct mem_plan *const *plans, int n, FILE *f) {
    size_t arena[PLAN_ARENA_COUNT] = {0}, device = 0, host = 0;
    for (int a = 0; a < PLAN_ARENA_COUNT; a++)
        for (int i = 0; i < n; i++) {
            arena[a] = (size_t)size_add(arena[a], plans[i]->arena_bytes[a]);
            for (int j = 0; j < plans[i]->n; j++) {
                const struct plan_entry *e = &plans[i]->entry[j];
                if ((int)e->arena == a)
                    fprintf(f, "  %-11s %-40s %12.2f MiB\n", plan_arena_name(e->arena), e->name,
                            mib(e->bytes));
            }
        }
    fprintf(f, "  one allocation per arena and owner:");
    for (int a = 0; a < PLAN_ARENA_COUNT; a++) {
        if (!arena[a]) continue;
        fprintf(f, "%s %s %.2f MiB", device + host ? "," : "", plan_arena_name(a), mib(arena[a]));
        size_t *sum = a == PLAN_HOST ? &host : &device;
        *sum = (size_t)size_add(*sum, arena[a]);
    }
    fprintf(f, "\n  %-52s %12.2f MiB (+ %.2f MiB host)\n", "total", mib(device), mib(host));
}
