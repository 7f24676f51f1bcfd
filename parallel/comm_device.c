/*
 * comm_device.c: comm.h on device buffers (CUDA builds): NCCL, and MPI staged through host memory.
 *
 * NCCL: each communicator owns a stream; a collective first makes that stream wait for an event
 * recorded on the compute stream, runs there, and makes the compute stream wait for its own
 * event: ordered both ways, and the host never waits.
 * Staged MPI (several ranks on one GPU, where NCCL refuses): wait for the compute stream, copy to
 * pinned host memory, run the MPI collective (bf16 sums are done in fp32 on the host), copy back.
 * The staging buffer grows to the largest collective seen; it is a test path, not a hot one.
 */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm_impl.h"
#include "cuda_check.h"

struct device_comm {
    cudaStream_t compute;   /* the backend's stream */
    cudaStream_t own;       /* NCCL's stream */
    cudaEvent_t before, after;
    ncclComm_t nccl;
    void *stage;            /* pinned host staging (staged kind) */
    size_t stage_bytes;
    float *stage_f32;       /* fp32 view of bf16 data for host sums */
    size_t stage_f32_elems;
};

static struct device_comm *impl(const struct comm *c) { return (struct device_comm *)c->impl; }

static ncclDataType_t nccl_type(enum comm_dtype t) {
    switch (t) {
    case COMM_F32: return ncclFloat32;
    case COMM_F64: return ncclFloat64;
    case COMM_I32: return ncclInt32;
    case COMM_I64: return ncclInt64;
    case COMM_U8: return ncclUint8;
    case COMM_BF16: return ncclBfloat16;
    }
    CHECKF(0, "unknown comm dtype %d", (int)t);
}

#define NCCL_CALL(call)                                                                       \
    do {                                                                                      \
        ncclResult_t r_ = (call);                                                             \
        if (r_ != ncclSuccess)                                                                \
            die_at(__FILE__, __LINE__, __func__, "%s failed: %s", #call, ncclGetErrorString(r_)); \
    } while (0)

void comm_nccl_version(char *out, size_t n) {
    int v = 0;
    NCCL_CALL(ncclGetVersion(&v));
    snprintf(out, n, "NCCL %d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
}

void comm_init_device(struct comm *dev, const struct comm *host, enum comm_kind kind, void *stream) {
    CHECK(kind == COMM_KIND_NCCL || kind == COMM_KIND_MPI_STAGED);
    memset(dev, 0, sizeof *dev);
    dev->kind = kind;
    dev->rank = host->rank;
    dev->size = host->size;
    MPI_CHECK(MPI_Comm_dup(host->mpi, &dev->mpi));
    struct device_comm *d = xcalloc(1, sizeof *d);
    dev->impl = d;
    d->compute = (cudaStream_t)stream;
    if (kind != COMM_KIND_NCCL) return;
    ncclUniqueId id;
    if (dev->rank == 0) NCCL_CALL(ncclGetUniqueId(&id));
    MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, dev->mpi));
    NCCL_CALL(ncclCommInitRank(&d->nccl, dev->size, id, dev->rank));
    CUDA_CHECK(cudaStreamCreateWithFlags(&d->own, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&d->before, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&d->after, cudaEventDisableTiming));
}

void comm_device_free(struct comm *c) {
    struct device_comm *d = impl(c);
    if (!d) return;
    if (c->kind == COMM_KIND_NCCL) {
        CUDA_CHECK(cudaStreamSynchronize(d->own));
        ncclCommDestroy(d->nccl);
        cudaEventDestroy(d->before);
        cudaEventDestroy(d->after);
        cudaStreamDestroy(d->own);
    }
    if (d->stage) cudaFreeHost(d->stage);
    free(d->stage_f32);
    free(d);
    c->impl = NULL;
}

/* NCCL ordering around a collective on the communicator's stream. */
static cudaStream_t enter(const struct comm *c) {
    struct device_comm *d = impl(c);
    CUDA_CHECK(cudaEventRecord(d->before, d->compute));
    CUDA_CHECK(cudaStreamWaitEvent(d->own, d->before, 0));
    return d->own;
}

static void leave(const struct comm *c) {
    struct device_comm *d = impl(c);
    CUDA_CHECK(cudaEventRecord(d->after, d->own));
    CUDA_CHECK(cudaStreamWaitEvent(d->compute, d->after, 0));
}

/* ---------------------------------------------------------------------------------------------- */
/* Staging (MPI)                                                                                   */

static void *stage(const struct comm *c, size_t bytes) {
    struct device_comm *d = impl(c);
    if (bytes > d->stage_bytes) {
        if (d->stage) CUDA_CHECK(cudaFreeHost(d->stage));
        CUDA_CHECK(cudaMallocHost(&d->stage, bytes));
        d->stage_bytes = bytes;
    }
    return d->stage;
}

static void to_host(const struct comm *c, void *host, const void *dev, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, impl(c)->compute));
    CUDA_CHECK(cudaStreamSynchronize(impl(c)->compute));
}

static void to_device(const struct comm *c, void *dev, const void *host, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, impl(c)->compute));
    CUDA_CHECK(cudaStreamSynchronize(impl(c)->compute));
}

static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* A host fp32 copy of n bf16 values, for MPI sums. */
static float *widen(const struct comm *c, const uint16_t *h, int64_t n) {
    struct device_comm *d = impl(c);
    if ((size_t)n > d->stage_f32_elems) {
        d->stage_f32 = xrealloc(d->stage_f32, (size_t)n * sizeof(float));
        d->stage_f32_elems = (size_t)n;
    }
    for (int64_t i = 0; i < n; i++) d->stage_f32[i] = bf16_to_f32(h[i]);
    return d->stage_f32;
}

static void narrow(uint16_t *h, const float *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(f[i]);
}

/* ---------------------------------------------------------------------------------------------- */
/* Collectives                                                                                     */

void comm_device_allreduce(const struct comm *c, void *buf, int64_t count, enum comm_dtype t,
                           enum comm_op op) {
    if (c->kind == COMM_KIND_NCCL) {
        cudaStream_t s = enter(c);
        NCCL_CALL(ncclAllReduce(buf, buf, (size_t)count, nccl_type(t),
                                op == COMM_SUM ? ncclSum : ncclMax, impl(c)->nccl, s));
        leave(c);
        return;
    }
    size_t bytes = (size_t)count * comm_dtype_size(t);
    void *h = stage(c, bytes);
    to_host(c, h, buf, bytes);
    if (t == COMM_BF16) {
        float *f = widen(c, h, count);
        comm_mpi_allreduce(c, f, count, COMM_F32, op);
        narrow(h, f, count);
    } else {
        comm_mpi_allreduce(c, h, count, t, op);
    }
    to_device(c, buf, h, bytes);
}

void comm_device_allgather(const struct comm *c, void *recv, const void *send, int64_t count,
                           enum comm_dtype t) {
    size_t es = comm_dtype_size(t), part = (size_t)count * es;
    const void *mine = send ? send : (const char *)recv + (size_t)c->rank * part;
    if (c->kind == COMM_KIND_NCCL) {
        cudaStream_t s = enter(c);
        NCCL_CALL(ncclAllGather(mine, recv, (size_t)count, nccl_type(t), impl(c)->nccl, s));
        leave(c);
        return;
    }
    char *h = stage(c, part * (size_t)c->size);
    to_host(c, h + (size_t)c->rank * part, mine, part);
    comm_mpi_allgather(c, h, NULL, count, t);
    to_device(c, recv, h, part * (size_t)c->size);
}

void comm_device_reduce_scatter(const struct comm *c, void *recv, const void *send, int64_t count,
                                enum comm_dtype t) {
    size_t es = comm_dtype_size(t), part = (size_t)count * es;
    if (c->kind == COMM_KIND_NCCL) {
        cudaStream_t s = enter(c);
        NCCL_CALL(ncclReduceScatter(send, recv, (size_t)count, nccl_type(t), ncclSum,
                                    impl(c)->nccl, s));
        leave(c);
        return;
    }
    int64_t total = count * c->size;
    char *h = stage(c, part * (size_t)c->size + part);
    char *out = h + part * (size_t)c->size;
    to_host(c, h, send, part * (size_t)c->size);
    if (t == COMM_BF16) {
        float *f = widen(c, (const uint16_t *)h, total);
        float *fo = xmalloc((size_t)count * sizeof(float));
        comm_mpi_reduce_scatter(c, fo, f, count, COMM_F32);
        narrow((uint16_t *)out, fo, count);
        free(fo);
    } else {
        comm_mpi_reduce_scatter(c, out, h, count, t);
    }
    to_device(c, recv, out, part);
}

void comm_device_gather(const struct comm *c, void *recv, const void *send, int64_t count,
                        enum comm_dtype t, int root) {
    size_t part = (size_t)count * comm_dtype_size(t);
    if (c->kind == COMM_KIND_NCCL) {
        cudaStream_t s = enter(c);
        NCCL_CALL(ncclGroupStart());
        if (c->rank == root)
            for (int r = 0; r < c->size; r++)
                NCCL_CALL(ncclRecv((char *)recv + (size_t)r * part, (size_t)count, nccl_type(t), r,
                                   impl(c)->nccl, s));
        NCCL_CALL(ncclSend(send, (size_t)count, nccl_type(t), root, impl(c)->nccl, s));
        NCCL_CALL(ncclGroupEnd());
        leave(c);
        return;
    }
    char *h = stage(c, part * (size_t)(c->size + 1));
    to_host(c, h, send, part);
    comm_mpi_gather(c, h + part, h, count, t, root);
    if (c->rank == root) to_device(c, recv, h + part, part * (size_t)c->size);
}

void comm_device_broadcast(const struct comm *c, void *buf, int64_t count, enum comm_dtype t,
                           int root) {
    size_t bytes = (size_t)count * comm_dtype_size(t);
    if (c->kind == COMM_KIND_NCCL) {
        cudaStream_t s = enter(c);
        NCCL_CALL(ncclBroadcast(buf, buf, (size_t)count, nccl_type(t), root, impl(c)->nccl, s));
        leave(c);
        return;
    }
    void *h = stage(c, bytes);
    if (c->rank == root) to_host(c, h, buf, bytes);
    comm_mpi_broadcast(c, h, count, t, root);
    if (c->rank != root) to_device(c, buf, h, bytes);
}

void comm_device_sendrecv(const struct comm *c, const void *send, int64_t scount, int dest,
                          void *recv, int64_t rcount, int src, enum comm_dtype t) {
    size_t es = comm_dtype_size(t);
    if (c->kind == COMM_KIND_NCCL) {
        cudaStream_t s = enter(c);
        NCCL_CALL(ncclGroupStart());
        if (dest >= 0)
            NCCL_CALL(ncclSend(send, (size_t)scount, nccl_type(t), dest, impl(c)->nccl, s));
        if (src >= 0)
            NCCL_CALL(ncclRecv(recv, (size_t)rcount, nccl_type(t), src, impl(c)->nccl, s));
        NCCL_CALL(ncclGroupEnd());
        leave(c);
        return;
    }
    char *h = stage(c, (size_t)(scount + rcount) * es);
    if (dest >= 0) to_host(c, h, send, (size_t)scount * es);
    comm_mpi_sendrecv(c, h, scount, dest, h + (size_t)scount * es, rcount, src, t);
    if (src >= 0) to_device(c, recv, h + (size_t)scount * es, (size_t)rcount * es);
}
