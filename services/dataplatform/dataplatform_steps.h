/* dataplatform_steps.h: the data platform's transaction in the order flow: order.completed.
 *
 * A whole local transaction over a connection and the decoded event: the service's
 * EventSink calls it, and so does the SQL replay (mercato-bench replay). */
#ifndef MERCATO_DATAPLATFORM_STEPS_H
#define MERCATO_DATAPLATFORM_STEPS_H

#include <stdbool.h>

#include "db.h"
#include "event.pb-c.h"

/* order.completed, behind the event id of consumer "dataplatform:order.completed": records
 * the order once. ALREADY_EXISTS (recorded before under another key: rolled back) is the
 * caller's duplicate. oc is checked by the caller. */
rpc_status dataplatform_order_completed(db_conn *db, const char *event_id,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate) RPC_WARN_UNUSED;

#endif
