/* steps.c: the cart service's transaction in the order flow (cart_steps.h). */
#include "cart_steps.h"
#include "cart_store.h"
#include "events_tx.h"
#include "txn.h"

#define CONSUMER_ORDER_COMPLETED "cart:order.completed"

/* Behind the barrier: the removal of the ordered lines. arg is the OrderCompleted. */
static rpc_status
apply_order_completed(db_conn *db, void *arg)
{
        const Mercato__Event__V1__OrderCompleted *oc = arg;
        int64_t ids[EVENTS_ITEMS_MAX];

        for (size_t i = 0; i < oc->n_items; i++) {
                ids[i] = oc->items[i]->product_id;
        }
        return cart_store_remove_ordered(db, oc->user_id, ids, oc->n_items);
}

rpc_status
cart_order_completed(db_conn *db, const char *event_id,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate)
{
        return txn_consume(db, CONSUMER_ORDER_COMPLETED, event_id, apply_order_completed,
            (void *) oc, ret_duplicate);
}
