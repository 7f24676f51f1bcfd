/*
 * train.h: the training loop of one rank: data -> forward/backward over the micro-batches of a
 * step -> ZeRO-1 AdamW -> log, evaluate.
 *
 * Step s reads global sequences [s * global_batch, (s + 1) * global_batch). With dp groups of
 * micro_batch_size sequences, micro-step m of dp group d reads sequences
 * s * global_batch + (m * dp + d) * micro_batch_size + [0, micro_batch_size), and every cp rank of
 * the group keeps its chunks of them. The loss is the mean over all target tokens of the step.
 */
#ifndef INFLLM_TRAIN_H
#define INFLLM_TRAIN_H

#include <stdint.h>

#include "adamw.h"
#include "backend.h"
#include "config.h"
#include "eval_stats.h"
#include "grid.h"
#include "loader.h"
#include "log.h"
#include "model.h"
#include "schedule.h"

enum trainer_mode {
    TRAINER_TRAIN = 0,  /* everything: model, optimizer, data */
    TRAINER_PLAN = 1,   /* --dry-run: data opened, plan printed, nothing allocated */
    TRAINER_EVAL = 2,   /* model and validation data, no optimizer, no metrics file */
};

struct trainer {
    const struct config *cfg;
    struct grid *g;
    struct backend be;
    struct model model;
    struct adamw opt;
    struct loader train_data;
    struct loader val_data;
    struct logger log;
    struct adamw_hparams hparams; /* the config's AdamW settings */
    struct lr_params sched;       /* and its learning-rate schedule */
    int accum;            /* micro-steps per optimizer step */
    int64_t step;         /* next step to run (0-based) */
    uint64_t run_id;      /* lineage of the checkpoints this run writes and may prune (checkpoint.h) */
    double loss_ema;      /* running mean of the step loss (train.guard.loss_spike), and its steps */
    int64_t loss_ema_steps;
    /* Synthetic task: the retrieval answers of the last training step and of the steps since the
     * last printed line; [0] scored, [1] predicted exactly (argmax, before the step's update). */
    int64_t step_answers[2];
    int64_t line_answers[2];

    /* Host staging, from `plan` (host arena) */
    int32_t *seq;         /* (T + 1) one sequence from the loader */
    int32_t *tokens;      /* (N) inputs of this rank's micro-batch */
    int32_t *targets;     /* (N) */
    uint8_t *answer;      /* (T + 1) retrieval positions of one sequence (synthetic task) */
    uint8_t *scored;      /* (N) rows whose target is a retrieval answer */
    int32_t *argmax;      /* (N) predicted tokens, host copy */
    uint8_t *seq_doc;     /* (T + 1) document starts of one sequence (documents only) */
    uint8_t *doc_first;   /* (B, T) document starts of the micro-batch (documents only) */
    int64_t *file_spans;  /* (n_val_files, 2) answer spans, and those predicted whole, of each
                             validation file in the last evaluation (data.val_answer_files only) */
    uint8_t *span_rows;   /* (T) one sequence's rows as enum eval_row, in position order (the same) */
    struct mem_plan plan; /* owns the host staging above */
    enum trainer_mode mode;
};

/* What one evaluation measured over all ranks. */
struct eval_result {
    double loss;          /* mean per-token loss */
    int64_t tokens;       /* scored tokens */
    int64_t answers;      /* retrieval answers among them (synthetic task; 0 for shards) */
    int64_t correct;      /* answers the model predicted exactly (argmax) */
    struct eval_buckets buckets; /* loss by position (train.eval_buckets) */
    int n_files;                 /* validation files with answer masks (data.val_answer_files) */
    const int64_t *file_spans;   /* (n_files, 2) their answer spans and the ones whose every token
                                    is the argmax; the trainer's memory, valid until the next
                                    evaluation; NULL when n_files is 0 */
};

/* Sets up the backend, model, optimizer and loaders for `mode`, and prints the memory plan (the
 * model's, the optimizer's and the trainer's host staging, one table). TRAINER_PLAN opens and
 * checks the data and prints the plan but allocates nothing (--dry-run); TRAINER_EVAL allocates
 * the model but no optimizer. */
void trainer_init(struct trainer *tr, const struct config *c, struct grid *g,
                  enum trainer_mode mode);
void trainer_free(struct trainer *tr);

/* Trains from tr->step to train.max_steps. Returns the process exit code. */
int trainer_run(struct trainer *tr);

/* One optimizer step: returns the mean loss of the step and sets *grad_norm. Stops the run (exit
 * code 3, after a clear message, before touching the weights) when the loss or the gradient is not
 * finite, or past a train.guard limit. */
double trainer_step(struct trainer *tr, double lr, double *grad_norm);

/* Validation loss, and retrieval accuracy on the synthetic task (or at the answers that
 * data.val_answer_files marks), over train.eval_batches sequences of the validation stream (all
 * ranks together); the loss by position bucket (train.eval_buckets) and the answer spans per
 * validation file. */
struct eval_result trainer_eval(struct trainer *tr);

#endif
