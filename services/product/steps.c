/* steps.c: the product service's transactions in the order flow (product_steps.h). */
#include <stdio.h>
#include <stdlib.h>

#include "events_tx.h"
#include "product_steps.h"
#include "product_store.h"
#include "txn.h"

#define CONSUMER_ORDER_COMPLETED "product:order.completed"
#define SAGA_CONSUMER "product:saga"
#define SAGA_SOURCE "product"
#define TCC_CONSUMER "product:tcc"

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

rpc_status
product_order_completed(db_conn *db, const char *event_id,
    const Mercato__Event__V1__OrderCompleted *oc, int64_t event_created_at_ms, bool *ret_duplicate)
{
        /* The day the order completed; the event's own time, else now, when it is unset. */
        int64_t day_ms = oc->completed_at_ms > 0 ? oc->completed_at_ms
            : event_created_at_ms > 0 && event_created_at_ms <= EVENTS_TIME_MAX_MS
            ? event_created_at_ms
            : rpc_now_unix_ms();
        sale_arg arg = { .oc = oc, .day_ms = day_ms };

        return txn_consume(
            db, CONSUMER_ORDER_COMPLETED, event_id, apply_order_completed, &arg, ret_duplicate);
}

/* What a saga step works on: the order, the step switch, whether to tell the order, and
 * for an orchestrator's command where its outcome goes (NULL: the next event instead). */
typedef struct saga_arg {
        const Mercato__Event__V1__SagaOrder *so;
        svc_step_result sw;
        bool tell_order;
        txn_outcome *orch;
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
        return events_saga_step_end(db, SAGA_SOURCE, SAGA_CONSUMER, "reserve", so,
            reason == NULL ? "stock.reserved" : "stock.rejected", reason, 0, a->orch);
}

/* balance.rejected, balance.refunded, order.cancelled, behind the barrier key
 * "release:<order>": releases what the order holds, if anything. Takes the reserve key too,
 * so that a reservation that comes later does nothing. */
static rpc_status
release_apply(db_conn *db, void *arg)
{
        const saga_arg *a = arg;
        rpc_status st;

        st = events_saga_fence(db, SAGA_CONSUMER, "reserve", a->so->order_id);
        if (st == RPC_OK) {
                st = product_store_release(db, a->so->order_id);
        }
        if (st == RPC_OK && a->tell_order) {
                st = events_saga_emit(db, SAGA_SOURCE, "stock.released", a->so, a->so->reason);
        }
        return st;
}

rpc_status
product_saga_reserve(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, svc_step_result sw, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = sw };
        return events_saga_consume(
            db, SAGA_CONSUMER, "reserve", so->order_id, reserve_apply, &arg, ret_duplicate);
}

rpc_status
product_saga_release(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, bool tell_order, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = SVC_STEP_OK, .tell_order = tell_order };
        return events_saga_consume(
            db, SAGA_CONSUMER, "release", so->order_id, release_apply, &arg, ret_duplicate);
}

rpc_status
product_orch_reserve(db_conn *db, const Mercato__Event__V1__SagaOrder *so, svc_step_result sw,
    txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = sw, .orch = out };
        return events_orch_consume(db, SAGA_CONSUMER, "reserve", so->order_id, reserve_apply, &arg,
            false, out, ret_duplicate);
}

rpc_status
product_orch_release(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = SVC_STEP_OK, .orch = out };
        return events_orch_consume(db, SAGA_CONSUMER, "release", so->order_id, release_apply, &arg,
            true, out, ret_duplicate);
}

/* A TCC phase of the product branch: the try holds the items' stock (all or none), the
 * confirm takes it, the cancel frees it. */
static rpc_status
tcc_apply(
    db_conn *db, void *arg, events_tcc_phase phase, const char **ret_reason, int64_t *ret_discount)
{
        const saga_arg *a = arg;
        const Mercato__Event__V1__SagaOrder *so = a->so;
        product_item items[EVENTS_ITEMS_MAX];
        int64_t rows = 0;
        char err[256];
        rpc_status st;

        (void) ret_discount;
        if (phase != EVENTS_TCC_TRY) {
                st = product_store_settle(db, so->order_id, phase == EVENTS_TCC_CONFIRM, &rows);
                /* A confirm with nothing tried is a coordinator's mistake: refused, so that it
                 * shows as the transaction's last error instead of passing unseen. */
                return st == RPC_OK && rows == 0 && phase == EVENTS_TCC_CONFIRM
                    ? RPC_FAILED_PRECONDITION
                    : st;
        }
        if (a->sw == SVC_STEP_TIMEOUT) {
                return RPC_UNAVAILABLE;
        }
        if (a->sw == SVC_STEP_FAIL) {
                *ret_reason = "out_of_stock";
                return RPC_OK;
        }
        for (size_t i = 0; i < so->n_items; i++) {
                items[i] = (product_item) { .product_id = so->items[i]->product_id,
                        .quantity = so->items[i]->quantity };
        }
        st = product_store_try(db, so->order_id, items, so->n_items, err, sizeof(err));
        if (st == RPC_FAILED_PRECONDITION || st == RPC_NOT_FOUND) {
                *ret_reason = "out_of_stock";
                return RPC_OK;
        }
        return st;
}

rpc_status
product_tcc(db_conn *db, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    svc_step_result sw, txn_outcome *out, bool *ret_duplicate)
{
        saga_arg arg = { .so = so, .sw = sw };
        return events_tcc_consume(
            db, TCC_CONSUMER, phase, so->order_id, tcc_apply, &arg, out, ret_duplicate);
}

rpc_status
product_tpc_branch(
    db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote, char *err, size_t errlen)
{
        product_item items[EVENTS_ITEMS_MAX];
        rpc_status st;

        if (req->n_items > EVENTS_ITEMS_MAX) {
                snprintf(err, errlen, "items must be 1..%d", EVENTS_ITEMS_MAX);
                return RPC_INVALID_ARGUMENT;
        }
        for (size_t i = 0; i < req->n_items; i++) {
                items[i] = (product_item) { .product_id = req->items[i]->product_id,
                        .quantity = req->items[i]->quantity };
        }
        err[0] = '\0';
        st = product_store_reserve(db, req->order_id, items, req->n_items, err, errlen);
        if (st == RPC_FAILED_PRECONDITION) {
                vote->reason = (char *) "out_of_stock";
                return RPC_OK;
        }
        if (st == RPC_NOT_FOUND || st == RPC_INVALID_ARGUMENT || st == RPC_ALREADY_EXISTS) {
                if (err[0] == '\0') {
                        snprintf(err, errlen, "reserve");
                }
                return st;
        }
        if (st != RPC_OK) {
                snprintf(err, errlen, "reserve: %s", db_errmsg(db));
                return st;
        }
        st = product_store_commit_reservation(db, req->order_id);
        if (st != RPC_OK) {
                snprintf(err, errlen, "commit reservation: %s", db_errmsg(db));
                return st;
        }
        vote->yes = true;
        return RPC_OK;
}
