/* tpc.c: PlaceOrder as a two-phase commit that the order service coordinates. */
#include "order_priv.h"

rpc_status
order_tpc_place(
    rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        (void) r;
        (void) resp;
        return rpc_call_error(call, RPC_UNIMPLEMENTED, "mode 2pc is not available yet");
}
