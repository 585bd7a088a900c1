/* events_common.c: what the services' EventSinks share: payload checks and saga helpers. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "events_common.h"
#include "svc.h"
#include "txn.h"

rpc_status
events_check_id(rpc_call *call, const char *event_id)
{
        if (event_id[0] == '\0' || strlen(event_id) > EVENTS_ID_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "event_id must be 1..%d bytes", EVENTS_ID_MAX);
        }
        return RPC_OK;
}

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
        if (oc->n_items > EVENTS_ITEMS_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "items must be 0..%d", EVENTS_ITEMS_MAX);
        }
        if (oc->completed_at_ms < 0 || oc->completed_at_ms > EVENTS_TIME_MAX_MS) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "completed_at_ms out of range");
        }
        for (size_t i = 0; i < oc->n_items; i++) {
                const Mercato__Event__V1__OrderCompleted__Line *l = oc->items[i];

                if (l->product_id <= 0) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "product_id must be > 0");
                }
                if (l->quantity <= 0 || l->quantity > EVENTS_QUANTITY_MAX) {
                        return rpc_call_error(
                            call, RPC_INVALID_ARGUMENT, "quantity must be 1..1000000000000");
                }
        }
        return RPC_OK;
}

rpc_status
events_order_completed(
    rpc_call *call, const Mercato__Event__V1__Event *req, ProtobufCMessage **ret_msg)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        char err[256] = "";
        rpc_status st;

        st = rpc_payload_unpack(&mercato__event__v1__order_completed__descriptor, req->payload.data,
            req->payload.len, &msg, err, sizeof(err));
        if (st != RPC_OK) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "bad payload: %s", err);
        }
        st = check_order_completed(call, (const Mercato__Event__V1__OrderCompleted *) msg);
        if (st != RPC_OK) {
                return st;
        }
        *ret_msg = msg;
        msg = NULL; /* handed on */
        return RPC_OK;
}

rpc_status
events_deliver_order_completed(rpc_call *call, const Mercato__Event__V1__Event *req,
    events_completed_fn apply, bool *ret_duplicate)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        rpc_status st;

        st = events_order_completed(call, req, &msg);
        if (st != RPC_OK) {
                return st;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = apply(db, req, (const Mercato__Event__V1__OrderCompleted *) msg, ret_duplicate);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        return RPC_OK;
}

rpc_status
events_sink_order_completed(rpc_call *call, const Mercato__Event__V1__Event *req,
    events_completed_fn apply, Mercato__Event__V1__DeliverAck *resp)
{
        bool duplicate = false;
        rpc_status st;

        st = events_check_id(call, req->event_id);
        if (st != RPC_OK) {
                return st;
        }
        if (strcmp(req->topic, EVENTS_TOPIC_ORDER_COMPLETED) != 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
        }
        st = events_deliver_order_completed(call, req, apply, &duplicate);
        if (st != RPC_OK) {
                return st;
        }
        resp->duplicate = duplicate;
        return RPC_OK;
}

/* FAILED_PRECONDITION, with the call's message set, for a call on the monolith dataset:
 * no saga runs there. */
static rpc_status
refuse_monolith(rpc_call *call)
{
        if (svc_call_dataset(call) != SVC_DATASET_SPLIT) {
                return rpc_call_error(
                    call, RPC_FAILED_PRECONDITION, "no saga runs on the monolith dataset");
        }
        return RPC_OK;
}

rpc_status
events_saga_order(rpc_call *call, const Mercato__Event__V1__Event *req, ProtobufCMessage **ret_msg)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        char err[256] = "";
        rpc_status st;

        st = refuse_monolith(call);
        if (st != RPC_OK) {
                return st;
        }
        st = rpc_payload_unpack(&mercato__event__v1__saga_order__descriptor, req->payload.data,
            req->payload.len, &msg, err, sizeof(err));
        if (st != RPC_OK) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "bad payload: %s", err);
        }
        *ret_msg = msg;
        msg = NULL; /* handed on */
        return RPC_OK;
}

rpc_status
events_check_saga_order(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, bool with_reason)
{
        if (so->order_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be > 0");
        }
        if (so->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (with_reason && (so->reason[0] == '\0' || strlen(so->reason) > EVENTS_REASON_MAX)) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "reason must be 1..%d bytes", EVENTS_REASON_MAX);
        }
        return RPC_OK;
}

rpc_status
events_tcc_status(
    rpc_call *call, db_conn *db, rpc_status st, const char *sw_name, events_tcc_phase phase)
{
        if (st == RPC_OK) {
                return RPC_OK;
        }
        if (st == RPC_UNAVAILABLE) {
                return rpc_call_error(call, st, "%s does not answer (step switch)", sw_name);
        }
        if (st == RPC_FAILED_PRECONDITION) {
                return rpc_call_error(
                    call, st, "nothing tried to %s", events_tcc_phase_name(phase));
        }
        return rpc_call_error(call, st, "database: %s", db_errmsg(db));
}

rpc_status
events_command_run(rpc_call *call, const Mercato__Txn__V1__SagaCommand *req, const char *step,
    const char *undo, events_command_fn run, events_tcc_run_fn tcc,
    Mercato__Txn__V1__SagaCommandReply *resp)
{
        int phase = -1;
        bool duplicate = false;
        txn_outcome out;
        rpc_status st;

        st = refuse_monolith(call);
        if (st != RPC_OK) {
                return st;
        }
        if (req->order == NULL) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "a command needs its order");
        }
        for (int p = EVENTS_TCC_TRY; p <= EVENTS_TCC_CANCEL; p++) {
                if (strcmp(req->action, events_tcc_phase_name((events_tcc_phase) p)) == 0) {
                        phase = p;
                }
        }
        if (phase < 0 && strcmp(req->action, step) != 0 && strcmp(req->action, undo) != 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                    "unknown action (this service runs %s, %s, try, confirm and cancel)", step,
                    undo);
        }
        st = phase >= 0 ? tcc(call, req->order, (events_tcc_phase) phase, &out, &duplicate)
                        : run(call, req->order, strcmp(req->action, step) == 0, &out, &duplicate);
        if (st != RPC_OK) {
                return st;
        }
        resp->done = out.reason[0] == '\0';
        resp->reason = rpc_call_strdup(call, out.reason);
        resp->discount = out.discount;
        resp->duplicate = duplicate;
        return RPC_OK;
}
