/* cluster.h: a throwaway mercato cluster that one process owns: its own PostgreSQL, its own
 * topology file, every service as a child process, and the faults done to them: signals,
 * a PostgreSQL crash, and network cuts between network namespaces.
 *
 * Everything lives under one folder (DIR): DIR/pg (deploy/pg's state), DIR/topology.conf,
 * DIR/<service>.log. Nothing outside it is touched but the namespaces and the bridge of
 * cluster_netns_enable, whose names carry the owner's pid. cluster_free undoes everything,
 * and cluster_cleanup_all (registered with atexit by cluster_new) does so for every live
 * cluster, so a failing run still stops its services, its PostgreSQL and its namespaces. */
#ifndef MERCATO_BENCH_CLUSTER_H
#define MERCATO_BENCH_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "rpc.h"

/* The services, in start order. */
#define CLUSTER_N_SERVICES 6
extern const char *const cluster_services[CLUSTER_N_SERVICES];

typedef struct cluster cluster;

typedef struct cluster_opts {
        const char *build_root; /* holds services/<name>/mercato-<name> */
        const char *pg_script;  /* deploy/pg */
        const char *dir;        /* the state folder; created; removed by cluster_free unless
                                   keep is set */
        bool keep;              /* leave DIR (logs, the PostgreSQL data) behind */
        int workers;            /* [defaults] workers (0: 2) */
} cluster_opts;

/* Creates DIR, starts a PostgreSQL on a free port, creates every database and writes the
 * topology. Services are not started. Returns RPC_OK, or an error with err. */
rpc_status cluster_new(
    const cluster_opts *o, cluster **ret, char *err, size_t errlen) RPC_WARN_UNUSED;

/* Stops every service (SIGCONT, SIGTERM, then SIGKILL after 5 s) and PostgreSQL, removes
 * the namespaces and (unless keep) DIR. Accepts NULL. */
void cluster_free(cluster *c);

/* Undoes every cluster still alive in this process (atexit, and from signal-driven exits). */
void cluster_cleanup_all(void);

/* The topology file, and the values it gives (valid until cluster_free). */
const char *cluster_conf_path(const cluster *c);
const char *cluster_address(const cluster *c, const char *service);
const char *cluster_db(const cluster *c, const char *section); /* a service or "monolith" */
const char *cluster_dir(const cluster *c);

/* Sets (value non-NULL) or removes (NULL) a topology setting; written to the file at once,
 * read by services when they start. */
void cluster_set(cluster *c, const char *section, const char *key, const char *value);
/* Removes every setting that cluster_set made. */
void cluster_reset_settings(cluster *c);

/* Starts one service and waits (up to 30 s) until it answers Health. Returns RPC_OK, or an
 * error with err (the log's tail appended) when it exited or never answered. */
rpc_status cluster_start(cluster *c, const char *service, char *err, size_t errlen) RPC_WARN_UNUSED;
rpc_status cluster_start_all(cluster *c, char *err, size_t errlen) RPC_WARN_UNUSED;

/* Sends sig to a running service. SIGKILL and SIGTERM also reap it. False if not running. */
bool cluster_signal(cluster *c, const char *service, int sig);
/* Stops one service gracefully (SIGTERM, SIGKILL after 5 s); stops all of them. */
void cluster_stop(cluster *c, const char *service);
void cluster_stop_all(cluster *c);
/* True when the service's process runs (a stopped one counts); reaps it if it exited. */
bool cluster_alive(cluster *c, const char *service);
/* Its pid, 0 when not running. */
pid_t cluster_pid(const cluster *c, const char *service);

/* Stops PostgreSQL (-m fast, or -m immediate: a crash) and starts it again. */
rpc_status cluster_pg_stop(cluster *c, bool immediate, char *err, size_t errlen) RPC_WARN_UNUSED;
rpc_status cluster_pg_start(cluster *c, char *err, size_t errlen) RPC_WARN_UNUSED;

/*
 * Network namespaces
 *
 * cluster_netns_enable (every service stopped) creates one namespace per service, joined by
 * a bridge in the host namespace that also carries PostgreSQL's address; PostgreSQL is
 * restarted to listen there. From then on services start inside their namespace, on the
 * bridge's subnet. cluster_cut installs nftables rules that drop every packet between two
 * parties (services, or "postgres"), inside the namespaces of the services involved;
 * cluster_heal deletes them all. Returns RPC_UNIMPLEMENTED (with the reason) when
 * namespaces cannot be made here (not root, no ip or nft, no kernel support).
 */
rpc_status cluster_netns_enable(cluster *c, char *err, size_t errlen) RPC_WARN_UNUSED;
/* Services back on 127.0.0.1 (every service stopped); the namespaces stay until free. */
void cluster_netns_disable(cluster *c);
rpc_status cluster_cut(
    cluster *c, const char *a, const char *b, char *err, size_t errlen) RPC_WARN_UNUSED;
rpc_status cluster_heal(cluster *c, char *err, size_t errlen) RPC_WARN_UNUSED;

/* The last lines (at most max_bytes) of a service's log, malloc'd ("" if none). */
char *cluster_log_tail(const cluster *c, const char *service, size_t max_bytes);

/* The size of a service's log now (0 if none), and the log from offset on (malloc'd, at
 * most max_bytes of it; "" if none): what a service wrote since a moment. */
long cluster_log_size(const cluster *c, const char *service);
char *cluster_log_since(const cluster *c, const char *service, long offset, size_t max_bytes);

#endif
