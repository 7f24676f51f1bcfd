/*
 * tool_logits.c: next-token logits of a Hugging Face folder computed by our CPU forward, for the
 * independent checks of export and import against the `transformers` implementation.
 *
 *   tool_logits HF_FOLDER T TOKENS_FILE OUT_FILE
 *
 * Imports the folder (model.init_from: config.json + safetensors), runs the fp32 forward on the T
 * int32 tokens of TOKENS_FILE (raw little-endian) and writes T x V fp32 logits to OUT_FILE (raw).
 * Dense attention (the transformers reference has no InfLLM-V2).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "grid.h"
#include "hf.h"
#include "matmul.h"
#include "model.h"

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc != 5) {
        fprintf(stderr, "usage: tool_logits HF_FOLDER T TOKENS_FILE OUT_FILE\n");
        return 2;
    }
    int64_t T = atoll(argv[2]);
    static struct config c;
    config_defaults(&c);
    snprintf(c.model.init_from, sizeof c.model.init_from, "%s", argv[1]);
    c.data.seq_len = T;
    c.attention.dense_len = T + 1; /* dense */
    c.attention.block_size = 1;
    c.attention.kernel_size = 1;
    c.attention.kernel_stride = 1;
    c.attention.window_size = 1;
    c.train.micro_batch_size = 1;
    c.train.global_batch_size = 1;
    c.data.source = DATA_SOURCE_SHARDS; /* no synthetic-task check */
    c.data.train_files.n = 1;
    c.data.train_files.items[0] = xstrdup("(unused)");
    hf_import_config(&c);
    config_validate(&c, 1);
    struct grid g;
    grid_init(&g, MPI_COMM_SELF, 1);
    struct backend be;
    backend_init(&be, DEVICE_CPU, 0);
    struct model m;
    model_init(&m, &c, &be, &g, 1, true);
    hf_import_weights(&m, argv[1], m.param_buf);
    int32_t *tok = xmalloc((size_t)T * 4), *tgt = xmalloc((size_t)T * 4);
    FILE *f = fopen(argv[3], "rb");
    CHECK(f && fread(tok, 4, (size_t)T, f) == (size_t)T);
    fclose(f);
    for (int64_t i = 0; i < T; i++) tgt[i] = -1;
    model_forward(&m, tok, tgt, false, 0.0f);
    float *logits = xmalloc((size_t)(T * m.V) * 4);
    matmul_forward_cpu(logits, m.a.lnf, m.w.lm_head, T, m.C, (int)m.V, m.logit_scale, false);
    f = fopen(argv[4], "wb");
    CHECK(f && fwrite(logits, 4, (size_t)(T * m.V), f) == (size_t)(T * m.V));
    fclose(f);
    printf("tool_logits: %lld x %lld logits written\n", (long long)T, (long long)m.V);
    free(tok), free(tgt), free(logits);
    model_free(&m);
    backend_free(&be);
    grid_free(&g);
    config_free(&c);
    MPI_Finalize();
    return 0;
}
