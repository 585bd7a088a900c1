/* saga_tx.c: the order's own transactions in a saga: the order created, and its two ends. */
#include <stdio.h>

#include "event.pb-c.h"
#include "order_tx.h"
#include "txn.h"

/* The barrier consumer of the order's ends. */
#define SAGA_CONSUMER "order:saga"

/* Transactions that abort run again, up to this many times in all. */
#define SAGA_TX_ATTEMPTS 3

/* Adds order.created, the saga's first event, in the open transaction. */
static rpc_status
outbox_created(db_conn *db, const order_rec *rec)
{
        Mercato__Event__V1__SagaOrder ev = MERCATO__EVENT__V1__SAGA_ORDER__INIT;
        Mercato__Event__V1__SagaOrder__Line lines[ORDER_ITEMS_MAX];
        Mercato__Event__V1__SagaOrder__Line *ptrs[ORDER_ITEMS_MAX];

        for (size_t i = 0; i < rec->n_items; i++) {
                mercato__event__v1__saga_order__line__init(&lines[i]);
                lines[i].product_id = rec->items[i].product_id;
                lines[i].quantity = rec->items[i].quantity;
                lines[i].unit_price = rec->items[i].unit_price;
                ptrs[i] = &lines[i];
        }
        ev.order_id = rec->order_id;
        ev.user_id = rec->user_id;
        ev.coupon_id = rec->coupon_id;
        ev.total = rec->total;
        ev.items = ptrs;
        ev.n_items = rec->n_items;
        return txn_outbox_add(db, ORDER_SOURCE, "order.created", rec->order_id, &ev.base, NULL);
}

rpc_status
order_saga_create(db_conn *db, const order_new *on, bool first_event, int64_t *ret_order_id,
    int64_t *ret_created_at_ms)
{
        order_rec rec = { .user_id = on->user_id,
                .coupon_id = on->coupon_id,
                .total = on->total,
                .items = (order_line *) on->items,
                .n_items = on->n_items };
        rpc_status st;

        st = db_begin(db);
        if (st == RPC_OK) {
                st = order_store_create(db, on, &rec.order_id, &rec.created_at_ms);
        }
        if (st == RPC_OK && first_event) {
                st = outbox_created(db, &rec);
        }
        if (st != RPC_OK) {
                db_rollback(db);
                return st;
        }
        *ret_order_id = rec.order_id;
        *ret_created_at_ms = rec.created_at_ms;
        return RPC_OK;
}

/* The barrier key of an order's end. */
static void
terminal_key(char *buf, size_t len, int64_t order_id)
{
        snprintf(buf, len, "terminal:%lld", (long long) order_id);
}

/*
 * The ends of an order
 */

rpc_status
order_outbox_completed(db_conn *db, int64_t order_id, int64_t user_id, int64_t amount,
    const order_line *items, size_t n_items, int64_t completed_at_ms)
{
        Mercato__Event__V1__OrderCompleted ev = MERCATO__EVENT__V1__ORDER_COMPLETED__INIT;
        Mercato__Event__V1__OrderCompleted__Line lines[ORDER_ITEMS_MAX];
        Mercato__Event__V1__OrderCompleted__Line *ptrs[ORDER_ITEMS_MAX];
        size_t n = n_items <= ORDER_ITEMS_MAX ? n_items : ORDER_ITEMS_MAX;

        for (size_t i = 0; i < n; i++) {
                mercato__event__v1__order_completed__line__init(&lines[i]);
                lines[i].product_id = items[i].product_id;
                lines[i].quantity = items[i].quantity;
                lines[i].unit_price = items[i].unit_price;
                ptrs[i] = &lines[i];
        }
        ev.order_id = order_id;
        ev.user_id = user_id;
        ev.amount = amount;
        ev.items = ptrs;
        ev.n_items = n;
        ev.completed_at_ms = completed_at_ms;
        return txn_outbox_add(db, ORDER_SOURCE, "order.completed", order_id, &ev.base, NULL);
}

/* Adds order.cancelled, the compensation of every step, in the open transaction. */
static rpc_status
outbox_cancelled(db_conn *db, const order_rec *rec)
{
        Mercato__Event__V1__SagaOrder ev = MERCATO__EVENT__V1__SAGA_ORDER__INIT;

        ev.order_id = rec->order_id;
        ev.user_id = rec->user_id;
        ev.coupon_id = rec->coupon_id;
        ev.total = rec->total;
        ev.reason = rec->reason;
        return txn_outbox_add(db, ORDER_SOURCE, "order.cancelled", rec->order_id, &ev.base, NULL);
}

/* Rolls back and returns st. */
static rpc_status
undo(db_conn *db, rpc_status st)
{
        db_rollback(db);
        return st;
}

/* One attempt of an end. With complete, PENDING -> COMPLETED with discount; else PENDING ->
 * CANCELLED with reason (and order.cancelled when compensate). On DONE, *ret_rec holds the
 * order as it ended (order_rec_fini it). */
static rpc_status
end_once(db_conn *db, int64_t order_id, bool complete, int64_t discount, const char *reason,
    bool compensate, order_rec *ret_rec, order_saga_outcome *ret_end)
{
        char key[64];
        order_rec rec;
        rpc_status st;

        terminal_key(key, sizeof(key), order_id);
        st = db_begin(db);
        if (st != RPC_OK) {
                return st;
        }
        st = txn_barrier_enter(db, SAGA_CONSUMER, key);
        if (st == RPC_ALREADY_EXISTS) {
                *ret_end = ORDER_SAGA_END_ALREADY;
                return undo(db, RPC_OK);
        }
        if (st != RPC_OK) {
                return undo(db, st);
        }
        st = order_store_get(db, order_id, &rec);
        if (st != RPC_OK) {
                return undo(db, st);
        }
        if (rec.status != ORDER_PENDING) {
                order_rec_fini(&rec);
                *ret_end = ORDER_SAGA_END_ALREADY;
                return undo(db, RPC_OK);
        }
        if (complete && (discount < 0 || discount > rec.total)) {
                order_rec_fini(&rec);
                return undo(db, RPC_INVALID_ARGUMENT);
        }
        order_rec_fini(&rec);
        st = complete ? order_store_complete(db, order_id, discount, NULL)
                      : order_store_cancel(db, order_id, reason);
        if (st != RPC_OK) {
                return undo(db, st);
        }
        st = order_store_get(db, order_id, &rec);
        if (st != RPC_OK) {
                return undo(db, st);
        }
        if (complete) {
                st = order_outbox_completed(db, rec.order_id, rec.user_id, rec.amount, rec.items,
                    rec.n_items, rec.updated_at_ms);
        } else if (compensate) {
                st = outbox_cancelled(db, &rec);
        }
        if (st == RPC_OK) {
                st = db_commit(db);
        }
        if (st != RPC_OK) {
                order_rec_fini(&rec);
                return undo(db, st);
        }
        *ret_rec = rec;
        *ret_end = ORDER_SAGA_END_DONE;
        return RPC_OK;
}

rpc_status
order_saga_end(db_conn *db, int64_t order_id, bool complete, int64_t discount, const char *reason,
    bool compensate, order_rec *ret_rec, order_saga_outcome *ret_end)
{
        rpc_status st;

        for (int attempt = 1;; attempt++) {
                st = end_once(
                    db, order_id, complete, discount, reason, compensate, ret_rec, ret_end);
                if (st == RPC_OK || !db_retryable(st) || attempt == SAGA_TX_ATTEMPTS) {
                        return st;
                }
        }
}
