/* monolith.c: the monolith order flow: a whole order as one local transaction, every store's SQL.
 *
 * NOTES
 *
 * The monolith database holds the tables of every service, and the order service's
 * connection to it prepares every store's statements, so an order runs the very SQL the
 * saga and 2pc modes run in each service's database, in one local transaction:
 *
 *   check the user and coupon exist       user store     (bad input: error, nothing kept)
 *   price the items                       product store  (unknown product: error)
 *   create the order PENDING              order store
 *   reserve the stock, all or nothing     product store  (out_of_stock)
 *   use the coupon, compute the discount  user store     (coupon_invalid)
 *   debit the amount after the discount   user store     (insufficient_balance)
 *   capture the payment                   payment store  (payment_declined)
 *   mark the reservations sold            product store
 *   mark the order COMPLETED              order store
 *   add order.completed to the outbox     txn
 *   COMMIT, then wake the relay
 *
 * A business failure rolls the transaction back, and a second, small transaction records
 * the order CANCELLED with its reason and its items, under the id the first drew (a
 * sequence value outlives a rollback), so the order exists and nothing else changed. A
 * transaction that aborts (deadlock, serialization, lock timeout) runs again from the top,
 * up to MONO_ATTEMPTS times in all. An idempotency key is stored with the order: a resent
 * request finds its order instead of placing another.
 *
 * The step switches of the topology (svc_step: `[user] step.debit = fail`) are read here,
 * from the order service's own copy of the topology, right before each step runs. `fail`
 * is the step's business failure: out_of_stock, coupon_invalid (only for an order with a
 * coupon: without one the step does not run), insufficient_balance, payment_declined; on
 * order.create it is an INTERNAL error with nothing recorded, and on order.complete a
 * cancellation with reason timeout. `timeout` on any step cancels the order with reason
 * timeout: the step never answered. Either way the transaction rolls back first, like any
 * business failure, so nothing but the cancelled order remains.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "order_priv.h"
#include "payment_store.h"
#include "product_store.h"
#include "txn.h"
#include "user_store.h"

/* The first run and three retries. */
#define MONO_ATTEMPTS 4

/* The largest order total: a debit moves at most this much. */
#define MONO_TOTAL_MAX USER_AMOUNT_MAX

/* How one run of the transaction ended. */
typedef enum mono_outcome {
        MONO_COMPLETED = 0, /* committed */
        MONO_BUSINESS = 1,  /* a business rule failed; rolled back, reason set */
        MONO_ERROR = 2,     /* bad input or a failure; rolled back, status and message set */
        MONO_EXISTS = 3,    /* the idempotency key's order exists; rolled back */
} mono_outcome;

/* One order in flight. */
typedef struct mono_order {
        const order_request *r;
        const rpc_conf *conf;                /* the topology, for the step switches; may be NULL */
        product_item items[ORDER_ITEMS_MAX]; /* the lines, priced */
        order_line lines[ORDER_ITEMS_MAX];
        size_t n;
        int64_t order_id;
        int64_t total;
        int64_t discount;
        int64_t created_at_ms;
        int64_t updated_at_ms;
        const char *reason; /* MONO_BUSINESS */
        rpc_status st;      /* MONO_ERROR */
        char msg[256];      /* MONO_ERROR */
} mono_order;

static mono_outcome fail(db_conn *db, mono_order *o, rpc_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Rolls back and records an error. */
static mono_outcome
fail(db_conn *db, mono_order *o, rpc_status st, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(o->msg, sizeof(o->msg), fmt, ap);
        va_end(ap);
        db_rollback(db);
        o->st = st;
        return MONO_ERROR;
}

/* Rolls back a failed statement: its status with the database's message. */
static mono_outcome
fail_db(db_conn *db, mono_order *o, rpc_status st, const char *step)
{
        return fail(db, o, st, "%s: %s", step, db_errmsg(db));
}

/* Rolls back for a business rule. */
static mono_outcome
business(db_conn *db, mono_order *o, const char *reason)
{
        db_rollback(db);
        o->reason = reason;
        return MONO_BUSINESS;
}

/* The step switch of service.step: NULL to run the step, else the reason to cancel with
 * (fail_reason for `fail`, "timeout" for `timeout`). */
static const char *
step_switch(const mono_order *o, const char *service, const char *step, const char *fail_reason)
{
        switch (svc_step(o->conf, service, step)) {
        case SVC_STEP_FAIL:
                return fail_reason;
        case SVC_STEP_TIMEOUT:
                return "timeout";
        case SVC_STEP_OK:
        default:
                return NULL;
        }
}

/* Adds order.completed to the outbox, in the open transaction. */
static rpc_status
outbox_completed(db_conn *db, const mono_order *o, int64_t amount)
{
        Mercato__Event__V1__OrderCompleted ev = MERCATO__EVENT__V1__ORDER_COMPLETED__INIT;
        Mercato__Event__V1__OrderCompleted__Line lines[ORDER_ITEMS_MAX];
        Mercato__Event__V1__OrderCompleted__Line *ptrs[ORDER_ITEMS_MAX];

        for (size_t i = 0; i < o->n; i++) {
                mercato__event__v1__order_completed__line__init(&lines[i]);
                lines[i].product_id = o->lines[i].product_id;
                lines[i].quantity = o->lines[i].quantity;
                lines[i].unit_price = o->lines[i].unit_price;
                ptrs[i] = &lines[i];
        }
        ev.order_id = o->order_id;
        ev.user_id = o->r->user_id;
        ev.amount = amount;
        ev.items = ptrs;
        ev.n_items = o->n;
        ev.completed_at_ms = o->updated_at_ms;
        return txn_outbox_add(db, "order", "order.completed", o->order_id, &ev.base, NULL);
}

/* One run of the whole order in one transaction. */
static mono_outcome
mono_run(db_conn *db, mono_order *o)
{
        const order_request *r = o->r;
        const char *what = "user";
        const char *cancel;
        char err[256] = "";
        int64_t amount;
        rpc_status st;

        o->discount = 0;
        o->total = 0;
        st = db_begin(db);
        if (st != RPC_OK) {
                return fail_db(db, o, st, "begin");
        }
        st = user_store_check(db, r->user_id, r->coupon_id, &what);
        if (st == RPC_NOT_FOUND) {
                return fail(db, o, st, "no %s %lld", what,
                    (long long) (strcmp(what, "coupon") == 0 ? r->coupon_id : r->user_id));
        }
        if (st != RPC_OK) {
                return fail_db(db, o, st, "user");
        }
        for (size_t i = 0; i < o->n; i++) {
                o->items[i] = (product_item) { .product_id = r->lines[i].product_id,
                        .quantity = r->lines[i].quantity };
        }
        st = product_store_price(db, o->items, o->n, err, sizeof(err));
        if (st == RPC_NOT_FOUND) {
                return fail(db, o, st, "%s", err[0] != '\0' ? err : "no such product");
        }
        if (st != RPC_OK) {
                return fail_db(db, o, st, "price");
        }
        for (size_t i = 0; i < o->n; i++) {
                int64_t line;
                o->lines[i] = (order_line) { .product_id = o->items[i].product_id,
                        .quantity = o->items[i].quantity,
                        .unit_price = o->items[i].unit_price };
                if (__builtin_mul_overflow(o->items[i].quantity, o->items[i].unit_price, &line)
                    || __builtin_add_overflow(o->total, line, &o->total)
                    || o->total > MONO_TOTAL_MAX) {
                        return fail(db, o, RPC_OUT_OF_RANGE, "order total exceeds 1000000000000");
                }
        }

        /* A failing create is an error before anything is kept; one that times out draws
         * its id, so that the order can be recorded cancelled. */
        if (svc_step(o->conf, "order", "create") == SVC_STEP_FAIL) {
                return fail(db, o, RPC_INTERNAL, "order.create failed (step switch)");
        }
        order_new on = {
                .user_id = r->user_id,
                .items = o->lines,
                .n_items = o->n,
                .total = o->total,
                .coupon_id = r->coupon_id,
                .mode = ORDER_MODE_MONOLITH,
                .status = ORDER_PENDING,
                .idempotency_key = r->idempotency_key,
        };
        st = order_store_create(db, &on, &o->order_id, &o->created_at_ms);
        if (st == RPC_ALREADY_EXISTS) {
                db_rollback(db);
                return MONO_EXISTS; /* a concurrent request with the key won */
        }
        if (st != RPC_OK) {
                return fail_db(db, o, st, "create order");
        }
        if ((cancel = step_switch(o, "order", "create", NULL)) != NULL) {
                return business(db, o, cancel);
        }

        if ((cancel = step_switch(o, "product", "reserve", "out_of_stock")) != NULL) {
                return business(db, o, cancel);
        }
        st = product_store_reserve(db, o->order_id, o->items, o->n, err, sizeof(err));
        if (st == RPC_FAILED_PRECONDITION) {
                return business(db, o, "out_of_stock");
        }
        if (st == RPC_NOT_FOUND) {
                return fail(db, o, st, "%s", err[0] != '\0' ? err : "no such product");
        }
        if (st != RPC_OK) {
                return fail_db(db, o, st, "reserve");
        }

        if (r->coupon_id > 0) {
                if ((cancel = step_switch(o, "user", "coupon", "coupon_invalid")) != NULL) {
                        return business(db, o, cancel);
                }
                st = user_store_use_coupon(
                    db, r->user_id, r->coupon_id, o->order_id, o->total, &o->discount);
                if (st == RPC_FAILED_PRECONDITION) {
                        return business(db, o, "coupon_invalid");
                }
                if (st == RPC_NOT_FOUND) {
                        return fail(db, o, st, "no coupon %lld", (long long) r->coupon_id);
                }
                if (st != RPC_OK) {
                        return fail_db(db, o, st, "coupon");
                }
        }
        amount = o->total - o->discount;

        if ((cancel = step_switch(o, "user", "debit", "insufficient_balance")) != NULL) {
                return business(db, o, cancel);
        }
        if (amount > 0) {
                st = user_store_debit(db, r->user_id, amount, o->order_id);
                if (st == RPC_FAILED_PRECONDITION) {
                        return business(db, o, "insufficient_balance");
                }
                if (st == RPC_NOT_FOUND) {
                        return fail(db, o, st, "no user %lld", (long long) r->user_id);
                }
                if (st != RPC_OK) {
                        return fail_db(db, o, st, "debit");
                }
        }

        if ((cancel = step_switch(o, "payment", "capture", "payment_declined")) != NULL) {
                return business(db, o, cancel);
        }
        st = payment_store_capture(db, o->order_id, r->user_id, amount);
        if (st == RPC_FAILED_PRECONDITION) {
                return business(db, o, "payment_declined");
        }
        if (st != RPC_OK) {
                return fail_db(db, o, st, "capture");
        }

        /* The order cannot be completed: everything before is undone, as on a timeout. */
        if ((cancel = step_switch(o, "order", "complete", "timeout")) != NULL) {
                return business(db, o, cancel);
        }
        st = product_store_commit_reservation(db, o->order_id);
        if (st != RPC_OK) {
                return fail_db(db, o, st, "commit reservation");
        }
        st = order_store_complete(db, o->order_id, o->discount, &o->updated_at_ms);
        if (st != RPC_OK) {
                return fail_db(db, o, st, "complete order");
        }
        st = outbox_completed(db, o, amount);
        if (st != RPC_OK) {
                return fail_db(db, o, st, "outbox");
        }
        st = db_commit(db);
        if (st != RPC_OK) {
                return fail_db(db, o, st, "commit");
        }
        return MONO_COMPLETED;
}

/* Records the order CANCELLED, with its reason and items, under the id the failed run
 * drew, in a small transaction of its own (order_store_create retries it). */
static mono_outcome
mono_record_cancelled(db_conn *db, mono_order *o)
{
        order_new on = {
                .order_id = o->order_id,
                .user_id = o->r->user_id,
                .items = o->lines,
                .n_items = o->n,
                .total = o->total,
                .coupon_id = o->r->coupon_id,
                .mode = ORDER_MODE_MONOLITH,
                .status = ORDER_CANCELLED,
                .reason = o->reason,
                .idempotency_key = o->r->idempotency_key,
        };
        rpc_status st;

        o->discount = 0;
        st = order_store_create(db, &on, &o->order_id, &o->created_at_ms);
        if (st == RPC_ALREADY_EXISTS) {
                return MONO_EXISTS;
        }
        if (st != RPC_OK) {
                return fail_db(db, o, st, "record cancelled order");
        }
        o->updated_at_ms = o->created_at_ms;
        return MONO_BUSINESS;
}

/* Answers with the order an idempotency key placed. */
static rpc_status
reply_existing(
    rpc_call *call, db_conn *db, const char *key, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        rpc_status st = order_reply_key(call, db, key, resp);

        if (st != RPC_OK) {
                return rpc_call_error(call, st == RPC_NOT_FOUND ? RPC_ABORTED : st,
                    "order of idempotency key: %s",
                    st == RPC_NOT_FOUND ? "not found, retry" : db_errmsg(db));
        }
        return RPC_OK;
}

rpc_status
order_monolith_place(
    rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        mono_order *o = rpc_call_alloc(call, sizeof(*o));
        mono_outcome out = MONO_ERROR;
        order_rec rec;

        memset(o, 0, sizeof(*o));
        o->r = r;
        o->conf = svc_of_call(call) != NULL ? svc_conf(svc_of_call(call)) : NULL;
        o->n = r->n_lines;
        /* Monolith orders live in the monolith database, whatever the call's metadata. */
        db_conn *db = svc_db_dataset(call, SVC_DATASET_MONO);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        if (r->idempotency_key[0] != '\0') {
                rpc_status st = order_reply_key(call, db, r->idempotency_key, resp);
                if (st == RPC_OK) {
                        return RPC_OK;
                }
                if (st != RPC_NOT_FOUND) {
                        return rpc_call_error(call, st, "database: %s", db_errmsg(db));
                }
        }
        for (int attempt = 0; attempt < MONO_ATTEMPTS; attempt++) {
                out = mono_run(db, o);
                if (out != MONO_ERROR || !db_retryable(o->st)) {
                        break;
                }
        }
        if (out == MONO_BUSINESS) {
                out = mono_record_cancelled(db, o);
        }
        switch (out) {
        case MONO_COMPLETED:
                svc_relay_wake(svc_of_call(call), SVC_DATASET_MONO);
                break;
        case MONO_BUSINESS:
                break;
        case MONO_EXISTS:
                return reply_existing(call, db, r->idempotency_key, resp);
        case MONO_ERROR:
        default:
                return rpc_call_error(call, o->st, "%s", o->msg);
        }

        rec = (order_rec) {
                .order_id = o->order_id,
                .user_id = r->user_id,
                .status = out == MONO_COMPLETED ? ORDER_COMPLETED : ORDER_CANCELLED,
                .reason = (char *) (o->reason != NULL ? o->reason : ""),
                .total = o->total,
                .discount = o->discount,
                .amount = o->total - o->discount,
                .coupon_id = r->coupon_id,
                .mode = ORDER_MODE_MONOLITH,
                .created_at_ms = o->created_at_ms,
                .updated_at_ms = o->updated_at_ms,
                .items = o->lines,
                .n_items = o->n,
        };
        resp->order = order_msg(call, &rec, NULL);
        return RPC_OK;
}
