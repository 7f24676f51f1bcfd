/*
 * attention_cpu.c: CPU reference of attention.h (dense causal GQA attention, forward and backward)
 * and the row machinery of attn_cpu_impl.h that infllmv2_cpu.c restricts to selected blocks.
 *
 * Dimensions: Tq query rows, Tk key rows, Hq query heads, Hkv KV heads, G = Hq / Hkv (query head h
 * reads KV head h / G), D head dim. A "query vector" is one (row i, head h); pos = q_pos0 + i.
 * Layouts: q, out, dout, dq (Tq, Hq, D) q_stride apart; k, v, dk, dv (Tk, Hkv, D) kv_stride apart;
 * lse (Tq, Hq). Gradient rule: the backward ADDS into dq, dk, dv.
 *
 * Keys come in blocks: dense rows read the blocks [ds + 64e, ds + 64e + 64) for ds + 64e <= pos,
 * where ds is the row's document start (attn_shape.doc_start; 0 without documents), so they do
 * not depend on the call's q_pos0; sparse rows read their selected blocks [bB, bB + B),
 * B = block_size. A block is processed in pieces of at most CHUNK = 64 keys from its start, each
 * cut at the row's pos. A query vector's result depends only on its own pieces, in ascending
 * order, never on the other rows of its tile or call, so splitting the queries into calls
 * (context parallelism) reproduces out, lse and dq bitwise; and a document packed at ds reads
 * the very pieces it reads alone at 0 (its keys shifted by ds), so its out, lse and dq are those
 * of the document alone, bitwise.
 *
 * Work units: the forward and dq passes take tiles of ROW_TILE rows x one KV head (all G heads);
 * a tile walks the ascending union of its rows' blocks, loads each piece once (K and V transposed
 * to (D, CHUNK), so scores are vector FMAs without horizontal sums) and applies it to the rows
 * that read it. The dk/dv pass takes (block, KV head) units of 64 keys from position 0 and walks
 * the rows that read the block in ascending order (dense: every row at or past its first key whose
 * document starts before its end; sparse: the CSR inverse of the selection), each row over its
 * own keys of the block, then adds into dk, dv once. A key's sum runs over the rows that read it
 * in row order (the others add exact zeros), so dk and dv of a packed document are also those of
 * the document alone. No float atomics and no cross-thread reduction: results are bitwise
 * independent of the thread count.
 *
 * Numerics, fp32 throughout: online softmax per piece (piece max, running max m, the piece's sum
 * of exponentials added to the running sum l, output accumulator rescaled when m grows);
 * exponentials by exp_f32 (cpu_math.h, <= 1.5 ulp); backward P and dS recomputed from lse
 * (flash-attention algebra, delta_i = dout_i . out_i). A row that reads no key (only possible
 * with a sparse selection) gets out = 0, lse = -INFINITY and contributes no gradient.
 */
#include "attention.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "attn_cpu_impl.h"
#include "cpu_math.h"
#include "check.h"

enum {
    CHUNK = 64,    /* keys per piece: dense block length and the sparse piece limit */
    ROW_TILE = 16, /* query rows of a forward / dq unit */
    KV_BATCH = 16, /* (row, head) pairs whose dk/dv updates are applied in one sweep */
};


static float dot(const float *a, const float *b, int D) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

/* 16-float GNU C vectors (one AVX-512 register, two AVX2 ones): the hot loops below keep their
 * accumulators in registers, which GCC's auto-vectoriser does not do for these loop nests. Every
 * element is still accumulated by one chain of (fused) multiply-adds in a fixed order, and the
 * scalar tails use the same order. */
typedef float vf16 __attribute__((vector_size(64)));
_Static_assert(CHUNK == 64, "piece_scores holds a piece in four 16-float vectors");

static inline vf16 vload(const float *p) {
    vf16 x;
    memcpy(&x, p, sizeof x);
    return x;
}

static inline void vstore(float *p, vf16 x) { memcpy(p, &x, sizeof x); }

static inline vf16 vsplat(float x) { return (vf16){0} + x; }

/* ---- one piece of keys ---- */

/* yt (D, CHUNK) = the n rows of y (stride apart) transposed, columns n..CHUNK-1 zero. */
static void piece_transpose(float *yt, const float *y, int64_t stride, int64_t n, int D) {
    for (int d = 0; d < D; d++) {
        float *o = yt + (int64_t)d * CHUNK;
        for (int64_t c = 0; c < n; c++) o[c] = y[c * stride + d];
        for (int64_t c = n; c < CHUNK; c++) o[c] = 0;
    }
}

/* s[c] = scale * x . y_c for all CHUNK columns of yt (D, CHUNK), summed over d in order. */
static void piece_scores(float *s, const float *x, const float *yt, int D, float scale) {
    vf16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int d = 0; d < D; d++) {
        vf16 xd = vsplat(x[d]);
        const float *row = yt + (int64_t)d * CHUNK;
        a0 += xd * vload(row);
        a1 += xd * vload(row + 16);
        a2 += xd * vload(row + 32);
        a3 += xd * vload(row + 48);
    }
    vf16 sc = vsplat(scale);
    vstore(s, sc * a0);
    vstore(s + 16, sc * a1);
    vstore(s + 32, sc * a2);
    vstore(s + 48, sc * a3);
}

/* acc[d] += sum_c w[c] * y_c[d] over n rows of y (stride apart), c in order for every d. */
static void piece_axpy(float *acc, const float *w, const float *y, int64_t stride, int64_t n,
                       int D) {
    int d = 0;
    for (; d + 64 <= D; d += 64) {
        vf16 a0 = vload(acc + d), a1 = vload(acc + d + 16), a2 = vload(acc + d + 32),
             a3 = vload(acc + d + 48);
        for (int64_t c = 0; c < n; c++) {
            vf16 wc = vsplat(w[c]);
            const float *yc = y + c * stride + d;
            a0 += wc * vload(yc);
            a1 += wc * vload(yc + 16);
            a2 += wc * vload(yc + 32);
            a3 += wc * vload(yc + 48);
        }
        vstore(acc + d, a0), vstore(acc + d + 16, a1), vstore(acc + d + 32, a2);
        vstore(acc + d + 48, a3);
    }
    for (; d + 16 <= D; d += 16) {
        vf16 a0 = vload(acc + d);
        for (int64_t c = 0; c < n; c++) a0 += vsplat(w[c]) * vload(y + c * stride + d);
        vstore(acc + d, a0);
    }
    for (; d < D; d++) {
        float a = acc[d];
        for (int64_t c = 0; c < n; c++) a += w[c] * y[c * stride + d];
        acc[d] = a;
    }
}

/* ---- the blocks of a row ---- */

static int64_t block_len(const struct attn_rows *r) { return r->sel ? r->block_size : CHUNK; }

/* The first key row i may read: its document's start (0 without documents). */
static int64_t row_doc_start(const struct attn_shape *s, int64_t i) {
    return s->doc_start ? s->doc_start[i] : 0;
}

/* First key of block e (0, 1, ...) of row i, KV head g, or -1 past the row's last. */
static int64_t row_block(const struct attn_rows *r, int64_t i, int g, int64_t e) {
    const struct attn_shape *s = r->s;
    if (!r->sel) {
        int64_t j0 = row_doc_start(s, i) + e * CHUNK;
        return j0 <= s->q_pos0 + i ? j0 : -1;
    }
    if (e >= r->nsel) return -1;
    const int32_t *list = r->sel + (i * s->Hkv + g) * r->nsel;
    if (list[e] < 0) return -1;
    CHECKF((int64_t)list[e] * r->block_size < s->Tk && (e == 0 || list[e] > list[e - 1]),
           "selection of row %lld, KV head %d: block %d past Tk or not ascending", (long long)i,
           g, (int)list[e]);
    return (int64_t)list[e] * r->block_size;
}

/* Keys of [j0, j1) that a query vector at pos reads: j1 cut at pos + 1 (<= 0 when none). */
static int64_t cut_len(int64_t j0, int64_t j1, int64_t pos) {
    return (j1 < pos + 1 ? j1 : pos + 1) - j0;
}

/* First key of the next block of the ascending union of the lists of rows i0..i0+nr-1 (cursor
 * cur[a] each), or -1; reads[a] set for the rows whose current block it is. The caller advances
 * their cursors. */
static int64_t tile_next_block(const struct attn_rows *r, int64_t i0, int64_t nr, int g,
                               const int64_t *cur, bool *reads) {
    int64_t next = -1;
    for (int64_t a = 0; a < nr; a++) {
        int64_t b = row_block(r, i0 + a, g, cur[a]);
        if (b >= 0 && (next < 0 || b < next)) next = b;
    }
    for (int64_t a = 0; a < nr; a++) reads[a] = next >= 0 && row_block(r, i0 + a, g, cur[a]) == next;
    return next;
}

static void check_shape(const struct attn_rows *r) {
    const struct attn_shape *s = r->s;
    CHECK(s->Hq > 0 && s->Hkv > 0 && s->D > 0 && s->Hq % s->Hkv == 0);
    CHECK(s->Tq >= 0 && s->q_pos0 >= 0 && s->Tk >= s->q_pos0 + s->Tq);
    CHECK(s->q_stride >= (int64_t)s->Hq * s->D && s->kv_stride >= (int64_t)s->Hkv * s->D);
    CHECK(!r->sel || (r->nsel > 0 && r->block_size > 0));
    CHECKF(!r->sel || !s->doc_start, "sparse attention takes no doc_start: a sparse document is "
           "its own call");
    for (int64_t i = 0; s->doc_start && i < s->Tq; i++)
        CHECKF(s->doc_start[i] >= (i ? s->doc_start[i - 1] : 0) && s->doc_start[i] <= s->q_pos0 + i,
               "doc_start[%lld] = %d: expected non-decreasing and <= the row's position %lld",
               (long long)i, (int)s->doc_start[i], (long long)(s->q_pos0 + i));
}

/* Per-thread scratch of every pass. */
struct scratch {
    float *kt, *vt;         /* (D, CHUNK) transposed piece of K and V */
    float *s, *p;           /* (CHUNK) scores / probabilities, dS */
    float *acc;             /* forward / dq: (ROW_TILE * G, D); dk/dv: (CHUNK, D) for dk */
    float *acc2;            /* dk/dv: (CHUNK, D) for dv */
    float *m, *l;           /* forward: (ROW_TILE * G) running max and sum */
    int64_t *cur;           /* (ROW_TILE) block cursors */
    bool *reads;            /* (ROW_TILE) */
    float *bp, *bds;        /* dk/dv: (KV_BATCH, CHUNK) P and dS of the batched pairs */
    const float **bx, **bg; /* dk/dv: (KV_BATCH) their q and dout rows */
};

static struct scratch scratch_alloc(const struct attn_shape *s) {
    int64_t G = s->Hq / s->Hkv, nq = ROW_TILE * G, D = s->D;
    int64_t na = nq * D > CHUNK * D ? nq * D : CHUNK * D;
    struct scratch w;
    w.kt = xmalloc((size_t)(D * CHUNK) * sizeof(float));
    w.vt = xmalloc((size_t)(D * CHUNK) * sizeof(float));
    w.s = xmalloc(CHUNK * sizeof(float));
    w.p = xmalloc(CHUNK * sizeof(float));
    w.acc = xmalloc((size_t)na * sizeof(float));
    w.acc2 = xmalloc((size_t)(CHUNK * D) * sizeof(float));
    w.m = xmalloc((size_t)nq * sizeof(float));
    w.l = xmalloc((size_t)nq * sizeof(float));
    w.cur = xmalloc(ROW_TILE * sizeof(int64_t));
    w.reads = xmalloc(ROW_TILE * sizeof(bool));
    w.bp = xmalloc(KV_BATCH * CHUNK * sizeof(float));
    w.bds = xmalloc(KV_BATCH * CHUNK * sizeof(float));
    w.bx = xmalloc(KV_BATCH * sizeof(float *));
    w.bg = xmalloc(KV_BATCH * sizeof(float *));
    return w;
}

static void scratch_free(struct scratch *w) {
    free(w->kt), free(w->vt), free(w->s), free(w->p), free(w->acc), free(w->acc2);
    free(w->m), free(w->l), free(w->cur), free(w->reads);
    free(w->bp), free(w->bds), free(w->bx), free(w->bg);
}

/* ---- forward ---- */

/* Adds n keys of the loaded piece to query vector x's state (m, l, acc (D)); v rows stride apart. */
static void piece_forward(float *m, float *l, float *acc, const float *x, const float *v,
                          int64_t stride, int64_t n, int D, float scale, struct scratch *w) {
    float *sc = w->s, *p = w->p, pm = -INFINITY, pl = 0;
    piece_scores(sc, x, w->kt, D, scale);
    /* fixed-length loops vectorise; lanes c >= n hold p = 0, which adds exactly nothing */
#pragma omp simd reduction(max : pm)
    for (int c = 0; c < CHUNK; c++) {
        float sc_c = c < n ? sc[c] : -INFINITY;
        pm = sc_c > pm ? sc_c : pm;
    }
    float mn = pm > *m ? pm : *m;
#pragma omp simd reduction(+ : pl)
    for (int c = 0; c < CHUNK; c++) {
        float e = exp_f32(sc[c] - mn);
        p[c] = c < n ? e : 0.0f;
        pl += p[c];
    }
    if (mn != *m) { /* rescale; a factor of exactly 1 is skipped, which changes no bit */
        float alpha = exp_f32(*m - mn);
        *l *= alpha;
#pragma omp simd
        for (int d = 0; d < D; d++) acc[d] *= alpha;
        *m = mn;
    }
    *l += pl;
    piece_axpy(acc, p, v, stride, n, D);
}

/* Forward of rows [i0, i0 + nr), KV head g, all G heads of the group. */
static void unit_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                         const struct attn_rows *r, int64_t i0, int64_t nr, int g,
                         struct scratch *w) {
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D;
    int64_t len = block_len(r), b;
    for (int64_t a = 0; a < nr * G; a++) w->m[a] = -INFINITY, w->l[a] = 0;
    memset(w->acc, 0, (size_t)(nr * G * D) * sizeof(float));
    memset(w->cur, 0, (size_t)nr * sizeof(int64_t));
    while ((b = tile_next_block(r, i0, nr, g, w->cur, w->reads)) >= 0) {
        int64_t bend = b + len < s->Tk ? b + len : s->Tk;
        for (int64_t j0 = b; j0 < bend; j0 += CHUNK) {
            int64_t j1 = j0 + CHUNK < bend ? j0 + CHUNK : bend;
            const float *kc = k + j0 * s->kv_stride + (int64_t)g * D;
            const float *vc = v + j0 * s->kv_stride + (int64_t)g * D;
            piece_transpose(w->kt, kc, s->kv_stride, j1 - j0, D);
            for (int64_t a = 0; a < nr; a++) {
                int64_t n = cut_len(j0, j1, s->q_pos0 + i0 + a);
                for (int hh = 0; hh < G && w->reads[a] && n > 0; hh++) {
                    int64_t x = a * G + hh, h = (int64_t)g * G + hh;
                    piece_forward(&w->m[x], &w->l[x], w->acc + x * D,
                                  q + (i0 + a) * s->q_stride + h * D, vc, s->kv_stride, n, D,
                                  s->scale, w);
                }
            }
        }
        for (int64_t a = 0; a < nr; a++) w->cur[a] += w->reads[a];
    }
    for (int64_t x = 0; x < nr * G; x++) {
        int64_t i = i0 + x / G, h = (int64_t)g * G + x % G;
        float *o = out + i * s->q_stride + h * D, inv = w->l[x] > 0 ? 1.0f / w->l[x] : 0.0f;
        for (int d = 0; d < D; d++) o[d] = w->acc[x * D + d] * inv;
        lse[i * s->Hq + h] = w->l[x] > 0 ? w->m[x] + logf(w->l[x]) : -INFINITY;
    }
}

void attn_rows_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const struct attn_rows *r) {
    check_shape(r);
    const struct attn_shape *s = r->s;
    int64_t ntiles = (s->Tq + ROW_TILE - 1) / ROW_TILE;
#pragma omp parallel
    {
        struct scratch w = scratch_alloc(s);
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < ntiles * s->Hkv; u++) {
            int64_t i0 = (u / s->Hkv) * ROW_TILE;
            int64_t nr = s->Tq - i0 < ROW_TILE ? s->Tq - i0 : ROW_TILE;
            unit_forward(out, lse, q, k, v, r, i0, nr, (int)(u % s->Hkv), &w);
        }
        scratch_free(&w);
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
            delta[i * s->Hq + h] = dot(dout + off, out + off, s->D);
        }
    return delta;
}

/* For query vector x with output gradient gx and the loaded piece w->kt, w->vt, over its keys
 * lo <= c < n: P = exp(scale x.k - lse) and dS = P (gx.v - delta); both (CHUNK), zero elsewhere. */
static void piece_probs(float *P, float *dS, const float *x, const float *gx, int64_t lo,
                        int64_t n, int D, float scale, float lse, float delta,
                        const struct scratch *w) {
    piece_scores(P, x, w->kt, D, scale);
    piece_scores(dS, gx, w->vt, D, 1.0f);
#pragma omp simd
    for (int c = 0; c < CHUNK; c++) {
        float e = exp_f32(P[c] - lse), ds = e * (dS[c] - delta);
        P[c] = c >= lo && c < n ? e : 0.0f;
        dS[c] = c >= lo && c < n ? ds : 0.0f;
    }
}

/* dq of rows [i0, i0 + nr), KV head g. */
static void unit_dq(float *dq, const float *dout, const float *q, const float *k, const float *v,
                    const float *lse, const float *delta, const struct attn_rows *r, int64_t i0,
                    int64_t nr, int g, struct scratch *w) {
    const struct attn_shape *s = r->s;
    int G = s->Hq / s->Hkv, D = s->D;
    int64_t len = block_len(r), b;
    memset(w->acc, 0, (size_t)(nr * G * D) * sizeof(float));
    memset(w->cur, 0, (size_t)nr * sizeof(int64_t));
    while ((b = tile_next_block(r, i0, nr, g, w->cur, w->reads)) >= 0) {
        int64_t bend = b + len < s->Tk ? b + len : s->Tk;
        for (int64_t j0 = b; j0 < bend; j0 += CHUNK) {
            int64_t j1 = j0 + CHUNK < bend ? j0 + CHUNK : bend;
            const float *kc = k + j0 * s->kv_stride + (int64_t)g * D;
            piece_transpose(w->kt, kc, s->kv_stride, j1 - j0, D);
            piece_transpose(w->vt, v + j0 * s->kv_stride + (int64_t)g * D, s->kv_stride, j1 - j0, D);
            for (int64_t a = 0; a < nr; a++) {
                int64_t n = cut_len(j0, j1, s->q_pos0 + i0 + a);
                for (int hh = 0; hh < G && w->reads[a] && n > 0; hh++) {
                    int64_t x = a * G + hh, h = (int64_t)g * G + hh, i = i0 + a;
                    int64_t off = i * s->q_stride + h * D;
                    piece_probs(w->s, w->p, q + off, dout + off, 0, n, D, s->scale,
                                lse[i * s->Hq + h], delta[i * s->Hq + h], w);
                    piece_axpy(w->acc + x * D, w->p, kc, s->kv_stride, n, D);
                }
            }
        }
        for (int64_t a = 0; a < nr; a++) w->cur[a] += w->reads[a];
    }
    for (int64_t x = 0; x < nr * G; x++) {
        int64_t i = i0 + x / G, h = (int64_t)g * G + x % G;
        float *o = dq + i * s->q_stride + h * D;
        for (int d = 0; d < D; d++) o[d] += s->scale * w->acc[x * D + d];
    }
}

static void backward_dq(float *dq, const float *dout, const float *q, const float *k,
                        const float *v, const float *lse, const float *delta,
                        const struct attn_rows *r) {
    const struct attn_shape *s = r->s;
    int64_t ntiles = (s->Tq + ROW_TILE - 1) / ROW_TILE;
#pragma omp parallel
    {
        struct scratch w = scratch_alloc(s);
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < ntiles * s->Hkv; u++) {
            int64_t i0 = (u / s->Hkv) * ROW_TILE;
            int64_t nr = s->Tq - i0 < ROW_TILE ? s->Tq - i0 : ROW_TILE;
            unit_dq(dq, dout, q, k, v, lse, delta, r, i0, nr, (int)(u % s->Hkv), &w);
        }
        scratch_free(&w);
    }
}

/* The query rows reading block e of KV head g, ascending: dense, every row at or past the block's
 * first key whose document starts before the block's end (doc_start is non-decreasing: a prefix
 * of those rows, found by bisection); sparse, the inverse of the selection. Either
 * [*first, *first + n) (list NULL) or list[0..n). */
static int64_t block_rows(const struct attn_rows *r, const struct attn_inverse *inv, int g,
                          int64_t e, int64_t *first, const int32_t **list) {
    const struct attn_shape *s = r->s;
    if (!r->sel) {
        int64_t f = e * CHUNK - s->q_pos0, last = s->Tq;
        *first = f > 0 ? f : 0;
        *list = NULL;
        if (s->doc_start) { /* last = the first row at or past *first whose document starts later */
            int64_t lo = *first, hi = s->Tq;
            while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (s->doc_start[mid] < (e + 1) * CHUNK)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            last = lo;
        }
        return last - *first > 0 ? last - *first : 0;
    }
    int64_t a = inv->off[(int64_t)g * inv->nblk + e], b = inv->off[(int64_t)g * inv->nblk + e + 1];
    *first = 0;
    *list = inv->rows + a;
    return b - a;
}

/* ak[c] += sum_e dS_e[c] q_e and av[c] += sum_e P_e[c] dout_e over the nb batched pairs, in
 * order, for keys c < nmax (pairs with fewer keys have zero P, dS there, which adds exactly 0).
 * ak, av (CHUNK, D). */
static void batch_flush(float *ak, float *av, const struct scratch *w, int nb, int64_t nmax, int D) {
    for (int64_t c = 0; c < nmax; c++) {
        float *akc = ak + c * D, *avc = av + c * D;
        int d = 0;
        for (; d + 32 <= D; d += 32) {
            vf16 k0 = vload(akc + d), k1 = vload(akc + d + 16);
            vf16 v0 = vload(avc + d), v1 = vload(avc + d + 16);
            for (int e = 0; e < nb; e++) {
                vf16 ds = vsplat(w->bds[e * CHUNK + c]), p = vsplat(w->bp[e * CHUNK + c]);
                const float *x = w->bx[e] + d, *g = w->bg[e] + d;
                k0 += ds * vload(x), k1 += ds * vload(x + 16);
                v0 += p * vload(g), v1 += p * vload(g + 16);
            }
            vstore(akc + d, k0), vstore(akc + d + 16, k1);
            vstore(avc + d, v0), vstore(avc + d + 16, v1);
        }
        for (; d + 16 <= D; d += 16) {
            vf16 k0 = vload(akc + d), v0 = vload(avc + d);
            for (int e = 0; e < nb; e++) {
                k0 += vsplat(w->bds[e * CHUNK + c]) * vload(w->bx[e] + d);
                v0 += vsplat(w->bp[e * CHUNK + c]) * vload(w->bg[e] + d);
            }
            vstore(akc + d, k0), vstore(avc + d, v0);
        }
        for (; d < D; d++)
            for (int e = 0; e < nb; e++) {
                akc[d] += w->bds[e * CHUNK + c] * w->bx[e][d];
                avc[d] += w->bp[e * CHUNK + c] * w->bg[e][d];
            }
    }
}

/* dk, dv of keys [j0, j1) (one piece) of KV head g over the rows reading its block, in order. */
static void piece_dkdv(float *dk, float *dv, const float *dout, const float *q, const float *k,
                       const float *v, const float *lse, const float *delta,
                       const struct attn_shape *s, int g, int64_t j0, int64_t j1, int64_t first,
                       const int32_t *list, int64_t nrows, struct scratch *w) {
    int G = s->Hq / s->Hkv, D = s->D, nb = 0;
    piece_transpose(w->kt, k + j0 * s->kv_stride + (int64_t)g * D, s->kv_stride, j1 - j0, D);
    piece_transpose(w->vt, v + j0 * s->kv_stride + (int64_t)g * D, s->kv_stride, j1 - j0, D);
    float *ak = w->acc, *av = w->acc2;
    memset(ak, 0, (size_t)((j1 - j0) * D) * sizeof(float));
    memset(av, 0, (size_t)((j1 - j0) * D) * sizeof(float));
    int64_t nmax = 0;
    for (int64_t t = 0; t < nrows; t++) {
        int64_t i = list ? list[t] : first + t;
        int64_t n = cut_len(j0, j1, s->q_pos0 + i), ds = row_doc_start(s, i);
        int64_t lo = ds > j0 ? ds - j0 : 0; /* keys of earlier documents */
        for (int hh = 0; hh < G && n > lo; hh++) {
            int64_t h = (int64_t)g * G + hh, off = i * s->q_stride + h * D;
            piece_probs(w->bp + nb * CHUNK, w->bds + nb * CHUNK, q + off, dout + off, lo, n, D,
                        s->scale, lse[i * s->Hq + h], delta[i * s->Hq + h], w);
            w->bx[nb] = q + off;
            w->bg[nb] = dout + off;
            nmax = n > nmax ? n : nmax;
            if (++nb == KV_BATCH) {
                batch_flush(ak, av, w, nb, nmax, D);
                nb = 0, nmax = 0;
            }
        }
    }
    batch_flush(ak, av, w, nb, nmax, D);
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
    int64_t len = block_len(r), nblk = (s->Tk + len - 1) / len;
    CHECK(!r->sel || (inv && inv->nblk == nblk));
#pragma omp parallel
    {
        struct scratch w = scratch_alloc(s);
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < nblk * s->Hkv; u++) {
            int64_t e = u / s->Hkv, first;
            int g = (int)(u % s->Hkv);
            const int32_t *list;
            int64_t nrows = block_rows(r, inv, g, e, &first, &list);
            int64_t bend = e * len + len < s->Tk ? e * len + len : s->Tk;
            for (int64_t j0 = e * len; j0 < bend && nrows > 0; j0 += CHUNK)
                piece_dkdv(dk, dv, dout, q, k, v, lse, delta, s, g, j0,
                           j0 + CHUNK < bend ? j0 + CHUNK : bend, first, list, nrows, &w);
        }
        scratch_free(&w);
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
