/* steps.c: the data platform's transaction in the order flow (dataplatform_steps.h). */
#include "dataplatform_steps.h"
#include "dataplatform_store.h"
#include "txn.h"

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

rpc_status
dataplatform_order_completed(db_conn *db, const char *event_id,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate)
{
        record_arg arg = { .event_id = event_id, .oc = oc };

        return txn_consume(
            db, CONSUMER_ORDER_COMPLETED, event_id, apply_order_completed, &arg, ret_duplicate);
}
