/* proccost.h: what an order costs each process, in CPU time and context switches.
 *
 * Two samples bracket a run: every service's own figures (Stats: getrusage over all its
 * threads), PostgreSQL's processes (the backends and background processes that
 * pg_stat_activity lists, read from /proc, so only for a server on this machine) and the
 * bench's own process. The differences are divided by the orders placed between them. A
 * service that restarted in between, or a server whose processes cannot be read, is
 * reported as not measured rather than guessed; a backend that exited in between is not
 * counted, and one that started counts from zero. */
#ifndef MERCATO_BENCH_PROCCOST_H
#define MERCATO_BENCH_PROCCOST_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"

/* The six services, then "postgres", then "bench". */
#define PROCCOST_N 8

typedef struct proccost_proc {
        const char *name;
        bool ok;          /* measured */
        double cpu_ms;    /* user + system, per order */
        double switches;  /* voluntary + involuntary, per order */
        double voluntary; /* of which voluntary: waits, not preemptions */
} proccost_proc;

typedef struct proccost {
        proccost_proc p[PROCCOST_N];
        uint64_t orders;
} proccost;

typedef struct proccost_sampler proccost_sampler;

/* Takes the first sample: the services the topology names, the PostgreSQL server behind
 * pg_conninfo, this process. Never fails; what it cannot read is left unmeasured. */
proccost_sampler *proccost_start(const rpc_conf *conf, const char *pg_conninfo);

/* Takes the second sample, divides by orders into *ret, and frees s. */
void proccost_stop(proccost_sampler *s, uint64_t orders, proccost *ret);

/* The whole of the figures: the sum of the measured processes. */
double proccost_total_cpu_ms(const proccost *c);
double proccost_total_switches(const proccost *c);

#endif
