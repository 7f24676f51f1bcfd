/*
 * comm.h: the communicator, the few collectives the trainer needs behind one small interface.
 *
 * Implementations: MPI on host buffers (the CPU backend, and tests that put several ranks on one
 * machine), MPI on device buffers staged through host memory (several ranks sharing one GPU), and
 * NCCL on device buffers (one rank per GPU; comm_nccl.c, CUDA builds). Callers never branch on the
 * kind: they call comm_* and the buffers' home (host or device) is a property of the communicator.
 *
 * Counts are elements (int64_t; large counts are split so MPI's int limits never bite).
 * Reductions are sums or maxima. Every collective is blocking for host buffers; device collectives
 * are ordered on the communicator's stream (see comm_nccl.c).
 */
#ifndef INFLLM_COMM_H
#define INFLLM_COMM_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

enum comm_dtype { COMM_F32, COMM_F64, COMM_I32, COMM_I64, COMM_U8, COMM_BF16 };
enum comm_op { COMM_SUM, COMM_MAX };
enum comm_kind {
    COMM_KIND_MPI_HOST = 0,    /* host buffers through MPI */
    COMM_KIND_MPI_STAGED = 1,  /* device buffers copied through host memory, then MPI */
    COMM_KIND_NCCL = 2,        /* device buffers through NCCL */
};

struct comm {
    enum comm_kind kind;
    int rank, size;
    MPI_Comm mpi;     /* always valid: the group as an MPI communicator */
    void *impl;       /* kind-specific state (NCCL communicator, stream, staging buffers) */
};

/* Size of one element of dtype in bytes. */
size_t comm_dtype_size(enum comm_dtype t);

/* The dtype of a backend's weights and activations of act_size bytes (backend.h): fp32 or bf16. */
enum comm_dtype comm_act_dtype(size_t act_size);

/* A host-buffer MPI communicator over the ranks of `base` (MPI_COMM_WORLD for a run; tests also
 * use MPI_COMM_SELF to compute a single-rank reference inside a multi-rank test). */
void comm_init(struct comm *c, MPI_Comm base);

/* CUDA builds: a communicator over the same ranks as the host one `host` for device buffers:
 * kind COMM_KIND_NCCL (one rank per GPU) or COMM_KIND_MPI_STAGED (ranks sharing a GPU: copies
 * through host memory, then MPI). Collectives are ordered after the work already queued on
 * `stream` (cudaStream_t) and work queued there afterwards runs after them: NCCL runs on its own
 * stream joined by events (no host synchronisation); the staged kind waits for the stream. */
void comm_init_device(struct comm *dev, const struct comm *host, enum comm_kind kind, void *stream);

/* CUDA builds: the NCCL library version in use, e.g. "NCCL 2.28.3". */
void comm_nccl_version(char *out, size_t n);

/* A sub-communicator of the ranks with the same color, ordered by key (MPI_Comm_split). The child
 * has the parent's kind. */
void comm_split(struct comm *child, const struct comm *parent, int color, int key);

void comm_free(struct comm *c);

/* buf[i] = op over ranks of buf[i], in place. */
void comm_allreduce(const struct comm *c, void *buf, int64_t count, enum comm_dtype t,
                    enum comm_op op);

/* recv = concatenation over ranks (in rank order) of each rank's send (count elements each).
 * send may be NULL: then this rank's part is taken in place from recv + rank * count. */
void comm_allgather(const struct comm *c, void *recv, const void *send, int64_t count,
                    enum comm_dtype t);

/* recv (count elements) = sum over ranks of send[rank * count .. rank * count + count). */
void comm_reduce_scatter(const struct comm *c, void *recv, const void *send, int64_t count,
                         enum comm_dtype t);

/* recv (on root only; count * size elements) = concatenation over ranks of send (count each). */
void comm_gather(const struct comm *c, void *recv, const void *send, int64_t count,
                 enum comm_dtype t, int root);

void comm_broadcast(const struct comm *c, void *buf, int64_t count, enum comm_dtype t, int root);

void comm_barrier(const struct comm *c);

/* Sends scount elements to rank dest and receives rcount from rank src at once (either side may be
 * skipped with dest / src = -1). */
void comm_sendrecv(const struct comm *c, const void *send, int64_t scount, int dest, void *recv,
                   int64_t rcount, int src, enum comm_dtype t);

#endif
