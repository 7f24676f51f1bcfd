/*
 * test_infllmv2_select.c: the block selection of the InfLLM-V2 CPU reference (kernels/infllmv2.h,
 * stages 0-2) against a float64 implementation of ../shared/INFLLMV2.md written here,
 * independently of the kernel code (stage 3, sparse attention on the selection, is
 * test_infllmv2_sparse.c):
 *
 *   stage 0   K1 and K2 (window means) against float64, row strides wider than Hkv * D.
 *   stage 1   group scores S of every (token, KV head) against float64 (visibility by window end,
 *             normaliser over visible K2 or K1, no renormalisation, group sum); rows that see no
 *             normalising key must be exactly 0 (the T < 128 guard), never NaN.
 *   stage 2   block scores: the pooling written as "windows overlapping the block", applied to the
 *             kernel's own fp32 S, must equal the kernel exactly (a max is exact); top-k by a full
 *             sort of the kernel's block scores must equal the kernel exactly; infllm_select_cpu
 *             must equal the single-row functions chained; the selection from the all-float64
 *             chain must agree up to near-ties (every kernel choice is a valid top-k of the float64
 *             scores within a relative 1e-4); selection facts (forced blocks present, nothing past
 *             b(t), ascending, -1 padding, count = min(nsel, b(t) + 1)); deliberate ties (identical
 *             keys) resolved to lower block indices.
 *   sizes     infllm_num_windows and infllm_num_selected at the edges.
 * Sizes: the table PROBLEMS of infllmv2_setup.c: T = 100 (< 128: the guard), 200, 500, 700, 900,
 * 1100 (none a multiple of 64), 4096 and 8192 (top-k drops blocks; the defaults at 8192); G = 1,
 * 2, 4, 8; both lse_approx settings; block sizes 32, 64, 128; windows 24/8 and 32/16.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infllmv2_setup.h"

/* Tolerances. The kernel computes in fp32: head dims <= 64 of O(1) values give logits with
 * absolute error ~1e-6, hence exp() and normalisers with relative error ~1e-6; we allow 100x.
 * Compression means of <= 128 values: error ~1e-7 relative. Observed: every check still passes
 * with all tolerances divided by 10. */
#define COMP_ATOL 1e-6
#define COMP_RTOL 1e-5
#define S_ATOL 1e-7
#define S_RTOL 1e-4
#define TIE_RTOL 1e-4 /* float64 scores of blocks the kernel swapped must be this close */

/* ---- float64 reference of stages 0-2 (INFLLMV2.md) ---- */

/* kc[c, g, :] = mean over the window's rows of k; (n, Hkv, D). */
static void ref_compress(double *kc, const double *k, int64_t kv_stride, int64_t n, int Hkv, int D,
                         int ks, int st) {
    for (int64_t c = 0; c < n; c++)
        for (int64_t x = 0; x < (int64_t)Hkv * D; x++) {
            double a = 0;
            for (int r = 0; r < ks; r++) a += k[(c * st + r) * kv_stride + x];
            kc[c * Hkv * D + x] = a / ks;
        }
}

/* A window [c*st, c*st + ks - 1] is visible to t once it has ended. */
static bool window_visible(int64_t c, int ks, int st, int64_t t) { return c * st + ks - 1 <= t; }


/* S[c] (L1) for token t, KV head g; K1, K2 in float64 (L, Hkv, D). */
static void ref_group_scores(double *S, const struct setup *st, const double *q_t, int64_t t, int g,
                             const double *k1, const double *k2) {
    const struct infllm_params *p = &st->p;
    int Hkv = st->s.Hkv, D = st->s.D, G = st->s.Hq / Hkv, ks = p->kernel_size,
        sd = p->kernel_stride;
    for (int64_t c = 0; c < st->L1; c++) S[c] = 0;
    for (int hh = 0; hh < G; hh++) {
        const double *q = q_t + (g * G + hh) * D;
        double m = -INFINITY, l = 0;
        int64_t nn = p->lse_approx ? st->L2 : st->L1;
        const double *kn = p->lse_approx ? k2 : k1;
        int nks = p->lse_approx ? 4 * ks : ks, nsd = p->lse_approx ? 4 * sd : sd;
        for (int64_t e = 0; e < nn; e++)
            if (window_visible(e, nks, nsd, t))
                m = fmax(m, ref_logit(q, kn + (e * Hkv + g) * D, D, st->s.scale));
        for (int64_t e = 0; e < nn; e++)
            if (window_visible(e, nks, nsd, t))
                l += exp(ref_logit(q, kn + (e * Hkv + g) * D, D, st->s.scale) - m);
        if (l == 0) continue; /* nothing normalises: scores stay 0 */
        for (int64_t c = 0; c < st->L1; c++)
            if (window_visible(c, ks, sd, t))
                S[c] += exp(ref_logit(q, k1 + (c * Hkv + g) * D, D, st->s.scale) - m) / l;
    }
}

/* score[j] (nblk): max of S over visible windows that overlap block j; forced blocks +inf.
 * Window-centric (each window updates the blocks its token range touches), unlike the kernel. */
static void ref_block_scores(double *score, const double *S, const struct setup *st, int64_t t) {
    const struct infllm_params *p = &st->p;
    int ks = p->kernel_size, sd = p->kernel_stride, B = p->block_size;
    int64_t bt = t / B;
    for (int64_t j = 0; j < st->nblk; j++) score[j] = -INFINITY;
    for (int64_t c = 0; c < st->L1 && window_visible(c, ks, sd, t); c++)
        for (int64_t tok = c * sd; tok < c * sd + ks; tok++)
            if (tok / B < st->nblk) score[tok / B] = fmax(score[tok / B], S[c]);
    for (int64_t j = 0; j < st->nblk; j++)
        if (j < p->init_blocks || (j >= bt - p->local_blocks && j <= bt)) score[j] = INFINITY;
}

struct ranked {
    double score;
    int32_t j;
};

static int ranked_cmp(const void *a, const void *b) {
    const struct ranked *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

static int i32_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Full sort by (score desc, index asc), keep nsel, drop j > b(t), ascending, -1 padded. */
static int ref_topk(int32_t *sel, const double *score, int64_t nblk, int nsel, int64_t t, int B) {
    struct ranked *r = xmalloc((size_t)nblk * sizeof(*r));
    for (int64_t j = 0; j < nblk; j++) r[j] = (struct ranked){score[j], (int32_t)j};
    qsort(r, (size_t)nblk, sizeof(*r), ranked_cmp);
    int n = 0;
    for (int64_t x = 0; x < nblk && x < nsel; x++)
        if (r[x].j <= t / B) sel[n++] = r[x].j;
    qsort(sel, (size_t)n, sizeof(int32_t), i32_cmp);
    for (int x = n; x < nsel; x++) sel[x] = -1;
    free(r);
    return n;
}

/* ---- stage 0 ---- */

static void check_compress(const struct setup *st) {
    int Hkv = st->s.Hkv, D = st->s.D, ks = st->p.kernel_size, sd = st->p.kernel_stride;
    int64_t KD = (int64_t)Hkv * D;
    char label[128];
    double *r1 = xmalloc((size_t)(st->L1 * KD + 1) * sizeof(double));
    ref_compress(r1, st->kd, st->s.kv_stride, st->L1, Hkv, D, ks, sd);
    double *g1 = to_double(st->k1, st->L1 * KD);
    snprintf(label, sizeof label, "%s K1", st->name);
    t_close_d(label, g1, r1, st->L1 * KD, COMP_ATOL, COMP_RTOL);
    free(g1), free(r1);
    if (st->L2 > 0) {
        double *r2 = xmalloc((size_t)(st->L2 * KD) * sizeof(double));
        ref_compress(r2, st->kd, st->s.kv_stride, st->L2, Hkv, D, 4 * ks, 4 * sd);
        double *g2 = to_double(st->k2, st->L2 * KD);
        snprintf(label, sizeof label, "%s K2", st->name);
        t_close_d(label, g2, r2, st->L2 * KD, COMP_ATOL, COMP_RTOL);
        free(g2), free(r2);
    }
}

/* ---- stages 1-2, row by row ---- */

/* Failure counts of the per-row checks of one setup. */
struct stage_stats {
    int64_t rows, s_bad, s_nonzero_guard, pool_bad, topk_bad, chain_bad, facts_bad, tie_bad,
        differ;
    int64_t first_bad_row; /* for the report */
};

static void note_bad(struct stage_stats *ss, int64_t *counter, int64_t t) {
    if (*counter == 0 && ss->first_bad_row < 0) ss->first_bad_row = t;
    (*counter)++;
}

/* Forced blocks present, nothing past b(t), strictly ascending, -1 padding, the right count.
 * The forced blocks (at most init_blocks + local_blocks + 1) always fit in nsel = topk +
 * local_blocks only when topk > init_blocks; otherwise the +inf ties go to the lower indices and
 * the token's own block can be cut (a configuration to reject), so presence is checked only then. */
static bool selection_facts(const int32_t *sel, int nsel, int64_t t, const struct infllm_params *p) {
    int64_t bt = t / p->block_size;
    int64_t want = nsel < bt + 1 ? nsel : bt + 1;
    int n = 0;
    while (n < nsel && sel[n] >= 0) n++;
    if (n != want) return false;
    for (int x = n; x < nsel; x++)
        if (sel[x] != -1) return false;
    for (int x = 0; x < n; x++)
        if (sel[x] > bt || (x > 0 && sel[x] <= sel[x - 1])) return false;
    for (int64_t j = 0; j <= bt; j++) {
        bool forced = j < p->init_blocks || j >= bt - p->local_blocks;
        bool found = false;
        for (int x = 0; x < n; x++) found |= sel[x] == j;
        if (forced && !found && p->topk > p->init_blocks) return false;
    }
    return true;
}

/* The kernel's choice is a top-k of the float64 scores up to near-ties: every selected block scores
 * at least as high as every unselected block j <= b(t), within TIE_RTOL. */
static bool valid_topk(const int32_t *sel, int nsel, const double *score, int64_t t, int B) {
    int64_t bt = t / B;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t j = 0; j <= bt; j++) {
        bool in = false;
        for (int x = 0; x < nsel && sel[x] >= 0; x++) in |= sel[x] == j;
        if (in) lo = fmin(lo, score[j]);
        else hi = fmax(hi, score[j]);
    }
    return hi == -INFINITY || lo >= hi - TIE_RTOL * fabs(hi);
}

static bool rows_close(const float *got, const double *ref, int64_t n, double atol, double rtol) {
    for (int64_t x = 0; x < n; x++)
        if (!(fabs(got[x] - ref[x]) <= atol + rtol * fabs(ref[x]))) return false;
    return true;
}

/* One (token t, KV head g): every stage against the references. Scratch sized L1 / nblk / nsel. */
struct row_scratch {
    float *S, *score;
    double *Sd, *Sk, *scd, *sck;
    int32_t *sel_a, *sel_b;
};

static void check_row(struct stage_stats *ss, const struct setup *st, int64_t t, int g,
                      const double *k1d, const double *k2d, struct row_scratch *w) {
    const struct attn_shape *s = &st->s;
    int nsel = st->nsel, B = st->p.block_size;
    const float *qt = st->q + t * s->q_stride;
    infllm_group_scores_cpu(w->S, qt, t, g, st->k1, st->L1, st->k2, st->L2, s->Hq, s->Hkv, s->D,
                            s->scale, &st->p);
    ref_group_scores(w->Sd, st, st->qd + t * s->q_stride, t, g, k1d, k2d);
    if (!rows_close(w->S, w->Sd, st->L1, S_ATOL, S_RTOL)) note_bad(ss, &ss->s_bad, t);
    bool guard = st->p.lse_approx ? st->L2 == 0 || !window_visible(0, 4 * st->p.kernel_size,
                                                                    4 * st->p.kernel_stride, t)
                                   : !window_visible(0, st->p.kernel_size, st->p.kernel_stride, t);
    for (int64_t c = 0; c < st->L1 && guard; c++)
        if (w->S[c] != 0.0f) {
            note_bad(ss, &ss->s_nonzero_guard, t);
            break;
        }
    /* pooling and top-k on the kernel's own fp32 values: exact */
    infllm_block_scores_cpu(w->score, w->S, t, st->L1, st->nblk, &st->p);
    for (int64_t c = 0; c < st->L1; c++) w->Sk[c] = w->S[c];
    ref_block_scores(w->sck, w->Sk, st, t);
    for (int64_t j = 0; j < st->nblk; j++)
        if ((double)w->score[j] != w->sck[j]) {
            note_bad(ss, &ss->pool_bad, t);
            break;
        }
    infllm_topk_blocks_cpu(w->sel_a, w->score, st->nblk, nsel, t, B);
    ref_topk(w->sel_b, w->sck, st->nblk, nsel, t, B);
    if (memcmp(w->sel_a, w->sel_b, (size_t)nsel * sizeof(int32_t))) note_bad(ss, &ss->topk_bad, t);
    const int32_t *sel = st->sel + (t * s->Hkv + g) * nsel;
    if (memcmp(sel, w->sel_a, (size_t)nsel * sizeof(int32_t))) note_bad(ss, &ss->chain_bad, t);
    if (!selection_facts(sel, nsel, t, &st->p)) note_bad(ss, &ss->facts_bad, t);
    /* the all-float64 chain: equal up to near-ties */
    ref_block_scores(w->scd, w->Sd, st, t);
    ref_topk(w->sel_b, w->scd, st->nblk, nsel, t, B);
    if (memcmp(sel, w->sel_b, (size_t)nsel * sizeof(int32_t))) {
        ss->differ++;
        if (!valid_topk(sel, nsel, w->scd, t, B)) note_bad(ss, &ss->tie_bad, t);
    }
    ss->rows++;
}

static void check_stages(const struct setup *st) {
    const struct attn_shape *s = &st->s;
    int64_t KD = (int64_t)s->Hkv * s->D;
    double *k1d = xmalloc((size_t)(st->L1 * KD + 1) * sizeof(double));
    double *k2d = xmalloc((size_t)(st->L2 * KD + 1) * sizeof(double));
    ref_compress(k1d, st->kd, s->kv_stride, st->L1, s->Hkv, s->D, st->p.kernel_size,
                 st->p.kernel_stride);
    ref_compress(k2d, st->kd, s->kv_stride, st->L2, s->Hkv, s->D, 4 * st->p.kernel_size,
                 4 * st->p.kernel_stride);
    struct row_scratch w;
    size_t L1 = (size_t)st->L1 + 1, nb = (size_t)st->nblk;
    w.S = xmalloc(L1 * sizeof(float)), w.score = xmalloc(nb * sizeof(float));
    w.Sd = xmalloc(L1 * sizeof(double)), w.Sk = xmalloc(L1 * sizeof(double));
    w.scd = xmalloc(nb * sizeof(double)), w.sck = xmalloc(nb * sizeof(double));
    w.sel_a = xmalloc((size_t)st->nsel * sizeof(int32_t));
    w.sel_b = xmalloc((size_t)st->nsel * sizeof(int32_t));
    struct stage_stats ss = {.first_bad_row = -1};
    for (int64_t t = 0; t < s->Tq; t++)
        for (int g = 0; g < s->Hkv; g++) check_row(&ss, st, t, g, k1d, k2d, &w);
    const char *n = st->name;
    int64_t fb = ss.first_bad_row;
    t_check(ss.s_bad == 0, "%s: stage-1 S off in %lld rows (first t=%lld)", n, (long long)ss.s_bad,
            (long long)fb);
    t_check(ss.s_nonzero_guard == 0, "%s: %lld guarded rows with nonzero S", n,
            (long long)ss.s_nonzero_guard);
    t_check(ss.pool_bad == 0, "%s: block pooling differs in %lld rows", n, (long long)ss.pool_bad);
    t_check(ss.topk_bad == 0, "%s: top-k differs from a full sort in %lld rows", n,
            (long long)ss.topk_bad);
    t_check(ss.chain_bad == 0, "%s: infllm_select_cpu differs from the row functions in %lld rows",
            n, (long long)ss.chain_bad);
    t_check(ss.facts_bad == 0, "%s: selection facts broken in %lld rows (first t=%lld)", n,
            (long long)ss.facts_bad, (long long)fb);
    t_check(ss.tie_bad == 0, "%s: selection not a float64 top-k in %lld rows (first t=%lld)", n,
            (long long)ss.tie_bad, (long long)fb);
    printf("%s: %lld (token, KV head) rows checked; %lld differ from the float64 chain by "
           "near-ties\n", n, (long long)ss.rows, (long long)ss.differ);
    free(w.S), free(w.score), free(w.Sd), free(w.Sk), free(w.scd), free(w.sck);
    free(w.sel_a), free(w.sel_b), free(k1d), free(k2d);
}

/* One problem through stages 0-2. */
static void check_setup(struct t_rng *rng, const struct problem *pb) {
    struct setup st = problem_setup(rng, pb);
    check_compress(&st);
    check_stages(&st);
    setup_free(&st);
}

/* ---- deliberate ties ---- */

/* Every key row identical: all compressed keys are equal, so every non-forced visible block has
 * the same score and the selection must take the lowest indices. */
static void test_ties(struct t_rng *rng) {
    struct setup st = setup_make(rng, "ties", 1500, 4, 2, 16, P_SMALL, true);
    const struct attn_shape *s = &st.s;
    float *row = normal_buf(rng, s->kv_stride, 1.0f);
    for (int64_t j = 0; j < s->Tk; j++) memcpy(st.k + j * s->kv_stride, row, (size_t)s->kv_stride * sizeof(float));
    infllm_compress_cpu(st.k1, st.k, st.L1, s->Hkv, s->D, s->kv_stride, 32, 16);
    infllm_compress_cpu(st.k2, st.k, st.L2, s->Hkv, s->D, s->kv_stride, 128, 64);
    infllm_select_cpu(st.sel, st.q, st.k1, st.L1, st.k2, st.L2, s, &st.p);
    int64_t bad = 0;
    int32_t *want = xmalloc((size_t)st.nsel * sizeof(int32_t));
    for (int64_t t = 0; t < s->Tq; t++) {
        int64_t bt = t / 64;
        /* expected: blocks 0..b(t) ranked forced first, then ascending index */
        int n = 0;
        for (int64_t j = 0; j <= bt && n < st.nsel; j++)
            if (j < st.p.init_blocks || j >= bt - st.p.local_blocks) want[n++] = (int32_t)j;
        for (int64_t j = 0; j <= bt && n < st.nsel; j++)
            if (!(j < st.p.init_blocks || j >= bt - st.p.local_blocks)) want[n++] = (int32_t)j;
        qsort(want, (size_t)n, sizeof(int32_t), i32_cmp);
        for (int x = n; x < st.nsel; x++) want[x] = -1;
        for (int g = 0; g < s->Hkv; g++)
            bad += memcmp(want, st.sel + (t * s->Hkv + g) * st.nsel,
                          (size_t)st.nsel * sizeof(int32_t)) != 0;
    }
    t_check(bad == 0, "ties: %lld rows not resolved to the lowest block indices", (long long)bad);
    free(want), free(row);
    setup_free(&st);
}

static void test_num_windows(void) {
    t_check(infllm_num_windows(31, 32, 16) == 0 && infllm_num_windows(32, 32, 16) == 1 &&
                infllm_num_windows(47, 32, 16) == 1 && infllm_num_windows(48, 32, 16) == 2 &&
                infllm_num_windows(16384, 32, 16) == 1023 &&
                infllm_num_windows(16384, 128, 64) == 255,
            "infllm_num_windows");
    struct infllm_params p = {.topk = 64, .local_blocks = 32};
    t_check(infllm_num_selected(&p) == 96, "infllm_num_selected");
}

int main(void) {
    struct t_rng rng = {.state = 0x1f11a2b3c4ull};
    test_num_windows();
    for (const struct problem *pb = PROBLEMS; pb->name; pb++) check_setup(&rng, pb);
    test_ties(&rng);
    return t_finish("test_infllmv2_select");
}
