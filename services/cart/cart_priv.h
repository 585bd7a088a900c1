/* cart_priv.h: what the cart service's files share: method tables, the product client. */
#ifndef MERCATO_CART_PRIV_H
#define MERCATO_CART_PRIV_H

#include "rpc.h"

#define CART_N_METHODS 3
#define CART_N_EVENT_METHODS 1

/* CartService (handlers.c) and EventSink (events.c). */
extern const rpc_method cart_methods[CART_N_METHODS];
extern const rpc_method cart_event_methods[CART_N_EVENT_METHODS];

/* Closes the client to the product service, opened by the first AddToCart. Call once the
 * server has stopped. */
void cart_product_client_close(void);

#endif
