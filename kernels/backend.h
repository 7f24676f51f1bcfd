/*
 * backend.h: where tensors live and in which precision, chosen at run time ("device": "cpu" |
 * "cuda").
 *
 * The CPU backend is the fp32 reference: weights, activations and gradients are float. The CUDA
 * backend keeps weights and activations in bf16 and everything that accumulates in fp32 (parameter
 * gradients, master weights, moments, norms' rstd, softmax log-sum-exp, logits). So the model code
 * handles weights and activations as `void *` of act_size bytes per element, and parameter
 * gradients as `float *`; ops.h dispatches each layer op to the matching kernel.
 *
 * Memory is planned: the memory plan (plan.h) computes exact sizes and allocates once per lifetime
 * through backend_alloc (device memory for CUDA, host memory for CPU). The memory functions below
 * forward to the backend's implementation table (backend.c for the CPU, backend_cuda.c for CUDA).
 */
#ifndef INFLLM_BACKEND_H
#define INFLLM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"

/* Where a backend's tensors live (the config's "device"). */
enum device_kind { DEVICE_CPU = 0, DEVICE_CUDA = 1 };

struct backend;

/* One implementation of the memory functions. */
struct backend_mem {
    void *(*alloc)(const struct backend *be, size_t bytes, const char *what);
    void (*release)(const struct backend *be, void *p);
    void (*zero)(const struct backend *be, void *p, size_t bytes);
    void (*copy)(const struct backend *be, void *dst, const void *src, size_t bytes);
    void (*upload)(const struct backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(const struct backend *be, void *host_dst, const void *src, size_t bytes);
    void (*upload_act)(const struct backend *be, void *dst, const float *host_src, int64_t n);
    void (*download_act)(const struct backend *be, float *host_dst, const void *src, int64_t n);
    void (*sync)(const struct backend *be);
    void (*mem_info)(const struct backend *be, size_t *free_bytes, size_t *total_bytes);
};

struct backend {
    enum device_kind device;
    size_t act_size;                 /* bytes of one weight / activation element: 4 or 2 (bf16) */
    int device_id;                   /* CUDA device of this rank, -1 on CPU */
    int n_devices;                   /* CUDA devices visible on this node, 0 on CPU */
    const struct backend_mem *mem;   /* memory functions of this device */
    struct gpu_ctx gpu;              /* CUDA: stream, cuBLASLt handle and workspace */
};

/* Starts the backend; local_rank picks the GPU (local_rank % device count). */
void backend_init(struct backend *be, enum device_kind device, int local_rank);
void backend_free(struct backend *be);

/* CUDA builds: starts the CUDA side (backend_cuda.c); called by backend_init. */
void backend_cuda_init(struct backend *be, int local_rank);
void backend_cuda_free(struct backend *be);

/* Device (or host) memory, zero-filled; `what` names the buffer in an out-of-memory message. */
void *backend_alloc(const struct backend *be, size_t bytes, const char *what);
void backend_release(const struct backend *be, void *p);

void backend_zero(const struct backend *be, void *p, size_t bytes);
void backend_copy(const struct backend *be, void *dst, const void *src, size_t bytes);
void backend_upload(const struct backend *be, void *dst, const void *host_src, size_t bytes);
void backend_download(const struct backend *be, void *host_dst, const void *src, size_t bytes);

/* Compute-dtype tensors to and from host fp32 (n elements). */
void backend_upload_act(const struct backend *be, void *dst, const float *host_src, int64_t n);
void backend_download_act(const struct backend *be, float *host_dst, const void *src, int64_t n);

/* Waits until all queued device work has finished (a no-op on CPU). */
void backend_sync(const struct backend *be);

/* Bytes of device memory free and in total (CPU: 0, 0). */
void backend_mem_info(const struct backend *be, size_t *free_bytes, size_t *total_bytes);

/* Pointer arithmetic on compute-dtype buffers: p + i elements. */
static inline void *act_at(const struct backend *be, void *p, int64_t i) {
    return (char *)p + (size_t)i * be->act_size;
}
static inline const void *act_at_c(const struct backend *be, const void *p, int64_t i) {
    return (const char *)p + (size_t)i * be->act_size;
}

#endif
