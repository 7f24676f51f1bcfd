/*
 * checkpoint.h: checkpoints that never lose a run, and exact resume (docs/FORMATS.md).
 *
 * A checkpoint is a folder <run_dir>/ckpt/step_<8 digits>/ holding
 *   model.safetensors          fp32 master weights under their Hugging Face names (rank 0 writes)
 *   optim_<5 digits>.safetensors  one per rank: the AdamW moments of the rank's ZeRO-1 slice, with
 *                              the flat offsets it covers in __metadata__ (slice_start, slice_len)
 *   train_config.json          the run's config (config_to_json), what export and resume read
 *   state.json                 step, tokens seen, optimizer step, world layout;
 *                              written last: a folder without it is not a checkpoint
 * Writing is atomic: every rank writes into step_<N>.tmp/, each file is fsynced, rank 0 writes
 * state.json, renames the folder to step_<N> and fsyncs the parent, then replaces the pointer file
 * <run_dir>/ckpt/latest (written to latest.tmp, fsynced, renamed). A crash at any moment leaves the
 * previous checkpoint and pointer intact; half-written folders end in .tmp and are never loaded
 * (the next save removes them). Older checkpoints beyond checkpoint.keep_last are removed only
 * after the new one is complete.
 *
 * Resume restores weights, moments and the step (which alone chooses the next data and the
 * learning rate), so the run continues as if uninterrupted (bit-identical losses on the CPU with
 * the same layout). A different rank count re-shards the moments: each rank reads the parts of the
 * old slices that overlap its new one.
 */
#ifndef INFLLM_CHECKPOINT_H
#define INFLLM_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "train.h"

/* Writes the checkpoint of the trainer's current step (collective over the world). */
void checkpoint_save(struct trainer *tr);

/* The checkpoint folder the config asks to resume from into out: resume "none" -> false; "auto" ->
 * the one <run_dir>/ckpt/latest points to, false when there is none; a path -> that folder (a user
 * error when it is not a complete checkpoint). */
bool checkpoint_resolve(const struct config *c, char *out, size_t out_len);

/* Loads weights, optimizer moments and the loop position from `dir` into an initialised trainer
 * (collective). A tensor whose shape disagrees with the config is a user error naming the tensor
 * and both shapes. */
void checkpoint_load(struct trainer *tr, const char *dir);

/* Reads the fp32 weights of model.safetensors in `dir` into host (n_params floats in the model's
 * flat layout), checking names and shapes against the model's entries. */
void checkpoint_read_weights(const struct model *m, const char *dir, float *host);

#endif
