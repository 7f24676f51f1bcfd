/*
 * grid.c: rank grid and sequence sharding (see grid.h).
 */
#include "grid.h"

#include <string.h>

#include "check.h"

void grid_init(struct grid *g, MPI_Comm base, int cp) {
    memset(g, 0, sizeof *g);
    comm_init(&g->world, base);
    g->world_rank = g->world.rank;
    g->world_size = g->world.size;
    if (cp < 1 || g->world_size % cp != 0)
        die_user("parallel.cp: %d does not divide the world size %d (expected a divisor of the "
                 "number of ranks)", cp, g->world_size);
    g->cp = cp;
    g->dp = g->world_size / cp;
    g->cp_rank = g->world_rank % cp;
    g->dp_rank = g->world_rank / cp;
    comm_split(&g->cp_comm, &g->world, g->dp_rank, g->cp_rank);
    comm_split(&g->dp_comm, &g->world, g->cp_rank, g->dp_rank);
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(g->world.mpi, MPI_COMM_TYPE_SHARED, g->world_rank, MPI_INFO_NULL,
                                  &node));
    MPI_CHECK(MPI_Comm_rank(node, &g->local_rank));
    MPI_CHECK(MPI_Comm_size(node, &g->local_size));
    MPI_Comm_free(&node);
}

enum comm_kind grid_attach_device(struct grid *g, bool cuda, int n_devices, void *stream) {
    if (!cuda) {
        comm_init(&g->world_dev, g->world.mpi);
        comm_init(&g->cp_dev, g->cp_comm.mpi);
        return COMM_KIND_MPI_HOST;
    }
#ifdef INFLLM_CUDA
    /* NCCL refuses two ranks on one GPU; every rank must agree on the kind. */
    int shared = g->local_size > n_devices;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &shared, 1, MPI_INT, MPI_MAX, g->world.mpi));
    enum comm_kind kind = shared ? COMM_KIND_MPI_STAGED : COMM_KIND_NCCL;
    comm_init_device(&g->world_dev, &g->world, kind, stream);
    comm_init_device(&g->cp_dev, &g->cp_comm, kind, stream);
    return kind;
#else
    CHECKF(0, "grid_attach_device: CUDA requested in a build without CUDA");
#endif
}

void grid_free(struct grid *g) {
    if (g->world_dev.mpi) comm_free(&g->world_dev);
    if (g->cp_dev.mpi) comm_free(&g->cp_dev);
    comm_free(&g->dp_comm);
    comm_free(&g->cp_comm);
    comm_free(&g->world);
}

struct seq_shard seq_shard_of(int64_t T, int cp, int r) {
    struct seq_shard s = {0};
    CHECK(cp >= 1 && r >= 0 && r < cp);
    if (cp == 1) {
        s.nchunks = 1;
        s.chunk_len = T;
        s.start[0] = 0;
    } else {
        CHECK(T % (2 * cp) == 0);
        s.nchunks = 2;
        s.chunk_len = T / (2 * cp);
        s.start[0] = (int64_t)r * s.chunk_len;
        s.start[1] = (int64_t)(2 * cp - 1 - r) * s.chunk_len;
    }
    s.n_local = s.nchunks * s.chunk_len;
    return s;
}

int64_t seq_shard_pos(const struct seq_shard *s, int64_t i) {
    int64_t c = i / s->chunk_len;
    return s->start[c] + (i - c * s->chunk_len);
}
