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
 *
 * The transactions themselves are in steps.c (payment_steps.h), which the SQL replay
 * (mercato-bench replay) runs too; this file decodes, checks and answers.
 */
#include <string.h>

#include "event.pb-c.h"
#include "events_common.h"
#include "payment_priv.h"
#include "payment_steps.h"
#include "payment_store.h"
#include "svc.h"
#include "txn.h"

#define AMOUNT_MAX INT64_C(1000000000000)

/* One saga action on a SagaOrder, the capture or its refund: checks it, then runs it in
 * one local transaction, retried when it aborts: for a delivery (orch NULL) the capture
 * adds the next event, for an orchestrator's command the outcome goes into *orch. */
static rpc_status
saga_run(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, bool capture, txn_outcome *orch,
    bool *ret_duplicate)
{
        svc *s = svc_of_call(call);
        svc_step_result sw = svc_step(s != NULL ? svc_conf(s) : NULL, "payment", "capture");
        rpc_status st;

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
        if (orch != NULL) {
                st = capture ? payment_orch_capture(db, so, sw, orch, ret_duplicate)
                             : payment_orch_refund(db, so, orch, ret_duplicate);
        } else {
                st = capture ? payment_saga_capture(db, so, sw, ret_duplicate)
                             : payment_saga_refund(db, so, ret_duplicate);
        }
        if (st == RPC_UNAVAILABLE) {
                return rpc_call_error(call, st, "payment.capture does not answer (step switch)");
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        return RPC_OK;
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        bool capture;
        bool duplicate = false;
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
        if (st == RPC_OK) {
                st = saga_run(
                    call, (const Mercato__Event__V1__SagaOrder *) msg, capture, NULL, &duplicate);
        }
        if (st != RPC_OK) {
                return st;
        }
        if (!duplicate && capture) {
                svc_relay_wake(svc_of_call(call), SVC_DATASET_SPLIT);
        }
        resp->duplicate = duplicate;
        return RPC_OK;
}

/* A TCC coordinator's command: a phase of the payment branch. */
static rpc_status
run_tcc(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    txn_outcome *out, bool *ret_duplicate)
{
        svc *s = svc_of_call(call);
        svc_step_result sw = svc_step(s != NULL ? svc_conf(s) : NULL, "payment", "capture");
        rpc_status st;

        if (so->order_id <= 0 || so->user_id <= 0) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "order_id and user_id must be > 0");
        }
        if (phase == EVENTS_TCC_TRY && (so->amount < 0 || so->amount > AMOUNT_MAX)) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "amount must be 0..1000000000000");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = payment_tcc(db, so, phase, sw, out, ret_duplicate);
        return events_tcc_status(call, db, st, "payment.capture", phase);
}

/* An orchestrator's command: capture (saga_run's capture true), or its compensation refund. */
RPC_HANDLER(handle_run, Mercato__Txn__V1__SagaCommand, Mercato__Txn__V1__SagaCommandReply)
{
        return events_command_run(call, req, "capture", "refund", saga_run, run_tcc, resp);
}

const rpc_method payment_command_methods[EVENTS_N_COMMAND_METHODS] = {
        RPC_METHOD_ENTRY("Run", handle_run, mercato__txn__v1__saga_command__descriptor,
            mercato__txn__v1__saga_command_reply__descriptor, RPC_METHOD_IDEMPOTENT),
};

const rpc_method payment_event_methods[PAYMENT_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
