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
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "events_common.h"
#include "product_priv.h"
#include "product_store.h"
#include "svc.h"
#include "txn.h"

#define TOPIC_ORDER_COMPLETED "order.completed"
#define CONSUMER_ORDER_COMPLETED "product:order.completed"
#define SAGA_CONSUMER "product:saga"
#define SAGA_SOURCE "product"

static int
line_cmp(const void *a, const void *b)
{
        const product_item *x = a;
        const product_item *y = b;

        return (x->product_id > y->product_id) - (x->product_id < y->product_id);
}

/* What apply_order_completed sells and counts. */
typedef struct sale_arg {
        const Mercato__Event__V1__OrderCompleted *oc;
        int64_t day_ms;
} sale_arg;

/* Behind the barrier: the reservation sold and the sales. */
static rpc_status
apply_order_completed(db_conn *db, void *arg)
{
        const sale_arg *a = arg;
        product_item lines[EVENTS_ITEMS_MAX];
        size_t n = a->oc->n_items;
        rpc_status st;

        /* In product id order, so that concurrent deliveries lock the sales rows alike. */
        for (size_t i = 0; i < n; i++) {
                lines[i] = (product_item) { .product_id = a->oc->items[i]->product_id,
                        .quantity = a->oc->items[i]->quantity };
        }
        qsort(lines, n, sizeof(lines[0]), line_cmp);
        /* The stock a saga order held is sold now (a monolith order's was sold already). */
        st = product_store_commit_reservation(db, a->oc->order_id);
        for (size_t i = 0; st == RPC_OK && i < n; i++) {
                st = product_store_add_sales(db, lines[i].product_id, lines[i].quantity, a->day_ms);
        }
        return st;
}

/* order.completed: the reservation sold, the sales counted. */
static rpc_status
deliver_order_completed(
    rpc_call *call, const Mercato__Event__V1__Event *req, Mercato__Event__V1__DeliverAck *resp)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__OrderCompleted *oc;
        bool duplicate = false;
        int64_t day_ms;
        rpc_status st;

        st = events_order_completed(call, req, &msg);
        if (st != RPC_OK) {
                return st;
        }
        oc = (const Mercato__Event__V1__OrderCompleted *) msg;
        /* The day the order completed; the event's own time, else now, when it is unset. */
        day_ms = oc->completed_at_ms > 0 ? oc->completed_at_ms
            : req->created_at_ms > 0 && req->created_at_ms <= EVENTS_TIME_MAX_MS
            ? req->created_at_ms
            : rpc_now_unix_ms();
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        sale_arg arg = { .oc = oc, .day_ms = day_ms };
        st = txn_consume(
            db, CONSUMER_ORDER_COMPLETED, req->event_id, apply_order_completed, &arg, &duplicate);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        resp->duplicate = duplicate;
        return RPC_OK;
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
        if (so->order_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be > 0");
        }
        if (so->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (kind == SAGA_RELEASE
            && (so->reason[0] == '\0' || strlen(so->reason) > EVENTS_REASON_MAX)) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "reason must be 1..%d bytes", EVENTS_REASON_MAX);
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

/* What a saga step works on: the order, the step switch, whether to tell the order. */
typedef struct saga_arg {
        const Mercato__Event__V1__SagaOrder *so;
        svc_step_result sw;
        bool tell_order;
} saga_arg;

/* order.created, behind the barrier key "reserve:<order>": reserves every item or none. A
 * reservation that fails for stock is rolled back to the savepoint after the barrier, so
 * the key stays taken with the rejection. */
static rpc_status
reserve_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        const Mercato__Event__V1__SagaOrder *so = a->so;
        product_item items[EVENTS_ITEMS_MAX];
        const char *reason = NULL;
        char err[256];
        rpc_status st;

        for (size_t i = 0; i < so->n_items; i++) {
                items[i] = (product_item) { .product_id = so->items[i]->product_id,
                        .quantity = so->items[i]->quantity };
        }
        if (a->sw == SVC_STEP_TIMEOUT) {
                return RPC_UNAVAILABLE;
        }
        if (a->sw == SVC_STEP_FAIL) {
                reason = "out_of_stock";
        } else {
                st = db_command(db, "SAVEPOINT reserve");
                if (st == RPC_OK) {
                        st = product_store_reserve(
                            db, so->order_id, items, so->n_items, err, sizeof(err));
                }
                if (st == RPC_FAILED_PRECONDITION || st == RPC_NOT_FOUND) {
                        /* Out of stock, or the product is gone: nothing is reserved. */
                        reason = "out_of_stock";
                        st = db_command(db, "ROLLBACK TO SAVEPOINT reserve");
                }
                if (st != RPC_OK) {
                        return st;
                }
        }
        return events_saga_emit(
            db, SAGA_SOURCE, reason == NULL ? "stock.reserved" : "stock.rejected", so, reason);
}

/* balance.rejected, balance.refunded, order.cancelled, behind the barrier key
 * "release:<order>": releases what the order holds, if anything. Takes the reserve key too,
 * so that a reservation that comes later does nothing. */
static rpc_status
release_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        char key[64];
        rpc_status st;

        events_saga_key(key, sizeof(key), "reserve", a->so->order_id);
        st = txn_barrier_enter(db, SAGA_CONSUMER, key);
        if (st == RPC_ALREADY_EXISTS) {
                st = RPC_OK; /* it ran (or was refused): release what it holds */
        }
        if (st == RPC_OK) {
                st = product_store_release(db, a->so->order_id);
        }
        if (st == RPC_OK && a->tell_order) {
                st = events_saga_emit(db, SAGA_SOURCE, "stock.released", a->so, a->so->reason);
        }
        return st;
}

/* A saga delivery: one local transaction, retried when it aborts. A taken key is a
 * duplicate, or for "reserve:<order>" the compensation that came first. */
static rpc_status
deliver_saga(rpc_call *call, const Mercato__Event__V1__Event *req, saga_kind kind,
    Mercato__Event__V1__DeliverAck *resp)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__SagaOrder *so;
        svc *s = svc_of_call(call);
        svc_step_result sw = svc_step(s != NULL ? svc_conf(s) : NULL, "product", "reserve");
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
        saga_arg arg = { .so = so, .sw = sw, .tell_order = kind == SAGA_RELEASE };
        events_saga_key(
            key, sizeof(key), kind == SAGA_RESERVE ? "reserve" : "release", so->order_id);
        st = txn_consume(db, SAGA_CONSUMER, key,
            kind == SAGA_RESERVE ? reserve_apply : release_apply, &arg, &duplicate);
        if (st == RPC_UNAVAILABLE) {
                return rpc_call_error(call, st, "product.reserve does not answer (step switch)");
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
        if (strcmp(req->topic, TOPIC_ORDER_COMPLETED) == 0) {
                return deliver_order_completed(call, req, resp);
        }
        for (size_t i = 0; i < sizeof(saga_topics) / sizeof(saga_topics[0]); i++) {
                if (strcmp(req->topic, saga_topics[i].topic) == 0) {
                        return deliver_saga(call, req, saga_topics[i].kind, resp);
                }
        }
        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown topic");
}

const rpc_method product_event_methods[PRODUCT_N_EVENT_METHODS] = {
        RPC_METHOD_ENTRY("Deliver", handle_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, RPC_METHOD_IDEMPOTENT),
};
