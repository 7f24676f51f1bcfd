/*
 * attention_cpu.c: CPU reference of attention.h (dense causal GQA attention, forward and backward)
 * and the row-set machinery of attn_cpu_impl.h that infllmv2_cpu.c restricts to selected blocks.
 *
 * Dimensions: Tq query rows, Tk key rows, Hq query heads, Hkv KV heads, G = Hq / Hkv (query head h
 * reads KV head h / G), D head dim. A "query vector" is one (row i, head h); pos = q_pos0 + i.
 * Layouts: q, out, dout, dq (Tq, Hq, D) q_stride apart; k, v, dk, dv (Tk, Hkv, D) kv_stride apart;
 * lse (Tq, Hq). Gradient rule: the backward ADDS into dq, dk, dv.
 *
 * Every query vector reads its keys as a list of chunks [j0, j1), each cut at pos: dense rows the
 * chunks [64e, 64e + 64) for e = 0, 1, ... (global, so independent of the call's q_pos0); sparse
 * rows the selected blocks [b*B, b*B + B), B = block_size, in ascending order.
 *
 * Numerics, fp32 throughout:
 *   forward  online softmax, one chunk at a time: the chunk's scores and max, the running max m,
 *            the chunk's sum of exponentials added to the running sum l (a two-level sum), and the
 *            output accumulator rescaled by exp(m_old - m_new) when the max grows.
 *   backward P and dS recomputed from lse (flash-attention algebra, D_i = dout_i . out_i).
 *            dq: threads over (row tile, KV head); dk/dv: threads over (key chunk, KV head), each
 *            walking the rows that read that chunk in ascending order, then one add into dk, dv.
 * No float atomics and no cross-thread reduction, so every result is bitwise independent of the
 * thread count. A row's out, lse and dq depend only on that row (and the keys), never on the other
 * rows of the call, so splitting the queries into chunks (context parallelism) reproduces them
 * bitwise; dk, dv of split calls differ from one call only by the order of the final additions.
 * A row that reads no key (possible only with a sparse selection) gets out = 0, lse = -INFINITY and
 * contributes no gradient.
 */
#include "attention.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "attn_cpu_impl.h"
#include "check.h"

enum {
    DENSE_CHUNK = 64, /* keys per dense chunk (the unit of the online softmax and of dk/dv) */
    ROW_TILE = 16,    /* query rows sharing each loaded key chunk in the dense passes */
};

/* s[j] = scale * (x . y_j) for n rows y_j = y + j * y_stride. Four rows at a time give the
 * vector unit four independent accumulators; the arithmetic of a row depends only on its index
 * modulo 4 within the chunk, which the chunk layout fixes. */
static void chunk_dots(float *s, const float *x, const float *y, int64_t y_stride, int64_t n, int D,
                       float scale) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *y0 = y + j * y_stride, *y1 = y0 + y_stride, *y2 = y1 + y_stride,
                    *y3 = y2 + y_stride;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
        for (int d = 0; d < D; d++) {
            a0 += x[d] * y0[d];
            a1 += x[d] * y1[d];
            a2 += x[d] * y2[d];
            a3 += x[d] * y3[d];
        }
        s[j] = scale * a0;
        s[j + 1] = scale * a1;
        s[j + 2] = scale * a2;
        s[j + 3] = scale * a3;
    }
    for (; j < n; j++) {
        const float *yj = y + j * y_stride;
        float a = 0;
#pragma omp simd reduction(+ : a)
        for (int d = 0; d < D; d++) a += x[d] * yj[d];
        s[j] = scale * a;
    }
}

/* acc[d] += sum_j w[j] * y_j[d] over n rows, in row order. */
static void chunk_axpy(float *acc, const float *w, const float *y, int64_t y_stride, int64_t n,
                       int D) {
    for (int64_t j = 0; j < n; j++) {
        const float *yj = y + j * y_stride;
        float wj = w[j];
#pragma omp simd
        for (int d = 0; d < D; d++) acc[d] += wj * yj[d];
    }
}

/* ---- the key chunks of a row ---- */

/* Chunk e of KV head g for query row i (the first row of its tile): [*j0, *j1) before the cut at
 * the row's position. Dense: [64e, 64e + 64) while 64e <= last_pos; sparse: the e-th selected block.
 * Returns false past the last chunk. */
static bool row_chunk(const struct attn_rows *r, int64_t i, int g, int64_t e, int64_t last_pos,
                      int64_t *j0, int64_t *j1) {
    const struct attn_shape *s = r->s;
    int64_t a, len;
    if (!r->sel) {
        a = e * DENSE_CHUNK;
        len = DENSE_CHUNK;
        if (a > last_pos) return false;
    } else {
        if (e >= r->nsel) return false;
        int32_t b = r->sel[((int64_t)i * s->Hkv + g) * r->nsel + e];
        if (b < 0) return false;
        CHECKF(e == 0 || b > r->sel[((int64_t)i * s->Hkv + g) * r->nsel + e - 1],
               "selection of row %lld is not strictly ascending", (long long)i);
        a = (int64_t)b * r->block_size;
        len = r->block_size;
        CHECKF(a < s->Tk, "selected block %d of row %lld is past Tk = %lld", (int)b, (long long)i,
               (long long)s->Tk);
    }
    *j0 = a;
    *j1 = a + len < s->Tk ? a + len : s->Tk;
    return true;
}

/* Keys of chunk [j0, j1) a query vector at pos reads: j1 cut at pos + 1 (<= 0 when none). */
static int64_t cut_len(int64_t j0, int64_t j1, int64_t pos) {
    return (j1 < pos + 1 ? j1 : pos + 1) - j0;
}

/* Rows per unit of the forward and dq passes: a tile for dense, one row for sparse (rows of a tile
 * would read different blocks). */
static int64_t unit_rows(const struct attn_rows *r) { return r->sel ? 1 : ROW_TILE; }

/* Key-chunk length of the dk/dv pass. */
static int64_t kv_chunk(const struct attn_rows *r) { return r->sel ? r->block_size : DENSE_CHUNK; }

static void check_shape(const struct attn_rows *r) {
    const struct attn_shape *s = r->s;
    CHECK(s->Hq > 0 && s->Hkv > 0 && s->D > 0 && s->Hq % s->Hkv == 0);
    CHECK(s->Tq >= 0 && s->q_pos0 >= 0 && s->Tk >= s->q_pos0 + s->Tq);
    CHECK(s->q_stride >= (int64_t)s->Hq * s->D && s->kv_stride >= (int64_t)s->Hkv * s->D);
    CHECK(!r->sel || (r->nsel > 0 && r->block_size > 0));
}

/* ---- forward ---- */

/* Online-softmax state of one query vector. */
struct qv_state {
    float m;    /* running max of the scores */
    float l;    /* running sum of exp(score - m) */
    float *acc; /* (D) running sum of exp(score - m) * v */
};

/* Adds the n keys at k, v (kv_stride apart) to the state; s is (n) scratch. */
static void chunk_forward(struct qv_state *st, float *s, const float *q, const float *k,
                          const float *v, int64_t kv_stride, int64_t n, int D, float scale) {
    chunk_dots(s, q, k, kv_stride, n, D, scale);
    float cm = -INFINITY;
    for (int64_t j = 0; j < n; j++) cm = s[j] > cm ? s[j] : cm;
    float m = cm > st->m ? cm : st->m;
    float cl = 0;
    for (int64_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - m);
        cl += s[j];
    }
    if (m != st->m) { /* rescale: skipping a factor of exactly 1 changes no bit */
        float alpha = expf(st->m - m);
        st->l *= alpha;
#pragma omp simd
        for (int d = 0; d < D; d++) st->acc[d] *= alpha;
        st->m = m;
    }
    st->l += cl;
    chunk_axpy(st->acc, s, v, kv_stride, n, D);
}

/* Forward of one unit: rows [i0, i0 + nr) of KV head g, all G heads of the group. */
static void unit_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                         const struct attn_rows *r, int64_t i0, int64_t nr, int g,
                         struct qv_state *st, float *s) {
    const struct attn_shape *sh = r->s;
    int G = sh->Hq / sh->Hkv, D = sh->D;
    int64_t nq = nr * G, last_pos = sh->q_pos0 + i0 + nr - 1;
    for (int64_t a = 0; a < nq; a++) {
        st[a].m = -INFINITY;
        st[a].l = 0;
        memset(st[a].acc, 0, (size_t)D * sizeof(float));
    }
    int64_t j0, j1;
    for (int64_t e = 0; row_chunk(r, i0, g, e, last_pos, &j0, &j1); e++) {
        const float *kc = k + j0 * sh->kv_stride + (int64_t)g * D;
        const float *vc = v + j0 * sh->kv_stride + (int64_t)g * D;
        for (int64_t a = 0; a < nq; a++) {
            int64_t i = i0 + a / G;
            int h = g * G + (int)(a % G);
            int64_t n = cut_len(j0, j1, sh->q_pos0 + i);
            if (n <= 0) continue;
            chunk_forward(&st[a], s, q + i * sh->q_stride + (int64_t)h * D, kc, vc, sh->kv_stride,
                          n, D, sh->scale);
        }
    }
    for (int64_t a = 0; a < nq; a++) {
        int64_t i = i0 + a / G;
        int h = g * G + (int)(a % G);
        float *o = out + i * sh->q_stride + (int64_t)h * D;
        float inv = st[a].l > 0 ? 1.0f / st[a].l : 0.0f;
        for (int d = 0; d < D; d++) o[d] = st[a].acc[d] * inv;
        lse[i * sh->Hq + h] = st[a].l > 0 ? st[a].m + logf(st[a].l) : -INFINITY;
    }
}

void attn_rows_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const struct attn_rows *r) {
    check_shape(r);
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D;
    int64_t tile = unit_rows(r), ntiles = (s->Tq + tile - 1) / tile;
    int64_t chunk = kv_chunk(r) > DENSE_CHUNK ? kv_chunk(r) : DENSE_CHUNK;
#pragma omp parallel
    {
        /* per thread: tile * G states of D floats, and one chunk of scores */
        struct qv_state *st = xmalloc((size_t)(tile * G) * sizeof(*st));
        float *accs = xmalloc((size_t)(tile * G * D) * sizeof(float));
        float *sc = xmalloc((size_t)chunk * sizeof(float));
        for (int64_t a = 0; a < tile * G; a++) st[a].acc = accs + a * D;
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < ntiles * s->Hkv; u++) {
            int64_t i0 = (u / s->Hkv) * tile;
            int64_t nr = s->Tq - i0 < tile ? s->Tq - i0 : tile;
            unit_forward(out, lse, q, k, v, r, i0, nr, (int)(u % s->Hkv), st, sc);
        }
        free(sc);
        free(accs);
        free(st);
    }
}

/* ---- backward ---- */

/* delta[i, h] = dout[i, h] . out[i, h]; (Tq, Hq), allocated here. */
static float *row_deltas(const float *dout, const float *out, const struct attn_shape *s) {
    float *delta = xmalloc((size_t)(s->Tq * s->Hq) * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < s->Tq; i++)
        for (int h = 0; h < s->Hq; h++) {
            int64_t off = i * s->q_stride + (int64_t)h * s->D;
            chunk_dots(&delta[i * s->Hq + h], dout + off, out + off, 0, 1, s->D, 1.0f);
        }
    return delta;
}

/* For one query vector and n keys: p[j] = exp(scale q.k_j - lse) and ds[j] = p[j] (dout.v_j - delta). */
static void chunk_probs(float *p, float *ds, const float *q, const float *gout, const float *k,
                        const float *v, int64_t kv_stride, int64_t n, int D, float scale, float lse,
                        float delta) {
    chunk_dots(p, q, k, kv_stride, n, D, scale);
    chunk_dots(ds, gout, v, kv_stride, n, D, 1.0f);
    for (int64_t j = 0; j < n; j++) {
        p[j] = expf(p[j] - lse);
        ds[j] = p[j] * (ds[j] - delta);
    }
}

/* dq of one unit: rows [i0, i0 + nr), KV head g. acc (nr * G, D), p and ds (chunk) scratch. */
static void unit_dq(float *dq, const float *dout, const float *q, const float *k, const float *v,
                    const float *lse, const float *delta, const struct attn_rows *r, int64_t i0,
                    int64_t nr, int g, float *acc, float *p, float *ds) {
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D;
    int64_t nq = nr * G, last_pos = s->q_pos0 + i0 + nr - 1;
    memset(acc, 0, (size_t)(nq * D) * sizeof(float));
    int64_t j0, j1;
    for (int64_t e = 0; row_chunk(r, i0, g, e, last_pos, &j0, &j1); e++) {
        const float *kc = k + j0 * s->kv_stride + (int64_t)g * D;
        const float *vc = v + j0 * s->kv_stride + (int64_t)g * D;
        for (int64_t a = 0; a < nq; a++) {
            int64_t i = i0 + a / G;
            int h = g * G + (int)(a % G);
            int64_t n = cut_len(j0, j1, s->q_pos0 + i), off = i * s->q_stride + (int64_t)h * D;
            if (n <= 0) continue;
            chunk_probs(p, ds, q + off, dout + off, kc, vc, s->kv_stride, n, D, s->scale,
                        lse[i * s->Hq + h], delta[i * s->Hq + h]);
            chunk_axpy(acc + a * D, ds, kc, s->kv_stride, n, D);
        }
    }
    for (int64_t a = 0; a < nq; a++) {
        int64_t i = i0 + a / G;
        int h = g * G + (int)(a % G);
        float *o = dq + i * s->q_stride + (int64_t)h * D;
        for (int d = 0; d < D; d++) o[d] += s->scale * acc[a * D + d];
    }
}

static void backward_dq(float *dq, const float *dout, const float *q, const float *k,
                        const float *v, const float *lse, const float *delta,
                        const struct attn_rows *r) {
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D;
    int64_t tile = unit_rows(r), ntiles = (s->Tq + tile - 1) / tile;
    int64_t chunk = kv_chunk(r) > DENSE_CHUNK ? kv_chunk(r) : DENSE_CHUNK;
#pragma omp parallel
    {
        float *acc = xmalloc((size_t)(tile * G * D) * sizeof(float));
        float *p = xmalloc((size_t)chunk * sizeof(float)), *ds = xmalloc((size_t)chunk * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < ntiles * s->Hkv; u++) {
            int64_t i0 = (u / s->Hkv) * tile;
            int64_t nr = s->Tq - i0 < tile ? s->Tq - i0 : tile;
            unit_dq(dq, dout, q, k, v, lse, delta, r, i0, nr, (int)(u % s->Hkv), acc, p, ds);
        }
        free(ds);
        free(p);
        free(acc);
    }
}

/* The query rows reading key chunk e of KV head g, ascending: dense, every row at or past the
 * chunk's first key; sparse, the inverse of the selection. Either [*first, *first + n) (list NULL)
 * or list[0..n). */
static int64_t chunk_rows(const struct attn_rows *r, const struct attn_inverse *inv, int g,
                          int64_t e, int64_t *first, const int64_t **list) {
    const struct attn_shape *s = r->s;
    if (!r->sel) {
        int64_t f = e * DENSE_CHUNK - s->q_pos0;
        *first = f > 0 ? f : 0;
        *list = NULL;
        return s->Tq - *first > 0 ? s->Tq - *first : 0;
    }
    int64_t a = inv->off[(int64_t)g * inv->nblk + e], b = inv->off[(int64_t)g * inv->nblk + e + 1];
    *first = 0;
    *list = inv->rows + a;
    return b - a;
}

/* dk, dv of key chunk [j0, j1) of KV head g. ak, av (j1 - j0, D) and p, ds (j1 - j0) scratch. */
static void unit_dkdv(float *dk, float *dv, const float *dout, const float *q, const float *k,
                      const float *v, const float *lse, const float *delta,
                      const struct attn_rows *r, const struct attn_inverse *inv, int64_t e, int g,
                      float *ak, float *av, float *p, float *ds) {
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D;
    int64_t len = kv_chunk(r), j0 = e * len, j1 = j0 + len < s->Tk ? j0 + len : s->Tk;
    int64_t first;
    const int64_t *list;
    int64_t nrows = chunk_rows(r, inv, g, e, &first, &list);
    if (nrows == 0) return;
    const float *kc = k + j0 * s->kv_stride + (int64_t)g * D;
    const float *vc = v + j0 * s->kv_stride + (int64_t)g * D;
    memset(ak, 0, (size_t)((j1 - j0) * D) * sizeof(float));
    memset(av, 0, (size_t)((j1 - j0) * D) * sizeof(float));
    for (int64_t t = 0; t < nrows; t++) {
        int64_t i = list ? list[t] : first + t;
        int64_t n = cut_len(j0, j1, s->q_pos0 + i);
        for (int hh = 0; hh < G && n > 0; hh++) {
            int h = g * G + hh;
            int64_t off = i * s->q_stride + (int64_t)h * D;
            const float *qi = q + off, *gi = dout + off;
            chunk_probs(p, ds, qi, gi, kc, vc, s->kv_stride, n, D, s->scale, lse[i * s->Hq + h],
                        delta[i * s->Hq + h]);
            for (int64_t j = 0; j < n; j++) {
                float pj = p[j], dsj = ds[j];
                float *akj = ak + j * D, *avj = av + j * D;
#pragma omp simd
                for (int d = 0; d < D; d++) {
                    avj[d] += pj * gi[d];
                    akj[d] += dsj * qi[d];
                }
            }
        }
    }
    for (int64_t j = j0; j < j1; j++) {
        float *okk = dk + j * s->kv_stride + (int64_t)g * D;
        float *ovv = dv + j * s->kv_stride + (int64_t)g * D;
        const float *akj = ak + (j - j0) * D, *avj = av + (j - j0) * D;
        for (int d = 0; d < D; d++) {
            okk[d] += s->scale * akj[d];
            ovv[d] += avj[d];
        }
    }
}

static void backward_dkdv(float *dk, float *dv, const float *dout, const float *q, const float *k,
                          const float *v, const float *lse, const float *delta,
                          const struct attn_rows *r, const struct attn_inverse *inv) {
    const struct attn_shape *s = r->s;
    int D = s->D;
    int64_t len = kv_chunk(r), nchunks = (s->Tk + len - 1) / len;
    CHECK(!r->sel || (inv && inv->nblk == nchunks));
#pragma omp parallel
    {
        float *ak = xmalloc((size_t)(len * D) * sizeof(float));
        float *av = xmalloc((size_t)(len * D) * sizeof(float));
        float *p = xmalloc((size_t)len * sizeof(float)), *ds = xmalloc((size_t)len * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < nchunks * s->Hkv; u++)
            unit_dkdv(dk, dv, dout, q, k, v, lse, delta, r, inv, u / s->Hkv, (int)(u % s->Hkv), ak,
                      av, p, ds);
        free(ds);
        free(p);
        free(av);
        free(ak);
    }
}

void attn_rows_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        const struct attn_rows *r, const struct attn_inverse *inv) {
    check_shape(r);
    float *delta = row_deltas(dout, out, r->s);
    backward_dq(dq, dout, q, k, v, lse, delta, r);
    backward_dkdv(dk, dv, dout, q, k, v, lse, delta, r, inv);
    free(delta);
}

/* ---- attention.h ---- */

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
