/* order_priv.h: what the order service's files share: its method table and default mode. */
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

#endif
