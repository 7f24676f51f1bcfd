/*
 * attention_layer.c: per-layer attention orchestration (see attention_layer.h).
 *
 * Rows of sequence b are [b * n, (b + 1) * n) in every local tensor; within them, chunk c of the
 * rank occupies rows [c * cl, (c + 1) * cl) and holds global positions start[c] ... start[c] + cl - 1.
 * Without context parallelism there is one chunk, the whole sequence in order, and the local K/V
 * are the global ones: nothing is exchanged or copied.
 * Every kernel call covers one segment of a chunk (segment_at): the whole chunk when the sequence
 * is one document, else the rows of one sparse document or of a run of dense documents.
 */
#include "attention_layer.h"

#include <math.h>
#include <string.h>

#include "check.h"
#include "checked.h"
#include "ops.h"

/* Rows of -1 uploaded at a time to fill the selection of dense documents' rows. */
#define UNSELECTED_ROWS 64

static int64_t KD_of(const struct attention_layer *al) { return (int64_t)al->Hkv * al->D; }

void attention_layer_init(struct attention_layer *al, const struct config *c,
                          const struct backend *be, const struct grid *g, int B) {
    memset(al, 0, sizeof *al);
    al->be = be;
    al->cp = &g->cp_dev; /* exchanges move tensors: the backend's buffers */
    al->ncp = g->cp;
    al->T = c->data.seq_len;
    al->shard = seq_shard_of(al->T, g->cp, g->cp_rank);
    al->B = B;
    al->Hq = c->model.num_attention_heads;
    al->Hkv = c->model.num_key_value_heads;
    al->D = c->model.head_dim;
    al->scale = (float)(1.0 / sqrt((double)al->D));
    al->sparse = config_sparse(c, al->T);
    al->documents = config_documents(c);
    al->dense_len = c->attention.dense_len;
    al->dense_runs = be->device == DEVICE_CPU; /* only the CPU kernels take doc_start */
    int64_t T = al->T, cl = al->shard.chunk_len;
    bool cp = g->cp > 1;
    if (al->sparse) {
        const struct attention_config *a = &c->attention;
        al->p = (struct infllm_params){
            .kernel_size = a->kernel_size,
            .kernel_stride = a->kernel_stride,
            .block_size = a->block_size,
            .init_blocks = a->init_blocks,
            .local_blocks = config_local_blocks(c),
            .topk = a->topk,
            .lse_approx = a->lse_approx,
            .seq_blocks = (T + a->block_size - 1) / a->block_size,
        };
        al->nsel = infllm_num_selected(&al->p); /* sized by the sequence, not the budget */
        int ks = a->kernel_size, st = a->kernel_stride; /* 4 x both fit int (config_validate) */
        al->L1 = infllm_num_windows(T, ks, st);
        al->L2 = a->lse_approx ? infllm_num_windows(T, 4 * ks, 4 * st) : 0;
        al->k1_rows = al->L1;
        al->k2_rows = al->L2;
        if (cp) {
            /* Each chunk owns the windows starting in it: cl / stride of them. The chunks are long
             * enough for one window's reach (config_validate's rule). */
            int64_t reach = a->lse_approx ? 4 * (ks - st) : ks - st;
            CHECK(cl % (a->lse_approx ? 4 * st : st) == 0 && reach <= cl);
            al->halo = reach;
            al->k1_rows = T / st;
            al->k2_rows = a->lse_approx ? T / (4 * st) : 0;
        }
    }
}

/* Bytes of `rows` rows of K or V (checked.h). */
static size_t kv_bytes(const struct attention_layer *al, int64_t rows) {
    return (size_t)size_mul3(rows, KD_of(al), al->be->act_size);
}

/* The buffers of document masking (attention_layer.h). */
static void declare_documents(struct attention_layer *al, struct mem_plan *p) {
    int64_t N = size_mul(al->B, al->shard.n_local), i4 = sizeof(int32_t);
    al->doc_starts = plan_take(p, PLAN_HOST, "attention: document starts",
                               (size_t)size_mul3(al->B, al->T, i4));
    al->ndocs = plan_take(p, PLAN_HOST, "attention: documents per sequence",
                          (size_t)size_mul(al->B, i4));
    al->rows_doc_host = plan_take(p, PLAN_HOST, "attention: document start of each row",
                                  (size_t)size_mul(N, i4));
    al->rows_doc = plan_take(p, PLAN_ACTS, "attention: document start of each row (int32)",
                             (size_t)size_mul(N, i4));
    if (al->sparse)
        al->unselected = plan_take(p, PLAN_HOST, "attention: unselected rows (-1)",
                                   (size_t)size_mul3(UNSELECTED_ROWS, (int64_t)al->Hkv * al->nsel,
                                                     i4));
}

void attention_layer_declare(struct attention_layer *al, struct mem_plan *p) {
    int64_t T = al->T, cl = al->shard.chunk_len, halo = al->halo;
    bool cp = al->ncp > 1;
    if (al->sparse) {
        al->k1 = plan_take(p, PLAN_SCRATCH, "attention: compressed keys K1",
                           kv_bytes(al, al->k1_rows));
        if (al->k2_rows > 0)
            al->k2 = plan_take(p, PLAN_SCRATCH, "attention: compressed keys K2",
                               kv_bytes(al, al->k2_rows));
    }
    if (al->sparse && cp) {
        al->chunk_rows = plan_take(p, PLAN_SCRATCH, "attention: chunk + halo",
                                   kv_bytes(al, size_add(cl, halo)));
        al->halo_rows = plan_take(p, PLAN_SCRATCH, "attention: halo rows",
                                  kv_bytes(al, size_mul(2, halo)));
    }
    if (al->documents) declare_documents(al, p);
    if (!cp) return;
    al->k_full = plan_take(p, PLAN_SCRATCH, "attention: gathered K", kv_bytes(al, T));
    al->v_full = plan_take(p, PLAN_SCRATCH, "attention: gathered V", kv_bytes(al, T));
    al->dk_full = plan_take(p, PLAN_SCRATCH, "attention: gathered dK", kv_bytes(al, T));
    al->dv_full = plan_take(p, PLAN_SCRATCH, "attention: gathered dV", kv_bytes(al, T));
    al->tmp = plan_take(p, PLAN_SCRATCH, "attention: reduce-scatter tmp",
                        kv_bytes(al, al->shard.n_local));
}

/* ---------------------------------------------------------------------------------------------- */
/* Documents and segments                                                                          */

/* Documents of sequence b (1 without document masking). */
static int64_t ndocs_of(const struct attention_layer *al, int b) {
    return al->documents ? al->ndocs[b] : 1;
}

/* Document d of sequence b spans [*start, *end). */
static void doc_span(const struct attention_layer *al, int b, int64_t d, int64_t *start,
                     int64_t *end) {
    if (!al->documents) { /* one document */
        *start = 0, *end = al->T;
        return;
    }
    const int32_t *st = al->doc_starts + (int64_t)b * al->T;
    *start = st[d];
    *end = d + 1 < al->ndocs[b] ? st[d + 1] : al->T;
}

/* The document of sequence b holding position pos (the last start <= pos). */
static int64_t doc_of(const struct attention_layer *al, int b, int64_t pos) {
    if (!al->documents) return 0;
    const int32_t *st = al->doc_starts + (int64_t)b * al->T;
    int64_t lo = 0, hi = al->ndocs[b] - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (st[mid] <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Whether a document of len tokens runs sparse: config_sparse's rule for its own length, inside a
 * sparse sequence (a dense sequence holds only shorter documents). */
static bool doc_is_sparse(const struct attention_layer *al, int64_t len) {
    return al->sparse && (al->dense_len < 0 || len >= al->dense_len);
}

void attention_layer_set_documents(struct attention_layer *al, const uint8_t *doc_first) {
    CHECK(al->documents);
    int64_t T = al->T, n = al->shard.n_local;
    for (int b = 0; b < al->B; b++) {
        int32_t *st = al->doc_starts + (int64_t)b * T, nd = 1;
        st[0] = 0;
        for (int64_t p = 1; doc_first && p < T; p++)
            if (doc_first[(int64_t)b * T + p]) st[nd++] = (int32_t)p;
        al->ndocs[b] = nd;
        for (int64_t i = 0; i < n; i++)
            al->rows_doc_host[b * n + i] = st[doc_of(al, b, seq_shard_pos(&al->shard, i))];
    }
    backend_upload(al->be, al->rows_doc, al->rows_doc_host,
                   (size_t)(al->B * n) * sizeof(int32_t));
    for (int64_t x = 0; al->unselected && x < UNSELECTED_ROWS * al->Hkv * al->nsel; x++)
        al->unselected[x] = -1;
}

/* Local rows of one chunk that one kernel call serves: positions [a, z) from local row `row`. */
struct segment {
    int64_t a, z, row;
    bool sparse;     /* the rows of one sparse document; else of dense documents */
    bool own;        /* one document's rows in a call of its own, keys from its start ds (sparse;
                        dense where the backend's kernels take no doc_start); else a dense run */
    int64_t ds;
};

/* The segment of chunk c of sequence b that starts at position a: the chunk's rows of the sparse
 * document holding a, or of the run of dense documents from a (of that one dense document where
 * the kernels take no doc_start: CUDA). One document: the whole chunk. */
static struct segment segment_at(const struct attention_layer *al, int b, int c, int64_t a) {
    int64_t cs = al->shard.start[c], ce = cs + al->shard.chunk_len, d = doc_of(al, b, a), s, e;
    doc_span(al, b, d, &s, &e);
    struct segment g = {.a = a, .row = (int64_t)b * al->shard.n_local + c * al->shard.chunk_len +
                                       (a - cs),
                        .sparse = doc_is_sparse(al, e - s), .ds = s};
    g.own = g.sparse || !al->dense_runs;
    for (int64_t x = d + 1; !g.own && e < ce && x < ndocs_of(al, b); x++) {
        int64_t s2, e2;
        doc_span(al, b, x, &s2, &e2);
        if (doc_is_sparse(al, e2 - s2)) break;
        e = e2;
    }
    g.z = e < ce ? e : ce;
    return g;
}

/* The kernel shape of a segment: keys by global positions up to its end (a dense run, masked by
 * each row's document start when the sequence holds several), or one document's own positions
 * (its keys start at row ds of K). */
static struct attn_shape segment_shape(const struct attention_layer *al, int b,
                                       const struct segment *g) {
    int64_t off = g->own ? g->ds : 0;
    return (struct attn_shape){
        .Tq = g->z - g->a,
        .q_pos0 = g->a - off,
        .Tk = g->z - off,
        .Hq = al->Hq,
        .Hkv = al->Hkv,
        .D = al->D,
        .q_stride = (int64_t)al->Hq * al->D,
        .kv_stride = KD_of(al),
        .scale = al->scale,
        .doc_start = !g->own && ndocs_of(al, b) > 1 ? al->rows_doc + g->row : NULL,
    };
}

/* ---------------------------------------------------------------------------------------------- */
/* Chunk exchanges (cp > 1)                                                                        */

/* Puts the slot-1 half of a (2cp chunks of `rows` rows, KD) buffer in global order: position
 * cp + r holds chunk 2cp - 1 - r after the gather; swap the pairs (p, 3cp - 1 - p). */
static void reverse_slot1(struct attention_layer *al, void *full, int64_t rows) {
    const struct backend *be = al->be;
    int cp = al->ncp;
    size_t bytes = (size_t)(rows * KD_of(al)) * be->act_size;
    for (int p = cp; p < 3 * cp - 1 - p; p++) {
        void *a = act_at(be, full, (int64_t)p * rows * KD_of(al));
        void *b = act_at(be, full, (int64_t)(3 * cp - 1 - p) * rows * KD_of(al));
        backend_copy(be, al->tmp, a, bytes);
        backend_copy(be, a, b, bytes);
        backend_copy(be, b, al->tmp, bytes);
    }
}

/* full (2cp * rows, KD) in global chunk order from each rank's two local chunks of `rows` rows
 * (local: slot 0 rows then slot 1 rows, `stride` rows apart). */
static void gather_chunks(struct attention_layer *al, void *full, const void *local, int64_t rows,
                          int64_t stride) {
    const struct backend *be = al->be;
    int cp = al->ncp;
    int64_t KD = KD_of(al);
    enum comm_dtype t = comm_act_dtype(be->act_size);
    comm_allgather(al->cp, full, local, rows * KD, t);
    comm_allgather(al->cp, act_at(be, full, (int64_t)cp * rows * KD),
                   act_at_c(be, local, stride * KD), rows * KD, t);
    reverse_slot1(al, full, rows);
}

/* local (n, KD) += this rank's chunks of the sum over ranks of full (T, KD); full is reordered. */
static void reduce_scatter_chunks_add(struct attention_layer *al, void *local, void *full) {
    const struct backend *be = al->be;
    int cp = al->ncp;
    int64_t KD = KD_of(al), cl = al->shard.chunk_len;
    reverse_slot1(al, full, cl);
    /* Sums in the compute dtype: fp32 on the CPU, bf16 (NCCL's bf16 sum) on the GPU. */
    enum comm_dtype t = comm_act_dtype(be->act_size);
    comm_reduce_scatter(al->cp, al->tmp, full, cl * KD, t);
    comm_reduce_scatter(al->cp, act_at(be, al->tmp, cl * KD),
                        act_at(be, full, (int64_t)cp * cl * KD), cl * KD, t);
    op_add_inplace(be, local, al->tmp, 2 * cl * KD);
}

/* ---------------------------------------------------------------------------------------------- */
/* Selection (stages 0-2)                                                                          */

/* Compressed keys of one sequence whose local keys are kb (n, KD): into kc (rows per chunk slot
 * cl / st, valid total nvalid) with windows of ksize / st. */
static void compress_sequence(struct attention_layer *al, void *kc, const void *kb, int ksize,
                              int st, int64_t nvalid) {
    const struct backend *be = al->be;
    int64_t KD = KD_of(al);
    if (al->ncp == 1) {
        op_infllm_compress(be, kc, kb, nvalid, al->Hkv, al->D, KD, ksize, st);
        return;
    }
    /* Windows starting in chunk c: [start/st, start/st + cl/st) ∩ [0, nvalid), reading up to
     * `halo` rows past the chunk end from the halo of the next chunk. */
    int64_t cl = al->shard.chunk_len, per_chunk = cl / st;
    void *local_kc = al->tmp; /* (2 * per_chunk, KD): both slots, then gathered */
    backend_zero(be, local_kc, (size_t)(2 * per_chunk * KD) * be->act_size);
    for (int c = 0; c < 2; c++) {
        int64_t first = al->shard.start[c] / st;
        int64_t count = nvalid - first < per_chunk ? nvalid - first : per_chunk;
        if (count <= 0) continue;
        backend_copy(be, al->chunk_rows, act_at_c(be, kb, c * cl * KD),
                     (size_t)(cl * KD) * be->act_size);
        backend_copy(be, act_at(be, al->chunk_rows, cl * KD),
                     act_at(be, al->halo_rows, c * al->halo * KD),
                     (size_t)(al->halo * KD) * be->act_size);
        op_infllm_compress(be, act_at(be, local_kc, c * per_chunk * KD), al->chunk_rows, count,
                           al->Hkv, al->D, KD, ksize, st);
    }
    gather_chunks(al, kc, local_kc, per_chunk, per_chunk);
}

/* The first `halo` rows of the chunk after each local chunk, from its owner: slot 0 (chunk r)
 * is followed by chunk r + 1, held by rank r + 1 in slot 0 (or by this rank in slot 1 when r is the
 * last rank); slot 1 (chunk 2cp-1-r) by chunk 2cp-r, held by rank r - 1 in slot 1 (none for r = 0). */
static void exchange_halo(struct attention_layer *al, const void *kb) {
    const struct backend *be = al->be;
    int r = al->cp->rank, cp = al->ncp;
    int64_t KD = KD_of(al), cl = al->shard.chunk_len, h = al->halo;
    enum comm_dtype t = comm_act_dtype(be->act_size);
    void *halo0 = al->halo_rows, *halo1 = act_at(be, al->halo_rows, h * KD);
    const void *head0 = kb, *head1 = act_at_c(be, kb, cl * KD);
    /* Slot 0 heads travel down (to r - 1), slot 1 heads up (to r + 1). */
    comm_sendrecv(al->cp, head0, h * KD, r > 0 ? r - 1 : -1, halo0, h * KD,
                  r + 1 < cp ? r + 1 : -1, t);
    comm_sendrecv(al->cp, head1, h * KD, r + 1 < cp ? r + 1 : -1, halo1, h * KD,
                  r > 0 ? r - 1 : -1, t);
    if (r == cp - 1) backend_copy(be, halo0, head1, (size_t)(h * KD) * be->act_size);
    if (r == 0) backend_zero(be, halo1, (size_t)(h * KD) * be->act_size); /* sequence end */
}

/* Rows [row, row + count) of sel: -1 (the rows of dense documents, which select nothing). */
static void fill_unselected(struct attention_layer *al, int32_t *sel, int64_t row, int64_t count) {
    int64_t per = (int64_t)al->Hkv * al->nsel;
    for (int64_t r = 0; r < count; r += UNSELECTED_ROWS) {
        int64_t m = count - r < UNSELECTED_ROWS ? count - r : UNSELECTED_ROWS;
        backend_upload(al->be, sel + (row + r) * per, al->unselected,
                       (size_t)(m * per) * sizeof(int32_t));
    }
}

/* Selection of sequence b (several documents): each sparse document's compressed keys from its
 * own rows of the whole K (gathered under cp > 1), windows counted from its start; its local rows
 * select among its own blocks, as the document alone would. */
static void select_documents(struct attention_layer *al, int b, int32_t *sel, const void *q,
                             const void *kb) {
    const struct backend *be = al->be;
    int64_t KD = KD_of(al), QD = (int64_t)al->Hq * al->D, sel_row = (int64_t)al->Hkv * al->nsel;
    int ks = al->p.kernel_size, st = al->p.kernel_stride;
    const void *kf = kb;
    if (al->ncp > 1) {
        gather_chunks(al, al->k_full, kb, al->shard.chunk_len, al->shard.chunk_len);
        kf = al->k_full;
    }
    int64_t compressed = -1, L1 = 0, L2 = 0; /* the document whose keys k1, k2 hold */
    for (int c = 0; c < al->shard.nchunks; c++) {
        int64_t ce = al->shard.start[c] + al->shard.chunk_len;
        for (int64_t a = al->shard.start[c]; a < ce;) {
            struct segment g = segment_at(al, b, c, a);
            a = g.z;
            if (!g.sparse) {
                fill_unselected(al, sel, g.row, g.z - g.a);
                continue;
            }
            if (g.ds != compressed) {
                int64_t s0, e0;
                doc_span(al, b, doc_of(al, b, g.ds), &s0, &e0);
                const void *kd = act_at_c(be, kf, g.ds * KD);
                L1 = infllm_num_windows(e0 - s0, ks, st);
                L2 = al->k2 ? infllm_num_windows(e0 - s0, 4 * ks, 4 * st) : 0;
                op_infllm_compress(be, al->k1, kd, L1, al->Hkv, al->D, KD, ks, st);
                if (L2 > 0) op_infllm_compress(be, al->k2, kd, L2, al->Hkv, al->D, KD, 4 * ks, 4 * st);
                compressed = g.ds;
            }
            struct attn_shape s = segment_shape(al, b, &g);
            op_infllm_select(be, sel + g.row * sel_row, act_at_c(be, q, g.row * QD), al->k1, L1,
                             al->k2, L2, &s, &al->p);
        }
    }
}

void attention_layer_select(struct attention_layer *al, int32_t *sel, const void *q,
                            const void *k) {
    CHECK(al->sparse);
    const struct backend *be = al->be;
    int64_t n = al->shard.n_local, KD = KD_of(al), QD = (int64_t)al->Hq * al->D;
    int64_t cl = al->shard.chunk_len, sel_row = (int64_t)al->Hkv * al->nsel;
    int ks = al->p.kernel_size, st = al->p.kernel_stride;
    for (int b = 0; b < al->B; b++) {
        const void *kb = act_at_c(be, k, (int64_t)b * n * KD);
        if (ndocs_of(al, b) > 1) {
            select_documents(al, b, sel, q, kb);
            continue;
        }
        if (al->ncp > 1) exchange_halo(al, kb);
        compress_sequence(al, al->k1, kb, ks, st, al->L1);
        if (al->k2) compress_sequence(al, al->k2, kb, 4 * ks, 4 * st, al->L2);
        for (int c = 0; c < al->shard.nchunks; c++) {
            struct segment g = segment_at(al, b, c, al->shard.start[c]); /* the whole chunk */
            struct attn_shape s = segment_shape(al, b, &g);
            int64_t row0 = (int64_t)b * n + c * cl;
            op_infllm_select(be, sel + row0 * sel_row, act_at_c(be, q, row0 * QD), al->k1, al->L1,
                             al->k2, al->L2, &s, &al->p);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Stage 3                                                                                         */

/* Global K and V of sequence b: the local rows themselves, or gathered (cp > 1). */
static void sequence_kv(struct attention_layer *al, int b, const void *k, const void *v,
                        const void **kf, const void **vf) {
    const struct backend *be = al->be;
    int64_t n = al->shard.n_local, KD = KD_of(al), cl = al->shard.chunk_len;
    const void *kb = act_at_c(be, k, (int64_t)b * n * KD), *vb = act_at_c(be, v, (int64_t)b * n * KD);
    if (al->ncp == 1) {
        *kf = kb;
        *vf = vb;
        return;
    }
    gather_chunks(al, al->k_full, kb, cl, cl);
    gather_chunks(al, al->v_full, vb, cl, cl);
    *kf = al->k_full;
    *vf = al->v_full;
}

/* Forward of one segment of sequence b whose keys and values are kf, vf (T rows). */
static void segment_forward(struct attention_layer *al, int b, const struct segment *g, void *out,
                            float *lse, const int32_t *sel, const void *q, const void *kf,
                            const void *vf) {
    const struct backend *be = al->be;
    int64_t QD = (int64_t)al->Hq * al->D, row = g->row;
    struct attn_shape s = segment_shape(al, b, g);
    void *o = act_at(be, out, row * QD);
    float *l = lse + row * al->Hq;
    const void *qc = act_at_c(be, q, row * QD);
    int64_t off = g->own ? g->ds * KD_of(al) : 0;
    const void *k = act_at_c(be, kf, off), *v = act_at_c(be, vf, off);
    if (g->sparse)
        op_sparse_attention_forward(be, o, l, qc, k, v, sel + row * al->Hkv * al->nsel, al->nsel,
                                    al->p.block_size, &s);
    else
        op_attention_forward(be, o, l, qc, k, v, &s);
}

void attention_layer_forward(struct attention_layer *al, void *out, float *lse,
                             const int32_t *sel, const void *q, const void *k, const void *v) {
    for (int b = 0; b < al->B; b++) {
        const void *kf, *vf;
        sequence_kv(al, b, k, v, &kf, &vf);
        for (int c = 0; c < al->shard.nchunks; c++) {
            int64_t ce = al->shard.start[c] + al->shard.chunk_len;
            for (int64_t a = al->shard.start[c]; a < ce;) {
                struct segment g = segment_at(al, b, c, a);
                segment_forward(al, b, &g, out, lse, sel, q, kf, vf);
                a = g.z;
            }
        }
    }
}

/* Where one segment's backward adds: dq (N, QD) of the local rows, dk, dv (T, KD) of sequence b. */
struct grads {
    void *dq, *dk, *dv;
};

/* Backward of one segment of sequence b (keys and values kf, vf of T rows); adds into gr. */
static void segment_backward(struct attention_layer *al, int b, const struct segment *g,
                             const struct grads *gr, const void *dout, const void *q,
                             const void *kf, const void *vf, const void *out, const float *lse,
                             const int32_t *sel) {
    const struct backend *be = al->be;
    int64_t QD = (int64_t)al->Hq * al->D, row = g->row, off = g->own ? g->ds * KD_of(al) : 0;
    struct attn_shape s = segment_shape(al, b, g);
    void *dqc = act_at(be, gr->dq, row * QD);
    const void *doc = act_at_c(be, dout, row * QD), *oc = act_at_c(be, out, row * QD);
    const void *qc = act_at_c(be, q, row * QD);
    const float *l = lse + row * al->Hq;
    void *dk = act_at(be, gr->dk, off), *dv = act_at(be, gr->dv, off);
    const void *k = act_at_c(be, kf, off), *v = act_at_c(be, vf, off);
    if (g->sparse)
        op_sparse_attention_backward(be, dqc, dk, dv, doc, qc, k, v, oc, l,
                                     sel + row * al->Hkv * al->nsel, al->nsel, al->p.block_size,
                                     &s, al->workspace);
    else
        op_attention_backward(be, dqc, dk, dv, doc, qc, k, v, oc, l, &s);
}

void attention_layer_backward(struct attention_layer *al, void *dq, void *dk, void *dv,
                              const void *dout, const void *q, const void *k, const void *v,
                              const void *out, const float *lse, const int32_t *sel) {
    const struct backend *be = al->be;
    int64_t n = al->shard.n_local, KD = KD_of(al);
    bool cp = al->ncp > 1;
    for (int b = 0; b < al->B; b++) {
        const void *kf, *vf;
        sequence_kv(al, b, k, v, &kf, &vf);
        void *dkb = act_at(be, dk, (int64_t)b * n * KD), *dvb = act_at(be, dv, (int64_t)b * n * KD);
        void *dkf = cp ? al->dk_full : dkb, *dvf = cp ? al->dv_full : dvb;
        if (cp) {
            backend_zero(be, dkf, (size_t)(al->T * KD) * be->act_size);
            backend_zero(be, dvf, (size_t)(al->T * KD) * be->act_size);
        }
        struct grads gr = {dq, dkf, dvf};
        for (int c = 0; c < al->shard.nchunks; c++) {
            int64_t ce = al->shard.start[c] + al->shard.chunk_len;
            for (int64_t a = al->shard.start[c]; a < ce;) {
                struct segment g = segment_at(al, b, c, a);
                segment_backward(al, b, &g, &gr, dout, q, kf, vf, out, lse, sel);
                a = g.z;
            }
        }
        if (cp) {
            reduce_scatter_chunks_add(al, dkb, dkf);
            reduce_scatter_chunks_add(al, dvb, dvf);
        }
    }
}

void attention_layer_comm_bytes(const struct attention_layer *al, double *fwd, double *bwd) {
    int cp = al->ncp;
    *fwd = *bwd = 0;
    if (cp == 1) return;
    double as = (double)al->be->act_size, KD = (double)KD_of(al), T = (double)al->T;
    double share = (double)(cp - 1) / cp; /* fraction of a gathered buffer that arrives from others */
    double kv = 2 * T * KD * as * share;  /* K and V all-gathered: each rank sends its part to all */
    double sel = 0;
    if (al->sparse)
        sel = (double)(al->k1_rows + al->k2_rows) * KD * as * share +
              2.0 * (double)al->halo * KD * as;
    if (al->sparse && al->documents) /* a sequence of several documents gathers K instead */
        sel = fmax(sel, T * KD * as * share);
    *fwd = al->B * (kv + sel);
    *bwd = al->B * (2 * kv); /* re-gather K, V; reduce-scatter dK, dV */
}
