/*
 * config.c: loading (see config.h): a config file's JSON object and --set options, through the key
 * table of config_table.c; config_validate.c holds the rules across keys.
 *
 * Error policy: every rejection is one line through die_user (exit code 2) that names the file (or
 * the --set option), the full key path, what was expected and what was found.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "config_keys.h"
#include "fsutil.h"

/* Other spellings accepted in files and --set (never written). */
static const struct {
    const char *alias, *key;
} aliases[] = {
    {"model.rope_scaling.type", "model.rope_scaling.rope_type"},
};

/* Objects that may be null in a file, as Hugging Face writes "rope_scaling": null (= absent). */
static const char *const nullable_sections[] = {"model.rope_scaling", NULL};

/* ---------------------------------------------------------------------------------------------- */
/* Setting one key from a JSON value                                                               */

/* Where a value came from, for messages: "<file>: <key>: ..." or "--set <arg>: ...". */
struct origin {
    const char *file;    /* NULL for --set */
    const char *arg;     /* the whole --set argument */
    const char *section; /* config_import: the section the file's members belong to; messages
                            name a member as the file does, without "<section>." */
};

/* The name of key path `path` in the origin's file. */
static const char *member_name(const struct origin *o, const char *path) {
    size_t n = o->section ? strlen(o->section) : 0;
    return n && strncmp(path, o->section, n) == 0 && path[n] == '.' ? path + n + 1 : path;
}

/* Dies with "<origin>: <path>: expected <expected>, got <value>" (the value cut to ~60 chars). */
static void die_expected(const struct origin *o, const char *path, const char *expected,
                         const cJSON *got) INFLLM_NORETURN;
static void die_expected(const struct origin *o, const char *path, const char *expected,
                         const cJSON *got) {
    char *text = got ? cJSON_PrintUnformatted(got) : NULL;
    char shown[80];
    snprintf(shown, sizeof shown, "%s", text ? text : "nothing");
    if (text && strlen(text) >= sizeof shown) memcpy(shown + sizeof shown - 4, "...", 4);
    free(text);
    if (o->file) die_user("%s: %s: expected %s, got %s", o->file, member_name(o, path), expected,
                          shown);
    size_t n = strlen(path);
    if (strncmp(o->arg, path, n) == 0 && o->arg[n] == '=')
        die_user("--set %s: expected %s, got %s", o->arg, expected, shown);
    die_user("--set %s: %s: expected %s, got %s", o->arg, path, expected, shown); /* in an object */
}

static void die_field(const struct origin *o, const struct key_desc *k, bool show_max,
                      const cJSON *got) INFLLM_NORETURN;
static void die_field(const struct origin *o, const struct key_desc *k, bool show_max,
                      const cJSON *got) {
    char what[200], expected[220];
    config_describe(k, show_max, what, sizeof what);
    bool vowel = strchr("aeiou", what[0]) != NULL;
    bool article = k->type != KT_BOOL && k->type != KT_ENUM;
    snprintf(expected, sizeof expected, "%s%s", article ? (vowel ? "an " : "a ") : "", what);
    die_expected(o, k->path, expected, got);
}

static void *field(struct config *c, const struct key_desc *k) { return (char *)c + k->offset; }

/* The number v, checked against the key's type and bounds. */
static double checked_number(const struct origin *o, const struct key_desc *k, const cJSON *v) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) die_field(o, k, false, v);
    double d = v->valuedouble;
    if (config_integer_type(k->type) && d != floor(d)) die_field(o, k, false, v);
    if (d < k->min || (k->min_open && d == k->min)) die_field(o, k, false, v);
    if (d > k->max || (k->max_open && d == k->max)) die_field(o, k, true, v);
    return d;
}

static void set_string_list(const struct origin *o, const struct key_desc *k,
                            struct string_list *l, const cJSON *v) {
    if (!cJSON_IsArray(v)) die_field(o, k, false, v);
    if (cJSON_GetArraySize(v) > CONFIG_LIST_MAX) die_field(o, k, true, v);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) if (!cJSON_IsString(e)) die_field(o, k, false, v);
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    l->n = 0;
    cJSON_ArrayForEach(e, v) l->items[l->n++] = xstrdup(e->valuestring);
}

static void set_number_list(const struct origin *o, const struct key_desc *k,
                            struct float_list *l, const cJSON *v) {
    if (!cJSON_IsArray(v)) die_field(o, k, false, v);
    if (cJSON_GetArraySize(v) > CONFIG_LIST_MAX) die_field(o, k, true, v);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) die_field(o, k, false, v);
    }
    l->n = 0;
    cJSON_ArrayForEach(e, v) l->items[l->n++] = e->valuedouble;
}

static void set_value(struct config *c, const struct key_desc *k, const cJSON *v,
                      const struct origin *o) {
    void *f = field(c, k);
    switch (k->type) {
    case KT_INT: *(int *)f = (int)checked_number(o, k, v); break;
    case KT_INT64: *(int64_t *)f = (int64_t)checked_number(o, k, v); break;
    case KT_U64: *(uint64_t *)f = (uint64_t)checked_number(o, k, v); break;
    case KT_DOUBLE: *(double *)f = checked_number(o, k, v); break;
    case KT_BOOL:
        if (!cJSON_IsBool(v)) die_field(o, k, false, v);
        *(bool *)f = cJSON_IsTrue(v);
        break;
    case KT_STRING:
        if (!cJSON_IsString(v)) die_field(o, k, false, v);
        if (strlen(v->valuestring) >= k->cap) die_field(o, k, true, v);
        snprintf((char *)f, k->cap, "%s", v->valuestring);
        break;
    case KT_ENUM: {
        int i = 0;
        if (cJSON_IsString(v))
            while (k->names[i] && strcmp(k->names[i], v->valuestring) != 0) i++;
        if (!cJSON_IsString(v) || !k->names[i]) die_field(o, k, false, v);
        *(int *)f = i;
        break;
    }
    case KT_STRLIST: set_string_list(o, k, f, v); break;
    case KT_NUMLIST: set_number_list(o, k, f, v); break;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Lookup, with a suggestion for a mistyped key                                                    */

/* The table's spelling of path (an alias resolved), or path itself. */
static const char *canonical(const char *path) {
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(aliases[i].alias, path) == 0) return aliases[i].key;
    return path;
}

static int find_key(const char *path) {
    path = canonical(path);
    for (int i = 0; i < config_nkeys; i++)
        if (strcmp(config_keys[i].path, path) == 0) return i;
    return -1;
}

/* Whether some key lives under `prefix.` (a section or a nested object). */
static bool is_section(const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < config_nkeys; i++)
        if (strncmp(config_keys[i].path, prefix, n) == 0 && config_keys[i].path[n] == '.') return true;
    return false;
}

/* Edit distance with adjacent transpositions (optimal string alignment); 99 for long strings. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 80 || lb > 80) return 99;
    int d[81][81];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

static const char *leaf_of(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* The closest known key or section to `path` into out (size n), or "" when none is close: a key
 * one edit away; else a key with the same last name in another section ("hidden_size" at the top
 * level -> "model.hidden_size"); else a key or section within a few edits. */
static void suggest(const char *path, char *out, size_t n) {
    int best_d = 1 << 30;
    out[0] = '\0';
    for (int i = 0; i < config_nkeys; i++) {
        /* the key itself and each section above it ("data", "data.synthetic") */
        const char *p = config_keys[i].path;
        for (size_t len = 1; p[len - 1] != '\0'; len++) {
            if (p[len] != '.' && p[len] != '\0') continue;
            char cand[128];
            snprintf(cand, sizeof cand, "%.*s", (int)len, p);
            int d = edit_distance(path, cand);
            if (d < best_d) best_d = d, snprintf(out, n, "%s", cand);
        }
    }
    if (best_d <= 1) return;
    for (int i = 0; i < config_nkeys; i++)
        if (strcmp(leaf_of(config_keys[i].path), leaf_of(path)) == 0) {
            snprintf(out, n, "%s", config_keys[i].path);
            return;
        }
    int limit = strlen(path) < 8 ? 2 : 3;
    if (best_d > limit) out[0] = '\0';
}

static void die_unknown(const struct origin *o, const char *path) INFLLM_NORETURN;
static void die_unknown(const struct origin *o, const char *path) {
    char near[128], hint[200];
    suggest(path, near, sizeof near);
    if (near[0])
        snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", near);
    else
        snprintf(hint, sizeof hint, " (docs/CONFIG.md lists every key)");
    if (o->file) die_user("%s: unknown key \"%s\"%s", o->file, member_name(o, path), hint);
    die_user("--set %s: unknown key \"%s\"%s", o->arg, path, hint);
}

/* ---------------------------------------------------------------------------------------------- */
/* Walking a JSON object                                                                           */

/* "<prefix>.<name>" (or name at the top level) into out. */
static void join_path(char *out, size_t n, const char *prefix, const char *name) {
    snprintf(out, n, "%s%s%s", prefix, prefix[0] ? "." : "", name);
}

/* Duplicate keys in one JSON object (an alias counting as its key) are refused: cJSON would keep
 * both and the first would win silently. */
static void check_duplicates(const cJSON *obj, const char *prefix, const struct origin *o) {
    const cJSON *a, *b;
    cJSON_ArrayForEach(a, obj) {
        char pa[256], pb[256];
        join_path(pa, sizeof pa, prefix, a->string);
        for (b = a->next; b; b = b->next) {
            join_path(pb, sizeof pb, prefix, b->string);
            if (strcmp(canonical(pa), canonical(pb)) != 0) continue;
            if (o->file) die_user("%s: key \"%s\" appears twice", o->file, canonical(pa));
            die_user("--set %s: key \"%s\" appears twice", o->arg, canonical(pa));
        }
        if (cJSON_IsObject(a)) check_duplicates(a, pa, o);
    }
}

static bool nullable(const char *path) {
    for (int i = 0; nullable_sections[i]; i++)
        if (strcmp(nullable_sections[i], path) == 0) return true;
    return false;
}

/* Sets key idx from v and records who gave it. An imported value (config_import) must agree with a
 * value the user gave in the file or a --set. */
static void set_key(struct config *c, int idx, const cJSON *v, const struct origin *o) {
    const struct key_desc *k = &config_keys[idx];
    if (!o->section || c->given[idx] != CONFIG_GIVEN) {
        set_value(c, k, v, o);
        c->given[idx] = o->section ? CONFIG_IMPORTED : CONFIG_GIVEN;
        return;
    }
    char *ours = config_value_text(c, k);
    set_value(c, k, v, o);
    char *theirs = config_value_text(c, k);
    if (strcmp(ours, theirs) != 0)
        die_user("%s: %s is %s but %s says %s (drop the key from the config, or import another "
                 "model)", c->path[0] ? c->path : "config", k->path, ours, o->file, theirs);
    free(ours);
    free(theirs);
}

/* Applies every member of object `obj` found at `prefix` ("" for the root). */
static void apply_object(struct config *c, const cJSON *obj, const char *prefix,
                         const struct origin *o) {
    const cJSON *m;
    cJSON_ArrayForEach(m, obj) {
        char path[256];
        join_path(path, sizeof path, prefix, m->string);
        if (strchr(m->string, '.')) { /* one spelling per key: nested objects, no dotted names */
            const char *msg = "nest the sections instead of a dotted name";
            if (o->file) die_user("%s: key \"%s\": %s", o->file, path, msg);
            die_user("--set %s: key \"%s\": %s", o->arg, path, msg);
        }
        int idx = find_key(path);
        if (idx >= 0) {
            set_key(c, idx, m, o);
        } else if (is_section(path) && cJSON_IsObject(m)) {
            apply_object(c, m, path, o);
        } else if (is_section(path) && cJSON_IsNull(m) && nullable(path)) {
            continue;
        } else if (is_section(path)) {
            die_expected(o, path, "an object (a section of keys)", m);
        } else {
            die_unknown(o, path);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Defaults, load, --set                                                                           */

void config_defaults(struct config *c) {
    memset(c, 0, sizeof *c);
    struct origin o = {"(built-in defaults)", NULL, NULL};
    for (int i = 0; i < config_nkeys; i++) {
        cJSON *v = cJSON_Parse(config_keys[i].def);
        CHECKF(v != NULL, "bad default for %s", config_keys[i].path);
        set_value(c, &config_keys[i], v, &o);
        cJSON_Delete(v);
    }
}

/* Line and column (1-based) of byte offset `at` in text. */
static void line_col(const char *text, size_t at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at && text[i]; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* Dies naming line, column and the text there (up to 20 printable characters). */
static void die_syntax(const char *path, const char *text, size_t len, size_t at, const char *what)
    INFLLM_NORETURN;
static void die_syntax(const char *path, const char *text, size_t len, size_t at,
                       const char *what) {
    int line, col;
    line_col(text, at, &line, &col);
    char near[24];
    size_t n = 0;
    for (size_t i = at; i < len && n < 20 && text[i] != '\n' && text[i] != '\r'; i++)
        near[n++] = (text[i] >= 32 && text[i] < 127) ? text[i] : '?';
    near[n] = '\0';
    if (n) die_user("%s: line %d, column %d: %s near '%s'", path, line, col, what, near);
    die_user("%s: line %d, column %d: %s at the end of the %s", path, line, col, what,
             at < len ? "line" : "file");
}

cJSON *config_parse_file(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        die_user("%s: cannot read: %s", path, strerror(EISDIR));
    size_t len = 0;
    char *text = read_file(path, &len, false);
    if (!text) die_user("%s: cannot read: %s", path, strerror(errno));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : len;
        die_syntax(path, text, len, off, "malformed JSON");
    }
    const char *p = end ? end : text + len;
    while (p < text + len && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p < text + len)
        die_syntax(path, text, len, (size_t)(p - text), "unexpected text after the JSON object");
    if (!cJSON_IsObject(root)) die_user("%s: expected a JSON object at the top level", path);
    free(text);
    return root;
}

/* The value of a --set: JSON when the whole text parses (and, for a string or enum key, is a
 * string), else the text itself as a string: --set device=cuda, --set run_dir=runs/2024. */
static cJSON *set_value_json(const struct key_desc *k, const char *text) {
    cJSON *v = cJSON_ParseWithOpts(text, NULL, 1);
    bool stringy = k->type == KT_STRING || k->type == KT_ENUM;
    if (v && (!stringy || cJSON_IsString(v))) return v;
    cJSON_Delete(v);
    return cJSON_CreateString(text);
}

/* One "key.path=value": a key, or a section given a JSON object (--set 'data.synthetic={...}'). */
static void apply_set(struct config *c, const char *arg) {
    struct origin o = {NULL, arg, NULL};
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) die_user("--set %s: expected key.path=value", arg);
    char path[256];
    size_t n = (size_t)(eq - arg);
    if (n >= sizeof path)
        die_user("--set %s: the key is longer than %zu bytes", arg, sizeof path - 1);
    memcpy(path, arg, n);
    path[n] = '\0';
    int idx = find_key(path);
    if (idx >= 0) {
        cJSON *v = set_value_json(&config_keys[idx], eq + 1);
        set_key(c, idx, v, &o);
        cJSON_Delete(v);
    } else if (is_section(path)) {
        cJSON *v = cJSON_ParseWithOpts(eq + 1, NULL, 1);
        if (!cJSON_IsObject(v)) {
            cJSON *s = v ? v : cJSON_CreateString(eq + 1);
            die_expected(&o, path, "a JSON object of the section's keys", s);
        }
        check_duplicates(v, path, &o);
        apply_object(c, v, path, &o);
        cJSON_Delete(v);
    } else {
        die_unknown(&o, path);
    }
}

void config_read(struct config *c, const char *path, int nset, char *const *sets) {
    config_defaults(c);
    if (strlen(path) >= sizeof c->path)
        die_user("%s: path longer than %zu bytes", path, sizeof c->path - 1);
    snprintf(c->path, sizeof c->path, "%s", path);
    cJSON *root = config_parse_file(path);
    struct origin o = {path, NULL, NULL};
    check_duplicates(root, "", &o);
    apply_object(c, root, "", &o);
    cJSON_Delete(root);
    for (int i = 0; i < nset; i++) apply_set(c, sets[i]);
}

void config_load(struct config *c, const char *path, int nset, char *const *sets) {
    config_read(c, path, nset, sets);
    config_validate(c, 0);
}

void config_free(struct config *c) {
    for (int i = 0; i < config_nkeys; i++) {
        if (config_keys[i].type != KT_STRLIST) continue;
        struct string_list *l = field(c, &config_keys[i]);
        for (int j = 0; j < l->n; j++) free(l->items[j]);
        l->n = 0;
    }
}

bool config_is_set(const struct config *c, const char *key) {
    int idx = find_key(key);
    CHECKF(idx >= 0, "config_is_set: no key %s", key);
    return c->given[idx] != CONFIG_DEFAULT;
}

void config_import(struct config *c, const cJSON *obj, const char *section, const char *file) {
    CHECKF(is_section(section), "config_import: no section %s", section);
    if (strlen(file) >= sizeof c->import_file)
        die_user("%s: path longer than %zu bytes", file, sizeof c->import_file - 1);
    snprintf(c->import_file, sizeof c->import_file, "%s", file);
    snprintf(c->import_section, sizeof c->import_section, "%s", section);
    struct origin o = {c->import_file, NULL, c->import_section};
    check_duplicates(obj, section, &o);
    apply_object(c, obj, section, &o);
}

cJSON *config_key_json(const struct config *c, const char *key) {
    int idx = find_key(key);
    CHECKF(idx >= 0, "config_key_json: no key %s", key);
    return config_value_json(c, &config_keys[idx]);
}

/* ---------------------------------------------------------------------------------------------- */
/* Errors of validation                                                                            */

void config_bad(const struct config *c, const char *key, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int idx = find_key(key);
    if (idx >= 0 && c->given[idx] == CONFIG_IMPORTED) { /* name the imported file's member */
        struct origin o = {c->import_file, NULL, c->import_section};
        die_user("%s: %s: %s", c->import_file, member_name(&o, key), msg);
    }
    die_user("%s: %s: %s", c->path[0] ? c->path : "config", key, msg);
}

