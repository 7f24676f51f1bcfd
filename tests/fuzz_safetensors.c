/*
 * fuzz_safetensors.c: libFuzzer harness for the safetensors reader (src/safetensors.h).
 *
 * Every input is handed to st_parse as a whole file. When it is accepted, every tensor must lie in
 * the buffer with a byte size that matches its shape, st_find must find it, and each float tensor
 * is converted with st_read_f32 into a buffer of exactly numel floats (so ASan sees any write or
 * read past either end); then st_close. A violated property aborts (a finding).
 *
 * Build and run (clang only):
 *   cmake -S . -B build-fuzz -DINFLLM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DINFLLM_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_safetensors
 *   build-fuzz/tests/fuzz_safetensors -max_total_time=180 CORPUS_DIR
 * A seed corpus: `test_safetensors --write-sample CORPUS_DIR`.
 *
 * Legend: numel elements of a tensor; begin/end byte offsets in the data section.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* Aborts with a message when an accepted file breaks the reader's promises. */
static void require(int ok, const char *what, const struct st_tensor *t) {
    if (ok) return;
    fprintf(stderr, "fuzz_safetensors: accepted file breaks \"%s\" (tensor \"%s\")\n", what,
            t ? t->name : "-");
    abort();
}

static void check_tensor(const struct st_file *f, const struct st_tensor *t) {
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        require(t->shape[d] >= 0, "shape entries are non-negative", t);
        numel = t->shape[d] == 0 || numel == 0 ? 0 : numel * t->shape[d];
    }
    require(t->ndim >= 0 && t->ndim <= SAFETENSORS_MAX_DIMS, "ndim within bounds", t);
    require(numel == t->numel, "numel is the product of the shape", t);
    require(t->begin <= t->end && t->end <= f->data_size, "offsets inside the data section", t);
    require(t->end - t->begin == (uint64_t)t->numel * st_dtype_size(t->dtype),
            "byte size matches the shape", t);
    require(st_find(f, t->name) == t, "st_find finds the tensor", t);
    if (t->dtype == ST_I64 || t->dtype == ST_I32) return;
    float *out = malloc((size_t)t->numel * sizeof(float) + 1);
    if (!out) abort();
    st_read_f32(f, t, out);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct st_file f;
    char err[512];
    err[0] = '\0';
    int rc = st_parse(&f, "fuzz", data, size, err, sizeof err);
    if (rc != 0) {
        require(rc == -1 && strncmp(err, "fuzz: ", 6) == 0, "a rejection is -1 with a reason", NULL);
        return 0;
    }
    require(f.map == data && f.size == size && f.data == data + (size - f.data_size),
            "the data section ends the buffer", NULL);
    for (int i = 0; i < f.n; i++) check_tensor(&f, &f.tensors[i]);
    for (int i = 0; i < f.n_meta; i++)
        require(st_meta(&f, f.meta_keys[i]) != NULL, "st_meta finds every key", NULL);
    st_close(&f);
    return 0;
}
