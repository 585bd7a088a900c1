/* payment_store.h: the payment service's SQL: one payment per order, captured or refunded. */
#ifndef MERCATO_PAYMENT_STORE_H
#define MERCATO_PAYMENT_STORE_H

#include <stdint.h>

#include "db.h"
#include "seed.h"

/*
 * The functions work on their own (each is one statement, or a read after one) or inside
 * the caller's open transaction; inside one, the caller rolls back when a function fails.
 * Errors other than the ones listed map the SQLSTATE; db_errmsg says more.
 */

/* Every statement of the store, names prefixed "payment_"; prepare on each connection that
 * calls the functions below (the monolith connection of the order service included). */
extern const db_stmt_table payment_stmts;

/* Tables payments, declined_users (component "payment"). */
extern const db_migration_set payment_migrations;

typedef enum payment_state {
        PAYMENT_CAPTURED = 1,   /* the money is taken; same number as the proto's */
        PAYMENT_REFUNDED = 2,   /* given back */
        PAYMENT_AUTHORIZED = 3, /* a TCC try: promised, not taken */
        PAYMENT_VOIDED = 4,     /* a TCC try cancelled */
} payment_state;

typedef struct payment_rec {
        int64_t payment_id;
        int64_t order_id;
        int64_t user_id;
        int64_t amount;
        payment_state status;
        int64_t created_at_ms;
        int64_t updated_at_ms;
} payment_rec;

/* Captures amount (>= 0) for order_id. FAILED_PRECONDITION "payment_declined" when the
 * user's payments decline (declined_users), and also when the order's payment was
 * refunded already (a capture after its compensation). Idempotent: a second capture of a
 * captured order is OK and adds no row. */
rpc_status payment_store_capture(
    db_conn *db, int64_t order_id, int64_t user_id, int64_t amount) RPC_WARN_UNUSED;

/* A TCC try (mode tcc): payment_store_capture, but the payment is 'authorized'. The same
 * statuses; an order authorised before is OK. */
rpc_status payment_store_authorize(
    db_conn *db, int64_t order_id, int64_t user_id, int64_t amount) RPC_WARN_UNUSED;

/* Settles the order's authorised payment: captured with confirm, else voided. *ret_rows is 1
 * when there was one. */
rpc_status payment_store_settle(
    db_conn *db, int64_t order_id, bool confirm, int64_t *ret_rows) RPC_WARN_UNUSED;

/* Marks the order's captured payment refunded. OK when there is none or it is refunded. */
rpc_status payment_store_refund(db_conn *db, int64_t order_id) RPC_WARN_UNUSED;

/* The payment of an order into *ret_rec. NOT_FOUND if it has none. */
rpc_status payment_store_get(db_conn *db, int64_t order_id, payment_rec *ret_rec) RPC_WARN_UNUSED;

/* In one transaction of its own: empties payments and declined_users, then
 * declares the last s->declining_users user ids (of 1..s->users) declining. */
rpc_status payment_store_seed(db_conn *db, const svc_seed *s) RPC_WARN_UNUSED;

#endif
