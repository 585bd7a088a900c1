/* dataplatform_priv.h: what the data platform's files share: their method tables. */
#ifndef MERCATO_DATAPLATFORM_PRIV_H
#define MERCATO_DATAPLATFORM_PRIV_H

#include "rpc.h"

#define DP_N_METHODS 2
#define DP_N_EVENT_METHODS 1

/* DataPlatformService (handlers.c) and EventSink (events.c). */
extern const rpc_method dp_methods[DP_N_METHODS];
extern const rpc_method dp_event_methods[DP_N_EVENT_METHODS];

#endif
