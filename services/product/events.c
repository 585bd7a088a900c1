/* events.c: the product service's EventSink: its saga step (stock) and order.completed's sales.
 *
 * NOTES
 *
 * The saga step of the product service (services/order/saga.c tells the whole chain), each
 * delivery one local transaction that enters its barrier keys (consumer "product:saga"),
 * does its work with the store and adds the next event to the outbox:
 *
 *   order.created     enter "reserve:<order>"; reserve the stock, all or nothing
 *                     -> stock.reserved, or stock.rejected (out_of_stock)
 *   balance.rejected, balance.refunded
 *                     enter "release:<order>" and "reserve:<order>"; release the stock
 *                     -> stock.released, with the reason carried on
 *   order.cancelled   the same, with no event: the order is cancelled already
 *   order.completed   the reservation is sold, and the sales per day grow (barrier on the
 *                     event id, consumer "product:order.completed")
 *
 * A key that is taken means a duplicate or, for "reserve:<order>", that the compensation
 * came first: the delivery is acked and nothing changes. The step switch product.reserve:
 * `fail` rejects the order as out of stock, `timeout` refuses the delivery (UNAVAILABLE)
 * while the compensation has not come.
 *
 * The transactions themselves are in steps.c (product_steps.h), which the SQL replay
 * (mercato-bench replay) runs too; this file decodes, checks and answers.
 */
#include <inttypes.h>
#include <string.h>

#include "event.pb-c.h"
#include "events_common.h"
#include "product_priv.h"
#include "product_steps.h"
#include "product_store.h"
#include "svc.h"
#include "txn.h"

/* order.completed: the reservation sold, the sales counted on the day it completed. */
static rpc_status
apply_order_completed(db_conn *db, const Mercato__Event__V1__Event *ev,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate)
{
        return product_order_completed(db, ev->event_id, oc, ev->created_at_ms, ret_duplicate);
}

static rpc_status
deliver_order_completed(
    rpc_call *call, const Mercato__Event__V1__Event *req, Mercato__Event__V1__DeliverAck *resp)
{
        bool duplicate = false;
        rpc_status st
            = events_deliver_order_completed(call, req, apply_order_completed, &duplicate);

        resp->duplicate = duplicate;
        return st;
}

/*
 * The saga step
 */

/* What a saga delivery asks of the product service. */
typedef enum saga_kind {
        SAGA_RESERVE = 0,    /* order.created */
        SAGA_RELEASE = 1,    /* balance.rejected, balance.refunded: release, tell the order */
        SAGA_COMPENSATE = 2, /* order.cancelled: release, tell nobody */
} saga_kind;

static const struct {
        const char *topic;
        saga_kind kind;
} saga_topics[] = {
        { "order.created", SAGA_RESERVE },
        { "balance.rejected", SAGA_RELEASE },
        { "balance.refunded", SAGA_RELEASE },
        { "order.cancelled", SAGA_COMPENSATE },
};

/* Checks a SagaOrder for its kind: the items to reserve, the reason to carry on. */
static rpc_status
check_saga_order(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, saga_kind kind)
{
        rpc_status st = events_check_saga_order(call, so, kind == SAGA_RELEASE);

        if (st != RPC_OK) {
                return st;
        }
        if (kind != SAGA_RESERVE) {
                return RPC_OK;
        }
        if (so->n_items == 0 || so->n_items > EVENTS_ITEMS_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "items must be 1..%d", EVENTS_ITEMS_MAX);
        }
        for (size_t i = 0; i < so->n_items; i++) {
                const Mercato__Event__V1__SagaOrder__Line *l = so->items[i];

                if (l->product_id <= 0) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "product_id must be > 0");
                }
                if (l->quantity <= 0 || l->quantity > EVENTS_QUANTITY_MAX) {
                        return rpc_call_error(
                            call, RPC_INVALID_ARGUMENT, "quantity must be 1..1000000000000");
                }
                for (size_t j = 0; j < i; j++) {
                        if (so->items[j]->product_id == l->product_id) {
                                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                                    "product %" PRId64 " listed twice", l->product_id);
                        }
                }
        }
        return RPC_OK;
}

/* A saga delivery: one local transaction, retried when it aborts. A taken key is a
 * duplicate, or for "reserve:<order>" the compensation that came first. */
/* One saga action on a SagaOrder: checks it, then runs it in one local transaction,
 * retried when it aborts: for a delivery (orch NULL) it adds the next event, for an
 * orchestrator's command it records its outcome into *orch. */
static rpc_status
saga_run(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, saga_kind kind, txn_outcome *orch,
    bool *ret_duplicate)
{
        svc *s = svc_of_call(call);
        svc_step_result sw = svc_step(s != NULL ? svc_conf(s) : NULL, "product", "reserve");
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
                st = kind == SAGA_RESERVE ? product_orch_reserve(db, so, sw, orch, ret_duplicate)
                                          : product_orch_release(db, so, orch, ret_duplicate);
        } else {
                st = kind == SAGA_RESERVE
                    ? product_saga_reserve(db, so, sw, ret_duplicate)
                    : product_saga_release(db, so, kind == SAGA_RELEASE, ret_duplicate);
        }
        if (st == RPC_UNAVAILABLE) {
                return rpc_call_error(call, st, "product.reserve does not answer (step switch)");
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
        if (strcmp(req->topic, EVENTS_TOPIC_ORDER_COMPLETED) == 0) {
                return deliver_order_completed(call, req, resp);
        }
        for (size_t i = 0; i < sizeof(saga_topics) / sizeof(saga_topics[0]); i++) {
                if (strcmp(req->topic, saga_topics[i].topic) == 0) {
                        return deliver_saga(call, req, saga_topics[i].kind, resp);
                }
        }
        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
}

/* An orchestrator's command: reserve, or its compensation release. */
static rpc_status
run_command(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, bool forward, txn_outcome *out,
    bool *ret_duplicate)
{
        return saga_run(call, so, forward ? SAGA_RESERVE : SAGA_COMPENSATE, out, ret_duplicate);
}

/* A TCC coordinator's command: a phase of the product branch. */
static rpc_status
run_tcc(rpc_call *call, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    txn_outcome *out, bool *ret_duplicate)
{
        svc *s = svc_of_call(call);
        svc_step_result sw = svc_step(s != NULL ? svc_conf(s) : NULL, "product", "reserve");
        rpc_status st;

        st = check_saga_order(call, so, phase == EVENTS_TCC_TRY ? SAGA_RESERVE : SAGA_COMPENSATE);
        if (st != RPC_OK) {
                return st;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = product_tcc(db, so, phase, sw, out, ret_duplicate);
        return events_tcc_status(call, db, st, "product.reserve", phase);
}

RPC_HANDLER(handle_run, Mercato__Txn__V1__SagaCommand, Mercato__Txn__V1__SagaCommandReply)
{
        return events_command_run(call, req, "reserve", "release", run_command, run_tcc, resp);
}

const rpc_method product_command_methods[EVENTS_N_COMMAND_METHODS] = {
        RPC_METHOD_ENTRY("Run", handle_run, mercato__txn__v1__saga_command__descriptor,
            mercato__txn__v1__saga_command_reply__descriptor, RPC_METHOD_IDEMPOTENT),
};

const rpc_method product_event_methods[PRODUCT_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
