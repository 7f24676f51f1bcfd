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
};

/* Opens and validates `path`; tokens must be < model_vocab (pass 0 to skip that bound). */
void token_shard_open(struct token_shard *s, const char *path, int64_t model_vocab);

/* Validates without dying: returns 0, or -1 with a one-line reason in err (for tests and tools). */
int token_shard_check(struct token_shard *s, const char *path, int64_t model_vocab, char *err,
                      size_t err_len);

void token_shard_close(struct token_shard *s);

/* Token i (i < n_tokens). */
uint32_t token_shard_get(const struct token_shard *s, int64_t i);

/* Writes a shard (u16 when vocab_size <= 65536, else u32) atomically (temporary file + rename).
 * Dies (exit 2) naming the path on an I/O error. */
void token_shard_write(const char *path, const uint32_t *tokens, int64_t n, int64_t vocab_size);

#endif
