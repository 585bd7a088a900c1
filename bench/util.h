/* util.h: what several mercato-bench commands need: the tools next to it, child processes,
 * percentiles, a TTY progress line. */
#ifndef MERCATO_BENCH_UTIL_H
#define MERCATO_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The path of the `mercato` client: $MERCATO_BIN, else ../services/mercato/mercato next to
 * this executable's folder (the build tree's layout). Static storage. */
const char *bench_mercato_path(void);

/* Runs argv (argv[0] a path, or a name looked up in PATH) with stdin from /dev/null and waits. If out is not NULL, its
 * stdout is captured (malloc'd, NUL-terminated) into *out; stderr passes through unless
 * quiet. Returns the exit status, or -1 if it could not run or was killed. */
int bench_run(char *const argv[], char **out, bool quiet);

/* Like bench_run with out, and stderr captured into *out too. */
int bench_run_merged(char *const argv[], char **out);

/* Runs `mercato --conf CONF [--json] check [--dataset DATASET] FLAG FILE` (FLAG is
 * --baseline or --record-baseline; DATASET may be NULL: every dataset) through bench_run:
 * its stdout goes to *out when out is not NULL (for --json), else nowhere. Returns the
 * exit status. */
int bench_mercato_check(const char *conf, const char *dataset, bool json, const char *flag,
    const char *file, char **out, bool quiet);

/* Sleeps ms milliseconds (a signal may end it early). */
void bench_sleep_ms(int64_t ms);

/* The p-th percentile (0..100) of n sorted values (nearest rank); 0 if n is 0. */
double bench_percentile(const double *sorted, size_t n, double p);

/* Sorts doubles ascending. */
void bench_sort(double *v, size_t n);

/* Creates a folder and its parents (like mkdir -p). Returns false with errno set. */
bool bench_mkdirs(const char *path);

/* A progress line on stderr, rewritten in place, only when stderr is a TTY; bench_progress_end
 * clears it. */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_end(void);

#endif
