/* tpc.c: the user service as a two-phase commit participant: the coupon and debit branch.
 *
 * The amount the user pays depends on the coupon's discount, and the payment branch needs
 * it while the branches prepare in parallel. So the coordinator first asks Quote, which
 * checks the user and the coupon (read-only) and computes the discount; the coordinator
 * then passes total, discount and amount to both branches. The user branch uses the
 * coupon again inside its transaction and votes no (coupon_invalid) if the coupon no
 * longer applies or its discount differs from the one agreed.
 */
#include <stdlib.h>

#include "svc.h"
#include "tpc.h"
#include "user_priv.h"
#include "user_steps.h"
#include "user_store.h"

static rpc_status
validate(rpc_call *call, const txn_tpc_request *req)
{
        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (req->coupon_id < 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "coupon_id must be >= 0");
        }
        if (req->total < 0 || req->total > USER_AMOUNT_MAX) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "total must be 0..1000000000000");
        }
        if (req->discount < 0 || req->discount > req->total
            || req->amount != req->total - req->discount) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                    "discount must be 0..total and amount total - discount");
        }
        return RPC_OK;
}

/* The step switches user.coupon (for an order with a coupon) and user.debit: fail votes
 * coupon_invalid or insufficient_balance, timeout answers too late. */
static const char *
before(rpc_call *call, const txn_tpc_request *req)
{
        svc *s = svc_of_call(call);

        if (req->coupon_id > 0
            && svc_step(s != NULL ? svc_conf(s) : NULL, "user", "coupon") != SVC_STEP_OK) {
                return svc_tpc_step_vote(call, "user", "coupon", "coupon_invalid");
        }
        return svc_tpc_step_vote(call, "user", "debit", "insufficient_balance");
}

static const txn_tpc_participant participant = {
        .name = "user",
        .db = svc_db,
        .before = before,
        .validate = validate,
        .branch = user_tpc_branch,
        .quote = user_tpc_quote,
};

TXN_TPC_METHODS(user_tpc_methods, participant);
