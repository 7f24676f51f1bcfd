/*
 * comm.c: comm.h's dispatch, and its MPI implementation on host buffers (comm_mpi_*, which the
 * staged device implementation of comm_device.c reuses).
 *
 * MPI counts are int. A collective over more than INT_MAX elements uses a contiguous datatype of
 * `unit` elements (the largest power of two that divides the count and brings it under INT_MAX);
 * reductions, which need a predefined datatype, are instead split into pieces.
 */
#include "comm.h"

#include <limits.h>
#include <string.h>

#include "check.h"
#include "comm_impl.h"
#include "profile.h"

#define COMM_PIECE ((int64_t)1 << 30) /* elements per piece of a split reduction */

size_t comm_dtype_size(enum comm_dtype t) {
    switch (t) {
    case COMM_F32: return 4;
    case COMM_F64: return 8;
    case COMM_I32: return 4;
    case COMM_I64: return 8;
    case COMM_U8: return 1;
    case COMM_BF16: return 2;
    }
    CHECKF(0, "unknown comm dtype %d", (int)t);
}

enum comm_dtype comm_act_dtype(size_t act_size) {
    CHECKF(act_size == 4 || act_size == 2, "no comm dtype for %zu-byte activations", act_size);
    return act_size == 4 ? COMM_F32 : COMM_BF16;
}

static MPI_Datatype mpi_type(enum comm_dtype t) {
    switch (t) {
    case COMM_F32: return MPI_FLOAT;
    case COMM_F64: return MPI_DOUBLE;
    case COMM_I32: return MPI_INT32_T;
    case COMM_I64: return MPI_INT64_T;
    case COMM_U8: return MPI_UINT8_T;
    case COMM_BF16: return MPI_UINT16_T; /* moved, never reduced by MPI */
    }
    CHECKF(0, "unknown comm dtype %d", (int)t);
}

static MPI_Op mpi_op(enum comm_op op) { return op == COMM_SUM ? MPI_SUM : MPI_MAX; }

/* A datatype covering `count` elements as n units of a contiguous type; frees with unit_free. */
struct unit_type {
    MPI_Datatype type;
    int n;
    bool derived;
};

static struct unit_type unit_make(int64_t count, enum comm_dtype t) {
    struct unit_type u = {mpi_type(t), (int)count, false};
    if (count <= INT_MAX) return u;
    int64_t unit = 1;
    while (count / unit > INT_MAX) unit *= 2;
    CHECKF(count % unit == 0, "count %lld cannot be split into units of %lld elements",
           (long long)count, (long long)unit);
    MPI_CHECK(MPI_Type_contiguous((int)unit, mpi_type(t), &u.type));
    MPI_CHECK(MPI_Type_commit(&u.type));
    u.n = (int)(count / unit);
    u.derived = true;
    return u;
}

static void unit_free(struct unit_type *u) {
    if (u->derived) MPI_Type_free(&u->type);
}

void comm_init(struct comm *c, MPI_Comm base) {
    memset(c, 0, sizeof *c);
    c->kind = COMM_KIND_MPI_HOST;
    MPI_CHECK(MPI_Comm_dup(base, &c->mpi));
    MPI_CHECK(MPI_Comm_rank(c->mpi, &c->rank));
    MPI_CHECK(MPI_Comm_size(c->mpi, &c->size));
}

void comm_split(struct comm *child, const struct comm *parent, int color, int key) {
    CHECKF(parent->kind == COMM_KIND_MPI_HOST, "comm_split of a device communicator");
    memset(child, 0, sizeof *child);
    child->kind = parent->kind;
    MPI_CHECK(MPI_Comm_split(parent->mpi, color, key, &child->mpi));
    MPI_CHECK(MPI_Comm_rank(child->mpi, &child->rank));
    MPI_CHECK(MPI_Comm_size(child->mpi, &child->size));
}

void comm_free(struct comm *c) {
#ifdef INFLLM_CUDA
    if (c->kind != COMM_KIND_MPI_HOST) comm_device_free(c);
#endif
    if (c->mpi != MPI_COMM_NULL && c->mpi != 0) MPI_Comm_free(&c->mpi);
    c->mpi = MPI_COMM_NULL;
}

void comm_mpi_allreduce(const struct comm *c, void *buf, int64_t count, enum comm_dtype t,
                    enum comm_op op) {
    CHECK(t != COMM_BF16);
    if (c->size == 1) return;
    size_t es = comm_dtype_size(t);
    for (int64_t off = 0; off < count; off += COMM_PIECE) {
        int64_t n = count - off < COMM_PIECE ? count - off : COMM_PIECE;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * es, (int)n, mpi_type(t),
                                mpi_op(op), c->mpi));
    }
}

void comm_mpi_allgather(const struct comm *c, void *recv, const void *send, int64_t count,
                    enum comm_dtype t) {
    size_t es = comm_dtype_size(t);
    if (c->size == 1) {
        if (send && send != recv) memmove(recv, send, (size_t)count * es);
        return;
    }
    struct unit_type u = unit_make(count, t);
    MPI_CHECK(MPI_Allgather(send ? send : MPI_IN_PLACE, u.n, u.type, recv, u.n, u.type, c->mpi));
    unit_free(&u);
}

void comm_mpi_reduce_scatter(const struct comm *c, void *recv, const void *send, int64_t count,
                         enum comm_dtype t) {
    CHECK(t != COMM_BF16);
    size_t es = comm_dtype_size(t);
    if (c->size == 1) {
        if (send != recv) memmove(recv, send, (size_t)count * es);
        return;
    }
    if (count <= INT_MAX) {
        MPI_CHECK(MPI_Reduce_scatter_block(send, recv, (int)count, mpi_type(t), MPI_SUM, c->mpi));
        return;
    }
    /* Too large for one call: reduce each rank's part to it in pieces (same sums, same order). */
    for (int r = 0; r < c->size; r++) {
        const char *part = (const char *)send + (size_t)r * (size_t)count * es;
        for (int64_t off = 0; off < count; off += COMM_PIECE) {
            int64_t n = count - off < COMM_PIECE ? count - off : COMM_PIECE;
            MPI_CHECK(MPI_Reduce(part + off * es, c->rank == r ? (char *)recv + off * es : NULL,
                                 (int)n, mpi_type(t), MPI_SUM, r, c->mpi));
        }
    }
}

void comm_mpi_gather(const struct comm *c, void *recv, const void *send, int64_t count,
                 enum comm_dtype t, int root) {
    if (c->size == 1) {
        if (send != recv) memmove(recv, send, (size_t)count * comm_dtype_size(t));
        return;
    }
    struct unit_type u = unit_make(count, t);
    MPI_CHECK(MPI_Gather(send, u.n, u.type, recv, u.n, u.type, root, c->mpi));
    unit_free(&u);
}

void comm_mpi_broadcast(const struct comm *c, void *buf, int64_t count, enum comm_dtype t, int root) {
    if (c->size == 1) return;
    struct unit_type u = unit_make(count, t);
    MPI_CHECK(MPI_Bcast(buf, u.n, u.type, root, c->mpi));
    unit_free(&u);
}

void comm_mpi_barrier(const struct comm *c) {
    if (c->size > 1) MPI_CHECK(MPI_Barrier(c->mpi));
}

void comm_mpi_sendrecv(const struct comm *c, const void *send, int64_t scount, int dest, void *recv,
                   int64_t rcount, int src, enum comm_dtype t) {
    struct unit_type us = unit_make(scount, t), ur = unit_make(rcount, t);
    MPI_CHECK(MPI_Sendrecv(send, us.n, us.type, dest < 0 ? MPI_PROC_NULL : dest, 17, recv, ur.n,
                           ur.type, src < 0 ? MPI_PROC_NULL : src, 17, c->mpi, MPI_STATUS_IGNORE));
    unit_free(&us);
    unit_free(&ur);
}

/* ---------------------------------------------------------------------------------------------- */
/* Dispatch                                                                                        */

/* device_call on a tensor communicator (CUDA builds), mpi_call on a host one; a profiled region. */
#ifdef INFLLM_CUDA
#define DISPATCH(c, device_call, mpi_call)                                     \
    do {                                                                       \
        prof_begin(PROF_COMM);                                                 \
        if ((c)->kind != COMM_KIND_MPI_HOST)                                   \
            device_call;                                                       \
        else                                                                   \
            mpi_call;                                                          \
        prof_end();                                                            \
    } while (0)
#else
#define DISPATCH(c, device_call, mpi_call)                                     \
    do {                                                                       \
        prof_begin(PROF_COMM);                                                 \
        mpi_call;                                                              \
        prof_end();                                                            \
    } while (0)
#endif

void comm_allreduce(const struct comm *c, void *buf, int64_t count, enum comm_dtype t,
                    enum comm_op op) {
    DISPATCH(c, comm_device_allreduce(c, buf, count, t, op),
             comm_mpi_allreduce(c, buf, count, t, op));
}

void comm_allgather(const struct comm *c, void *recv, const void *send, int64_t count,
                    enum comm_dtype t) {
    DISPATCH(c, comm_device_allgather(c, recv, send, count, t),
             comm_mpi_allgather(c, recv, send, count, t));
}

void comm_reduce_scatter(const struct comm *c, void *recv, const void *send, int64_t count,
                         enum comm_dtype t) {
    DISPATCH(c, comm_device_reduce_scatter(c, recv, send, count, t),
             comm_mpi_reduce_scatter(c, recv, send, count, t));
}

void comm_gather(const struct comm *c, void *recv, const void *send, int64_t count,
                 enum comm_dtype t, int root) {
    DISPATCH(c, comm_device_gather(c, recv, send, count, t, root),
             comm_mpi_gather(c, recv, send, count, t, root));
}

void comm_broadcast(const struct comm *c, void *buf, int64_t count, enum comm_dtype t, int root) {
    DISPATCH(c, comm_device_broadcast(c, buf, count, t, root),
             comm_mpi_broadcast(c, buf, count, t, root));
}

void comm_barrier(const struct comm *c) { comm_mpi_barrier(c); }

void comm_sendrecv(const struct comm *c, const void *send, int64_t scount, int dest, void *recv,
                   int64_t rcount, int src, enum comm_dtype t) {
    DISPATCH(c, comm_device_sendrecv(c, send, scount, dest, recv, rcount, src, t),
             comm_mpi_sendrecv(c, send, scount, dest, recv, rcount, src, t));
}
