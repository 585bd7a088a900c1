/* reply.h: the replies every mode and the handlers build from stored orders (reply.c). */
#ifndef MERCATO_ORDER_REPLY_H
#define MERCATO_ORDER_REPLY_H

#include "db.h"
#include "order.pb-c.h"
#include "order_store.h"
#include "rpc.h"

/* An Order message for a stored order, in the call's arena; fills msg when not NULL. */
Mercato__Order__V1__Order *order_msg(
    rpc_call *call, const order_rec *rec, Mercato__Order__V1__Order *msg);

/* Puts the order an idempotency key placed into resp->order, in the call's arena. Returns
 * OK when it did, NOT_FOUND when no order has the key, else the database's status; it sets
 * no message, so that each caller words its own. */
rpc_status order_reply_key(rpc_call *call, db_conn *db, const char *key,
    Mercato__Order__V1__PlaceOrderResponse *resp) RPC_WARN_UNUSED;

#endif
