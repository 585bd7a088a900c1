/* events.c: the payment service's EventSink: its saga step (capture) and its compensation.
 *
 * NOTES
 *
 * The saga step of the payment service (services/order/saga.c tells the whole chain), each
 * delivery one local transaction that enters its barrier keys (consumer "payment:saga"),
 * does its work with the store and adds the next event to the outbox:
 *
 *   balance.debited   enter "capture:<order>"; capture the amount -> payment.captured, or
 *                     payment.declined (rolled back to the savepoint after the barrier:
 *                     nothing captured, and the key stays taken)
 *   order.cancelled   enter "refund:<order>" and "capture:<order>"; refund the payment, if
 *                     there is one; no event
 *
 * A key that is taken means a duplicate or, for "capture:<order>", that the compensation
 * came first: the delivery is acked and nothing changes. The step switch payment.capture:
 * `fail` declines, `timeout` refuses the delivery (UNAVAILABLE) while the compensation has
 * not come.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "event.pb-c.h"
#include "payment_priv.h"
#include "payment_store.h"
#include "svc.h"
#include "txn.h"

#define SAGA_CONSUMER "payment:saga"
#define SAGA_SOURCE "payment"
#define EVENT_ID_MAX 64
#define AMOUNT_MAX INT64_C(1000000000000)
#define TXN_ATTEMPTS 3

static void
saga_key(char *buf, size_t len, const char *action, int64_t order_id)
{
        snprintf(buf, len, "%s:%" PRId64, action, order_id);
}

/* Rolls back and returns st. */
static rpc_status
undo(db_conn *db, rpc_status st)
{
        db_rollback(db);
        return st;
}

/* balance.debited: the capture, or the decline, in one transaction. */
static rpc_status
capture_tx(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, svc_step_result sw, bool *ret_duplicate)
{
        Mercato__Event__V1__SagaOrder ev = MERCATO__EVENT__V1__SAGA_ORDER__INIT;
        bool declined = false;
        char key[64];
        rpc_status st;

        saga_key(key, sizeof(key), "capture", so->order_id);
        st = db_begin(db);
        if (st != RPC_OK) {
                return st;
        }
        st = txn_barrier_enter(db, SAGA_CONSUMER, key);
        if (st == RPC_ALREADY_EXISTS) {
                *ret_duplicate = true; /* a duplicate, or the compensation came first */
                return undo(db, RPC_OK);
        }
        if (st != RPC_OK) {
                return undo(db, st);
        }
        if (sw == SVC_STEP_TIMEOUT) {
                return undo(db, RPC_UNAVAILABLE);
        }
        if (sw == SVC_STEP_FAIL) {
                declined = true;
        } else {
                st = db_command(db, "SAVEPOINT capture");
                if (st == RPC_OK) {
                        st = payment_store_capture(db, so->order_id, so->user_id, so->amount);
                }
                if (st == RPC_FAILED_PRECONDITION) {
                        declined = true;
                        st = db_command(db, "ROLLBACK TO SAVEPOINT capture");
                }
                if (st != RPC_OK) {
                        return undo(db, st);
                }
        }
        if (declined) {
                ev.order_id = so->order_id;
                ev.user_id = so->user_id;
                ev.coupon_id = so->coupon_id;
                ev.total = so->total;
                ev.reason = (char *) "payment_declined";
                st = txn_outbox_add(
                    db, SAGA_SOURCE, "payment.declined", so->order_id, &ev.base, NULL);
        } else {
                st = txn_outbox_add(
                    db, SAGA_SOURCE, "payment.captured", so->order_id, &so->base, NULL);
        }
        if (st == RPC_OK) {
                st = db_commit(db);
        }
        if (st != RPC_OK) {
                return undo(db, st);
        }
        *ret_duplicate = false;
        return RPC_OK;
}

/* order.cancelled: refunds the payment, if there is one. Takes the capture key too, so
 * that a capture that comes later does nothing. */
static rpc_status
refund_tx(db_conn *db, const Mercato__Event__V1__SagaOrder *so, bool *ret_duplicate)
{
        char key[64];
        rpc_status st;

        saga_key(key, sizeof(key), "refund", so->order_id);
        st = db_begin(db);
        if (st != RPC_OK) {
                return st;
        }
        st = txn_barrier_enter(db, SAGA_CONSUMER, key);
        if (st == RPC_ALREADY_EXISTS) {
                *ret_duplicate = true;
                return undo(db, RPC_OK);
        }
        if (st == RPC_OK) {
                saga_key(key, sizeof(key), "capture", so->order_id);
                st = txn_barrier_enter(db, SAGA_CONSUMER, key);
                if (st == RPC_ALREADY_EXISTS) {
                        st = RPC_OK; /* it ran (or was refused): undo what it did */
                }
        }
        if (st == RPC_OK) {
                st = payment_store_refund(db, so->order_id);
        }
        if (st == RPC_OK) {
                st = db_commit(db);
        }
        if (st != RPC_OK) {
                return undo(db, st);
        }
        *ret_duplicate = false;
        return RPC_OK;
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__SagaOrder *so;
        svc *s = svc_of_call(call);
        bool capture;
        bool duplicate = false;
        char err[256] = "";
        rpc_status st;

        if (req->event_id[0] == '\0' || strlen(req->event_id) > EVENT_ID_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "event_id must be 1..%d bytes", EVENT_ID_MAX);
        }
        capture = strcmp(req->topic, "balance.debited") == 0;
        if (!capture && strcmp(req->topic, "order.cancelled") != 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
        }
        if (svc_call_dataset(call) != SVC_DATASET_SPLIT) {
                return rpc_call_error(
                    call, RPC_FAILED_PRECONDITION, "no saga runs on the monolith dataset");
        }
        st = rpc_payload_unpack(&mercato__event__v1__saga_order__descriptor, req->payload.data,
            req->payload.len, &msg, err, sizeof(err));
        if (st != RPC_OK) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "bad payload: %s", err);
        }
        so = (const Mercato__Event__V1__SagaOrder *) msg;
        if (so->order_id <= 0 || so->user_id <= 0) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "order_id and user_id must be > 0");
        }
        if (capture && (so->amount < 0 || so->amount > AMOUNT_MAX)) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "amount must be 0..1000000000000");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        for (int attempt = 1;; attempt++) {
                st = capture ? capture_tx(db, so,
                         svc_step(s != NULL ? svc_conf(s) : NULL, "payment", "capture"), &duplicate)
                             : refund_tx(db, so, &duplicate);
                if (st == RPC_OK || !db_retryable(st) || attempt == TXN_ATTEMPTS) {
                        break;
                }
        }
        if (st == RPC_UNAVAILABLE) {
                return rpc_call_error(call, st, "payment.capture does not answer (step switch)");
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        if (!duplicate && capture) {
                svc_relay_wake(s, SVC_DATASET_SPLIT);
        }
        resp->duplicate = duplicate;
        return RPC_OK;
}

const rpc_method payment_event_methods[PAYMENT_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
