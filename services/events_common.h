/* events_common.h: what the services' EventSinks share: payload checks and saga helpers. */
#ifndef MERCATO_EVENTS_COMMON_H
#define MERCATO_EVENTS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "event.pb-c.h"
#include "events_tx.h"
#include "rpc.h"

/* Checks an event's id: 1..EVENTS_ID_MAX bytes. Returns OK, or INVALID_ARGUMENT with the
 * call's message set. */
rpc_status events_check_id(rpc_call *call, const char *event_id) RPC_WARN_UNUSED;

/* Unpacks and checks an order.completed payload, by the same rules in every consumer: an
 * order, a user, an amount >= 0, 0..EVENTS_ITEMS_MAX lines of a product and a quantity of
 * 1..EVENTS_QUANTITY_MAX, a completion time in range. On success *ret_msg is the
 * OrderCompleted, which the caller frees (RPC_PB_CLEANUP). Returns OK, or INVALID_ARGUMENT
 * with the call's message set. */
rpc_status events_order_completed(rpc_call *call, const Mercato__Event__V1__Event *req,
    ProtobufCMessage **ret_msg) RPC_WARN_UNUSED;

/* For a saga step: refuses the monolith dataset (FAILED_PRECONDITION), then unpacks the
 * SagaOrder payload (INVALID_ARGUMENT), with the call's message set. On success *ret_msg is
 * the SagaOrder, which the caller frees (RPC_PB_CLEANUP). Checks no field. */
rpc_status events_saga_order(rpc_call *call, const Mercato__Event__V1__Event *req,
    ProtobufCMessage **ret_msg) RPC_WARN_UNUSED;

#endif
