/*
 * infllmv2_impl.cuh: what the CUDA InfLLM-V2 files share (private to kernels/): the tensor-core
 * selection's entry point, tried by infllm_select_cuda before its CUDA-core kernel.
 */
#ifndef INFLLM_INFLLMV2_IMPL_CUH
#define INFLLM_INFLLMV2_IMPL_CUH

#include "common.cuh"
#include "infllmv2.h"

/* Stages 1-2 on tensor cores (infllmv2_tc.cu), the same contract as infllm_select_cuda. Returns
 * false, doing nothing, for what it does not cover (then the CUDA-core kernel runs): D 64 or 128,
 * G = Hq / Hkv in {1, 2, 4, 8, 16}, block_size / kernel_stride dividing 64,
 * (kernel_size - 1) / kernel_stride <= 8, 4-byte query rows, 16-byte compressed-key rows, and the
 * block scores of a thread block's tokens fitting in shared memory (T up to ~370k at G 16). */
bool infllm_select_tc(int32_t *sel, const bf16 *q, const bf16 *k1, int64_t L1, const bf16 *k2,
                      int64_t L2, const struct attn_shape *s, const struct infllm_params *p,
                      const struct gpu_ctx *g);

#endif
