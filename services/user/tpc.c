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
        const rpc_conf *conf = s != NULL ? svc_conf(s) : NULL;
        svc_step_result coupon
            = req->coupon_id > 0 ? svc_step(conf, "user", "coupon") : SVC_STEP_OK;
        svc_step_result debit = svc_step(conf, "user", "debit");

        if (coupon == SVC_STEP_FAIL) {
                return "coupon_invalid";
        }
        if (coupon == SVC_STEP_TIMEOUT) {
                txn_tpc_sleep_past_timeout(conf);
                return NULL;
        }
        if (debit == SVC_STEP_FAIL) {
                return "insufficient_balance";
        }
        if (debit == SVC_STEP_TIMEOUT) {
                txn_tpc_sleep_past_timeout(conf);
        }
        return NULL;
}

static rpc_status
branch(rpc_call *call, db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote)
{
        int64_t discount = 0;
        rpc_status st;

        if (req->coupon_id > 0) {
                st = user_store_use_coupon(
                    db, req->user_id, req->coupon_id, req->order_id, req->total, &discount);
                if (st == RPC_FAILED_PRECONDITION || (st == RPC_OK && discount != req->discount)) {
                        vote->reason = (char *) "coupon_invalid";
                        return RPC_OK;
                }
                if (st == RPC_NOT_FOUND) {
                        return rpc_call_error(
                            call, st, "no coupon %lld", (long long) req->coupon_id);
                }
                if (st != RPC_OK) {
                        return rpc_call_error(call, st, "coupon: %s", db_errmsg(db));
                }
        } else if (req->discount != 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "a discount needs a coupon");
        }
        if (req->amount > 0) {
                st = user_store_debit(db, req->user_id, req->amount, req->order_id);
                if (st == RPC_FAILED_PRECONDITION) {
                        vote->reason = (char *) "insufficient_balance";
                        return RPC_OK;
                }
                if (st == RPC_NOT_FOUND) {
                        return rpc_call_error(call, st, "no user %lld", (long long) req->user_id);
                }
                if (st != RPC_OK) {
                        return rpc_call_error(call, st, "debit: %s", db_errmsg(db));
                }
        }
        vote->discount = discount;
        vote->yes = true;
        return RPC_OK;
}

/* Read-only: the user and the coupon exist (else NOT_FOUND: bad input), and the coupon is
 * held unused (else a "no" vote, coupon_invalid); the discount it gives on total. */
static rpc_status
quote(rpc_call *call, db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote)
{
        user_coupon_rec *recs = NULL;
        const char *what = "user";
        size_t n = 0;
        rpc_status st;

        st = user_store_check(db, req->user_id, req->coupon_id, &what);
        if (st == RPC_NOT_FOUND) {
                return rpc_call_error(call, st, "no %s %lld", what,
                    (long long) (what[0] == 'c' ? req->coupon_id : req->user_id));
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        vote->yes = true;
        if (req->coupon_id == 0) {
                return RPC_OK;
        }
        st = user_store_list_coupons(db, req->user_id, &recs, &n);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        vote->yes = false;
        vote->reason = (char *) "coupon_invalid";
        for (size_t i = 0; i < n; i++) {
                if (recs[i].coupon_id == req->coupon_id && recs[i].used_order_id == 0) {
                        vote->yes = true;
                        vote->reason = (char *) "";
                        vote->discount = user_discount(recs[i].kind, recs[i].value, req->total);
                }
        }
        free(recs);
        return RPC_OK;
}

static const txn_tpc_participant participant = {
        .name = "user",
        .db = svc_db,
        .before = before,
        .validate = validate,
        .branch = branch,
        .quote = quote,
};

TXN_TPC_METHODS(user_tpc_methods, participant);
