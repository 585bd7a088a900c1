/* util.c: the mercato client's path, child processes, percentiles, folders, progress. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

const char *
bench_mercato_path(void)
{
        static char path[PATH_MAX];
        char self[PATH_MAX];
        const char *env = getenv("MERCATO_BIN");
        ssize_t n;

        if (env != NULL && env[0] != '\0') {
                return env;
        }
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0) {
                return "mercato";
        }
        self[n] = '\0';
        snprintf(path, sizeof(path), "%s/../services/mercato/mercato", dirname(self));
        return path;
}

static int
run_child(char *const argv[], char **out, bool quiet, bool merge)
{
        int fds[2] = { -1, -1 };
        pid_t pid;
        int status;

        if (out != NULL) {
                *out = NULL;
                if (pipe2(fds, O_CLOEXEC) != 0) {
                        return -1;
                }
        }
        fflush(NULL);
        pid = fork();
        if (pid < 0) {
                if (out != NULL) {
                        close(fds[0]);
                        close(fds[1]);
                }
                return -1;
        }
        if (pid == 0) {
                int devnull = open("/dev/null", O_RDWR);
                if (devnull >= 0) {
                        dup2(devnull, STDIN_FILENO);
                        if (quiet) {
                                dup2(devnull, STDERR_FILENO);
                        }
                }
                if (out != NULL) {
                        dup2(fds[1], STDOUT_FILENO);
                        if (merge) {
                                dup2(fds[1], STDERR_FILENO);
                        }
                }
                execvp(argv[0], argv);
                fprintf(stderr, "mercato-bench: cannot run %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        if (out != NULL) {
                size_t len = 0, cap = 4096;
                char *buf = malloc(cap);
                ssize_t n;
                close(fds[1]);
                while (buf != NULL) {
                        if (len + 1 >= cap) {
                                char *bigger = realloc(buf, cap * 2);
                                if (bigger == NULL) {
                                        break;
                                }
                                buf = bigger;
                                cap *= 2;
                        }
                        n = read(fds[0], buf + len, cap - len - 1);
                        if (n < 0 && errno == EINTR) {
                                continue;
                        }
                        if (n <= 0) {
                                break;
                        }
                        len += (size_t) n;
                }
                close(fds[0]);
                if (buf != NULL) {
                        buf[len] = '\0';
                }
                *out = buf;
        }
        while (waitpid(pid, &status, 0) < 0) {
                if (errno != EINTR) {
                        return -1;
                }
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int
bench_run(char *const argv[], char **out, bool quiet)
{
        return run_child(argv, out, quiet, false);
}

int
bench_run_merged(char *const argv[], char **out)
{
        return run_child(argv, out, false, true);
}

int
bench_mercato_check(const char *conf, const char *dataset, bool json, const char *flag,
    const char *file, char **out, bool quiet)
{
        char *argv[12];
        char *dropped = NULL;
        int k = 0, rc;

        argv[k++] = (char *) bench_mercato_path();
        argv[k++] = "--conf";
        argv[k++] = (char *) conf;
        if (json) {
                argv[k++] = "--json";
        }
        argv[k++] = "check";
        if (dataset != NULL) {
                argv[k++] = "--dataset";
                argv[k++] = (char *) dataset;
        }
        argv[k++] = (char *) flag;
        argv[k++] = (char *) file;
        argv[k] = NULL;
        rc = bench_run(argv, out != NULL ? out : &dropped, quiet);
        free(dropped);
        return rc;
}

void
bench_sleep_ms(int64_t ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

        nanosleep(&ts, NULL);
}

static int
double_cmp(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

void
bench_sort(double *v, size_t n)
{
        if (n > 1) {
                qsort(v, n, sizeof(*v), double_cmp);
        }
}

double
bench_percentile(const double *sorted, size_t n, double p)
{
        if (n == 0) {
                return 0;
        }
        size_t rank = (size_t) ((p / 100.0) * (double) n + 0.999999);
        if (rank < 1) {
                rank = 1;
        }
        return sorted[(rank > n ? n : rank) - 1];
}

bool
bench_mkdirs(const char *path)
{
        char buf[PATH_MAX];
        size_t len = strlen(path);

        if (len == 0 || len >= sizeof(buf)) {
                errno = ENAMETOOLONG;
                return false;
        }
        memcpy(buf, path, len + 1);
        for (char *p = buf + 1; *p != '\0'; p++) {
                if (*p == '/') {
                        *p = '\0';
                        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                                return false;
                        }
                        *p = '/';
                }
        }
        return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

static bool progress_shown;

void
bench_progress(const char *fmt, ...)
{
        va_list ap;

        if (!isatty(STDERR_FILENO)) {
                return;
        }
        fputs("\r\033[K", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fflush(stderr);
        progress_shown = true;
}

void
bench_progress_end(void)
{
        if (progress_shown) {
                fputs("\r\033[K", stderr);
                fflush(stderr);
                progress_shown = false;
        }
}
