/* order_tx.h: the order's own transactions in each mode, over a connection and no RPC.
 *
 * The order service runs them for PlaceOrder and for its EventSink, and the SQL replay
 * (mercato-bench replay) runs the very same functions, so both issue the same statements in
 * the same transactions. The RPC around them (pricing, the participants, the waiters) stays
 * in saga.c, tpc.c and monolith.c. */
#ifndef MERCATO_ORDER_TX_H
#define MERCATO_ORDER_TX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "order_store.h"
#include "product_store.h"
#include "rpc.h"
#include "tpc.h"

/* The outbox source of the order service (its relay drains it). */
#define ORDER_SOURCE "order"

/* A PlaceOrder request after validation: the lines by product id, prices unknown. */
typedef struct order_request {
        int64_t user_id;
        int64_t coupon_id; /* 0 for none */
        order_line lines[ORDER_ITEMS_MAX];
        size_t n_lines;
        const char *idempotency_key; /* "" for none */
} order_request;

/* In the open transaction: adds order.completed for a completed order (the amount paid,
 * the lines with their prices, the completion time). */
rpc_status order_outbox_completed(db_conn *db, int64_t order_id, int64_t user_id, int64_t amount,
    const order_line *items, size_t n_items, int64_t completed_at_ms) RPC_WARN_UNUSED;

/*
 * monolith (monolith_tx.c has the NOTES)
 */

/* How an order in the monolith ended. */
typedef enum order_mono_outcome {
        ORDER_MONO_COMPLETED = 0, /* committed */
        ORDER_MONO_CANCELLED = 1, /* a business rule failed: recorded CANCELLED, reason set */
        ORDER_MONO_ERROR = 2,     /* bad input or a failure; rolled back, st and msg set */
        ORDER_MONO_EXISTS = 3,    /* the idempotency key's order exists; rolled back */
} order_mono_outcome;

/* One order in flight. The caller sets r, conf and n (= r->n_lines) and zeroes the rest. */
typedef struct order_mono {
        const order_request *r;
        const rpc_conf *conf;                /* the topology, for the step switches; may be NULL */
        product_item items[ORDER_ITEMS_MAX]; /* the lines, priced */
        order_line lines[ORDER_ITEMS_MAX];
        size_t n;
        int64_t order_id;
        int64_t total;
        int64_t discount;
        int64_t created_at_ms;
        int64_t updated_at_ms;
        const char *reason;    /* ORDER_MONO_CANCELLED */
        order_failure failure; /* ORDER_MONO_CANCELLED with reason participant_error */
        rpc_status st;         /* ORDER_MONO_ERROR */
        char msg[256];         /* ORDER_MONO_ERROR */
} order_mono;

/* The whole order as one local transaction on the monolith database, run again while it
 * aborts; a business failure is then recorded CANCELLED in a small transaction. */
order_mono_outcome order_monolith_run(db_conn *db, order_mono *o);

/*
 * saga (saga.c has the NOTES)
 */

/* How an end came out. */
typedef enum order_saga_outcome {
        ORDER_SAGA_END_DONE = 0,    /* this call made the order terminal */
        ORDER_SAGA_END_ALREADY = 1, /* it was terminal already (or ended meanwhile) */
} order_saga_outcome;

/* Opens a transaction with the order PENDING and, with first_event, order.created in the
 * outbox. On OK the transaction is open: the caller commits it (or rolls back); on failure
 * it is rolled back (ALREADY_EXISTS: the idempotency key is taken). */
rpc_status order_saga_create(db_conn *db, const order_new *on, bool first_event,
    int64_t *ret_order_id, int64_t *ret_created_at_ms) RPC_WARN_UNUSED;

/* An end of a saga order, one transaction behind the barrier key "terminal:<order>" of
 * consumer "order:saga", run again while it aborts: with complete, PENDING -> COMPLETED with
 * discount and order.completed; else PENDING -> CANCELLED with reason, and order.cancelled
 * when compensate. On DONE *ret_rec holds the order as it ended (order_rec_fini it).
 * NOT_FOUND for an unknown order. */
rpc_status order_saga_end(db_conn *db, int64_t order_id, bool complete, int64_t discount,
    const char *reason, bool compensate, order_rec *ret_rec,
    order_saga_outcome *ret_end) RPC_WARN_UNUSED;

/*
 * 2pc (tpc.c has the NOTES)
 */

/* One transaction, run again while it aborts: the order (on, PENDING with its id drawn)
 * and the coordinator's log row of gid, undecided, with the branch names. */
rpc_status order_tpc_begin(db_conn *db, const order_new *on, const char *gid,
    const char *coordinator, const char *branches, int64_t *ret_created_at_ms) RPC_WARN_UNUSED;

/* The coordinator's own branch, run again while it aborts: the marker, the order COMPLETED
 * with discount, order.completed, PREPARE TRANSACTION own_gid. OK when prepared; else the
 * status (rolled back: a "no"). */
rpc_status order_tpc_prepare_own(db_conn *db, const char *own_gid, int64_t order_id,
    int64_t user_id, int64_t total, int64_t discount, const order_line *lines, size_t n,
    int64_t *ret_updated_at_ms) RPC_WARN_UNUSED;

/* Inside the open transaction, once every branch confirmed (txn_tpc_ops.finished): an
 * aborted order is CANCELLED with the log row's reason (timeout when none: presumed abort)
 * and, for participant_error, the branch that failed, idempotently. */
rpc_status order_tpc_finished(db_conn *db, const txn_tpc_log_rec *rec) RPC_WARN_UNUSED;

#endif
