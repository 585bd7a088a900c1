/* events.c: the cart service's EventSink: order.completed removes the ordered lines. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "event.pb-c.h"
#include "cart_priv.h"
#include "cart_store.h"
#include "svc.h"
#include "txn.h"

#define TOPIC_ORDER_COMPLETED "order.completed"
#define CONSUMER_ORDER_COMPLETED "cart:order.completed"
#define EVENT_ID_MAX 64
#define EVENT_ITEMS_MAX 100
#define QUANTITY_MAX INT64_C(1000000000000)
#define TIME_MAX_MS INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */
#define TXN_ATTEMPTS 3

/* Checks an order.completed payload: the same rules in every consumer. */
static rpc_status
check_order_completed(rpc_call *call, const Mercato__Event__V1__OrderCompleted *oc)
{
        if (oc->order_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be > 0");
        }
        if (oc->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (oc->amount < 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "amount must be >= 0");
        }
        if (oc->n_items > EVENT_ITEMS_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "items must be 0..%d", EVENT_ITEMS_MAX);
        }
        if (oc->completed_at_ms < 0 || oc->completed_at_ms > TIME_MAX_MS) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "completed_at_ms out of range");
        }
        for (size_t i = 0; i < oc->n_items; i++) {
                const Mercato__Event__V1__OrderCompleted__Line *l = oc->items[i];

                if (l->product_id <= 0) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "product_id must be > 0");
                }
                if (l->quantity <= 0 || l->quantity > QUANTITY_MAX) {
                        return rpc_call_error(
                            call, RPC_INVALID_ARGUMENT, "quantity must be 1..1000000000000");
                }
        }
        return RPC_OK;
}

/* One attempt: the barrier, then the removal of the ordered lines, in one transaction.
 * Sets *ret_duplicate. */
static rpc_status
apply_order_completed(db_conn *db, const char *event_id,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate)
{
        int64_t ids[EVENT_ITEMS_MAX];
        rpc_status st;

        for (size_t i = 0; i < oc->n_items; i++) {
                ids[i] = oc->items[i]->product_id;
        }

        st = db_begin(db);
        if (st != RPC_OK) {
                return st;
        }
        st = txn_barrier_enter(db, CONSUMER_ORDER_COMPLETED, event_id);
        if (st == RPC_ALREADY_EXISTS) {
                db_rollback(db);
                *ret_duplicate = true;
                return RPC_OK;
        }
        if (st == RPC_OK) {
                st = cart_store_remove_ordered(db, oc->user_id, ids, oc->n_items);
        }
        if (st == RPC_OK) {
                st = db_commit(db);
        }
        if (st != RPC_OK) {
                db_rollback(db);
                return st;
        }
        *ret_duplicate = false;
        return RPC_OK;
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__OrderCompleted *oc;
        char err[256] = "";
        bool duplicate = false;
        rpc_status st;

        if (req->event_id[0] == '\0' || strlen(req->event_id) > EVENT_ID_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "event_id must be 1..%d bytes", EVENT_ID_MAX);
        }
        if (strcmp(req->topic, TOPIC_ORDER_COMPLETED) != 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
        }
        st = rpc_payload_unpack(&mercato__event__v1__order_completed__descriptor, req->payload.data,
            req->payload.len, &msg, err, sizeof(err));
        if (st != RPC_OK) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "bad payload: %s", err);
        }
        oc = (const Mercato__Event__V1__OrderCompleted *) msg;
        st = check_order_completed(call, oc);
        if (st != RPC_OK) {
                return st;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        for (int attempt = 1;; attempt++) {
                st = apply_order_completed(db, req->event_id, oc, &duplicate);
                if (st == RPC_OK || !db_retryable(st) || attempt == TXN_ATTEMPTS) {
                        break;
                }
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        resp->duplicate = duplicate;
        return RPC_OK;
}

const rpc_method cart_event_methods[CART_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
