/*
 * infllmv2_cpu.c: CPU reference of infllmv2.h (../shared/INFLLMV2.md), stages 0-3.
 *
 * Dimensions: Tq query rows of the call at global positions q_pos0 + i, Tk key rows, Hq query
 * heads, Hkv KV heads, G = Hq / Hkv, D head dim, L1 / L2 fine / coarse compressed keys,
 * B = block_size, nblk = ceil(Tk / B), nsel = infllm_num_selected (at most topk + local_blocks).
 * Gradient rule: the stage-3 backward ADDS into dq, dk, dv.
 *
 * Stages 1-2 stream one (query row, KV head) at a time: its group scores S (L1 floats) and block
 * scores (nblk floats) live in per-thread scratch, never an O(T^2) buffer; threads split the query
 * rows and each selection is computed by one thread, so it does not depend on the thread count.
 * Numerics of stage 1 (fp32): logits scale * q . k; the normaliser m, l is an online (running max,
 * rescaled sum) pass over the visible normalising keys; p = exp(logit - m) * (1 / l), summed over
 * the group's heads in head order.
 * Stage 3 is attention_cpu.c's row machinery restricted to the selected blocks; its backward walks
 * each key block's reading rows through the CSR inverse of the selection (O(Tq * Hkv * nsel)).
 */
#include "infllmv2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_cpu_impl.h"
#include "check.h"

enum { LOGIT_BATCH = 64 }; /* compressed keys scored per call of key_logits (stack scratch) */

int64_t infllm_num_windows(int64_t T, int ksize, int kstride) {
    CHECK(ksize > 0 && kstride > 0);
    return T < ksize ? 0 : (T - ksize) / kstride + 1;
}

int infllm_num_selected(const struct infllm_params *p) {
    int64_t n = (int64_t)p->topk + p->local_blocks;
    if (p->seq_blocks > 0 && n > p->seq_blocks) n = p->seq_blocks;
    CHECKF(n >= 1 && n <= INT32_MAX, "selection of %lld blocks per query (topk %d + local_blocks "
           "%d, sequence of %lld blocks)", (long long)n, p->topk, p->local_blocks,
           (long long)p->seq_blocks);
    return (int)n;
}

/* ---- stage 0 ---- */

void infllm_compress_cpu(float *kc, const float *k, int64_t n, int Hkv, int D, int64_t kv_stride,
                         int ksize, int kstride) {
    CHECK(ksize > 0 && kstride > 0 && kv_stride >= (int64_t)Hkv * D);
    int64_t KD = (int64_t)Hkv * D;
    float inv_n = 1.0f / (float)ksize;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c++) {
        float *o = kc + c * KD;
        const float *w = k + c * kstride * kv_stride;
        memset(o, 0, (size_t)KD * sizeof(float));
        for (int r = 0; r < ksize; r++) {
            const float *row = w + (int64_t)r * kv_stride;
#pragma omp simd
            for (int64_t x = 0; x < KD; x++) o[x] += row[x];
        }
        for (int64_t x = 0; x < KD; x++) o[x] *= inv_n;
    }
}

/* ---- stage 1 ---- */

/* Compressed keys of windows (ksize, kstride) visible to t: those with c*kstride + ksize - 1 <= t,
 * a prefix of the L keys. */
static int64_t num_visible(int64_t t, int ksize, int kstride, int64_t L) {
    int64_t n = t + 1 >= ksize ? (t + 1 - ksize) / kstride + 1 : 0;
    return n < L ? n : L;
}

/* x[c] = scale * q . kc[c] for c < n, rows kstride apart (four independent accumulators). */
static void key_logits(float *x, const float *q, const float *kc, int64_t kstride, int64_t n, int D,
                       float scale) {
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) {
        const float *y0 = kc + c * kstride, *y1 = y0 + kstride, *y2 = y1 + kstride,
                    *y3 = y2 + kstride;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
        for (int d = 0; d < D; d++) {
            a0 += q[d] * y0[d];
            a1 += q[d] * y1[d];
            a2 += q[d] * y2[d];
            a3 += q[d] * y3[d];
        }
        x[c] = scale * a0;
        x[c + 1] = scale * a1;
        x[c + 2] = scale * a2;
        x[c + 3] = scale * a3;
    }
    for (; c < n; c++) {
        const float *y = kc + c * kstride;
        float a = 0;
#pragma omp simd reduction(+ : a)
        for (int d = 0; d < D; d++) a += q[d] * y[d];
        x[c] = scale * a;
    }
}

/* Running max m and sum l of exp(x - m) over the logits of n keys (l = 0 when n = 0). */
static void softmax_normaliser(float *m_out, float *l_out, const float *q, const float *kc,
                               int64_t kstride, int64_t n, int D, float scale) {
    float m = -INFINITY, l = 0, x[LOGIT_BATCH];
    for (int64_t c0 = 0; c0 < n; c0 += LOGIT_BATCH) {
        int64_t nb = n - c0 < LOGIT_BATCH ? n - c0 : LOGIT_BATCH;
        key_logits(x, q, kc + c0 * kstride, kstride, nb, D, scale);
        for (int64_t c = 0; c < nb; c++) {
            if (x[c] > m) {
                l = l * expf(m - x[c]) + 1.0f;
                m = x[c];
            } else {
                l += expf(x[c] - m);
            }
        }
    }
    *m_out = m;
    *l_out = l;
}

void infllm_group_scores_cpu(float *S, const float *q_t, int64_t t, int g, const float *k1,
                             int64_t L1, const float *k2, int64_t L2, int Hq, int Hkv, int D,
                             float scale, const struct infllm_params *p) {
    int G = Hq / Hkv, ks = p->kernel_size, st = p->kernel_stride;
    int64_t KD = (int64_t)Hkv * D;
    int64_t n1 = num_visible(t, ks, st, L1);
    int64_t nn = p->lse_approx ? num_visible(t, 4 * ks, 4 * st, L2) : n1;
    memset(S, 0, (size_t)L1 * sizeof(float));
    if (nn == 0) return; /* the guard: no normaliser, every score 0 */
    const float *kn = p->lse_approx ? k2 : k1;
    CHECK(kn != NULL);
    kn += (int64_t)g * D;
    float x[LOGIT_BATCH];
    for (int hh = 0; hh < G; hh++) {
        const float *q = q_t + (int64_t)(g * G + hh) * D;
        float m, l;
        softmax_normaliser(&m, &l, q, kn, KD, nn, D, scale);
        float inv_l = 1.0f / l;
        for (int64_t c0 = 0; c0 < n1; c0 += LOGIT_BATCH) {
            int64_t nb = n1 - c0 < LOGIT_BATCH ? n1 - c0 : LOGIT_BATCH;
            key_logits(x, q, k1 + c0 * KD + (int64_t)g * D, KD, nb, D, scale);
            for (int64_t c = 0; c < nb; c++) S[c0 + c] += expf(x[c] - m) * inv_l;
        }
    }
}

/* ---- stage 2 ---- */

void infllm_block_scores_cpu(float *score, const float *S, int64_t t, int64_t L1, int64_t nblk,
                             const struct infllm_params *p) {
    int ks = p->kernel_size, st = p->kernel_stride, B = p->block_size;
    CHECK(B % st == 0);
    int64_t n1 = num_visible(t, ks, st, L1), bt = t / B, per = B / st;
    for (int64_t j = 0; j < nblk; j++) {
        /* windows [c*st, c*st + ks) overlapping [j*B, j*B + B): c from ceil((jB - ks + 1) / st)
         * = j*per - floor((ks - 1) / st) to j*per + per - 1 (defaults: 4j - 1 .. 4j + 3) */
        int64_t lo = j * per - (ks - 1) / st, hi = j * per + per - 1;
        if (lo < 0) lo = 0;
        if (hi > n1 - 1) hi = n1 - 1;
        float v = -INFINITY;
        for (int64_t c = lo; c <= hi; c++) v = S[c] > v ? S[c] : v;
        if (j < p->init_blocks || (j <= bt && j >= bt - p->local_blocks)) v = INFINITY;
        score[j] = v;
    }
}

/* Ranking order of blocks: a before b when its score is higher, or equal with a lower index.
 * NaN ranks as -INFINITY. */
static int block_before(const float *score, int32_t a, int32_t b) {
    float sa = isnan(score[a]) ? -INFINITY : score[a], sb = isnan(score[b]) ? -INFINITY : score[b];
    return sa > sb || (sa == sb && a < b);
}

/* Heap of block indices whose root ranks last: sift the entry at position x down. */
static void heap_sift_down(int32_t *h, int n, int x, const float *score) {
    for (;;) {
        int c = 2 * x + 1;
        if (c >= n) return;
        if (c + 1 < n && block_before(score, h[c], h[c + 1])) c++;
        if (!block_before(score, h[x], h[c])) return;
        int32_t tmp = h[x];
        h[x] = h[c];
        h[c] = tmp;
        x = c;
    }
}

static void heap_sift_up(int32_t *h, int x, const float *score) {
    while (x > 0) {
        int par = (x - 1) / 2;
        if (!block_before(score, h[par], h[x])) return;
        int32_t tmp = h[x];
        h[x] = h[par];
        h[par] = tmp;
        x = par;
    }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int infllm_topk_blocks_cpu(int32_t *sel, const float *score, int64_t nblk, int nsel, int64_t t,
                           int block_size) {
    CHECK(nsel > 0 && nblk <= INT32_MAX && block_size > 0);
    /* sel doubles as a heap of the best blocks so far (worst at the root): no allocation */
    int n = 0;
    for (int64_t j = 0; j < nblk; j++) {
        if (n < nsel) {
            sel[n] = (int32_t)j;
            heap_sift_up(sel, n++, score);
        } else if (block_before(score, (int32_t)j, sel[0])) {
            sel[0] = (int32_t)j;
            heap_sift_down(sel, n, 0, score);
        }
    }
    int64_t bt = t / block_size;
    int count = 0;
    for (int x = 0; x < n; x++)
        if (sel[x] <= bt) sel[count++] = sel[x];
    qsort(sel, (size_t)count, sizeof(int32_t), cmp_i32);
    for (int x = count; x < nsel; x++) sel[x] = -1;
    return count;
}

void infllm_select_cpu(int32_t *sel, const float *q, const float *k1, int64_t L1, const float *k2,
                       int64_t L2, const struct attn_shape *s, const struct infllm_params *p) {
    CHECK(s->Hq > 0 && s->Hkv > 0 && s->Hq % s->Hkv == 0 && s->q_stride >= (int64_t)s->Hq * s->D);
    CHECK(p->kernel_size > 0 && p->kernel_stride > 0 && p->block_size % p->kernel_stride == 0);
    CHECK(s->Tk >= s->q_pos0 + s->Tq);
    CHECKF(s->doc_start == NULL, "selection: a document is its own call (doc_start must be NULL)");
    int nsel = infllm_num_selected(p);
    int64_t nblk = (s->Tk + p->block_size - 1) / p->block_size;
#pragma omp parallel
    {
        /* per thread: S (L1) and block scores (nblk) */
        float *S = xmalloc((size_t)L1 * sizeof(float));
        float *score = xmalloc((size_t)nblk * sizeof(float));
#pragma omp for schedule(dynamic, 16)
        for (int64_t u = 0; u < s->Tq * s->Hkv; u++) {
            int64_t i = u / s->Hkv, t = s->q_pos0 + i;
            int g = (int)(u % s->Hkv);
            infllm_group_scores_cpu(S, q + i * s->q_stride, t, g, k1, L1, k2, L2, s->Hq, s->Hkv,
                                    s->D, s->scale, p);
            infllm_block_scores_cpu(score, S, t, L1, nblk, p);
            infllm_topk_blocks_cpu(sel + u * nsel, score, nblk, nsel, t, p->block_size);
        }
        free(score);
        free(S);
    }
}

/* ---- stage 3 ---- */

void sparse_attention_forward_cpu(float *out, float *lse, const float *q, const float *k,
                                  const float *v, const int32_t *sel, int nsel, int block_size,
                                  const struct attn_shape *s) {
    struct attn_rows r = {.s = s, .sel = sel, .nsel = nsel, .block_size = block_size};
    attn_rows_forward(out, lse, q, k, v, &r);
}

/* CSR inverse of sel: a counting pass, prefix sums, then a fill in row order, so each block's rows
 * come out ascending. The caller frees inv->off and inv->rows. */
static void build_inverse(struct attn_inverse *inv, const int32_t *sel, int nsel, int block_size,
                          const struct attn_shape *s) {
    int64_t nblk = (s->Tk + block_size - 1) / block_size, nkeys = (int64_t)s->Hkv * nblk;
    inv->nblk = nblk;
    inv->off = xcalloc((size_t)nkeys + 1, sizeof(int64_t));
    for (int64_t u = 0; u < s->Tq * s->Hkv; u++)
        for (int x = 0; x < nsel && sel[u * nsel + x] >= 0; x++) {
            int32_t j = sel[u * nsel + x];
            CHECKF(j < nblk, "selected block %d is past nblk = %lld", (int)j, (long long)nblk);
            inv->off[(u % s->Hkv) * nblk + j + 1]++;
        }
    for (int64_t e = 0; e < nkeys; e++) inv->off[e + 1] += inv->off[e];
    CHECKF(s->Tq < INT32_MAX, "%lld query rows: too many for the int32 inverse index",
           (long long)s->Tq);
    inv->rows = xmalloc((size_t)inv->off[nkeys] * sizeof(int32_t));
    int64_t *fill = xmalloc((size_t)nkeys * sizeof(int64_t));
    memcpy(fill, inv->off, (size_t)nkeys * sizeof(int64_t));
    for (int64_t u = 0; u < s->Tq * s->Hkv; u++)
        for (int x = 0; x < nsel && sel[u * nsel + x] >= 0; x++)
            inv->rows[fill[(u % s->Hkv) * nblk + sel[u * nsel + x]]++] = (int32_t)(u / s->Hkv);
    free(fill);
}

void sparse_attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *out, const float *lse, const int32_t *sel,
                                   int nsel, int block_size, const struct attn_shape *s) {
    struct attn_rows r = {.s = s, .sel = sel, .nsel = nsel, .block_size = block_size};
    struct attn_inverse inv;
    CHECK(nsel > 0 && block_size > 0);
    build_inverse(&inv, sel, nsel, block_size, s);
    attn_rows_backward(dq, dk, dv, dout, q, k, v, out, lse, &r, &inv);
    free(inv.rows);
    free(inv.off);
}
