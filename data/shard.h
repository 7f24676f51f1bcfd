/*
 * shard.h: the token-shard file format.
 *
 * A shard is a 32-byte little-endian header followed by the tokens:
 *   offset  0  char[8]  magic "INFLTOK1"
 *   offset  8  u32      version (1)
 *   offset 12  u32      bytes per token: 2 (u16) or 4 (u32)
 *   offset 16  u64      token count n
 *   offset 24  u64      vocabulary size of the tokenizer that wrote it (every token is below it)
 *   offset 32  n tokens
 * On open the file is checked: size (exactly 32 + n * bytes), magic, version, token width, and every
 * token below both the header's vocabulary and the model's. Any failure is a user error (exit 2)
 * naming the file, the offset and what was expected.
 *
 * The file stays mapped (and open) for the whole run. token_shard_read checks on every read that
 * the file is still the one validated at open (same size, and the path still names it), checks
 * every token it copies against the bound, and catches the SIGBUS a page beyond a shrunken end
 * would raise: a shard truncated, rewritten or replaced while training is a clear error, never a
 * crash and never silently different data.
 */
#ifndef INFLLM_SHARD_H
#define INFLLM_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_MAGIC "INFLTOK1"
#define SHARD_VERSION 1
#define SHARD_HEADER_BYTES 32

struct token_shard {
    char *path;           /* owned */
    const uint8_t *map;   /* whole file, read-only mapping */
    size_t file_bytes;
    int token_bytes;      /* 2 or 4 */
    int64_t n_tokens;
    int64_t vocab_size;   /* from the header */
    uint64_t bound;       /* every token is below this (min of the header's and the model's vocab) */
    int fd;               /* the validated file, kept open to notice it changing; -1 when closed */
    uint64_t dev, ino;    /* its identity */
    int64_t mtime_ns;     /* and its modification time at open (ns since the epoch) */
};

/* Opens and validates `path`; tokens must be < model_vocab (pass 0 to skip that bound). */
void token_shard_open(struct token_shard *s, const char *path, int64_t model_vocab);

/* Validates without dying: returns 0, or -1 with a one-line reason in err (for tests and tools). */
int token_shard_check(struct token_shard *s, const char *path, int64_t model_vocab, char *err,
                      size_t err_len);

void token_shard_close(struct token_shard *s);

/* Token i (i < n_tokens). Trusts the mapping: for checks and tools right after open. */
uint32_t token_shard_get(const struct token_shard *s, int64_t i);

/* Tokens [first, first + n) (within n_tokens) as int32 into out, after checking that the file is
 * unchanged since open (size, identity of the path) and with every token checked against the
 * bound; a SIGBUS while copying (the file shrank between the check and the copy) is caught.
 * Returns 0, or -1 with "<path>: <what changed>" in err. */
int token_shard_read(const struct token_shard *s, int64_t first, int64_t n, int32_t *out, char *err,
                     size_t err_len);

/* Writes a shard (u16 when vocab_size <= 65536, else u32) atomically (temporary file + rename).
 * Dies (exit 2) naming the path on an I/O error. */
void token_shard_write(const char *path, const uint32_t *tokens, int64_t n, int64_t vocab_size);

#endif
