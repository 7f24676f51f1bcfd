/*
 * checkpoint_state.c: state.json, the `latest` pointer and the step folders (see
 * checkpoint_state.h).
 */
#define _XOPEN_SOURCE 700
#include "checkpoint_state.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "checked.h"
#include "fsutil.h"

#define CKPT_INT_MAX 9007199254740992.0 /* 2^53: the largest integer a JSON number holds exactly */
#define CKPT_CHECKSUM_KEY "\"checksum\""

static int st_err(char *err, size_t n, const char *fmt, ...) INFLLM_PRINTF(3, 4);
static int st_err(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

void ckpt_hex64(char out[17], uint64_t h) { snprintf(out, 17, "%016llx", (unsigned long long)h); }

static bool parse_hex64(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

bool ckpt_step_of(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5) != 0 || name[5] == '\0') return false;
    int64_t v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (*p - '0');
    }
    *step = v;
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* Write                                                                                           */

static cJSON *file_table(const struct ckpt_state *s) {
    cJSON *files = cJSON_CreateObject();
    for (int i = 0; i < s->n_files; i++) {
        char hex[17];
        ckpt_hex64(hex, s->files[i].xxh64);
        cJSON *f = cJSON_AddObjectToObject(files, s->files[i].name);
        cJSON_AddNumberToObject(f, "bytes", (double)s->files[i].bytes);
        cJSON_AddStringToObject(f, "xxh64", hex);
    }
    return files;
}

/* The position of the 16 checksum digits in text, or NULL. */
static char *checksum_digits(char *text) {
    char *k = NULL;
    for (char *p = strstr(text, CKPT_CHECKSUM_KEY); p; p = strstr(p + 1, CKPT_CHECKSUM_KEY)) k = p;
    if (!k) return NULL;
    k += strlen(CKPT_CHECKSUM_KEY);
    while (*k == ' ' || *k == '\t' || *k == ':') k++;
    if (*k != '"' || strlen(k) < 18 || k[17] != '"') return NULL;
    return k + 1;
}

void ckpt_state_write(const char *dir, const struct ckpt_state *s) {
    cJSON *j = cJSON_CreateObject();
    char hex[17];
    cJSON_AddStringToObject(j, "format", CKPT_FORMAT);
    cJSON_AddNumberToObject(j, "version", CKPT_VERSION);
    cJSON_AddNumberToObject(j, "step", (double)s->step);
    cJSON_AddNumberToObject(j, "tokens_seen", (double)s->tokens_seen);
    cJSON_AddNumberToObject(j, "global_batch_size", (double)s->global_batch);
    cJSON_AddNumberToObject(j, "optimizer_step", (double)s->optimizer_step);
    cJSON_AddNumberToObject(j, "world_size", s->world_size);
    cJSON_AddNumberToObject(j, "cp", s->cp);
    cJSON_AddNumberToObject(j, "dp", s->dp);
    cJSON_AddNumberToObject(j, "n_params", (double)s->n_params);
    cJSON_AddNumberToObject(j, "seed", (double)s->seed);
    ckpt_hex64(hex, s->run_id);
    cJSON_AddStringToObject(j, "run_id", hex);
    cJSON_AddNumberToObject(j, "loss_ema", s->loss_ema);
    cJSON_AddNumberToObject(j, "loss_ema_steps", (double)s->loss_ema_steps);
    if (s->has_data) {
        cJSON_AddNumberToObject(j, "data_windows", (double)s->data_windows);
        ckpt_hex64(hex, s->data_digest);
        cJSON_AddStringToObject(j, "data_digest", hex);
    }
    cJSON_AddItemToObject(j, "files", file_table(s));
    cJSON_AddStringToObject(j, "checksum", "0000000000000000");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    memcpy(text + n, "\n", 2);
    char *digits = checksum_digits(text);
    CHECK(digits != NULL);
    ckpt_hex64(hex, xxh64(text, n + 1, 0));
    memcpy(digits, hex, 16);
    char path[4400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    write_file_atomic(path, text, n + 1);
    free(text);
}

/* ---------------------------------------------------------------------------------------------- */
/* Read                                                                                            */

/* An integer field in [lo, hi]; -1 with the reason in err. */
static int get_int(const cJSON *o, const char *key, double lo, double hi, int64_t *out,
                   const char *path, char *err, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return st_err(err, n, "%s: \"%s\" is missing", path, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return st_err(err, n, "%s: \"%s\": expected an integer", path, key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return st_err(err, n, "%s: \"%s\" is %.17g, expected %.0f .. %.0f", path, key,
                      v->valuedouble, lo, hi);
    *out = (int64_t)v->valuedouble;
    return 0;
}

/* The checksum of a version-2 text: present and equal to the hash of the zeroed text. */
static int check_self(char *text, size_t len, const char *path, char *err, size_t n) {
    char *digits = checksum_digits(text);
    if (!digits) return st_err(err, n, "%s: no \"checksum\" of 16 hex digits", path);
    char saved[17];
    memcpy(saved, digits, 16);
    saved[16] = '\0';
    uint64_t want;
    if (!parse_hex64(saved, &want)) return st_err(err, n, "%s: \"checksum\" is not 16 hex digits", path);
    memset(digits, '0', 16);
    uint64_t got = xxh64(text, len, 0);
    memcpy(digits, saved, 16);
    if (got != want)
        return st_err(err, n, "%s: checksum mismatch (recorded %s, computed %016llx): the file is "
                      "corrupt", path, saved, (unsigned long long)got);
    return 0;
}

/* The name of optimizer file r. */
static void optim_name(char *out, size_t n, int r) { snprintf(out, n, "optim_%05d.safetensors", r); }

static bool expected_file(const struct ckpt_state *s, const char *name) {
    if (strcmp(name, "model.safetensors") == 0 || strcmp(name, "train_config.json") == 0) return true;
    int r;
    char tail;
    if (sscanf(name, "optim_%5d.safetensors%c", &r, &tail) != 1 || r < 0 || r >= s->world_size)
        return false;
    char want[CKPT_NAME_MAX];
    optim_name(want, sizeof want, r);
    return strcmp(want, name) == 0;
}

/* The version-2 file table: exactly model.safetensors, train_config.json and world_size optimizer
 * files, each with an integer size and a 16-digit hash. */
static int read_files(const cJSON *j, struct ckpt_state *s, const char *path, char *err, size_t n) {
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(j, "files");
    if (!cJSON_IsObject(files)) return st_err(err, n, "%s: \"files\": expected an object", path);
    int count = cJSON_GetArraySize(files);
    if (count != s->world_size + 2)
        return st_err(err, n, "%s: \"files\" lists %d files, expected %d (model, config and one "
                      "optimizer file per rank of world_size %d)", path, count, s->world_size + 2,
                      s->world_size);
    s->files = xcalloc((size_t)count, sizeof *s->files);
    const cJSON *f;
    cJSON_ArrayForEach(f, files) {
        if (!expected_file(s, f->string) || ckpt_state_file(s, f->string))
            return st_err(err, n, "%s: \"files\": unexpected or repeated entry \"%s\"", path,
                          f->string);
        struct ckpt_file *e = &s->files[s->n_files++];
        snprintf(e->name, sizeof e->name, "%s", f->string);
        int64_t bytes;
        if (get_int(f, "bytes", 0, CKPT_INT_MAX, &bytes, path, err, n) != 0) return -1;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(f, "xxh64");
        if (!cJSON_IsString(h) || !parse_hex64(h->valuestring, &e->xxh64))
            return st_err(err, n, "%s: \"files\".\"%s\".\"xxh64\": expected 16 hex digits", path,
                          e->name);
        e->bytes = (uint64_t)bytes;
    }
    return 0;
}

/* Cross-field rules and the folder's name. */
static int check_relations(const struct ckpt_state *s, const char *dir, const char *path, char *err,
                           size_t n) {
    if (s->optimizer_step != s->step)
        return st_err(err, n, "%s: \"optimizer_step\" is %lld but \"step\" is %lld: they advance "
                      "together", path, (long long)s->optimizer_step, (long long)s->step);
    if ((int64_t)s->cp * s->dp != s->world_size)
        return st_err(err, n, "%s: cp %d x dp %d is not world_size %d", path, s->cp, s->dp,
                      s->world_size);
    if (s->data_cursor >= 0 && s->global_batch > 0 &&
        s->data_cursor != sat_mul(s->step, s->global_batch)) /* both up to 2^53: no wrap */
        return st_err(err, n, "%s: \"data_cursor\" is %lld, expected step %lld x global_batch_size "
                      "%lld", path, (long long)s->data_cursor, (long long)s->step,
                      (long long)s->global_batch);
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    int64_t named;
    if (ckpt_step_of(base, &named) && named != s->step)
        return st_err(err, n, "%s: \"step\" is %lld but the folder is %s", path, (long long)s->step,
                      base);
    return 0;
}

/* The training shards' fingerprint: both fields or neither (older checkpoints, the synthetic
 * source). */
static int read_data(const cJSON *j, struct ckpt_state *s, const char *path, char *err, size_t n) {
    const cJSON *windows = cJSON_GetObjectItemCaseSensitive(j, "data_windows");
    const cJSON *digest = cJSON_GetObjectItemCaseSensitive(j, "data_digest");
    if (!windows && !digest) return 0;
    if (!windows || !digest)
        return st_err(err, n, "%s: \"%s\" without \"%s\": expected both or neither", path,
                      windows ? "data_windows" : "data_digest",
                      windows ? "data_digest" : "data_windows");
    if (get_int(j, "data_windows", 0, CKPT_INT_MAX, &s->data_windows, path, err, n) != 0) return -1;
    if (!cJSON_IsString(digest) || !parse_hex64(digest->valuestring, &s->data_digest))
        return st_err(err, n, "%s: \"data_digest\": expected 16 hex digits", path);
    s->has_data = true;
    return 0;
}

/* Fields of every version. */
static int read_fields(const cJSON *j, struct ckpt_state *s, const char *path, char *err, size_t n) {
    int64_t world = 0, cp = 0, dp = 0;
    if (get_int(j, "step", 1, CKPT_INT_MAX, &s->step, path, err, n) != 0 ||
        get_int(j, "optimizer_step", 1, CKPT_INT_MAX, &s->optimizer_step, path, err, n) != 0 ||
        (cJSON_GetObjectItemCaseSensitive(j, "data_cursor") &&
         get_int(j, "data_cursor", 0, CKPT_INT_MAX, &s->data_cursor, path, err, n) != 0) ||
        get_int(j, "n_params", 1, CKPT_INT_MAX, &s->n_params, path, err, n) != 0 ||
        get_int(j, "seed", 0, CKPT_INT_MAX, &s->seed, path, err, n) != 0 ||
        get_int(j, "world_size", 1, CKPT_MAX_WORLD, &world, path, err, n) != 0 ||
        get_int(j, "cp", 1, CKPT_MAX_WORLD, &cp, path, err, n) != 0 ||
        get_int(j, "dp", 1, CKPT_MAX_WORLD, &dp, path, err, n) != 0)
        return -1;
    s->world_size = (int)world, s->cp = (int)cp, s->dp = (int)dp;
    if (s->version == 1) return 0;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "run_id");
    if (!cJSON_IsString(id) || !parse_hex64(id->valuestring, &s->run_id))
        return st_err(err, n, "%s: \"run_id\": expected 16 hex digits", path);
    const cJSON *ema = cJSON_GetObjectItemCaseSensitive(j, "loss_ema");
    if (!cJSON_IsNumber(ema) || !isfinite(ema->valuedouble) || ema->valuedouble < 0)
        return st_err(err, n, "%s: \"loss_ema\": expected a finite number >= 0", path);
    s->loss_ema = ema->valuedouble;
    if (get_int(j, "loss_ema_steps", 0, CKPT_INT_MAX, &s->loss_ema_steps, path, err, n) != 0 ||
        get_int(j, "global_batch_size", 1, CKPT_INT_MAX, &s->global_batch, path, err, n) != 0 ||
        read_data(j, s, path, err, n) != 0)
        return -1;
    return read_files(j, s, path, err, n);
}

int ckpt_state_read(const char *dir, struct ckpt_state *s, char *err, size_t err_len) {
    memset(s, 0, sizeof *s);
    s->data_cursor = -1;
    char path[4400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read(path, FS_TEXT_MAX, &text, &len, err, err_len);
    if (rc == 1) return st_err(err, err_len, "%s: missing (an incomplete checkpoint)", path);
    if (rc != 0) return -1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    rc = -1;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    int64_t version = 0;
    if (!cJSON_IsObject(j))
        st_err(err, err_len, "%s: not a JSON object", path);
    else if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, CKPT_FORMAT) != 0)
        st_err(err, err_len, "%s: \"format\" is not \"%s\"", path, CKPT_FORMAT);
    else if (get_int(j, "version", 1, CKPT_VERSION, &version, path, err, err_len) != 0)
        ; /* err set */
    else if ((s->version = (int)version) >= 2 && check_self(text, len, path, err, err_len) != 0)
        ; /* err set */
    else if (read_fields(j, s, path, err, err_len) == 0 &&
             check_relations(s, dir, path, err, err_len) == 0)
        rc = 0;
    cJSON_Delete(j);
    free(text);
    if (rc != 0) ckpt_state_free(s);
    return rc;
}

void ckpt_state_free(struct ckpt_state *s) {
    free(s->files);
    s->files = NULL;
    s->n_files = 0;
}

const struct ckpt_file *ckpt_state_file(const struct ckpt_state *s, const char *name) {
    for (int i = 0; i < s->n_files; i++)
        if (strcmp(s->files[i].name, name) == 0) return &s->files[i];
    return NULL;
}

int ckpt_verify_files(const char *dir, const struct ckpt_state *s, int rank, int world,
                      double *bytes, char *err, size_t err_len) {
    for (int i = rank; i < s->n_files; i += world) {
        const struct ckpt_file *f = &s->files[i];
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, f->name);
        struct stat st;
        if (stat(path, &st) != 0)
            return st_err(err, err_len, "%s: missing: %s", path, strerror(errno));
        if (S_ISREG(st.st_mode) && (uint64_t)st.st_size != f->bytes)
            return st_err(err, err_len, "%s: %lld bytes, state.json records %llu: the file is "
                          "truncated or corrupt", path, (long long)st.st_size,
                          (unsigned long long)f->bytes);
        uint64_t h = 0, got = 0;
        if (fs_hash_file(path, &h, &got, err, err_len) != 0) return -1;
        *bytes += (double)got;
        if (got != f->bytes || h != f->xxh64)
            return st_err(err, err_len, "%s: xxh64 %016llx, state.json records %016llx: the file "
                          "is corrupt", path, (unsigned long long)h,
                          (unsigned long long)f->xxh64);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The pointer and the folder list                                                                 */

int ckpt_read_latest(const char *latest, char *name, size_t name_len, char *err, size_t err_len) {
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read(latest, 4096, &text, &len, err, err_len);
    if (rc != 0) return rc;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    int64_t step;
    rc = 0;
    if (strlen(text) != len)
        rc = st_err(err, err_len, "%s: holds a NUL byte, expected a folder name", latest);
    else if (text[0] == '/' || strchr(text, '/') || strcmp(text, "..") == 0 || strcmp(text, ".") == 0) {
        st_err(err, err_len, "%s: names \"%.200s\", outside the folder it is in; it must name a "
               "step_<N> folder beside it", latest, text);
        rc = -2;
    }
    else if (!ckpt_step_of(text, &step) || len >= name_len)
        rc = st_err(err, err_len, "%s: holds \"%.60s\", expected a step_<N> folder name", latest,
                    text);
    else
        snprintf(name, name_len, "%s", text);
    free(text);
    return rc;
}

int ckpt_list(const char *root, char (*names)[CKPT_NAME_MAX], int64_t *steps, int max) {
    DIR *d = opendir(root);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        int64_t step;
        char path[4400];
        if (!ckpt_step_of(e->d_name, &step) || strlen(e->d_name) >= CKPT_NAME_MAX) continue;
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        if (!fs_is_dir(path)) continue;
        snprintf(names[n], CKPT_NAME_MAX, "%s", e->d_name);
        steps[n++] = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* newest first; a tie (step_5, step_05) keeps name order stable */
        for (int j = i; j > 0 && (steps[j] > steps[j - 1] ||
                                  (steps[j] == steps[j - 1] && strcmp(names[j], names[j - 1]) < 0));
             j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
            char tmp[CKPT_NAME_MAX];
            memcpy(tmp, names[j], CKPT_NAME_MAX);
            memcpy(names[j], names[j - 1], CKPT_NAME_MAX);
            memcpy(names[j - 1], tmp, CKPT_NAME_MAX);
        }
    return n;
}
