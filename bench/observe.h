/* observe.h: anomaly observers. While a run lasts, observer threads read, through the
 * public API, the balance, the stock and the newest order of the users and products that
 * orders in flight touch. Afterwards observe_analyse counts the dirty reads: reads that
 * saw the effect of an order that ended CANCELLED in what can be spent or ordered (the
 * available balance or stock: in tcc, a try's hold), and apart the reads of the totals that
 * saw one. */
#ifndef MERCATO_BENCH_OBSERVE_H
#define MERCATO_BENCH_OBSERVE_H

#include <stdbool.h>
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
        uint64_t reads;         /* available balance and stock reads judged (unknown outcomes
                                   aside) */
        uint64_t unjudged;      /* reads of a key that an order of unknown outcome touched */
        uint64_t dirty_reads;   /* reads that saw a cancelled order's effect or hold */
        uint64_t dirty_balance; /* of which balances */
        uint64_t dirty_stock;   /* of which stock */
        uint64_t total_reads;   /* reads of the totals judged (the same replies) */
        uint64_t dirty_total;   /* ... that saw a cancelled order's effect in the total */
        uint64_t dirty_orders;  /* cancelled orders whose effect some read saw */
        double visible_p50_ms;  /* over those orders: from the first to the last read that saw it */
        double visible_max_ms;
        uint64_t order_reads;  /* reads of a user's newest order */
        uint64_t pending_seen; /* ... that found it PENDING: an order mid-flight, visible */
} observe_result;

/* Judges every read against the orders of the run (their outcome now known), then frees
 * the observer. */
void observe_analyse(observer *ob, const load_result *run, observe_result *ret);

/* One read an observer made: the key's value as some instant in [t0, t1] saw it. A balance
 * or stock read is the available amount (GetBalance's and GetProduct's available: the total
 * less what TCC tries hold; outside tcc the total itself), what a client can spend or order;
 * the same reply's total is a read of its own, of kind _BALANCE_TOTAL or _STOCK_TOTAL. */
enum {
        OBSERVE_BALANCE = 0,       /* key: user; the available balance */
        OBSERVE_STOCK = 1,         /* key: product; the available stock */
        OBSERVE_ORDER = 2,         /* key: user; the status of the newest order */
        OBSERVE_BALANCE_TOTAL = 3, /* key: user; the balance */
        OBSERVE_STOCK_TOTAL = 4,   /* key: product; the stock */
};
typedef struct observe_read {
        int kind; /* OBSERVE_* */
        int64_t key;
        int64_t t0, t1;
        int64_t value; /* the available balance or stock, the total, or the order's status */
} observe_read;

/* The judge behind observe_analyse, on its own: reads against the run's orders, the
 * initial values coming from the workload. */
void observe_judge(const observe_read *reads, size_t n_reads, const load_result *run,
    const bench_workload *w, observe_result *ret);

#endif
