/* pglimit.h: PostgreSQL's own limit for a mode: pgbench on exactly the mode's statements.
 *
 * bench_pglimit records the mode's statements for a few orders (bench_replay_emit), then
 * runs pgbench on each database's script alone, at the run's client count, on the replay
 * databases the recording just seeded. An order needs one run's share of every database's
 * script, and each script alone has the whole server, so the orders per second the server
 * can sustain is
 *
 *     pglimit = 1 / sum over the databases of (1 / orders per second of that script)
 *
 * where a script's orders per second is its runs per second, over the measured seconds
 * after the warm-up (pgbench -P 1), times the orders one run stands for. */
#ifndef MERCATO_BENCH_PGLIMIT_H
#define MERCATO_BENCH_PGLIMIT_H

#include <stddef.h>

#include "replay.h"
#include "rpc.h"

typedef struct pglimit_db {
        char dbname[128];
        double runs_per_s;     /* pgbench's tps: runs of the script per second */
        double orders_per_s;   /* runs_per_s times the orders one run stands for */
        uint64_t statements;   /* prepared statements per run */
        uint64_t transactions; /* per run */
} pglimit_db;

typedef struct pglimit_result {
        double orders_per_s; /* the combined limit */
        uint64_t orders;     /* the orders one run of each script stands for */
        pglimit_db db[REPLAY_MAX_SCRIPTS];
        size_t n;
} pglimit_result;

/* The orders bench_pglimit records: enough for the relay's batches and the workload's mix,
 * few enough that one run of a script stays well under a second. */
#define PGLIMIT_ORDERS 32

/* The seconds of each pgbench run not counted: the clients' random starts (pgscript.c)
 * and the first runs. */
#define PGLIMIT_WARMUP_S 2

/* Records mode o->mode's statements for about PGLIMIT_ORDERS orders into scripts under dir
 * (which must exist), then runs pgbench on each for warmup_s + duration_s seconds at
 * o->clients clients. Returns OK with *ret filled, or an error with err set. */
rpc_status bench_pglimit(const replay_opts *o, const char *dir, double warmup_s, double duration_s,
    pglimit_result *ret, char *err, size_t errlen) RPC_WARN_UNUSED;

#endif
