/*
 * cuda_check.h: the fail-fast policy of check.h for CUDA, cuBLASLt and NCCL calls (CUDA builds
 * only). A failed call prints the statement, the library's error string, function, file and line,
 * then aborts every rank. CUDA_CHECK_LAST() after each kernel launch catches launch errors.
 */
#ifndef INFLLM_CUDA_CHECK_H
#define INFLLM_CUDA_CHECK_H

#include <cuda_runtime_api.h>

#include "check.h"

#define CUDA_CHECK(call)                                                                  \
    do {                                                                                  \
        cudaError_t cuda_rc_ = (call);                                                    \
        if (cuda_rc_ != cudaSuccess)                                                      \
            die_at(__FILE__, __LINE__, __func__, "%s failed: %s", #call,                  \
                   cudaGetErrorString(cuda_rc_));                                         \
    } while (0)

#define CUDA_CHECK_LAST() CUDA_CHECK(cudaGetLastError())

#define CUBLAS_CHECK(call)                                                                \
    do {                                                                                  \
        int cublas_rc_ = (int)(call);                                                     \
        if (cublas_rc_ != 0)                                                              \
            die_at(__FILE__, __LINE__, __func__, "%s failed: cuBLAS status %d", #call,    \
                   cublas_rc_);                                                           \
    } while (0)

#define NCCL_CHECK(call)                                                                  \
    do {                                                                                  \
        int nccl_rc_ = (int)(call);                                                       \
        if (nccl_rc_ != 0)                                                                \
            die_at(__FILE__, __LINE__, __func__, "%s failed: NCCL error %d", #call,       \
                   nccl_rc_);                                                             \
    } while (0)

#endif
