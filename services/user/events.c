/* events.c: the user service's EventSink: its saga step (coupon and debit) and their refund.
 *
 * NOTES
 *
 * The saga step of the user service (services/order/saga.c tells the whole chain), each
 * delivery one local transaction that enters its barrier keys (consumer "user:saga"), does
 * its work with the store and adds the next event to the outbox:
 *
 *   stock.reserved    enter "debit:<order>"; use the coupon (if any), then debit the total
 *                     less the discount -> balance.debited, or balance.rejected with
 *                     coupon_invalid or insufficient_balance (rolled back to the savepoint
 *                     after the barrier: nothing changed, and the key stays taken)
 *   payment.declined  enter "refund:<order>" and "debit:<order>"; refund the debit and
 *                     restore the coupon -> balance.refunded, with the reason carried on
 *   order.cancelled   the same, with no event: the order is cancelled already
 *
 * A key that is taken means a duplicate or, for "debit:<order>", that the compensation came
 * first: the delivery is acked and nothing changes. Step switches: user.coupon (for an
 * order with a coupon) and user.debit; `fail` rejects with the step's reason, `timeout`
 * refuses the delivery (UNAVAILABLE) while the compensation has not come.
 *
 * The transactions themselves are in steps.c (user_steps.h), which the SQL replay
 * (mercato-bench replay) runs too; this file decodes, checks and answers.
 */
#include <string.h>

#include "event.pb-c.h"
#include "events_common.h"
#include "svc.h"
#include "txn.h"
#include "user_priv.h"
#include "user_steps.h"
#include "user_store.h"

/* What a delivery asks of the user service. */
typedef enum saga_kind {
        SAGA_DEBIT = 0,      /* stock.reserved */
        SAGA_REFUND = 1,     /* payment.declined: refund, tell product */
        SAGA_COMPENSATE = 2, /* order.cancelled: refund, tell nobody */
} saga_kind;

static const struct {
        const char *topic;
        saga_kind kind;
} saga_topics[] = {
        { "stock.reserved", SAGA_DEBIT },
        { "payment.declined", SAGA_REFUND },
        { "order.cancelled", SAGA_COMPENSATE },
};

/* Checks a SagaOrder for its kind: the amounts to debit, the reason to carry on. */
static rpc_status
check_saga_order(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, saga_kind kind)
{
        rpc_status st = events_check_saga_order(call, so, kind == SAGA_REFUND);

        if (st != RPC_OK) {
                return st;
        }
        if (kind == SAGA_DEBIT) {
                if (so->total < 0 || so->total > USER_AMOUNT_MAX) {
                        return rpc_call_error(
                            call, RPC_INVALID_ARGUMENT, "total must be 0..1000000000000");
                }
                if (so->coupon_id < 0) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "coupon_id must be >= 0");
                }
        }
        return RPC_OK;
}

/* A saga delivery: one local transaction, retried when it aborts. A taken key is a
 * duplicate, or for "debit:<order>" the compensation that came first. */
/* One saga action on a SagaOrder: checks it, then runs it in one local transaction,
 * retried when it aborts: for a delivery (orch NULL) it adds the next event, for an
 * orchestrator's command it records its outcome into *orch. */
static rpc_status
saga_run(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, saga_kind kind, txn_outcome *orch,
    bool *ret_duplicate)
{
        svc *s = svc_of_call(call);
        const rpc_conf *conf = s != NULL ? svc_conf(s) : NULL;
        svc_step_result coupon_sw = svc_step(conf, "user", "coupon");
        svc_step_result debit_sw = svc_step(conf, "user", "debit");
        rpc_status st;

        st = check_saga_order(call, so, kind);
        if (st != RPC_OK) {
                return st;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        if (orch != NULL) {
                st = kind == SAGA_DEBIT
                    ? user_orch_debit(db, so, coupon_sw, debit_sw, orch, ret_duplicate)
                    : user_orch_refund(db, so, orch, ret_duplicate);
        } else {
                st = kind == SAGA_DEBIT
                    ? user_saga_debit(db, so, coupon_sw, debit_sw, ret_duplicate)
                    : user_saga_refund(db, so, kind == SAGA_REFUND, ret_duplicate);
        }
        if (st == RPC_UNAVAILABLE) {
                return rpc_call_error(call, st, "user step does not answer (step switch)");
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        return RPC_OK;
}

static rpc_status
deliver_saga(rpc_call *call, const Mercato__Event__V1__Event *req, saga_kind kind,
    Mercato__Event__V1__DeliverAck *resp)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        bool duplicate = false;
        rpc_status st;

        st = events_saga_order(call, req, &msg);
        if (st == RPC_OK) {
                st = saga_run(
                    call, (const Mercato__Event__V1__SagaOrder *) msg, kind, NULL, &duplicate);
        }
        if (st != RPC_OK) {
                return st;
        }
        if (!duplicate && kind != SAGA_COMPENSATE) {
                svc_relay_wake(svc_of_call(call), SVC_DATASET_SPLIT);
        }
        resp->duplicate = duplicate;
        return RPC_OK;
}

RPC_HANDLER(handle_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        rpc_status st;

        st = events_check_id(call, req->event_id);
        if (st != RPC_OK) {
                return st;
        }
        for (size_t i = 0; i < sizeof(saga_topics) / sizeof(saga_topics[0]); i++) {
                if (strcmp(req->topic, saga_topics[i].topic) == 0) {
                        return deliver_saga(call, req, saga_topics[i].kind, resp);
                }
        }
        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
}

/* An orchestrator's command: debit (the coupon and the debit), or its compensation refund. */
static rpc_status
run_command(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, bool forward, txn_outcome *out,
    bool *ret_duplicate)
{
        return saga_run(call, so, forward ? SAGA_DEBIT : SAGA_COMPENSATE, out, ret_duplicate);
}

/* A TCC coordinator's command: a phase of the user branch. */
static rpc_status
run_tcc(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    txn_outcome *out, bool *ret_duplicate)
{
        svc *s = svc_of_call(call);
        const rpc_conf *conf = s != NULL ? svc_conf(s) : NULL;
        rpc_status st;

        st = check_saga_order(call, so, phase == EVENTS_TCC_TRY ? SAGA_DEBIT : SAGA_COMPENSATE);
        if (st != RPC_OK) {
                return st;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = user_tcc(db, so, phase, svc_step(conf, "user", "coupon"),
            svc_step(conf, "user", "debit"), out, ret_duplicate);
        return events_tcc_status(call, db, st, "user step", phase);
}

RPC_HANDLER(handle_run, Mercato__Txn__V1__SagaCommand, Mercato__Txn__V1__SagaCommandReply)
{
        return events_command_run(call, req, "debit", "refund", run_command, run_tcc, resp);
}

const rpc_method user_command_methods[EVENTS_N_COMMAND_METHODS] = {
        RPC_METHOD_ENTRY("Run", handle_run, mercato__txn__v1__saga_command__descriptor,
            mercato__txn__v1__saga_command_reply__descriptor, RPC_METHOD_IDEMPOTENT),
};

const rpc_method user_event_methods[USER_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
