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
#include "event.pb-c.h"
#include "order_store.h"
#include "product_store.h"
#include "rpc.h"
#include "svc.h"
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
 * orchestration (orch.c has the NOTES): the saga log, orch_saga and orch_step; and tcc
 * (tcc.c has the NOTES), whose coordinator log is the same two tables, with a branch per
 * step and a confirm phase between forward and completed. The order's mode tells which.
 */

/* The steps (the branches, in tcc), in order; the step number is the index + 1. */
#define ORDER_ORCH_STEPS 3

typedef enum order_orch_step_state {
        ORDER_ORCH_PENDING = 0,      /* not sent yet */
        ORDER_ORCH_SENT = 1,         /* sent, no answer recorded: done or not, nobody knows */
        ORDER_ORCH_DONE = 2,         /* the participant did it */
        ORDER_ORCH_REFUSED = 3,      /* the participant said no: nothing was done */
        ORDER_ORCH_COMPENSATING = 4, /* its compensation was sent, not yet answered */
        ORDER_ORCH_COMPENSATED = 5,  /* undone (or never done, and now it never will be) */
        ORDER_ORCH_CONFIRMING = 6,   /* tcc: its confirm was sent, not yet answered */
        ORDER_ORCH_CONFIRMED = 7,    /* tcc: what its try held is spent */
} order_orch_step_state;

typedef enum order_orch_state {
        ORDER_ORCH_FORWARD = 0,   /* the steps run, in order */
        ORDER_ORCH_BACKWARD = 1,  /* the compensations run, in reverse */
        ORDER_ORCH_COMPLETED = 2, /* the order COMPLETED */
        ORDER_ORCH_CANCELLED = 3, /* the order CANCELLED, everything undone */
        ORDER_ORCH_DECIDED = 4,   /* tcc: every try held, the confirms run ("confirming") */
} order_orch_state;

/* The command of a step (1-based): "reserve", "debit", "capture"; "" for none. */
const char *order_orch_step_name(int step);

/* "pending", "sent", ...; "forward", "backward", ... */
const char *order_orch_step_state_name(order_orch_step_state st);
const char *order_orch_state_name(order_orch_state st);

typedef struct order_orch_step {
        order_orch_step_state state;
        int attempts;      /* commands sent */
        int compensations; /* compensations sent */
        char last_error[320];
} order_orch_step;

/* A saga as its log holds it. */
typedef struct order_orch_saga {
        int64_t order_id;
        order_orch_state state;
        char reason[65];
        int64_t discount;
        order_failure failure;    /* set when reason is participant_error */
        int64_t deadline_in_ms;   /* until the deadline by the database's clock; <= 0: passed */
        int64_t deadline_mono_ms; /* the deadline on this process's monotonic clock (a move's) */
        order_orch_step steps[ORDER_ORCH_STEPS];
} order_orch_saga;

/* The statements of the saga log, on the order service's own connections. */
extern const db_stmt_table order_orch_stmts;

/* One transaction, run again while it aborts: the order (on, PENDING, mode orchestration
 * or tcc) with its saga forward, every step pending, and the deadline timeout_ms from now.
 * ALREADY_EXISTS: the idempotency key is taken (rolled back). */
rpc_status order_orch_create(db_conn *db, const order_new *on, int64_t timeout_ms,
    int64_t *ret_order_id, int64_t *ret_created_at_ms) RPC_WARN_UNUSED;

/* How a command came out. */
typedef enum order_orch_cmd {
        ORDER_ORCH_CMD_DONE = 0,    /* the participant did it (or had) */
        ORDER_ORCH_CMD_REFUSED = 1, /* a business "no": reason */
        ORDER_ORCH_CMD_RETRY = 2,   /* no answer, or one that may pass: send it again */
        ORDER_ORCH_CMD_ERROR = 3,   /* an error answer: failure */
} order_orch_cmd;

typedef struct order_orch_answer {
        char reason[65];       /* REFUSED */
        int64_t discount;      /* DONE, the user step's */
        order_failure failure; /* ERROR */
        char error[320];       /* anything but DONE: for the step's last_error */
} order_orch_answer;

/* Who carries the commands, and the service's hooks. The order service sends them by RPC
 * (orch.c); the SQL replay runs the participants' functions in process. */
typedef struct order_orch_driver {
        /* Sends action ("reserve", "release", ...) of step (1-based) for so, waiting at most
         * timeout_ms; fills *a. */
        order_orch_cmd (*command)(void *arg, int step, const char *action,
            const Mercato__Event__V1__SagaOrder *so, int64_t timeout_ms, order_orch_answer *a);
        /* At each crash point: kind "sent", "answered", "undo", "confirm" with the step,
         * "decide" (tcc: before the decision to confirm commits) and "finish" with 0. NULL
         * for none. */
        void (*point)(void *arg, const char *kind, int step);
        /* After an order COMPLETED (its order.completed is in the outbox). NULL for none. */
        void (*completed)(void *arg);
        void *arg;
        svc_step_result complete_sw; /* the switch order.complete */
        int64_t call_timeout_ms;     /* a command's own limit */
        int stuck_after;             /* compensations of a step before it is reported */
} order_orch_driver;

/* The compensation of a step (1-based): "release", "refund"; "" for none. */
const char *order_orch_undo_name(int step);

/* One move of a saga (or, for an order of mode tcc, of its TCC transaction): a step, a
 * compensation, a confirm, or its end, each change of state committed
 * before the command that follows it, and the commands done within budget_ms. Returns OK
 * with *ret_terminal and *rec (the order as it ended; order_rec_fini it), or with *ret_wait,
 * the backoff before the next move (0: move again now); else the database's status. */
rpc_status order_orch_move(db_conn *db, const order_orch_driver *d, const order_rec *order,
    int64_t budget_ms, order_orch_saga *g, int64_t *ret_wait, bool *ret_terminal,
    order_rec *rec) RPC_WARN_UNUSED;

/* Reads a saga's log. NOT_FOUND if the order has none. */
rpc_status order_orch_load(db_conn *db, int64_t order_id, order_orch_saga *ret) RPC_WARN_UNUSED;

/* Commits a step's new state (1-based step), counting one more command or compensation
 * sent when `sent`, with last_error (NULL keeps it). */
rpc_status order_orch_step_set(db_conn *db, int64_t order_id, int step, order_orch_step_state state,
    bool sent, const char *last_error) RPC_WARN_UNUSED;

/* The user step done, in one transaction: the step and the discount it gave. */
rpc_status order_orch_step_done(
    db_conn *db, int64_t order_id, int step, int64_t discount) RPC_WARN_UNUSED;

/* Forward -> backward, in one transaction with the step that caused it (0: none, as for a
 * deadline): its new state (REFUSED for a "no", else left alone) and last_error. The
 * reason, and f for participant_error (else NULL). */
rpc_status order_orch_backward(db_conn *db, int64_t order_id, int step, const char *reason,
    const order_failure *f, const char *last_error) RPC_WARN_UNUSED;

/* The end, in one transaction: with complete, from (forward; confirming in tcc) -> completed
 * and the order
 * COMPLETED with the discount and order.completed; else backward -> cancelled and the
 * order CANCELLED with the saga's reason and failure. On OK *ret_rec is the order as it
 * ended (order_rec_fini it). FAILED_PRECONDITION when the saga is not in the state to end
 * so (another driver ended it). */
rpc_status order_orch_finish(db_conn *db, int64_t order_id, bool complete, order_orch_state from,
    order_rec *ret_rec) RPC_WARN_UNUSED;

/* tcc: forward -> confirming, the decision, once every branch tried. FAILED_PRECONDITION
 * when the transaction is not forward any more. */
rpc_status order_orch_confirm(db_conn *db, int64_t order_id) RPC_WARN_UNUSED;

/* Puts off recovery's next look at a saga by delay_ms. */
rpc_status order_orch_defer(db_conn *db, int64_t order_id, int64_t delay_ms) RPC_WARN_UNUSED;

/* The unfinished sagas due for recovery, oldest first, at most limit of them, into ids
 * (room for limit). */
rpc_status order_orch_due(db_conn *db, int limit, int64_t *ids, size_t *ret_n) RPC_WARN_UNUSED;

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
