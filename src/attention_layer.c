/*
 * attention_layer.c: per-layer attention orchestration (see attention_layer.h).
 *
 * Rows of sequence b are [b * n, (b + 1) * n) in every local tensor; within them, chunk c of the
 * rank occupies rows [c * cl, (c + 1) * cl) and holds global positions start[c] ... start[c] + cl - 1.
 * Without context parallelism there is one chunk, the whole sequence in order, and the local K/V
 * are the global ones: nothing is exchanged or copied.
 */
#include "attention_layer.h"

#include <math.h>
#include <string.h>

#include "check.h"
#include "checked.h"
#include "ops.h"

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
    if (!cp) return;
    al->k_full = plan_take(p, PLAN_SCRATCH, "attention: gathered K", kv_bytes(al, T));
    al->v_full = plan_take(p, PLAN_SCRATCH, "attention: gathered V", kv_bytes(al, T));
    al->dk_full = plan_take(p, PLAN_SCRATCH, "attention: gathered dK", kv_bytes(al, T));
    al->dv_full = plan_take(p, PLAN_SCRATCH, "attention: gathered dV", kv_bytes(al, T));
    al->tmp = plan_take(p, PLAN_SCRATCH, "attention: reduce-scatter tmp",
                        kv_bytes(al, al->shard.n_local));
}

/* The kernel shape of local chunk c against the keys up to its end (global positions). */
static struct attn_shape chunk_shape(const struct attention_layer *al, int c) {
    int64_t cl = al->shard.chunk_len, start = al->shard.start[c];
    return (struct attn_shape){
        .Tq = cl,
        .q_pos0 = start,
        .Tk = start + cl,
        .Hq = al->Hq,
        .Hkv = al->Hkv,
        .D = al->D,
        .q_stride = (int64_t)al->Hq * al->D,
        .kv_stride = KD_of(al),
        .scale = al->scale,
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

void attention_layer_select(struct attention_layer *al, int32_t *sel, const void *q,
                            const void *k) {
    CHECK(al->sparse);
    const struct backend *be = al->be;
    int64_t n = al->shard.n_local, KD = KD_of(al), QD = (int64_t)al->Hq * al->D;
    int64_t cl = al->shard.chunk_len, sel_row = (int64_t)al->Hkv * al->nsel;
    int ks = al->p.kernel_size, st = al->p.kernel_stride;
    for (int b = 0; b < al->B; b++) {
        const void *kb = act_at_c(be, k, (int64_t)b * n * KD);
        if (al->ncp > 1) exchange_halo(al, kb);
        compress_sequence(al, al->k1, kb, ks, st, al->L1);
        if (al->k2) compress_sequence(al, al->k2, kb, 4 * ks, 4 * st, al->L2);
        for (int c = 0; c < al->shard.nchunks; c++) {
            struct attn_shape s = chunk_shape(al, c);
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

void attention_layer_forward(struct attention_layer *al, void *out, float *lse,
                             const int32_t *sel, const void *q, const void *k, const void *v) {
    const struct backend *be = al->be;
    int64_t n = al->shard.n_local, cl = al->shard.chunk_len, QD = (int64_t)al->Hq * al->D;
    int64_t sel_row = (int64_t)al->Hkv * al->nsel;
    for (int b = 0; b < al->B; b++) {
        const void *kf, *vf;
        sequence_kv(al, b, k, v, &kf, &vf);
        for (int c = 0; c < al->shard.nchunks; c++) {
            struct attn_shape s = chunk_shape(al, c);
            int64_t row0 = (int64_t)b * n + c * cl;
            void *o = act_at(be, out, row0 * QD);
            float *l = lse + row0 * al->Hq;
            const void *qc = act_at_c(be, q, row0 * QD);
            if (al->sparse)
                op_sparse_attention_forward(be, o, l, qc, kf, vf, sel + row0 * sel_row, al->nsel,
                                            al->p.block_size, &s);
            else
                op_attention_forward(be, o, l, qc, kf, vf, &s);
        }
    }
}

void attention_layer_backward(struct attention_layer *al, void *dq, void *dk, void *dv,
                              const void *dout, const void *q, const void *k, const void *v,
                              const void *out, const float *lse, const int32_t *sel) {
    const struct backend *be = al->be;
    int64_t n = al->shard.n_local, cl = al->shard.chunk_len, QD = (int64_t)al->Hq * al->D;
    int64_t KD = KD_of(al), sel_row = (int64_t)al->Hkv * al->nsel;
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
        for (int c = 0; c < al->shard.nchunks; c++) {
            struct attn_shape s = chunk_shape(al, c);
            int64_t row0 = (int64_t)b * n + c * cl;
            void *dqc = act_at(be, dq, row0 * QD);
            const void *doc = act_at_c(be, dout, row0 * QD), *oc = act_at_c(be, out, row0 * QD);
            const void *qc = act_at_c(be, q, row0 * QD);
            const float *l = lse + row0 * al->Hq;
            if (al->sparse)
                op_sparse_attention_backward(be, dqc, dkf, dvf, doc, qc, kf, vf, oc, l,
                                             sel + row0 * sel_row, al->nsel, al->p.block_size, &s,
                                             al->workspace);
            else
                op_attention_backward(be, dqc, dkf, dvf, doc, qc, kf, vf, oc, l, &s);
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
    *fwd = al->B * (kv + sel);
    *bwd = al->B * (2 * kv); /* re-gather K, V; reduce-scatter dK, dV */
}
