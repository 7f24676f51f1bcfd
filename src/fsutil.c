/*
 * fsutil.c: durable file-system steps (see fsutil.h).
 */
#define _XOPEN_SOURCE 700
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

void make_dirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) die_user("%s: bad folder path", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            die_user("%s: cannot create folder: %s", buf, strerror(errno));
        buf[i] = c;
    }
}

void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die_user("%s: cannot open to sync: %s", path, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) die_user("%s: fsync failed: %s", path, strerror(errno));
    close(fd);
}

/* The folder part of path ("." when none). */
static void parent_of(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

void write_file_atomic(const char *path, const void *bytes, size_t n) {
    char tmp[4200], dir[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die_user("%s: cannot create: %s", tmp, strerror(errno));
    const char *p = bytes;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die_user("%s: write failed: %s", tmp, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    if (fsync(fd) != 0) die_user("%s: fsync failed: %s", tmp, strerror(errno));
    close(fd);
    if (rename(tmp, path) != 0) die_user("%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    parent_of(path, dir, sizeof dir);
    fsync_path(dir);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        die_user("%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *read_file(const char *path, size_t *len, bool must_exist) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (must_exist) die_user("%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) die_user("%s: read failed", path);
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

bool copy_file(const char *src, const char *dst) {
    size_t n = 0;
    char *bytes = read_file(src, &n, false);
    if (!bytes) return false;
    write_file_atomic(dst, bytes, n);
    free(bytes);
    return true;
}
