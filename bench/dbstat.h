/* dbstat.h: what the bench reads straight from PostgreSQL: lock waits while a run lasts,
 * quiescence after it, and the 2pc coordinator log's timings. */
#ifndef MERCATO_BENCH_DBSTAT_H
#define MERCATO_BENCH_DBSTAT_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"

/* The databases of one dataset: conninfos, the one holding the orders first. */
#define DBSTAT_MAX_DBS 8
typedef struct dbstat_dbs {
        const char *conninfo[DBSTAT_MAX_DBS];
        int n;
} dbstat_dbs;

/* The split dataset ([order] db first, then every other service's) or the monolith one. */
bool dbstat_dataset(const rpc_conf *conf, bool monolith, dbstat_dbs *ret, char *err, size_t errlen);

/* Samples pg_stat_activity every interval_ms from a thread of its own, summing the time
 * backends of the dataset's databases spent waiting for a lock. */
typedef struct dbstat_sampler dbstat_sampler;
rpc_status dbstat_sampler_start(const dbstat_dbs *dbs, int64_t interval_ms, dbstat_sampler **ret,
    char *err, size_t errlen) RPC_WARN_UNUSED;
/* Stops it and returns the backend-seconds spent in lock waits, and the samples taken. */
double dbstat_sampler_stop(dbstat_sampler *s, uint64_t *ret_samples);

/* Waits (at most timeout_ms) until the dataset is quiet: no PENDING order, every outbox
 * event delivered or dead-lettered, no prepared transaction on its databases. Returns true
 * if it went quiet; *ret_ms says when (from the call). */
bool dbstat_wait_quiet(
    const dbstat_dbs *dbs, int64_t timeout_ms, double *ret_ms, char *err, size_t errlen);

/* The coordinator log's timings of the 2pc orders committed since the log was emptied
 * (by seeding): milliseconds from the start of the prepares to the logged decision
 * (prepare), from the decision to the last COMMIT PREPARED (commit), and the whole span
 * during which some branch was prepared or preparing (in_doubt). */
typedef struct dbstat_tpc {
        uint64_t commits;
        double prepare_p50_ms, prepare_p99_ms;
        double commit_p50_ms, commit_p99_ms;
        double in_doubt_p50_ms, in_doubt_p99_ms;
} dbstat_tpc;
rpc_status dbstat_tpc_times(
    const char *order_conninfo, dbstat_tpc *ret, char *err, size_t errlen) RPC_WARN_UNUSED;

#endif
