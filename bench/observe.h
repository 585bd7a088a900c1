/* observe.h: anomaly observers. While a run lasts, observer threads read, through the
 * public API, the balance, the stock and the newest order of the users and products that
 * orders in flight touch. Afterwards observe_analyse counts the dirty reads: reads that
 * saw the effect of an order that ended CANCELLED. */
#ifndef MERCATO_BENCH_OBSERVE_H
#define MERCATO_BENCH_OBSERVE_H

#include <stdint.h>

#include "load.h"
#include "rpc.h"

typedef struct observe_opts {
        const char *user_address;
        const char *product_address;
        const char *order_address;
        bool monolith;    /* read the monolith dataset */
        int observers;    /* threads; 0 disables */
        int64_t pause_us; /* between one observer's read rounds */
        int clients;      /* the load's client count: one in-flight slot each */
        const bench_workload *w;
} observe_opts;

typedef struct observer observer;

/* Starts the observer threads. observe_on_start / observe_on_end are the load's hooks
 * (load_opts.on_start / on_end with hook_arg = the observer). */
rpc_status observe_start(const observe_opts *o, observer **ret) RPC_WARN_UNUSED;
void observe_on_start(void *arg, const load_order *o);
void observe_on_end(void *arg, const load_order *o);

/* Stops the threads (the reads are kept for observe_analyse). */
void observe_stop(observer *ob);

typedef struct observe_result {
        uint64_t reads;         /* balance and stock reads judged (unknown outcomes aside) */
        uint64_t unjudged;      /* reads of a key that an order of unknown outcome touched */
        uint64_t dirty_reads;   /* reads that saw a cancelled order's effect */
        uint64_t dirty_balance; /* of which balances */
        uint64_t dirty_stock;   /* of which stock */
        uint64_t dirty_orders;  /* cancelled orders whose effect some read saw */
        double visible_p50_ms;  /* over those orders: from the first to the last read that saw it */
        double visible_max_ms;
        uint64_t order_reads;  /* reads of a user's newest order */
        uint64_t pending_seen; /* ... that found it PENDING: an order mid-flight, visible */
} observe_result;

/* Judges every read against the orders of the run (their outcome now known), then frees
 * the observer. */
void observe_analyse(observer *ob, const load_result *run, observe_result *ret);

/* One read an observer made: the key's value as some instant in [t0, t1] saw it. */
enum { OBSERVE_BALANCE = 0, OBSERVE_STOCK = 1, OBSERVE_ORDER = 2 };
typedef struct observe_read {
        int kind; /* OBSERVE_BALANCE (key: user), _STOCK (product), _ORDER (user's newest) */
        int64_t key;
        int64_t t0, t1;
        int64_t value; /* the balance, the stock, or the newest order's status */
} observe_read;

/* The judge behind observe_analyse, on its own: reads against the run's orders, the
 * initial values coming from the workload. */
void observe_judge(const observe_read *reads, size_t n_reads, const load_result *run,
    const bench_workload *w, observe_result *ret);

#endif
