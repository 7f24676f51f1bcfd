/*
 * bench/attention.c: times our CUDA attention kernels on the shapes of issue 7 (causal, bf16,
 * batch 1, Hq = 32, Hkv = 2, D = 128 by default) and prints one table: dense forward and
 * forward+backward, InfLLM-V2 selection (compression + stages 1-2), sparse forward and
 * forward+backward including selection, with ms, achieved TFLOP/s and the attended keys.
 *
 *   bench_attention [--hq 32] [--hkv 2] [--d 128] [--dense-max 32768] [--selection-only]
 *                   [--forward-only] [--dense-only] [--q-rho R] [--split-probe] T...
 *
 * FLOPs are counted honestly: dense causal forward = 4 * D * Hq * sum over rows of visible keys
 * (2 T^2 D Hq for a full square), the backward 2.5 times the forward (dQ, dK, dV and the
 * recomputed scores); sparse counts only the keys each row attends (its selected blocks cut at
 * the row). Dense rows name the kernels that ran (wgmma + TMA on an sm_90 device, else mma.sync)
 * and the fraction of GEMM_CEILING, the bf16 GEMM rate measured on the H200. --dense-only skips
 * the selection and the sparse kernels. Time: CUDA events around each call, 1 warm-up, median of 3 (the longest shapes take
 * seconds, far past launch overheads). Inputs are random bf16, never zeros; by default every
 * token's query is independent of its neighbours', so neighbouring tokens select unrelated blocks
 * (the worst case for the sparse kernels, which share a K/V block between the tokens of a tile
 * that selected it). --q-rho R makes the queries an AR(1) sequence over tokens (correlation R^k
 * at distance k), closer to a trained model, whose neighbouring queries are alike.
 * --split-probe also times stage 3 (forward, and forward+backward without the selection) on two
 * parts of the run's selection: each token's forced blocks alone (the init blocks and the local
 * window) and its dynamic blocks alone, with the full selection beside them: what the two passes
 * of a forced/dynamic split would cost on today's kernels (the merge of their softmaxes aside),
 * and the split forward itself (sparse_attention_forward_split_cuda) with the backward after it.
 *
 * The sparse kernels are bounded by what they gather as much as by FLOPs: the "gather" rows give,
 * from the selection the run made, the bytes each sparse kernel must bring into shared memory
 * (the K/V blocks of its tiles' unions; the dK/dV kernel's Q and dO rows per (token, block)
 * pair) and the milliseconds that takes at GATHER_TBS. Most of it hits L2 (ncu: 97.6% for the
 * 128k forward), so this is a yardstick rather than a hard floor: L2 can deliver somewhat more.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "attention_wgmma.h"
#include "backend.h"
#include "check.h"
#include "cuda_check.h"
#include "infllmv2.h"
#include "randn.h"

static struct backend be;

#define GATHER_TBS 4.1      /* TB/s: the device copy rate the gather rows are timed at */
#define GEMM_CEILING 790.0 /* TFLOP/s: bf16 GEMM on random data, H200 (docs/PERF.md) */

struct timer {
    cudaEvent_t a, b;
};

static float elapsed(struct timer *t) {
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(t->b));
    CUDA_CHECK(cudaEventElapsedTime(&ms, t->a, t->b));
    return ms;
}

static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* Random bf16 on the device: bench_randn's normals (correlated over tokens when rho > 0). */
static void *rand_bf16(int64_t n, uint64_t seed, int64_t width, double rho) {
    float *h = xmalloc((size_t)n * sizeof(float));
    bench_randn(h, n, seed, width, rho);
    void *d = backend_alloc(&be, (size_t)n * 2, "bench");
    backend_upload_act(&be, d, h, n);
    free(h);
    return d;
}

struct bench {
    int64_t T;
    int Hq, Hkv, D;
    struct attn_shape s;
    void *q, *k, *v, *out, *dout, *dq, *dk, *dv, *k1, *k2, *ws;
    float *lse;
    int32_t *sel;
    struct infllm_params p;
    int nsel;
    int64_t L1, L2;
};

typedef void (*bench_fn)(struct bench *b);

static void bench_release(struct bench *b) {
    void *bufs[] = {b->q, b->k, b->v, b->dout, b->out, b->dq, b->dk, b->dv, b->lse, b->k1, b->k2,
                    b->sel, b->ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) backend_release(&be, bufs[i]);
}

static float time_median(struct bench *b, bench_fn fn) {
    struct timer t;
    CUDA_CHECK(cudaEventCreate(&t.a));
    CUDA_CHECK(cudaEventCreate(&t.b));
    cudaStream_t st = (cudaStream_t)be.gpu.stream;
    fn(b); /* warm-up */
    float ms[3];
    for (int r = 0; r < 3; r++) {
        CUDA_CHECK(cudaEventRecord(t.a, st));
        fn(b);
        CUDA_CHECK(cudaEventRecord(t.b, st));
        ms[r] = elapsed(&t);
    }
    qsort(ms, 3, sizeof(float), cmp_float);
    cudaEventDestroy(t.a);
    cudaEventDestroy(t.b);
    return ms[1];
}

static void dense_fwd(struct bench *b) {
    attention_forward_cuda(b->out, b->lse, b->q, b->k, b->v, &b->s, &be.gpu);
}

static void dense_fwd_bwd(struct bench *b) {
    dense_fwd(b);
    attention_backward_cuda(b->dq, b->dk, b->dv, b->dout, b->q, b->k, b->v, b->out, b->lse, &b->s,
                            &be.gpu);
}

static void select_only(struct bench *b) {
    int64_t KD = (int64_t)b->Hkv * b->D;
    infllm_compress_cuda(b->k1, b->k, b->L1, b->Hkv, b->D, KD, b->p.kernel_size,
                         b->p.kernel_stride, &be.gpu);
    infllm_compress_cuda(b->k2, b->k, b->L2, b->Hkv, b->D, KD, 4 * b->p.kernel_size,
                         4 * b->p.kernel_stride, &be.gpu);
    infllm_select_cuda(b->sel, b->q, b->k1, b->L1, b->k2, b->L2, &b->s, &b->p, &be.gpu);
}

static void sparse_fwd(struct bench *b) {
    sparse_attention_forward_cuda(b->out, b->lse, b->q, b->k, b->v, b->sel, b->nsel,
                                  b->p.block_size, &b->s, &be.gpu);
}

/* The split forward: dynamic blocks, then forced ones merged by lse. */
static void split_fwd(struct bench *b) {
    sparse_attention_forward_split_cuda(b->out, b->lse, b->q, b->k, b->v, b->sel, b->nsel, &b->p,
                                        &b->s, &be.gpu);
}

static void split_fwd_bwd(struct bench *b) {
    split_fwd(b);
    sparse_attention_backward_cuda(b->dq, b->dk, b->dv, b->dout, b->q, b->k, b->v, b->out, b->lse,
                                   b->sel, b->nsel, b->p.block_size, &b->s, b->ws, &be.gpu);
}

/* Stage 3 alone, forward and backward (the selection is already made). */
static void stage3_fwd_bwd(struct bench *b) {
    sparse_fwd(b);
    sparse_attention_backward_cuda(b->dq, b->dk, b->dv, b->dout, b->q, b->k, b->v, b->out, b->lse,
                                   b->sel, b->nsel, b->p.block_size, &b->s, b->ws, &be.gpu);
}

static void sparse_step(struct bench *b) {
    select_only(b);
    sparse_fwd(b);
    sparse_attention_backward_cuda(b->dq, b->dk, b->dv, b->dout, b->q, b->k, b->v, b->out, b->lse,
                                   b->sel, b->nsel, b->p.block_size, &b->s, b->ws, &be.gpu);
}

/* What the selection makes the sparse kernels read, from the selection (downloaded): the keys
 * attended per row (summed over rows, averaged over KV heads), and the K/V blocks a tile of `fwd`
 * (forward) and `dq` (dQ kernel) consecutive tokens gathers: the union of its tokens' blocks, read
 * once per tile and KV head. Without overlap between neighbouring tokens' selections, every
 * (token, block) pair costs a 64 x D K/V block; the dK/dV kernel gathers G rows of Q and dO (and
 * an lse and a D_i) per (token, block) pair instead. */
struct gather {
    double keys, pairs, fwd_blocks, dq_blocks;
};

static struct gather gather_of(struct bench *b, int fwd, int dq) {
    int64_t n = b->T * b->Hkv * b->nsel, nblk = (b->T + 63) / 64;
    int32_t *h = xmalloc((size_t)n * 4);
    uint8_t *seen = xcalloc((size_t)nblk * 2, 1);
    backend_download(&be, h, b->sel, (size_t)n * 4);
    struct gather r = {0, 0, 0, 0};
    const int tile[2] = {fwd, dq};
    for (int g = 0; g < b->Hkv; g++)
        for (int which = 0; which < 2; which++)
            for (int64_t i0 = 0; i0 < b->T; i0 += tile[which]) {
                int64_t i1 = i0 + tile[which] < b->T ? i0 + tile[which] : b->T, u = 0;
                for (int pass = 0; pass < 2; pass++) /* count, then clear */
                    for (int64_t i = i0; i < i1; i++)
                        for (int k = 0; k < b->nsel; k++) {
                            int32_t j = h[(i * b->Hkv + g) * b->nsel + k];
                            if (j < 0) break;
                            if (pass == 1) { seen[j] = 0; continue; }
                            if (!seen[j]) seen[j] = 1, u++;
                            if (which) continue;
                            r.pairs += 1;
                            int64_t lo = (int64_t)j * b->p.block_size, hi = lo + b->p.block_size;
                            if (hi > i + 1) hi = i + 1;
                            if (hi > lo) r.keys += (double)(hi - lo);
                        }
                *(which ? &r.dq_blocks : &r.fwd_blocks) += (double)u;
            }
    free(seen);
    free(h);
    r.keys /= b->Hkv;
    return r;
}

/* The part of host selection h (T x Hkv x nsel, -1 padded) whose blocks are forced (forced = 1:
 * j < init_blocks or b(t) - local_blocks <= j <= b(t)) or not (forced = 0), compacted and -1
 * padded, uploaded into dst. */
static void selection_part(struct bench *b, int32_t *dst, const int32_t *h, int forced) {
    int64_t n = b->T * b->Hkv * b->nsel, local = b->p.local_blocks;
    int32_t *part = xmalloc((size_t)n * 4);
    for (int64_t r = 0; r < b->T * b->Hkv; r++) {
        int64_t bt = (r / b->Hkv) / b->p.block_size, m = 0;
        for (int k = 0; k < b->nsel; k++) {
            int32_t j = h[r * b->nsel + k];
            int f = j < b->p.init_blocks || (j >= bt - local && j <= bt);
            if (j >= 0 && f == forced) part[r * b->nsel + m++] = j;
        }
        while (m < b->nsel) part[r * b->nsel + m++] = -1;
    }
    backend_upload(&be, dst, part, (size_t)n * 4);
    free(part);
}

static void row(const char *what, int64_t T, float ms, double flops, const char *note) {
    printf("| %6lldk | %-28s | %10.2f | %8.1f | %s |\n", (long long)(T / 1024), what, ms,
           flops / (ms * 1e-3) / 1e12, note);
    fflush(stdout);
}

/* A gather row: the time GB take at GATHER_TBS in the ms column. */
static void gather_row(int64_t T, const char *what, double gb, const char *note) {
    printf("| %6lldk | gather at %.1f TB/s: %s | %10.2f | | %.0f GB of %s |\n",
           (long long)(T / 1024), GATHER_TBS, what, gb / GATHER_TBS, gb, note);
}

/* --split-probe: stage 3 on the whole selection, its forced part and its dynamic part. */
static void split_rows(struct bench *b, int fwd_tok, int dq_tok) {
    int64_t n = b->T * b->Hkv * b->nsel;
    int32_t *h = xmalloc((size_t)n * 4), *full = b->sel;
    backend_download(&be, h, full, (size_t)n * 4);
    int32_t *part = backend_alloc(&be, (size_t)n * 4, "sel part");
    const char *names[3] = {"all blocks", "forced blocks", "dynamic blocks"};
    for (int w = 0; w < 3; w++) {
        if (w > 0) selection_part(b, part, h, w == 1);
        b->sel = w > 0 ? part : full;
        struct gather ga = gather_of(b, fwd_tok, dq_tok);
        double flops = 4.0 * b->D * b->Hq * ga.keys;
        char what[64], note[96];
        snprintf(note, sizeof note, "%.1f blocks a token; fwd gathers %.0f GB, dQ %.0f GB",
                 ga.pairs / b->T / b->Hkv, ga.fwd_blocks * 64.0 * b->D * 4 / 1e9,
                 ga.dq_blocks * 64.0 * b->D * 4 / 1e9);
        snprintf(what, sizeof what, "stage-3 fwd, %s", names[w]);
        row(what, b->T, time_median(b, sparse_fwd), flops, note);
        if (b->ws) {
            snprintf(what, sizeof what, "stage-3 fwd+bwd, %s", names[w]);
            row(what, b->T, time_median(b, stage3_fwd_bwd), 3.5 * flops, "");
        }
    }
    b->sel = full;
    struct gather ga = gather_of(b, fwd_tok, dq_tok);
    double flops = 4.0 * b->D * b->Hq * ga.keys;
    const char *sup = sparse_attention_split_supported(&b->s, &b->p) ? "" : "not supported: unsplit";
    row("stage-3 fwd, split (dyn + forced)", b->T, time_median(b, split_fwd), flops, sup);
    if (b->ws)
        row("stage-3 fwd+bwd, split fwd", b->T, time_median(b, split_fwd_bwd), 3.5 * flops, sup);
    backend_release(&be, part);
    free(h);
}

int main(int argc, char **argv) {
    int Hq = 32, Hkv = 2, D = 128;
    int64_t dense_max = 32768;
    int selection_only = 0, forward_only = 0, dense_only = 0, split_probe = 0;
    double q_rho = 0;
    int64_t Ts[16];
    int nT = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--hq") && i + 1 < argc) Hq = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--hkv") && i + 1 < argc) Hkv = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--d") && i + 1 < argc) D = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dense-max") && i + 1 < argc) dense_max = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--selection-only")) selection_only = 1;
        else if (!strcmp(argv[i], "--forward-only")) forward_only = 1;
        else if (!strcmp(argv[i], "--dense-only")) dense_only = 1;
        else if (!strcmp(argv[i], "--split-probe")) split_probe = 1;
        else if (!strcmp(argv[i], "--q-rho") && i + 1 < argc) q_rho = atof(argv[++i]);
        else if (nT < 16) Ts[nT++] = atoll(argv[i]);
    }
    if (nT == 0) Ts[nT++] = 8192;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        printf("bench_attention: no CUDA device\n");
        return 77;
    }
    backend_init(&be, DEVICE_CUDA, 0);
    printf("attention, causal, bf16, batch 1, Hq %d, Hkv %d, D %d; InfLLM-V2 defaults (kernel 32/16, "
           "block 64, window 2048, topk 64, init 1); queries %s (rho %.2f)\n\n", Hq, Hkv, D,
           q_rho > 0 ? "correlated over tokens" : "independent", q_rho);
    printf("| T | kernel | ms | TFLOP/s | note |\n|---|---|---|---|---|\n");
    for (int ti = 0; ti < nT; ti++) {
        struct bench b;
        memset(&b, 0, sizeof b);
        int64_t T = b.T = Ts[ti];
        b.Hq = Hq, b.Hkv = Hkv, b.D = D;
        b.s = (struct attn_shape){T, 0, T, Hq, Hkv, D, (int64_t)Hq * D, (int64_t)Hkv * D,
                                  (float)(1.0 / sqrt((double)D)), NULL};
        b.p = (struct infllm_params){32, 16, 64, 1, 32, 64, true, 0};
        b.nsel = infllm_num_selected(&b.p);
        b.L1 = infllm_num_windows(T, 32, 16);
        b.L2 = infllm_num_windows(T, 128, 64);
        int64_t nq = T * Hq * D, nk = T * Hkv * D, nblk = (T + 63) / 64;
        b.q = rand_bf16(nq, 1, (int64_t)Hq * D, q_rho);
        b.k = rand_bf16(nk, 2, 0, 0), b.v = rand_bf16(nk, 3, 0, 0);
        b.out = backend_alloc(&be, (size_t)nq * 2, "out");
        if (!forward_only) { /* the backward's inputs and outputs */
            b.dout = rand_bf16(nq, 4, 0, 0);
            b.dq = backend_alloc(&be, (size_t)nq * 2, "dq");
            b.dk = backend_alloc(&be, (size_t)nk * 2, "dk");
            b.dv = backend_alloc(&be, (size_t)nk * 2, "dv");
        }
        b.lse = backend_alloc(&be, (size_t)(T * Hq) * 4, "lse");
        b.k1 = backend_alloc(&be, (size_t)(b.L1 * Hkv * D) * 2, "k1");
        b.k2 = backend_alloc(&be, (size_t)(b.L2 * Hkv * D) * 2, "k2");
        b.sel = backend_alloc(&be, (size_t)(T * Hkv * b.nsel) * 4, "sel");
        if (!forward_only)
            b.ws = backend_alloc(&be, sparse_attention_backward_workspace_bytes(T, Hkv, b.nsel, nblk),
                                 "ws");
        double dense_fwd_flops = 4.0 * D * Hq * ((double)T * (T + 1) / 2);
        if (T <= dense_max && !selection_only) {
            const char *path = attention_wgmma_supported(&b.s) ? "wgmma" : "mma.sync";
            char dnote[64];
            float f = time_median(&b, dense_fwd);
            snprintf(dnote, sizeof dnote, "%s, %.0f%% of %.0f", path,
                     100.0 * dense_fwd_flops / (f * 1e-3) / 1e12 / GEMM_CEILING, GEMM_CEILING);
            row("dense fwd", T, f, dense_fwd_flops, dnote);
            if (!forward_only) {
                float fb = time_median(&b, dense_fwd_bwd);
                snprintf(dnote, sizeof dnote, "%s, %.0f%% of %.0f", path,
                         100.0 * 3.5 * dense_fwd_flops / (fb * 1e-3) / 1e12 / GEMM_CEILING,
                         GEMM_CEILING);
                row("dense fwd+bwd", T, fb, 3.5 * dense_fwd_flops, dnote);
            }
        }
        if (dense_only) {
            bench_release(&b);
            continue;
        }
        float sel_ms = time_median(&b, select_only);
        int G = Hq / Hkv, fwd_tok = (D == 64 ? 64 : 128) / G, dq_tok = 64 / G;
        struct gather ga = gather_of(&b, fwd_tok > 0 ? fwd_tok : 1, dq_tok > 0 ? dq_tok : 1);
        double keys = ga.keys;
        char note[160];
        snprintf(note, sizeof note, "%.0f keys per query (%.1f%% of causal)", keys / T,
                 100.0 * keys / ((double)T * (T + 1) / 2));
        /* selection FLOPs: one multiply-add per (token, head, causally visible compressed key),
         * K2 for the normaliser and K1 for the scores, ~T * L / 2 visible pairs each */
        double sel_flops = 2.0 * D * Hq * (double)T * (b.L1 + b.L2) / 2;
        row("selection (stages 0-2)", T, sel_ms, sel_flops, note);
        /* Bytes gathered, and the time they take at the device copy rate. */
        double kvb = 64.0 * D * 2 * 2, kv_gb = ga.pairs * G * (D * 2 * 2 + 8) / 1e9;
        char what[64];
        snprintf(what, sizeof what, "fwd, %d-token tiles", fwd_tok);
        snprintf(note, sizeof note, "K/V; a gathered block serves %.2f tokens",
                 ga.pairs / ga.fwd_blocks);
        gather_row(T, what, ga.fwd_blocks * kvb / 1e9, note);
        snprintf(what, sizeof what, "dQ, %d-token tiles", dq_tok);
        gather_row(T, what, ga.dq_blocks * kvb / 1e9, "K/V");
        gather_row(T, "dK/dV", kv_gb, "Q and dO rows");
        if (!selection_only) {
            double sparse_fwd_flops = 4.0 * D * Hq * keys;
            float sf = time_median(&b, sparse_fwd);
            row("sparse fwd (stage 3)", T, sf, sparse_fwd_flops, "");
            if (!forward_only) {
                float sfb = time_median(&b, sparse_step);
                snprintf(note, sizeof note, "selection %.0f%% of the step", 100.0 * sel_ms / sfb);
                row("sparse fwd+bwd incl. selection", T, sfb, 3.5 * sparse_fwd_flops + sel_flops,
                    note);
            }
            if (split_probe) split_rows(&b, fwd_tok > 0 ? fwd_tok : 1, dq_tok > 0 ? dq_tok : 1);
        }
        bench_release(&b);
    }
    backend_free(&be);
    return 0;
}
