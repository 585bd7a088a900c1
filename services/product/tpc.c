/* tpc.c: the product service as a two-phase commit participant: the stock reservation branch. */
#include <inttypes.h>

#include "product_priv.h"
#include "product_steps.h"
#include "product_store.h"
#include "svc.h"
#include "tpc.h"

#define QUANTITY_MAX INT64_C(1000000000000)
#define ITEMS_MAX 100

static rpc_status
validate(rpc_call *call, const txn_tpc_request *req)
{
        if (req->n_items == 0 || req->n_items > ITEMS_MAX) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "items must be 1..%d", ITEMS_MAX);
        }
        for (size_t i = 0; i < req->n_items; i++) {
                const Mercato__Txn__V1__Item *it = req->items[i];
                if (it->product_id <= 0) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "product_id must be > 0");
                }
                if (it->quantity <= 0 || it->quantity > QUANTITY_MAX) {
                        return rpc_call_error(
                            call, RPC_INVALID_ARGUMENT, "quantity must be 1..1000000000000");
                }
                for (size_t j = 0; j < i; j++) {
                        if (req->items[j]->product_id == it->product_id) {
                                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                                    "product %" PRId64 " listed twice", it->product_id);
                        }
                }
        }
        return RPC_OK;
}

/* The step switch product.reserve: fail votes out_of_stock, timeout answers too late. */
static const char *
before(rpc_call *call, const txn_tpc_request *req)
{
        (void) req;
        return svc_tpc_step_vote(call, "product", "reserve", "out_of_stock");
}

static const txn_tpc_participant participant = {
        .name = "product",
        .db = svc_db,
        .before = before,
        .validate = validate,
        .branch = product_tpc_branch,
};

TXN_TPC_METHODS(product_tpc_methods, participant);
