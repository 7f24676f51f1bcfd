/*
 * matmul_cpu.c: CPU reference of matmul.h, blocked for the caches and register-tiled so the
 * compiler emits wide FMAs (GCC vector extensions: 16 floats, one AVX-512 register, or two AVX2).
 *
 *   forward  out[n, o]  = alpha * sum_i inp[n, i] w[o, i]      dot form: 4 x 4 tiles of (n, o),
 *                                                             16-wide partial sums over i
 *   dinp     dinp[n, i] += alpha * sum_o dout[n, o] w[o, i]    axpy form: 4 rows x 32 columns
 *   dw       dw[o, i]   += alpha * sum_n dout[n, o] inp[n, i]  axpy form over n blocks
 * Threads split output rows (n for forward and dinp, o for dw); every element is reduced by one
 * thread in one fixed order, so results do not depend on the thread count.
 */
#include <string.h>

#include "matmul.h"

typedef float v16 __attribute__((vector_size(64), aligned(4)));

#define NB 64  /* rows of inp per block of the forward (stays in L2) */
#define RB 128 /* rows of the reduction per block of dw */

static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

static inline float hsum(v16 v) {
    float s = 0;
    for (int k = 0; k < 16; k++) s += v[k];
    return s;
}

/* out[n0..n0+nr, o0..o0+or] for nr, or <= 4: dot products over IC. */
static void dot_tile(float *out, const float *inp, const float *w, int64_t n0, int nr, int o0,
                     int orr, int IC, int OC, float alpha, bool accumulate) {
    v16 acc[4][4];
    float tail[4][4];
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) acc[a][b] = (v16){0}, tail[a][b] = 0;
    int i = 0;
    for (; i + 16 <= IC; i += 16) {
        v16 x[4], y[4];
        for (int a = 0; a < nr; a++) x[a] = load16(inp + (n0 + a) * IC + i);
        for (int b = 0; b < orr; b++) y[b] = load16(w + (int64_t)(o0 + b) * IC + i);
        for (int a = 0; a < nr; a++)
            for (int b = 0; b < orr; b++) acc[a][b] += x[a] * y[b];
    }
    for (; i < IC; i++)
        for (int a = 0; a < nr; a++)
            for (int b = 0; b < orr; b++)
                tail[a][b] += inp[(n0 + a) * IC + i] * w[(int64_t)(o0 + b) * IC + i];
    for (int a = 0; a < nr; a++)
        for (int b = 0; b < orr; b++) {
            float v = alpha * (hsum(acc[a][b]) + tail[a][b]);
            float *o = out + (n0 + a) * OC + o0 + b;
            *o = accumulate ? *o + v : v;
        }
}

void matmul_forward_cpu(float *out, const float *inp, const float *w, int64_t N, int IC, int OC,
                        float alpha, bool accumulate) {
    int64_t nblocks = (N + NB - 1) / NB;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t n_end = (blk + 1) * NB < N ? (blk + 1) * NB : N;
        for (int o0 = 0; o0 < OC; o0 += 4) {
            int orr = OC - o0 < 4 ? OC - o0 : 4;
            for (int64_t n0 = blk * NB; n0 < n_end; n0 += 4) {
                int nr = n_end - n0 < 4 ? (int)(n_end - n0) : 4;
                dot_tile(out, inp, w, n0, nr, o0, orr, IC, OC, alpha, accumulate);
            }
        }
    }
}

/* dst[r, i0..i0+32) += alpha * sum_k coef[r, k] src[k, i0..i0+32) for up to 4 rows r, k over
 * [k0, k1): the shared axpy tile of dinp (coef = dout, src = w) and dw (coef = dout^T, src = inp).
 * coef(r, k) = coef[r * cs_r + k * cs_k]. Columns past `width` are handled by the caller. */
static void axpy_tile(float *dst, int64_t ld_dst, int rows, const float *coef, int64_t cs_r,
                      int64_t cs_k, const float *src, int64_t ld_src, int64_t k0, int64_t k1,
                      int i0, float alpha) {
    v16 acc[4][2];
    for (int r = 0; r < rows; r++) {
        acc[r][0] = load16(dst + r * ld_dst + i0);
        acc[r][1] = load16(dst + r * ld_dst + i0 + 16);
    }
    for (int64_t k = k0; k < k1; k++) {
        v16 s0 = load16(src + k * ld_src + i0), s1 = load16(src + k * ld_src + i0 + 16);
        for (int r = 0; r < rows; r++) {
            float c = alpha * coef[r * cs_r + k * cs_k];
            acc[r][0] += c * s0;
            acc[r][1] += c * s1;
        }
    }
    for (int r = 0; r < rows; r++) {
        store16(dst + r * ld_dst + i0, acc[r][0]);
        store16(dst + r * ld_dst + i0 + 16, acc[r][1]);
    }
}

/* The columns [i0, width) that do not fill a 32-wide tile, scalar, same order. */
static void axpy_tail(float *dst, int64_t ld_dst, int rows, const float *coef, int64_t cs_r,
                      int64_t cs_k, const float *src, int64_t ld_src, int64_t k0, int64_t k1,
                      int i0, int width, float alpha) {
    for (int r = 0; r < rows; r++)
        for (int i = i0; i < width; i++) {
            float acc = dst[r * ld_dst + i];
            for (int64_t k = k0; k < k1; k++) acc += alpha * coef[r * cs_r + k * cs_k] * src[k * ld_src + i];
            dst[r * ld_dst + i] = acc;
        }
}

/* dst (rows x width, ld_dst) += alpha * coef (rows x K) @ src (K x width, ld_src), rows split in
 * groups of 4, K in blocks of RB (in order). */
static void axpy_rows(float *dst, int64_t ld_dst, int rows, const float *coef, int64_t cs_r,
                      int64_t cs_k, const float *src, int64_t ld_src, int64_t K, int width,
                      float alpha) {
    for (int64_t k0 = 0; k0 < K; k0 += RB) {
        int64_t k1 = k0 + RB < K ? k0 + RB : K;
        for (int r0 = 0; r0 < rows; r0 += 4) {
            int rr = rows - r0 < 4 ? rows - r0 : 4;
            int i0 = 0;
            for (; i0 + 32 <= width; i0 += 32)
                axpy_tile(dst + r0 * ld_dst, ld_dst, rr, coef + r0 * cs_r, cs_r, cs_k, src, ld_src,
                          k0, k1, i0, alpha);
            if (i0 < width)
                axpy_tail(dst + r0 * ld_dst, ld_dst, rr, coef + r0 * cs_r, cs_r, cs_k, src, ld_src,
                          k0, k1, i0, width, alpha);
        }
    }
}

void matmul_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, int64_t N, int IC, int OC, float alpha) {
    if (dinp) {
        /* dinp rows [n0, n0 + 16): coef = dout (row stride OC, k stride 1), src = w (OC x IC). */
        int64_t nblocks = (N + 15) / 16;
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < nblocks; b++) {
            int64_t n0 = b * 16;
            int rows = N - n0 < 16 ? (int)(N - n0) : 16;
            axpy_rows(dinp + n0 * IC, IC, rows, dout + n0 * OC, OC, 1, w, IC, OC, IC, alpha);
        }
    }
    if (dw) {
        /* dw rows [o0, o0 + 8): coef = dout^T (row stride 1, k stride OC), src = inp (N x IC). */
        int oblocks = (OC + 7) / 8;
#pragma omp parallel for schedule(static)
        for (int b = 0; b < oblocks; b++) {
            int o0 = b * 8;
            int rows = OC - o0 < 8 ? OC - o0 : 8;
            axpy_rows(dw + (int64_t)o0 * IC, IC, rows, dout + o0, 1, OC, inp, IC, N, IC, alpha);
        }
    }
}
