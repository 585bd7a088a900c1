/* load.h: the closed-loop PlaceOrder driver that compare, sweep and chaos share.
 *
 * N client threads each place orders of their own workload stream (bench_order_next) through
 * the order service's public RPC, one at a time, until the duration ends or *stop is set.
 * A reply of PENDING (the saga's deadline came first) is followed by GetOrder until the
 * order is terminal (bounded by terminal_wait_ms), so an order's latency is measured to its
 * terminal state. Every order attempted is recorded. */
#ifndef MERCATO_BENCH_LOAD_H
#define MERCATO_BENCH_LOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"
#include "workload.h"

/* One order attempted. Times are CLOCK_MONOTONIC nanoseconds (bench_now_ns). */
typedef struct load_order {
        int64_t order_id; /* 0 when no reply named one (the call failed) */
        bench_order want; /* what was asked, and what it was built to end as */
        int client;
        int64_t start_ns; /* PlaceOrder sent */
        int64_t reply_ns; /* PlaceOrder answered (or failed) */
        int64_t end_ns;   /* the terminal state was known; 0 if it never was */
        int status;       /* Mercato__Order__V1__OrderStatus last seen (0: none) */
        rpc_status rpc;   /* PlaceOrder's status; RPC_OK when it answered */
        bool transport;   /* the call failed without an answer: the outcome is unknown */
        bool acked;       /* PlaceOrder itself answered COMPLETED */
        bool counted;     /* started after the warm-up and before the end */
        int64_t amount;   /* what the user paid (COMPLETED) */
        char reason[24];  /* a CANCELLED order's reason */
        char key[40];     /* its idempotency key ("" unless keyed): PlaceOrder again with
                             it returns the order it placed, or places it once */
} load_order;

typedef struct load_opts {
        const char *order_address; /* the order service's URL */
        int mode;                  /* Mercato__Order__V1__Mode */
        const bench_workload *w;
        int clients;
        double warmup_s;          /* orders started earlier are recorded but not counted */
        double duration_s;        /* measured time after the warm-up */
        int64_t call_timeout_ms;  /* PlaceOrder's deadline (0: 10000) */
        int64_t terminal_wait_ms; /* how long to poll GetOrder after a PENDING reply (0: 30000) */
        bool keyed;               /* send an idempotency key, so failed calls are retried safely */
        int64_t think_ms;  /* pause between a client's orders (0: none; chaos may slow down) */
        atomic_bool *stop; /* may be NULL: set to end the run early */
        /* Called about every 200 ms from the driver's own thread while the run lasts (may be
         * NULL): elapsed seconds, orders finished, failed calls so far. */
        void (*progress)(void *arg, double elapsed_s, uint64_t orders, uint64_t errors);
        void *progress_arg;
        /* Called from each client thread when an order ends (may be NULL): observers use it
         * to learn which orders are in flight. */
        void (*on_start)(void *arg, const load_order *o);
        void (*on_end)(void *arg, const load_order *o);
        void *hook_arg;
} load_opts;

typedef struct load_result {
        load_order *orders; /* every order attempted, each client's in its order */
        size_t n_orders;
        int64_t t_start_ns; /* the run began (warm-up included) */
        int64_t t_warm_ns;  /* the warm-up ended */
        int64_t t_end_ns;   /* the last reply came */
        double seconds;     /* the measured window: t_end - t_warm, or the duration */
} load_result;

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* Runs the load. Returns RPC_OK, or an error (with err) when it could not start (the
 * order service unreachable, bad options). Failed calls during the run are recorded, not
 * errors of the run. Free the result with load_result_free. */
rpc_status load_run(const load_opts *o, load_result *ret, char *err, size_t errlen) RPC_WARN_UNUSED;

void load_result_free(load_result *r);

#endif
