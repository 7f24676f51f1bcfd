/*
 * attention_cpu.c: CPU reference of attention.h (dense causal GQA attention) and the shared
 * machinery of the block-sparse stage 3 (infllmv2_cpu.c restricts it to selected blocks).
 *
 * Both are the same computation over a per-row list of key ranges: dense rows see [0, pos]; sparse
 * rows see the union of their selected blocks cut at pos. Forward: two passes per (row, head) over
 * the row's keys (max, then exponentials and the weighted sum), fp32 with the exponential sum in
 * double. Backward, deterministic for any thread count: dQ by threads over (row, head); dK and dV
 * by threads over (key range, KV head), each walking in row order the rows that attend to it and
 * recomputing P and dS.
 */
#include "attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_cpu_impl.h"
#include "check.h"

static inline float dot(const float *a, const float *b, int D) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

/* The key ranges of row i (global position pos): dense [0, pos]; sparse the selected blocks. */
static int row_ranges(const struct attn_rows *r, int64_t i, int g, int64_t pos, int64_t *lo,
                      int64_t *hi) {
    if (!r->sel) {
        lo[0] = 0;
        hi[0] = pos + 1;
        return 1;
    }
    const int32_t *s = r->sel + (i * r->s->Hkv + g) * r->nsel;
    int n = 0;
    for (int k = 0; k < r->nsel && s[k] >= 0; k++) {
        int64_t a = (int64_t)s[k] * r->block_size, b = a + r->block_size;
        if (b > pos + 1) b = pos + 1;
        if (a >= b) continue;
        lo[n] = a;
        hi[n] = b;
        n++;
    }
    return n;
}

void attn_rows_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const struct attn_rows *r) {
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D, maxr = r->sel ? r->nsel : 1;
    int64_t pairs = s->Tq * s->Hq;
#pragma omp parallel
    {
        float *sc = malloc((size_t)s->Tk * sizeof(float));
        int64_t *lo = malloc((size_t)maxr * sizeof(int64_t)), *hi = malloc((size_t)maxr * sizeof(int64_t));
        float *acc = malloc((size_t)D * sizeof(float));
        CHECK(sc && lo && hi && acc);
#pragma omp for schedule(dynamic, 16)
        for (int64_t pr = 0; pr < pairs; pr++) {
            int64_t i = pr / s->Hq;
            int h = (int)(pr % s->Hq), g = h / G;
            int64_t pos = s->q_pos0 + i;
            const float *qi = q + i * s->q_stride + (int64_t)h * D;
            int nr = row_ranges(r, i, g, pos, lo, hi);
            float m = -INFINITY;
            for (int a = 0; a < nr; a++)
                for (int64_t j = lo[a]; j < hi[a]; j++) {
                    sc[j] = s->scale * dot(qi, k + j * s->kv_stride + (int64_t)g * D, D);
                    m = sc[j] > m ? sc[j] : m;
                }
            double l = 0;
            memset(acc, 0, (size_t)D * sizeof(float));
            for (int a = 0; a < nr; a++)
                for (int64_t j = lo[a]; j < hi[a]; j++) {
                    float p = expf(sc[j] - m);
                    l += p;
                    const float *vj = v + j * s->kv_stride + (int64_t)g * D;
#pragma omp simd
                    for (int d = 0; d < D; d++) acc[d] += p * vj[d];
                }
            float *o = out + i * s->q_stride + (int64_t)h * D;
            float inv = l > 0 ? (float)(1.0 / l) : 0.0f;
            for (int d = 0; d < D; d++) o[d] = acc[d] * inv;
            lse[i * s->Hq + h] = (float)(m + log(l));
        }
        free(sc);
        free(lo);
        free(hi);
        free(acc);
    }
}

/* D_i = dout_i . out_i for every (row, head). */
static float *row_deltas(const float *dout, const float *out, const struct attn_shape *s) {
    float *di = malloc((size_t)(s->Tq * s->Hq) * sizeof(float));
    CHECK(di);
#pragma omp parallel for schedule(static)
    for (int64_t pr = 0; pr < s->Tq * s->Hq; pr++) {
        int64_t i = pr / s->Hq, off = i * s->q_stride + (pr % s->Hq) * s->D;
        di[pr] = dot(dout + off, out + off, s->D);
    }
    return di;
}

static void backward_dq(float *dq, const float *dout, const float *q, const float *k,
                        const float *v, const float *lse, const float *di,
                        const struct attn_rows *r) {
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D, maxr = r->sel ? r->nsel : 1;
    int64_t pairs = s->Tq * s->Hq;
#pragma omp parallel
    {
        int64_t *lo = malloc((size_t)maxr * sizeof(int64_t)), *hi = malloc((size_t)maxr * sizeof(int64_t));
        float *acc = malloc((size_t)D * sizeof(float));
        CHECK(lo && hi && acc);
#pragma omp for schedule(dynamic, 16)
        for (int64_t pr = 0; pr < pairs; pr++) {
            int64_t i = pr / s->Hq;
            int h = (int)(pr % s->Hq), g = h / G;
            int64_t pos = s->q_pos0 + i, off = i * s->q_stride + (int64_t)h * D;
            const float *qi = q + off, *gi = dout + off;
            int nr = row_ranges(r, i, g, pos, lo, hi);
            memset(acc, 0, (size_t)D * sizeof(float));
            for (int a = 0; a < nr; a++)
                for (int64_t j = lo[a]; j < hi[a]; j++) {
                    const float *kj = k + j * s->kv_stride + (int64_t)g * D;
                    const float *vj = v + j * s->kv_stride + (int64_t)g * D;
                    float p = expf(s->scale * dot(qi, kj, D) - lse[pr]);
                    float ds = p * (dot(gi, vj, D) - di[pr]);
#pragma omp simd
                    for (int d = 0; d < D; d++) acc[d] += ds * kj[d];
                }
            float *o = dq + off;
            for (int d = 0; d < D; d++) o[d] += s->scale * acc[d];
        }
        free(lo);
        free(hi);
        free(acc);
    }
}

/* Rows attending to key range e of KV head g, in row order: dense, every row whose position reaches
 * the range; sparse, the CSR inverse of the selection. */
static int64_t range_rows(const struct attn_rows *r, const struct attn_inverse *inv, int g,
                          int64_t e, int64_t block_len, int64_t **rows_out, int64_t *scratch) {
    const struct attn_shape *s = r->s;
    if (!r->sel) {
        int64_t first = e * block_len - s->q_pos0;
        if (first < 0) first = 0;
        int64_t n = 0;
        for (int64_t i = first; i < s->Tq; i++) scratch[n++] = i;
        *rows_out = scratch;
        return n;
    }
    int64_t a = inv->off[g * inv->nblk + e], b = inv->off[g * inv->nblk + e + 1];
    *rows_out = inv->rows + a;
    return b - a;
}

static void backward_dkdv(float *dk, float *dv, const float *dout, const float *q, const float *k,
                          const float *v, const float *lse, const float *di,
                          const struct attn_rows *r, const struct attn_inverse *inv) {
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D;
    /* Key ranges: blocks of block_size (sparse) or of 64 keys (dense), the unit of the walk. */
    int64_t bl = r->sel ? r->block_size : 64;
    int64_t nb = (s->Tk + bl - 1) / bl;
    int64_t units = nb * s->Hkv;
#pragma omp parallel
    {
        int64_t *scratch = r->sel ? NULL : malloc((size_t)(s->Tq > 0 ? s->Tq : 1) * sizeof(int64_t));
        float *ak = malloc((size_t)(bl * D) * sizeof(float)), *av = malloc((size_t)(bl * D) * sizeof(float));
        CHECK(ak && av && (r->sel || scratch));
#pragma omp for schedule(dynamic, 1)
        for (int64_t un = 0; un < units; un++) {
            int64_t e = un / s->Hkv;
            int g = (int)(un % s->Hkv);
            int64_t j0 = e * bl, j1 = j0 + bl < s->Tk ? j0 + bl : s->Tk;
            memset(ak, 0, (size_t)(bl * D) * sizeof(float));
            memset(av, 0, (size_t)(bl * D) * sizeof(float));
            int64_t *rows;
            int64_t n = range_rows(r, inv, g, e, bl, &rows, scratch);
            for (int64_t t = 0; t < n; t++) {
                int64_t i = rows[t], pos = s->q_pos0 + i;
                for (int hh = 0; hh < G; hh++) {
                    int h = g * G + hh;
                    int64_t off = i * s->q_stride + (int64_t)h * D, pr = i * s->Hq + h;
                    const float *qi = q + off, *gi = dout + off;
                    for (int64_t j = j0; j < j1 && j <= pos; j++) {
                        const float *kj = k + j * s->kv_stride + (int64_t)g * D;
                        const float *vj = v + j * s->kv_stride + (int64_t)g * D;
                        float p = expf(s->scale * dot(qi, kj, D) - lse[pr]);
                        float ds = p * (dot(gi, vj, D) - di[pr]);
                        float *a_k = ak + (j - j0) * D, *a_v = av + (j - j0) * D;
#pragma omp simd
                        for (int d = 0; d < D; d++) {
                            a_v[d] += p * gi[d];
                            a_k[d] += ds * qi[d];
                        }
                    }
                }
            }
            for (int64_t j = j0; j < j1; j++) {
                float *okk = dk + j * s->kv_stride + (int64_t)g * D;
                float *ovv = dv + j * s->kv_stride + (int64_t)g * D;
                for (int d = 0; d < D; d++) {
                    okk[d] += s->scale * ak[(j - j0) * D + d];
                    ovv[d] += av[(j - j0) * D + d];
                }
            }
        }
        free(scratch);
        free(ak);
        free(av);
    }
}

void attn_rows_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        const struct attn_rows *r, const struct attn_inverse *inv) {
    float *di = row_deltas(dout, out, r->s);
    backward_dq(dq, dout, q, k, v, lse, di, r);
    backward_dkdv(dk, dv, dout, q, k, v, lse, di, r, inv);
    free(di);
}

void attention_forward_cpu(float *out, float *lse, const float *q, const float *k, const float *v,
                           const struct attn_shape *s) {
    struct attn_rows r = {.s = s};
    attn_rows_forward(out, lse, q, k, v, &r);
}

void attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse,
                            const struct attn_shape *s) {
    struct attn_rows r = {.s = s};
    attn_rows_backward(dq, dk, dv, dout, q, k, v, out, lse, &r, NULL);
}
