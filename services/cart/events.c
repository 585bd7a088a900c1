/* events.c: the cart service's EventSink: order.completed removes the ordered lines. */
#include <string.h>

#include "cart_priv.h"
#include "cart_steps.h"
#include "cart_store.h"
#include "event.pb-c.h"
#include "events_common.h"
#include "svc.h"
#include "txn.h"

#define TOPIC_ORDER_COMPLETED "order.completed"

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
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
        st = cart_order_completed(
            db, req->event_id, (const Mercato__Event__V1__OrderCompleted *) msg, &duplicate);
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
