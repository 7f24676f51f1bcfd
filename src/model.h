/*
 * model.h: the decoder-only transformer (Llama / MiniCPM): parameter layout, the memory plan, and
 * the forward and backward passes of one micro-batch on one rank.
 *
 * Dimensions: B sequences per micro-batch, n local tokens per sequence on this rank (the rank's
 * chunks of the sequence; all T tokens when cp = 1), N = B * n rows, C hidden, I intermediate,
 * L layers, Hq / Hkv heads, D head dim, V vocabulary, QD = Hq * D, KD = Hkv * D.
 *
 * Parameters live in one flat buffer in the backend's compute dtype, tensor after tensor in the
 * order of struct model_weights (each tensor holds all layers: wq is (L, QD, C)); their gradients in
 * one flat fp32 buffer with the same offsets. The flat length is padded so every rank's ZeRO-1
 * slice is equal and aligned. Each Hugging Face tensor is one entry of model->params (name, offset,
 * shape), which is what checkpoints, import and export walk.
 *
 * Per layer, the forward keeps: the residual input x, ln1 and its rstd, post-RoPE q, k, v, the
 * attention output and its lse, the selected blocks (sparse mode), the mid residual, ln2 and its
 * rstd, gate and up; Qwen3 also the q and k projections before their per-head RMSNorm (qpre, kpre)
 * and its rstd. SwiGLU's output is recomputed in the backward. Everything is allocated once by
 * model_init from the config.
 *
 * Families: Llama; MiniCPM (muP scales); Qwen2 (biases on the q, k, v projections); Qwen3 (RMSNorm
 * over each head's q and k, weights of D, before RoPE); model.attention_bias adds biases on q, k, v
 * and o (Llama, MiniCPM, Qwen3). A tensor a family lacks has no entry and a NULL view.
 *
 * Recomputation (train.recompute) changes how many layers a saved buffer holds, not the code that
 * fills it: under "attention" the attention branch's buffers (ln1, rstd1, q, k, v, att, lse, and
 * Qwen3's qpre, kpre, rstdq, rstdk) hold one
 * layer, under "full" every buffer but the residual x and the selection does; the backward re-runs
 * the forward of that part of layer l (selection reused) right before layer l's backward.
 */
#ifndef INFLLM_MODEL_H
#define INFLLM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "attention_layer.h"
#include "backend.h"
#include "config.h"
#include "grid.h"
#include "params.h"
#include "plan.h"

/* Views into the flat parameter buffer (compute dtype), all layers per tensor. */
struct model_weights {
    void *wte;      /* (V, C) */
    void *ln1;      /* (L, C) */
    void *wq;       /* (L, QD, C) */
    void *wk;       /* (L, KD, C) */
    void *wv;       /* (L, KD, C) */
    void *wo;       /* (L, C, QD) */
    void *ln2;      /* (L, C) */
    void *wgate;    /* (L, I, C) */
    void *wup;      /* (L, I, C) */
    void *wdown;    /* (L, C, I) */
    void *lnf;      /* (C) */
    void *lm_head;  /* (V, C); aliases wte when tied */
    void *bq;       /* (L, QD) q projection bias (qkv_bias), else NULL */
    void *bk;       /* (L, KD) */
    void *bv;       /* (L, KD) */
    void *bo;       /* (L, C) o projection bias (o_bias), else NULL */
    void *q_norm;   /* (L, D) RMSNorm weight of each q head (qk_norm), else NULL */
    void *k_norm;   /* (L, D) the same for k */
};

/* The same views into the flat fp32 gradient buffer. */
struct model_grads {
    float *wte, *ln1, *wq, *wk, *wv, *wo, *ln2, *wgate, *wup, *wdown, *lnf, *lm_head;
    float *bq, *bk, *bv, *bo, *q_norm, *k_norm; /* NULL when the weight is */
};

/* Saved activations of one micro-batch (compute dtype unless fp32 is said). L is the number of
 * layers a buffer holds: all of them, or 1 for the buffers that recomputation rebuilds. */
struct model_acts {
    void *x;         /* (L + 1, N, C) residual stream entering each layer; x[L] enters the final norm */
    void *ln1;       /* (L, N, C) */
    float *rstd1;    /* (L, N) */
    void *q;         /* (L, N, QD) post-RoPE */
    void *k;         /* (L, N, KD) post-RoPE */
    void *v;         /* (L, N, KD) */
    void *qpre;      /* (L, N, QD) q projection before its per-head norm (qk_norm), else NULL */
    void *kpre;      /* (L, N, KD) */
    float *rstdq;    /* (L, N, Hq) the per-head norm's rstd */
    float *rstdk;    /* (L, N, Hkv) */
    void *att;       /* (L, N, QD) attention output */
    float *lse;      /* (L, N, Hq) */
    int32_t *sel;    /* (L, N, Hkv, nsel) selected blocks; NULL in dense mode */
    void *xmid;      /* (L, N, C) residual after the attention branch */
    void *ln2;       /* (L, N, C) */
    float *rstd2;    /* (L, N) */
    void *gate;      /* (L, N, I) */
    void *up;        /* (L, N, I) */
    void *lnf;       /* (N, C) */
    float *rstdf;    /* (N) */
};

/* Temporaries reused by every layer. */
struct model_scratch {
    void *act;       /* (N, I) swiglu output (forward; recomputed in backward) */
    void *dact;      /* (N, I) */
    void *dgate;     /* (N, I) */
    void *dup;       /* (N, I) */
    void *dres;      /* (N, C) gradient of the residual stream */
    void *dln;       /* (N, C) gradient of a norm's output */
    void *datt;      /* (N, QD) */
    void *dq;        /* (N, QD) */
    void *dk;        /* (N, KD) */
    void *dv;        /* (N, KD) */
    void *dkpre;     /* (N, KD) gradient of kpre (qk_norm; kpre's q twin uses datt), else NULL */
    void *dlnf;      /* (N, C) gradient of the final norm's output, made by the fused head */
    float *logits;   /* (head_rows, V) one chunk of logits (fp32) */
    void *dlogits;   /* (head_rows, V) their gradient; on the CPU the logits buffer itself */
    void *workspace; /* ops_workspace_bytes() for the kernels that need one (CUDA) */
    float *loss;     /* (N) per-token loss */
    int32_t *tokens; /* (N) inputs of the micro-batch */
    int32_t *targets;/* (N) next tokens, -1 = no loss */
    int32_t *pos;    /* (N) global positions */
    int32_t *argmax; /* (N) predicted next token of each row (kept when model.keep_argmax) */
    float *rope_cos; /* (T, D/2) */
    float *rope_sin; /* (T, D/2) */
};

struct model {
    const struct config *cfg;
    const struct backend *be;
    int64_t V;
    int C, I, L, Hq, Hkv, D;
    int B;                  /* sequences per micro-batch */
    int64_t T;              /* global sequence length */
    struct seq_shard shard; /* this rank's chunks of each sequence */
    int64_t N;              /* rows per micro-batch: B * shard.n_local */
    int64_t head_rows;      /* rows of logits materialised at once */
    float emb_scale;        /* scale_emb (minicpm) or 1 */
    float res_scale;        /* scale_depth / sqrt(L) (minicpm) or 1 */
    float logit_scale;      /* dim_model_base / C (minicpm) or 1 */
    bool qkv_bias;          /* biases on the q, k, v projections (qwen2, attention_bias) */
    bool o_bias;            /* a bias on the o projection (attention_bias) */
    bool qk_norm;           /* per-head RMSNorm of q and k before RoPE (qwen3) */
    bool sparse;            /* InfLLM-V2 sparse attention at this sequence length */
    bool reuse_selection;   /* forward keeps a.sel from the previous forward instead of selecting
                               (recomputation, and gradient checks that hold the selection fixed) */
    bool keep_argmax;       /* forward records each row's predicted token in s.argmax (accuracy) */
    bool keep_attn;         /* the attention branch's activations are kept for every layer */
    bool keep_mlp;          /* xmid, ln2, rstd2, gate and up are kept for every layer */

    int n_params_entries;
    struct param_entry *params;  /* (n_params_entries) */
    int64_t n_params;            /* real parameter count */
    int64_t n_params_padded;     /* flat length, a multiple of the ZeRO-1 slice alignment */
    void *param_buf;             /* (n_params_padded) compute dtype */
    float *grad_buf;             /* (n_params_padded) fp32 */
    struct model_weights w;
    struct model_grads g;

    struct model_acts a;
    struct model_scratch s;
    float *loss_host;            /* (N) host copy of s.loss, summed by the forward */
    int32_t *pos_host;           /* (N) host positions of the rows in their documents (documents) */
    struct attention_layer attn;

    struct mem_plan plan;        /* owns every buffer above (model_free releases it) */
};

/* Plans and (when allocate) allocates everything for the config on this rank's grid position:
 * pad_multiple is the flat-length alignment (the optimizer passes world size x its alignment).
 * Every buffer is one declaration in model.c's declare_buffers (or the attention layer's), sized
 * into m->plan and, with allocate, carved from one allocation per arena (plan.h). Without
 * allocate only the plan is made (for --dry-run): no buffer exists and the model cannot run. */
void model_init(struct model *m, const struct config *c, const struct backend *be,
                const struct grid *g, int64_t pad_multiple, bool allocate);
void model_free(struct model *m);

/* Prints the memory plan on f: a line on the model, then one table of the model's plan and
 * n_more (at most 3) other plans (the optimizer's, the trainer's): a line per buffer, the arenas'
 * totals and the total. */
void model_print_plan(const struct model *m, const struct mem_plan *const *more, int n_more,
                      FILE *f);

/* Random init (normal(0, initializer_range) for matrices, ones for norms, zeros for biases), a
 * pure function of the seed and the element's flat index: every rank gets the same weights
 * whatever the layout. */
void model_init_weights(struct model *m, uint64_t seed);

/* One micro-batch. tokens and targets are host arrays (N) of this rank's rows (sequence b's local
 * tokens at rows [b * n, (b + 1) * n)); targets < 0 carry no loss.
 * Forward: returns the sum of the per-token losses of this rank's rows (double). With want_grad
 * the fused head also accumulates the lm head's gradient and leaves d(final norm output) for
 * model_backward; grad_scale multiplies the loss gradient (1 / the global target count of the step,
 * so summed gradients over micro-batches and ranks are the gradient of the mean loss). */
double model_forward(struct model *m, const int32_t *tokens, const int32_t *targets,
                     bool want_grad, float grad_scale);

/* The documents of the next micro-batch, when the config packs documents (config_documents;
 * otherwise only NULL is accepted, and ignored): doc_first (B, T) host bytes, nonzero where a
 * document starts at that global position of sequence b (position 0 always starts one), or NULL
 * for one document per sequence. Attention stays within each document (attention_layer.h) and
 * RoPE positions restart at 0 at each document's start, so a document is computed as it would be
 * alone. Holds for every forward and backward until the next call. */
void model_set_documents(struct model *m, const uint8_t *doc_first);

/* The predicted next token of each row of the last forward (N, host), which must have run with
 * keep_argmax set. */
void model_download_argmax(const struct model *m, int32_t *host);

/* Backward of the last model_forward(want_grad = true): accumulates into grad_buf. */
void model_backward(struct model *m);

/* Zeroes the parameter gradients. */
void model_zero_grad(struct model *m);

/* The flat parameter space (params.h) of an allocated model: what the optimizer steps. */
struct param_space model_param_space(const struct model *m);

#endif
