/*
 * checkpoint_state.h: the parts of a checkpoint folder that are not tensors, private to
 * checkpoint.c: state.json (written with a checksum of itself and a table of every other file's
 * size and xxHash64, read back with every field validated), the `latest` pointer, and the list of
 * step folders. Formats in checkpoint.h.
 */
#ifndef INFLLM_CHECKPOINT_STATE_H
#define INFLLM_CHECKPOINT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT "infllm-train checkpoint"
#define CKPT_VERSION 2           /* 1: before checksums (read, unverified) */
#define CKPT_MAX_WORLD (1 << 20) /* a world size above this in state.json is absurd */
#define CKPT_NAME_MAX 64         /* a file or folder name inside ckpt/ */

struct ckpt_file {
    char name[CKPT_NAME_MAX];
    uint64_t bytes;
    uint64_t xxh64;
};

/* state.json, as written and as validated on read. */
struct ckpt_state {
    int version;
    int64_t step;            /* optimizer steps done; the folder is step_<step> */
    int64_t optimizer_step;  /* AdamW's t: equals step */
    int64_t data_cursor;     /* older checkpoints only: step * global_batch_size; -1 when absent */
    int64_t tokens_seen;     /* informative: step * global_batch_size * seq_len (not read back) */
    int64_t global_batch;    /* train.global_batch_size of the run that wrote it (0: version 1) */
    int64_t n_params;        /* parameters of the model (unpadded) */
    int64_t seed;
    int world_size, cp, dp;  /* the layout that wrote it: world_size optimizer files */
    uint64_t run_id;         /* the lineage (0: version 1, none) */
    double loss_ema;         /* the divergence guard's running mean, and its step count */
    int64_t loss_ema_steps;
    bool has_data;           /* token shards: the training stream's fingerprint (optional) */
    int64_t data_windows;    /* their windows */
    uint64_t data_digest;    /* loader_digest */
    int n_files;             /* version 2: every other file of the folder with size and hash */
    struct ckpt_file *files; /* (n_files), owned */
};

/* Writes <dir>/state.json atomically; its "checksum" is the xxHash64 of the text with the 16 digits
 * of the checksum written as zeros. */
void ckpt_state_write(const char *dir, const struct ckpt_state *s);

/* Reads <dir>/state.json and validates it: size bound, JSON, format, version, checksum (version 2),
 * every field's type and range, step == optimizer_step, cp * dp == world_size, data_cursor ==
 * step * global_batch_size where an older checkpoint has it, the file table naming exactly model.safetensors, train_config.json and
 * the optimizer files of world_size ranks, and step against the folder's name step_<N>. Returns 0,
 * or -1 with "<dir>/state.json: <reason>" in err. */
int ckpt_state_read(const char *dir, struct ckpt_state *s, char *err, size_t err_len);
void ckpt_state_free(struct ckpt_state *s);

/* The entry of the file table named `name`, or NULL. */
const struct ckpt_file *ckpt_state_file(const struct ckpt_state *s, const char *name);

/* Hashes the files of the table with index i % world == rank and compares sizes and hashes;
 * adds the bytes read to *bytes. 0, or -1 with "<file>: <reason>" in err. */
int ckpt_verify_files(const char *dir, const struct ckpt_state *s, int rank, int world,
                      double *bytes, char *err, size_t err_len);

/* What the pointer file `latest` holds: 0 with the folder name in name; 1 when it does not exist;
 * -1 when it is unreadable or not a step folder's name (reason in err); -2 when it names
 * something outside its own folder (an absolute path, "..", a '/'). */
int ckpt_read_latest(const char *latest, char *name, size_t name_len, char *err, size_t err_len);

/* step_<digits> -> its step; false for any other name (step_5.tmp, step_x, ...). */
bool ckpt_step_of(const char *name, int64_t *step);

/* The step folders (folders named step_<digits>) under root, newest first, at most max; their
 * count (0 when root does not exist). */
int ckpt_list(const char *root, char (*names)[CKPT_NAME_MAX], int64_t *steps, int max);

/* "%016llx" of h into out (17 bytes). */
void ckpt_hex64(char out[17], uint64_t h);

#endif
