/* test_saga.c: PlaceOrder as a choreographed saga on a real cluster: steps, failures, crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cart.pb-c.h"
#include "cart_store.h"
#include "dataplatform_store.h"
#include "event.pb-c.h"
#include <jansson.h>

#include "harness.h"
#include "order.pb-c.h"
#include "order_store.h"
#include "orders_util.h"
#include "payment_store.h"
#include "product_store.h"
#include "rpc.h"
#include "user.pb-c.h"
#include "user_store.h"

#define ORDER "/mercato.order.v1.OrderService/"
#define USER "/mercato.user.v1.UserService/"
#define CART "/mercato.cart.v1.CartService/"
#define DELIVER "/mercato.event.v1.EventSink/Deliver"

/* The seed of every service's database. */
#define PRODUCTS 30
#define STOCK 100
#define USERS 60
#define BALANCE 100000
#define COUPONS 10
#define COUPON_QUANTITY 100
#define DECLINING 5 /* users 56..60 */
#define SEED 7

/* The saga deadline of the cluster, long enough for the crash tests; the timeout test
 * shortens it. */
#define SAGA_TIMEOUT_MS 20000
#define SHORT_TIMEOUT_MS 1500

#define SAGA MERCATO__ORDER__V1__MODE__MODE_SAGA
#define PENDING MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_PENDING
#define COMPLETED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED
#define CANCELLED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED

#define N_SERVICES 6
static const char *const services[N_SERVICES] = {
        "product",
        "cart",
        "user",
        "payment",
        "dataplatform",
        "order",
};

static harness_cluster *g_c;
static rpc_client *g_order;
static rpc_client *g_user;
static rpc_client *g_cart;
static rpc_client *g_product;
static rpc_client *g_payment;

/* What PlaceOrder or GetOrder answered. */
typedef struct result {
        rpc_status st;
        char msg[256];
        int64_t order_id;
        int status;
        char reason[64];
        int64_t total;
        int64_t discount;
        int64_t amount;
        int mode;
} result;

static const char *
db(const char *service)
{
        return harness_cluster_db(g_c, service);
}

/* Appends settings to the topology; a service reads them when it restarts. */
static void
conf_append(const char *text)
{
        FILE *f = fopen(g_c->conf_path, "a");

        assert_non_null(f);
        fprintf(f, "%s\n", text);
        fclose(f);
}

static void
restart(const char *service)
{
        harness_cluster_restart(g_c, service);
}

/* Every service's own database gets the seed, with the code `mercato seed` runs. */
static void
seed(void)
{
        svc_seed s = {
                .products = PRODUCTS,
                .stock = STOCK,
                .users = USERS,
                .balance = BALANCE,
                .coupons = COUPONS,
                .coupon_quantity = COUPON_QUANTITY,
                .declining_users = DECLINING,
                .seed = SEED,
        };
        struct {
                const char *service;
                const db_stmt_table *table;
                rpc_status (*fn)(db_conn *, const svc_seed *);
        } stores[] = {
                { "product", &product_stmts, product_store_seed },
                { "cart", &cart_stmts, cart_store_seed },
                { "user", &user_stmts, user_store_seed },
                { "payment", &payment_stmts, payment_store_seed },
                { "dataplatform", &dataplatform_stmts, dataplatform_store_seed },
                { "order", &order_stmts, order_store_seed },
        };
        char err[256];

        for (size_t i = 0; i < sizeof(stores) / sizeof(stores[0]); i++) {
                db_conn *conn = NULL;

                assert_int_equal(
                    db_connect(db(stores[i].service), stores[i].table, 1, &conn, err, sizeof(err)),
                    RPC_OK);
                assert_int_equal(stores[i].fn(conn, &s), RPC_OK);
                db_close(conn);
        }
}

static int
group_setup(void **state)
{
        char extra[512];

        (void) state;
        snprintf(extra, sizeof(extra),
            "[defaults]\nworkers = 4\nrelay_poll_ms = 200\n"
            "[order]\nsaga_timeout_ms = %d\nsaga_scan_ms = 200\n",
            SAGA_TIMEOUT_MS);
        g_c = harness_cluster_new("product cart user payment dataplatform order", extra);
        harness_cluster_start(g_c);
        seed();
        g_order = harness_client(g_c, "order");
        g_user = harness_client(g_c, "user");
        g_cart = harness_client(g_c, "cart");
        g_product = harness_client(g_c, "product");
        g_payment = harness_client(g_c, "payment");
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        rpc_client_free(g_order);
        rpc_client_free(g_user);
        rpc_client_free(g_cart);
        rpc_client_free(g_product);
        rpc_client_free(g_payment);
        harness_cluster_free(g_c);
        harness_cleanup();
        return 0;
}

static void
result_from_order(result *r, const Mercato__Order__V1__Order *o)
{
        r->order_id = o->order_id;
        r->status = (int) o->status;
        snprintf(r->reason, sizeof(r->reason), "%s", o->reason);
        r->total = o->total;
        r->discount = o->discount;
        r->amount = o->amount;
        r->mode = (int) o->mode;
}

/* PlaceOrder in saga mode over n (product, quantity) pairs, one attempt, with a call
 * timeout of timeout_ms. */
static void
place(int64_t user_id, const int64_t *pairs, size_t n, int64_t coupon_id, int64_t timeout_ms,
    result *ret)
{
        Mercato__Order__V1__PlaceOrderRequest req = MERCATO__ORDER__V1__PLACE_ORDER_REQUEST__INIT;
        Mercato__Order__V1__PlaceOrderItem items[8];
        Mercato__Order__V1__PlaceOrderItem *ptrs[8];
        Mercato__Order__V1__PlaceOrderResponse *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = timeout_ms, .no_retry = true };
        rpc_error err = { 0 };

        assert_true(n <= 8);
        for (size_t i = 0; i < n; i++) {
                mercato__order__v1__place_order_item__init(&items[i]);
                items[i].product_id = pairs[2 * i];
                items[i].quantity = pairs[2 * i + 1];
                ptrs[i] = &items[i];
        }
        req.user_id = user_id;
        req.items = ptrs;
        req.n_items = n;
        req.coupon_id = coupon_id;
        req.mode = SAGA;
        memset(ret, 0, sizeof(*ret));
        ret->st = rpc_client_call(g_order, ORDER "PlaceOrder", &req.base,
            &mercato__order__v1__place_order_response__descriptor, (ProtobufCMessage **) &resp,
            &opts, &err);
        if (ret->st != RPC_OK) {
                snprintf(ret->msg, sizeof(ret->msg), "%s", err.message);
                return;
        }
        assert_non_null(resp->order);
        result_from_order(ret, resp->order);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void
get_order(int64_t order_id, result *ret)
{
        Mercato__Order__V1__GetOrderRequest req = MERCATO__ORDER__V1__GET_ORDER_REQUEST__INIT;
        Mercato__Order__V1__Order *o = NULL;

        req.order_id = order_id;
        memset(ret, 0, sizeof(*ret));
        ret->st
            = ou_call(g_order, ORDER "GetOrder", &req.base, &mercato__order__v1__order__descriptor,
                (ProtobufCMessage **) &o, false, ret->msg, sizeof(ret->msg));
        if (ret->st == RPC_OK) {
                result_from_order(ret, o);
                protobuf_c_message_free_unpacked(&o->base, NULL);
        }
}

/* Polls GetOrder until the order ends, up to timeout_ms; *ret is the last answer. */
static bool
wait_terminal(int64_t order_id, int64_t timeout_ms, result *ret)
{
        int64_t until = rpc_now_mono_ms() + timeout_ms;

        do {
                get_order(order_id, ret);
                if (ret->st == RPC_OK && ret->status != PENDING) {
                        return true;
                }
                usleep(50 * 1000);
        } while (rpc_now_mono_ms() < until);
        return false;
}

/* Waits until every outbox of the cluster is drained (each event acked or dead-lettered by
 * each subscriber) and no saga order is PENDING. */
static void
wait_quiet(void)
{
        for (int i = 0; i < N_SERVICES; i++) {
                assert_true(ou_wait_outbox_drained(db(services[i])));
        }
        assert_int_equal(
            harness_sql_i64(db("order"), "SELECT count(*) FROM orders WHERE status = 'PENDING'"),
            0);
        for (int i = 0; i < N_SERVICES; i++) {
                assert_true(ou_wait_outbox_drained(db(services[i])));
        }
}

static void
issue_coupon(int64_t user_id, int64_t coupon_id)
{
        Mercato__User__V1__IssueCouponRequest req = MERCATO__USER__V1__ISSUE_COUPON_REQUEST__INIT;

        req.user_id = user_id;
        req.coupon_id = coupon_id;
        assert_int_equal(ou_call(g_user, USER "IssueCoupon", &req.base,
                             &mercato__user__v1__user_coupon__descriptor, NULL, false, NULL, 0),
            RPC_OK);
}

static void
add_to_cart(int64_t user_id, int64_t product_id, int64_t quantity)
{
        Mercato__Cart__V1__AddToCartRequest req = MERCATO__CART__V1__ADD_TO_CART_REQUEST__INIT;

        req.user_id = user_id;
        req.product_id = product_id;
        req.quantity = quantity;
        assert_int_equal(ou_call(g_cart, CART "AddToCart", &req.base,
                             &mercato__cart__v1__cart__descriptor, NULL, false, NULL, 0),
            RPC_OK);
}

static int64_t
stock(int64_t product_id)
{
        return ou_i64f(
            db("product"), "SELECT stock FROM products WHERE id = %lld", (long long) product_id);
}

static int64_t
price(int64_t product_id)
{
        return ou_i64f(
            db("product"), "SELECT price FROM products WHERE id = %lld", (long long) product_id);
}

static int64_t
balance(int64_t user_id)
{
        return ou_i64f(
            db("user"), "SELECT balance FROM users WHERE id = %lld", (long long) user_id);
}

/* The discount a coupon gives on total, by the user store's own rule. */
static int64_t
discount_of(int64_t coupon_id, int64_t total)
{
        char *kind = NULL;
        int64_t value;
        char sql[128];

        snprintf(
            sql, sizeof(sql), "SELECT kind FROM coupons WHERE id = %lld", (long long) coupon_id);
        kind = ou_sql_str(db("user"), sql);
        value = ou_i64f(
            db("user"), "SELECT value FROM coupons WHERE id = %lld", (long long) coupon_id);
        int64_t d = user_discount(
            strcmp(kind, "PERCENT") == 0 ? USER_DISCOUNT_PERCENT : USER_DISCOUNT_FIXED, value,
            total);
        free(kind);
        return d;
}

/* What an order that fails must leave as it was, for a user, a coupon and some products:
 * stock, balance, the coupon's use and issue count, the user's captured payments and held
 * stock. malloc'd; compare with strcmp. */
static char *
snapshot(int64_t user_id, int64_t coupon_id, const int64_t *products, size_t n)
{
        char *out = rpc_xcalloc(1, 1024);
        size_t len = 0;

        for (size_t i = 0; i < n; i++) {
                len += (size_t) snprintf(out + len, 1024 - len, "stock%lld=%lld;",
                    (long long) products[i], (long long) stock(products[i]));
        }
        len += (size_t) snprintf(out + len, 1024 - len,
            "balance=%lld;coupon_used=%lld;issued=%lld;captured=%lld;held=%lld;dp=%lld",
            (long long) balance(user_id),
            (long long) ou_i64f(db("user"),
                "SELECT count(*) FROM user_coupons WHERE user_id = %lld AND coupon_id = %lld"
                " AND used_order_id IS NOT NULL",
                (long long) user_id, (long long) coupon_id),
            (long long) ou_i64f(db("user"), "SELECT coalesce(sum(issued), 0) FROM coupons"),
            (long long) ou_i64f(db("payment"),
                "SELECT count(*) FROM payments WHERE user_id = %lld AND status = 'captured'",
                (long long) user_id),
            (long long) ou_i64f(db("product"),
                "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE status = 'held'"),
            (long long) ou_i64f(db("dataplatform"),
                "SELECT count(*) FROM received_orders WHERE user_id = %lld", (long long) user_id));
        return out;
}

/* Compares two snapshots and frees them. */
static void
assert_same(char *before, char *after)
{
        bool same = strcmp(before, after) == 0;

        if (!same) {
                print_message("before: %s\nafter:  %s\n", before, after);
        }
        free(before);
        free(after);
        assert_true(same);
}

/* Places an order that must end CANCELLED with reason, and checks that nothing else
 * changed. */
static void
expect_cancelled(
    int64_t user_id, const int64_t *pairs, size_t n, int64_t coupon_id, const char *reason)
{
        int64_t products[8];
        result r;
        char *before;

        for (size_t i = 0; i < n; i++) {
                products[i] = pairs[2 * i];
        }
        wait_quiet();
        before = snapshot(user_id, coupon_id, products, n);
        place(user_id, pairs, n, coupon_id, 20000, &r);
        assert_int_equal(r.st, RPC_OK);
        if (r.status == PENDING) {
                assert_true(wait_terminal(r.order_id, 20000, &r));
        }
        assert_int_equal(r.status, CANCELLED);
        assert_string_equal(r.reason, reason);
        assert_int_equal(r.mode, SAGA);
        wait_quiet();
        assert_same(before, snapshot(user_id, coupon_id, products, n));
        /* A cancelled order holds nothing: no debit left unrefunded, no stock held. */
        assert_int_equal(ou_i64f(db("user"),
                             "SELECT coalesce(sum(CASE kind WHEN 'debit' THEN amount"
                             " ELSE -amount END), 0) FROM ledger WHERE order_id = %lld",
                             (long long) r.order_id),
            0);
        assert_int_equal(ou_i64f(db("product"),
                             "SELECT count(*) FROM reservations WHERE order_id = %lld"
                             " AND status <> 'released'",
                             (long long) r.order_id),
            0);
}

/* A Deliver of a saga event made up by the test, as a late or repeated relay would send
 * it. Returns the ack's duplicate flag. */
static bool
deliver(rpc_client *cl, const char *event_id, const char *topic,
    const Mercato__Event__V1__SagaOrder *so)
{
        Mercato__Event__V1__Event ev = MERCATO__EVENT__V1__EVENT__INIT;
        Mercato__Event__V1__DeliverAck *ack = NULL;
        size_t len = 0;
        uint8_t *buf = rpc_pack(&so->base, &len);
        bool duplicate;

        ev.event_id = (char *) event_id;
        ev.topic = (char *) topic;
        ev.aggregate_id = so->order_id;
        ev.payload.data = buf;
        ev.payload.len = len;
        ev.source = "test";
        assert_int_equal(
            ou_call(cl, DELIVER, &ev.base, &mercato__event__v1__deliver_ack__descriptor,
                (ProtobufCMessage **) &ack, false, NULL, 0),
            RPC_OK);
        duplicate = ack->duplicate;
        protobuf_c_message_free_unpacked(&ack->base, NULL);
        free(buf);
        return duplicate;
}

/*
 * Tests
 */

/* Every step runs; the reply comes in process as soon as the order completes, and
 * order.completed reaches the data platform, the cart and the sales. */
static void
test_saga_happy_path(void **state)
{
        const int64_t items[] = { 1, 2, 2, 1 };
        int64_t total = 2 * price(1) + price(2);
        int64_t discount = discount_of(1, total);
        int64_t stock1 = stock(1);
        int64_t stock2 = stock(2);
        int64_t t0;
        result r;
        result got;

        (void) state;
        issue_coupon(1, 1);
        add_to_cart(1, 1, 2);
        add_to_cart(1, 3, 1);
        t0 = rpc_now_mono_ms();
        place(1, items, 2, 1, 20000, &r);
        assert_int_equal(r.st, RPC_OK);
        assert_int_equal(r.status, COMPLETED);
        assert_true(rpc_now_mono_ms() - t0 < 5000); /* answered at the end, not the deadline */
        assert_string_equal(r.reason, "");
        assert_int_equal(r.mode, SAGA);
        assert_int_equal(r.total, total);
        assert_int_equal(r.discount, discount);
        assert_int_equal(r.amount, total - discount);
        get_order(r.order_id, &got);
        assert_int_equal(got.status, COMPLETED);
        assert_int_equal(got.amount, total - discount);

        wait_quiet();
        assert_int_equal(stock(1), stock1 - 2);
        assert_int_equal(stock(2), stock2 - 1);
        assert_int_equal(balance(1), BALANCE - (total - discount));
        assert_int_equal(ou_i64f(db("user"),
                             "SELECT used_order_id FROM user_coupons WHERE user_id = 1"
                             " AND coupon_id = 1"),
            r.order_id);
        assert_int_equal(ou_i64f(db("user"),
                             "SELECT count(*) FROM ledger WHERE order_id = %lld AND kind = 'debit'",
                             (long long) r.order_id),
            1);
        assert_int_equal(ou_i64f(db("payment"),
                             "SELECT amount FROM payments WHERE order_id = %lld"
                             " AND status = 'captured'",
                             (long long) r.order_id),
            total - discount);
        assert_int_equal(ou_i64f(db("product"),
                             "SELECT count(*) FROM reservations WHERE order_id = %lld"
                             " AND status = 'sold'",
                             (long long) r.order_id),
            2);
        assert_int_equal(ou_i64f(db("product"),
                             "SELECT coalesce(sum(quantity), 0) FROM sales_daily"
                             " WHERE product_id = 1"),
            2);
        assert_int_equal(ou_i64f(db("dataplatform"),
                             "SELECT count(*) FROM received_orders WHERE order_id = %lld"
                             " AND amount = %lld",
                             (long long) r.order_id, (long long) (total - discount)),
            1);
        /* The cart lost the ordered product, and kept the other. */
        assert_int_equal(
            harness_sql_i64(db("cart"), "SELECT count(*) FROM cart_items WHERE user_id = 1"), 1);
        assert_int_equal(
            harness_sql_i64(db("cart"), "SELECT product_id FROM cart_items WHERE user_id = 1"), 3);
        /* One event per step in each outbox. */
        assert_int_equal(
            ou_i64f(db("order"), "SELECT count(*) FROM txn_outbox WHERE aggregate_id = %lld",
                (long long) r.order_id),
            2); /* order.created, order.completed */
        assert_int_equal(ou_i64f(db("product"),
                             "SELECT count(*) FROM txn_outbox WHERE aggregate_id = %lld"
                             " AND topic = 'stock.reserved'",
                             (long long) r.order_id),
            1);
}

/* The business failures of each step: the order ends CANCELLED with the step's reason,
 * and the steps before it are undone. */
static void
test_saga_business_failures(void **state)
{
        const int64_t too_many[] = { 4, STOCK + 1 };
        const int64_t some[] = { 5, 1, 6, 2 };
        const int64_t one[] = { 7, 1 };

        (void) state;
        /* Out of stock: the second item lacks stock; the first is not kept. */
        const int64_t mixed[] = { 8, 1, 4, STOCK + 1 };
        expect_cancelled(2, too_many, 1, 0, "out_of_stock");
        expect_cancelled(2, mixed, 2, 0, "out_of_stock");
        /* Insufficient balance: the stock is released. */
        harness_sql(db("user"), "UPDATE users SET balance = 10 WHERE id = 3");
        expect_cancelled(3, some, 2, 0, "insufficient_balance");
        /* A coupon the user does not hold; then one that does not exist. */
        expect_cancelled(4, one, 1, 2, "coupon_invalid");
        expect_cancelled(4, one, 1, 999, "coupon_invalid");
        /* A declined payment: the balance is refunded, the coupon restored, the stock
         * released. */
        issue_coupon(56, 3);
        expect_cancelled(56, some, 2, 3, "payment_declined");
        assert_int_equal(balance(56), BALANCE);
}

/* Bad input is refused before anything is written. */
static void
test_saga_bad_input(void **state)
{
        const int64_t unknown_product[] = { 1, 1, 999, 1 };
        const int64_t one[] = { 1, 1 };
        int64_t orders = harness_sql_i64(db("order"), "SELECT count(*) FROM orders");
        result r;

        (void) state;
        place(1, unknown_product, 2, 0, 5000, &r);
        assert_int_equal(r.st, RPC_NOT_FOUND);
        place(999, one, 1, 0, 5000, &r);
        assert_int_equal(r.st, RPC_NOT_FOUND);
        assert_string_equal(r.msg, "no user 999");
        assert_int_equal(harness_sql_i64(db("order"), "SELECT count(*) FROM orders"), orders);
}

/* Each step switched to fail, in the service that runs it. */
static void
test_saga_step_switches(void **state)
{
        static const struct {
                const char *service;
                const char *step;
                const char *reason;
                int64_t user_id;
                int64_t coupon_id;
        } cases[] = {
                { "product", "reserve", "out_of_stock", 10, 0 },
                { "user", "coupon", "coupon_invalid", 11, 4 },
                { "user", "debit", "insufficient_balance", 12, 5 },
                { "payment", "capture", "payment_declined", 13, 6 },
                { "order", "complete", "participant_error", 14, 7 },
        };
        const int64_t items[] = { 9, 1, 10, 3 };
        const int64_t one[] = { 9, 1 };
        char text[128];
        int64_t orders;
        result r;

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                if (cases[i].coupon_id > 0) {
                        issue_coupon(cases[i].user_id, cases[i].coupon_id);
                }
                snprintf(
                    text, sizeof(text), "[%s]\nstep.%s = fail", cases[i].service, cases[i].step);
                conf_append(text);
                restart(cases[i].service);
                expect_cancelled(cases[i].user_id, items, 2, cases[i].coupon_id, cases[i].reason);
                snprintf(text, sizeof(text), "[%s]\nstep.%s = ok", cases[i].service, cases[i].step);
                conf_append(text);
                restart(cases[i].service);
        }
        /* The steps run again: the same user's next order completes. */
        place(12, one, 1, 0, 20000, &r);
        assert_int_equal(r.status, COMPLETED);

        /* order.create failing is an error, with nothing recorded. */
        wait_quiet();
        orders = harness_sql_i64(db("order"), "SELECT count(*) FROM orders");
        conf_append("[order]\nstep.create = fail");
        restart("order");
        place(15, one, 1, 0, 5000, &r);
        assert_int_equal(r.st, RPC_INTERNAL);
        assert_int_equal(harness_sql_i64(db("order"), "SELECT count(*) FROM orders"), orders);
        assert_int_equal(harness_sql_i64(db("order"),
                             "SELECT count(*) FROM txn_outbox WHERE delivered_at IS NULL"),
            0);
        conf_append("[order]\nstep.create = ok");
        restart("order");
}

/* Every delivery to every service runs twice: nothing is done twice. */
static void
test_saga_every_delivery_twice(void **state)
{
        const int64_t items[] = { 11, 2, 12, 1 };
        int64_t total = 2 * price(11) + price(12);
        int64_t discount;
        int64_t stock11 = stock(11);
        int64_t dups = harness_sql_i64(
            db("dataplatform"), "SELECT value FROM dp_counters WHERE name = 'duplicates'");
        char *before;
        result ok;
        result declined;

        (void) state;
        for (int i = 0; i < N_SERVICES; i++) {
                char text[128];
                snprintf(
                    text, sizeof(text), "[%s]\nfaults = *Deliver duplicate 1.0 1", services[i]);
                conf_append(text);
                restart(services[i]);
        }
        issue_coupon(20, 1);
        discount = discount_of(1, total);
        place(20, items, 2, 1, 20000, &ok);
        assert_int_equal(ok.st, RPC_OK);
        if (ok.status == PENDING) {
                assert_true(wait_terminal(ok.order_id, 20000, &ok));
        }
        assert_int_equal(ok.status, COMPLETED);
        assert_int_equal(ok.amount, total - discount);

        /* A declined payment runs every compensation twice over, too. */
        issue_coupon(57, 1);
        wait_quiet();
        before = snapshot(57, 1, (const int64_t[]) { 11, 12 }, 2);
        place(57, items, 2, 1, 20000, &declined);
        if (declined.status == PENDING) {
                assert_true(wait_terminal(declined.order_id, 20000, &declined));
        }
        assert_int_equal(declined.status, CANCELLED);
        assert_string_equal(declined.reason, "payment_declined");
        wait_quiet();
        assert_same(before, snapshot(57, 1, (const int64_t[]) { 11, 12 }, 2));

        /* The completed order took everything once. */
        assert_int_equal(stock(11), stock11 - 2);
        assert_int_equal(balance(20), BALANCE - (total - discount));
        assert_int_equal(ou_i64f(db("user"), "SELECT count(*) FROM ledger WHERE order_id = %lld",
                             (long long) ok.order_id),
            1);
        assert_int_equal(
            ou_i64f(db("payment"), "SELECT count(*) FROM payments WHERE order_id = %lld",
                (long long) ok.order_id),
            1);
        assert_int_equal(ou_i64f(db("dataplatform"),
                             "SELECT count(*) FROM received_orders WHERE order_id = %lld",
                             (long long) ok.order_id),
            1);
        assert_int_equal(ou_i64f(db("product"),
                             "SELECT coalesce(sum(quantity), 0) FROM reservations"
                             " WHERE order_id = %lld AND status = 'sold'",
                             (long long) ok.order_id),
            3);
        /* The declined one debited and refunded once each. */
        assert_int_equal(ou_i64f(db("user"), "SELECT count(*) FROM ledger WHERE order_id = %lld",
                             (long long) declined.order_id),
            2);
        /* The copies really came: the data platform counted them. */
        assert_true(harness_sql_i64(db("dataplatform"),
                        "SELECT value FROM dp_counters WHERE name = 'duplicates'")
            > dups);

        for (int i = 0; i < N_SERVICES; i++) {
                char text[128];
                snprintf(text, sizeof(text), "[%s]\nfaults =", services[i]);
                conf_append(text);
                restart(services[i]);
        }
}

/* The producer of an event (product, stock.reserved) is killed after the event committed
 * and before it was delivered: after the restart, the event is delivered, once. */
static void
test_saga_relay_killed(void **state)
{
        const int64_t items[] = { 13, 1 };
        int64_t stock13 = stock(13);
        int64_t amount = price(13);
        result r;

        (void) state;
        /* The consumer refuses every delivery, so the event stays in the outbox. */
        conf_append("[user]\nfaults = *Deliver fail 1.0 UNAVAILABLE");
        restart("user");
        place(21, items, 1, 0, 1500, &r);
        assert_int_equal(r.st, RPC_OK);
        assert_int_equal(r.status, PENDING);
        /* Kill the producer while the delivery waits for its next attempt (no claim out). */
        for (int i = 0;; i++) {
                assert_true(i < 300);
                if (ou_i64f(db("product"),
                        "SELECT count(*) FROM txn_delivery d JOIN txn_outbox o USING (event_id)"
                        " WHERE o.aggregate_id = %lld AND o.topic = 'stock.reserved'"
                        " AND d.state = 'pending' AND d.attempts >= 2 AND d.lease IS NULL"
                        " AND d.next_attempt_at > now() + interval '150 ms'",
                        (long long) r.order_id)
                    == 1) {
                        break;
                }
                usleep(20 * 1000);
        }
        harness_cluster_signal(g_c, "product", SIGKILL);
        assert_int_equal(stock(13), stock13 - 1); /* the step committed */
        restart("product");
        conf_append("[user]\nfaults =");
        restart("user");
        assert_true(wait_terminal(r.order_id, 30000, &r));
        assert_int_equal(r.status, COMPLETED);
        wait_quiet();
        /* Delivered once: one debit, one event, its delivery done. */
        assert_int_equal(balance(21), BALANCE - amount);
        assert_int_equal(ou_i64f(db("user"), "SELECT count(*) FROM ledger WHERE order_id = %lld",
                             (long long) r.order_id),
            1);
        assert_int_equal(ou_i64f(db("product"),
                             "SELECT count(*) FROM txn_outbox o JOIN txn_delivery d"
                             " USING (event_id) WHERE o.aggregate_id = %lld"
                             " AND o.topic = 'stock.reserved' AND d.state = 'done'",
                             (long long) r.order_id),
            1);
        assert_int_equal(stock(13), stock13 - 1);
}

/* A consumer on the order's path is down for a while: PlaceOrder answers PENDING at its
 * deadline, and the order completes once the consumer is back, even across a crash of
 * the order service. A dead data platform does not hold the order up at all. */
/* `mercato txn`: the saga order is listed PENDING with a delivery pending that was tried,
 * show names the event waiting for payment, and resolve is refused with nothing changed. */
static void
assert_cli_shows_waiting(int64_t order_id)
{
        static char out[65536];
        char want[64];
        json_error_t jerr;
        json_t *doc, *v;
        size_t i;
        bool listed = false;

        assert_int_equal(harness_cli(g_c, out, sizeof(out), "--json txn list"), 0);
        doc = json_loads(out, 0, &jerr);
        assert_non_null(doc);
        json_array_foreach(json_object_get(doc, "sagas"), i, v)
        {
                if (json_integer_value(json_object_get(v, "order_id")) == order_id) {
                        listed = true;
                        assert_true(json_integer_value(json_object_get(v, "pending")) >= 1);
                        assert_true(json_integer_value(json_object_get(v, "max_attempts")) >= 1);
                        assert_true(json_integer_value(json_object_get(v, "age_ms")) >= 1000);
                }
        }
        assert_true(listed);
        json_decref(doc);

        assert_int_equal(
            harness_cli(g_c, out, sizeof(out), "--json txn show %lld", (long long) order_id), 0);
        doc = json_loads(out, 0, &jerr);
        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "status")), "PENDING");
        assert_string_equal(json_string_value(json_object_get(doc, "mode")), "saga");
        bool waiting = false;
        json_array_foreach(json_object_get(doc, "events"), i, v)
        {
                waiting = waiting
                    || (strcmp(json_string_value(json_object_get(v, "subscriber")), "payment") == 0
                        && strcmp(json_string_value(json_object_get(v, "state")), "pending") == 0
                        && json_integer_value(json_object_get(v, "attempts")) >= 1);
        }
        assert_true(waiting);
        json_decref(doc);

        snprintf(want, sizeof(want), "%lld", (long long) order_id);
        assert_int_equal(
            harness_cli(g_c, out, sizeof(out), "txn resolve %s rollback 2>/dev/null", want), 2);
        assert_int_equal(harness_cli(g_c, out, sizeof(out), "--json txn show %s", want), 0);
        assert_non_null(strstr(out, "\"PENDING\""));
}

static void
test_saga_consumer_down(void **state)
{
        const int64_t items[] = { 14, 1 };
        int64_t dp_before;
        result r;

        (void) state;
        harness_cluster_signal(g_c, "payment", SIGKILL);
        place(22, items, 1, 0, 1500, &r);
        assert_int_equal(r.st, RPC_OK);
        assert_int_equal(r.status, PENDING);
        assert_true(r.order_id > 0);
        sleep(1);
        get_order(r.order_id, &r);
        assert_int_equal(r.status, PENDING);
        assert_cli_shows_waiting(r.order_id);
        /* The order service crashes too, and comes back: the saga lives in the databases. */
        harness_cluster_signal(g_c, "order", SIGKILL);
        restart("order");
        restart("payment");
        assert_true(wait_terminal(r.order_id, 30000, &r));
        assert_int_equal(r.status, COMPLETED);
        assert_int_equal(balance(22), BALANCE - price(14));

        wait_quiet();
        harness_cluster_signal(g_c, "dataplatform", SIGKILL);
        dp_before = harness_sql_i64(db("dataplatform"), "SELECT count(*) FROM received_orders");
        place(23, items, 1, 0, 20000, &r);
        assert_int_equal(r.status, COMPLETED);
        restart("dataplatform");
        wait_quiet();
        assert_int_equal(
            harness_sql_i64(db("dataplatform"), "SELECT count(*) FROM received_orders"),
            dp_before + 1);
}

/* A subscriber that always fails: its deliveries are dead-lettered after relay_max_attempts,
 * and the orders still complete. */
static void
test_saga_dead_letter(void **state)
{
        const int64_t items[] = { 15, 1 };
        result r[3];

        (void) state;
        conf_append("[order]\nrelay_max_attempts = 3\n"
                    "[dataplatform]\nfaults = *Deliver fail 1.0 INTERNAL");
        restart("dataplatform");
        restart("order");
        for (int i = 0; i < 3; i++) {
                place(24 + i, items, 1, 0, 20000, &r[i]);
                assert_int_equal(r[i].st, RPC_OK);
                assert_int_equal(r[i].status, COMPLETED);
        }
        wait_quiet();
        for (int i = 0; i < 3; i++) {
                assert_int_equal(ou_i64f(db("order"),
                                     "SELECT count(*) FROM txn_dead_letters l JOIN txn_outbox o"
                                     " USING (event_id) WHERE o.aggregate_id = %lld"
                                     " AND l.subscriber = 'dataplatform' AND l.attempts = 3"
                                     " AND o.topic = 'order.completed'",
                                     (long long) r[i].order_id),
                    1);
                /* The other subscribers of the same event got it. */
                assert_int_equal(ou_i64f(db("order"),
                                     "SELECT count(*) FROM txn_delivery d JOIN txn_outbox o"
                                     " USING (event_id) WHERE o.aggregate_id = %lld"
                                     " AND o.topic = 'order.completed' AND d.state = 'done'",
                                     (long long) r[i].order_id),
                    2);
        }
        assert_int_equal(
            harness_sql_i64(db("cart"), "SELECT count(*) FROM cart_items WHERE user_id = 24"), 0);
        conf_append("[order]\nrelay_max_attempts = 10\n[dataplatform]\nfaults =");
        restart("dataplatform");
        restart("order");
}

/* A step that never answers: the saga deadline cancels the order (reason timeout), every
 * step is compensated, and the step's late delivery is refused. */
static void
test_saga_timeout(void **state)
{
        const int64_t items[] = { 16, 2, 17, 1 };
        const int64_t products[] = { 16, 17 };
        Mercato__Event__V1__SagaOrder so = MERCATO__EVENT__V1__SAGA_ORDER__INIT;
        Mercato__Event__V1__SagaOrder__Line line = MERCATO__EVENT__V1__SAGA_ORDER__LINE__INIT;
        Mercato__Event__V1__SagaOrder__Line *lines[1] = { &line };
        char text[256];
        char *before;
        int64_t t0;
        result r;

        (void) state;
        snprintf(text, sizeof(text),
            "[order]\nsaga_timeout_ms = %d\n[payment]\nstep.capture = timeout", SHORT_TIMEOUT_MS);
        conf_append(text);
        restart("order");
        restart("payment");
        issue_coupon(30, 2);
        wait_quiet();
        before = snapshot(30, 2, products, 2);
        t0 = rpc_now_mono_ms();
        place(30, items, 2, 2, 20000, &r);
        assert_int_equal(r.st, RPC_OK);
        /* Answered when the deadline cancelled it, in process. */
        assert_int_equal(r.status, CANCELLED);
        assert_string_equal(r.reason, "timeout");
        assert_true(rpc_now_mono_ms() - t0 >= SHORT_TIMEOUT_MS - 100);
        assert_true(rpc_now_mono_ms() - t0 < SHORT_TIMEOUT_MS + 5000);
        wait_quiet();
        assert_same(rpc_xstrdup(before), snapshot(30, 2, products, 2));
        /* The compensation of the capture came first and was recorded; the capture that
         * came late (the relay kept trying) was refused. */
        assert_int_equal(ou_i64f(db("payment"),
                             "SELECT count(*) FROM txn_barrier WHERE consumer = 'payment:saga'"
                             " AND key IN ('capture:%lld', 'refund:%lld')",
                             (long long) r.order_id, (long long) r.order_id),
            2);
        assert_int_equal(ou_i64f(db("user"),
                             "SELECT count(*) FROM txn_delivery d JOIN txn_outbox o"
                             " USING (event_id) WHERE o.aggregate_id = %lld"
                             " AND o.topic = 'balance.debited' AND d.state = 'done'",
                             (long long) r.order_id),
            1);

        /* With the switch gone, late actions of every step are refused by their barriers. */
        snprintf(text, sizeof(text), "[order]\nsaga_timeout_ms = %d\n[payment]\nstep.capture = ok",
            SAGA_TIMEOUT_MS);
        conf_append(text);
        restart("payment");
        restart("order");
        so.order_id = r.order_id;
        so.user_id = 30;
        so.coupon_id = 2;
        so.total = r.total;
        so.amount = r.total;
        line.product_id = 16;
        line.quantity = 2;
        so.items = lines;
        so.n_items = 1;
        assert_true(deliver(g_payment, "late-capture", "balance.debited", &so));
        assert_true(deliver(g_user, "late-debit", "stock.reserved", &so));
        assert_true(deliver(g_product, "late-reserve", "order.created", &so));
        wait_quiet();
        assert_same(before, snapshot(30, 2, products, 2));
        assert_int_equal(
            ou_i64f(db("payment"), "SELECT count(*) FROM payments WHERE order_id = %lld",
                (long long) r.order_id),
            0);
        get_order(r.order_id, &r);
        assert_int_equal(r.status, CANCELLED);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_saga_happy_path),
                cmocka_unit_test(test_saga_business_failures),
                cmocka_unit_test(test_saga_bad_input),
                cmocka_unit_test(test_saga_step_switches),
                cmocka_unit_test(test_saga_every_delivery_twice),
                cmocka_unit_test(test_saga_relay_killed),
                cmocka_unit_test(test_saga_consumer_down),
                cmocka_unit_test(test_saga_dead_letter),
                cmocka_unit_test(test_saga_timeout),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
