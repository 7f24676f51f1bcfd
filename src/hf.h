/*
 * hf.h: Hugging Face model folders in and out.
 *
 * Import (model.init_from): a folder with config.json (LlamaForCausalLM, MiniCPM, Qwen2ForCausalLM
 * or Qwen3ForCausalLM, told apart by model_type) and model.safetensors, or shards listed by
 * model.safetensors.index.json; BF16, F16 or F32 tensors.
 * The model shape comes from config.json: a key also set explicitly in our config must agree, or the
 * run stops naming both values; RoPE keys (hf_rope.h) may replace config.json's under
 * model.rope_override.
 * Export (infllm-train export CKPT OUT): config.json (architectures, torch_dtype, the fields of
 * the family: MiniCPM's muP scales, attention_bias, Qwen's use_sliding_window; the RoPE trained,
 * the attention's sparse_config), bf16 (or fp32) model.safetensors with
 * __metadata__ {"format": "pt"}, split into model-0000i-of-0000n.safetensors with an index above
 * the shard size limit, and the tokenizer, chat template and generation files (and remote
 * modeling code) of the imported folder when the run started from one.
 */
#ifndef INFLLM_HF_H
#define INFLLM_HF_H

#include <stdint.h>

#include "config.h"
#include "model.h"
#include "safetensors.h"

/* Sets c->model's keys from <c->model.init_from>/config.json before config_validate: the fields of
 * one table (hf.c, the same one export writes) go through config_import, so they meet the checks of
 * our own config file and an error names config.json and the field. A field config.json leaves out
 * takes Hugging Face's default (MHA, derived head dim or Qwen3's 128, MiniCPM tied) or keeps our
 * value. */
void hf_import_config(struct config *c);

/* Reads the folder's weights into host (n_params floats, the model's flat layout), checking
 * every expected tensor's presence and shape. */
void hf_import_weights(const struct model *m, const char *folder, float *host);

/* Writes the Hugging Face folder `out` from the weights `host` (the model's flat fp32 layout) of a
 * model built from config c, in `dtype` (ST_BF16 or ST_F32, recorded as torch_dtype and dtype in
 * config.json). max_shard_bytes: the size above which model.safetensors is split (0 = default
 * 5 GB, Hugging Face's own default). Every config.json field import reads is written exactly (it
 * reads back as the same double). */
void hf_export(const struct config *c, const struct model *m, const float *host, const char *out,
               int64_t max_shard_bytes, enum st_dtype dtype);

#endif
