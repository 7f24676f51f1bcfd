/*
 * attention_impl.cuh: what the CUDA attention files share (private to kernels/): the argument
 * struct of the stage-3 kernels and the tensor-core fast path's entry point.
 */
#ifndef INFLLM_ATTENTION_IMPL_CUH
#define INFLLM_ATTENTION_IMPL_CUH

#include "common.cuh"

#define ATT_MAX_D 256
#define ATT_DENSE_BLOCK 64
#define ATT_WARPS 8            /* warps per block of the row kernels */
#define DKDV_WARPS 8           /* warps (pairs per batch) of the dK/dV kernel */

struct att_args {
    const bf16 *q, *k, *v, *out, *dout;
    bf16 *o, *dq, *dk, *dv;
    float *lse;
    const float *lse_in;
    const int32_t *sel;        /* NULL: dense */
    int nsel, bs;
    int64_t Tq, q_pos0, Tk, q_stride, kv_stride;
    int Hq, Hkv, D;
    float scale;
    const int32_t *pair_rows;  /* dK/dV of sparse mode: rows attending to each (g, block) ... */
    const int32_t *pair_off;   /* ... in [pair_off[g * nblk + j], pair_off[g * nblk + j + 1]) */
    int64_t nblk;
};

/* The tensor-core forward (attention_tc.cu): returns false, doing nothing, for shapes it does not
 * cover (then the simple kernels run): D 64 or 128, G dividing 64, 64-key blocks. */
bool attention_tc_forward(const struct att_args *a, const struct gpu_ctx *g);

#endif
