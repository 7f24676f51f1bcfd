/*
 * config_keys.h: the key table of the config, private to config_table.c (the table), config.c
 * (loading), config_validate.c (rules) and config_output.c (JSON, start-up table, documentation).
 */
#ifndef INFLLM_CONFIG_KEYS_H
#define INFLLM_CONFIG_KEYS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "check.h"
#include "config.h"

enum key_type {
    KT_INT,     /* int */
    KT_INT64,   /* int64_t */
    KT_U64,     /* uint64_t (seed) */
    KT_DOUBLE,  /* double */
    KT_BOOL,    /* bool */
    KT_STRING,  /* char[cap] */
    KT_ENUM,    /* an enum stored as int; names[value] */
    KT_STRLIST, /* struct string_list */
    KT_NUMLIST, /* struct float_list */
};

struct key_desc {
    const char *path;          /* dotted key path, e.g. "model.hidden_size" */
    enum key_type type;
    size_t offset;             /* of the field in struct config */
    const char *def;           /* default, JSON text */
    double min, max;           /* numeric bounds (KT_INT, KT_INT64, KT_U64, KT_DOUBLE) */
    bool min_open, max_open;   /* bound excluded (KT_DOUBLE only) */
    const char *const *names;  /* KT_ENUM: value names, NULL-terminated */
    size_t cap;                /* KT_STRING: capacity of the field, NUL included */
    const char *doc;           /* meaning, unit, constraints: one line */
};

/* Every key, and their count. */
extern const struct key_desc config_keys[];
extern const int config_nkeys;

/* The cross-key rules config_validate enforces, one sentence each (for the documentation),
 * NULL-terminated. */
extern const char *const config_rules[];

/* The offset of a field of struct config, as a table row names it (the key table, the RoPE rules). */
#define KEY_FIELD(field) offsetof(struct config, field)

/* What key k expects, in words ("an integer in [1, 2147483647]", ...); show_max adds the bound. */
void config_describe(const struct key_desc *k, bool show_max, char *buf, size_t n);

/* Whether values of type t are integers (KT_INT, KT_INT64, KT_U64). */
bool config_integer_type(enum key_type t);

/* Key k's value in c as JSON (numbers exact: they read back as the same double); the caller frees
 * it with cJSON_Delete. */
cJSON *config_value_json(const struct config *c, const struct key_desc *k);

/* The same as compact JSON text (exact numbers: equal texts are equal values); the caller frees it
 * with free(). */
char *config_value_text(const struct config *c, const struct key_desc *k);

/* The size rules of config_validate (config_sizes.c), for a config whose other rules hold (head_dim
 * derived): 0 when every size the config makes fits what holds it, else -1 with the key to blame
 * in key (size kn) and what is wrong in msg (size mn). */
int config_check_sizes(const struct config *c, char *key, size_t kn, char *msg, size_t mn);

/* Dies (die_user, exit 2) with "<file>: <key>: <message>", naming the imported config.json and its
 * member when the key came from one (config_import), else our config file. */
void config_bad(const struct config *c, const char *key, const char *fmt, ...) INFLLM_PRINTF(3, 4)
    INFLLM_NORETURN;

/* The name of a rope type ("" for plain RoPE), as config files write it. */
const char *config_rope_type_name(enum rope_type t);

/* Appends printf output to buf (of size n). */
void config_append(char *buf, size_t n, const char *fmt, ...) INFLLM_PRINTF(3, 4);

#endif
