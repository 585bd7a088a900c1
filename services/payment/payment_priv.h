/* payment_priv.h: what the payment service's files share: its method table. */
#ifndef MERCATO_PAYMENT_PRIV_H
#define MERCATO_PAYMENT_PRIV_H

#include "events_common.h"
#include "rpc.h"
#include "tpc.h"

#define PAYMENT_N_METHODS 1
#define PAYMENT_N_EVENT_METHODS 1

/* PaymentService (handlers.c). */
extern const rpc_method payment_methods[PAYMENT_N_METHODS];

/* EventSink: the saga step (events.c). */
extern const rpc_method payment_event_methods[PAYMENT_N_EVENT_METHODS];

/* SagaParticipant: the orchestrated saga's commands (events.c). */
extern const rpc_method payment_command_methods[EVENTS_N_COMMAND_METHODS];

/* Participant: the two-phase commit branch (tpc.c). */
extern const rpc_method payment_tpc_methods[TXN_TPC_N_METHODS];

#endif
