/* payment_priv.h: what the payment service's files share: its method table. */
#ifndef MERCATO_PAYMENT_PRIV_H
#define MERCATO_PAYMENT_PRIV_H

#include "rpc.h"

#define PAYMENT_N_METHODS 1

/* PaymentService (handlers.c). */
extern const rpc_method payment_methods[PAYMENT_N_METHODS];

#endif
