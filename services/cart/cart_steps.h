/* cart_steps.h: the cart service's transaction in the order flow: order.completed.
 *
 * A whole local transaction over a connection and the decoded event: the service's
 * EventSink calls it, and so does the SQL replay (mercato-bench replay). */
#ifndef MERCATO_CART_STEPS_H
#define MERCATO_CART_STEPS_H

#include <stdbool.h>

#include "db.h"
#include "event.pb-c.h"

/* order.completed, behind the event id of consumer "cart:order.completed": the ordered
 * lines leave the user's cart. oc is checked by the caller (events_order_completed's
 * rules). *ret_duplicate: the event was consumed before, nothing changed. */
rpc_status cart_order_completed(db_conn *db, const char *event_id,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate) RPC_WARN_UNUSED;

#endif
