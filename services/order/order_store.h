/* order_store.h: the order service's SQL: orders with their items, their states and history. */
#ifndef MERCATO_ORDER_STORE_H
#define MERCATO_ORDER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "seed.h"

/*
 * Every function works on its own or inside the caller's open transaction (the monolith
 * order runs them all in one). Outside one, a function that writes more than one statement
 * runs in a transaction of its own. Inside one, the caller rolls back when it fails.
 * Errors other than the ones listed map the SQLSTATE; db_errmsg says more.
 */

/* Every statement of the store, names prefixed "order_"; prepare on each connection that
 * calls the functions below. */
extern const db_stmt_table order_stmts;

/* Tables orders, order_items (component "order"). */
extern const db_migration_set order_migrations;

/* An order has at most this many items. */
#define ORDER_ITEMS_MAX 100

typedef enum order_state {
        ORDER_PENDING = 1,   /* in flight; same numbers as the proto's OrderStatus */
        ORDER_COMPLETED = 2, /* every step done */
        ORDER_CANCELLED = 3, /* a step failed; everything before it was undone */
} order_state;

/* The transaction modes of the order flow: the enumerator, its number (the proto's Mode,
 * contiguous from 1) and its name in the database and the topology file. A new mode adds a
 * line here, an entry to the table in modes.c and its own file. */
#define ORDER_MODES(X)                                                                             \
        X(ORDER_MODE_SAGA, 1, "saga")                                                              \
        X(ORDER_MODE_TWO_PC, 2, "2pc")                                                             \
        X(ORDER_MODE_MONOLITH, 3, "monolith")                                                      \
        X(ORDER_MODE_ORCHESTRATION, 4, "orchestration")                                            \
        X(ORDER_MODE_TCC, 5, "tcc")

typedef enum order_mode {
#define ORDER_MODE_ENUM(e, n, name) e = n,
        ORDER_MODES(ORDER_MODE_ENUM)
#undef ORDER_MODE_ENUM
            ORDER_MODE_END /* one past the last */
} order_mode;

typedef struct order_line {
        int64_t product_id;
        int64_t quantity;
        int64_t unit_price;
} order_line;

/* The cancel reason of an order whose branch or step answered with an error instead of a
 * vote or a business "no"; order_failure says which and how. */
#define ORDER_REASON_PARTICIPANT_ERROR "participant_error"

/* What failed, for an order cancelled with ORDER_REASON_PARTICIPANT_ERROR: empty strings
 * otherwise. */
typedef struct order_failure {
        char branch[65];   /* "product", "user", "payment" or "order" (a branch name) */
        char status[24];   /* rpc_status_name: "UNAVAILABLE" */
        char message[256]; /* what the branch or the transport said */
} order_failure;

/* Fills f from a status and a printf-style message (cut to fit). */
void order_failure_set(order_failure *f, const char *branch, rpc_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What order_store_create writes. */
typedef struct order_new {
        int64_t order_id; /* 0: a fresh id from the sequence; else this one, which
                                        must come from the sequence (an id an earlier, rolled
                                        back transaction drew) */
        int64_t user_id;
        const order_line *items; /* 1..ORDER_ITEMS_MAX, borrowed */
        size_t n_items;
        int64_t total; /* before the discount */
        int64_t discount;
        int64_t coupon_id; /* 0 for none */
        order_mode mode;
        order_state status;           /* PENDING, or CANCELLED to record a failed order */
        const char *reason;           /* NULL or "" unless CANCELLED */
        const char *idempotency_key;  /* NULL or "" for none */
        const order_failure *failure; /* NULL, or what failed (reason participant_error) */
} order_new;

/* An order as read back. reason and items are malloc'd: order_rec_fini frees them. */
typedef struct order_rec {
        int64_t order_id;
        int64_t user_id;
        order_state status;
        char *reason;
        int64_t total;
        int64_t discount;
        int64_t amount;
        int64_t coupon_id; /* 0 for none */
        order_mode mode;
        int64_t created_at_ms;
        int64_t updated_at_ms;
        order_line *items; /* by product id */
        size_t n_items;
        order_failure failure; /* set when reason is participant_error */
} order_rec;

/* Frees what a rec holds (not the rec). Accepts NULL. */
void order_rec_fini(order_rec *r);

/* Frees an array of recs from order_store_list. Accepts NULL. */
void order_recs_free(order_rec *recs, size_t n);

/* The name of a mode in the database and the topology file ("saga", "2pc", "monolith"),
 * and back (0 for an unknown name). */
const char *order_mode_name(order_mode mode);

/* "PENDING", "COMPLETED", "CANCELLED"; "" for a number that is not a state. */
const char *order_state_name(order_state state);
order_mode order_mode_from_name(const char *name);

/* Draws a fresh order id from the sequence. */
rpc_status order_store_next_id(db_conn *db, int64_t *ret_order_id) RPC_WARN_UNUSED;

/* Creates an order with its items (amount = total - discount). *ret_order_id is its id,
 * *ret_created_at_ms (may be NULL) its creation time. ALREADY_EXISTS if the idempotency key
 * or the id is taken; INVALID_ARGUMENT for no items or more than ORDER_ITEMS_MAX. */
rpc_status order_store_create(db_conn *db, const order_new *o, int64_t *ret_order_id,
    int64_t *ret_created_at_ms) RPC_WARN_UNUSED;

/* PENDING -> COMPLETED, with the discount the coupon gave (amount becomes total -
 * discount). Idempotent: OK if COMPLETED already. *ret_updated_at_ms (may be NULL) is the
 * time of the change. NOT_FOUND for no such order, FAILED_PRECONDITION if CANCELLED. */
rpc_status order_store_complete(
    db_conn *db, int64_t order_id, int64_t discount, int64_t *ret_updated_at_ms) RPC_WARN_UNUSED;

/* PENDING -> CANCELLED with a reason. Idempotent: OK if CANCELLED already. NOT_FOUND for
 * no such order, FAILED_PRECONDITION if COMPLETED. */
rpc_status order_store_cancel(db_conn *db, int64_t order_id, const char *reason) RPC_WARN_UNUSED;

/* order_store_cancel, also recording what failed (f may be NULL: nothing). */
rpc_status order_store_cancel_failed(
    db_conn *db, int64_t order_id, const char *reason, const order_failure *f) RPC_WARN_UNUSED;

/* Records what failed on a PENDING order (cancel it next, with reason
 * ORDER_REASON_PARTICIPANT_ERROR). OK also when the order is no longer PENDING: the first
 * end won, and its record stands. */
rpc_status order_store_set_failure(
    db_conn *db, int64_t order_id, const order_failure *f) RPC_WARN_UNUSED;

/* One order with its items into *ret_rec (order_rec_fini it). NOT_FOUND if none. */
rpc_status order_store_get(db_conn *db, int64_t order_id, order_rec *ret_rec) RPC_WARN_UNUSED;

/* The order an idempotency key created, like order_store_get. NOT_FOUND if none. */
rpc_status order_store_find_key(
    db_conn *db, const char *idempotency_key, order_rec *ret_rec) RPC_WARN_UNUSED;

/* A user's orders, newest first, with ids below before_id (0: from the newest), at most
 * limit (1..ORDER_ITEMS_MAX) of them, with their items, in a malloc'd array
 * (order_recs_free it). *ret_next_before_id is the cursor of the next page, 0 when this is
 * the last. */
rpc_status order_store_list(db_conn *db, int64_t user_id, int64_t before_id, int limit,
    order_rec **ret_recs, size_t *ret_n, int64_t *ret_next_before_id) RPC_WARN_UNUSED;

/* A PENDING order and the milliseconds until its deadline (0 once it has passed). */
typedef struct order_due {
        int64_t order_id;
        int64_t due_in_ms;
} order_due;

/* The oldest PENDING orders of a mode, by id, at most limit (1..ORDER_ITEMS_MAX) of them,
 * into ret_due (room for limit), each with the milliseconds until it is age_ms old by the
 * database's clock (0 once it is): the saga's deadline scan. *ret_n is how many. */
rpc_status order_store_pending_due(db_conn *db, order_mode mode, int64_t age_ms, int limit,
    order_due *ret_due, size_t *ret_n) RPC_WARN_UNUSED;

/* In one transaction of its own: empties orders and order_items (txn_reset empties the txn tables). */
rpc_status order_store_seed(db_conn *db, const svc_seed *s) RPC_WARN_UNUSED;

#endif
