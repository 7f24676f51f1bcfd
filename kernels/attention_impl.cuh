/*
 * attention_impl.cuh: what the CUDA attention files share (private to kernels/): the argument
 * struct of the stage-3 kernels, the tensor-core paths' entry points and their mma / ldmatrix /
 * cp.async helpers.
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

/* Device scratch of the tensor-core backward in sparse mode (carved from the sparse workspace).
 * Keys k' = j * Hkv + g (block-major, so the heaviest blocks, 0 and the early ones, come first). */
struct att_bwd_ws {
    float *dvec;               /* (Tq, Hq) D_i = dout_i . out_i, or NULL: recomputed from out */
    int32_t *item_off;         /* (Hkv * nblk + 1) first work item of key k'; [Hkv * nblk] = count */
    int32_t *slot_off;         /* (Hkv * nblk + 1) first partial slot of key k' (split keys only) */
    int2 *items;               /* (max_items) work item: (k', chunk) */
    float *part;               /* (max_slots, 2, 64, D) fp32 partial dK, dV of one chunk */
    int64_t max_items, max_slots;
    int64_t chunk;             /* query tokens per work item */
};

/* The tensor-core forward (attention_tc.cu): returns false, doing nothing, for shapes it does not
 * cover (then the simple kernels run): D 64 or 128, G dividing 64, 64-key blocks. */
bool attention_tc_forward(const struct att_args *a, const struct gpu_ctx *g);

/* The tensor-core backward (attention_tc_bwd.cu), same shapes as the forward; ADDS into dq, dk,
 * dv. Dense mode: w may be NULL. Sparse mode: needs the inverse index (a->pair_rows, pair_off)
 * and w; returns false, doing nothing, where it does not apply. Deterministic (no float atomics). */
bool attention_tc_backward(const struct att_args *a, const struct att_bwd_ws *w,
                           const struct gpu_ctx *g);

/* Query tokens per dK/dV work item of the sparse backward: the smallest multiple of 128 that is
 * >= 128 and >= 2 Tq nsel D / (128 nblk), so that the partial slots of the split keys fit in
 * Hkv * nblk * 64 KiB whatever the selection (att_bwd_slot_bytes). */
int64_t att_bwd_chunk_tokens(int64_t Tq, int nsel, int64_t nblk, int D);
size_t att_bwd_slot_bytes(int Hkv, int64_t nblk);

/* ---------------------------------------------------------------------------------------------- */
/* Tensor-core helpers. Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
 * A a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..);
 * B b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g); C c0, c1 = (g, 2t..2t+1), c2, c3 = (g+8, ..). */

static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                                uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two 8x8 bf16 matrices (rows from lanes 0-7 and 8-15) loaded transposed: the B fragment of
 * P V from V stored [key][d]. */
static __device__ __forceinline__ void ldmatrix_x2_trans(uint32_t &r0, uint32_t &r1,
                                                         const bf16 *p) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r0), "=r"(r1)
                 : "r"(addr));
}

/* Four 8x8 bf16 matrices, rows addressed by lanes 0-7, 8-15, 16-23, 24-31; r[i] from matrix i.
 * For an A fragment of X[m][k] (row-major) at (m0, k0): lane address X[m0 + lane % 16]
 * [k0 + lane / 16 * 8]. For the B fragments of two n-tiles of X[n][k] at (n0, k0) (r0, r1: n0;
 * r2, r3: n0 + 8): X[n0 + lane % 8 + lane / 16 * 8][k0 + lane / 8 % 2 * 8]. */
static __device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const bf16 *p) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* The same, transposed: the B fragments of two n-tiles of X[k][n] (row-major) at (k0, n0)
 * (r0, r1: n0; r2, r3: n0 + 8): lane address X[k0 + lane % 16][n0 + lane / 16 * 8]. */
static __device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const bf16 *p) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* The same two, from a shared-space address (__cvta_generic_to_shared), so that a kernel can
 * keep one 32-bit base a lane and add compile-time offsets. */
static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

static __device__ __forceinline__ uint32_t ld32(const bf16 *p) { return *(const uint32_t *)p; }

/* Asynchronous global -> shared copies (16 or 4 bytes); with !valid nothing is read and the
 * destination is zero-filled (src must still be a mapped address). Completed by cp_async_wait
 * in the issuing thread; a barrier then makes them visible to the block. */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

static __device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}

static __device__ __forceinline__ void cp_async_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

static __device__ __forceinline__ void cp_async_wait_all(void) {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

#endif
