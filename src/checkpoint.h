/*
 * checkpoint.h: checkpoints that never lose a run, and exact resume (docs/RELIABILITY.md says what
 * is promised and which test proves it).
 *
 * A checkpoint is a folder <run_dir>/ckpt/step_<8 digits>/ holding
 *   model.safetensors          fp32 master weights under their Hugging Face names (rank 0 writes)
 *   optim_<5 digits>.safetensors  one per rank: the AdamW moments of the rank's ZeRO-1 slice, with
 *                              the flat offsets it covers in __metadata__ (slice_start, slice_len)
 *   train_config.json          the run's config (config_to_json), what export and resume read
 *   state.json                 step, tokens seen, optimizer step, world layout, the run's lineage id
 *                              (run_id), the divergence guard's running loss, with token shards
 *                              their windows and fingerprint (data_windows, data_digest: see
 *                              loader_digest), the size and xxHash64 of every other file, and a
 *                              checksum of itself; written last: a
 *                              folder without it is not a checkpoint
 * Writing is atomic: every rank writes into step_<N>.tmp/, each file is fsynced and hashed, rank 0
 * writes state.json, renames the folder to step_<N> and fsyncs the parent, then replaces the
 * pointer file <run_dir>/ckpt/latest (written to latest.tmp, fsynced, renamed). A crash at any
 * moment leaves the previous checkpoint and pointer intact; half-written folders end in .tmp and are
 * never loaded (the next run removes them). Weights or moments that are not finite are never
 * written: the save stops the run instead (exit 3). Nothing is ever overwritten: a folder of the
 * same step from elsewhere is renamed aside (step_<N>.replaced-<time>). Only checkpoints of this
 * run's lineage (same run_id: started by this run or by the run it resumed from) and older than the
 * new one are removed, beyond checkpoint.keep_last.
 *
 * Resume restores weights, moments and the step (which alone chooses the next data and the
 * learning rate), so the run continues as if uninterrupted (bit-identical losses on the CPU with the same layout). A different
 * rank count re-shards the moments: each rank reads the parts of the old slices that overlap its
 * new one. Before anything is used, state.json is validated field by field against itself, the
 * folder's name and the tensors, every file is checked against its recorded size and hash, and the
 * weights and moments must be finite (second moments >= 0).
 */
#ifndef INFLLM_CHECKPOINT_H
#define INFLLM_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "train.h"

/* Writes the checkpoint of the trainer's current step (collective over the world). */
void checkpoint_save(struct trainer *tr);

/* Sets the trainer's starting point from the config's `resume` (collective):
 *   "none": a fresh run; checkpoints already in <run_dir>/ckpt are first moved aside, whole, to
 *           <run_dir>/ckpt.replaced-<time> (nothing is deleted);
 *   "auto": the folder `latest` names when it is intact; when `latest` is missing, unreadable,
 *           broken or names a folder that is not intact, the newest intact step_<N> folder (each
 *           one passed over is reported); a fresh run when the folder holds no checkpoint at all;
 *           a user error when it holds some and none is intact, or when `latest` names something
 *           outside the ckpt folder;
 *   a path: that checkpoint folder; a user error when it is not intact.
 * A checkpoint whose model does not match the config (parameter count, a tensor's shape) is a user
 * error naming it, never a reason to fall back. Leftover step_<N>.tmp folders are removed. */
void checkpoint_resume(struct trainer *tr);

/* Locks <run_dir>/.lock for this process (call on rank 0 before anything is written): a second
 * trainer on the same run_dir stops with a user error. Returns the descriptor (or -1). */
int checkpoint_lock_run(const struct config *c);

/* A checkpoint folder, or the `latest` pointer file naming one beside it, into out (export and
 * eval); a pointer naming anything outside its folder is a user error. */
void checkpoint_resolve_arg(const char *arg, char *out, size_t n);

/* Checks <dir>/<name> against the size and hash state.json records (user error when it differs;
 * nothing to check in a version-1 checkpoint). */
void checkpoint_verify_file(const char *dir, const char *name);

/* Reads the fp32 weights of model.safetensors in `dir` into host (n_params floats in the model's
 * flat layout), after checking the file's hash, checking names and shapes against the model's
 * entries and that every weight is finite (user errors naming the tensor). */
void checkpoint_read_weights(const struct model *m, const char *dir, float *host);

/* Whether `path` is a checkpoint folder (it holds state.json), the ckpt folder of a run (it holds
 * `latest` or step_<N> folders), or inside one of them: then true, with the folder that makes it
 * so in why. `path` need not exist; the nearest existing folder and every folder above it are
 * looked at. */
bool checkpoint_area(const char *path, char *why, size_t n);

#endif
