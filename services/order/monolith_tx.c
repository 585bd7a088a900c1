/* monolith_tx.c: the monolith order: a whole order as one local transaction, every store's SQL.
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
 * cancellation with reason participant_error (failure branch "order", INTERNAL): the step
 * failed with an error rather than a business "no". `timeout` on any step cancels the
 * order with reason timeout: the step never answered. Either way the transaction rolls back first, like any
 * business failure, so nothing but the cancelled order remains.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "order_tx.h"
#include "payment_store.h"
#include "product_store.h"
#include "svc.h"
#include "user_store.h"

/* The first run and three retries. */
#define MONO_ATTEMPTS 4

/* The largest order total: a debit moves at most this much. */
#define MONO_TOTAL_MAX USER_AMOUNT_MAX

static order_mono_outcome fail(db_conn *db, order_mono *o, rpc_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Rolls back and records an error. */
static order_mono_outcome
fail(db_conn *db, order_mono *o, rpc_status st, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(o->msg, sizeof(o->msg), fmt, ap);
        va_end(ap);
        db_rollback(db);
        o->st = st;
        return ORDER_MONO_ERROR;
}

/* Rolls back a failed statement: its status with the database's message. */
static order_mono_outcome
fail_db(db_conn *db, order_mono *o, rpc_status st, const char *step)
{
        return fail(db, o, st, "%s: %s", step, db_errmsg(db));
}

/* Rolls back for a business rule. */
static order_mono_outcome
business(db_conn *db, order_mono *o, const char *reason)
{
        db_rollback(db);
        o->reason = reason;
        return ORDER_MONO_CANCELLED;
}

/* The step switch of service.step: NULL to run the step, else the reason to cancel with
 * (fail_reason for `fail`, "timeout" for `timeout`). */
static const char *
step_switch(const order_mono *o, const char *service, const char *step, const char *fail_reason)
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

/* One run of the whole order in one transaction. */
static order_mono_outcome
mono_run(db_conn *db, order_mono *o)
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
                return ORDER_MONO_EXISTS; /* a concurrent request with the key won */
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

        /* The order cannot be completed: everything before is undone. */
        if ((cancel = step_switch(o, "order", "complete", ORDER_REASON_PARTICIPANT_ERROR))
            != NULL) {
                if (strcmp(cancel, ORDER_REASON_PARTICIPANT_ERROR) == 0) {
                        order_failure_set(&o->failure, "order", RPC_INTERNAL,
                            "order.complete failed (step switch)");
                }
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
        st = order_outbox_completed(
            db, o->order_id, o->r->user_id, amount, o->lines, o->n, o->updated_at_ms);
        if (st != RPC_OK) {
                return fail_db(db, o, st, "outbox");
        }
        st = db_commit(db);
        if (st != RPC_OK) {
                return fail_db(db, o, st, "commit");
        }
        return ORDER_MONO_COMPLETED;
}

/* Records the order CANCELLED, with its reason and items, under the id the failed run
 * drew, in a small transaction of its own (order_store_create retries it). */
static order_mono_outcome
mono_record_cancelled(db_conn *db, order_mono *o)
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
                .failure = o->failure.branch[0] != '\0' ? &o->failure : NULL,
        };
        rpc_status st;

        o->discount = 0;
        st = order_store_create(db, &on, &o->order_id, &o->created_at_ms);
        if (st == RPC_ALREADY_EXISTS) {
                return ORDER_MONO_EXISTS;
        }
        if (st != RPC_OK) {
                return fail_db(db, o, st, "record cancelled order");
        }
        o->updated_at_ms = o->created_at_ms;
        return ORDER_MONO_CANCELLED;
}

order_mono_outcome
order_monolith_run(db_conn *db, order_mono *o)
{
        order_mono_outcome out = ORDER_MONO_ERROR;

        for (int attempt = 0; attempt < MONO_ATTEMPTS; attempt++) {
                out = mono_run(db, o);
                if (out != ORDER_MONO_ERROR || !db_retryable(o->st)) {
                        break;
                }
        }
        if (out == ORDER_MONO_CANCELLED) {
                out = mono_record_cancelled(db, o);
        }
        return out;
}
