/*
 * config_jobs.c: the temporary folder and the config jobs run in a child (see config_jobs.h).
 */
#include "config_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "hf.h"

char tmp_dir[] = "/tmp/test_config.XXXXXX";

void tmp_create(void) {
    if (!mkdtemp(tmp_dir)) {
        printf("FAIL mkdtemp\n");
        exit(1);
    }
}

void tmp_remove(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", tmp_dir);
}

void write_tmp(char *out, size_t n, const char *name, const char *text) {
    snprintf(out, n, "%s/%s", tmp_dir, name);
    FILE *f = fopen(out, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        printf("FAIL cannot write %s\n", out);
        exit(1);
    }
}

int run_child(const struct job *j, char *err, size_t n) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        static struct config c;
        if (j->import) {
            config_read(&c, j->path, j->nset, j->sets);
            hf_import_config(&c);
            config_validate(&c, j->world);
        } else {
            config_load(&c, j->path, j->nset, j->sets);
        }
        if (j->world > 0) config_validate(&c, j->world);
        config_free(&c);
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(fd[0], err + got, n - 1 - got)) > 0) got += (size_t)r;
    err[got] = '\0';
    char sink[256];
    while (read(fd[0], sink, sizeof sink) > 0) {
    }
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
