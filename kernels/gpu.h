/*
 * gpu.h: what every CUDA launcher of kernels/ receives: the stream its work is queued on, the
 * cuBLASLt handle and workspace for GEMMs, and the device's shape. The backend (backend_cuda.c)
 * owns one and hands it to the launchers through ops.c; no launcher allocates memory.
 *
 * CUDA launchers take bf16 tensors as `void *` (the C side has no bf16 type) and fp32 ones as
 * `float *`, and follow the gradient rule of the CPU kernels (backward ADDS into d-outputs).
 */
#ifndef INFLLM_GPU_H
#define INFLLM_GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gpu_ctx {
    void *stream;              /* cudaStream_t all kernels and copies are queued on */
    void *blas;                /* cublasLtHandle_t */
    void *blas_workspace;      /* device memory for cuBLASLt */
    size_t blas_workspace_bytes;
    int sm_count;              /* multiprocessors of the device */
};

#ifdef __cplusplus
}
#endif

#endif
