/*
 * grid.h: the rank grid (dp x cp) and how one sequence is sharded over the cp ranks of a group.
 *
 * World rank = dp_rank * cp + cp_rank: the cp ranks sharing a sequence are neighbours (one node,
 * fast links). Sequence sharding balances the causal work: the sequence of T tokens is cut into
 * 2 * cp equal chunks and cp rank r holds chunks r and 2cp - 1 - r, in that order. With cp = 1 the
 * two chunks are the two halves, i.e. the whole sequence in order, and the code treats it as one
 * chunk of T tokens.
 */
#ifndef INFLLM_GRID_H
#define INFLLM_GRID_H

#include <stdbool.h>
#include <stdint.h>

#include "comm.h"

struct grid {
    int world_rank, world_size;
    int cp, dp;              /* cp * dp = world_size */
    int cp_rank, dp_rank;
    int local_rank, local_size; /* among the ranks of this node (picks the GPU) */
    struct comm world;       /* all ranks, host buffers (scalars, checkpoints) */
    struct comm cp_comm;     /* the cp ranks of this rank's group, host buffers */
    struct comm dp_comm;     /* the ranks with this cp_rank across groups, host buffers */
    struct comm world_dev;   /* all ranks, tensor buffers of the backend (weights, gradients) */
    struct comm cp_dev;      /* the cp group, tensor buffers (K/V exchanges) */
};

/* Builds the grid for parallel.cp = cp over the ranks of `base` (MPI_COMM_WORLD for a run); a
 * world size not divisible by cp is a user error naming parallel.cp and the world size. */
void grid_init(struct grid *g, MPI_Comm base, int cp);
void grid_free(struct grid *g);

/* Sets up world_dev and cp_dev for the backend's buffers: host MPI for the CPU; for CUDA, NCCL
 * when every rank of a node has its own GPU and MPI staged through host memory when ranks share
 * GPUs (n_devices: CUDA devices on the node; stream: the backend's cudaStream_t). Returns the kind
 * chosen. */
enum comm_kind grid_attach_device(struct grid *g, bool cuda, int n_devices, void *stream);

/* This rank's share of one sequence of T tokens. */
struct seq_shard {
    int nchunks;             /* 1 (cp = 1) or 2 */
    int64_t chunk_len;       /* tokens per chunk */
    int64_t start[2];        /* global position of each chunk's first token */
    int64_t n_local;         /* nchunks * chunk_len */
};

/* The chunks of cp rank r of cp; T must be a multiple of 2 * cp (config_validate ensures more). */
struct seq_shard seq_shard_of(int64_t T, int cp, int r);

/* Global position of local token i (i < n_local). */
int64_t seq_shard_pos(const struct seq_shard *s, int64_t i);

#endif
