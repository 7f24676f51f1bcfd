/*
 * backend_cuda.c: the CUDA backend: device choice, the stream every kernel and copy is queued on,
 * the cuBLASLt handle and workspace, and device memory (see backend.h). Compiled in CUDA builds.
 *
 * Copies between host and device are queued on the stream and waited for, so a host buffer is
 * free to reuse when a copy function returns; device-to-device copies and zeroing stay queued.
 */
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "cuda_check.h"
#include "elementwise.h"

#define BLAS_WORKSPACE_BYTES ((size_t)64 << 20)

static cudaStream_t stream(const struct backend *be) { return (cudaStream_t)be->gpu.stream; }

static void *cuda_alloc(const struct backend *be, size_t bytes, const char *what) {
    void *p = NULL;
    cudaError_t rc = cudaMalloc(&p, bytes ? bytes : 256);
    if (rc != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        die_at(__FILE__, __LINE__, __func__,
               "out of device memory allocating %.2f MiB for %s (%.2f MiB free of %.2f): %s",
               (double)bytes / 1048576.0, what, (double)free_b / 1048576.0,
               (double)total_b / 1048576.0, cudaGetErrorString(rc));
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream(be)));
    return p;
}

static void cuda_release(const struct backend *be, void *p) {
    CUDA_CHECK(cudaStreamSynchronize(stream(be)));
    CUDA_CHECK(cudaFree(p));
}

static void cuda_zero(const struct backend *be, void *p, size_t bytes) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream(be)));
}

static void cuda_copy(const struct backend *be, void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream(be)));
}

static void cuda_upload(const struct backend *be, void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream(be)));
    CUDA_CHECK(cudaStreamSynchronize(stream(be)));
}

static void cuda_download(const struct backend *be, void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream(be)));
    CUDA_CHECK(cudaStreamSynchronize(stream(be)));
}

/* fp32 <-> bf16 through a bounded fp32 device staging buffer, converted on the device. */
#define STAGE_ELEMS ((int64_t)1 << 24)

static void cuda_upload_act(const struct backend *be, void *dst, const float *src, int64_t n) {
    float *stage = NULL;
    int64_t chunk = n < STAGE_ELEMS ? n : STAGE_ELEMS;
    CUDA_CHECK(cudaMalloc((void **)&stage, (size_t)(chunk > 0 ? chunk : 1) * sizeof(float)));
    for (int64_t off = 0; off < n; off += chunk) {
        int64_t m = n - off < chunk ? n - off : chunk;
        CUDA_CHECK(cudaMemcpyAsync(stage, src + off, (size_t)m * sizeof(float),
                                   cudaMemcpyHostToDevice, stream(be)));
        f32_to_bf16_cuda((char *)dst + off * 2, stage, m, &be->gpu);
    }
    CUDA_CHECK(cudaStreamSynchronize(stream(be)));
    CUDA_CHECK(cudaFree(stage));
}

static void cuda_download_act(const struct backend *be, float *dst, const void *src, int64_t n) {
    float *stage = NULL;
    int64_t chunk = n < STAGE_ELEMS ? n : STAGE_ELEMS;
    CUDA_CHECK(cudaMalloc((void **)&stage, (size_t)(chunk > 0 ? chunk : 1) * sizeof(float)));
    for (int64_t off = 0; off < n; off += chunk) {
        int64_t m = n - off < chunk ? n - off : chunk;
        bf16_to_f32_cuda(stage, (const char *)src + off * 2, m, &be->gpu);
        CUDA_CHECK(cudaMemcpyAsync(dst + off, stage, (size_t)m * sizeof(float),
                                   cudaMemcpyDeviceToHost, stream(be)));
    }
    CUDA_CHECK(cudaStreamSynchronize(stream(be)));
    CUDA_CHECK(cudaFree(stage));
}

static void cuda_sync(const struct backend *be) { CUDA_CHECK(cudaStreamSynchronize(stream(be))); }

static void cuda_mem_info(const struct backend *be, size_t *free_bytes, size_t *total_bytes) {
    CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

static const struct backend_mem cuda_mem = {
    .alloc = cuda_alloc,
    .release = cuda_release,
    .zero = cuda_zero,
    .copy = cuda_copy,
    .upload = cuda_upload,
    .download = cuda_download,
    .upload_act = cuda_upload_act,
    .download_act = cuda_download_act,
    .sync = cuda_sync,
    .mem_info = cuda_mem_info,
};

void backend_cuda_init(struct backend *be, int local_rank) {
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count == 0)
        die_user("device: \"cuda\" but no CUDA device is visible (%s); expected \"cpu\" on this "
                 "machine", rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices");
    be->n_devices = count;
    be->device_id = local_rank % count;
    CUDA_CHECK(cudaSetDevice(be->device_id));
    be->act_size = 2;
    be->mem = &cuda_mem;
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    be->gpu.stream = s;
    cublasLtHandle_t lt;
    CUBLAS_CHECK(cublasLtCreate(&lt));
    be->gpu.blas = lt;
    be->gpu.blas_workspace_bytes = BLAS_WORKSPACE_BYTES;
    CUDA_CHECK(cudaMalloc(&be->gpu.blas_workspace, BLAS_WORKSPACE_BYTES));
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, be->device_id));
    be->gpu.sm_count = prop.multiProcessorCount;
}

void backend_cuda_free(struct backend *be) {
    CUDA_CHECK(cudaStreamSynchronize(stream(be)));
    CUDA_CHECK(cudaFree(be->gpu.blas_workspace));
    cublasLtDestroy((cublasLtHandle_t)be->gpu.blas);
    CUDA_CHECK(cudaStreamDestroy(stream(be)));
}
