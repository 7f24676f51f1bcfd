/*
 * matmul_cpu.c: CPU reference of matmul.h. One cache-blocked, register-tiled GEMM (the Goto /
 * BLIS loop structure, packed panels, GCC vector extensions for the register tile) serves the
 * three products of the linear layer.
 *
 * Dimensions: N rows (tokens), IC input channels, OC output channels. Inside the GEMM,
 * C (M, Nc) = or += alpha * A (M, K) @ B (K, Nc), where A and B are read through (row, column)
 * strides so that no transpose is ever materialised:
 *
 *   forward  out  (N, OC)  = alpha * inp (N, IC)    @ w^T (IC, OC)    K = IC
 *   dinp     dinp (N, IC) += alpha * dout (N, OC)   @ w (OC, IC)      K = OC
 *   dw       dw (OC, IC)  += alpha * dout^T (OC, N) @ inp (N, IC)     K = N
 *
 * Blocking: the K dimension is cut into blocks of KC; for each block a KC x NC slab of B is packed
 * into NR-column panels (kept in L2) and MC rows of A into MR-row panels; the inner kernel keeps an
 * MR x NR tile of C in registers (MR * NR / 16 AVX-512 accumulators) and walks one A panel (in L1)
 * against the B panels.
 *
 * Determinism: every element of C is computed by one thread as
 *   for each K block in order: acc = sum over the block, k ascending, in one fp32 lane (FMA);
 *                              C = alpha * acc (first block, overwrite) or C += alpha * acc,
 * and tiles cut by the matrix edge go through the same kernel on a copy. Threads only split C
 * (along M or Nc), never K, so the result does not depend on the thread count or on which thread
 * owns which tile.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "check.h"
#include "matmul.h"

typedef float v16 __attribute__((vector_size(64)));                /* packed buffers: aligned */
typedef float v16u __attribute__((vector_size(64), aligned(4)));   /* rows of C: any alignment */

enum {
    MR = 8,    /* rows of the register tile (A values broadcast) */
    NR = 32,   /* columns of the register tile (two 16-float vectors of B) */
    KC = 256,  /* depth of one K block: fixes the summation order of every element */
    MC = 128,  /* rows of A packed at a time (MC x KC floats: 128 KiB, in L2) */
    NC = 512,  /* columns of B packed at a time (KC x NC floats: 512 KiB, in L2) */
};

/* Below this many multiply-adds the GEMM runs on one thread (thread start-up would dominate). */
#define GEMM_PARALLEL_MIN_FMA (1 << 20)

/* A read-only matrix seen through strides: element (r, c) is p[r * rs + c * cs]. */
struct strided {
    const float *p;
    int64_t rs, cs;
};

struct gemm {
    float *c;           /* (M, Nc), row stride ldc */
    int64_t ldc;
    struct strided a;   /* (M, K) */
    struct strided b;   /* (K, Nc) */
    int64_t M, Nc, K;
    float alpha;
    bool overwrite;     /* C = alpha * A @ B instead of C += alpha * A @ B */
};

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ap <- rows [ic, ic + mc) x columns [pc, pc + kc) of A as MR-row panels, panel p at
 * ap + p * MR * kc holding (kc, MR) row-major; rows past mc are zero. */
static void pack_a(float *restrict ap, const struct strided *a, int64_t ic, int64_t mc,
                   int64_t pc, int64_t kc) {
    for (int64_t ir = 0; ir < mc; ir += MR) {
        int64_t mr = min64(MR, mc - ir);
        float *dst = ap + ir * kc;
        const float *src = a->p + (ic + ir) * a->rs + pc * a->cs;
        if (a->rs == 1 && mr == MR) { /* columns contiguous in m: fixed-size copies */
            for (int64_t k = 0; k < kc; k++) memcpy(dst + k * MR, src + k * a->cs, MR * 4);
        } else if (a->cs == 1) { /* rows contiguous in k: a transpose, read along k */
            for (int64_t r = 0; r < mr; r++)
                for (int64_t k = 0; k < kc; k++) dst[k * MR + r] = src[r * a->rs + k];
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int64_t r = 0; r < mr; r++) dst[k * MR + r] = src[k * a->cs + r * a->rs];
        }
        for (int64_t r = mr; r < MR; r++)
            for (int64_t k = 0; k < kc; k++) dst[k * MR + r] = 0.0f;
    }
}

/* bp <- rows [pc, pc + kc) x columns [jc, jc + nc) of B as NR-column panels, panel p at
 * bp + p * NR * kc holding (kc, NR) row-major; columns past nc are zero. */
static void pack_b(float *restrict bp, const struct strided *b, int64_t pc, int64_t kc,
                   int64_t jc, int64_t nc) {
    for (int64_t jr = 0; jr < nc; jr += NR) {
        int64_t nr = min64(NR, nc - jr);
        float *dst = bp + jr * kc;
        const float *src = b->p + pc * b->rs + (jc + jr) * b->cs;
        if (b->cs == 1 && nr == NR) { /* rows contiguous in the column index: fixed copies */
            for (int64_t k = 0; k < kc; k++) memcpy(dst + k * NR, src + k * b->rs, NR * 4);
        } else if (b->cs == 1) {
            for (int64_t k = 0; k < kc; k++) {
                for (int64_t j = 0; j < nr; j++) dst[k * NR + j] = src[k * b->rs + j];
                for (int64_t j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
            }
        } else {
            for (int64_t j = 0; j < nr; j++)
                for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = src[j * b->cs + k * b->rs];
            for (int64_t j = nr; j < NR; j++)
                for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
        }
    }
}

/* c (MR, NR; row stride ldc) = alpha * acc (overwrite) or += alpha * acc, acc = ap^T @ bp over
 * kc steps: ap (kc, MR), bp (kc, NR), both packed and 64-byte aligned. */
__attribute__((noinline)) static void kernel_tile(int64_t kc, const float *restrict ap,
                                                  const float *restrict bp, float *restrict c,
                                                  int64_t ldc, float alpha, bool overwrite) {
    v16 acc[MR][2];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        acc[r][0] = acc[r][1] = (v16){0};
        /* The tile of C is read at the end: start fetching it now (it is usually in L3). */
        __builtin_prefetch(c + r * ldc, 1);
        __builtin_prefetch(c + r * ldc + 16, 1);
    }
    for (int64_t k = 0; k < kc; k++) {
        v16 b0 = *(const v16 *)(bp + k * NR), b1 = *(const v16 *)(bp + k * NR + 16);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            float a = ap[k * MR + r];
            acc[r][0] += a * b0;
            acc[r][1] += a * b1;
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        v16u *row = (v16u *)(c + r * ldc);
        if (overwrite) {
            row[0] = alpha * acc[r][0];
            row[1] = alpha * acc[r][1];
        } else {
            row[0] += alpha * acc[r][0];
            row[1] += alpha * acc[r][1];
        }
    }
}

/* A tile cut by the edge of C (mr < MR or nr < NR): the same kernel on a full-size copy, so the
 * arithmetic of every element is the same as in a full tile. */
static void kernel_edge(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                        int64_t mr, int64_t nr, float alpha, bool overwrite) {
    float tmp[MR * NR] __attribute__((aligned(64))) = {0};
    if (!overwrite)
        for (int64_t r = 0; r < mr; r++) memcpy(tmp + r * NR, c + r * ldc, (size_t)nr * 4);
    kernel_tile(kc, ap, bp, tmp, NR, alpha, overwrite);
    for (int64_t r = 0; r < mr; r++) memcpy(c + r * ldc, tmp + r * NR, (size_t)nr * 4);
}

/* C[ic .. ic+mc, jc .. jc+nc) (op)= alpha * packed A block @ packed B block of depth kc. */
static void gemm_block(const struct gemm *g, const float *ap, const float *bp, int64_t ic,
                       int64_t mc, int64_t jc, int64_t nc, int64_t kc, bool overwrite) {
    for (int64_t ir = 0; ir < mc; ir += MR) {
        int64_t mr = min64(MR, mc - ir);
        for (int64_t jr = 0; jr < nc; jr += NR) {
            int64_t nr = min64(NR, nc - jr);
            float *c = g->c + (ic + ir) * g->ldc + jc + jr;
            if (mr == MR && nr == NR)
                kernel_tile(kc, ap + ir * kc, bp + jr * kc, c, g->ldc, g->alpha, overwrite);
            else
                kernel_edge(kc, ap + ir * kc, bp + jr * kc, c, g->ldc, mr, nr, g->alpha,
                            overwrite);
        }
    }
}

/* The serial GEMM on the sub-matrix C[m0 .. m1, n0 .. n1) with this thread's pack buffers
 * ap (MC * KC) and bp (KC * NC). K blocks run in order for every element. */
static void gemm_range(const struct gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                       float *ap, float *bp) {
    for (int64_t jc = n0; jc < n1; jc += NC) {
        int64_t nc = min64(NC, n1 - jc);
        for (int64_t pc = 0; pc < g->K; pc += KC) {
            int64_t kc = min64(KC, g->K - pc);
            bool overwrite = g->overwrite && pc == 0;
            pack_b(bp, &g->b, pc, kc, jc, nc);
            for (int64_t ic = m0; ic < m1; ic += MC) {
                int64_t mc = min64(MC, m1 - ic);
                pack_a(ap, &g->a, ic, mc, pc, kc);
                gemm_block(g, ap, bp, ic, mc, jc, nc, kc, overwrite);
            }
        }
    }
}

/* 64-byte aligned view into a heap block (the block itself is what gets freed). */
static float *align64(void *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* Runs the GEMM: threads split C along its dimension with more register tiles, in whole tiles. */
static void gemm_run(const struct gemm *g) {
    if (g->M <= 0 || g->Nc <= 0) return;
    if (g->K <= 0) {
        if (g->overwrite)
            for (int64_t m = 0; m < g->M; m++) memset(g->c + m * g->ldc, 0, (size_t)g->Nc * 4);
        return;
    }
    int64_t mtiles = (g->M + MR - 1) / MR, ntiles = (g->Nc + NR - 1) / NR;
    bool split_m = mtiles >= ntiles;
    int64_t tiles = split_m ? mtiles : ntiles;
    bool parallel = (double)g->M * (double)g->Nc * (double)g->K >= GEMM_PARALLEL_MIN_FMA;
#pragma omp parallel if (parallel)
    {
        int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t t0 = tiles * t / nt, t1 = tiles * (t + 1) / nt;
        if (t0 < t1) {
            void *abuf = xmalloc((size_t)MC * KC * 4 + 64);
            void *bbuf = xmalloc((size_t)KC * NC * 4 + 64);
            if (split_m)
                gemm_range(g, t0 * MR, min64(t1 * MR, g->M), 0, g->Nc, align64(abuf),
                           align64(bbuf));
            else
                gemm_range(g, 0, g->M, t0 * NR, min64(t1 * NR, g->Nc), align64(abuf),
                           align64(bbuf));
            free(abuf);
            free(bbuf);
        }
    }
}

void matmul_forward_cpu(float *out, const float *inp, const float *w, int64_t N, int IC, int OC,
                        float alpha, bool accumulate) {
    struct gemm g = {.c = out, .ldc = OC,
                     .a = {inp, IC, 1},  /* A (N, IC) = inp */
                     .b = {w, 1, IC},    /* B (IC, OC) = w^T */
                     .M = N, .Nc = OC, .K = IC, .alpha = alpha, .overwrite = !accumulate};
    gemm_run(&g);
}

void matmul_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, int64_t N, int IC, int OC, float alpha) {
    if (dinp) {
        struct gemm g = {.c = dinp, .ldc = IC,
                         .a = {dout, OC, 1},  /* A (N, OC) = dout */
                         .b = {w, IC, 1},     /* B (OC, IC) = w */
                         .M = N, .Nc = IC, .K = OC, .alpha = alpha, .overwrite = false};
        gemm_run(&g);
    }
    if (dw) {
        struct gemm g = {.c = dw, .ldc = IC,
                         .a = {dout, 1, OC},  /* A (OC, N) = dout^T */
                         .b = {inp, IC, 1},   /* B (N, IC) = inp */
                         .M = OC, .Nc = IC, .K = N, .alpha = alpha, .overwrite = false};
        gemm_run(&g);
    }
}
