/*
 * hopper.cuh: the Hopper (sm_90a) primitives of the wgmma attention kernels (private to kernels/),
 * hand-written once here as inline PTX: mbarriers, bulk tensor copies (TMA) and their tensor maps,
 * warpgroup MMA (wgmma) with its shared-memory descriptors, fences, named barriers and setmaxnreg.
 * Included by .cu files built for sm_90a only (`-gencode=arch=compute_90a,code=sm_90a`); the host
 * helpers at the end build for any target.
 *
 * Shared-memory tiles: every bf16 tile is stored as column blocks of 64 elements (128-byte rows)
 * under the 128-byte swizzle, which is what TMA writes with CU_TENSOR_MAP_SWIZZLE_128B and what a
 * wgmma descriptor of layout type 1 reads: in each 1024-byte atom of 8 rows, the 16-byte chunk c of
 * row r sits at chunk c ^ (r % 8). A block of R rows is R x 128 bytes; blocks of one tile follow
 * each other; tiles start 1024-byte aligned.
 *
 * wgmma operand layouts (m64nNk16, bf16 in, fp32 accumulators; a warpgroup = 4 warps, warp w holds
 * rows 16 w .. 16 w + 15; g = lane / 4, t = lane % 4):
 *   accumulator d[4 j + e]: row 16 w + g + 8 (e / 2), column 8 j + 2 t + e % 2 (j < N / 8);
 *   register A (16 k): a0 (row g, k 2t..2t+1), a1 (row g+8, k 2t..), a2 (row g, k 2t+8..),
 *   a3 (row g+8, k 2t+8..), so acc_to_a (mma.cuh) of accumulator columns 16 s .. 16 s + 15 is the
 *   A fragment of k-step s;
 *   K-major operand in shared memory (rows x k, k contiguous): descriptor at the row block, 32 bytes
 *   further per k-step of 16 inside a 64-column block, SBO = 1024 (8-row atoms), LBO unused;
 *   MN-major B (k x n, n contiguous, wgmma's transposed B): descriptor at k-row 16 s of the first
 *   64-column block, SBO = 1024 (the next 8 k-rows), LBO = the distance between 64-column blocks.
 */
#ifndef INFLLM_HOPPER_CUH
#define INFLLM_HOPPER_CUH

#include <cuda.h>          /* CUtensorMap and its enums; the encoder is fetched from the driver */
#include <cudaTypedefs.h>  /* PFN_cuTensorMapEncodeTiled */

#include "mma.cuh" /* pack_bf16 */

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* ---------------------------------------------------------------------------------------------- */
/* mbarrier (shared-memory transaction barriers, addressed by their shared-space address)          */

static __device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

/* After the initialising thread's mbar_init calls, before the barrier that publishes them: makes
 * the initialisation visible to the copy engine. */
static __device__ __forceinline__ void mbar_init_fence(void) {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

/* One arrival that also expects `bytes` of bulk copies to complete on the barrier. */
static __device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}

static __device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

/* Waits until the phase of parity `parity` has completed (a fresh barrier counts its phase before
 * the first as completed with parity 1, so a producer starts by waiting for parity 1). */
static __device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

/* ---------------------------------------------------------------------------------------------- */
/* Bulk tensor copies (TMA)                                                                        */

/* Box (c0, c1) of a 2-D tensor map (c0: the contiguous dimension, elements) into shared memory at
 * dst; completes on mbarrier bar. Out-of-bounds elements are written as zeros. */
static __device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map, int c0,
                                                   int c1, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
        "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
        "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}

/* A tile of `rows` rows from row r0 and D columns from col0 (D / 64 boxes), into dst as D / 64
 * column blocks of rows x 128 bytes, completing on bar. */
template <int D>
static __device__ __forceinline__ void tma_load_tile(uint32_t dst, const CUtensorMap *map, int col0,
                                                     int r0, int rows, uint32_t bar) {
#pragma unroll
    for (int c = 0; c < D / 64; c++) tma_load_2d(dst + c * rows * 128, map, col0 + c * 64, r0, bar);
}

static __device__ __forceinline__ void tma_prefetch_map(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)map) : "memory");
}

/* ---------------------------------------------------------------------------------------------- */
/* Warpgroup-level: register reallocation, named barriers                                          */

/* setmaxnreg: the kernel needs a register cap at entry (__launch_bounds__(threads, 1)); each
 * warpgroup's role is one branch. */
template <int N>
static __device__ __forceinline__ void regs_release(void) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

template <int N>
static __device__ __forceinline__ void regs_claim(void) {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* Barrier `id` (1..15; 0 is __syncthreads) among `nthreads` threads (a multiple of 32): sync
 * waits for all of them, arrive counts this warp in without waiting. */
static __device__ __forceinline__ void named_bar_sync(int id, int nthreads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}

static __device__ __forceinline__ void named_bar_arrive(int id, int nthreads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}

/* ---------------------------------------------------------------------------------------------- */
/* wgmma                                                                                           */

/* Shared-memory matrix descriptor, 128-byte swizzle: start address, LBO and SBO in bytes. */
static __device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (uint64_t)((lbo >> 4) & 0x3FFF) << 16 |
           (uint64_t)((sbo >> 4) & 0x3FFF) << 32 | 1ull << 62;
}

/* Orders this thread's register writes before the next wgmma that reads or accumulates them. */
static __device__ __forceinline__ void wgmma_fence(void) {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

static __device__ __forceinline__ void wgmma_commit(void) {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

/* Waits until at most N committed groups of this warpgroup are in flight. */
template <int N>
static __device__ __forceinline__ void wgmma_wait(void) {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* Pins accumulator registers at this point of the program: the compiler may not move their uses
 * across it (placed after wgmma_wait, so nothing reads them while a wgmma still writes). */
template <int N>
static __device__ __forceinline__ void acc_fence(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}

/* D (64 x 64, fp32) (+)= A (64 x 16) B (16 x 64), both K-major in shared memory. */
static __device__ __forceinline__ void wgmma_ss_n64(float (&d)[32], uint64_t desc_a,
                                                    uint64_t desc_b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "
        "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31}, "
        "%32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(acc));
}

/* D (64 x 64, fp32) (+)= A (64 x 16, bf16 registers) B (16 x 64, MN-major in shared memory). */
static __device__ __forceinline__ void wgmma_rs_n64(float (&d)[32], const uint32_t (&a)[4],
                                                    uint64_t desc_b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "
        "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(acc));
}

/* D (64 x 128, fp32) (+)= A (64 x 16) B (16 x 128), both K-major in shared memory. */
static __device__ __forceinline__ void wgmma_ss_n128(float (&d)[64], uint64_t desc_a,
                                                    uint64_t desc_b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "
        "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "
        "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, "
        "%60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
          "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
          "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
          "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(acc));
}

/* D (64 x 128, fp32) (+)= A (64 x 16, bf16 registers) B (16 x 128, MN-major in shared memory). */
static __device__ __forceinline__ void wgmma_rs_n128(float (&d)[64], const uint32_t (&a)[4],
                                                    uint64_t desc_b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "
        "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "
        "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, "
        "%60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
          "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
          "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
          "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(acc));
}

/* D (64 x N) (+)= A (registers) B (MN-major, shared) for the N = 64 or 128 of a head dim. */
template <int N>
static __device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4],
                                                uint64_t desc_b, int acc) {
    if constexpr (N == 128) wgmma_rs_n128(d, a, desc_b, acc);
    else wgmma_rs_n64(d, a, desc_b, acc);
}

/* The register A fragments of k-steps 0 .. NK-1 from an accumulator of 8 NK columns: k-step kk is
 * accumulator columns 16 kk .. 16 kk + 15 (the layouts at the top line up, as for mma.sync). */
template <int NK>
static __device__ __forceinline__ void wg_acc_to_a(uint32_t (&f)[NK][4], const float (&d)[NK * 8]) {
#pragma unroll
    for (int kk = 0; kk < NK; kk++) {
        f[kk][0] = pack_bf16(d[8 * kk + 0], d[8 * kk + 1]);
        f[kk][1] = pack_bf16(d[8 * kk + 2], d[8 * kk + 3]);
        f[kk][2] = pack_bf16(d[8 * kk + 4], d[8 * kk + 5]);
        f[kk][3] = pack_bf16(d[8 * kk + 6], d[8 * kk + 7]);
    }
}

/* One arrival per warp on a consumer-release barrier, once the whole warp is past its reads. */
static __device__ __forceinline__ void mbar_arrive_warp(uint32_t bar) {
    __syncwarp();
    if ((threadIdx.x & 31) == 0) mbar_arrive(bar);
}

/* ---------------------------------------------------------------------------------------------- */
/* Host: tensor maps                                                                               */

/* A 2-D bf16 tensor map (rows x cols elements, row_stride elements between rows, 16-byte multiple)
 * read in boxes of box_rows x 64 columns (128 bytes, the swizzle span) under the 128-byte swizzle;
 * out-of-bounds elements read as zeros. The encoder comes from the driver through the runtime, so
 * nothing links against libcuda. */
static inline void tmap_bf16_2d(CUtensorMap *map, const void *base, int64_t cols, int64_t rows,
                                int64_t row_stride, int box_rows) {
    static PFN_cuTensorMapEncodeTiled_v12000 encode = NULL;
    if (!encode) {
        cudaDriverEntryPointQueryResult q;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&encode,
                                                    12000, cudaEnableDefault, &q));
        CHECKF(q == cudaDriverEntryPointSuccess && encode,
               "cuTensorMapEncodeTiled not found in the CUDA driver");
    }
    cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows};
    cuuint64_t strides[1] = {(cuuint64_t)row_stride * 2};
    cuuint32_t box[2] = {64, (cuuint32_t)box_rows}, estr[2] = {1, 1};
    CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)base, dims, strides, box,
                        estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    CHECKF(r == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed (CUresult %d): %lld x %lld, stride %lld",
           (int)r, (long long)rows, (long long)cols, (long long)row_stride);
}

#endif
