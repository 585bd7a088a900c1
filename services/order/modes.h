/* modes.h: the transaction modes of the order flow, as a table of operations (modes.c).
 *
 * Each mode lives in its own file and exports one order_mode_ops. PlaceOrder validates the
 * request, picks the mode (its own, or the configured default) and calls its place; the
 * service's start and stop run every mode's start and stop. A mode calls nothing of the
 * handlers: what it shares with them (the Order message, the reply to a repeated key) is
 * in reply.h. `mercato txn list|show|resolve` (services/mercato/txn.c) has the matching
 * table for the operator's side, read straight from the databases.
 */
#ifndef MERCATO_ORDER_MODES_H
#define MERCATO_ORDER_MODES_H

#include "order.pb-c.h"
#include "order_tx.h"
#include "rpc.h"
#include "svc.h"

typedef struct order_mode_ops {
        order_mode mode;
        /* Runs one validated order (its lines sorted by product, none twice) and fills
         * resp->order, or returns RPC_DEFERRED and answers later. A business failure is OK
         * with the order CANCELLED; bad input is an error status with nothing recorded. */
        rpc_status (*place)(
            rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp);
        /* At start-up, after the migrations: the mode's clients, its threads, and the
         * recovery of what a crash left unfinished. NULL when it has none. */
        rpc_status (*start)(svc *s);
        /* At stop, in the reverse order of the starts: answers what waits, ends the
         * threads. NULL when it has none. */
        void (*stop)(svc *s);
} order_mode_ops;

/* The operations of a mode; NULL for a number that is not one. */
const order_mode_ops *order_mode_ops_of(order_mode mode);

/* Starts every mode, in the order of the enum; when one fails, stops those started and
 * returns its status. */
rpc_status order_modes_start(svc *s) RPC_WARN_UNUSED;

/* Stops every mode, in the reverse order. */
void order_modes_stop(svc *s);

#endif
