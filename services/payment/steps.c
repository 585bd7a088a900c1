/* steps.c: the payment service's transactions in the order flow (payment_steps.h). */
#include <stdio.h>

#include "events_tx.h"
#include "payment_steps.h"
#include "payment_store.h"
#include "txn.h"

#define SAGA_CONSUMER "payment:saga"
#define SAGA_SOURCE "payment"
#define TCC_CONSUMER "payment:tcc"

/* What a saga step works on: the order and the step switch, and for an orchestrator's
 * command where its outcome goes (NULL: the next event instead). */
typedef struct saga_arg {
        const Mercato__Event__V1__SagaOrder *so;
        svc_step_result sw;
        txn_outcome *orch;
} saga_arg;

/* balance.debited, behind the barrier key "capture:<order>": the capture, or the decline. */
static rpc_status
capture_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        const Mercato__Event__V1__SagaOrder *so = a->so;
        svc_step_result sw = a->sw;
        bool declined = false;
        rpc_status st;

        if (sw == SVC_STEP_TIMEOUT) {
                return RPC_UNAVAILABLE;
        }
        if (sw == SVC_STEP_FAIL) {
                declined = true;
        } else {
                st = db_command(db, "SAVEPOINT capture");
                if (st == RPC_OK) {
                        st = payment_store_capture(db, so->order_id, so->user_id, so->amount);
                }
                if (st == RPC_FAILED_PRECONDITION) {
                        declined = true;
                        st = db_command(db, "ROLLBACK TO SAVEPOINT capture");
                }
                if (st != RPC_OK) {
                        return st;
                }
        }
        return events_saga_step_end(db, SAGA_SOURCE, SAGA_CONSUMER, "capture", so,
            declined ? "payment.declined" : "payment.captured",
            declined ? "payment_declined" : NULL, 0, a->orch);
}

/* order.cancelled, behind the barrier key "refund:<order>": refunds the payment, if there
 * is one. Takes the capture key too, so that a capture that comes later does nothing. */
static rpc_status
refund_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        rpc_status st;

        st = events_saga_fence(db, SAGA_CONSUMER, "capture", a->so->order_id);
        if (st == RPC_OK) {
                st = payment_store_refund(db, a->so->order_id);
        }
        return st;
}

rpc_status
payment_saga_capture(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, svc_step_result sw, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = sw };
        return events_saga_consume(
            db, SAGA_CONSUMER, "capture", so->order_id, capture_apply, &arg, ret_duplicate);
}

rpc_status
payment_saga_refund(db_conn *db, const Mercato__Event__V1__SagaOrder *so, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = SVC_STEP_OK };
        return events_saga_consume(
            db, SAGA_CONSUMER, "refund", so->order_id, refund_apply, &arg, ret_duplicate);
}

rpc_status
payment_orch_capture(db_conn *db, const Mercato__Event__V1__SagaOrder *so, svc_step_result sw,
    txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = sw, .orch = out };
        return events_orch_consume(db, SAGA_CONSUMER, "capture", so->order_id, capture_apply, &arg,
            false, out, ret_duplicate);
}

rpc_status
payment_orch_refund(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = SVC_STEP_OK, .orch = out };
        return events_orch_consume(db, SAGA_CONSUMER, "refund", so->order_id, refund_apply, &arg,
            true, out, ret_duplicate);
}

/* A TCC phase of the payment branch: the try authorises the amount, the confirm captures
 * it, the cancel voids it. */
static rpc_status
tcc_apply(
    db_conn *db, void *arg, events_tcc_phase phase, const char **ret_reason, int64_t *ret_discount)
{
        const saga_arg *a = arg;
        const Mercato__Event__V1__SagaOrder *so = a->so;
        int64_t rows = 0;
        rpc_status st;

        (void) ret_discount;
        if (phase != EVENTS_TCC_TRY) {
                st = payment_store_settle(db, so->order_id, phase == EVENTS_TCC_CONFIRM, &rows);
                /* A confirm with nothing tried is a coordinator's mistake: refused. */
                return st == RPC_OK && rows == 0 && phase == EVENTS_TCC_CONFIRM
                    ? RPC_FAILED_PRECONDITION
                    : st;
        }
        if (a->sw == SVC_STEP_TIMEOUT) {
                return RPC_UNAVAILABLE;
        }
        st = a->sw == SVC_STEP_FAIL
            ? RPC_FAILED_PRECONDITION
            : payment_store_authorize(db, so->order_id, so->user_id, so->amount);
        if (st == RPC_FAILED_PRECONDITION) {
                *ret_reason = "payment_declined";
                return RPC_OK;
        }
        return st;
}

rpc_status
payment_tcc(db_conn *db, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    svc_step_result sw, txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = sw };
        return events_tcc_consume(
            db, TCC_CONSUMER, phase, so->order_id, tcc_apply, &arg, out, ret_duplicate);
}

rpc_status
payment_tpc_branch(
    db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote, char *err, size_t errlen)
{
        rpc_status st = payment_store_capture(db, req->order_id, req->user_id, req->amount);

        if (st == RPC_FAILED_PRECONDITION) {
                vote->reason = (char *) "payment_declined";
                return RPC_OK;
        }
        if (st != RPC_OK) {
                snprintf(err, errlen, "capture: %s", db_errmsg(db));
                return st;
        }
        vote->yes = true;
        return RPC_OK;
}
