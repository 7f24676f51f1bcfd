/*
 * hf_rope.c: the RoPE fields of a Hugging Face config.json in and out (see hf_rope.h).
 *
 * Import normalises what the file says into our keys (rope_theta, rope_scaling.rope_type and its
 * members) and hands them to config_import with the other model keys, so the key table's checks
 * and config_validate's rules apply to them as to our own config; the file's RoPE is complete in
 * itself, so a field it leaves out counts as transformers' default (plain type, member unset).
 */
#include "hf_rope.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* The members of a scaling object that are our model.rope_scaling.<name> keys, besides its type. */
static const char *const scaling_members[] = {
    "factor",          "original_max_position_embeddings",
    "attention_factor", "beta_fast",
    "beta_slow",       "mscale",
    "mscale_all_dim",  "truncate",
    "low_freq_factor", "high_freq_factor",
    "long_factor",     "short_factor",
};
#define NMEMBERS (sizeof scaling_members / sizeof scaling_members[0])

/* j[key], or NULL when absent or null (null means absent in config.json). */
static const cJSON *field(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Equal values; numbers exactly (cJSON_Compare allows a rounding of difference). */
static bool same_value(const cJSON *a, const cJSON *b) {
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) return a->valuedouble == b->valuedouble;
    if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b)) return false;
        for (const cJSON *x = a->child, *y = b->child; x; x = x->next, y = y->next)
            if (!same_value(x, y)) return false;
        return true;
    }
    return cJSON_Compare(a, b, true);
}

/* v as compact JSON for a message ("absent" for NULL), cut to fit buf. */
static const char *shown(const cJSON *v, char *buf, size_t n) {
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(buf, n, "%s", t ? t : "absent");
    if (t && strlen(t) >= n && n > 4) memcpy(buf + n - 4, "...", 4);
    free(t);
    return buf;
}

/* A line on stdout from rank 0 (or the only process). */
static void note(const char *fmt, ...) INFLLM_PRINTF(1, 2);
static void note(const char *fmt, ...) {
    int init = 0, rank = 0;
    MPI_Initialized(&init);
    if (init) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    printf("note: ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------------- */
/* Import                                                                                          */

static void refuse_partial_rotary(const cJSON *j, const cJSON *rp, const char *path) {
    const cJSON *v[2] = {field(j, "partial_rotary_factor"),
                         rp ? field(rp, "partial_rotary_factor") : NULL};
    const char *names[2] = {"partial_rotary_factor", "rope_parameters.partial_rotary_factor"};
    char buf[80];
    for (int i = 0; i < 2; i++)
        if (v[i] && !(cJSON_IsNumber(v[i]) && v[i]->valuedouble == 1.0))
            die_user("%s: %s is %s: partial RoPE is not supported (expected 1 or no field)", path,
                     names[i], shown(v[i], buf, sizeof buf));
}

/* rope_parameters.rope_theta, else the top-level rope_theta; both present must agree. */
static const cJSON *pick_theta(const cJSON *j, const cJSON *rp, const char *path) {
    const cJSON *top = field(j, "rope_theta"), *in = rp ? field(rp, "rope_theta") : NULL;
    char a[80], b[80];
    if (top && in && !same_value(top, in))
        die_user("%s: rope_theta (%s) and rope_parameters.rope_theta (%s) disagree", path,
                 shown(top, a, sizeof a), shown(in, b, sizeof b));
    return in ? in : top;
}

static bool is_member(const char *name) {
    for (size_t i = 0; i < NMEMBERS; i++)
        if (strcmp(scaling_members[i], name) == 0) return true;
    return false;
}

/* The scaling object `obj` (config.json's field `name`) with our member names: rope_type (type
 * accepted, "default" -> "" plain) and the members, without rope_theta, partial_rotary_factor and
 * null members; NULL for plain RoPE without members. */
static cJSON *scaling_of(const cJSON *obj, const char *name, const char *path) {
    cJSON *out = cJSON_CreateObject();
    const cJSON *type = NULL, *e;
    cJSON_ArrayForEach(e, obj) {
        const char *k = e->string;
        if (cJSON_IsNull(e) || !strcmp(k, "rope_theta") || !strcmp(k, "partial_rotary_factor"))
            continue;
        if (!strcmp(k, "rope_type") || !strcmp(k, "type")) {
            if (!cJSON_IsString(e)) die_user("%s: %s.%s: expected a string", path, name, k);
            if (type && strcmp(type->valuestring, e->valuestring) != 0)
                die_user("%s: %s: rope_type and type disagree (\"%s\", \"%s\")", path, name,
                         type->valuestring, e->valuestring);
            type = e;
        } else if (!is_member(k)) {
            die_user("%s: %s.%s: not a RoPE parameter this trainer knows (docs/CONFIG.md lists "
                     "model.rope_scaling.*)", path, name, k);
        } else if (!strcmp(k, "attention_factor") && cJSON_IsNumber(e) && e->valuedouble == 0) {
            die_user("%s: %s.attention_factor: 0 would zero every rotary product; expected a "
                     "positive number or no field", path, name);
        } else {
            cJSON_AddItemToObject(out, k, cJSON_Duplicate(e, true));
        }
    }
    if (!type && out->child) die_user("%s: %s: expected a \"rope_type\" string", path, name);
    const char *t = type && strcmp(type->valuestring, "default") != 0 ? type->valuestring : "";
    if (!t[0] && !out->child) {
        cJSON_Delete(out);
        return NULL;
    }
    cJSON_AddStringToObject(out, "rope_type", t);
    return out;
}

/* rope_scaling and rope_parameters (normalised) must say the same. */
static void check_agree(const cJSON *a, const cJSON *b, const char *path) {
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *from = pass ? b : a, *other = pass ? a : b, *e;
        cJSON_ArrayForEach(e, from) {
            const cJSON *o = field(other, e->string);
            if (o && same_value(e, o)) continue;
            char x[80], y[80];
            const cJSON *in_a = pass ? o : e, *in_b = pass ? e : o;
            die_user("%s: rope_scaling.%s (%s) and rope_parameters.%s (%s) disagree", path,
                     e->string, shown(in_a, x, sizeof x), e->string, shown(in_b, y, sizeof y));
        }
    }
}

/* The file's scaling (NULL for plain RoPE), from rope_scaling or rope_parameters; a top-level
 * original_max_position_embeddings (some MiniCPM files) fills in or must agree. *name: the field
 * the scaling came from. */
static cJSON *pick_scaling(const cJSON *j, const cJSON *rp, const char *path, const char **name) {
    const cJSON *rs = field(j, "rope_scaling");
    if (rs && !cJSON_IsObject(rs)) die_user("%s: rope_scaling: expected an object or null", path);
    cJSON *a = rs ? scaling_of(rs, "rope_scaling", path) : NULL;
    cJSON *b = rp ? scaling_of(rp, "rope_parameters", path) : NULL;
    if (a && b) check_agree(a, b, path);
    *name = a ? "rope_scaling" : "rope_parameters";
    cJSON *s = a ? a : b;
    if (a) cJSON_Delete(b);
    if (!s) return NULL;
    const cJSON *top = field(j, "original_max_position_embeddings");
    const cJSON *in = field(s, "original_max_position_embeddings");
    char x[80], y[80];
    if (top && in && !same_value(top, in))
        die_user("%s: original_max_position_embeddings (%s) and %s.original_max_position_embeddings "
                 "(%s) disagree", path, shown(top, x, sizeof x), *name, shown(in, y, sizeof y));
    if (top && !in) cJSON_AddItemToObject(s, "original_max_position_embeddings",
                                          cJSON_Duplicate(top, true));
    return s;
}

/* Our value of key as plain JSON (numbers as numbers). */
static cJSON *our_value(const struct config *c, const char *key) {
    cJSON *raw = config_key_json(c, key);
    char *text = cJSON_PrintUnformatted(raw);
    cJSON *v = cJSON_Parse(text);
    free(text);
    cJSON_Delete(raw);
    return v;
}

/* Whether our config's `key` replaces the file's value `theirs` of `what`: the key is given, differs
 * and model.rope_override is on (noted). Given and different without the override stops the run. */
static bool ours_replaces(const struct config *c, const char *key, const cJSON *theirs,
                          const char *what, const char *path) {
    if (!config_is_set(c, key)) return false;
    cJSON *ours = our_value(c, key);
    bool same = same_value(ours, theirs);
    char a[80], b[80];
    shown(ours, a, sizeof a);
    shown(theirs, b, sizeof b);
    cJSON_Delete(ours);
    if (same) return false;
    if (!c->model.rope_override)
        die_user("%s: %s is %s but %s says %s %s (set model.rope_override to true to train this "
                 "config's RoPE, or drop the key)", c->path[0] ? c->path : "config", key, a, path,
                 what, b);
    note("%s is %s, replacing %s's %s %s (model.rope_override)", key, a, path, what, b);
    return true;
}

/* The file's value of scaling member m, or what its absence means (unset). */
static cJSON *member_or_default(const cJSON *s, const char *m) {
    const cJSON *v = s ? field(s, m) : NULL;
    if (v) return cJSON_Duplicate(v, true);
    if (!strcmp(m, "truncate")) return cJSON_CreateTrue();
    if (!strcmp(m, "long_factor") || !strcmp(m, "short_factor")) return cJSON_CreateArray();
    return cJSON_CreateNumber(0);
}

/* model.rope_scaling from the file's scaling s (NULL: plain), member by member, ours replacing a
 * member under the override; ours replacing the type drops all of the file's members. */
static void import_scaling(const struct config *c, const cJSON *s, const char *name,
                           cJSON *model, const char *path) {
    char what[96];
    cJSON *type = s ? cJSON_Duplicate(field(s, "rope_type"), true) : cJSON_CreateString("");
    snprintf(what, sizeof what, "%s.rope_type", name);
    cJSON *ours = cJSON_AddObjectToObject(model, "rope_scaling");
    if (ours_replaces(c, "model.rope_scaling.rope_type", type, what, path)) {
        cJSON_Delete(type);
        return;
    }
    cJSON_AddItemToObject(ours, "rope_type", type);
    for (size_t i = 0; i < NMEMBERS; i++) {
        char key[96];
        snprintf(key, sizeof key, "model.rope_scaling.%s", scaling_members[i]);
        snprintf(what, sizeof what, "%s.%s", name, scaling_members[i]);
        cJSON *theirs = member_or_default(s, scaling_members[i]);
        if (ours_replaces(c, key, theirs, what, path) || !(s && field(s, scaling_members[i])))
            cJSON_Delete(theirs);
        else
            cJSON_AddItemToObject(ours, scaling_members[i], theirs);
    }
}

void hf_rope_import(const struct config *c, const cJSON *j, cJSON *model, const char *path) {
    const cJSON *rp = field(j, "rope_parameters");
    if (rp && !cJSON_IsObject(rp)) die_user("%s: rope_parameters: expected an object or null", path);
    refuse_partial_rotary(j, rp, path);
    const cJSON *theta = pick_theta(j, rp, path);
    cJSON *t = theta ? cJSON_Duplicate(theta, true) : cJSON_CreateNumber(10000.0);
    if (ours_replaces(c, "model.rope_theta", t, theta && field(j, "rope_theta") == theta
                      ? "rope_theta" : "rope_parameters.rope_theta", path))
        cJSON_Delete(t);
    else
        cJSON_AddItemToObject(model, "rope_theta", t);
    const cJSON *mp = field(model, "max_position_embeddings");
    if (mp && ours_replaces(c, "model.max_position_embeddings", mp, "max_position_embeddings", path))
        cJSON_DeleteItemFromObjectCaseSensitive(model, "max_position_embeddings");
    const char *name;
    cJSON *s = pick_scaling(j, rp, path, &name);
    import_scaling(c, s, name, model, path);
    cJSON_Delete(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Export                                                                                          */

static void put(cJSON *o, const char *key, cJSON *v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddItemToObject(o, key, v);
}

/* Whether our value v (exact JSON from config_key_json) of a scaling member is set. */
static bool member_set(const cJSON *v) {
    if (cJSON_IsBool(v)) return cJSON_IsFalse(v); /* truncate: true is the default */
    if (cJSON_IsArray(v)) return cJSON_GetArraySize(v) > 0;
    return !(cJSON_IsRaw(v) && strcmp(v->valuestring, "0") == 0);
}

/* Our scaling as config.json's object (NULL for plain RoPE): rope_type, then each member set
 * (config_validate leaves set only the members the type reads). */
static cJSON *scaling_json(const struct config *c) {
    if (c->model.rope_scaling_type == ROPE_TYPE_DEFAULT) return NULL;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddItemToObject(s, "rope_type", config_key_json(c, "model.rope_scaling.rope_type"));
    for (size_t i = 0; i < NMEMBERS; i++) {
        char key[96];
        snprintf(key, sizeof key, "model.rope_scaling.%s", scaling_members[i]);
        cJSON *v = config_key_json(c, key);
        if (member_set(v))
            cJSON_AddItemToObject(s, scaling_members[i], v);
        else
            cJSON_Delete(v);
    }
    return s;
}

void hf_rope_export(cJSON *j, const struct config *c) {
    bool v5 = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "rope_parameters"));
    bool v4 = !v5 || field(j, "rope_theta") || field(j, "rope_scaling");
    cJSON *s = scaling_json(c);
    if (v4) {
        /* the file's spelling of the type (older transformers read `type` only) */
        const cJSON *old = field(j, "rope_scaling");
        bool type_only = old && field(old, "type") && !field(old, "rope_type");
        cJSON *rs = s ? cJSON_Duplicate(s, true) : cJSON_CreateNull();
        if (s && type_only)
            cJSON_AddItemToObject(rs, "type",
                                  cJSON_DetachItemFromObjectCaseSensitive(rs, "rope_type"));
        put(j, "rope_theta", config_key_json(c, "model.rope_theta"));
        put(j, "rope_scaling", rs);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "rope_scaling");
    }
    if (v5) {
        cJSON *rp = cJSON_CreateObject();
        cJSON_AddStringToObject(rp, "rope_type", s ? field(s, "rope_type")->valuestring : "default");
        cJSON_AddItemToObject(rp, "rope_theta", config_key_json(c, "model.rope_theta"));
        for (const cJSON *e = s ? s->child : NULL; e; e = e->next)
            if (strcmp(e->string, "rope_type") != 0)
                cJSON_AddItemToObject(rp, e->string, cJSON_Duplicate(e, true));
        put(j, "rope_parameters", rp);
    }
    if (field(j, "original_max_position_embeddings") && c->model.rope_original_max_position_embeddings)
        put(j, "original_max_position_embeddings",
            config_key_json(c, "model.rope_scaling.original_max_position_embeddings"));
    cJSON_Delete(s);
}
