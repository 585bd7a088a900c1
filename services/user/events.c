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
 */
#include <string.h>

#include "event.pb-c.h"
#include "events_common.h"
#include "svc.h"
#include "txn.h"
#include "user_priv.h"
#include "user_store.h"

#define SAGA_CONSUMER "user:saga"
#define SAGA_SOURCE "user"

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
        if (so->order_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be > 0");
        }
        if (so->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (kind == SAGA_REFUND
            && (so->reason[0] == '\0' || strlen(so->reason) > EVENTS_REASON_MAX)) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "reason must be 1..%d bytes", EVENTS_REASON_MAX);
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

/* What a saga step works on: the order, the topology (its step switches), whether to tell
 * product. */
typedef struct saga_arg {
        const Mercato__Event__V1__SagaOrder *so;
        const rpc_conf *conf;
        bool tell_product;
} saga_arg;

/* stock.reserved, behind the barrier key "debit:<order>": the coupon and the debit, or the
 * rejection. */
static rpc_status
debit_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        const Mercato__Event__V1__SagaOrder *so = a->so;
        Mercato__Event__V1__SagaOrder ev = MERCATO__EVENT__V1__SAGA_ORDER__INIT;
        svc_step_result coupon_sw = svc_step(a->conf, "user", "coupon");
        svc_step_result debit_sw = svc_step(a->conf, "user", "debit");
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
        if (reason != NULL) {
                return events_saga_emit(db, SAGA_SOURCE, "balance.rejected", so, reason);
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
        char key[64];
        rpc_status st;

        events_saga_key(key, sizeof(key), "debit", a->so->order_id);
        st = txn_barrier_enter(db, SAGA_CONSUMER, key);
        if (st == RPC_ALREADY_EXISTS) {
                st = RPC_OK; /* it ran (or was refused): undo what it did */
        }
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

/* A saga delivery: one local transaction, retried when it aborts. A taken key is a
 * duplicate, or for "debit:<order>" the compensation that came first. */
static rpc_status
deliver_saga(rpc_call *call, const Mercato__Event__V1__Event *req, saga_kind kind,
    Mercato__Event__V1__DeliverAck *resp)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__SagaOrder *so;
        svc *s = svc_of_call(call);
        const rpc_conf *conf = s != NULL ? svc_conf(s) : NULL;
        bool duplicate = false;
        char key[64];
        rpc_status st;

        st = events_saga_order(call, req, &msg);
        if (st != RPC_OK) {
                return st;
        }
        so = (const Mercato__Event__V1__SagaOrder *) msg;
        st = check_saga_order(call, so, kind);
        if (st != RPC_OK) {
                return st;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        saga_arg arg = { .so = so, .conf = conf, .tell_product = kind == SAGA_REFUND };
        events_saga_key(key, sizeof(key), kind == SAGA_DEBIT ? "debit" : "refund", so->order_id);
        st = txn_consume(db, SAGA_CONSUMER, key, kind == SAGA_DEBIT ? debit_apply : refund_apply,
            &arg, &duplicate);
        if (st == RPC_UNAVAILABLE) {
                return rpc_call_error(call, st, "user step does not answer (step switch)");
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        if (!duplicate && kind != SAGA_COMPENSATE) {
                svc_relay_wake(s, SVC_DATASET_SPLIT);
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

const rpc_method user_event_methods[USER_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
