/* steps.c: the user service's transactions in the order flow (user_steps.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events_tx.h"
#include "txn.h"
#include "user_steps.h"
#include "user_store.h"

#define SAGA_CONSUMER "user:saga"
#define SAGA_SOURCE "user"
#define TCC_CONSUMER "user:tcc"

static rpc_status fail(char *err, size_t errlen, rpc_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets err and returns st. */
static rpc_status
fail(char *err, size_t errlen, rpc_status st, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return st;
}

/* The coupon and the debit, after the savepoint. Sets *ret_reason for a business failure
 * (the caller rolls back to the savepoint), else *ret_discount. */
static rpc_status
debit_steps(db_conn *db, const Mercato__Event__V1__SagaOrder *so, svc_step_result coupon_sw,
    svc_step_result debit_sw, int64_t *ret_discount, const char **ret_reason)
{
        int64_t discount = 0;
        rpc_status st;

        if (so->coupon_id > 0) {
                if (coupon_sw == SVC_STEP_FAIL) {
                        *ret_reason = "coupon_invalid";
                        return RPC_OK;
                }
                st = user_store_use_coupon(
                    db, so->user_id, so->coupon_id, so->order_id, so->total, &discount);
                if (st == RPC_FAILED_PRECONDITION || st == RPC_NOT_FOUND) {
                        /* Not held unused by the user, or no such coupon. */
                        *ret_reason = "coupon_invalid";
                        return RPC_OK;
                }
                if (st != RPC_OK) {
                        return st;
                }
        }
        if (debit_sw == SVC_STEP_FAIL) {
                *ret_reason = "insufficient_balance";
                return RPC_OK;
        }
        if (so->total - discount > 0) {
                st = user_store_debit(db, so->user_id, so->total - discount, so->order_id);
                if (st == RPC_FAILED_PRECONDITION || st == RPC_NOT_FOUND) {
                        /* Too little, or no balance at all. */
                        *ret_reason = "insufficient_balance";
                        return RPC_OK;
                }
                if (st != RPC_OK) {
                        return st;
                }
        }
        *ret_discount = discount;
        return RPC_OK;
}

/* What a saga step works on: the order, the step switches, whether to tell product, and
 * for an orchestrator's command where its outcome goes (NULL: the next event instead). */
typedef struct saga_arg {
        const Mercato__Event__V1__SagaOrder *so;
        svc_step_result coupon_sw;
        svc_step_result debit_sw;
        bool tell_product;
        txn_outcome *orch;
} saga_arg;

/* stock.reserved, behind the barrier key "debit:<order>": the coupon and the debit, or the
 * rejection. */
static rpc_status
debit_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        const Mercato__Event__V1__SagaOrder *so = a->so;
        Mercato__Event__V1__SagaOrder ev = MERCATO__EVENT__V1__SAGA_ORDER__INIT;
        svc_step_result coupon_sw = a->coupon_sw;
        svc_step_result debit_sw = a->debit_sw;
        const char *reason = NULL;
        int64_t discount = 0;
        rpc_status st;

        if ((so->coupon_id > 0 && coupon_sw == SVC_STEP_TIMEOUT) || debit_sw == SVC_STEP_TIMEOUT) {
                return RPC_UNAVAILABLE;
        }
        st = db_command(db, "SAVEPOINT debit");
        if (st == RPC_OK) {
                st = debit_steps(db, so, coupon_sw, debit_sw, &discount, &reason);
        }
        if (st == RPC_OK && reason != NULL) {
                st = db_command(db, "ROLLBACK TO SAVEPOINT debit");
        }
        if (st != RPC_OK) {
                return st;
        }
        if (reason != NULL || a->orch != NULL) {
                return events_saga_step_end(db, SAGA_SOURCE, SAGA_CONSUMER, "debit", so,
                    "balance.rejected", reason, discount, a->orch);
        }
        ev.order_id = so->order_id;
        ev.user_id = so->user_id;
        ev.coupon_id = so->coupon_id;
        ev.total = so->total;
        ev.discount = discount;
        ev.amount = so->total - discount;
        return txn_outbox_add(db, SAGA_SOURCE, "balance.debited", so->order_id, &ev.base, NULL);
}

/* payment.declined, order.cancelled, behind the barrier key "refund:<order>": refunds the
 * debit and restores the coupon, if there are any. Takes the debit key too, so that a debit
 * that comes later does nothing. */
static rpc_status
refund_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        rpc_status st;

        st = events_saga_fence(db, SAGA_CONSUMER, "debit", a->so->order_id);
        if (st == RPC_OK) {
                st = user_store_refund(db, a->so->order_id);
        }
        if (st == RPC_OK) {
                st = user_store_restore_coupon(db, a->so->order_id);
        }
        if (st == RPC_OK && a->tell_product) {
                st = events_saga_emit(db, SAGA_SOURCE, "balance.refunded", a->so, a->so->reason);
        }
        return st;
}

rpc_status
user_saga_debit(db_conn *db, const Mercato__Event__V1__SagaOrder *so, svc_step_result coupon_sw,
    svc_step_result debit_sw, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .coupon_sw = coupon_sw, .debit_sw = debit_sw };
        return events_saga_consume(
            db, SAGA_CONSUMER, "debit", so->order_id, debit_apply, &arg, ret_duplicate);
}

rpc_status
user_saga_refund(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, bool tell_product, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .tell_product = tell_product };
        return events_saga_consume(
            db, SAGA_CONSUMER, "refund", so->order_id, refund_apply, &arg, ret_duplicate);
}

rpc_status
user_orch_debit(db_conn *db, const Mercato__Event__V1__SagaOrder *so, svc_step_result coupon_sw,
    svc_step_result debit_sw, txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .coupon_sw = coupon_sw, .debit_sw = debit_sw, .orch = out };
        return events_orch_consume(
            db, SAGA_CONSUMER, "debit", so->order_id, debit_apply, &arg, false, out, ret_duplicate);
}

rpc_status
user_orch_refund(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .orch = out };
        return events_orch_consume(db, SAGA_CONSUMER, "refund", so->order_id, refund_apply, &arg,
            true, out, ret_duplicate);
}

/* A TCC phase of the user branch: the try holds the coupon and freezes the amount, the
 * confirm spends them, the cancel frees them. */
static rpc_status
tcc_apply(
    db_conn *db, void *arg, events_tcc_phase phase, const char **ret_reason, int64_t *ret_discount)
{
        const saga_arg *a = arg;
        const Mercato__Event__V1__SagaOrder *so = a->so;
        const char *what = "balance";
        bool settled = false;
        rpc_status st;

        if (phase != EVENTS_TCC_TRY) {
                st = user_store_settle(db, so->order_id, phase == EVENTS_TCC_CONFIRM, &settled);
                /* A confirm with nothing tried is a coordinator's mistake: refused. */
                return st == RPC_OK && !settled && phase == EVENTS_TCC_CONFIRM
                    ? RPC_FAILED_PRECONDITION
                    : st;
        }
        if ((so->coupon_id > 0 && a->coupon_sw == SVC_STEP_TIMEOUT)
            || a->debit_sw == SVC_STEP_TIMEOUT) {
                return RPC_UNAVAILABLE;
        }
        if (so->coupon_id > 0 && a->coupon_sw == SVC_STEP_FAIL) {
                *ret_reason = "coupon_invalid";
                return RPC_OK;
        }
        if (a->debit_sw == SVC_STEP_FAIL) {
                *ret_reason = "insufficient_balance";
                return RPC_OK;
        }
        st = user_store_try(
            db, so->user_id, so->coupon_id, so->order_id, so->total, ret_discount, &what);
        if (st == RPC_FAILED_PRECONDITION || st == RPC_NOT_FOUND) {
                *ret_reason
                    = strcmp(what, "coupon") == 0 ? "coupon_invalid" : "insufficient_balance";
                return RPC_OK;
        }
        return st;
}

rpc_status
user_tcc(db_conn *db, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    svc_step_result coupon_sw, svc_step_result debit_sw, txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .coupon_sw = coupon_sw, .debit_sw = debit_sw };
        return events_tcc_consume(
            db, TCC_CONSUMER, phase, so->order_id, tcc_apply, &arg, out, ret_duplicate);
}

rpc_status
user_tpc_branch(
    db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote, char *err, size_t errlen)
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
                        return fail(err, errlen, st, "no coupon %lld", (long long) req->coupon_id);
                }
                if (st != RPC_OK) {
                        return fail(err, errlen, st, "coupon: %s", db_errmsg(db));
                }
        } else if (req->discount != 0) {
                return fail(err, errlen, RPC_INVALID_ARGUMENT, "a discount needs a coupon");
        }
        if (req->amount > 0) {
                st = user_store_debit(db, req->user_id, req->amount, req->order_id);
                if (st == RPC_FAILED_PRECONDITION) {
                        vote->reason = (char *) "insufficient_balance";
                        return RPC_OK;
                }
                if (st == RPC_NOT_FOUND) {
                        return fail(err, errlen, st, "no user %lld", (long long) req->user_id);
                }
                if (st != RPC_OK) {
                        return fail(err, errlen, st, "debit: %s", db_errmsg(db));
                }
        }
        vote->discount = discount;
        vote->yes = true;
        return RPC_OK;
}

/* Read-only: the user and the coupon exist (else NOT_FOUND: bad input), and the coupon is
 * held unused (else a "no" vote, coupon_invalid); the discount it gives on total. */
rpc_status
user_tpc_quote(
    db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote, char *err, size_t errlen)
{
        user_coupon_rec *recs = NULL;
        const char *what = "user";
        size_t n = 0;
        rpc_status st;

        st = user_store_check(db, req->user_id, req->coupon_id, &what);
        if (st == RPC_NOT_FOUND) {
                return fail(err, errlen, st, "no %s %lld", what,
                    (long long) (what[0] == 'c' ? req->coupon_id : req->user_id));
        }
        if (st != RPC_OK) {
                return fail(err, errlen, st, "database: %s", db_errmsg(db));
        }
        vote->yes = true;
        if (req->coupon_id == 0) {
                return RPC_OK;
        }
        st = user_store_list_coupons(db, req->user_id, &recs, &n);
        if (st != RPC_OK) {
                return fail(err, errlen, st, "database: %s", db_errmsg(db));
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
