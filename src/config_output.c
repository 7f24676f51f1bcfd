/*
 * config_output.c: the config written out, all from the key table of config_table.c: as JSON (what a
 * checkpoint stores and the loader reads back exactly), as the start-up table, and as the Markdown
 * reference docs/CONFIG.md.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "config_keys.h"

/* ---------------------------------------------------------------------------------------------- */
/* Output: JSON, table, documentation                                                              */

/* A JSON number that reads back as exactly d: the shortest of %.15g, %.16g, %.17g that does
 * (cJSON's own printing accepts a 1-ulp difference, and a checkpoint's config must be exact). */
static cJSON *exact_number(double d) {
    char buf[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, d);
        if (strtod(buf, NULL) == d) break;
    }
    return cJSON_CreateRaw(buf);
}

static cJSON *integer_json(long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

cJSON *config_value_json(const struct config *c, const struct key_desc *k) {
    const void *f = (const char *)c + k->offset;
    switch (k->type) {
    case KT_INT: return integer_json(*(const int *)f);
    case KT_INT64: return integer_json((long long)*(const int64_t *)f);
    case KT_U64: return integer_json((long long)*(const uint64_t *)f); /* <= 2^53 */
    case KT_DOUBLE: return exact_number(*(const double *)f);
    case KT_BOOL: return cJSON_CreateBool(*(const bool *)f);
    case KT_STRING: return cJSON_CreateString((const char *)f);
    case KT_ENUM: return cJSON_CreateString(k->names[*(const int *)f]);
    case KT_STRLIST: {
        const struct string_list *l = f;
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < l->n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(l->items[i]));
        return a;
    }
    case KT_NUMLIST: {
        const struct float_list *l = f;
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < l->n; i++) cJSON_AddItemToArray(a, exact_number(l->items[i]));
        return a;
    }
    }
    return cJSON_CreateNull();
}

char *config_value_text(const struct config *c, const struct key_desc *k) {
    cJSON *v = config_value_json(c, k);
    char *text = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    return text;
}

char *config_to_json(const struct config *c) {
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; i < config_nkeys; i++) {
        /* find or create the objects of the dotted path, then add the leaf */
        char path[256];
        snprintf(path, sizeof path, "%s", config_keys[i].path);
        cJSON *obj = root;
        char *part = path, *dot;
        while ((dot = strchr(part, '.'))) {
            *dot = '\0';
            cJSON *sub = cJSON_GetObjectItemCaseSensitive(obj, part);
            if (!sub) sub = cJSON_AddObjectToObject(obj, part);
            obj = sub;
            part = dot + 1;
        }
        cJSON_AddItemToObject(obj, part, config_value_json(c, &config_keys[i]));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

void config_print(const struct config *c, FILE *f) {
    fprintf(f, "config (%s):\n  %-54s %s\n", c->path[0] ? c->path : "defaults", "key", "value");
    for (int i = 0; i < config_nkeys; i++) {
        cJSON *v = config_value_json(c, &config_keys[i]);
        char *text = cJSON_PrintUnformatted(v);
        size_t n = strlen(text);
        fprintf(f, "  %-54s %.*s%s\n", config_keys[i].path, n > 60 ? 57 : (int)n, text,
                n > 60 ? "..." : "");
        free(text);
        cJSON_Delete(v);
    }
}

static const struct {
    const char *prefix, *title, *intro;
} sections[] = {
    {"", "Top level", "Where the run lives, which backend runs it, and where it resumes from."},
    {"model.", "model",
     "The transformer's shape, with the key names of a Hugging Face config.json (`rope_scaling` "
     "is an object, as there). With `model.init_from`, the imported folder's config.json supplies "
     "them (rope_theta and the scaling from either its `rope_theta` + `rope_scaling` or "
     "transformers 5's `rope_parameters`); a key this config also gives must agree, except that "
     "`model.rope_override: true` lets this config's RoPE keys replace the imported ones "
     "(long-context adaptation, below). The three MiniCPM keys (muP scales) are ignored by "
     "`llama` (any value in range is accepted).\n\n"
     "RoPE for a longer context: raise the base (ABF), e.g. `--set model.rope_override=true "
     "--set model.rope_theta=1000000 --set model.max_position_embeddings=65536`, or set a "
     "scaling for the target length, e.g. `--set model.rope_override=true --set "
     "'model.rope_scaling={\"rope_type\": \"yarn\", \"factor\": 8, "
     "\"original_max_position_embeddings\": 8192}' --set model.max_position_embeddings=65536`. "
     "The frequencies follow transformers' `modeling_rope_utils.py` for every rope_type, "
     "defaults included (`dynamic` is the fixed base transformers computes for a sequence of "
     "data.seq_len tokens), and `export` writes the RoPE trained into config.json, so the "
     "exported folder runs in transformers as it was trained."},
    {"attention.", "attention",
     "InfLLM-V2 dense-sparse switchable attention (arXiv 2509.24663). Defaults are those of "
     "MiniCPM4.1. No key adds parameters: a model trained dense runs unchanged in sparse mode."},
    {"data.", "data",
     "The token stream: the built-in synthetic retrieval task (`data.synthetic`) or token shards "
     "(docs/DATA.md). configs/finetune_64k.json names placeholder shards (`data/shards/...`) and "
     "a placeholder model folder (`models/MiniCPM4-0.5B`): replace them with your own before "
     "running it."},
    {"train.", "train", "Optimisation: batch, schedule, AdamW, evaluation, stopping."},
    {"parallel.", "parallel", "How ranks share the work: cp ranks per sequence, dp = ranks / cp."},
    {"checkpoint.", "checkpoint", "Checkpoints in <run_dir>/ckpt (format: docs/FORMATS.md)."},
    {"log.", "log", "Progress output."},
};

/* Markdown table cell text: pipes escaped. */
static void doc_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

static void doc_row(FILE *f, const struct key_desc *k) {
    char what[200];
    if (k->type == KT_BOOL)
        snprintf(what, sizeof what, "bool");
    else if (k->type == KT_ENUM) {
        what[0] = '\0';
        for (int e = 0; k->names[e]; e++)
            config_append(what, sizeof what, "%s`%s`", e ? ", " : "",
                          k->names[e][0] ? k->names[e] : "\"\"");
    } else
        config_describe(k, false, what, sizeof what);
    fprintf(f, "| `%s` | ", k->path);
    doc_cell(f, what);
    fprintf(f, " | `%s` | ", k->def);
    doc_cell(f, k->doc);
    fprintf(f, " |\n");
}

void config_write_doc(FILE *f) {
    fprintf(f, "# Configuration reference\n\n"
               "This file is the output of `infllm-train config-doc`: regenerate it with\n"
               "`build/infllm-train config-doc > docs/CONFIG.md` after changing the key table in\n"
               "src/config_table.c.\n\n"
               "A config is a JSON object of the sections below. A key left out keeps its\n"
               "default. An unknown key (with the closest known one suggested), a wrong type, a\n"
               "number out of range or an impossible combination stops the run before any work\n"
               "with one line naming the file, the key path and what was expected (exit code "
               "2):\n\n"
               "    error: configs/x.json: unknown key \"train.max_step\" (did you mean "
               "\"train.max_steps\"?)\n"
               "    error: configs/x.json: model.hidden_size: expected a positive integer, "
               "got 3.5\n\n");
    fprintf(f, "Any key can be overridden on the command line with `--set key.path=value`,\n"
               "repeatable and applied in order after the file. The value is JSON when it parses\n"
               "as JSON, else a bare string: `--set train.lr=1e-4`,\n"
               "`--set model.tie_word_embeddings=false`, `--set 'data.train_files=[\"a.tok\"]'`,\n"
               "`--set device=cuda`, `--set run_dir=runs/x`,\n"
               "`--set model.rope_scaling.rope_type=longrope`. A section takes a JSON object:\n"
               "`--set 'data.synthetic={\"n_pairs\": 4}'`.\n\n"
               "Integers must be whole numbers within the range shown (JSON numbers hold integers\n"
               "exactly up to 2^53). Checkpoints store the whole config in this format\n"
               "(`train_config.json`), every key written.\n");
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
        fprintf(f, "\n## %s\n\n%s\n\n| key | type | default | meaning |\n|---|---|---|---|\n",
                sections[s].title, sections[s].intro);
        size_t pn = strlen(sections[s].prefix);
        for (int i = 0; i < config_nkeys; i++) {
            const char *p = config_keys[i].path;
            bool top = strchr(p, '.') == NULL;
            if (pn == 0 ? top : strncmp(p, sections[s].prefix, pn) == 0) doc_row(f, &config_keys[i]);
        }
    }
    fprintf(f, "\n## Derived values and checks across keys\n\n"
               "Applied after the file and the --set options (and again by the trainer once the\n"
               "rank count is known); each failure names the key to change.\n\n");
    for (const char *const *r = config_rules; *r; r++) fprintf(f, "- %s\n", *r);
}

/* The member of a nested object at a dotted path ("model.rope_scaling.factor"), or NULL. */
static const cJSON *member_at(const cJSON *obj, const char *path) {
    char part[128];
    while (obj && *path) {
        size_t len = strcspn(path, ".");
        if (len >= sizeof part) return NULL;
        memcpy(part, path, len);
        part[len] = '\0';
        obj = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, part) : NULL;
        path += len + (path[len] == '.');
    }
    return obj;
}

/* Does a change of `key` change which sequences the training stream reads from a step on? */
static bool orders_data(const char *key) {
    if (!strcmp(key, "seed") || !strcmp(key, "train.global_batch_size")) return true;
    return !strncmp(key, "data.", 5) && strncmp(key, "data.val_", 9) != 0;
}

/* Keys of one invocation rather than of the run: where it lives, how it starts, when it pauses. */
static bool per_invocation(const char *key) {
    return !strcmp(key, "run_dir") || !strcmp(key, "resume") ||
           !strcmp(key, "train.exit_after_steps");
}

int config_changes(const struct config *c, const cJSON *saved, char *out, size_t n,
                   bool *data_order) {
    int count = 0;
    out[0] = '\0';
    *data_order = false;
    for (int i = 0; i < config_nkeys; i++) {
        const char *key = config_keys[i].path;
        const cJSON *old = member_at(saved, key);
        if (!old || per_invocation(key)) continue; /* absent: a file older than the key */
        char *now = config_value_text(c, &config_keys[i]); /* exact; read back like the file */
        cJSON *parsed = now ? cJSON_Parse(now) : NULL;
        if (!parsed || !cJSON_Compare(old, parsed, true)) {
            char *was = cJSON_PrintUnformatted(old), item[512];
            snprintf(item, sizeof item, "%s%s %.120s -> %.120s", count ? ", " : "", key,
                     was ? was : "?", now ? now : "?");
            config_append(out, n, "%s", item);
            free(was);
            *data_order = *data_order || orders_data(key);
            count++;
        }
        cJSON_Delete(parsed);
        free(now);
    }
    if (n > 4 && strlen(out) + 1 >= n) memcpy(out + n - 4, "...", 3); /* cut short */
    return count;
}

int config_key_count(void) { return config_nkeys; }

const char *config_key_name(int i) { return i >= 0 && i < config_nkeys ? config_keys[i].path : NULL; }
