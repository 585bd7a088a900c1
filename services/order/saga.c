/* saga.c: PlaceOrder as a choreographed saga: the order's events and the reply waiters. */
#include "order_priv.h"

rpc_status
order_saga_place(
    rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        (void) r;
        (void) resp;
        return rpc_call_error(call, RPC_UNIMPLEMENTED, "mode saga is not available yet");
}
