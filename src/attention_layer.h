/*
 * attention_layer.h: one layer's attention over a micro-batch on one rank: the dense/sparse switch
 * of InfLLM-V2 and, under context parallelism, the exchanges with the other ranks of the cp group.
 *
 * Dimensions: B sequences, n = shard.n_local local tokens per sequence (nchunks chunks of cl
 * tokens), N = B * n rows; q (N, QD), k and v (N, KD) hold this rank's tokens. T global tokens per
 * sequence; L1 / L2 valid compressed keys per sequence (K1 / K2 of INFLLMV2.md).
 *
 * The model calls, per layer: attention_layer_select (sparse mode only; before RoPE with use_nope,
 * after it otherwise), then attention_layer_forward, and in the backward attention_layer_backward,
 * which reuses the selection saved by the forward.
 *
 * Context parallelism (cp > 1; the scheme of INFLLMV2.md):
 *   select    each rank compresses the windows that start in its chunks, taking the few rows a
 *             window needs past a chunk's end (the halo) from the owner of the next chunk, so the
 *             compressed keys are exactly those of one rank; the compressed keys are all-gathered
 *             (T / kernel_stride rows per KV head: small); stages 1-2 then run for the local
 *             queries with global block indices. No score crosses the network.
 *   forward   K and V are all-gathered into global order and each local chunk attends to them by
 *             global positions (dense, or sparse over its selection).
 *   backward  K and V are gathered again (cheap with GQA, and nothing per layer is kept), the
 *             chunks' dK and dV are accumulated for the whole sequence, and reduce-scattered (fp32
 *             sums on the CPU) back to the owners of the keys.
 * All-gathers use two calls, one per chunk slot: slot 0 (chunk r of rank r) lands in order; slot 1
 * (chunk 2cp-1-r) lands reversed and is put in order by swapping chunk blocks.
 *
 * Documents (data.eod_token, data.synthetic.documents; docs/DESIGN.md "Document masking"): a
 * sequence may hold several documents, set per micro-batch by attention_layer_set_documents.
 * Each document is attended as if it were a sequence of its own: a document of length < dense_len
 * densely (causal within the document), a longer one (in a sparse sequence) by InfLLM-V2 with its
 * compression windows, blocks, init and local blocks and top-k all counted from the document's
 * start. The layer cuts each local chunk into segments: the rows of one sparse document (one
 * sparse call whose keys start at the document: positions and blocks relative to it), or the rows
 * of consecutive dense documents (one dense call with each row's document start, doc_start of
 * attention.h; on CUDA, whose kernels take no doc_start, one dense call per document, keys from
 * its start like a sparse one). Selection of a sequence with several documents compresses each sparse document
 * from the sequence's whole K (all-gathered first under cp > 1: T rows instead of T / stride, the
 * price of windows that start wherever a document does); a sequence of one document runs exactly
 * the path above.
 */
#ifndef INFLLM_ATTENTION_LAYER_H
#define INFLLM_ATTENTION_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "grid.h"
#include "infllmv2.h"
#include "plan.h"

struct attention_layer {
    const struct backend *be;
    const struct comm *cp;      /* the cp group's tensor communicator (used when ncp > 1) */
    int ncp;                    /* ranks sharing a sequence (parallel.cp) */
    struct seq_shard shard;     /* this rank's chunks */
    int64_t T;                  /* global tokens per sequence */
    int B, Hq, Hkv, D;
    float scale;                /* 1 / sqrt(D) */
    bool sparse;                /* InfLLM-V2 sparse mode (else dense causal) */
    struct infllm_params p;     /* sparse parameters */
    int nsel;                   /* blocks kept per query: min(topk + local_blocks, blocks of T) */
    int64_t L1, L2;             /* valid compressed keys per sequence (L2 = 0 without lse_approx) */
    int64_t k1_rows, k2_rows;   /* rows of the k1 / k2 buffers (L1 / L2, or T / stride under cp) */
    int64_t halo;               /* rows past a chunk's end its windows read (cp > 1) */
    /* Scratch (compute dtype), declared by attention_layer_declare into the model's plan. */
    void *k1;                   /* (k1_rows, KD) compressed keys K1 of one sequence */
    void *k2;                   /* (k2_rows, KD) compressed keys K2, or NULL */
    void *k_full, *v_full;      /* (T, KD) gathered keys and values (cp > 1) */
    void *dk_full, *dv_full;    /* (T, KD) their gradients before the reduce-scatter (cp > 1) */
    void *chunk_rows;           /* (cl + halo, KD) one chunk and its halo, compressed from (cp > 1) */
    void *halo_rows;            /* (2, halo, KD) halos received for slot 0 and slot 1 (cp > 1) */
    void *tmp;                  /* (n, KD) reduce-scatter result and block swaps (cp > 1) */
    void *workspace;            /* the model's kernel workspace (sparse backward on CUDA) */
    /* Documents (when documents: the config packs documents into sequences). */
    bool documents;
    bool dense_runs;            /* the kernels take doc_start: consecutive dense documents run in
                                   one call (CPU); else one call per document (CUDA) */
    int64_t dense_len;          /* attention.dense_len: shorter documents run dense */
    int32_t *doc_starts;        /* host (B, T): sequence b's documents start at doc_starts[b * T +
                                   d], d < ndocs[b], ascending from 0 */
    int32_t *ndocs;             /* host (B): documents of each sequence (1: no boundary) */
    int32_t *rows_doc_host;     /* host (N): the document start of every local row */
    int32_t *rows_doc;          /* (N) the same in backend memory: the dense kernels' doc_start */
    int32_t *unselected;        /* host (UNSELECTED_ROWS, Hkv, nsel) -1: the selection rows of the
                                   dense documents of a sparse sequence */
};

/* Sets up the layer for the config (validated: config_validate refuses the layouts the halo
 * exchange cannot serve) and the grid. Its buffers come from attention_layer_declare. */
void attention_layer_init(struct attention_layer *al, const struct config *c,
                          const struct backend *be, const struct grid *g, int B);

/* Declares the layer's scratch into the plan (plan.h: called once to size, once to carve). */
void attention_layer_declare(struct attention_layer *al, struct mem_plan *p);

/* The documents of the micro-batch (al->documents only): doc_first (B, T) host bytes, doc_first[b *
 * T + p] != 0 where a document starts at global position p of sequence b (position 0 always
 * starts one), or NULL: every sequence is one document. Holds until the next call: select, forward
 * and backward of the micro-batch follow it. Fills rows_doc_host and rows_doc. */
void attention_layer_set_documents(struct attention_layer *al, const uint8_t *doc_first);

/* Stages 0-2: sel (N, Hkv, nsel) for every local query row, from q (N, QD) and k (N, KD). */
void attention_layer_select(struct attention_layer *al, int32_t *sel, const void *q,
                            const void *k);

/* out (N, QD), lse (N, Hq): causal attention of the local queries over the whole sequence, dense or
 * restricted to sel. */
void attention_layer_forward(struct attention_layer *al, void *out, float *lse,
                             const int32_t *sel, const void *q, const void *k, const void *v);

/* ADDS the gradients of the local rows into dq (N, QD), dk and dv (N, KD). */
void attention_layer_backward(struct attention_layer *al, void *dq, void *dk, void *dv,
                              const void *dout, const void *q, const void *k, const void *v,
                              const void *out, const float *lse, const int32_t *sel);

/* Bytes this rank sends per layer per micro-batch in the forward and in the backward (the figures
 * of the communication plan; with documents in sparse mode, the forward's worst case: sequences of
 * several documents gather K for the selection). */
void attention_layer_comm_bytes(const struct attention_layer *al, double *fwd, double *bwd);

#endif
