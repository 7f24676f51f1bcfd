/*
 * safetensors.h: a strict reader and a writer of the safetensors format, our own.
 *
 * Format: 8-byte little-endian header length H, then H bytes of UTF-8 JSON (an object: tensor name
 * -> {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
 * string values), then the data section; offsets are relative to the data section's start.
 * The reader rejects, with a one-line reason naming the file and the tensor or byte offset:
 * a file shorter than 8 bytes, H larger than the file or than SAFETENSORS_MAX_HEADER, a header that
 * is not a JSON object, unknown dtypes, shapes whose byte size disagrees with the offsets, negative
 * or overflowing sizes, offsets outside the data section, overlapping tensors, gaps between tensors
 * (tensors must tile the data section exactly, as the reference implementation requires), and
 * duplicate names. It never reads out of bounds, whatever the bytes.
 * Supported dtypes: F32, BF16, F16 (what model checkpoints use), and I64 / I32 for small integer
 * tensors of our own state.
 */
#ifndef INFLLM_SAFETENSORS_H
#define INFLLM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define SAFETENSORS_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB, the reference limit */
#define SAFETENSORS_MAX_DIMS 8

enum st_dtype { ST_F32 = 0, ST_BF16 = 1, ST_F16 = 2, ST_I64 = 3, ST_I32 = 4 };

struct st_tensor {
    char *name;                            /* owned */
    enum st_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;                   /* byte offsets in the data section */
};

struct st_file {
    char *path;                            /* owned */
    const uint8_t *map;                    /* whole file (read-only mapping) */
    size_t size;
    const uint8_t *data;                   /* start of the data section */
    uint64_t data_size;
    int n;
    struct st_tensor *tensors;             /* (n), in file order */
    int n_meta;
    char **meta_keys, **meta_values;       /* (n_meta) owned strings of __metadata__ */
    int mapped;                            /* 1 when st_open mapped `map` (st_close unmaps it) */
};

/* Bytes per element of a dtype, and its name ("F32", ...). */
size_t st_dtype_size(enum st_dtype t);
const char *st_dtype_name(enum st_dtype t);

/* Opens (mmap, read-only) and validates; returns 0, or -1 with "<path>: <reason>" in err (f is
 * then empty and needs no st_close). The data section is 8-byte aligned in files of our writer,
 * not necessarily in others: read through st_read_f32 or memcpy, not by casting st_data. */
int st_open(struct st_file *f, const char *path, char *err, size_t err_len);

/* Validates a buffer already in memory (the fuzzer's entry point); the same rules as st_open,
 * `name` standing for the path in messages. The buffer must outlive f; st_close does not free it. */
int st_parse(struct st_file *f, const char *name, const uint8_t *buf, size_t size, char *err,
             size_t err_len);

void st_close(struct st_file *f);

/* The tensor named `name`, or NULL. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);

/* The value of __metadata__[key], or NULL. */
const char *st_meta(const struct st_file *f, const char *key);

/* Converts a tensor of any float dtype (F32, BF16, F16) to fp32 (t->numel values); exact. An
 * integer dtype is a program error (CHECK). */
void st_read_f32(const struct st_file *f, const struct st_tensor *t, float *out);

/* Raw bytes of a tensor (t->end - t->begin of them). */
const void *st_data(const struct st_file *f, const struct st_tensor *t);

/* Writer: collects tensors (the caller's buffers must stay valid until st_writer_finish) and
 * metadata, then writes the file atomically: to "<path>.tmp", fsync, rename. Tensors are written
 * in the order added. A tensor added with from_f32 != NULL is converted from fp32 to its dtype
 * while writing (round to nearest even for BF16/F16); otherwise `raw` holds its bytes already in
 * its dtype. Returns 0, or -1 with the reason in err. The header holds "__metadata__" first, then
 * the tensors in insertion order with contiguous offsets, padded with spaces to a multiple of 8
 * bytes; data are converted in chunks (no second copy of a tensor); after the rename the folder is
 * fsynced. Program errors (CHECK): a name added twice, "__metadata__" as a tensor name, a name or
 * metadata string that is not UTF-8, a negative or overflowing shape, an fp32 source for an integer
 * dtype, no data for a non-empty tensor. */
struct st_writer;
struct st_writer *st_writer_new(void);
void st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype, int ndim,
                   const int64_t *shape, const float *from_f32, const void *raw);
void st_writer_meta(struct st_writer *w, const char *key, const char *value);
int st_writer_finish(struct st_writer *w, const char *path, char *err, size_t err_len);
void st_writer_free(struct st_writer *w);

/* fp32 <-> bf16 / f16 conversions (round to nearest even), shared with checkpoint and export.
 * Overflow rounds to +-inf (f16 from 65520 up), f16 subnormals are rounded, not flushed, NaN stays
 * NaN (quiet, sign kept); widening back to fp32 is exact. */
uint16_t st_f32_to_bf16(float x);
float st_bf16_to_f32(uint16_t x);
uint16_t st_f32_to_f16(float x);
float st_f16_to_f32(uint16_t x);

#endif
