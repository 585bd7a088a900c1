/* replay.h: `mercato-bench replay`: a mode's SQL, straight through libpq, without services.
 *
 * The replay runs, from the bench process, the same statements in the same transactions as
 * a mode runs for an order, by calling the very functions the services call (the stores'
 * steps, order_tx.h, txn/): no RPC, no service. Its throughput is the database-bound
 * ceiling of the mode on this machine, and a mode's throughput over its replay's is what
 * the framework costs. See the NOTES of replay.c. */
#ifndef MERCATO_BENCH_REPLAY_H
#define MERCATO_BENCH_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"
#include "workload.h"

typedef struct replay_opts {
        const rpc_conf *conf;    /* the topology: each service's [x] db and [monolith] db */
        const char *mode;        /* "saga", "2pc", "monolith", "orchestration", "tcc" */
        const bench_workload *w; /* the order mix (finished with bench_workload_finish) */
        int clients;             /* closed-loop client threads, one connection set each */
        double warmup_s, duration_s;
        bool keyed;    /* each order carries an idempotency key (as load_opts.keyed) */
        bool quiet;    /* no line on stderr for a failed order */
        bool high_ids; /* every sequence in an id band of its own above 10^15, so that an
                          id is told apart from any other number (bench_replay_emit) */
        /* For a test: each client replays exactly this many orders of its stream (0: as many
         * as fit the duration), every one counted; and before_orders (may be NULL) runs once
         * the databases are seeded and the relays started, right before the first order. */
        uint64_t orders_per_client;
        void (*before_orders)(void *arg);
        void *before_arg;
} replay_opts;

typedef struct replay_result {
        uint64_t orders, completed, cancelled, errors; /* counted after the warm-up */
        uint64_t wrong; /* orders that did not end as they were built to (counted ones) */
        double seconds, orders_per_s;
        double drain_s;           /* from the window's end until every outbox was drained */
        double p50_ms, p99_ms;    /* per-order latency of the replayed SQL */
        char conf_path[4096];     /* a topology file naming the replay databases, so that
                                    `mercato --conf conf_path check --baseline base_path` runs */
        char baseline_path[4096]; /* `mercato check --record-baseline` output taken right after
                                    seeding */
} replay_result;

/* Creates (if missing), migrates and seeds "<dbname>_replay" for every database the
 * topology names, records the baseline, runs the replay and waits until every outbox is
 * drained. Returns RPC_OK with *ret filled, or an error with err set. */
rpc_status bench_replay_run(
    const replay_opts *o, replay_result *ret, char *err, size_t errlen) RPC_WARN_UNUSED;

/* The pgbench scripts of a mode (bench_replay_emit): one per database it uses. */
#define REPLAY_MAX_SCRIPTS 8

typedef struct replay_script {
        char dbname[128];
        char conninfo[1024]; /* the replay database's */
        char path[4096];
        uint64_t statements;   /* prepared statements per run of the script */
        uint64_t transactions; /* per run */
} replay_script;

typedef struct replay_scripts {
        replay_script s[REPLAY_MAX_SCRIPTS];
        size_t n;
        uint64_t orders; /* one run of each script is this many orders */
} replay_scripts;

/* Replays about `orders` orders of the workload (rounded up to a multiple of o->clients,
 * spread over them), as bench_replay_run does (the replay databases seeded afresh, the
 * orders unkeyed), with the statements recorded (pgscript.h), and writes for each database
 * "<prefix>.<dbname>.sql", a pgbench script of exactly what the mode issued there for
 * those orders, the relay's consumers included. The durations are ignored; before_orders
 * runs right before the recording starts. Returns OK with *ret filled, or an error. */
rpc_status bench_replay_emit(const replay_opts *o, const char *prefix, uint64_t orders,
    replay_scripts *ret, char *err, size_t errlen) RPC_WARN_UNUSED;

/* `mercato-bench replay ...`; argv[0] is "replay". Returns the process exit code. */
int bench_replay_main(int argc, char **argv);

#endif
