/* harness.h: integration-test helpers: throwaway databases, service processes, topology files. */
#ifndef MERCATO_HARNESS_H
#define MERCATO_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc.h"

/* The PostgreSQL conninfo (without dbname) that ./tests/run exported as MERCATO_TEST_PG.
 * Aborts the test program, loudly, when it is missing: integration tests never skip. */
const char *harness_pg(void);

/* Creates a fresh, uniquely named database (prefix + pid + counter) and returns its full
 * conninfo (malloc'd). Every database created is dropped by harness_cleanup. */
char *harness_db_create(const char *prefix);

/* Runs SQL (no parameters; test code only) on a conninfo; aborts the test on error. */
void harness_sql(const char *conninfo, const char *sql);

/* Runs a query and returns the first column of the first row as an int64 (0 if no row). */
int64_t harness_sql_i64(const char *conninfo, const char *sql);

/* A free TCP port on 127.0.0.1. */
int harness_free_port(void);

/* A build artifact: $MERCATO_BUILD_ROOT/<relpath>. Static buffer per call (malloc'd). */
char *harness_build_path(const char *relpath);

/* A temporary topology file for a cluster of services on fresh databases and free ports.
 * `services` is a space-separated list ("product cart"); every service listed gets a
 * section with address tcp://127.0.0.1:<free port> and a fresh database; [monolith] gets a
 * fresh database too. `extra` (may be NULL) is appended verbatim (e.g. "[payment]\n..."). */
typedef struct harness_cluster {
        char *conf_path;
        char *names[8];
        char *addresses[8];
        char *dbs[8];
        pid_t pids[8];
        int n;
        char *monolith_db;
} harness_cluster;

harness_cluster *harness_cluster_new(const char *services, const char *extra);

/* Starts every service of the cluster (build/services/NAME/mercato-NAME --conf FILE) and
 * waits (up to 30 s) until each answers Health. Aborts the test on failure, printing the
 * service's log. */
void harness_cluster_start(harness_cluster *c);

/* The address and database of a service of the cluster (NULL if absent). */
const char *harness_cluster_address(const harness_cluster *c, const char *name);
const char *harness_cluster_db(const harness_cluster *c, const char *name);

/* Runs the client (build/services/mercato/mercato --conf FILE ARGS); returns its exit
 * status (-1 if it did not exit), its stdout in out. */
int harness_cli(const harness_cluster *c, char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sends a signal to one service (SIGKILL, SIGSTOP, SIGCONT, SIGTERM), and restarts it. */
void harness_cluster_signal(harness_cluster *c, const char *name, int sig);
void harness_cluster_restart(harness_cluster *c, const char *name);

/* Stops one service (SIGTERM, then SIGKILL after 10 s) and returns its wait status, as
 * waitpid gives it; -1 if it was not running. */
int harness_cluster_stop(harness_cluster *c, const char *name);

/* Copies a service's log so far to stderr, to explain a failed assertion. */
void harness_cluster_print_log(const harness_cluster *c, const char *name);

/* True if the service's process is still alive. */
bool harness_cluster_alive(harness_cluster *c, const char *name);

/* Stops the services (SIGTERM, then SIGKILL after 10 s) and frees. Safe to call twice. */
void harness_cluster_free(harness_cluster *c);

/* A client for a service of the cluster. */
rpc_client *harness_client(const harness_cluster *c, const char *name);

/* Stops every process the harness started and drops every database it created. Registered
 * with atexit by the first harness call, so a failing test still cleans up. */
void harness_cleanup(void);

/* What a one-service integration test works with: a started cluster of `services`, a
 * client of the service under test, its database and the monolith's. */
typedef struct harness_fixture {
        harness_cluster *cluster;
        rpc_client *client;
        const char *db;   /* the service's own database */
        const char *mono; /* the monolith database */
} harness_fixture;

/* Starts the cluster (harness_cluster_new with `extra`, then _start) and fills f for
 * `service`, one of `services`. */
void harness_fixture_start(
    harness_fixture *f, const char *services, const char *service, const char *extra);

/* Frees the client and the cluster, then harness_cleanup. */
void harness_fixture_stop(harness_fixture *f);

#endif
