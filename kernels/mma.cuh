/*
 * mma.cuh: the tensor-core and asynchronous-copy primitives the attention and selection kernels
 * share (private to kernels/): bf16 mma.sync m16n8k16 with fp32 accumulation, ldmatrix loads of
 * its fragments, cp.async global -> shared copies, and exp2.
 */
#ifndef INFLLM_MMA_CUH
#define INFLLM_MMA_CUH

#include "common.cuh"

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

/* Four 8x8 bf16 matrices from a shared-space address (__cvta_generic_to_shared), rows addressed
 * by lanes 0-7, 8-15, 16-23, 24-31; r[i] from matrix i. A kernel can keep one 32-bit base a lane
 * and add compile-time offsets. For an A fragment of X[m][k] (row-major) at (m0, k0): lane address
 * X[m0 + lane % 16][k0 + lane / 16 * 8]. For the B fragments of two n-tiles of X[n][k] at (n0, k0)
 * (r0, r1: n0; r2, r3: n0 + 8): X[n0 + lane % 8 + lane / 16 * 8][k0 + lane / 8 % 2 * 8]. */
static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* The same, transposed: the B fragments of two n-tiles of X[k][n] (row-major) at (k0, n0)
 * (r0, r1: n0; r2, r3: n0 + 8): lane address X[k0 + lane % 16][n0 + lane / 16 * 8]. */
static __device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* The two from a generic pointer into shared memory. */
static __device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const bf16 *p) {
    ldsm_x4(r, (uint32_t)__cvta_generic_to_shared(p));
}

static __device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const bf16 *p) {
    ldsm_x4_trans(r, (uint32_t)__cvta_generic_to_shared(p));
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* The A fragment (16 x 16, bf16) of two neighbouring 16 x 8 fp32 accumulator tiles c0 (k 0-7)
 * and c1 (k 8-15): with the layouts above, an accumulator feeds the next mma with no shuffle. */
static __device__ __forceinline__ void acc_to_a(uint32_t a[4], const float c0[4],
                                                const float c1[4]) {
    a[0] = pack_bf16(c0[0], c0[1]);
    a[1] = pack_bf16(c0[2], c0[3]);
    a[2] = pack_bf16(c1[0], c1[1]);
    a[3] = pack_bf16(c1[2], c1[3]);
}

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

/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N>
static __device__ __forceinline__ void cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#define LOG2E 1.4426950408889634f /* scores times scale LOG2E are in the log2 units of fast_exp2 */

/* 2^x (ex2.approx: 2 ulp, -inf -> +0). */
static __device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

#endif
