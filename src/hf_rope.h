/*
 * hf_rope.h: the RoPE fields of a Hugging Face config.json, read and written for hf.c (private to
 * src/).
 *
 * Two layouts carry them: transformers 4.x writes `rope_theta` at the top level and `rope_scaling`
 * (an object, or null for plain RoPE); transformers 5.x writes one `rope_parameters` object
 * (rope_type, rope_theta, factor, ...). Import reads either, or both when they agree; export writes
 * the layout(s) of the imported file, 4.x's (which both versions read) for a model not imported.
 */
#ifndef INFLLM_HF_ROPE_H
#define INFLLM_HF_ROPE_H

#include <cjson/cJSON.h>

#include "config.h"

/* Adds config.json's (j's) RoPE fields to `model`, the object of model keys hf_import_config hands
 * to config_import: rope_theta (10000, transformers' default, when the file has none) and the
 * rope_scaling members, named as our keys. Errors name `path` and the field: rope_theta and
 * rope_parameters.rope_theta (or rope_scaling and rope_parameters) that disagree, an unknown
 * member, partial RoPE. With model.rope_override, a RoPE key our config gives (rope_theta,
 * max_position_embeddings, rope_scaling.*) is taken out of `model`, so ours is trained; a note
 * says which value it replaced. Call it after max_position_embeddings is in `model`. */
void hf_rope_import(const struct config *c, const cJSON *j, cJSON *model, const char *path);

/* Writes c's RoPE into config.json's object j (the imported file's, being rewritten, or a new one):
 * exact numbers, only the members the type reads (and original_max_position_embeddings when set),
 * in the file's layout(s); a top-level original_max_position_embeddings is updated too (transformers
 * prefers it to the one in the scaling object). */
void hf_rope_export(cJSON *j, const struct config *c);

#endif
