/*
 * test_comm.c: every collective of the communicator against a direct computation, on the world and
 * on a split sub-communicator, with a count above one MPI piece for the reductions' splitting logic
 * exercised through a derived unit type (a count that is not a multiple of anything special).
 * Values are small integers held in floats, so sums are exact in any order: tolerance 0.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "testlib.h"

/* The value rank r puts at index i. */
static float val(int r, int64_t i) { return (float)((r * 7 + i * 3) % 101); }

static void test_on(const struct comm *c, const char *name) {
    int R = c->size, r = c->rank;
    const int64_t n = 1031;
    float *buf = xmalloc((size_t)n * R * sizeof(float)), *ref = xmalloc((size_t)n * R * sizeof(float));
    char what[128];

    /* allreduce sum and max */
    for (int64_t i = 0; i < n; i++) buf[i] = val(r, i);
    comm_allreduce(c, buf, n, COMM_F32, COMM_SUM);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = 0;
        for (int q = 0; q < R; q++) ref[i] += val(q, i);
    }
    snprintf(what, sizeof what, "%s allreduce sum", name);
    t_close(what, buf, ref, n, 0, 0);
    for (int64_t i = 0; i < n; i++) buf[i] = val(r, i);
    comm_allreduce(c, buf, n, COMM_F32, COMM_MAX);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = 0;
        for (int q = 0; q < R; q++) ref[i] = ref[i] > val(q, i) ? ref[i] : val(q, i);
    }
    snprintf(what, sizeof what, "%s allreduce max", name);
    t_close(what, buf, ref, n, 0, 0);

    /* allgather, out of place and in place */
    float *mine = xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) mine[i] = val(r, i);
    comm_allgather(c, buf, mine, n, COMM_F32);
    for (int q = 0; q < R; q++)
        for (int64_t i = 0; i < n; i++) ref[q * n + i] = val(q, i);
    snprintf(what, sizeof what, "%s allgather", name);
    t_close(what, buf, ref, n * R, 0, 0);
    memset(buf, 0, (size_t)n * R * sizeof(float));
    memcpy(buf + (int64_t)r * n, mine, (size_t)n * sizeof(float));
    comm_allgather(c, buf, NULL, n, COMM_F32);
    snprintf(what, sizeof what, "%s allgather in place", name);
    t_close(what, buf, ref, n * R, 0, 0);

    /* reduce-scatter: rank q's part is the sum over ranks of their part q */
    for (int q = 0; q < R; q++)
        for (int64_t i = 0; i < n; i++) buf[q * n + i] = val(r + q, i);
    float *part = xmalloc((size_t)n * sizeof(float));
    comm_reduce_scatter(c, part, buf, n, COMM_F32);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = 0;
        for (int q = 0; q < R; q++) ref[i] += val(q + r, i);
    }
    snprintf(what, sizeof what, "%s reduce-scatter", name);
    t_close(what, part, ref, n, 0, 0);

    /* broadcast from the last rank, in int64 and bf16-sized elements */
    int64_t big[5];
    for (int i = 0; i < 5; i++) big[i] = r == R - 1 ? ((int64_t)1 << 40) + i : -1;
    comm_broadcast(c, big, 5, COMM_I64, R - 1);
    bool ok = true;
    for (int i = 0; i < 5; i++) ok &= big[i] == ((int64_t)1 << 40) + i;
    t_check(ok, "%s broadcast int64", name);
    uint16_t h[3] = {(uint16_t)(r == 0 ? 0x3f80 : 0), (uint16_t)(r == 0 ? 0x4000 : 0), 7};
    comm_broadcast(c, h, 3, COMM_BF16, 0);
    t_check(h[0] == 0x3f80 && h[1] == 0x4000 && h[2] == 7, "%s broadcast bf16", name);

    /* sendrecv around a ring */
    int right = (r + 1) % R, left = (r + R - 1) % R;
    float got[4], sent[4];
    for (int i = 0; i < 4; i++) sent[i] = val(r, i);
    comm_sendrecv(c, sent, 4, right, got, 4, left, COMM_F32);
    for (int i = 0; i < 4; i++) ref[i] = val(left, i);
    snprintf(what, sizeof what, "%s sendrecv ring", name);
    t_close(what, got, ref, 4, 0, 0);

    comm_barrier(c);
    free(buf);
    free(ref);
    free(mine);
    free(part);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    struct comm world, half;
    comm_init(&world, MPI_COMM_WORLD);
    test_on(&world, "world");
    comm_split(&half, &world, world.rank % 2, world.rank);
    t_check(half.size == (world.size + 1 - world.rank % 2) / 2, "split size %d", half.size);
    test_on(&half, "split");
    comm_free(&half);
    int failures = t_failures();
    MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int rc = world.rank == 0 ? t_finish("test_comm") : (t_failures() ? 1 : 0);
    if (failures && rc == 0) rc = 1;
    comm_free(&world);
    MPI_Finalize();
    return rc;
}
