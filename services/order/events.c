/* events.c: the order service's EventSink: the saga's last events complete or cancel the order. */
#include <string.h>

#include "event.pb-c.h"
#include "events_common.h"
#include "saga_priv.h"

#define AMOUNT_MAX INT64_C(1000000000000)

/* The reasons a saga order may be cancelled with. */
static const char *const reasons[] = {
        "out_of_stock",
        "insufficient_balance",
        "coupon_invalid",
        "payment_declined",
        SAGA_REASON_TIMEOUT,
};

static bool
known_reason(const char *reason)
{
        for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
                if (strcmp(reason, reasons[i]) == 0) {
                        return true;
                }
        }
        return false;
}

/* Checks what every topic here needs: an order, its user, and for a cancel its reason;
 * for payment.captured the amounts. */
static rpc_status
check_saga_order(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, bool captured)
{
        if (so->order_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be > 0");
        }
        if (so->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (!captured) {
                if (!known_reason(so->reason)) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown reason");
                }
                return RPC_OK;
        }
        if (so->total < 0 || so->total > AMOUNT_MAX || so->discount < 0 || so->discount > so->total
            || so->amount != so->total - so->discount) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "inconsistent amounts");
        }
        return RPC_OK;
}

/* payment.captured: the last step; the order completes, unless order.complete is
 * switched: `fail` cancels it (reason participant_error, failure branch "order") and
 * compensates every step, `timeout` does not answer, so that the saga deadline cancels it,
 * unless it ended already. */
static rpc_status
on_captured(rpc_call *call, svc *s, db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    order_saga_outcome *ret_end)
{
        order_rec rec;
        rpc_status st;

        switch (svc_step(svc_conf(s), "order", "complete")) {
        case SVC_STEP_TIMEOUT:
                st = order_store_get(db, so->order_id, &rec);
                if (st != RPC_OK) {
                        return st;
                }
                *ret_end = ORDER_SAGA_END_ALREADY;
                st = rec.status == ORDER_PENDING ? RPC_UNAVAILABLE : RPC_OK;
                order_rec_fini(&rec);
                if (st != RPC_OK) {
                        rpc_call_set_message(call, "order.complete does not answer (step switch)");
                }
                return st;
        case SVC_STEP_FAIL: {
                order_failure f;
                order_failure_set(&f, "order", RPC_INTERNAL, "order.complete failed (step switch)");
                /* On the PENDING order only: if it ended already, that end stands. */
                st = order_store_set_failure(db, so->order_id, &f);
                if (st != RPC_OK) {
                        return st;
                }
                return order_saga_cancel(
                    s, db, so->order_id, ORDER_REASON_PARTICIPANT_ERROR, true, ret_end);
        }
        case SVC_STEP_OK:
        default:
                return order_saga_complete(s, db, so->order_id, so->discount, ret_end);
        }
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__SagaOrder *so;
        svc *s = svc_of_call(call);
        order_saga_outcome end = ORDER_SAGA_END_ALREADY;
        bool captured;
        rpc_status st;

        st = events_check_id(call, req->event_id);
        if (st != RPC_OK) {
                return st;
        }
        captured = strcmp(req->topic, SAGA_TOPIC_PAYMENT_CAPTURED) == 0;
        if (!captured && strcmp(req->topic, SAGA_TOPIC_STOCK_REJECTED) != 0
            && strcmp(req->topic, SAGA_TOPIC_STOCK_RELEASED) != 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
        }
        st = events_saga_order(call, req, &msg);
        if (st != RPC_OK) {
                return st;
        }
        so = (const Mercato__Event__V1__SagaOrder *) msg;
        st = check_saga_order(call, so, captured);
        if (st != RPC_OK) {
                return st;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        if (captured) {
                st = on_captured(call, s, db, so, &end);
                if (st == RPC_UNAVAILABLE) {
                        return st; /* the message is set */
                }
        } else {
                /* A step failed and everything before it is undone: cancel with its reason. */
                st = order_saga_cancel(s, db, so->order_id, so->reason, false, &end);
        }
        if (st == RPC_NOT_FOUND) {
                return rpc_call_error(call, st, "no order %lld", (long long) so->order_id);
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        resp->duplicate = end == ORDER_SAGA_END_ALREADY;
        return RPC_OK;
}

const rpc_method order_event_methods[ORDER_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
