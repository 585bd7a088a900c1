/* user_priv.h: what the user service's files share: its method table. */
#ifndef MERCATO_USER_PRIV_H
#define MERCATO_USER_PRIV_H

#include "events_common.h"
#include "rpc.h"
#include "tpc.h"

#define USER_N_METHODS 4
#define USER_N_EVENT_METHODS 1

/* UserService (handlers.c). */
extern const rpc_method user_methods[USER_N_METHODS];

/* EventSink: the saga step (events.c). */
extern const rpc_method user_event_methods[USER_N_EVENT_METHODS];

/* SagaParticipant: the orchestrated saga's commands (events.c). */
extern const rpc_method user_command_methods[EVENTS_N_COMMAND_METHODS];

/* Participant: the two-phase commit branch (tpc.c). */
extern const rpc_method user_tpc_methods[TXN_TPC_N_METHODS];

#endif
