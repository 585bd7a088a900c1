/* order_priv.h: what the order service's files share: its method table and the order flows. */
#ifndef MERCATO_ORDER_PRIV_H
#define MERCATO_ORDER_PRIV_H

#include "order.pb-c.h"
#include "order_store.h"
#include "order_tx.h"
#include "rpc.h"
#include "svc.h"

#define ORDER_N_METHODS 3

/* The longest idempotency key PlaceOrder accepts, in bytes. */
#define ORDER_KEY_MAX 200

/* OrderService (handlers.c). */
extern const rpc_method order_methods[ORDER_N_METHODS];

/* The mode of a request that names none: the topology's [order] mode, else [defaults]
 * mode, else saga. 0 for a name that is not a mode (main.c refuses to start with one). */
order_mode order_default_mode(const rpc_conf *conf);

/* Runs a whole order as one local transaction on the monolith database (monolith.c) and
 * fills resp->order, in the call's arena. A business failure (out_of_stock,
 * insufficient_balance, coupon_invalid, payment_declined) is OK with the order CANCELLED;
 * bad input (an unknown user, product or coupon, a total past 10^12) is an error status,
 * with nothing recorded. */
rpc_status order_monolith_place(
    rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp);

/* Runs an order as a choreographed saga (saga.c): creates it PENDING with its first event
 * and defers the reply until the order is terminal or the deadline passes (then PENDING). */
rpc_status order_saga_place(
    rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp);

/* Runs an order as a two-phase commit coordinated here (tpc.c): replies with the order
 * COMPLETED or CANCELLED (PENDING only when the decision could not be recorded). */
rpc_status order_tpc_place(
    rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp);

/* Start and stop hooks of the 2pc coordinator (tpc.c): draws a new epoch, opens the
 * participants' clients, starts recovery; stop undoes it. */
rpc_status order_tpc_start(svc *s) RPC_WARN_UNUSED;
void order_tpc_stop(svc *s);

/* Puts the order an idempotency key placed into resp->order, in the call's arena. Returns
 * OK when it did, NOT_FOUND when no order has the key, else the database's status; it sets
 * no message, so that each caller words its own (handlers.c). */
rpc_status order_reply_key(rpc_call *call, db_conn *db, const char *key,
    Mercato__Order__V1__PlaceOrderResponse *resp) RPC_WARN_UNUSED;

/* An Order message for a stored order, in the call's arena (handlers.c). */
Mercato__Order__V1__Order *order_msg(
    rpc_call *call, const order_rec *rec, Mercato__Order__V1__Order *msg);

#endif
