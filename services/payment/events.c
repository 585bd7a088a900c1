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
#include <string.h>

#include "event.pb-c.h"
#include "events_common.h"
#include "payment_priv.h"
#include "payment_store.h"
#include "svc.h"
#include "txn.h"

#define SAGA_CONSUMER "payment:saga"
#define SAGA_SOURCE "payment"
#define AMOUNT_MAX INT64_C(1000000000000)

/* What a saga step works on: the order and the topology (its step switch). */
typedef struct saga_arg {
        const Mercato__Event__V1__SagaOrder *so;
        const rpc_conf *conf;
} saga_arg;

/* balance.debited, behind the barrier key "capture:<order>": the capture, or the decline. */
static rpc_status
capture_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        const Mercato__Event__V1__SagaOrder *so = a->so;
        svc_step_result sw = svc_step(a->conf, "payment", "capture");
        bool declined = false;
        rpc_status st;

        if (sw == SVC_STEP_TIMEOUT) {
                return RPC_UNAVAILABLE;
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
                        return st;
                }
        }
        if (declined) {
                return events_saga_emit(
                    db, SAGA_SOURCE, "payment.declined", so, "payment_declined");
        }
        return events_saga_emit(db, SAGA_SOURCE, "payment.captured", so, NULL);
}

/* order.cancelled, behind the barrier key "refund:<order>": refunds the payment, if there
 * is one. Takes the capture key too, so that a capture that comes later does nothing. */
static rpc_status
refund_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        char key[64];
        rpc_status st;

        events_saga_key(key, sizeof(key), "capture", a->so->order_id);
        st = txn_barrier_enter(db, SAGA_CONSUMER, key);
        if (st == RPC_ALREADY_EXISTS) {
                st = RPC_OK; /* it ran (or was refused): undo what it did */
        }
        if (st == RPC_OK) {
                st = payment_store_refund(db, a->so->order_id);
        }
        return st;
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__SagaOrder *so;
        svc *s = svc_of_call(call);
        bool capture;
        bool duplicate = false;
        char key[64];
        rpc_status st;

        st = events_check_id(call, req->event_id);
        if (st != RPC_OK) {
                return st;
        }
        capture = strcmp(req->topic, "balance.debited") == 0;
        if (!capture && strcmp(req->topic, "order.cancelled") != 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
        }
        st = events_saga_order(call, req, &msg);
        if (st != RPC_OK) {
                return st;
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
        saga_arg arg = { .so = so, .conf = s != NULL ? svc_conf(s) : NULL };
        events_saga_key(key, sizeof(key), capture ? "capture" : "refund", so->order_id);
        st = txn_consume(
            db, SAGA_CONSUMER, key, capture ? capture_apply : refund_apply, &arg, &duplicate);
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
