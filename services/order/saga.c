/* saga.c: PlaceOrder as a choreographed saga: the order's first event, its two ends, the waiters.
 *
 * NOTES
 *
 * The saga is choreographed: no service drives it. Each step is one local transaction in
 * its service's own database that enters an insert-first barrier key, does the step with
 * the service's store functions, and adds the next event to its outbox; its relay then
 * delivers that event to the next service (EventSink/Deliver, at least once). The chain
 * (payloads: proto/event.proto, SagaOrder; subscriptions: [topics], or txn/relay.c's
 * defaults):
 *
 *   order    PlaceOrder: prices the items (product PriceItems), checks the user (user
 *            GetBalance), creates the order PENDING           -> order.created
 *   product  reserves the stock, all or nothing               -> stock.reserved
 *                                        or, out of stock,    -> stock.rejected
 *   user     uses the coupon, debits total - discount         -> balance.debited
 *                          or, coupon_invalid / insufficient  -> balance.rejected
 *   payment  captures the amount                              -> payment.captured
 *                                        or, declined,        -> payment.declined
 *   order    payment.captured: COMPLETED                      -> order.completed
 * and backwards, the compensations:
 *   user     payment.declined: refunds, restores the coupon   -> balance.refunded
 *   product  balance.rejected or balance.refunded: releases   -> stock.released
 *   order    stock.rejected or stock.released: CANCELLED with the reason carried along
 *
 * The deadline: an order still PENDING saga_timeout_ms after its creation is CANCELLED
 * with reason timeout by the order service (saga_clock.c), which adds order.cancelled:
 * product, user and payment each undo their step, whether it ran or not. Each participant
 * keeps one barrier key per action ("reserve:<order>", "debit:<order>",
 * "capture:<order>") and one per compensation ("release:<order>", "refund:<order>"); a
 * compensation enters both, so a compensation that comes first is recorded (a null
 * compensation) and the late action finds its key taken and does nothing (no hanging). A
 * duplicate delivery finds its key taken too and is acked as a duplicate.
 *
 * The order's two ends, complete and cancel, enter the one key "terminal:<order>", and the
 * update is conditional on PENDING: the first end wins, under the row's and the key's
 * locks, and an order that completed is never cancelled. The end answers the PlaceOrder
 * waiting for it in process (saga_waiters_finish); a PlaceOrder whose deadline comes first
 * answers PENDING, and GetOrder tells the rest.
 *
 * Step switches (svc_step): each service reads its own step's switch. `fail` is the step's
 * business failure; `timeout` refuses the delivery (UNAVAILABLE) so that the relay keeps
 * trying and the saga deadline cancels the order, unless the step's barrier key is taken
 * already (the compensation came): the late delivery is then acked, refused. order.create:
 * `fail` is an INTERNAL error before anything is written; `timeout` creates the order
 * without its first event, so the deadline cancels it. order.complete: `fail` cancels with
 * reason participant_error (the failure on the order says "order", INTERNAL) and
 * compensates at once; `timeout` leaves it to the deadline.
 *
 * Reasons: a step's business "no" travels back as its reason; `timeout` means the saga
 * deadline ([order] saga_timeout_ms) really passed. A participant that answers a delivery
 * with an error does not end the saga: the relay retries it (it may be transient) until
 * the deadline, and the error stays in the delivery's last_error and, after its attempts,
 * in the dead letters (`mercato txn list`).
 *
 * Crash rules: every step's state is in its database, committed with its event. A crash
 * before a commit loses the step and its event together (the relay delivers the event
 * before it again); after it, the relay delivers the event after the restart. Waiters are
 * in memory: after a restart of the order service they are gone (their calls failed), and
 * the deadline scan at start-up cancels the orders that passed their deadline meanwhile.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "product.pb-c.h"
#include "saga_priv.h"
#include "txn.h"
#include "user.pb-c.h"

#define PRODUCT_PRICE_ITEMS "/mercato.product.v1.ProductService/PriceItems"
#define USER_GET_BALANCE "/mercato.user.v1.UserService/GetBalance"

/* The largest order total: a debit moves at most this much (user_store.h). */
#define SAGA_TOTAL_MAX INT64_C(1000000000000)

/* A call to product or user during PlaceOrder takes at most this long. */
#define SAGA_CALL_TIMEOUT_MS 3000

/* A waiter answers this much before its call's deadline (at most a tenth of the time
 * left), so that the answer arrives in time. */
#define SAGA_REPLY_MARGIN_MS 200

/* A call with no deadline waits this long past the saga deadline. */
#define SAGA_WAIT_GRACE_MS 1000

/* Transactions that abort run again, up to this many times in all. */
#define SAGA_TX_ATTEMPTS 3

static struct {
        _Atomic bool started;
        rpc_client *product; /* NULL: no address in the topology */
        rpc_client *user;
        int64_t timeout_ms;
        int64_t scan_ms;
} saga = {
        .timeout_ms = SAGA_TIMEOUT_MS_DEFAULT,
        .scan_ms = SAGA_SCAN_MS_DEFAULT,
};

int64_t
order_saga_timeout_ms(void)
{
        return saga.timeout_ms;
}

int64_t
order_saga_scan_ms(void)
{
        return saga.scan_ms;
}

/* Runs an end, retried when it aborts; then wakes the relay and answers the waiters. */
static rpc_status
end_run(svc *s, db_conn *db, int64_t order_id, bool complete, int64_t discount, const char *reason,
    bool compensate, order_saga_outcome *ret_end)
{
        order_saga_outcome end = ORDER_SAGA_END_ALREADY;
        order_rec rec;
        rpc_status st;

        st = order_saga_end(db, order_id, complete, discount, reason, compensate, &rec, &end);
        if (st != RPC_OK) {
                return st;
        }
        if (end == ORDER_SAGA_END_DONE) {
                if (complete || compensate) {
                        svc_relay_wake(s, SVC_DATASET_SPLIT);
                }
                saga_waiters_finish(&rec);
                order_rec_fini(&rec);
        }
        *ret_end = end;
        return RPC_OK;
}

rpc_status
order_saga_complete(
    svc *s, db_conn *db, int64_t order_id, int64_t discount, order_saga_outcome *ret_end)
{
        return end_run(s, db, order_id, true, discount, NULL, false, ret_end);
}

rpc_status
order_saga_cancel(svc *s, db_conn *db, int64_t order_id, const char *reason, bool compensate,
    order_saga_outcome *ret_end)
{
        return end_run(s, db, order_id, false, 0, reason, compensate, ret_end);
}

/*
 * PlaceOrder
 */

int64_t
order_saga_answer_by(const rpc_call *call)
{
        int64_t now = rpc_now_mono_ms();
        int64_t deadline = rpc_call_deadline_unix_ms(call);
        int64_t left;
        int64_t margin;

        if (deadline <= 0) {
                return now + saga.timeout_ms + SAGA_WAIT_GRACE_MS;
        }
        left = deadline - rpc_now_unix_ms();
        margin = left / 10 < SAGA_REPLY_MARGIN_MS ? left / 10 : SAGA_REPLY_MARGIN_MS;
        return now + left - (margin > 0 ? margin : 0);
}

/* The options of a call to another service on behalf of call: idempotent reads, within
 * the caller's deadline. */
static rpc_call_opts
peer_opts(const rpc_call *call)
{
        int64_t deadline = rpc_call_deadline_unix_ms(call);
        rpc_call_opts o = { .timeout_ms = SAGA_CALL_TIMEOUT_MS, .idempotent = true };

        if (deadline > 0 && deadline < rpc_now_unix_ms() + SAGA_CALL_TIMEOUT_MS) {
                o.deadline_unix_ms = deadline;
        }
        return o;
}

/* Answers a failed call to another service: its own error when it answered, UNAVAILABLE
 * when it could not be reached. */
static rpc_status
peer_error(rpc_call *call, const char *peer, rpc_status st, const rpc_error *e)
{
        if (e->transport) {
                return rpc_call_error(call, RPC_UNAVAILABLE, "%s service: %s", peer, e->message);
        }
        return rpc_call_error(call, st, "%s", e->message);
}

rpc_status
order_saga_price(rpc_call *call, const order_request *r, order_line *lines, int64_t *ret_total)
{
        Mercato__Product__V1__PriceItemsRequest req
            = MERCATO__PRODUCT__V1__PRICE_ITEMS_REQUEST__INIT;
        Mercato__Product__V1__ItemQuantity items[ORDER_ITEMS_MAX];
        Mercato__Product__V1__ItemQuantity *ptrs[ORDER_ITEMS_MAX];
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Product__V1__PriceItemsResponse *resp;
        rpc_call_opts opts = peer_opts(call);
        rpc_error e = { 0 };
        int64_t total = 0;
        rpc_status st;

        if (saga.product == NULL) {
                return rpc_call_error(call, RPC_UNAVAILABLE, "no address for product");
        }
        for (size_t i = 0; i < r->n_lines; i++) {
                mercato__product__v1__item_quantity__init(&items[i]);
                items[i].product_id = r->lines[i].product_id;
                items[i].quantity = r->lines[i].quantity;
                ptrs[i] = &items[i];
        }
        req.items = ptrs;
        req.n_items = r->n_lines;
        st = rpc_client_call(saga.product, PRODUCT_PRICE_ITEMS, &req.base,
            &mercato__product__v1__price_items_response__descriptor, &msg, &opts, &e);
        if (st != RPC_OK) {
                return peer_error(call, "product", st, &e);
        }
        resp = (const Mercato__Product__V1__PriceItemsResponse *) msg;
        if (resp->n_items != r->n_lines) {
                return rpc_call_error(call, RPC_INTERNAL, "product priced %zu of %zu items",
                    resp->n_items, r->n_lines);
        }
        for (size_t i = 0; i < r->n_lines; i++) {
                const Mercato__Product__V1__PricedItem *pi = NULL;
                int64_t line;

                for (size_t j = 0; j < resp->n_items && pi == NULL; j++) {
                        if (resp->items[j]->product_id == r->lines[i].product_id) {
                                pi = resp->items[j];
                        }
                }
                if (pi == NULL || pi->unit_price < 0) {
                        return rpc_call_error(call, RPC_INTERNAL, "product %lld was not priced",
                            (long long) r->lines[i].product_id);
                }
                lines[i] = (order_line) { .product_id = r->lines[i].product_id,
                        .quantity = r->lines[i].quantity,
                        .unit_price = pi->unit_price };
                if (__builtin_mul_overflow(lines[i].quantity, lines[i].unit_price, &line)
                    || __builtin_add_overflow(total, line, &total) || total > SAGA_TOTAL_MAX) {
                        return rpc_call_error(
                            call, RPC_OUT_OF_RANGE, "order total exceeds 1000000000000");
                }
        }
        *ret_total = total;
        return RPC_OK;
}

rpc_status
order_saga_check_user(rpc_call *call, int64_t user_id)
{
        Mercato__User__V1__GetBalanceRequest req = MERCATO__USER__V1__GET_BALANCE_REQUEST__INIT;
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        rpc_call_opts opts = peer_opts(call);
        rpc_error e = { 0 };
        rpc_status st;

        if (saga.user == NULL) {
                return rpc_call_error(call, RPC_UNAVAILABLE, "no address for user");
        }
        req.user_id = user_id;
        st = rpc_client_call(saga.user, USER_GET_BALANCE, &req.base,
            &mercato__user__v1__balance__descriptor, &msg, &opts, &e);
        if (st == RPC_NOT_FOUND && !e.transport) {
                return rpc_call_error(call, RPC_NOT_FOUND, "no user %lld", (long long) user_id);
        }
        if (st != RPC_OK) {
                return peer_error(call, "user", st, &e);
        }
        return RPC_OK;
}

/* Answers with an order that already exists (an idempotency key's): at once when it ended
 * or is not a saga's, else when it ends, as if this call had placed it. Frees rec. */
static rpc_status
answer_existing(
    rpc_call *call, db_conn *db, order_rec *rec, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        order_rec now;

        if (rec->status == ORDER_PENDING && rec->mode == ORDER_MODE_SAGA
            && saga_waiter_add(call, rec, order_saga_answer_by(call), true)) {
                int64_t order_id = rec->order_id;

                order_rec_fini(rec);
                /* It may have ended between the read and the add: look again. From here
                 * the call is the waiter's, until taken back. */
                if (order_store_get(db, order_id, &now) != RPC_OK) {
                        return RPC_DEFERRED;
                }
                if (now.status != ORDER_PENDING && saga_waiter_take(call)) {
                        resp->order = order_msg(call, &now, NULL);
                        order_rec_fini(&now);
                        return RPC_OK;
                }
                order_rec_fini(&now);
                return RPC_DEFERRED;
        }
        resp->order = order_msg(call, rec, NULL);
        order_rec_fini(rec);
        return RPC_OK;
}

/* Answers with the order an idempotency key placed; ABORTED if it vanished (retry). */
static rpc_status
answer_key(
    rpc_call *call, db_conn *db, const char *key, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        order_rec rec;
        rpc_status st = order_store_find_key(db, key, &rec);

        if (st == RPC_NOT_FOUND) {
                return rpc_call_error(
                    call, RPC_ABORTED, "order of idempotency key: not found, retry");
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        return answer_existing(call, db, &rec, resp);
}

/* What one attempt of the creating transaction did. */
typedef enum create_outcome {
        CREATE_OK = 0,     /* committed; the waiter (if any) is registered, unarmed */
        CREATE_EXISTS = 1, /* the idempotency key is taken; rolled back */
        CREATE_ERROR = 2,  /* rolled back; the status says why */
        CREATE_GONE = 3,   /* rolled back, but the waiter was answered meanwhile (stop) */
} create_outcome;

/* One attempt: the order PENDING and its first event in one transaction, with the waiter
 * registered before the commit (so that no end can come before it). */
static create_outcome
create_tx(rpc_call *call, db_conn *db, const order_new *on, bool first_event, order_rec *rec,
    bool *ret_waiting, rpc_status *ret_st)
{
        rpc_status st;

        *ret_waiting = false;
        st = order_saga_create(db, on, first_event, &rec->order_id, &rec->created_at_ms);
        if (st == RPC_ALREADY_EXISTS) {
                return CREATE_EXISTS;
        }
        if (st == RPC_OK) {
                rec->updated_at_ms = rec->created_at_ms;
                *ret_waiting = saga_waiter_add(call, rec, order_saga_answer_by(call), false);
                st = db_commit(db);
        }
        if (st == RPC_OK) {
                return CREATE_OK;
        }
        db_rollback(db);
        *ret_st = st;
        if (*ret_waiting && !saga_waiter_take(call)) {
                return CREATE_GONE;
        }
        *ret_waiting = false;
        return CREATE_ERROR;
}

/* Creates the order PENDING with its first event and defers the reply until the order is
 * terminal or the deadline passes (then PENDING). */
static rpc_status
saga_place(rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        svc *s = svc_of_call(call);
        svc_step_result create = svc_step(s != NULL ? svc_conf(s) : NULL, "order", "create");
        order_line *lines = rpc_call_alloc(call, ORDER_ITEMS_MAX * sizeof(*lines));
        create_outcome out = CREATE_ERROR;
        bool waiting = false;
        int64_t total = 0;
        order_rec rec;
        rpc_status st = RPC_INTERNAL;

        if (create == SVC_STEP_FAIL) {
                return rpc_call_error(call, RPC_INTERNAL, "order.create failed (step switch)");
        }
        if (!atomic_load(&saga.started)) {
                return rpc_call_error(call, RPC_UNAVAILABLE, "the saga is not running yet");
        }
        /* Saga orders live in the order service's own database, whatever the metadata. */
        db_conn *db = svc_db_dataset(call, SVC_DATASET_SPLIT);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        if (r->idempotency_key[0] != '\0') {
                st = order_store_find_key(db, r->idempotency_key, &rec);
                if (st == RPC_OK) {
                        return answer_existing(call, db, &rec, resp);
                }
                if (st != RPC_NOT_FOUND) {
                        return rpc_call_error(call, st, "database: %s", db_errmsg(db));
                }
        }
        st = order_saga_price(call, r, lines, &total);
        if (st != RPC_OK) {
                return st;
        }
        st = order_saga_check_user(call, r->user_id);
        if (st != RPC_OK) {
                return st;
        }

        order_new on = {
                .user_id = r->user_id,
                .items = lines,
                .n_items = r->n_lines,
                .total = total,
                .coupon_id = r->coupon_id,
                .mode = ORDER_MODE_SAGA,
                .status = ORDER_PENDING,
                .idempotency_key = r->idempotency_key,
        };
        rec = (order_rec) {
                .user_id = r->user_id,
                .status = ORDER_PENDING,
                .reason = (char *) "",
                .total = total,
                .amount = total,
                .coupon_id = r->coupon_id,
                .mode = ORDER_MODE_SAGA,
                .items = lines,
                .n_items = r->n_lines,
        };
        for (int attempt = 1; attempt <= SAGA_TX_ATTEMPTS; attempt++) {
                out = create_tx(call, db, &on, create == SVC_STEP_OK, &rec, &waiting, &st);
                if (out != CREATE_ERROR || !db_retryable(st)) {
                        break;
                }
        }
        switch (out) {
        case CREATE_OK:
                break;
        case CREATE_EXISTS:
                return answer_key(call, db, r->idempotency_key, resp);
        case CREATE_GONE:
                return RPC_DEFERRED;
        case CREATE_ERROR:
        default:
                return rpc_call_error(call, st, "create order: %s", db_errmsg(db));
        }
        svc_relay_wake(s, SVC_DATASET_SPLIT);
        saga_deadline_note(rpc_now_mono_ms() + saga.timeout_ms);
        if (waiting) {
                /* From the commit on, an end of the order may answer the call at any time:
                 * nothing here touches it any more. */
                (void) saga_waiter_arm(call);
                return RPC_DEFERRED;
        }
        /* The clock is stopped (the service is stopping), or too many calls wait already:
         * answer PENDING now. */
        resp->order = order_msg(call, &rec, NULL);
        return RPC_OK;
}

/*
 * Life cycle
 */

rpc_client *
order_saga_open_peer(const rpc_conf *conf, const char *name, int64_t timeout_ms)
{
        const char *address = rpc_conf_get(conf, name, "address");
        rpc_client_opts co = { .timeout_ms = timeout_ms };
        rpc_client *c = NULL;

        if (address == NULL || rpc_client_open(address, &co, &c) != RPC_OK) {
                return NULL;
        }
        return c;
}

/* Reads [order] saga_timeout_ms and saga_scan_ms, opens the clients of product and user,
 * starts the clock. */
static rpc_status
saga_start(svc *s)
{
        const rpc_conf *conf = svc_conf(s);
        int64_t timeout_ms
            = rpc_conf_get_int(conf, "order", "saga_timeout_ms", SAGA_TIMEOUT_MS_DEFAULT);
        int64_t scan_ms = rpc_conf_get_int(conf, "order", "saga_scan_ms", SAGA_SCAN_MS_DEFAULT);
        rpc_status st;

        if (timeout_ms < 1 || timeout_ms > INT64_C(86400000)) {
                fprintf(stderr, "mercato-order: saga_timeout_ms must be 1..86400000\n");
                return RPC_INVALID_ARGUMENT;
        }
        if (scan_ms < 10 || scan_ms > INT64_C(3600000)) {
                fprintf(stderr, "mercato-order: saga_scan_ms must be 10..3600000\n");
                return RPC_INVALID_ARGUMENT;
        }
        saga.timeout_ms = timeout_ms;
        saga.scan_ms = scan_ms;
        saga.product = order_saga_open_peer(conf, "product", SAGA_CALL_TIMEOUT_MS);
        saga.user = order_saga_open_peer(conf, "user", SAGA_CALL_TIMEOUT_MS);
        st = saga_clock_start(s, timeout_ms, scan_ms);
        if (st != RPC_OK) {
                return st;
        }
        atomic_store(&saga.started, true);
        return RPC_OK;
}

/* Answers the waiters left PENDING. */
static void
saga_stop(svc *s)
{
        (void) s;
        /* The clients stay open: handlers may still run until the server stops, and the
         * process ends right after. */
        saga_clock_stop();
}

const order_mode_ops order_saga_ops = {
        .mode = ORDER_MODE_SAGA,
        .place = saga_place,
        .start = saga_start,
        .stop = saga_stop,
};
