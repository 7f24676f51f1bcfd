/*
 * infllmv2_impl.cuh: what the CUDA InfLLM-V2 files share (private to kernels/): the tensor-core
 * selection's entry point, which infllm_select_cuda runs wherever infllm_select_tc_supported.
 */
#ifndef INFLLM_INFLLMV2_IMPL_CUH
#define INFLLM_INFLLMV2_IMPL_CUH

#include "common.cuh"
#include "infllmv2.h"

/* Stages 1-2 on tensor cores (infllmv2_tc.cu), the same contract as infllm_select_cuda, for the
 * shapes infllm_select_tc_supported (infllmv2.h) accepts; q 4-byte and k1, k2 16-byte aligned. */
void infllm_select_tc(int32_t *sel, const bf16 *q, const bf16 *k1, int64_t L1, const bf16 *k2,
                      int64_t L2, const struct attn_shape *s, const struct infllm_params *p,
                      const struct gpu_ctx *g);

#endif
