/* product_priv.h: what the product service's files share: their method tables. */
#ifndef MERCATO_PRODUCT_PRIV_H
#define MERCATO_PRODUCT_PRIV_H

#include "events_common.h"
#include "rpc.h"
#include "tpc.h"

#define PRODUCT_N_METHODS 4
#define PRODUCT_N_EVENT_METHODS 1

/* ProductService (handlers.c) and EventSink (events.c). */
extern const rpc_method product_methods[PRODUCT_N_METHODS];
extern const rpc_method product_event_methods[PRODUCT_N_EVENT_METHODS];

/* SagaParticipant: the orchestrated saga's commands (events.c). */
extern const rpc_method product_command_methods[EVENTS_N_COMMAND_METHODS];

/* Participant: the two-phase commit branch (tpc.c). */
extern const rpc_method product_tpc_methods[TXN_TPC_N_METHODS];

#endif
