/*
 * hf.c: Hugging Face import and export (see hf.h).
 */
#define _XOPEN_SOURCE 700
#include "hf.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fsutil.h"
#include "hf_rope.h"
#include "safetensors.h"

#define HF_DEFAULT_SHARD_BYTES ((int64_t)5000000000)

/* ---------------------------------------------------------------------------------------------- */
/* config.json fields                                                                              */

/* The model families, as bits of hf_field.families. */
#define FAM(t) (1u << (t))
#define FAM_ALL (FAM(MODEL_TYPE_LLAMA) | FAM(MODEL_TYPE_MINICPM) | FAM(MODEL_TYPE_QWEN2) | \
                 FAM(MODEL_TYPE_QWEN3))

/* Per model family: its Hugging Face architecture, and the head dim its config class assumes when
 * config.json has none (0: hidden_size / num_attention_heads). */
static const struct hf_family {
    const char *architecture;
    int default_head_dim;
} hf_families[] = {
    [MODEL_TYPE_LLAMA] = {"LlamaForCausalLM", 0},
    [MODEL_TYPE_MINICPM] = {"MiniCPMForCausalLM", 0},
    [MODEL_TYPE_QWEN2] = {"Qwen2ForCausalLM", 0},
    [MODEL_TYPE_QWEN3] = {"Qwen3ForCausalLM", 128},
};

/* The config.json fields that are our model keys ("model.<name>": the same names), read by import
 * and written by export for the families that have them. RoPE (rope_theta, rope_scaling,
 * rope_parameters) is hf_rope.c's. */
static const struct hf_field {
    const char *name;
    bool required;     /* import: config.json must have it */
    unsigned families; /* FAM bits of the model types whose config.json has the field */
} hf_fields[] = {
    {"model_type", true, FAM_ALL},
    {"vocab_size", true, FAM_ALL},
    {"hidden_size", true, FAM_ALL},
    {"intermediate_size", true, FAM_ALL},
    {"num_hidden_layers", true, FAM_ALL},
    {"num_attention_heads", true, FAM_ALL},
    {"num_key_value_heads", false, FAM_ALL},
    {"head_dim", false, FAM_ALL},
    {"rms_norm_eps", false, FAM_ALL},
    {"max_position_embeddings", false, FAM_ALL},
    {"tie_word_embeddings", false, FAM_ALL},
    {"attention_bias", false, FAM_ALL & ~FAM(MODEL_TYPE_QWEN2)},
    {"use_sliding_window", false, FAM(MODEL_TYPE_QWEN2) | FAM(MODEL_TYPE_QWEN3)},
    {"scale_emb", false, FAM(MODEL_TYPE_MINICPM)},
    {"scale_depth", false, FAM(MODEL_TYPE_MINICPM)},
    {"dim_model_base", false, FAM(MODEL_TYPE_MINICPM)},
};
#define HF_NFIELDS (sizeof hf_fields / sizeof hf_fields[0])

/* Fields whose other values are models not implemented here (an activation, MLP biases): import
 * refuses another value, export writes them for the families whose config.json has them. */
static const struct hf_fixed {
    const char *name, *value; /* value as JSON text */
    unsigned families;        /* FAM bits: export writes the field for these */
} hf_fixed[] = {
    {"hidden_act", "\"silu\"", FAM_ALL},
    {"mlp_bias", "false", FAM(MODEL_TYPE_LLAMA) | FAM(MODEL_TYPE_MINICPM)},
};
#define HF_NFIXED (sizeof hf_fixed / sizeof hf_fixed[0])

/* ---------------------------------------------------------------------------------------------- */
/* Import                                                                                          */

/* The member `key` of j, or NULL when absent or null. */
static const cJSON *member(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static void add_copy(cJSON *obj, const char *key, const cJSON *v) {
    cJSON_AddItemToObject(obj, key, cJSON_Duplicate(v, true));
}

/* The model type config.json names, or -1 when it is not one of ours (config_import names it). */
static int type_of(const cJSON *j) {
    const cJSON *type = member(j, "model_type");
    for (int t = 0; t < (int)(sizeof hf_families / sizeof hf_families[0]); t++)
        if (cJSON_IsString(type) && strcmp(type->valuestring, config_model_type_name(t)) == 0)
            return t;
    return -1;
}

/* Each "architectures" entry of config.json is the one of its model_type (a model_type not
 * implemented is config_import's error). */
static void check_architectures(const cJSON *j, const char *path) {
    const cJSON *type = member(j, "model_type"), *archs = member(j, "architectures"), *e;
    int t = type_of(j);
    if (t < 0) return;
    const char *want = hf_families[t].architecture;
    if (archs && !cJSON_IsArray(archs)) die_user("%s: architectures: expected a list of names", path);
    cJSON_ArrayForEach(e, archs) {
        if (!cJSON_IsString(e)) die_user("%s: architectures: expected a list of names", path);
        if (strcmp(e->valuestring, want) != 0)
            die_user("%s: architectures: \"%.80s\" is not implemented for model_type \"%s\"; "
                     "expected \"%s\"", path, e->valuestring, type->valuestring, want);
    }
}

/* config.json describes a model implemented here: its architectures, the fixed fields at their
 * value, and head_dim, when given, not 0 (our config's "derived"; Hugging Face would build heads of
 * width 0). Every other field is checked by config_import and config_validate. */
static void check_implemented(const cJSON *j, const char *path) {
    check_architectures(j, path);
    for (size_t i = 0; i < HF_NFIXED; i++) {
        const cJSON *v = member(j, hf_fixed[i].name);
        cJSON *ok = cJSON_Parse(hf_fixed[i].value);
        bool same = !v || cJSON_Compare(v, ok, true);
        cJSON_Delete(ok);
        if (same) continue;
        char *got = cJSON_PrintUnformatted(v);
        die_user("%s: %s: expected %s (the only one implemented), got %.80s", path,
                 hf_fixed[i].name, hf_fixed[i].value, got);
    }
    const cJSON *hd = member(j, "head_dim");
    if (cJSON_IsNumber(hd) && hd->valuedouble == 0)
        die_user("%s: head_dim: expected a positive integer (or no head_dim: hidden_size / "
                 "num_attention_heads), got 0", path);
}

/* What Hugging Face assumes for fields config.json leaves out: as many KV heads as query heads,
 * the family's head dim (0, derived by config_validate, unless our config names one; Qwen3's class
 * says 128), and tied embeddings for MiniCPM only. */
static void add_hf_defaults(const struct config *c, const cJSON *j, cJSON *model,
                            enum model_type type) {
    const cJSON *heads = member(j, "num_attention_heads");
    if (!member(j, "num_key_value_heads") && heads) add_copy(model, "num_key_value_heads", heads);
    if (!member(j, "head_dim") && !config_is_set(c, "model.head_dim"))
        cJSON_AddNumberToObject(model, "head_dim", hf_families[type].default_head_dim);
    if (!member(j, "tie_word_embeddings"))
        cJSON_AddBoolToObject(model, "tie_word_embeddings", type == MODEL_TYPE_MINICPM);
}

void hf_import_config(struct config *c) {
    char path[4400];
    snprintf(path, sizeof path, "%s/config.json", c->model.init_from);
    cJSON *j = config_parse_file(path);
    int t = type_of(j);
    enum model_type type = t < 0 ? MODEL_TYPE_LLAMA : (enum model_type)t;
    cJSON *model = cJSON_CreateObject();
    for (size_t i = 0; i < HF_NFIELDS; i++) {
        const struct hf_field *f = &hf_fields[i];
        const cJSON *v = member(j, f->name);
        if (!v && f->required) die_user("%s: \"%s\" is missing", path, f->name);
        if (v && (f->families & FAM(type))) add_copy(model, f->name, v);
    }
    check_implemented(j, path);
    add_hf_defaults(c, j, model, type);
    hf_rope_import(c, j, model, path);
    config_import(c, model, "model", path);
    cJSON_Delete(model);
    cJSON_Delete(j);
}

/* Opens the folder's safetensors files: the single model.safetensors, or the shards of the index. */
static int open_weight_files(const char *folder, struct st_file **files) {
    char path[4400], err[1024];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", folder);
    size_t len = 0;
    char *text = read_file(path, &len, false);
    if (!text) {
        *files = xcalloc(1, sizeof **files);
        snprintf(path, sizeof path, "%s/model.safetensors", folder);
        if (st_open(&(*files)[0], path, err, sizeof err) != 0) die_user("%s", err);
        return 1;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(map)) die_user("%s: expected a \"weight_map\" object", path);
    /* Distinct file names in order of first appearance. */
    int n = 0, cap = 8;
    char **names = xmalloc((size_t)cap * sizeof *names);
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e)) die_user("%s: weight_map[\"%s\"]: expected a file name", path, e->string);
        bool seen = false;
        for (int i = 0; i < n && !seen; i++) seen = strcmp(names[i], e->valuestring) == 0;
        if (seen) continue;
        if (n == cap) names = xrealloc(names, (size_t)(cap *= 2) * sizeof *names);
        names[n++] = xstrdup(e->valuestring);
    }
    cJSON_Delete(j);
    *files = xcalloc((size_t)n, sizeof **files);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", folder, names[i]);
        if (st_open(&(*files)[i], path, err, sizeof err) != 0) die_user("%s", err);
        free(names[i]);
    }
    free(names);
    return n;
}

void hf_import_weights(const struct model *m, const char *folder, float *host) {
    struct st_file *files;
    int nf = open_weight_files(folder, &files);
    for (int i = 0; i < m->n_params_entries; i++) {
        const struct param_entry *e = &m->params[i];
        const struct st_tensor *t = NULL;
        const struct st_file *f = NULL;
        for (int k = 0; k < nf && !t; k++) {
            t = st_find(&files[k], e->name);
            f = &files[k];
        }
        if (!t) die_user("%s: tensor \"%s\" is missing", folder, e->name);
        if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
            die_user("%s: tensor \"%s\" is %s, expected F32, BF16 or F16", f->path, e->name,
                     st_dtype_name(t->dtype));
        bool same = t->ndim == e->ndim && t->shape[0] == e->shape[0] &&
                    (e->ndim == 1 || t->shape[1] == e->shape[1]);
        if (!same)
            die_user("%s: tensor \"%s\" has %d dims [%lld, ...], the config makes it [%lld%s%lld]",
                     f->path, e->name, t->ndim, (long long)t->shape[0], (long long)e->shape[0],
                     e->ndim > 1 ? ", " : "", e->ndim > 1 ? (long long)e->shape[1] : 0LL);
        st_read_f32(f, t, host + e->offset);
    }
    for (int k = 0; k < nf; k++) st_close(&files[k]);
    free(files);
}

/* ---------------------------------------------------------------------------------------------- */
/* Export                                                                                          */

/* o[key] = v (replacing an old value; v is taken over). */
static void set_item(cJSON *o, const char *key, cJSON *v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddItemToObject(o, key, v);
}

/* config.json: the imported one (keeping its other keys) or a new one, with our shape. */
static cJSON *export_config(const struct config *c, const char *dtype) {
    const struct model_config *m = &c->model;
    cJSON *j = NULL;
    if (m->init_from[0]) {
        char path[4400];
        snprintf(path, sizeof path, "%s/config.json", m->init_from);
        size_t len;
        char *text = read_file(path, &len, false);
        if (text) j = cJSON_ParseWithLength(text, len);
        free(text);
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = cJSON_CreateObject();
    }
    cJSON_DeleteItemFromObjectCaseSensitive(j, "architectures");
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(hf_families[m->model_type].architecture));
    for (size_t i = 0; i < HF_NFIELDS; i++) {
        if (!(hf_fields[i].families & FAM(m->model_type))) continue;
        char key[96];
        snprintf(key, sizeof key, "model.%s", hf_fields[i].name);
        set_item(j, hf_fields[i].name, config_key_json(c, key));
    }
    for (size_t i = 0; i < HF_NFIXED; i++)
        if (hf_fixed[i].families & FAM(m->model_type))
            set_item(j, hf_fixed[i].name, cJSON_Parse(hf_fixed[i].value));
    set_item(j, "torch_dtype", cJSON_CreateString(dtype)); /* transformers 4.x */
    set_item(j, "dtype", cJSON_CreateString(dtype));       /* transformers 5.x */
    hf_rope_export(j, c);
    const struct attention_config *a = &c->attention;
    cJSON_DeleteItemFromObjectCaseSensitive(j, "sparse_config");
    cJSON *sc = cJSON_AddObjectToObject(j, "sparse_config");
    cJSON_AddNumberToObject(sc, "kernel_size", a->kernel_size);
    cJSON_AddNumberToObject(sc, "kernel_stride", a->kernel_stride);
    cJSON_AddNumberToObject(sc, "init_blocks", a->init_blocks);
    cJSON_AddNumberToObject(sc, "block_size", a->block_size);
    cJSON_AddNumberToObject(sc, "window_size", a->window_size);
    cJSON_AddNumberToObject(sc, "topk", a->topk);
    cJSON_AddBoolToObject(sc, "use_nope", a->use_nope);
    cJSON_AddNumberToObject(sc, "dense_len", (double)a->dense_len);
    return j;
}

/* Whether a file of the imported folder is one an inference stack reads besides the weights and
 * config.json: the tokenizer (tokenizer.json, tokenizer_config.json, tokenizer.model, vocab / merges
 * files, *.tiktoken, sentencepiece *.model), special and added tokens, the chat template
 * (chat_template.jinja, chat_template.json), generation defaults, and remote modeling code (*.py). */
static bool is_side_file(const char *name) {
    static const char *const exact[] = {"special_tokens_map.json", "added_tokens.json",
                                        "generation_config.json", "chat_template.json"};
    static const char *const prefixes[] = {"tokenizer", "vocab", "merges"};
    static const char *const suffixes[] = {".jinja", ".py", ".tiktoken", ".model"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0) return true;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return true;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && strcmp(name + n - k, suffixes[i]) == 0) return true;
    }
    return false;
}

/* Copies the side files of folder `from` (in `sub`, "" for the folder itself) into out; their
 * names go to `list`. The chat templates of additional_chat_templates/ (transformers 5) come too. */
static void copy_side_files(const char *from, const char *out, const char *sub, char *list,
                            size_t n) {
    char dir[2048], src[2400], dst[4700]; /* from: a config string (< 1024), out: a path */
    snprintf(dir, sizeof dir, "%s%s%s", from, sub[0] ? "/" : "", sub);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        snprintf(src, sizeof src, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(src, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && !sub[0] && strcmp(e->d_name, "additional_chat_templates") == 0) {
            copy_side_files(from, out, e->d_name, list, n);
            continue;
        }
        if (S_ISDIR(st.st_mode) || !is_side_file(e->d_name)) continue;
        if (sub[0]) {
            snprintf(dst, sizeof dst, "%s/%s", out, sub);
            make_dirs(dst);
        }
        snprintf(dst, sizeof dst, "%s/%s%s%s", out, sub, sub[0] ? "/" : "", e->d_name);
        copy_file(src, dst);
        size_t used = strlen(list);
        snprintf(list + used, n - used, "%s%s%s%s", used ? ", " : "", sub, sub[0] ? "/" : "",
                 e->d_name);
    }
    closedir(d);
}

static void write_json(const char *path, const cJSON *j) {
    char *text = cJSON_Print(j);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n';
    text[n + 1] = '\0';
    write_file_atomic(path, text, n + 1);
    free(text);
}

void hf_export(const struct config *c, const struct model *m, const float *host, const char *out,
               int64_t max_shard_bytes, enum st_dtype dtype) {
    CHECK(dtype == ST_BF16 || dtype == ST_F32);
    int64_t esize = dtype == ST_F32 ? 4 : 2;
    if (max_shard_bytes <= 0) max_shard_bytes = HF_DEFAULT_SHARD_BYTES;
    make_dirs(out);
    /* Shards: consecutive entries while they fit (a tensor larger than the limit gets its own). */
    int n = m->n_params_entries;
    int *shard_of = xmalloc((size_t)n * sizeof(int));
    int nshards = 0;
    int64_t used = 0;
    for (int i = 0; i < n; i++) {
        int64_t bytes = m->params[i].numel * esize;
        if (i == 0 || (used > 0 && used + bytes > max_shard_bytes)) {
            nshards++;
            used = 0;
        }
        shard_of[i] = nshards - 1;
        used += bytes;
    }
    int64_t total = 0;
    cJSON *weight_map = cJSON_CreateObject();
    char path[4400], name[128], err[1024];
    for (int s = 0; s < nshards; s++) {
        if (nshards == 1)
            snprintf(name, sizeof name, "model.safetensors");
        else
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, nshards);
        struct st_writer *w = st_writer_new();
        st_writer_meta(w, "format", "pt");
        for (int i = 0; i < n; i++) {
            if (shard_of[i] != s) continue;
            const struct param_entry *e = &m->params[i];
            st_writer_add(w, e->name, dtype, e->ndim, e->shape, host + e->offset, NULL);
            cJSON_AddStringToObject(weight_map, e->name, name);
            total += e->numel * esize;
        }
        snprintf(path, sizeof path, "%s/%s", out, name);
        if (st_writer_finish(w, path, err, sizeof err) != 0) die_user("export: %s", err);
        st_writer_free(w);
    }
    if (nshards > 1) {
        cJSON *index = cJSON_CreateObject();
        cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        cJSON_AddItemToObject(index, "weight_map", weight_map);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
        write_json(path, index);
        cJSON_Delete(index);
    } else {
        cJSON_Delete(weight_map);
    }
    cJSON *cfg = export_config(c, dtype == ST_F32 ? "float32" : "bfloat16");
    snprintf(path, sizeof path, "%s/config.json", out);
    write_json(path, cfg);
    cJSON_Delete(cfg);
    if (c->model.init_from[0]) {
        char list[4096] = "";
        copy_side_files(c->model.init_from, out, "", list, sizeof list);
        printf("export: from %s: %s\n", c->model.init_from, list[0] ? list : "no tokenizer files");
    }
    free(shard_of);
}
