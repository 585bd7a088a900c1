/* events.c: the data platform's EventSink: order.completed is recorded once per event id. */
#include <string.h>

#include "dataplatform_priv.h"
#include "dataplatform_steps.h"
#include "dataplatform_store.h"
#include "event.pb-c.h"
#include "events_common.h"
#include "svc.h"
#include "txn.h"

static rpc_status
apply(db_conn *db, const Mercato__Event__V1__Event *ev,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate)
{
        rpc_status st = dataplatform_order_completed(db, ev->event_id, oc, ret_duplicate);

        if (st == RPC_ALREADY_EXISTS) {
                *ret_duplicate = true; /* recorded before: rolled back, acked as a duplicate */
                st = RPC_OK;
        }
        if (st == RPC_OK && *ret_duplicate && dataplatform_store_count_duplicate(db) != RPC_OK) {
                /* The count feeds Stats only: failing to count does not fail the ack. */
        }
        return st;
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        return events_sink_order_completed(call, req, apply, resp);
}

const rpc_method dp_event_methods[DP_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
