/*
 * comm_impl.h: the implementations behind comm.h's dispatch (private to parallel/): the MPI
 * host-buffer collectives of comm.c, and the device-buffer ones of comm_device.c (NCCL, or MPI
 * staged through host memory; CUDA builds).
 */
#ifndef INFLLM_COMM_IMPL_H
#define INFLLM_COMM_IMPL_H

#include "comm.h"

void comm_mpi_allreduce(const struct comm *c, void *buf, int64_t count, enum comm_dtype t,
                        enum comm_op op);
void comm_mpi_allgather(const struct comm *c, void *recv, const void *send, int64_t count,
                        enum comm_dtype t);
void comm_mpi_reduce_scatter(const struct comm *c, void *recv, const void *send, int64_t count,
                             enum comm_dtype t);
void comm_mpi_gather(const struct comm *c, void *recv, const void *send, int64_t count,
                     enum comm_dtype t, int root);
void comm_mpi_broadcast(const struct comm *c, void *buf, int64_t count, enum comm_dtype t, int root);
void comm_mpi_barrier(const struct comm *c);
void comm_mpi_sendrecv(const struct comm *c, const void *send, int64_t scount, int dest, void *recv,
                       int64_t rcount, int src, enum comm_dtype t);

void comm_device_allreduce(const struct comm *c, void *buf, int64_t count, enum comm_dtype t,
                           enum comm_op op);
void comm_device_allgather(const struct comm *c, void *recv, const void *send, int64_t count,
                           enum comm_dtype t);
void comm_device_reduce_scatter(const struct comm *c, void *recv, const void *send, int64_t count,
                                enum comm_dtype t);
void comm_device_gather(const struct comm *c, void *recv, const void *send, int64_t count,
                        enum comm_dtype t, int root);
void comm_device_broadcast(const struct comm *c, void *buf, int64_t count, enum comm_dtype t,
                           int root);
void comm_device_sendrecv(const struct comm *c, const void *send, int64_t scount, int dest,
                          void *recv, int64_t rcount, int src, enum comm_dtype t);
void comm_device_free(struct comm *c);

#endif
