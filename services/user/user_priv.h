/* user_priv.h: what the user service's files share: its method table. */
#ifndef MERCATO_USER_PRIV_H
#define MERCATO_USER_PRIV_H

#include "rpc.h"

#define USER_N_METHODS 4

/* UserService (handlers.c). */
extern const rpc_method user_methods[USER_N_METHODS];

#endif
