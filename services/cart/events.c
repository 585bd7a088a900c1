/* events.c: the cart service's EventSink: order.completed removes the ordered lines. */
#include <string.h>

#include "cart_priv.h"
#include "cart_steps.h"
#include "cart_store.h"
#include "event.pb-c.h"
#include "events_common.h"
#include "svc.h"
#include "txn.h"

static rpc_status
apply(db_conn *db, const Mercato__Event__V1__Event *ev,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate)
{
        return cart_order_completed(db, ev->event_id, oc, ret_duplicate);
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        return events_sink_order_completed(call, req, apply, resp);
}

const rpc_method cart_event_methods[CART_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
