/*
 * train.c: the training loop (see train.h).
 */
#include "train.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "checked.h"
#include "checkpoint.h"
#include "hf.h"
#include "profile.h"
#include "schedule.h"

/* Set by SIGTERM / SIGUSR1 / SIGINT: finish the step, checkpoint, exit 0. The one piece of process
 * state a signal handler may touch. */
static volatile sig_atomic_t stop_signal;

/* A second SIGINT (Ctrl-C twice) ends the process at once, as without a handler: a checkpoint
 * being written is left as an unused .tmp folder. */
static void on_stop_signal(int sig) {
    if (sig == SIGINT && stop_signal != 0) _exit(128 + SIGINT);
    stop_signal = sig;
}

static void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* Whether any rank was asked to stop (collective: all ranks agree). */
static bool stop_requested(const struct trainer *tr) {
    int32_t flag = stop_signal != 0;
    comm_allreduce(&tr->g->world, &flag, 1, COMM_I32, COMM_MAX);
    return flag != 0;
}

/* Rank 0 prints which GPU of which host every rank drives, and how tensors travel. */
static void print_gpu_map(const struct trainer *tr, int n_devices, enum comm_kind kind) {
    const struct grid *g = tr->g;
    char me[64];
    if (gethostname(me, sizeof me) != 0) snprintf(me, sizeof me, "?");
    me[sizeof me - 1] = '\0';
    char *hosts = g->world_rank == 0 ? xcalloc((size_t)g->world_size, sizeof me) : NULL;
    int32_t *devs = g->world_rank == 0 ? xcalloc((size_t)g->world_size, sizeof(int32_t)) : NULL;
    int32_t dev = tr->be.device_id;
    comm_gather(&g->world, hosts, me, sizeof me, COMM_U8, 0);
    comm_gather(&g->world, devs, &dev, 1, COMM_I32, 0);
    if (g->world_rank == 0) {
        char via[64] = "MPI staged via host (shared GPUs)";
#ifdef INFLLM_CUDA
        if (kind == COMM_KIND_NCCL) comm_nccl_version(via, sizeof via);
#endif
        printf("cuda: %d rank(s), %d GPU(s) on this node, tensor collectives through %s\n",
               g->world_size, n_devices, via);
        for (int r = 0; r < g->world_size; r++)
            printf("  rank %d (dp %d, cp %d) -> %s GPU %d\n", r, r / g->cp, r % g->cp,
                   hosts + (size_t)r * sizeof me, devs[r]);
    }
    free(hosts);
    free(devs);
}

/* Progress of a loader's opening check of its shards: a line every 5 s once it has run 2 s, and
 * one at the end when there was any. */
struct open_progress {
    const struct trainer *tr;
    const char *key;
    double t0, shown; /* start, and time of the last line (0: none yet) */
};

static void on_open(void *ctx, int done, int n, int64_t bytes_done, int64_t bytes_total) {
    struct open_progress *p = ctx;
    double now = now_seconds(), t = now - p->t0, rate = t > 0 ? (double)bytes_done / t : 0;
    if (done == n) {
        if (p->shown > 0)
            log_info(&p->tr->log, "data: checked %s: %d shard(s), %.1f GB in %.1f s (%.2f GB/s)\n",
                     p->key, n, (double)bytes_done / 1e9, t, rate / 1e9);
        return;
    }
    if (t < 2 || now - p->shown < 5) return;
    char eta[32] = "?";
    if (rate > 0 && bytes_total >= bytes_done)
        format_duration(eta, sizeof eta, (double)(bytes_total - bytes_done) / rate);
    log_info(&p->tr->log, "data: checking %s: %d of %d shards, %.1f of %.1f GB (%.2f GB/s), ETA "
             "%s\n", p->key, done, n, (double)bytes_done / 1e9, (double)bytes_total / 1e9,
             rate / 1e9, eta);
    p->shown = now;
}

/* Opens a loader over the config's training or validation stream, with progress. */
static void open_loader(struct trainer *tr, struct loader *l, bool val) {
    struct loader_source s = config_loader_source(tr->cfg, val);
    struct open_progress p = {tr, s.files_key, now_seconds(), 0};
    s.on_open = on_open;
    s.on_open_ctx = &p;
    loader_init(l, &s);
}

/* The trainer's host staging of one micro-batch (plan.h: run once to size, once to carve). */
static void declare_host(struct trainer *tr) {
    struct mem_plan *p = &tr->plan;
    size_t T1 = (size_t)tr->cfg->data.seq_len + 1, N = (size_t)tr->model.N;
    tr->seq = plan_take(p, PLAN_HOST, "sequence from the loader", T1 * sizeof(int32_t));
    tr->answer = plan_take(p, PLAN_HOST, "its retrieval positions", T1);
    tr->tokens = plan_take(p, PLAN_HOST, "micro-batch tokens", N * sizeof(int32_t));
    tr->targets = plan_take(p, PLAN_HOST, "micro-batch targets", N * sizeof(int32_t));
    tr->scored = plan_take(p, PLAN_HOST, "scored rows", N);
    tr->argmax = plan_take(p, PLAN_HOST, "predicted tokens", N * sizeof(int32_t));
    if (config_documents(tr->cfg)) {
        size_t T = (size_t)tr->cfg->data.seq_len, B = (size_t)tr->cfg->train.micro_batch_size;
        tr->seq_doc = plan_take(p, PLAN_HOST, "its document starts", T1);
        tr->doc_first = plan_take(p, PLAN_HOST, "micro-batch document starts", B * T);
    }
    const struct data_config *d = &tr->cfg->data;
    if (d->val_answer_files.n > 0) {
        tr->file_spans = plan_take(p, PLAN_HOST, "answer spans per validation file",
                                   (size_t)d->val_files.n * 2 * sizeof(int64_t));
        tr->span_rows = plan_take(p, PLAN_HOST, "answer rows of one sequence", (size_t)d->seq_len);
    }
}

/* Bytes of host memory available now (Linux's MemAvailable: free, and cache it can drop) and, in
 * *total, the machine's; without /proc/meminfo both are the physical memory (0 when unknown). */
static double host_memory(double *total) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    *total = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib >= 0 ? (double)kib * 1024.0 : *total;
}

/* Plans everything (model, optimizer, host staging) without allocating, prints the plan, and
 * refuses one that does not fit the device's free memory. */
static void plan_run(struct trainer *tr, int64_t pad) {
    const struct grid *g = tr->g;
    model_init(&tr->model, tr->cfg, &tr->be, g, pad, false);
    if (tr->mode != TRAINER_EVAL) {
        struct param_space space = model_param_space(&tr->model);
        adamw_init(&tr->opt, &tr->be, &space, g->world_rank, g->world_size, false);
    }
    plan_init(&tr->plan, &tr->be);
    declare_host(tr);
    const struct mem_plan *more[2] = {&tr->opt.plan, &tr->plan};
    if (g->world_rank == 0) {
        model_print_plan(&tr->model, more, 2, stdout);
        double fwd, bwd;
        attention_layer_comm_bytes(&tr->model.attn, &fwd, &bwd);
        if (g->cp > 1)
            printf("context parallelism: each rank sends %.2f MiB (forward) + %.2f MiB (backward) "
                   "per layer per micro-batch in attention\n", fwd / 1048576.0, bwd / 1048576.0);
    }
    size_t free_b = 0, total_b = 0;
    backend_mem_info(&tr->be, &free_b, &total_b);
    size_t need = plan_bytes(&tr->model.plan, false) + plan_bytes(&tr->opt.plan, false) +
                  ((size_t)512 << 20);
    if (total_b == 0) { /* host memory: this node's ranks together against what it has free */
        double per_rank = (double)(need + plan_bytes(&tr->plan, true));
        double node = per_rank * g->local_size, ram = 0, avail = host_memory(&ram);
        if (avail > 0 && node > avail) {
            model_print_plan(&tr->model, more, 2, stderr);
            die_user("%s: the run needs about %.2f GiB of host memory per rank (plan above + 0.5 "
                     "GiB margin), %.2f GiB for the %d rank(s) on this node, but this machine has "
                     "%.2f GiB available (of %.2f); lower the model's sizes, "
                     "train.micro_batch_size or data.seq_len", tr->cfg->path,
                     per_rank / (1 << 30), node / (1 << 30), g->local_size, avail / (1 << 30),
                     ram / (1 << 30));
        }
        return;
    }
    if (need > free_b) {
        model_print_plan(&tr->model, more, 2, stderr);
        die_user("%s: the run needs about %.2f GiB per GPU (plan above + 0.5 GiB margin) but "
                 "%.2f GiB of %.2f are free; lower train.micro_batch_size or data.seq_len, raise "
                 "parallel.cp, or set train.recompute",
                 tr->cfg->path, (double)need / (1 << 30), (double)free_b / (1 << 30),
                 (double)total_b / (1 << 30));
    }
}

/* The weights: imported from model.init_from, or the seeded random init. */
static void init_weights(struct trainer *tr) {
    const struct config *c = tr->cfg;
    if (!c->model.init_from[0]) {
        model_init_weights(&tr->model, c->seed);
        return;
    }
    float *host = xcalloc((size_t)tr->model.n_params_padded, sizeof(float));
    hf_import_weights(&tr->model, c->model.init_from, host);
    backend_upload_act(&tr->be, tr->model.param_buf, host, tr->model.n_params_padded);
    free(host);
    log_info(&tr->log, "weights imported from %s\n", c->model.init_from);
}

/* What the training stream reads, once, in words: the shards' windows and how many steps an epoch
 * of them takes, and the synthetic task's share. */
static void log_data(struct trainer *tr) {
    const struct config *c = tr->cfg;
    const struct data_config *d = &c->data;
    const struct loader *l = &tr->train_data;
    if (d->source == DATA_SOURCE_SYNTHETIC) {
        log_info(&tr->log, "data: the synthetic retrieval task, %lld + 1 tokens a sequence\n",
                 (long long)d->seq_len);
        return;
    }
    double share = (double)l->synthetic_ppm / 1e6; /* of the stream: shard windows get 1 - share */
    double steps = (double)l->n_windows / ((1 - share) * c->train.global_batch_size);
    char mix[96] = "";
    if (share > 0)
        snprintf(mix, sizeof mix, "; %.4g%% of the sequences are the synthetic retrieval task",
                 100 * share);
    log_info(&tr->log, "data: %d shard(s), %lld windows of %lld + 1 tokens (an epoch is %.1f "
             "steps)%s\n", l->n_shards, (long long)l->n_windows, (long long)d->seq_len, steps, mix);
}

/* What InfLLM-V2 sparse attention does at this length, once, in words. */
static void log_sparse(struct trainer *tr) {
    const struct config *c = tr->cfg;
    const struct attention_config *a = &c->attention;
    char why[96];
    if (a->dense_len < 0)
        snprintf(why, sizeof why, "attention.dense_len -1: always");
    else
        snprintf(why, sizeof why, "data.seq_len %lld >= attention.dense_len %lld",
                 (long long)c->data.seq_len, (long long)a->dense_len);
    log_info(&tr->log,
             "InfLLM-V2 sparse attention (%s): each query attends to at most %d of the %lld "
             "blocks of %d tokens: the first %d, its own and the %d tokens before it, and the %d "
             "others of highest compressed-key score\n",
             why, tr->model.attn.nsel, (long long)(c->data.seq_len / a->block_size), a->block_size,
             a->init_blocks, a->window_size, a->topk - a->init_blocks - 1);
}

void trainer_init(struct trainer *tr, const struct config *c, struct grid *g,
                  enum trainer_mode mode) {
    memset(tr, 0, sizeof *tr);
    tr->cfg = c;
    tr->g = g;
    tr->mode = mode;
    log_init(&tr->log, c->run_dir, g->world_rank == 0 && mode == TRAINER_TRAIN);
    tr->log.root = g->world_rank == 0;
    backend_init(&tr->be, c->device, g->local_rank);
    enum comm_kind kind = grid_attach_device(g, c->device == DEVICE_CUDA, tr->be.n_devices,
                                             tr->be.gpu.stream);
    open_loader(tr, &tr->train_data, false);
    open_loader(tr, &tr->val_data, true);
    int64_t pad = (int64_t)g->world_size * ADAMW_ALIGN;
    plan_run(tr, pad);
    if (mode == TRAINER_PLAN) {
        log_data(tr);
        return;
    }
    model_free(&tr->model);
    model_init(&tr->model, c, &tr->be, g, pad, true);
    plan_allocate(&tr->plan);
    declare_host(tr);
    plan_carved(&tr->plan);
    if (c->device == DEVICE_CUDA) print_gpu_map(tr, tr->be.n_devices, kind);
    init_weights(tr);
    if (mode == TRAINER_TRAIN) {
        struct param_space space = model_param_space(&tr->model);
        adamw_free(&tr->opt);
        adamw_init(&tr->opt, &tr->be, &space, g->world_rank, g->world_size, true);
    }
    const struct train_config *t = &c->train;
    tr->hparams = (struct adamw_hparams){t->weight_decay, t->beta1, t->beta2, t->eps,
                                         t->grad_clip};
    tr->sched = (struct lr_params){t->schedule, t->lr, t->min_lr, t->warmup_steps, t->max_steps,
                                   t->decay_fraction};
    tr->accum = t->global_batch_size / (t->micro_batch_size * g->dp);
    log_info(&tr->log,
             "run: %lld parameters, %d rank(s) (dp %d x cp %d), %s, %s attention, %d micro-step(s) "
             "of %d x %lld tokens per step\n",
             (long long)tr->model.n_params, g->world_size, g->dp, g->cp,
             c->device == DEVICE_CPU ? "cpu fp32" : "cuda bf16",
             tr->model.sparse ? "InfLLM-V2 sparse" : "dense", tr->accum, t->micro_batch_size,
             (long long)c->data.seq_len);
    if (mode == TRAINER_TRAIN) log_data(tr);
    if (tr->model.sparse) log_sparse(tr);
}

void trainer_free(struct trainer *tr) {
    plan_free(&tr->plan);
    loader_free(&tr->val_data);
    loader_free(&tr->train_data);
    adamw_free(&tr->opt);
    model_free(&tr->model);
    backend_free(&tr->be);
    log_close(&tr->log);
}

/* Fills this rank's rows from sequences first .. first + B - 1 of the stream; sequences at or past
 * `limit` (when limit >= 0) are masked (targets -1). With documents, the first token of a document
 * is no target (the previous document does not predict it), and the micro-batch's boundaries go to
 * model_set_documents. Returns the number of this rank's rows with a target. */
static int64_t fill_batch(struct trainer *tr, struct loader *l, int64_t first, int64_t limit) {
    struct model *m = &tr->model;
    int64_t n = m->shard.n_local, T = m->T, count = 0;
    bool docs = m->attn.documents;
    for (int b = 0; b < m->B; b++) {
        int64_t gseq = first + b;
        bool masked = limit >= 0 && gseq >= limit;
        bool answers_only = tr->cfg->data.synthetic.answers_only && loader_is_synthetic(l, gseq);
        if (masked) {
            memset(tr->seq, 0, (size_t)(T + 1) * sizeof(int32_t));
            memset(tr->answer, 0, (size_t)(T + 1));
            if (docs) memset(tr->seq_doc, 0, (size_t)(T + 1));
        } else {
            loader_read_docs(l, gseq, tr->seq, tr->answer, docs ? tr->seq_doc : NULL);
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t p = seq_shard_pos(&m->shard, i);
            bool answer = !masked && tr->answer[p + 1]; /* row p predicts token p + 1 */
            bool cut = docs && tr->seq_doc[p + 1];     /* token p + 1 starts a document */
            tr->tokens[b * n + i] = tr->seq[p];
            tr->targets[b * n + i] =
                masked || cut || (answers_only && !answer) ? -1 : tr->seq[p + 1];
            tr->scored[b * n + i] = answer && !cut;
            count += tr->targets[b * n + i] >= 0;
        }
        if (docs) memcpy(tr->doc_first + b * T, tr->seq_doc, (size_t)T);
    }
    if (docs) model_set_documents(m, tr->doc_first);
    return count;
}

/* Scored targets of the n sequences from `first` of the training stream: every token, but with
 * answers_only only the queried values (one each) of the synthetic task's sequences. */
static double stream_targets(const struct trainer *tr, int64_t first, int64_t n) {
    const struct data_config *d = &tr->cfg->data;
    int64_t synthetic = d->synthetic.answers_only
                            ? loader_synthetic_count(&tr->train_data, first, n) : 0;
    return (double)synthetic * (double)d->synthetic.n_queries +
           (double)(n - synthetic) * (double)d->seq_len;
}

/* First global sequence of micro-step `micro` of this rank's dp group in a batch starting at base. */
static int64_t micro_first(const struct trainer *tr, int64_t base, int micro) {
    int B = tr->cfg->train.micro_batch_size;
    return base + ((int64_t)micro * tr->g->dp + tr->g->dp_rank) * B;
}

/* Targets of the step starting at sequence base, over all ranks: those of its global_batch_size
 * sequences (stream_targets), or with documents (whose first tokens are no targets) counted by filling
 * every micro-batch of the step once more before it runs (the loss is the mean over the targets,
 * and its gradient's scale must be known before the first forward). At least 1. */
static double step_targets(struct trainer *tr, int64_t base) {
    const struct config *c = tr->cfg;
    if (!tr->model.attn.documents) return stream_targets(tr, base, c->train.global_batch_size);
    int64_t count = 0;
    for (int micro = 0; micro < tr->accum; micro++)
        count += fill_batch(tr, &tr->train_data, micro_first(tr, base, micro), -1);
    comm_allreduce(&tr->g->world, &count, 1, COMM_I64, COMM_SUM);
    return count > 0 ? (double)count : 1.0;
}

/* Stops the run (exit 3, every rank: loss and norm are global) before the update when the step
 * blew up: a non-finite loss or norm, or past a train.guard limit; else updates the running mean. */
static void guard_step(struct trainer *tr, double loss, double norm) {
    const struct train_config *t = &tr->cfg->train;
    char why[160] = "";
    if (!isfinite(loss) || !isfinite(norm))
        snprintf(why, sizeof why, "not finite");
    else if (t->guard_grad_norm > 0 && norm > t->guard_grad_norm)
        snprintf(why, sizeof why, "gradient norm above train.guard.grad_norm = %g", t->guard_grad_norm);
    else if (t->guard_loss_spike > 0 && tr->loss_ema_steps >= 10 &&
             loss > t->guard_loss_spike * tr->loss_ema)
        snprintf(why, sizeof why, "loss above train.guard.loss_spike = %g x the running mean %.4f",
                 t->guard_loss_spike, tr->loss_ema);
    if (why[0]) {
        if (tr->g->world_rank == 0)
            fprintf(stderr,
                    "error: step %lld: loss %g, gradient norm %g: %s: training diverged; stopping "
                    "before the weights are updated, nothing of this step is saved (lower train.lr "
                    "or raise train.warmup_steps)\n",
                    (long long)tr->step + 1, loss, norm, why);
        infllm_exit(EXIT_CODE_DIVERGED);
    }
    tr->loss_ema = tr->loss_ema_steps == 0 ? loss : tr->loss_ema + 0.05 * (loss - tr->loss_ema);
    tr->loss_ema_steps++;
}

/* Adds the micro-batch's retrieval answers and exact predictions (the forward kept its argmax) to
 * counts[0], counts[1]. */
static void count_answers(struct trainer *tr, int64_t counts[2]) {
    const struct model *m = &tr->model;
    model_download_argmax(m, tr->argmax);
    for (int64_t i = 0; i < m->N; i++) {
        if (!tr->scored[i]) continue;
        counts[0]++;
        counts[1] += tr->argmax[i] == tr->targets[i];
    }
}

double trainer_step(struct trainer *tr, double lr, double *grad_norm) {
    const struct config *c = tr->cfg;
    struct model *m = &tr->model;
    int64_t base = size_mul(tr->step, c->train.global_batch_size); /* bounded: config_validate */
    double tokens_in_step = step_targets(tr, base);
    float grad_scale = (float)(1.0 / tokens_in_step);
    double loss_sum = 0;
    int64_t counts[2] = {0, 0}; /* answers, correct */
    bool retrieval = config_synthetic(c);
    m->keep_argmax = retrieval;
    model_zero_grad(m);
    for (int micro = 0; micro < tr->accum; micro++) {
        fill_batch(tr, &tr->train_data, micro_first(tr, base, micro), -1);
        loss_sum += model_forward(m, tr->tokens, tr->targets, true, grad_scale);
        if (retrieval) count_answers(tr, counts);
        model_backward(m);
    }
    m->keep_argmax = false;
    if (retrieval) {
        comm_allreduce(&tr->g->world, counts, 2, COMM_I64, COMM_SUM);
        tr->step_answers[0] = counts[0], tr->step_answers[1] = counts[1];
    }
    comm_allreduce(&tr->g->world, &loss_sum, 1, COMM_F64, COMM_SUM);
    double loss = loss_sum / tokens_in_step;
    prof_begin(PROF_OPTIMIZER);
    double norm = adamw_reduce(&tr->opt, tr->g);
    guard_step(tr, loss, norm);
    adamw_apply(&tr->opt, tr->g, &tr->hparams, lr, norm);
    prof_end();
    *grad_norm = norm;
    return loss;
}

/* Adds the micro-batch's scored rows to the position buckets and, with answer masks, each
 * sequence's answer spans to its validation file's counts. A span may cross the positions of
 * several cp ranks: the group's rows of a sequence meet in position order by a maximum over the
 * cp ranks (enum eval_row), and cp rank 0 counts the spans, once per group. first: the
 * micro-batch's first sequence; sequences at or past limit are padding. */
static void eval_rows(struct trainer *tr, struct eval_buckets *bk, int64_t first, int64_t limit) {
    const struct model *m = &tr->model;
    const struct grid *g = tr->g;
    int64_t n = m->shard.n_local;
    for (int64_t i = 0; bk->n > 0 && i < m->N; i++) {
        if (tr->targets[i] < 0) continue;
        int64_t pos = m->attn.documents ? m->pos_host[i] : seq_shard_pos(&m->shard, i % n);
        eval_buckets_add(bk, pos + 1, m->loss_host[i]); /* the target's position */
    }
    if (!tr->file_spans) return;
    for (int b = 0; b < m->B && first + b < limit; b++) {
        memset(tr->span_rows, EVAL_ROW_NONE, (size_t)m->T);
        for (int64_t i = 0, r = b * n; i < n; i++, r++)
            if (tr->scored[r])
                tr->span_rows[seq_shard_pos(&m->shard, i)] =
                    tr->argmax[r] == tr->targets[r] ? EVAL_ROW_RIGHT : EVAL_ROW_WRONG;
        if (g->cp > 1) comm_allreduce(&g->cp_comm, tr->span_rows, m->T, COMM_U8, COMM_MAX);
        if (g->cp_rank == 0)
            eval_spans_add(tr->file_spans + 2 * loader_file_of(&tr->val_data, first + b),
                           tr->span_rows, m->T);
    }
}

struct eval_result trainer_eval(struct trainer *tr) {
    const struct config *c = tr->cfg;
    struct model *m = &tr->model;
    int64_t total = c->train.eval_batches;
    int64_t per_micro = (int64_t)c->train.micro_batch_size * tr->g->dp;
    int64_t micros = (total + per_micro - 1) / per_micro;
    double loss_sum = 0;
    int64_t counts[3] = {0, 0, 0}; /* answers, correct, targets */
    struct eval_result r = {.n_files = tr->file_spans ? c->data.val_files.n : 0};
    eval_buckets_init(&r.buckets, &c->train.eval_buckets);
    if (r.n_files) memset(tr->file_spans, 0, (size_t)r.n_files * 2 * sizeof(int64_t));
    m->keep_argmax = true;
    for (int64_t micro = 0; micro < micros; micro++) {
        int64_t first = micro_first(tr, 0, (int)micro);
        counts[2] += fill_batch(tr, &tr->val_data, first, total);
        loss_sum += model_forward(m, tr->tokens, tr->targets, false, 0.0f);
        count_answers(tr, counts);
        eval_rows(tr, &r.buckets, first, total);
    }
    m->keep_argmax = false;
    comm_allreduce(&tr->g->world, &loss_sum, 1, COMM_F64, COMM_SUM);
    comm_allreduce(&tr->g->world, counts, 3, COMM_I64, COMM_SUM);
    if (r.buckets.n) {
        comm_allreduce(&tr->g->world, r.buckets.loss, r.buckets.n, COMM_F64, COMM_SUM);
        comm_allreduce(&tr->g->world, r.buckets.tokens, r.buckets.n, COMM_I64, COMM_SUM);
    }
    if (r.n_files) comm_allreduce(&tr->g->world, tr->file_spans, 2 * r.n_files, COMM_I64, COMM_SUM);
    /* cp ranks of a group hold different rows of the same sequences: every row counts once */
    r.tokens = counts[2];
    r.answers = counts[0];
    r.correct = counts[1];
    r.file_spans = r.n_files ? tr->file_spans : NULL;
    r.loss = loss_sum / (double)(r.tokens > 0 ? r.tokens : 1);
    return r;
}

/* Step times of one invocation: the first step (warm-up: page faults, caches) apart. */
struct step_times {
    double first;       /* seconds of the invocation's first step */
    double after_first; /* seconds of the steps after it, together */
    int64_t timed;      /* how many those are */
};

/* The closing line: steps, time, mean step after the first (the one step's time when there was
 * only one), tokens/s, device memory in use. */
static void log_summary(const struct trainer *tr, int64_t steps, double seconds,
                        const struct step_times *st) {
    if (steps == 0) return;
    const struct config *c = tr->cfg;
    double tokens = (double)c->train.global_batch_size * (double)c->data.seq_len;
    double mean = st->timed ? st->after_first / (double)st->timed : st->first;
    char tps[32];
    format_count(tps, sizeof tps, tokens / mean);
    size_t free_b = 0, total_b = 0;
    backend_mem_info(&tr->be, &free_b, &total_b);
    char mem[96] = "";
    if (total_b)
        snprintf(mem, sizeof mem, ", device memory in use %.2f GiB of %.2f",
                 (double)(total_b - free_b) / (1 << 30), (double)total_b / (1 << 30));
    log_info(&tr->log, "done: %lld step(s) in %.1f s, %.0f ms %s, %s tok/s%s\n",
             (long long)steps, seconds, mean * 1e3,
             st->timed ? "per step after the first" : "for the one step", tps, mem);
}

static void sync_backend(const void *be) { backend_sync(be); }

/* The profiled step's split (log.profile_step): a line with ms and share per region, and the
 * per-layer figures of the regions that run once per layer. */
static void log_profile(struct trainer *tr, const double sec[PROF_COUNT]) {
    double total = 0;
    for (int r = 0; r < PROF_COUNT; r++) total += sec[r];
    char line[512];
    int n = snprintf(line, sizeof line, "profile step %lld (%.0f ms, device synchronised per "
                     "region):", (long long)tr->step, total * 1e3);
    char json[512];
    int nj = snprintf(json, sizeof json, "\"step\": %lld, \"profile_ms\": {", (long long)tr->step);
    for (int r = 0; r < PROF_COUNT; r++) {
        n += snprintf(line + n, sizeof line - (size_t)n, " %s %.1f ms (%.0f%%)%s",
                      prof_name((enum prof_region)r), sec[r] * 1e3,
                      total > 0 ? 100 * sec[r] / total : 0.0, r + 1 < PROF_COUNT ? "," : "");
        nj += snprintf(json + nj, sizeof json - (size_t)nj, "%s\"%s\": %.3f", r ? ", " : "",
                       prof_name((enum prof_region)r), sec[r] * 1e3);
    }
    snprintf(json + nj, sizeof json - (size_t)nj, "}");
    log_info(&tr->log, "%s\n", line);
    int L = tr->model.L;
    log_info(&tr->log, "profile per layer (of %d): gemm %.2f ms, attention %.2f ms, selection "
             "%.2f ms, comm %.2f ms (gemm includes the loss head's)\n", L,
             sec[PROF_GEMM] * 1e3 / L, sec[PROF_ATTENTION] * 1e3 / L,
             sec[PROF_SELECTION] * 1e3 / L, sec[PROF_COMM] * 1e3 / L);
    log_metrics(&tr->log, "%s", json);
}

static bool eval_due(const struct trainer *tr) {
    const struct config *c = tr->cfg;
    const struct train_config *t = &c->train;
    bool has_val = c->data.source == DATA_SOURCE_SYNTHETIC || c->data.val_files.n > 0;
    if (t->eval_every <= 0 || t->eval_batches <= 0 || !has_val) return false;
    return tr->step % t->eval_every == 0 || tr->step == t->max_steps;
}

static void run_eval(struct trainer *tr) {
    double t0 = now_seconds();
    struct eval_result r = trainer_eval(tr);
    char acc[96] = "";
    if (r.answers)
        snprintf(acc, sizeof acc, " | retrieval accuracy %.1f%% (%lld of %lld)",
                 100.0 * (double)r.correct / (double)r.answers, (long long)r.correct,
                 (long long)r.answers);
    log_info(&tr->log, "eval step %lld | val loss %.4f%s | %.1f s\n", (long long)tr->step, r.loss,
             acc, now_seconds() - t0);
    log_metrics(&tr->log, "\"step\": %lld, \"val_loss\": %.6f, \"val_accuracy\": %.6f",
                (long long)tr->step, r.loss,
                r.answers ? (double)r.correct / (double)r.answers : 0.0);
}

/* The step's line (every log.every steps, the first and the last) and its metrics record. On the
 * synthetic task the line carries the retrieval accuracy of the training batches since the last
 * line (fresh sequences, predicted before each step's update), the record that of the step. */
static void log_step(struct trainer *tr, double loss, double norm, double lr, double dt,
                     double per_step) {
    const struct config *c = tr->cfg;
    const struct train_config *t = &c->train;
    double tokens_per_step = (double)t->global_batch_size * (double)c->data.seq_len;
    int64_t *sa = tr->step_answers, *la = tr->line_answers;
    la[0] += sa[0], la[1] += sa[1];
    char eta[32], tps[32], acc[64] = "", acc_json[96] = "";
    format_duration(eta, sizeof eta, per_step * (double)(t->max_steps - tr->step));
    format_count(tps, sizeof tps, tokens_per_step / dt);
    if (la[0]) snprintf(acc, sizeof acc, " | retrieval %.1f%%", 100.0 * (double)la[1] / (double)la[0]);
    if (sa[0])
        snprintf(acc_json, sizeof acc_json, ", \"answers\": %lld, \"correct\": %lld",
                 (long long)sa[0], (long long)sa[1]);
    if (tr->step % c->log.every == 0 || tr->step == t->max_steps || tr->step == 1) {
        int width = snprintf(NULL, 0, "%lld", (long long)t->max_steps);
        log_info(&tr->log,
                 "step %*lld/%lld | loss %.4f%s | grad norm %.3f | lr %.2e | %.0f ms | %s tok/s "
                 "| ETA %s\n",
                 width, (long long)tr->step, (long long)t->max_steps, loss, acc, norm, lr,
                 dt * 1e3, tps, eta);
        la[0] = la[1] = 0;
    }
    log_metrics(&tr->log,
                "\"step\": %lld, \"loss\": %.17g, \"lr\": %.9g, \"grad_norm\": %.17g, "
                "\"ms\": %.3f, \"tokens_per_s\": %.1f%s",
                (long long)tr->step, loss, lr, norm, dt * 1e3, tokens_per_step / dt, acc_json);
}

int trainer_run(struct trainer *tr) {
    CHECK(tr->mode == TRAINER_TRAIN);
    const struct config *c = tr->cfg;
    const struct train_config *t = &c->train;
    install_stop_handlers();
    int64_t first_step = tr->step;
    struct step_times st = {0, 0, 0};
    double t_start = now_seconds();
    while (tr->step < t->max_steps) {
        double lr = lr_at(&tr->sched, tr->step);
        double t0 = now_seconds();
        double norm = 0;
        bool profiled = tr->step + 1 == c->log.profile_step;
        if (profiled) prof_start(sync_backend, &tr->be);
        double loss = trainer_step(tr, lr, &norm);
        backend_sync(&tr->be);
        double dt = now_seconds() - t0;
        double region_sec[PROF_COUNT];
        if (profiled) prof_stop(region_sec);
        tr->step++;
        /* The invocation's first step pays for warm-up (page faults, caches): the ETA leaves it
         * out, also in a resumed run. */
        if (tr->step == first_step + 1) {
            st.first = dt;
        } else {
            st.after_first += dt;
            st.timed++;
        }
        double per_step = st.timed ? st.after_first / (double)st.timed : st.first;
        log_step(tr, loss, norm, lr, dt, per_step);
        if (profiled) log_profile(tr, region_sec);
        if (eval_due(tr)) run_eval(tr);
        bool stop = stop_requested(tr);
        bool slice_done = t->exit_after_steps > 0 && tr->step - first_step >= t->exit_after_steps;
        if (stop || slice_done) {
            log_info(&tr->log, "%s after step %lld: checkpointing and exiting\n",
                     stop ? "stop signal received" : "train.exit_after_steps reached",
                     (long long)tr->step);
            checkpoint_save(tr);
            log_summary(tr, tr->step - first_step, now_seconds() - t_start, &st);
            return EXIT_CODE_OK;
        }
        bool last = tr->step == t->max_steps && c->checkpoint.at_end;
        if (last || (c->checkpoint.every > 0 && tr->step % c->checkpoint.every == 0))
            checkpoint_save(tr);
    }
    log_summary(tr, tr->step - first_step, now_seconds() - t_start, &st);
    return EXIT_CODE_OK;
}
