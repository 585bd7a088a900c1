/* events.c: the data platform's EventSink: order.completed is recorded once per event id. */
#include <string.h>

#include "dataplatform_priv.h"
#include "dataplatform_store.h"
#include "event.pb-c.h"
#include "events_common.h"
#include "svc.h"
#include "txn.h"

#define TOPIC_ORDER_COMPLETED "order.completed"
#define CONSUMER_ORDER_COMPLETED "dataplatform:order.completed"

/* What apply_order_completed records. */
typedef struct record_arg {
        const char *event_id;
        const Mercato__Event__V1__OrderCompleted *oc;
} record_arg;

/* Behind the barrier: the record. ALREADY_EXISTS (the event recorded before) is rolled back
 * and taken as a duplicate by the caller. */
static rpc_status
apply_order_completed(db_conn *db, void *arg)
{
        const record_arg *a = arg;

        return dataplatform_store_record(
            db, a->event_id, a->oc->order_id, a->oc->user_id, a->oc->amount);
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        record_arg arg;
        bool duplicate = false;
        rpc_status st;

        st = events_check_id(call, req->event_id);
        if (st != RPC_OK) {
                return st;
        }
        if (strcmp(req->topic, TOPIC_ORDER_COMPLETED) != 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
        }
        st = events_order_completed(call, req, &msg);
        if (st != RPC_OK) {
                return st;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        arg = (record_arg) { .event_id = req->event_id,
                .oc = (const Mercato__Event__V1__OrderCompleted *) msg };
        st = txn_consume(
            db, CONSUMER_ORDER_COMPLETED, req->event_id, apply_order_completed, &arg, &duplicate);
        if (st == RPC_ALREADY_EXISTS) {
                duplicate = true; /* recorded before: rolled back, acked as a duplicate */
                st = RPC_OK;
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        if (duplicate && dataplatform_store_count_duplicate(db) != RPC_OK) {
                /* The count feeds Stats only: failing to count does not fail the ack. */
        }
        resp->duplicate = duplicate;
        return RPC_OK;
}

const rpc_method dp_event_methods[DP_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
