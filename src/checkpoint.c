/*
 * checkpoint.c: atomic checkpoints and exact resume (see checkpoint.h).
 */
#define _XOPEN_SOURCE 700
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "safetensors.h"

#define CKPT_FORMAT "infllm-train checkpoint"
#define CKPT_VERSION 1

/* <run_dir>/ckpt */
static void ckpt_root(const struct config *c, char *out, size_t n) {
    snprintf(out, n, "%s/ckpt", c->run_dir);
}

/* ---------------------------------------------------------------------------------------------- */
/* Save                                                                                            */

/* The full fp32 master weights on rank 0 (n_params_padded floats; NULL elsewhere). */
static float *gather_master(struct trainer *tr) {
    const struct adamw *o = &tr->opt;
    const struct grid *g = tr->g;
    float *slice = xmalloc((size_t)o->slice_len * sizeof(float));
    backend_download(&tr->be, slice, o->master, (size_t)o->slice_len * sizeof(float));
    float *full = g->world_rank == 0
                      ? xmalloc((size_t)tr->model.n_params_padded * sizeof(float))
                      : NULL;
    comm_gather(&g->world, full, slice, o->slice_len, COMM_F32, 0);
    free(slice);
    return full;
}

static void write_safetensors(struct st_writer *w, const char *path) {
    char err[1024];
    if (st_writer_finish(w, path, err, sizeof err) != 0) die_user("checkpoint: %s", err);
    st_writer_free(w);
}

static void save_weights(const struct model *m, const float *full, const char *dir) {
    struct st_writer *w = st_writer_new();
    st_writer_meta(w, "format", "pt");
    for (int i = 0; i < m->n_params_entries; i++) {
        const struct param_entry *e = &m->params[i];
        st_writer_add(w, e->name, ST_F32, e->ndim, e->shape, full + e->offset, NULL);
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(w, path);
}

static void save_optimizer(struct trainer *tr, const char *dir) {
    const struct adamw *o = &tr->opt;
    size_t bytes = (size_t)o->slice_len * sizeof(float);
    float *m = xmalloc(bytes), *v = xmalloc(bytes);
    backend_download(&tr->be, m, o->m, bytes);
    backend_download(&tr->be, v, o->v, bytes);
    struct st_writer *w = st_writer_new();
    char num[64];
    snprintf(num, sizeof num, "%lld", (long long)o->slice_start);
    st_writer_meta(w, "slice_start", num);
    snprintf(num, sizeof num, "%lld", (long long)o->slice_len);
    st_writer_meta(w, "slice_len", num);
    int64_t shape[1] = {o->slice_len};
    st_writer_add(w, "exp_avg", ST_F32, 1, shape, m, NULL);
    st_writer_add(w, "exp_avg_sq", ST_F32, 1, shape, v, NULL);
    char path[4400];
    snprintf(path, sizeof path, "%s/optim_%05d.safetensors", dir, tr->g->world_rank);
    write_safetensors(w, path);
    free(m);
    free(v);
}

static void save_state(const struct trainer *tr, const char *dir) {
    const struct config *c = tr->cfg;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "format", CKPT_FORMAT);
    cJSON_AddNumberToObject(s, "version", CKPT_VERSION);
    cJSON_AddNumberToObject(s, "step", (double)tr->step);
    cJSON_AddNumberToObject(s, "tokens_seen",
                            (double)tr->step * c->train.global_batch_size * (double)c->data.seq_len);
    cJSON_AddNumberToObject(s, "optimizer_step", (double)tr->opt.t);
    cJSON_AddNumberToObject(s, "world_size", tr->g->world_size);
    cJSON_AddNumberToObject(s, "cp", tr->g->cp);
    cJSON_AddNumberToObject(s, "dp", tr->g->dp);
    cJSON_AddNumberToObject(s, "n_params", (double)tr->model.n_params);
    cJSON_AddNumberToObject(s, "seed", (double)c->seed);
    char *text = cJSON_Print(s);
    cJSON_Delete(s);
    char path[4400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    write_file_atomic(path, text, strlen(text));
    free(text);
}

/* Step folders step_<N> (complete ones) under root, sorted ascending; returns their count. */
static int list_checkpoints(const char *root, int64_t *steps, int max) {
    DIR *d = opendir(root);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        long long step;
        char tail;
        if (sscanf(e->d_name, "step_%lld%c", &step, &tail) == 1) steps[n++] = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && steps[j] < steps[j - 1]; j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

/* Removes complete checkpoints beyond keep_last (never the newest) and any leftover .tmp folder. */
static void prune(const struct config *c, const char *root, int64_t newest) {
    enum { MAX = 4096 };
    static int64_t steps[MAX];
    int n = list_checkpoints(root, steps, MAX);
    int keep = c->checkpoint.keep_last;
    char path[4400];
    for (int i = 0; keep > 0 && i < n - keep; i++) {
        if (steps[i] == newest) continue;
        snprintf(path, sizeof path, "%s/step_%08lld", root, (long long)steps[i]);
        remove_tree(path);
    }
}

void checkpoint_save(struct trainer *tr) {
    const struct config *c = tr->cfg;
    const struct grid *g = tr->g;
    char root[4096], tmp[4200], final[4200];
    ckpt_root(c, root, sizeof root);
    snprintf(tmp, sizeof tmp, "%s/step_%08lld.tmp", root, (long long)tr->step);
    snprintf(final, sizeof final, "%s/step_%08lld", root, (long long)tr->step);
    double t0 = now_seconds();
    if (g->world_rank == 0) {
        make_dirs(root);
        remove_tree(tmp); /* a crash's leftover */
        make_dirs(tmp);
    }
    comm_barrier(&g->world);
    float *full = gather_master(tr);
    if (g->world_rank == 0) {
        save_weights(&tr->model, full, tmp);
        char *cfg_json = config_to_json(c);
        char path[4400];
        snprintf(path, sizeof path, "%s/train_config.json", tmp);
        write_file_atomic(path, cfg_json, strlen(cfg_json));
        free(cfg_json);
    }
    free(full);
    save_optimizer(tr, tmp);
    comm_barrier(&g->world); /* every rank's files are complete and fsynced */
    if (g->world_rank == 0) {
        save_state(tr, tmp);
        fsync_path(tmp);
        remove_tree(final); /* a checkpoint of the same step from an earlier run */
        if (rename(tmp, final) != 0)
            die_user("checkpoint: cannot rename %s to %s: %s", tmp, final, strerror(errno));
        fsync_path(root);
        char pointer[64], latest[4400];
        int len = snprintf(pointer, sizeof pointer, "step_%08lld\n", (long long)tr->step);
        snprintf(latest, sizeof latest, "%s/latest", root);
        write_file_atomic(latest, pointer, (size_t)len);
        prune(c, root, tr->step);
        log_info(&tr->log, "checkpoint step %lld -> %s (%.1f s)\n", (long long)tr->step, final,
                 now_seconds() - t0);
    }
    comm_barrier(&g->world);
}

/* ---------------------------------------------------------------------------------------------- */
/* Resolve and load                                                                                */

static bool is_checkpoint(const char *dir) {
    char path[4400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    return access(path, R_OK) == 0;
}

bool checkpoint_resolve(const struct config *c, char *out, size_t out_len) {
    if (strcmp(c->resume, "none") == 0) return false;
    if (strcmp(c->resume, "auto") != 0) {
        if (!is_checkpoint(c->resume))
            die_user("resume: %s is not a complete checkpoint folder (no state.json)", c->resume);
        snprintf(out, out_len, "%s", c->resume);
        return true;
    }
    char root[4096], latest[4400];
    ckpt_root(c, root, sizeof root);
    snprintf(latest, sizeof latest, "%s/latest", root);
    size_t len = 0;
    char *name = read_file(latest, &len, false);
    if (!name) return false;
    name[strcspn(name, "\r\n")] = '\0';
    snprintf(out, out_len, "%s/%s", root, name);
    free(name);
    if (!is_checkpoint(out))
        die_user("%s points to %s, which is not a complete checkpoint", latest, out);
    return true;
}

static int64_t json_int(const cJSON *o, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) die_user("%s: \"%s\": expected a number", path, key);
    return (int64_t)v->valuedouble;
}

void checkpoint_read_weights(const struct model *m, const char *dir, float *host) {
    char path[4400], err[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct st_file f;
    if (st_open(&f, path, err, sizeof err) != 0) die_user("%s", err);
    for (int i = 0; i < m->n_params_entries; i++) {
        const struct param_entry *e = &m->params[i];
        const struct st_tensor *t = st_find(&f, e->name);
        if (!t) die_user("%s: tensor \"%s\" is missing", path, e->name);
        bool same = t->ndim == e->ndim && t->shape[0] == e->shape[0] &&
                    (e->ndim == 1 || t->shape[1] == e->shape[1]);
        if (!same)
            die_user("%s: tensor \"%s\" has shape [%lld%s%lld], the config makes it [%lld%s%lld]",
                     path, e->name, (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                     t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)e->shape[0],
                     e->ndim > 1 ? ", " : "", e->ndim > 1 ? (long long)e->shape[1] : 0LL);
        st_read_f32(&f, t, host + e->offset);
    }
    st_close(&f);
}

/* Copies the parts of the old optimizer slices that overlap this rank's slice. */
static void load_optimizer(struct trainer *tr, const char *dir, int old_world) {
    struct adamw *o = &tr->opt;
    int64_t lo = o->slice_start, hi = o->slice_start + o->slice_len;
    if (hi > tr->model.n_params) hi = tr->model.n_params; /* padding has no state */
    size_t bytes = (size_t)o->slice_len * sizeof(float);
    float *m = xcalloc(1, bytes), *v = xcalloc(1, bytes);
    for (int r = 0; r < old_world; r++) {
        char path[4400], err[1024];
        snprintf(path, sizeof path, "%s/optim_%05d.safetensors", dir, r);
        struct st_file f;
        if (st_open(&f, path, err, sizeof err) != 0) die_user("%s", err);
        const char *s0 = st_meta(&f, "slice_start"), *sl = st_meta(&f, "slice_len");
        const struct st_tensor *tm = st_find(&f, "exp_avg"), *tv = st_find(&f, "exp_avg_sq");
        if (!s0 || !sl || !tm || !tv || tm->dtype != ST_F32 || tv->dtype != ST_F32)
            die_user("%s: expected F32 tensors exp_avg, exp_avg_sq and metadata slice_start, "
                     "slice_len", path);
        int64_t start = atoll(s0), len = atoll(sl);
        if (tm->numel != len || tv->numel != len)
            die_user("%s: exp_avg has %lld elements, metadata slice_len says %lld", path,
                     (long long)tm->numel, (long long)len);
        int64_t a = start > lo ? start : lo, b = start + len < hi ? start + len : hi;
        if (a < b) {
            /* st_data is byte-aligned only: copy bytes, never cast to float. */
            const char *sm = st_data(&f, tm), *sv = st_data(&f, tv);
            memcpy(m + (a - lo), sm + (size_t)(a - start) * 4, (size_t)(b - a) * sizeof(float));
            memcpy(v + (a - lo), sv + (size_t)(a - start) * 4, (size_t)(b - a) * sizeof(float));
        }
        st_close(&f);
    }
    backend_upload(&tr->be, o->m, m, bytes);
    backend_upload(&tr->be, o->v, v, bytes);
    free(m);
    free(v);
}

void checkpoint_load(struct trainer *tr, const char *dir) {
    struct model *mdl = &tr->model;
    char path[4400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    size_t len = 0;
    char *text = read_file(path, &len, true);
    cJSON *s = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(s)) die_user("%s: not a JSON object", path);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, CKPT_FORMAT) != 0)
        die_user("%s: \"format\" is not \"%s\"", path, CKPT_FORMAT);
    if (json_int(s, "version", path) != CKPT_VERSION)
        die_user("%s: version %lld, this build reads version %d", path,
                 (long long)json_int(s, "version", path), CKPT_VERSION);
    int64_t step = json_int(s, "step", path);
    int64_t opt_step = json_int(s, "optimizer_step", path);
    int old_world = (int)json_int(s, "world_size", path);
    int64_t n_params = json_int(s, "n_params", path);
    cJSON_Delete(s);
    free(text);
    float *host = xcalloc((size_t)mdl->n_params_padded, sizeof(float));
    checkpoint_read_weights(mdl, dir, host); /* names the first tensor whose shape disagrees */
    if (n_params != mdl->n_params)
        die_user("%s: the checkpoint has %lld parameters, the config's model %lld", path,
                 (long long)n_params, (long long)mdl->n_params);
    backend_upload_act(&tr->be, mdl->param_buf, host, mdl->n_params_padded);
    backend_upload(&tr->be, tr->opt.master, host + tr->opt.slice_start,
                   (size_t)tr->opt.slice_len * sizeof(float));
    free(host);
    load_optimizer(tr, dir, old_world);
    tr->opt.t = opt_step;
    tr->step = step;
    log_info(&tr->log, "resumed from %s: step %lld, %d rank(s) then, %d now\n", dir,
             (long long)step, old_world, tr->g->world_size);
}
