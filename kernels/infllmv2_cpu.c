/*
 * infllmv2_cpu.c: CPU reference of infllmv2.h (../shared/INFLLMV2.md), stages 0-3.
 *
 * Stages 1-2 stream one query row at a time: the row's group scores S (L1 floats) and block scores
 * (nblk floats) live in per-thread scratch, never an O(T^2) buffer. Stage 3 reuses the dense
 * machinery of attention_cpu.c restricted to the selected blocks; its backward walks each key
 * block's attending rows through the inverse of the selection.
 */
#include "infllmv2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_cpu_impl.h"
#include "check.h"

int64_t infllm_num_windows(int64_t T, int ksize, int kstride) {
    return T < ksize ? 0 : (T - ksize) / kstride + 1;
}

int infllm_num_selected(const struct infllm_params *p) { return p->topk + p->local_blocks; }

void infllm_compress_cpu(float *kc, const float *k, int64_t n, int Hkv, int D, int64_t kv_stride,
                         int ksize, int kstride) {
    int64_t KD = (int64_t)Hkv * D;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c++)
        for (int64_t hd = 0; hd < KD; hd++) {
            const float *src = k + c * kstride * kv_stride + hd;
            float s = 0;
            for (int r = 0; r < ksize; r++) s += src[(int64_t)r * kv_stride];
            kc[c * KD + hd] = s / (float)ksize;
        }
}

static float dotf(const float *a, const float *b, int D) {
    float s = 0;
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

/* Visible compressed keys of windows ks/st for a token at t: c*st + ks - 1 <= t, at most L. */
static int64_t visible(int64_t t, int ks, int st, int64_t L) {
    int64_t n = t + 1 >= ks ? (t + 1 - ks) / st + 1 : 0;
    return n < L ? n : L;
}

void infllm_group_scores_cpu(float *S, const float *q_t, int64_t t, int g, const float *k1,
                             int64_t L1, const float *k2, int64_t L2, int Hq, int Hkv, int D,
                             float scale, const struct infllm_params *p) {
    int G = Hq / Hkv, ks = p->kernel_size, st = p->kernel_stride;
    int64_t KD = (int64_t)Hkv * D;
    int64_t nv1 = visible(t, ks, st, L1);
    int64_t nv2 = p->lse_approx ? visible(t, 4 * ks, 4 * st, L2) : 0;
    const float *norm_keys = p->lse_approx ? k2 : k1;
    int64_t nnorm = p->lse_approx ? nv2 : nv1;
    memset(S, 0, (size_t)L1 * sizeof(float));
    for (int hh = 0; hh < G; hh++) {
        const float *q = q_t + (int64_t)(g * G + hh) * D;
        float m = -INFINITY;
        for (int64_t e = 0; e < nnorm; e++) {
            float s = scale * dotf(q, norm_keys + e * KD + (int64_t)g * D, D);
            m = s > m ? s : m;
        }
        float l = 0;
        for (int64_t e = 0; e < nnorm; e++)
            l += expf(scale * dotf(q, norm_keys + e * KD + (int64_t)g * D, D) - m);
        if (!(l > 0)) continue; /* nothing normalises: the guard, scores stay 0 */
        for (int64_t c = 0; c < nv1; c++)
            S[c] += expf(scale * dotf(q, k1 + c * KD + (int64_t)g * D, D) - m) / l;
    }
}

void infllm_block_scores_cpu(float *score, const float *S, int64_t t, int64_t L1, int64_t nblk,
                             const struct infllm_params *p) {
    int ks = p->kernel_size, st = p->kernel_stride, bs = p->block_size;
    int64_t nv1 = visible(t, ks, st, L1), bt = t / bs;
    int per = bs / st, back = ks / st - 1;
    for (int64_t j = 0; j < nblk; j++) {
        int64_t lo = j * per - back, hi = (j + 1) * per - 1;
        if (lo < 0) lo = 0;
        if (hi > nv1 - 1) hi = nv1 - 1;
        float v = -INFINITY;
        for (int64_t c = lo; c <= hi; c++) v = S[c] > v ? S[c] : v;
        if (j < p->init_blocks || (j <= bt && j >= bt - p->local_blocks)) v = INFINITY;
        score[j] = v;
    }
}

int infllm_topk_blocks_cpu(int32_t *sel, const float *score, int64_t nblk, int nsel, int64_t t,
                           int block_size) {
    /* Selection by repeated arg-max (nsel is small): highest score, lower index on ties. */
    int64_t bt = t / block_size;
    int take = nsel < nblk ? nsel : (int)nblk;
    int n = 0;
    unsigned char *used = calloc((size_t)(nblk > 0 ? nblk : 1), 1);
    CHECK(used);
    for (int r = 0; r < take; r++) {
        int64_t best = -1;
        for (int64_t j = 0; j < nblk; j++) {
            if (used[j]) continue;
            if (best < 0 || score[j] > score[best]) best = j;
        }
        used[best] = 1;
        if (best <= bt) sel[n++] = (int32_t)best;
    }
    free(used);
    /* Ascending order for the attention walk. */
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && sel[b - 1] > sel[b]; b--) {
            int32_t tmp = sel[b];
            sel[b] = sel[b - 1];
            sel[b - 1] = tmp;
        }
    for (int r = n; r < nsel; r++) sel[r] = -1;
    return n;
}

void infllm_select_cpu(int32_t *sel, const float *q, const float *k1, int64_t L1, const float *k2,
                       int64_t L2, const struct attn_shape *s, const struct infllm_params *p) {
    int nsel = infllm_num_selected(p);
    int64_t nblk = (s->Tk + p->block_size - 1) / p->block_size;
    int64_t units = s->Tq * s->Hkv;
#pragma omp parallel
    {
        float *S = malloc((size_t)(L1 > 0 ? L1 : 1) * sizeof(float));
        float *score = malloc((size_t)(nblk > 0 ? nblk : 1) * sizeof(float));
        CHECK(S && score);
#pragma omp for schedule(dynamic, 16)
        for (int64_t u = 0; u < units; u++) {
            int64_t i = u / s->Hkv, t = s->q_pos0 + i;
            int g = (int)(u % s->Hkv);
            infllm_group_scores_cpu(S, q + i * s->q_stride, t, g, k1, L1, k2, L2, s->Hq, s->Hkv,
                                    s->D, s->scale, p);
            infllm_block_scores_cpu(score, S, t, L1, nblk, p);
            infllm_topk_blocks_cpu(sel + u * nsel, score, nblk, nsel, t, p->block_size);
        }
        free(S);
        free(score);
    }
}

void sparse_attention_forward_cpu(float *out, float *lse, const float *q, const float *k,
                                  const float *v, const int32_t *sel, int nsel, int block_size,
                                  const struct attn_shape *s) {
    struct attn_rows r = {.s = s, .sel = sel, .nsel = nsel, .block_size = block_size};
    attn_rows_forward(out, lse, q, k, v, &r);
}

/* The inverse of sel: counting pass, prefix sums, then a fill in row order (ascending rows). */
static void build_inverse(struct attn_inverse *inv, const int32_t *sel, int nsel,
                          const struct attn_shape *s, int block_size) {
    inv->nblk = (s->Tk + block_size - 1) / block_size;
    int64_t nkeys = (int64_t)s->Hkv * inv->nblk;
    inv->off = calloc((size_t)nkeys + 1, sizeof(int64_t));
    CHECK(inv->off);
    for (int64_t i = 0; i < s->Tq; i++)
        for (int g = 0; g < s->Hkv; g++)
            for (int k = 0; k < nsel; k++) {
                int32_t j = sel[(i * s->Hkv + g) * nsel + k];
                if (j >= 0) inv->off[g * inv->nblk + j + 1]++;
            }
    for (int64_t e = 0; e < nkeys; e++) inv->off[e + 1] += inv->off[e];
    inv->rows = malloc((size_t)(inv->off[nkeys] > 0 ? inv->off[nkeys] : 1) * sizeof(int64_t));
    int64_t *fill = malloc((size_t)(nkeys > 0 ? nkeys : 1) * sizeof(int64_t));
    CHECK(inv->rows && fill);
    memcpy(fill, inv->off, (size_t)nkeys * sizeof(int64_t));
    for (int64_t i = 0; i < s->Tq; i++)
        for (int g = 0; g < s->Hkv; g++)
            for (int k = 0; k < nsel; k++) {
                int32_t j = sel[(i * s->Hkv + g) * nsel + k];
                if (j >= 0) inv->rows[fill[g * inv->nblk + j]++] = i;
            }
    free(fill);
}

void sparse_attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *out, const float *lse, const int32_t *sel,
                                   int nsel, int block_size, const struct attn_shape *s) {
    struct attn_rows r = {.s = s, .sel = sel, .nsel = nsel, .block_size = block_size};
    struct attn_inverse inv;
    build_inverse(&inv, sel, nsel, s, block_size);
    attn_rows_backward(dq, dk, dv, dout, q, k, v, out, lse, &r, &inv);
    free(inv.off);
    free(inv.rows);
}
