/*
 * ops_cuda.c: the CUDA backend's kernel table (ops_impl.h): the launchers of the .cu files, as
 * they are. Compiled in CUDA builds only.
 */
#include "adamw_update.h"
#include "bias.h"
#include "crossentropy.h"
#include "elementwise.h"
#include "embedding.h"
#include "matmul.h"
#include "ops_impl.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"

const struct op_table ops_cuda_table = {
    .name = "cuda",
    .embedding_forward = embedding_forward_cuda,
    .embedding_backward = embedding_backward_cuda,
    .embedding_backward_workspace = embedding_backward_workspace_bytes,
    .rmsnorm_forward = rmsnorm_forward_cuda,
    .rmsnorm_backward = rmsnorm_backward_cuda,
    .rmsnorm_backward_workspace = rmsnorm_backward_workspace_bytes,
    .rope_forward = rope_forward_cuda,
    .rope_backward = rope_backward_cuda,
    .bias_forward = bias_forward_cuda,
    .bias_backward = bias_backward_cuda,
    .bias_backward_workspace = bias_backward_workspace_bytes,
    .matmul_forward = matmul_forward_cuda,
    .matmul_forward_f32 = matmul_forward_f32_cuda,
    .matmul_backward = matmul_backward_cuda,
    .swiglu_forward = swiglu_forward_cuda,
    .swiglu_backward = swiglu_backward_cuda,
    .crossentropy = crossentropy_forward_backward_cuda,
    .argmax_rows = argmax_rows_cuda,
    .add_inplace = add_inplace_cuda,
    .attention_forward = attention_forward_cuda,
    .attention_backward = attention_backward_cuda,
    .infllm_compress = infllm_compress_cuda,
    .infllm_select = infllm_select_cuda,
    .sparse_attention_forward = sparse_attention_forward_cuda,
    .sparse_attention_backward = sparse_attention_backward_cuda,
    .sparse_attention_backward_workspace = sparse_attention_backward_workspace_bytes,
    .adamw_update = adamw_update_cuda,
    .sumsq = sumsq_cuda,
    .sumsq_workspace = sumsq_workspace_bytes,
};
