/* compare.h: one mode's measured run, shared by `compare` and `sweep` (compare.c), and the
 * files they write (report.c). */
#ifndef MERCATO_BENCH_COMPARE_H
#define MERCATO_BENCH_COMPARE_H

#include <stdbool.h>
#include <stdint.h>

#include "dbstat.h"
#include "observe.h"
#include "pglimit.h"
#include "proccost.h"
#include "rpc.h"
#include "workload.h"

/* The five modes, in the order compare runs them. */
#define BENCH_N_MODES 5
/* saga, 2pc, monolith, orchestration, tcc */
extern const char *const bench_mode_names[BENCH_N_MODES];

/* Everything measured about one mode at one client count. */
typedef struct mode_result {
        const char *mode;
        int clients;
        double seconds;  /* the measured window */
        uint64_t orders; /* started in the window */
        uint64_t completed, cancelled, compensated;
        uint64_t errors;                   /* calls that failed, or orders never seen terminal */
        uint64_t unexpected;               /* orders that did not end as they were built to */
        uint64_t by_reason[BENCH_N_KINDS]; /* cancelled, by the reason it was built for */
        uint64_t timeouts;                 /* cancelled with reason timeout, as it ended */
        uint64_t participant_errors;       /* ... with reason participant_error */
        double orders_per_s;
        double p50_ms, p99_ms, p999_ms; /* to the terminal state */
        double *latency_ms;             /* sorted, one per order of the window that ended */
        size_t n_latency;
        bool quiet;           /* the system went quiet within the bound */
        double convergence_s; /* from the last reply to quiescence */
        bool observed;
        observe_result obs;
        double lock_wait_s; /* backend-seconds spent waiting for locks (sampled) */
        uint64_t lock_samples;
        bool has_tpc;
        dbstat_tpc tpc;
        int check_exit; /* mercato check's exit status */
        bool check_ok;
        int64_t violations;       /* summed over the FAIL lines */
        char check_failures[512]; /* the names of the invariants that failed */
        bool has_replay;
        double replay_orders_per_s, replay_p50_ms, replay_ratio;
        uint64_t replay_orders;
        /* PostgreSQL's own limit: pgbench on the mode's statements (pglimit.h), and the
         * replay over it. */
        bool has_pglimit;
        double pglimit_orders_per_s, pglimit_ratio;
        pglimit_result pglimit;
        /* Counting the time the work an order left behind (its events) took to finish after
         * the window: orders / (window + convergence), for the mode and for its replay
         * (orders / (window + drain)). A mode whose relays fall behind looks faster in
         * orders/s than it can sustain; these figures charge it the backlog. */
        double sustained_orders_per_s;
        double replay_drain_s, replay_sustained_orders_per_s, sustained_ratio;
        /* CPU time and context switches per order, per process, from before the load to
         * quiescence (the warm-up's orders and the observers' reads included). */
        proccost cost;
} mode_result;

void mode_result_free(mode_result *r);

/* Writes compare.json, compare.csv, latency-<mode>.dat and latency-cdf.png into dir. */
bool report_compare(const char *dir, const bench_workload *w, const mode_result *r, size_t n,
    char *err, size_t errlen);

/* Writes sweep.json, sweep.csv and throughput-clients.png into dir. */
bool report_sweep(const char *dir, const bench_workload *w, const mode_result *r, size_t n,
    char *err, size_t errlen);

/* Prints the side-by-side table (and the detail lines) to stdout. */
void report_table(const mode_result *r, size_t n);

#endif
