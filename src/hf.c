/*
 * hf.c: Hugging Face import and export (see hf.h).
 */
#define _XOPEN_SOURCE 700
#include "hf.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fsutil.h"
#include "safetensors.h"

#define HF_DEFAULT_SHARD_BYTES ((int64_t)5000000000)

static cJSON *read_json(const char *path) {
    size_t len = 0;
    char *text = read_file(path, &len, true);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) die_user("%s: not a JSON object", path);
    return j;
}

/* ---------------------------------------------------------------------------------------------- */
/* Import                                                                                          */

struct import_ctx {
    struct config *c;
    const cJSON *j;
    char path[4400];
};

/* The number at key, or NULL when absent (null counts as absent). */
static const cJSON *number_at(const struct import_ctx *x, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(x->j, key);
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsNumber(v)) die_user("%s: \"%s\": expected a number", x->path, key);
    return v;
}

/* Sets *field from config.json's key (or keeps the fallback when absent and not required); an
 * explicit, different value in our config is an error naming both. */
static void import_double(const struct import_ctx *x, const char *key, double *field,
                          bool required) {
    const cJSON *v = number_at(x, key);
    if (!v) {
        if (required) die_user("%s: \"%s\" is missing", x->path, key);
        return;
    }
    char ours[128];
    snprintf(ours, sizeof ours, "model.%s", key);
    if (config_is_set(x->c, ours) && *field != v->valuedouble)
        die_user("%s: %s is %g but %s says %g (drop the key from the config, or import another "
                 "model)", x->c->path[0] ? x->c->path : "config", ours, *field, x->path,
                 v->valuedouble);
    *field = v->valuedouble;
}

static void import_int(const struct import_ctx *x, const char *key, int *field, bool required) {
    double d = *field;
    import_double(x, key, &d, required);
    if (d != floor(d) || d < 0 || d > 2147483647.0)
        die_user("%s: \"%s\": expected a non-negative integer, got %g", x->path, key, d);
    *field = (int)d;
}

static void import_int64(const struct import_ctx *x, const char *key, int64_t *field,
                         bool required) {
    double d = (double)*field;
    import_double(x, key, &d, required);
    if (d != floor(d) || d < 0) die_user("%s: \"%s\": expected a non-negative integer", x->path, key);
    *field = (int64_t)d;
}

static void import_factors(const struct import_ctx *x, const cJSON *rs, const char *key,
                           struct float_list *out) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(rs, key);
    if (!cJSON_IsArray(a)) die_user("%s: rope_scaling.%s: expected a list of numbers", x->path, key);
    out->n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsNumber(e) || out->n >= CONFIG_LIST_MAX)
            die_user("%s: rope_scaling.%s: expected at most %d numbers", x->path, key,
                     CONFIG_LIST_MAX);
        out->items[out->n++] = e->valuedouble;
    }
}

static void import_rope_scaling(const struct import_ctx *x) {
    struct model_config *m = &x->c->model;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(x->j, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!type) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(type)) die_user("%s: rope_scaling: expected a \"rope_type\" string", x->path);
    if (strcmp(type->valuestring, "longrope") != 0)
        die_user("%s: rope_scaling type \"%s\" is not supported (expected \"longrope\" or none)",
                 x->path, type->valuestring);
    snprintf(m->rope_scaling_type, sizeof m->rope_scaling_type, "longrope");
    import_factors(x, rs, "long_factor", &m->rope_long_factor);
    import_factors(x, rs, "short_factor", &m->rope_short_factor);
    const cJSON *orig = cJSON_GetObjectItemCaseSensitive(rs, "original_max_position_embeddings");
    if (!orig) orig = cJSON_GetObjectItemCaseSensitive(x->j, "original_max_position_embeddings");
    if (!cJSON_IsNumber(orig))
        die_user("%s: rope_scaling: expected original_max_position_embeddings", x->path);
    m->rope_original_max_position_embeddings = (int64_t)orig->valuedouble;
}

void hf_import_config(struct config *c) {
    struct import_ctx x = {.c = c};
    snprintf(x.path, sizeof x.path, "%s/config.json", c->model.init_from);
    cJSON *j = read_json(x.path);
    x.j = j;
    struct model_config *m = &c->model;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!cJSON_IsString(type)) die_user("%s: \"model_type\" is missing", x.path);
    if (strcmp(type->valuestring, "llama") == 0)
        m->model_type = MODEL_TYPE_LLAMA;
    else if (strcmp(type->valuestring, "minicpm") == 0)
        m->model_type = MODEL_TYPE_MINICPM;
    else
        die_user("%s: model_type \"%s\" is not supported (expected \"llama\" or \"minicpm\")",
                 x.path, type->valuestring);
    import_int64(&x, "vocab_size", &m->vocab_size, true);
    import_int(&x, "hidden_size", &m->hidden_size, true);
    import_int(&x, "intermediate_size", &m->intermediate_size, true);
    import_int(&x, "num_hidden_layers", &m->num_hidden_layers, true);
    import_int(&x, "num_attention_heads", &m->num_attention_heads, true);
    /* Absent from config.json: Hugging Face's defaults (MHA; hidden / heads). */
    if (number_at(&x, "num_key_value_heads"))
        import_int(&x, "num_key_value_heads", &m->num_key_value_heads, true);
    else
        m->num_key_value_heads = m->num_attention_heads;
    if (number_at(&x, "head_dim"))
        import_int(&x, "head_dim", &m->head_dim, true);
    else if (!config_is_set(c, "model.head_dim"))
        m->head_dim = 0; /* config_validate derives it */
    import_double(&x, "rope_theta", &m->rope_theta, false);
    import_double(&x, "rms_norm_eps", &m->rms_norm_eps, false);
    import_int64(&x, "max_position_embeddings", &m->max_position_embeddings, false);
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    /* Hugging Face defaults: Llama unties, MiniCPM ties. */
    bool tied = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : m->model_type == MODEL_TYPE_MINICPM;
    if (config_is_set(c, "model.tie_word_embeddings") && m->tie_word_embeddings != tied)
        die_user("%s: model.tie_word_embeddings disagrees with %s", c->path, x.path);
    m->tie_word_embeddings = tied;
    if (m->model_type == MODEL_TYPE_MINICPM) {
        import_double(&x, "scale_emb", &m->scale_emb, false);
        import_double(&x, "scale_depth", &m->scale_depth, false);
        import_double(&x, "dim_model_base", &m->dim_model_base, false);
    }
    import_rope_scaling(&x);
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

static void set_number(cJSON *o, const char *key, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddNumberToObject(o, key, v);
}

static void set_string(cJSON *o, const char *key, const char *v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddStringToObject(o, key, v);
}

static void set_bool(cJSON *o, const char *key, bool v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddBoolToObject(o, key, v);
}

static cJSON *number_list(const struct float_list *l) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < l->n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(l->items[i]));
    return a;
}

/* config.json: the imported one (keeping its other keys) or a new one, with our shape. */
static cJSON *export_config(const struct config *c) {
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
    bool minicpm = m->model_type == MODEL_TYPE_MINICPM;
    cJSON_DeleteItemFromObjectCaseSensitive(j, "architectures");
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(minicpm ? "MiniCPMForCausalLM" : "LlamaForCausalLM"));
    set_string(j, "model_type", minicpm ? "minicpm" : "llama");
    set_number(j, "vocab_size", (double)m->vocab_size);
    set_number(j, "hidden_size", m->hidden_size);
    set_number(j, "intermediate_size", m->intermediate_size);
    set_number(j, "num_hidden_layers", m->num_hidden_layers);
    set_number(j, "num_attention_heads", m->num_attention_heads);
    set_number(j, "num_key_value_heads", m->num_key_value_heads);
    set_number(j, "head_dim", m->head_dim);
    set_number(j, "rope_theta", m->rope_theta);
    set_number(j, "rms_norm_eps", m->rms_norm_eps);
    set_bool(j, "tie_word_embeddings", m->tie_word_embeddings);
    set_number(j, "max_position_embeddings", (double)m->max_position_embeddings);
    set_string(j, "hidden_act", "silu");
    set_bool(j, "attention_bias", false);
    set_bool(j, "mlp_bias", false);
    set_string(j, "torch_dtype", "bfloat16");
    if (minicpm) {
        set_number(j, "scale_emb", m->scale_emb);
        set_number(j, "scale_depth", m->scale_depth);
        set_number(j, "dim_model_base", m->dim_model_base);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(j, "rope_scaling");
    if (strcmp(m->rope_scaling_type, "longrope") == 0) {
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "longrope");
        cJSON_AddItemToObject(rs, "long_factor", number_list(&m->rope_long_factor));
        cJSON_AddItemToObject(rs, "short_factor", number_list(&m->rope_short_factor));
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings",
                                (double)m->rope_original_max_position_embeddings);
    } else {
        cJSON_AddNullToObject(j, "rope_scaling");
    }
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

/* Files worth carrying from the imported folder: tokenizer, generation defaults, remote code. */
static void copy_side_files(const char *from, const char *out) {
    static const char *names[] = {"tokenizer.json",        "tokenizer_config.json",
                                  "special_tokens_map.json", "tokenizer.model",
                                  "vocab.json",            "merges.txt",
                                  "added_tokens.json",     "generation_config.json"};
    char src[4400], dst[4400];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(src, sizeof src, "%s/%s", from, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", out, names[i]);
        copy_file(src, dst);
    }
    DIR *d = opendir(from);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".py") != 0) continue;
        snprintf(src, sizeof src, "%s/%s", from, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", out, e->d_name);
        copy_file(src, dst);
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
               int64_t max_shard_bytes) {
    if (max_shard_bytes <= 0) max_shard_bytes = HF_DEFAULT_SHARD_BYTES;
    make_dirs(out);
    /* Shards: consecutive entries while they fit (a tensor larger than the limit gets its own). */
    int n = m->n_params_entries;
    int *shard_of = xmalloc((size_t)n * sizeof(int));
    int nshards = 0;
    int64_t used = 0;
    for (int i = 0; i < n; i++) {
        int64_t bytes = m->params[i].numel * 2;
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
            st_writer_add(w, e->name, ST_BF16, e->ndim, e->shape, host + e->offset, NULL);
            cJSON_AddStringToObject(weight_map, e->name, name);
            total += e->numel * 2;
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
    cJSON *cfg = export_config(c);
    snprintf(path, sizeof path, "%s/config.json", out);
    write_json(path, cfg);
    cJSON_Delete(cfg);
    if (c->model.init_from[0]) copy_side_files(c->model.init_from, out);
    free(shard_of);
}
