/*
 * backend.c: the backend's dispatch and the CPU backend's memory (host memory, plain copies).
 * The CUDA backend's memory lives in backend_cuda.c.
 */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

static void *cpu_alloc(const struct backend *be, size_t bytes, const char *what) {
    void *p = NULL;
    /* 64-byte alignment: whole cache lines and full-width vector loads for every buffer. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0)
        die_at(__FILE__, __LINE__, __func__, "out of host memory allocating %zu bytes for %s",
               bytes, what);
    memset(p, 0, rounded);
    return p;
}

static void cpu_release(const struct backend *be, void *p) { free(p); }

static void cpu_zero(const struct backend *be, void *p, size_t bytes) { memset(p, 0, bytes); }

static void cpu_copy(const struct backend *be, void *dst, const void *src, size_t bytes) {
    memmove(dst, src, bytes);
}

static void cpu_upload_act(const struct backend *be, void *dst, const float *src, int64_t n) {
    memmove(dst, src, (size_t)n * sizeof(float));
}

static void cpu_download_act(const struct backend *be, float *dst, const void *src, int64_t n) {
    memmove(dst, src, (size_t)n * sizeof(float));
}

static void cpu_sync(const struct backend *be) {}

static void cpu_mem_info(const struct backend *be, size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = 0;
    *total_bytes = 0;
}

static const struct backend_mem cpu_mem = {
    .alloc = cpu_alloc,
    .release = cpu_release,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .upload = cpu_copy,
    .download = cpu_copy,
    .upload_act = cpu_upload_act,
    .download_act = cpu_download_act,
    .sync = cpu_sync,
    .mem_info = cpu_mem_info,
};

void backend_init(struct backend *be, enum device_kind device, int local_rank) {
    memset(be, 0, sizeof *be);
    be->device = device;
    be->device_id = -1;
    be->act_size = sizeof(float);
    be->mem = &cpu_mem;
    if (device != DEVICE_CUDA) return;
#ifdef INFLLM_CUDA
    backend_cuda_init(be, local_rank);
#else
    die_user("device: \"cuda\" needs a build with the CUDA toolkit (nvcc was not found when this "
             "binary was configured); expected \"cpu\"");
#endif
}

void backend_free(struct backend *be) {
#ifdef INFLLM_CUDA
    if (be->device == DEVICE_CUDA) backend_cuda_free(be);
#endif
    memset(be, 0, sizeof *be);
}

void *backend_alloc(const struct backend *be, size_t bytes, const char *what) {
    return be->mem->alloc(be, bytes, what);
}
void backend_release(const struct backend *be, void *p) { be->mem->release(be, p); }
void backend_zero(const struct backend *be, void *p, size_t bytes) { be->mem->zero(be, p, bytes); }
void backend_copy(const struct backend *be, void *dst, const void *src, size_t bytes) {
    be->mem->copy(be, dst, src, bytes);
}
void backend_upload(const struct backend *be, void *dst, const void *host_src, size_t bytes) {
    be->mem->upload(be, dst, host_src, bytes);
}
void backend_download(const struct backend *be, void *host_dst, const void *src, size_t bytes) {
    be->mem->download(be, host_dst, src, bytes);
}
void backend_upload_act(const struct backend *be, void *dst, const float *host_src, int64_t n) {
    be->mem->upload_act(be, dst, host_src, n);
}
void backend_download_act(const struct backend *be, float *host_dst, const void *src, int64_t n) {
    be->mem->download_act(be, host_dst, src, n);
}
void backend_sync(const struct backend *be) { be->mem->sync(be); }
void backend_mem_info(const struct backend *be, size_t *free_bytes, size_t *total_bytes) {
    be->mem->mem_info(be, free_bytes, total_bytes);
}
