/* tpc.c: the payment service as a two-phase commit participant: the capture branch. */
#include "payment_priv.h"
#include "payment_steps.h"
#include "payment_store.h"
#include "svc.h"
#include "tpc.h"

#define AMOUNT_MAX INT64_C(1000000000000)

static rpc_status
validate(rpc_call *call, const txn_tpc_request *req)
{
        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (req->amount < 0 || req->amount > AMOUNT_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "amount must be 0..1000000000000");
        }
        return RPC_OK;
}

/* The step switch payment.capture: fail votes payment_declined, timeout answers too late. */
static const char *
before(rpc_call *call, const txn_tpc_request *req)
{
        (void) req;
        return svc_tpc_step_vote(call, "payment", "capture", "payment_declined");
}

static const txn_tpc_participant participant = {
        .name = "payment",
        .db = svc_db,
        .before = before,
        .validate = validate,
        .branch = payment_tpc_branch,
};

TXN_TPC_METHODS(payment_tpc_methods, participant);
