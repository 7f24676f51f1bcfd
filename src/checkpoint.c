/*
 * checkpoint.c: atomic, verified checkpoints and exact resume (see checkpoint.h; state.json and the
 * folder names live in checkpoint_state.c).
 *
 * Legend: P n_params, Pp n_params_padded, S this rank's slice (slice_len elements from
 * slice_start), W world size.
 */
#define _XOPEN_SOURCE 700
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "checked.h"
#include "checkpoint_state.h"
#include "fsutil.h"
#include "safetensors.h"

#define CKPT_MSG 512          /* one rank's reason, gathered to rank 0 */
#define CKPT_MAX_LIST 4096    /* step folders looked at */

/* <run_dir>/ckpt */
static void ckpt_root(const struct config *c, char *out, size_t n) {
    snprintf(out, n, "%s/ckpt", c->run_dir);
}

/* The first element that is not finite (or negative, with nonneg), or -1. */
static int64_t first_bad(const float *x, int64_t n, bool nonneg) {
    int64_t bad = n;
#pragma omp parallel for reduction(min : bad) schedule(static) if (n > (1 << 20))
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || (nonneg && x[i] < 0.0f)) bad = i < bad ? i : bad;
    return bad < n ? bad : -1;
}

/* The tensor holding flat element `off` ("padding" past the last one). */
static const char *param_at(const struct model *m, int64_t off) {
    for (int i = 0; i < m->n_params_entries; i++)
        if (off >= m->params[i].offset && off < m->params[i].offset + m->params[i].numel)
            return m->params[i].name;
    return "padding";
}

/* Outcome of a load step on one rank; `agree` makes it the same on every rank. */
enum ck_status { CK_OK = 0, CK_BAD = 1, CK_INCOMPATIBLE = 2 };
struct ck_result {
    int status;
    char msg[CKPT_MSG];
};

static int set_result(struct ck_result *r, int status, const char *fmt, ...) INFLLM_PRINTF(3, 4);
static int set_result(struct ck_result *r, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->status = status;
    return status;
}

/* The worst status of all ranks, with (on rank 0) the reason of the first rank that has it. */
static void agree(const struct grid *g, struct ck_result *r) {
    int32_t worst = r->status;
    comm_allreduce(&g->world, &worst, 1, COMM_I32, COMM_MAX);
    if (worst == CK_OK) return;
    char mine[CKPT_MSG] = "";
    if (r->status == worst) memcpy(mine, r->msg, sizeof mine);
    mine[CKPT_MSG - 1] = '\0';
    char *all = g->world_rank == 0 ? xcalloc((size_t)g->world_size, CKPT_MSG) : NULL;
    comm_gather(&g->world, all, mine, CKPT_MSG, COMM_U8, 0);
    if (all) {
        for (int i = 0; i < g->world_size; i++)
            if (all[(size_t)i * CKPT_MSG]) {
                memcpy(r->msg, all + (size_t)i * CKPT_MSG, CKPT_MSG);
                break;
            }
        free(all);
    }
    r->status = worst;
}

/* A user error printed once (rank 0) that ends every rank. */
static void die_all(const struct grid *g, const char *msg) INFLLM_NORETURN;
static void die_all(const struct grid *g, const char *msg) {
    if (g->world_rank == 0) die_user("%s", msg);
    comm_barrier(&g->world); /* rank 0's abort ends this rank here */
    infllm_exit(EXIT_CODE_USER);
}

/* ---------------------------------------------------------------------------------------------- */
/* Save                                                                                            */

/* The full fp32 master weights on rank 0 (Pp floats; NULL elsewhere). */
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

/* Weights (rank 0) and this rank's moments must be finite (second moments >= 0): a diverged
 * run stops here, with the tmp folder removed, before anything of it is saved. */
static void refuse_non_finite(struct trainer *tr, const float *full, const float *m, const float *v,
                              const char *tmp) {
    const struct model *mdl = &tr->model;
    const struct adamw *o = &tr->opt;
    struct ck_result r = {0};
    int64_t valid = o->slice_start + o->slice_len > mdl->n_params
                        ? (mdl->n_params > o->slice_start ? mdl->n_params - o->slice_start : 0)
                        : o->slice_len;
    int64_t i;
    if (full && (i = first_bad(full, mdl->n_params, false)) >= 0)
        set_result(&r, CK_BAD, "weight %lld (in %s) is %g", (long long)i, param_at(mdl, i), full[i]);
    else if ((i = first_bad(m, valid, false)) >= 0)
        set_result(&r, CK_BAD, "first moment of %s is %g", param_at(mdl, o->slice_start + i), m[i]);
    else if ((i = first_bad(v, valid, true)) >= 0)
        set_result(&r, CK_BAD, "second moment of %s is %g", param_at(mdl, o->slice_start + i), v[i]);
    agree(tr->g, &r);
    if (r.status == CK_OK) return;
    if (tr->g->world_rank == 0) {
        remove_tree(tmp);
        fprintf(stderr, "error: step %lld: %s: training diverged; no checkpoint is written for this "
                "step and the earlier ones are kept (lower train.lr, raise train.warmup_steps, or "
                "set train.guard.loss_spike to stop sooner)\n", (long long)tr->step, r.msg);
    }
    comm_barrier(&tr->g->world);
    infllm_exit(EXIT_CODE_DIVERGED);
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

static void save_optimizer(const struct trainer *tr, const float *m, const float *v, const char *dir) {
    const struct adamw *o = &tr->opt;
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
}

/* Size and hash of <dir>/<name> into f (the file was just written: read back from the cache). */
static void hash_into(struct ckpt_file *f, const char *dir, const char *name) {
    char path[4400], err[4600];
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (fs_hash_file(path, &f->xxh64, &f->bytes, err, sizeof err) != 0) die_user("checkpoint: %s", err);
}

/* state.json from the trainer; files: the W + 2 hashed files. */
static void save_state(const struct trainer *tr, const char *dir, struct ckpt_file *files) {
    const struct config *c = tr->cfg;
    struct ckpt_state s = {
        .version = CKPT_VERSION,
        .step = tr->step,
        .optimizer_step = tr->opt.t,
        .tokens_seen = size_mul3(tr->step, c->train.global_batch_size, c->data.seq_len),
        .global_batch = c->train.global_batch_size,
        .n_params = tr->model.n_params,
        .seed = (int64_t)c->seed,
        .world_size = tr->g->world_size,
        .cp = tr->g->cp,
        .dp = tr->g->dp,
        .run_id = tr->run_id,
        .loss_ema = tr->loss_ema,
        .loss_ema_steps = tr->loss_ema_steps,
        .has_data = c->data.source == DATA_SOURCE_SHARDS,
        .data_windows = loader_epoch_size(&tr->train_data),
        .data_digest = loader_digest(&tr->train_data),
        .n_files = tr->g->world_size + 2,
        .files = files,
    };
    ckpt_state_write(dir, &s);
}

/* Renames an existing `path` aside to <path>.replaced-<time>[-k]: nothing is ever overwritten. */
static void move_aside(const char *path, const struct logger *log) {
    char aside[4600], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    for (int k = 0;; k++) {
        if (k == 0)
            snprintf(aside, sizeof aside, "%s.replaced-%s", path, stamp);
        else
            snprintf(aside, sizeof aside, "%s.replaced-%s-%d", path, stamp, k);
        if (!fs_exists(aside)) break;
    }
    if (rename(path, aside) != 0)
        die_user("%s: cannot move aside to %s: %s", path, aside, strerror(errno));
    log_info(log, "kept %s: moved aside to %s (nothing is deleted)\n", path, aside);
}

/* Removes this lineage's checkpoints older than `step` beyond checkpoint.keep_last (which counts
 * the new one). Folders of other runs, newer ones and unreadable ones are never touched. */
static void prune(const struct trainer *tr, const char *root, int64_t step) {
    int keep = tr->cfg->checkpoint.keep_last;
    if (keep <= 0) return;
    char(*names)[CKPT_NAME_MAX] = xmalloc(CKPT_MAX_LIST * sizeof *names);
    int64_t *steps = xmalloc(CKPT_MAX_LIST * sizeof *steps);
    int n = ckpt_list(root, names, steps, CKPT_MAX_LIST), kept = 1;
    for (int i = 0; i < n; i++) {
        if (steps[i] >= step) continue;
        char dir[4400], err[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        struct ckpt_state s;
        if (ckpt_state_read(dir, &s, err, sizeof err) != 0) continue;
        bool ours = s.version >= 2 && s.run_id == tr->run_id;
        ckpt_state_free(&s);
        if (!ours) continue;
        if (kept < keep)
            kept++;
        else
            remove_tree(dir);
    }
    free(names);
    free(steps);
}

/* Rank 0, after every rank's files are complete: state.json, the rename, the pointer, pruning. */
static void publish(struct trainer *tr, const char *root, const char *tmp, const char *final,
                    struct ckpt_file *files) {
    save_state(tr, tmp, files);
    fsync_path(tmp);
    if (fs_exists(final)) move_aside(final, &tr->log);
    if (rename(tmp, final) != 0)
        die_user("checkpoint: cannot rename %s to %s: %s", tmp, final, strerror(errno));
    fsync_path(root);
    char pointer[64], latest[4400];
    const char *base = strrchr(final, '/') + 1;
    int len = snprintf(pointer, sizeof pointer, "%s\n", base);
    snprintf(latest, sizeof latest, "%s/latest", root);
    struct stat st;
    if (lstat(latest, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
        move_aside(latest, &tr->log); /* a folder or a FIFO where the pointer goes: kept, not used */
    write_file_atomic(latest, pointer, (size_t)len);
    prune(tr, root, tr->step);
}

void checkpoint_save(struct trainer *tr) {
    const struct config *c = tr->cfg;
    const struct grid *g = tr->g;
    const struct adamw *o = &tr->opt;
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
    size_t bytes = (size_t)o->slice_len * sizeof(float);
    float *full = gather_master(tr), *m = xmalloc(bytes), *v = xmalloc(bytes);
    backend_download(&tr->be, m, o->m, bytes);
    backend_download(&tr->be, v, o->v, bytes);
    refuse_non_finite(tr, full, m, v, tmp);
    if (g->world_rank == 0) {
        save_weights(&tr->model, full, tmp);
        char *cfg_json = config_to_json(c);
        char path[4400];
        snprintf(path, sizeof path, "%s/train_config.json", tmp);
        write_file_atomic(path, cfg_json, strlen(cfg_json));
        free(cfg_json);
    }
    free(full);
    save_optimizer(tr, m, v, tmp);
    free(m);
    free(v);
    double t_write = now_seconds();
    struct ckpt_file mine;
    char name[CKPT_NAME_MAX];
    snprintf(name, sizeof name, "optim_%05d.safetensors", g->world_rank);
    hash_into(&mine, tmp, name);
    struct ckpt_file *files = g->world_rank == 0 ? xcalloc((size_t)g->world_size + 2, sizeof *files)
                                                 : NULL;
    comm_gather(&g->world, files ? files + 2 : NULL, &mine, sizeof mine, COMM_U8, 0);
    if (g->world_rank == 0) { /* every rank's files are complete, fsynced and hashed */
        hash_into(&files[0], tmp, "model.safetensors");
        hash_into(&files[1], tmp, "train_config.json");
        double t_hash = now_seconds(), total = 0;
        for (int i = 0; i < g->world_size + 2; i++) total += (double)files[i].bytes;
        publish(tr, root, tmp, final, files);
        char size[32];
        format_count(size, sizeof size, total);
        log_info(&tr->log, "checkpoint step %lld -> %s (%sB in %.2f s: write %.2f s, hash %.2f s)\n",
                 (long long)tr->step, final, size, now_seconds() - t0, t_write - t0,
                 t_hash - t_write);
        free(files);
    }
    comm_barrier(&g->world);
}

/* ---------------------------------------------------------------------------------------------- */
/* Load                                                                                            */

/* Reads and checks every weight into host (Pp floats). Tensors absent or of another shape:
 * incompatible with the config; unreadable, not F32 or not finite: a bad checkpoint. */
static int read_weights(const struct model *m, const char *dir, float *host, struct ck_result *r) {
    char path[4400], err[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct st_file f;
    if (st_open(&f, path, err, sizeof err) != 0) return set_result(r, CK_BAD, "%s", err);
    for (int i = 0; i < m->n_params_entries && r->status == CK_OK; i++) {
        const struct param_entry *e = &m->params[i];
        const struct st_tensor *t = st_find(&f, e->name);
        int64_t k;
        if (!t) {
            set_result(r, CK_INCOMPATIBLE, "%s: tensor \"%s\" is missing", path, e->name);
        } else if (t->ndim != e->ndim || t->shape[0] != e->shape[0] ||
                   (e->ndim > 1 && t->shape[1] != e->shape[1])) {
            set_result(r, CK_INCOMPATIBLE, "%s: tensor \"%s\" has shape [%lld%s%lld], the config "
                       "makes it [%lld%s%lld]", path, e->name, (long long)t->shape[0],
                       t->ndim > 1 ? ", " : "", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                       (long long)e->shape[0], e->ndim > 1 ? ", " : "",
                       e->ndim > 1 ? (long long)e->shape[1] : 0LL);
        } else if (t->dtype != ST_F32) {
            set_result(r, CK_BAD, "%s: tensor \"%s\" is %s, a checkpoint holds F32", path, e->name,
                       st_dtype_name(t->dtype));
        } else {
            st_read_f32(&f, t, host + e->offset);
            if ((k = first_bad(host + e->offset, e->numel, false)) >= 0)
                set_result(r, CK_BAD, "%s: tensor \"%s\" element %lld is %g", path, e->name,
                           (long long)k, host[e->offset + k]);
        }
    }
    st_close(&f);
    return r->status;
}

/* A decimal metadata value of an optimizer file, or -1. */
static int64_t meta_int(const struct st_file *f, const char *key) {
    const char *s = st_meta(f, key);
    if (!s || !*s || strlen(s) > 15) return -1;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* One old optimizer file: its slice must start at *next; copies what overlaps [lo, hi). */
static int read_optim_file(const char *path, int64_t *next, int64_t lo, int64_t hi, float *m,
                           float *v, struct ck_result *r) {
    char err[1024];
    struct st_file f;
    if (st_open(&f, path, err, sizeof err) != 0) return set_result(r, CK_BAD, "%s", err);
    int64_t start = meta_int(&f, "slice_start"), len = meta_int(&f, "slice_len");
    const struct st_tensor *tm = st_find(&f, "exp_avg"), *tv = st_find(&f, "exp_avg_sq");
    if (!tm || !tv || tm->dtype != ST_F32 || tv->dtype != ST_F32 || start < 0 || len <= 0)
        set_result(r, CK_BAD, "%s: expected F32 tensors exp_avg, exp_avg_sq and decimal metadata "
                   "slice_start, slice_len > 0", path);
    else if (tm->numel != len || tv->numel != len)
        set_result(r, CK_BAD, "%s: exp_avg has %lld elements, metadata slice_len says %lld", path,
                   (long long)tm->numel, (long long)len);
    else if (start != *next)
        set_result(r, CK_BAD, "%s: slice_start is %lld, the slices before it end at %lld", path,
                   (long long)start, (long long)*next);
    if (r->status == CK_OK) {
        int64_t a = start > lo ? start : lo, b = start + len < hi ? start + len : hi;
        if (a < b) { /* st_data is byte-aligned only: copy bytes, never cast to float */
            const char *sm = st_data(&f, tm), *sv = st_data(&f, tv);
            memcpy(m + (a - lo), sm + (size_t)(a - start) * 4, (size_t)(b - a) * sizeof(float));
            memcpy(v + (a - lo), sv + (size_t)(a - start) * 4, (size_t)(b - a) * sizeof(float));
        }
        *next = start + len;
    }
    st_close(&f);
    return r->status;
}

/* This rank's moments from the old slices, which must tile [0, >= P) in rank order. */
static int read_optimizer(const struct trainer *tr, const char *dir, int old_world, float *m,
                          float *v, struct ck_result *r) {
    const struct adamw *o = &tr->opt;
    const struct model *mdl = &tr->model;
    int64_t lo = o->slice_start, hi = o->slice_start + o->slice_len, next = 0;
    if (hi > mdl->n_params) hi = mdl->n_params; /* padding has no state */
    for (int k = 0; k < old_world && r->status == CK_OK; k++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/optim_%05d.safetensors", dir, k);
        read_optim_file(path, &next, lo, hi, m, v, r);
    }
    if (r->status != CK_OK) return r->status;
    if (next < mdl->n_params)
        return set_result(r, CK_BAD, "%s: the optimizer slices cover %lld of %lld parameters", dir,
                          (long long)next, (long long)mdl->n_params);
    int64_t i, n = hi > lo ? hi - lo : 0;
    if ((i = first_bad(m, n, false)) >= 0 || (i = first_bad(v, n, true)) >= 0)
        return set_result(r, CK_BAD, "%s: the moments of %s hold %g / %g (not finite, or a negative "
                          "second moment)", dir, param_at(mdl, lo + i), m[i], v[i]);
    return CK_OK;
}

/* Moves everything read into the trainer. */
static void install(struct trainer *tr, const struct ckpt_state *s, const float *host,
                    const float *m, const float *v) {
    struct model *mdl = &tr->model;
    size_t bytes = (size_t)tr->opt.slice_len * sizeof(float);
    backend_upload_act(&tr->be, mdl->param_buf, host, mdl->n_params_padded);
    backend_upload(&tr->be, tr->opt.master, host + tr->opt.slice_start, bytes);
    backend_upload(&tr->be, tr->opt.m, m, bytes);
    backend_upload(&tr->be, tr->opt.v, v, bytes);
    tr->opt.t = s->optimizer_step;
    tr->step = s->step;
    tr->loss_ema = s->loss_ema;
    tr->loss_ema_steps = s->loss_ema_steps;
}

/* The state and files of `dir` (collective): state.json valid, every file of the table with its
 * recorded size and hash (the files shared out over the ranks). */
static int check_folder(struct trainer *tr, const char *dir, struct ckpt_state *s, double *bytes,
                        struct ck_result *r) {
    char err[CKPT_MSG];
    if (ckpt_state_read(dir, s, err, sizeof err) != 0) set_result(r, CK_BAD, "%s", err);
    agree(tr->g, r);
    if (r->status != CK_OK) return r->status;
    if (ckpt_verify_files(dir, s, tr->g->world_rank, tr->g->world_size, bytes, err, sizeof err) != 0)
        set_result(r, CK_BAD, "%s", err);
    agree(tr->g, r);
    return r->status;
}

/* Says which config keys differ from the checkpoint's own (rank 0): a new learning rate may be the
 * point of the resume, but a new seed, data list or batch size silently changes the sequences the
 * run reads from here on, so the line says so. */
static bool log_config_changes(struct trainer *tr, const char *dir) {
    if (tr->g->world_rank != 0) return false;
    char path[4400], changes[2048];
    snprintf(path, sizeof path, "%s/train_config.json", dir);
    cJSON *saved = config_parse_file(path); /* verified with the checkpoint's other files */
    bool data_order = false;
    int n = config_changes(tr->cfg, saved, changes, sizeof changes, &data_order);
    cJSON_Delete(saved);
    if (n == 0) return false;
    log_info(&tr->log, "resume: %d config key(s) differ from %s: %s\n", n, path, changes);
    if (data_order)
        fprintf(stderr, "warning: seed, train.global_batch_size or a data.* key changed: the "
                "sequences from here on are not the ones the checkpoint's run would have read\n");
    return data_order;
}

/* Warns (rank 0) when data.train_files, under unchanged names, now hold other data than when the
 * checkpoint was written (its fingerprint of the shards, loader_digest). */
static void check_data_changes(const struct trainer *tr, const struct ckpt_state *s,
                               const char *dir) {
    const struct loader *l = &tr->train_data;
    if (tr->g->world_rank != 0 || !s->has_data || tr->cfg->data.source != DATA_SOURCE_SHARDS)
        return;
    if (s->data_digest == loader_digest(l) && s->data_windows == loader_epoch_size(l)) return;
    fprintf(stderr, "warning: data.train_files hold other data than when %s was written (%lld "
            "windows then, %lld now; fingerprint %016llx then, %016llx now): the sequences from "
            "here on are not the ones the checkpoint's run would have read\n", dir,
            (long long)s->data_windows, (long long)loader_epoch_size(l),
            (unsigned long long)s->data_digest, (unsigned long long)loader_digest(l));
}

/* Loads `dir` into the trainer when it is intact (collective); the status, and on rank 0 the
 * reason when it is not CK_OK. Nothing of the trainer changes unless it is CK_OK. */
static int try_load(struct trainer *tr, const char *dir, struct ck_result *r) {
    struct ckpt_state s;
    double t0 = now_seconds(), bytes = 0;
    memset(r, 0, sizeof *r);
    if (check_folder(tr, dir, &s, &bytes, r) != CK_OK) {
        ckpt_state_free(&s);
        return r->status;
    }
    comm_allreduce(&tr->g->world, &bytes, 1, COMM_F64, COMM_SUM);
    double t_verify = now_seconds() - t0;
    size_t sbytes = (size_t)tr->opt.slice_len * sizeof(float);
    float *host = xcalloc((size_t)tr->model.n_params_padded, sizeof(float));
    float *m = xcalloc(1, sbytes), *v = xcalloc(1, sbytes);
    if (read_weights(&tr->model, dir, host, r) == CK_OK && s.n_params != tr->model.n_params)
        set_result(r, CK_BAD, "%s/state.json: \"n_params\" is %lld, its model.safetensors holds "
                   "%lld", dir, (long long)s.n_params, (long long)tr->model.n_params);
    if (r->status == CK_OK) read_optimizer(tr, dir, s.world_size, m, v, r);
    agree(tr->g, r);
    if (r->status == CK_OK) {
        install(tr, &s, host, m, v);
        char size[32];
        format_count(size, sizeof size, bytes);
        log_info(&tr->log, "resumed from %s: step %lld, %d rank(s) then, %d now (%s: %sB checked "
                 "in %.2f s, loaded in %.2f s)\n", dir, (long long)s.step, s.world_size,
                 tr->g->world_size, s.version >= 2 ? "xxh64" : "version 1, no checksums", size,
                 t_verify, now_seconds() - t0 - t_verify);
        tr->run_id = s.version >= 2 ? s.run_id : tr->run_id;
        if (!log_config_changes(tr, dir)) check_data_changes(tr, &s, dir);
    }
    ckpt_state_free(&s);
    free(host);
    free(m);
    free(v);
    return r->status;
}

/* ---------------------------------------------------------------------------------------------- */
/* Resume                                                                                          */

/* A new lineage id (rank 0 draws it, every rank gets it). */
static uint64_t new_run_id(const struct grid *g) {
    uint64_t id = 0;
    if (g->world_rank == 0) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, &id, sizeof id) != (ssize_t)sizeof id) id = 0;
        if (fd >= 0) close(fd);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id ^= xxh64(&ts, sizeof ts, (uint64_t)getpid());
        if (id == 0) id = 1;
    }
    comm_broadcast(&g->world, &id, 1, COMM_I64, 0);
    return id;
}

/* Whether root holds a pointer or any step folder. */
static bool holds_checkpoints(const char *root) {
    char latest[4400], names[1][CKPT_NAME_MAX];
    int64_t steps[1];
    snprintf(latest, sizeof latest, "%s/latest", root);
    return fs_exists(latest) || ckpt_list(root, names, steps, 1) > 0;
}

/* Rank 0, before choosing: leftover step_<N>.tmp folders go (they never were checkpoints; the
 * run lock says nobody is writing them); under resume "none" a ckpt folder that holds checkpoints
 * is moved aside whole. */
static void tidy_root(const struct trainer *tr, const char *root) {
    if (strcmp(tr->cfg->resume, "none") == 0 && holds_checkpoints(root)) {
        move_aside(root, &tr->log);
        return;
    }
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char name[CKPT_NAME_MAX], path[4400];
        size_t n = strlen(e->d_name);
        int64_t step;
        if (n < 5 || n >= sizeof name || strcmp(e->d_name + n - 4, ".tmp") != 0) continue;
        snprintf(name, sizeof name, "%.*s", (int)(n - 4), e->d_name);
        if (!ckpt_step_of(name, &step)) continue;
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        remove_tree(path);
    }
    closedir(d);
}

struct ckpt_path {
    char s[4400];
};

/* The folders resume "auto" tries, best first (rank 0): the one `latest` names, then every step
 * folder newest first. *n is their count; free() the result. A pointer naming something outside
 * root is a user error; a missing or broken one is reported when there are folders to fall back
 * on. */
static struct ckpt_path *auto_candidates(const char *root, int *n) {
    char(*names)[CKPT_NAME_MAX] = xmalloc(CKPT_MAX_LIST * sizeof *names);
    int64_t *steps = xmalloc(CKPT_MAX_LIST * sizeof *steps);
    char latest[4400], pointed[CKPT_NAME_MAX] = "", err[4600];
    snprintf(latest, sizeof latest, "%s/latest", root);
    int rc = ckpt_read_latest(latest, pointed, sizeof pointed, err, sizeof err);
    if (rc == -2) die_user("%s", err);
    int listed = ckpt_list(root, names, steps, CKPT_MAX_LIST), k = 0;
    if (rc == -1 || (rc == 1 && listed > 0))
        fprintf(stderr, "warning: %s; %s\n", rc == 1 ? "ckpt/latest is missing" : err,
                listed > 0 ? "looking for the newest intact checkpoint instead"
                           : "there is no checkpoint folder: starting afresh");
    struct ckpt_path *paths = xmalloc((size_t)(listed + 1) * sizeof *paths);
    if (rc == 0) snprintf(paths[k++].s, sizeof paths->s, "%s/%s", root, pointed);
    for (int i = 0; i < listed; i++)
        if (strcmp(names[i], pointed) != 0)
            snprintf(paths[k++].s, sizeof paths->s, "%s/%s", root, names[i]);
    free(names);
    free(steps);
    *n = k;
    return paths;
}

/* Tries the candidates in order (collective; rank 0 holds the list and broadcasts each path):
 * true when one loaded. A checkpoint that does not fit the config stops the run, and so does a
 * bad one without fallback, or when every candidate is bad. */
static bool load_first_intact(struct trainer *tr, const struct ckpt_path *paths, int n,
                              bool fallback) {
    const struct grid *g = tr->g;
    int32_t count = n;
    comm_broadcast(&g->world, &count, 1, COMM_I32, 0);
    char first_reason[CKPT_MSG] = "", path[4400];
    for (int i = 0; i < count; i++) {
        if (g->world_rank == 0) memcpy(path, paths[i].s, sizeof path);
        comm_broadcast(&g->world, path, sizeof path, COMM_U8, 0);
        struct ck_result r;
        int st = try_load(tr, path, &r);
        if (st == CK_OK) return true;
        if (st == CK_INCOMPATIBLE || !fallback) die_all(g, r.msg);
        if (!first_reason[0]) memcpy(first_reason, r.msg, sizeof first_reason);
        if (g->world_rank == 0)
            fprintf(stderr, "warning: checkpoint %s is not intact: %s%s\n", path, r.msg,
                    i + 1 < count ? "; trying the next newest" : "");
    }
    if (count > 0) {
        char msg[CKPT_MSG + 200];
        snprintf(msg, sizeof msg, "resume auto: none of the %d checkpoint folder(s) is intact (the "
                 "first tried: %s); move them away, or name one with resume", (int)count,
                 first_reason);
        die_all(g, msg);
    }
    return false;
}

void checkpoint_resume(struct trainer *tr) {
    const struct config *c = tr->cfg;
    const struct grid *g = tr->g;
    char root[4096];
    ckpt_root(c, root, sizeof root);
    bool none = strcmp(c->resume, "none") == 0, fallback = strcmp(c->resume, "auto") == 0;
    struct ckpt_path *paths = NULL;
    int n = 0;
    if (g->world_rank == 0) {
        tidy_root(tr, root);
        if (fallback) {
            paths = auto_candidates(root, &n);
        } else if (!none) {
            paths = xmalloc(sizeof *paths);
            CHECK(strlen(c->resume) < sizeof paths->s);
            snprintf(paths[0].s, sizeof paths->s, "%s", c->resume);
            n = 1;
        }
    }
    comm_barrier(&g->world);
    tr->run_id = 0;
    bool loaded = !none && load_first_intact(tr, paths, n, fallback);
    free(paths);
    if (!loaded) tr->step = 0;
    if (tr->run_id == 0) tr->run_id = new_run_id(g); /* fresh, or a version-1 checkpoint */
}

/* ---------------------------------------------------------------------------------------------- */
/* For the commands                                                                                */

int checkpoint_lock_run(const struct config *c) {
    make_dirs(c->run_dir);
    char path[4400];
    snprintf(path, sizeof path, "%s/.lock", c->run_dir);
    return fs_lock(path);
}

void checkpoint_resolve_arg(const char *arg, char *out, size_t n) {
    struct stat st;
    if (stat(arg, &st) != 0) die_user("%s: no such checkpoint: %s", arg, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (snprintf(out, n, "%s", arg) >= (int)n) die_user("%s: path too long", arg);
        return;
    }
    char name[CKPT_NAME_MAX], err[4600], dir[4096];
    if (ckpt_read_latest(arg, name, sizeof name, err, sizeof err) != 0) die_user("%s", err);
    snprintf(dir, sizeof dir, "%.4000s", arg);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n) die_user("%s: checkpoint path too long", arg);
}

void checkpoint_verify_file(const char *dir, const char *name) {
    struct ckpt_state s;
    char err[4600];
    if (ckpt_state_read(dir, &s, err, sizeof err) != 0) die_user("%s", err);
    const struct ckpt_file *f = ckpt_state_file(&s, name);
    struct ckpt_state one = {.n_files = 1, .files = (struct ckpt_file *)f};
    double bytes = 0;
    if (f && ckpt_verify_files(dir, &one, 0, 1, &bytes, err, sizeof err) != 0) die_user("%s", err);
    if (!f && s.version >= 2) die_user("%s/state.json: no entry for %s", dir, name);
    ckpt_state_free(&s);
}

void checkpoint_read_weights(const struct model *m, const char *dir, float *host) {
    checkpoint_verify_file(dir, "model.safetensors");
    struct ck_result r = {0};
    if (read_weights(m, dir, host, &r) != CK_OK) die_user("%s", r.msg);
}

/* Whether dir is a checkpoint (state.json) or a run's ckpt folder (a valid `latest` pointer, or
 * step folders holding state.json); the reason in why. */
static bool is_checkpoint_place(const char *dir, char *why, size_t n) {
    char path[4400], name[CKPT_NAME_MAX], err[4600], names[8][CKPT_NAME_MAX];
    int64_t steps[8];
    snprintf(path, sizeof path, "%s/state.json", dir);
    if (fs_exists(path)) return snprintf(why, n, "%s is a checkpoint", dir), true;
    snprintf(path, sizeof path, "%s/latest", dir);
    bool pointer = ckpt_read_latest(path, name, sizeof name, err, sizeof err) == 0;
    int k = ckpt_list(dir, names, steps, 8);
    for (int i = 0; i < k && !pointer; i++) {
        snprintf(path, sizeof path, "%s/%s/state.json", dir, names[i]);
        pointer = fs_exists(path);
    }
    if (pointer) snprintf(why, n, "%s is the checkpoint folder of a run", dir);
    return pointer;
}

bool checkpoint_area(const char *path, char *why, size_t n) {
    char dir[4096], up[4096];
    snprintf(up, sizeof up, "%s", path);
    while (!fs_exists(up)) { /* the nearest existing folder above a path still to be made */
        char *slash = strrchr(up, '/');
        if (!slash) {
            snprintf(up, sizeof up, ".");
            break;
        }
        if (slash == up) slash[1] = '\0';
        else *slash = '\0';
    }
    if (!realpath(up, dir)) return false;
    for (;;) {
        if (is_checkpoint_place(dir, why, n)) return true;
        char *slash = strrchr(dir, '/');
        if (!slash || dir[1] == '\0') return false;
        if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
    }
}
