/* test_order_service.c: mercato-order on a real cluster: monolith PlaceOrder, failures, history. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart_store.h"
#include "dataplatform_store.h"
#include "harness.h"
#include "order.pb-c.h"
#include "order_store.h"
#include "orders_util.h"
#include "payment.pb-c.h"
#include "payment_store.h"
#include "product_store.h"
#include "rpc.h"
#include "user.pb-c.h"
#include "user_store.h"

#define ORDER "/mercato.order.v1.OrderService/"
#define USER "/mercato.user.v1.UserService/"
#define PAYMENT "/mercato.payment.v1.PaymentService/"

/* The seed of the monolith database before each test. */
#define PRODUCTS 20
#define STOCK 10000
#define USERS 60
#define BALANCE 100000
#define COUPONS 10
#define COUPON_QUANTITY 100
#define DECLINING 5 /* users 56..60 */
#define SEED 7

#define MODE_MONO MERCATO__ORDER__V1__MODE__MODE_MONOLITH
#define COMPLETED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED
#define CANCELLED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED

static harness_cluster *g_cluster;
static rpc_client *g_order;
static rpc_client *g_user;
static rpc_client *g_payment;
static const char *g_mono; /* the monolith database */

/* The tables whose rows a cancelled order adds: everything else must stay as it was. */
static const char *const order_tables[] = { "orders", "order_items", NULL };

static int
group_setup(void **state)
{
        (void) state;
        g_cluster = harness_cluster_new(
            "product cart user payment dataplatform order", "[defaults]\nworkers = 8\n");
        harness_cluster_start(g_cluster);
        g_order = harness_client(g_cluster, "order");
        g_user = harness_client(g_cluster, "user");
        g_payment = harness_client(g_cluster, "payment");
        g_mono = harness_cluster_db(g_cluster, "monolith");
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        rpc_client_free(g_order);
        rpc_client_free(g_user);
        rpc_client_free(g_payment);
        harness_cluster_free(g_cluster);
        harness_cleanup();
        return 0;
}

/* Every test starts from the seed in the monolith database, with the same seed functions
 * `mercato seed` runs, once the relay has delivered what earlier tests left. */
static int
test_setup(void **state)
{
        const db_stmt_table tables[] = { product_stmts, cart_stmts, user_stmts, order_stmts,
                payment_stmts, dataplatform_stmts };
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
        db_conn *db = NULL;
        char err[256];

        (void) state;
        assert_true(ou_wait_outbox_drained(g_mono));
        assert_int_equal(
            db_connect(g_mono, tables, sizeof(tables) / sizeof(tables[0]), &db, err, sizeof(err)),
            RPC_OK);
        assert_int_equal(product_store_seed(db, &s), RPC_OK);
        assert_int_equal(cart_store_seed(db, &s), RPC_OK);
        assert_int_equal(user_store_seed(db, &s), RPC_OK);
        assert_int_equal(order_store_seed(db, &s), RPC_OK);
        assert_int_equal(payment_store_seed(db, &s), RPC_OK);
        assert_int_equal(dataplatform_store_seed(db, &s), RPC_OK);
        db_close(db);
        return 0;
}

/* Waits for the relay, then fingerprints every database of the cluster. */
static char *
cluster_checksum(void)
{
        assert_true(ou_wait_outbox_drained(g_mono));
        return ou_cluster_checksum(g_cluster);
}

/* Waits for the relay, then fingerprints the monolith database but its order tables. */
static char *
mono_checksum(void)
{
        assert_true(ou_wait_outbox_drained(g_mono));
        return ou_checksum(g_mono, order_tables);
}

static void
assert_same(char *before, char *after)
{
        assert_string_equal(before, after);
        free(before);
        free(after);
}

static int64_t
price(int64_t product_id)
{
        return ou_i64f(
            g_mono, "SELECT price FROM products WHERE id = %lld", (long long) product_id);
}

static int64_t
stock(int64_t product_id)
{
        return ou_i64f(
            g_mono, "SELECT stock FROM products WHERE id = %lld", (long long) product_id);
}

/* PlaceOrder over n (product, quantity) pairs given as 2n int64. */
static rpc_status
place_key(int64_t user_id, const int64_t *pairs, size_t n, int64_t coupon_id,
    Mercato__Order__V1__Mode mode, const char *key, Mercato__Order__V1__Order **ret, char *msg,
    size_t msglen)
{
        Mercato__Order__V1__PlaceOrderRequest req = MERCATO__ORDER__V1__PLACE_ORDER_REQUEST__INIT;
        Mercato__Order__V1__PlaceOrderItem *items = calloc(n > 0 ? n : 1, sizeof(*items));
        Mercato__Order__V1__PlaceOrderItem **ptrs = calloc(n > 0 ? n : 1, sizeof(*ptrs));
        Mercato__Order__V1__PlaceOrderResponse *resp = NULL;
        rpc_call_opts opts
            = { .timeout_ms = 20000, .no_retry = key == NULL, .idempotency_key = key };
        rpc_error err = { 0 };
        rpc_status st;

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
        req.mode = mode;
        st = rpc_client_call(g_order, ORDER "PlaceOrder", &req.base,
            &mercato__order__v1__place_order_response__descriptor, (ProtobufCMessage **) &resp,
            &opts, &err);
        if (msg != NULL) {
                snprintf(msg, msglen, "%s", st == RPC_OK ? "" : err.message);
        }
        if (st == RPC_OK) {
                assert_non_null(resp->order);
                if (ret != NULL) {
                        *ret = resp->order;
                        resp->order = NULL;
                }
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        free(items);
        free(ptrs);
        return st;
}

static rpc_status
place(int64_t user_id, const int64_t *pairs, size_t n, int64_t coupon_id,
    Mercato__Order__V1__Mode mode, Mercato__Order__V1__Order **ret)
{
        return place_key(user_id, pairs, n, coupon_id, mode, NULL, ret, NULL, 0);
}

static void
order_free(Mercato__Order__V1__Order *o)
{
        if (o != NULL) {
                protobuf_c_message_free_unpacked(&o->base, NULL);
        }
}

static rpc_status
get_order(int64_t order_id, bool mono, Mercato__Order__V1__Order **ret)
{
        Mercato__Order__V1__GetOrderRequest req = MERCATO__ORDER__V1__GET_ORDER_REQUEST__INIT;

        req.order_id = order_id;
        return ou_call(g_order, ORDER "GetOrder", &req.base, &mercato__order__v1__order__descriptor,
            (ProtobufCMessage **) ret, mono, NULL, 0);
}

static rpc_status
list_orders(int64_t user_id, int32_t page_size, int64_t before_id, bool mono,
    Mercato__Order__V1__ListOrdersResponse **ret)
{
        Mercato__Order__V1__ListOrdersRequest req = MERCATO__ORDER__V1__LIST_ORDERS_REQUEST__INIT;

        req.user_id = user_id;
        req.page_size = page_size;
        req.before_id = before_id;
        return ou_call(g_order, ORDER "ListOrders", &req.base,
            &mercato__order__v1__list_orders_response__descriptor, (ProtobufCMessage **) ret, mono,
            NULL, 0);
}

static int64_t
balance(int64_t user_id)
{
        Mercato__User__V1__GetBalanceRequest req = MERCATO__USER__V1__GET_BALANCE_REQUEST__INIT;
        Mercato__User__V1__Balance *resp = NULL;
        int64_t b;

        req.user_id = user_id;
        assert_int_equal(
            ou_call(g_user, USER "GetBalance", &req.base, &mercato__user__v1__balance__descriptor,
                (ProtobufCMessage **) &resp, true, NULL, 0),
            RPC_OK);
        b = resp->balance;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return b;
}

static void
issue_coupon(int64_t user_id, int64_t coupon_id)
{
        Mercato__User__V1__IssueCouponRequest req = MERCATO__USER__V1__ISSUE_COUPON_REQUEST__INIT;

        req.user_id = user_id;
        req.coupon_id = coupon_id;
        assert_int_equal(ou_call(g_user, USER "IssueCoupon", &req.base,
                             &mercato__user__v1__user_coupon__descriptor, NULL, true, NULL, 0),
            RPC_OK);
}

/* The order that used a user's coupon, through ListCoupons (0: unused; -1: not held). */
static int64_t
coupon_used_by(int64_t user_id, int64_t coupon_id)
{
        Mercato__User__V1__ListCouponsRequest req = MERCATO__USER__V1__LIST_COUPONS_REQUEST__INIT;
        Mercato__User__V1__ListCouponsResponse *resp = NULL;
        int64_t used = -1;

        req.user_id = user_id;
        assert_int_equal(ou_call(g_user, USER "ListCoupons", &req.base,
                             &mercato__user__v1__list_coupons_response__descriptor,
                             (ProtobufCMessage **) &resp, true, NULL, 0),
            RPC_OK);
        for (size_t i = 0; i < resp->n_coupons; i++) {
                if (resp->coupons[i]->coupon->coupon_id == coupon_id) {
                        used = resp->coupons[i]->used_order_id;
                        assert_int_equal(resp->coupons[i]->used, used != 0);
                }
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return used;
}

static rpc_status
get_payment(int64_t order_id, bool mono, Mercato__Payment__V1__Payment **ret)
{
        Mercato__Payment__V1__GetPaymentRequest req
            = MERCATO__PAYMENT__V1__GET_PAYMENT_REQUEST__INIT;

        req.order_id = order_id;
        return ou_call(g_payment, PAYMENT "GetPayment", &req.base,
            &mercato__payment__v1__payment__descriptor, (ProtobufCMessage **) ret, mono, NULL, 0);
}

/* balance - (charges - debits + refunds) of a user in the monolith database. */
static int64_t
ledger_gap(int64_t user_id)
{
        return ou_i64f(g_mono,
            "SELECT u.balance - coalesce((SELECT sum(CASE kind WHEN 'debit' THEN -amount"
            " ELSE amount END) FROM ledger WHERE user_id = u.id), 0)"
            " FROM users u WHERE u.id = %lld",
            (long long) user_id);
}

static void
test_order_place_monolith_completes(void **state)
{
        const int64_t items[] = { 1, 2, 2, 1 };
        Mercato__Order__V1__Order *o = NULL;
        Mercato__Order__V1__Order *got = NULL;
        Mercato__Payment__V1__Payment *pay = NULL;
        int64_t total = 2 * price(1) + price(2);
        int64_t fixed = 500 + (131 + SEED) % 1500; /* coupon 1 */
        int64_t discount = fixed < total ? fixed : total;
        int64_t id;

        (void) state;
        issue_coupon(1, 1);
        assert_int_equal(place(1, items, 2, 1, MODE_MONO, &o), RPC_OK);
        assert_true(o->order_id > 0);
        assert_int_equal(o->status, COMPLETED);
        assert_string_equal(o->reason, "");
        assert_int_equal(o->user_id, 1);
        assert_int_equal(o->total, total);
        assert_int_equal(o->discount, discount);
        assert_int_equal(o->amount, total - discount);
        assert_int_equal(o->coupon_id, 1);
        assert_int_equal(o->mode, MODE_MONO);
        assert_int_equal(o->n_items, 2);
        assert_int_equal(o->items[0]->product_id, 1);
        assert_int_equal(o->items[0]->quantity, 2);
        assert_int_equal(o->items[0]->unit_price, price(1));
        assert_int_equal(o->items[1]->unit_price, price(2));
        assert_true(o->created_at_ms > 0);
        assert_true(o->updated_at_ms >= o->created_at_ms);
        id = o->order_id;

        /* Stock, balance, payment, coupon, reservations, ledger. */
        assert_int_equal(stock(1), STOCK - 2);
        assert_int_equal(stock(2), STOCK - 1);
        assert_int_equal(stock(3), STOCK);
        assert_int_equal(balance(1), BALANCE - (total - discount));
        assert_int_equal(ledger_gap(1), 0);
        assert_int_equal(get_payment(id, true, &pay), RPC_OK);
        assert_int_equal(pay->amount, total - discount);
        assert_int_equal(pay->user_id, 1);
        assert_int_equal(
            pay->status, MERCATO__PAYMENT__V1__PAYMENT_STATUS__PAYMENT_STATUS_CAPTURED);
        protobuf_c_message_free_unpacked(&pay->base, NULL);
        assert_int_equal(coupon_used_by(1, 1), id);
        assert_int_equal(ou_i64f(g_mono,
                             "SELECT count(*) FROM reservations WHERE order_id = %lld"
                             " AND status = 'sold'",
                             (long long) id),
            2);

        /* The order reads back through the monolith dataset, and only there. */
        assert_int_equal(get_order(id, true, &got), RPC_OK);
        assert_int_equal(got->status, COMPLETED);
        assert_int_equal(got->amount, o->amount);
        assert_int_equal(got->discount, o->discount);
        assert_int_equal(got->n_items, 2);
        assert_int_equal(got->items[1]->product_id, 2);
        assert_int_equal(got->created_at_ms, o->created_at_ms);
        assert_int_equal(got->updated_at_ms, o->updated_at_ms);
        order_free(got);
        assert_int_equal(get_order(id, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(get_payment(id, false, NULL), RPC_NOT_FOUND);
        order_free(o);

        /* order.completed reached the data platform, the cart and product sales. */
        assert_int_equal(ou_i64f(g_mono,
                             "SELECT count(*) FROM txn_outbox WHERE source = 'order'"
                             " AND topic = 'order.completed' AND aggregate_id = %lld",
                             (long long) id),
            1);
        assert_true(ou_wait_outbox_drained(g_mono));
        assert_int_equal(harness_sql_i64(g_mono,
                             "SELECT count(*) FROM txn_delivery"
                             " WHERE state = 'done'"),
            3);
        assert_int_equal(harness_sql_i64(g_mono,
                             "SELECT coalesce(sum(quantity), 0)"
                             " FROM sales_daily"),
            3);
}

/* A zero amount (the coupon pays it all) completes without a debit. */
static void
test_order_place_coupon_pays_all(void **state)
{
        Mercato__Order__V1__Order *o = NULL;
        int64_t cheapest = harness_sql_i64(g_mono,
            "SELECT id FROM products ORDER BY price, id"
            " LIMIT 1");
        const int64_t items[] = { cheapest, 1 };

        (void) state;
        /* A 100% coupon. */
        harness_sql(g_mono,
            "INSERT INTO coupons (id, name, kind, value, quantity)"
            " VALUES (90, 'free', 'PERCENT', 100, 5)");
        issue_coupon(9, 90);
        assert_int_equal(place(9, items, 1, 90, MODE_MONO, &o), RPC_OK);
        assert_int_equal(o->status, COMPLETED);
        assert_int_equal(o->amount, 0);
        assert_int_equal(o->discount, price(cheapest));
        assert_int_equal(balance(9), BALANCE);
        assert_int_equal(
            harness_sql_i64(g_mono, "SELECT count(*) FROM ledger WHERE kind = 'debit'"), 0);
        assert_int_equal(ou_i64f(g_mono,
                             "SELECT count(*) FROM payments WHERE order_id = %lld"
                             " AND amount = 0 AND status = 'captured'",
                             (long long) o->order_id),
            1);
        order_free(o);
}

/* Places an order that must fail for a business rule: OK, CANCELLED with the reason, its
 * items recorded, and nothing but the order itself changed anywhere. */
static void
expect_cancelled(
    int64_t user_id, const int64_t *items, size_t n, int64_t coupon_id, const char *reason)
{
        Mercato__Order__V1__Order *o = NULL;
        Mercato__Order__V1__Order *got = NULL;
        char *before = mono_checksum();
        char *before_all = ou_cluster_checksum(g_cluster);
        char *after_all;
        int64_t orders = harness_sql_i64(g_mono, "SELECT count(*) FROM orders");
        int64_t total = 0;

        for (size_t i = 0; i < n; i++) {
                total += items[2 * i + 1] * price(items[2 * i]);
        }
        assert_int_equal(place(user_id, items, n, coupon_id, MODE_MONO, &o), RPC_OK);
        assert_int_equal(o->status, CANCELLED);
        assert_string_equal(o->reason, reason);
        assert_int_equal(o->total, total);
        assert_int_equal(o->discount, 0);
        assert_int_equal(o->amount, total);
        assert_int_equal(o->coupon_id, coupon_id);
        assert_int_equal(o->n_items, n);

        assert_int_equal(get_order(o->order_id, true, &got), RPC_OK);
        assert_int_equal(got->status, CANCELLED);
        assert_string_equal(got->reason, reason);
        assert_int_equal(got->n_items, n);
        assert_int_equal(got->items[0]->product_id, items[0]);
        assert_int_equal(got->items[0]->quantity, items[1]);
        order_free(got);
        assert_int_equal(get_payment(o->order_id, true, NULL), RPC_NOT_FOUND);
        order_free(o);

        assert_same(before, mono_checksum());
        assert_int_equal(harness_sql_i64(g_mono, "SELECT count(*) FROM orders"), orders + 1);
        /* The service databases are untouched too; the monolith one differs by the order. */
        after_all = ou_cluster_checksum(g_cluster);
        assert_string_not_equal(before_all, after_all);
        *strstr(before_all, "monolith=") = '\0';
        *strstr(after_all, "monolith=") = '\0';
        assert_same(before_all, after_all);
}

static void
test_order_place_out_of_stock(void **state)
{
        const int64_t items[] = { 3, 1, 4, STOCK + 1 };

        (void) state;
        issue_coupon(2, 2);
        expect_cancelled(2, items, 2, 2, "out_of_stock");
        assert_int_equal(coupon_used_by(2, 2), 0);
        assert_int_equal(stock(3), STOCK);
        assert_int_equal(stock(4), STOCK);
        assert_int_equal(balance(2), BALANCE);
}

static void
test_order_place_insufficient_balance(void **state)
{
        /* Twice the balance: the coupon's 16% (5 + (4 + 7) % 26) cannot make up for it. */
        int64_t q = 2 * (BALANCE / price(5) + 1);
        const int64_t items[] = { 5, q };

        (void) state;
        assert_true(q <= STOCK);
        issue_coupon(3, 4);
        expect_cancelled(3, items, 1, 4, "insufficient_balance");
        assert_int_equal(coupon_used_by(3, 4), 0);
        assert_int_equal(balance(3), BALANCE);
        assert_int_equal(stock(5), STOCK);
        assert_int_equal(ledger_gap(3), 0);
}

static void
test_order_place_coupon_invalid(void **state)
{
        const int64_t items[] = { 6, 1 };
        Mercato__Order__V1__Order *o = NULL;

        (void) state;
        /* A coupon the user does not hold. */
        expect_cancelled(4, items, 1, 3, "coupon_invalid");
        assert_int_equal(coupon_used_by(4, 3), -1);

        /* A coupon used by an earlier order. */
        issue_coupon(4, 5);
        assert_int_equal(place(4, items, 1, 5, MODE_MONO, &o), RPC_OK);
        assert_int_equal(o->status, COMPLETED);
        assert_int_equal(coupon_used_by(4, 5), o->order_id);
        order_free(o);
        expect_cancelled(4, items, 1, 5, "coupon_invalid");
        assert_int_equal(stock(6), STOCK - 1);
}

static void
test_order_place_payment_declined(void **state)
{
        const int64_t items[] = { 7, 3, 8, 1 };

        (void) state;
        issue_coupon(USERS, 6);
        expect_cancelled(USERS, items, 2, 6, "payment_declined");
        assert_int_equal(coupon_used_by(USERS, 6), 0);
        assert_int_equal(balance(USERS), BALANCE);
        assert_int_equal(stock(7), STOCK);
        assert_int_equal(stock(8), STOCK);
        assert_int_equal(ledger_gap(USERS), 0);
}

/* Places an order that must be refused, expecting st. */
static void
expect_refused(rpc_status st, int64_t user_id, const int64_t *items, size_t n, int64_t coupon_id,
    Mercato__Order__V1__Mode mode)
{
        char msg[256];

        assert_int_equal(
            place_key(user_id, items, n, coupon_id, mode, NULL, NULL, msg, sizeof(msg)), st);
        assert_true(msg[0] != '\0');
}

static void
test_order_place_bad_input(void **state)
{
        int64_t many[2 * 101];
        const int64_t one[] = { 1, 1 };
        const int64_t dup[] = { 1, 1, 2, 1, 1, 2 };
        const int64_t zero_q[] = { 1, 0 };
        const int64_t neg_q[] = { 1, -1 };
        const int64_t big_q[] = { 1, 1000000000001LL };
        const int64_t max_q[] = { 1, INT64_MAX };
        const int64_t zero_p[] = { 0, 1 };
        const int64_t neg_p[] = { -1, 1 };
        const int64_t unknown_p[] = { 1, 1, PRODUCTS + 1, 1 };
        const int64_t overflow[] = { 1, 1000000000000LL };
        const int64_t overflow2[] = { 1, 1000000000000LL, 2, 1000000000000LL };
        const int64_t out_of_stock[] = { 1, STOCK + 1 };
        char *before;

        (void) state;
        for (int i = 0; i < 101; i++) {
                many[2 * i] = i + 1;
                many[2 * i + 1] = 1;
        }
        issue_coupon(10, 1);
        before = cluster_checksum();
        expect_refused(RPC_INVALID_ARGUMENT, 0, one, 1, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, -1, one, 1, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, one, 0, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, many, 101, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, dup, 3, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, zero_q, 1, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, neg_q, 1, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, big_q, 1, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, max_q, 1, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, zero_p, 1, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, neg_p, 1, 0, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, one, 1, -1, MODE_MONO);
        expect_refused(RPC_INVALID_ARGUMENT, 1, one, 1, 0, (Mercato__Order__V1__Mode) 9);
        /* Unknown ids record nothing, even when a business rule would fail too. */
        expect_refused(RPC_NOT_FOUND, USERS + 1, one, 1, 0, MODE_MONO);
        expect_refused(RPC_NOT_FOUND, USERS + 1, out_of_stock, 1, 0, MODE_MONO);
        expect_refused(RPC_NOT_FOUND, 1, unknown_p, 2, 0, MODE_MONO);
        expect_refused(RPC_NOT_FOUND, 10, one, 1, COUPONS + 1, MODE_MONO);
        expect_refused(RPC_NOT_FOUND, 10, out_of_stock, 1, COUPONS + 1, MODE_MONO);
        /* Totals past 10^12. */
        expect_refused(RPC_OUT_OF_RANGE, 1, overflow, 1, 0, MODE_MONO);
        expect_refused(RPC_OUT_OF_RANGE, 1, overflow2, 2, 0, MODE_MONO);
        /* GetOrder and ListOrders. */
        assert_int_equal(get_order(0, true, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(get_order(-1, true, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(get_order(123456, true, NULL), RPC_NOT_FOUND);
        assert_int_equal(get_order(123456, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(list_orders(0, 0, 0, true, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_orders(-1, 0, 0, true, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_orders(1, -1, 0, true, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_orders(1, 101, 0, true, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_orders(1, 0, -1, true, NULL), RPC_INVALID_ARGUMENT);
        assert_same(before, cluster_checksum());
        assert_int_equal(coupon_used_by(10, 1), 0);
}

/* 100 items is the most an order holds. */
static void
test_order_place_hundred_items(void **state)
{
        int64_t items[2 * 100];
        Mercato__Order__V1__Order *o = NULL;

        (void) state;
        harness_sql(g_mono,
            "INSERT INTO products (id, name, price, stock)"
            " SELECT g, 'extra-' || g, 1, 5 FROM generate_series(21, 100) g");
        for (int i = 0; i < 100; i++) {
                items[2 * i] = 100 - i; /* in any order */
                items[2 * i + 1] = 1;
        }
        /* Products 1..20 cost about the whole balance. */
        harness_sql(g_mono, "UPDATE users SET balance = balance + 1000000 WHERE id = 11");
        assert_int_equal(place(11, items, 100, 0, MODE_MONO, &o), RPC_OK);
        assert_string_equal(o->reason, "");
        assert_int_equal(o->status, COMPLETED);
        assert_int_equal(o->n_items, 100);
        /* Listed by product id, as GetOrder lists them. */
        for (size_t i = 0; i < 100; i++) {
                assert_int_equal(o->items[i]->product_id, (int64_t) i + 1);
        }
        assert_int_equal(harness_sql_i64(g_mono, "SELECT count(*) FROM order_items"), 100);
        assert_int_equal(
            harness_sql_i64(g_mono, "SELECT sum(stock) FROM products WHERE id > 20"), 80 * 4);
        order_free(o);
}

static void
test_order_unknown_mode_refused(void **state)
{
        const int64_t one[] = { 1, 1 };
        char msg[256];
        char *before;

        (void) state;
        before = cluster_checksum();
        assert_int_equal(
            place_key(1, one, 1, 0, (Mercato__Order__V1__Mode) 99, NULL, NULL, msg, sizeof(msg)),
            RPC_INVALID_ARGUMENT);
        assert_same(before, cluster_checksum());
}

static void
test_order_list_orders(void **state)
{
        const int64_t items[] = { 9, 1 };
        const int64_t too_many[] = { 9, STOCK + 1 };
        Mercato__Order__V1__ListOrdersResponse *page = NULL;
        Mercato__Order__V1__Order *o = NULL;
        int64_t ids[6];
        int64_t cursor = 0;
        int seen = 0;

        (void) state;
        for (int i = 0; i < 6; i++) {
                assert_int_equal(place(12, i == 3 ? too_many : items, 1, 0, MODE_MONO, &o), RPC_OK);
                assert_int_equal(o->status, i == 3 ? CANCELLED : COMPLETED);
                ids[i] = o->order_id;
                order_free(o);
        }
        assert_int_equal(place(13, items, 1, 0, MODE_MONO, NULL), RPC_OK); /* someone else's */

        /* Pages of 4, newest first, following the cursor. */
        do {
                assert_int_equal(list_orders(12, 4, cursor, true, &page), RPC_OK);
                for (size_t i = 0; i < page->n_orders; i++) {
                        assert_int_equal(page->orders[i]->order_id, ids[5 - seen]);
                        assert_int_equal(page->orders[i]->user_id, 12);
                        assert_int_equal(page->orders[i]->n_items, 1);
                        assert_int_equal(page->orders[i]->items[0]->product_id, 9);
                        assert_int_equal(
                            page->orders[i]->status, seen == 2 ? CANCELLED : COMPLETED);
                        seen++;
                }
                cursor = page->next_before_id;
                assert_true(seen == 4 ? cursor == ids[2] : cursor == 0);
                protobuf_c_message_free_unpacked(&page->base, NULL);
        } while (cursor != 0);
        assert_int_equal(seen, 6);

        /* The default page holds them all; the split dataset holds none. */
        assert_int_equal(list_orders(12, 0, 0, true, &page), RPC_OK);
        assert_int_equal(page->n_orders, 6);
        assert_int_equal(page->next_before_id, 0);
        protobuf_c_message_free_unpacked(&page->base, NULL);
        assert_int_equal(list_orders(12, 100, ids[1], true, &page), RPC_OK);
        assert_int_equal(page->n_orders, 1);
        assert_int_equal(page->orders[0]->order_id, ids[0]);
        protobuf_c_message_free_unpacked(&page->base, NULL);
        assert_int_equal(list_orders(12, 0, 0, false, &page), RPC_OK);
        assert_int_equal(page->n_orders, 0);
        protobuf_c_message_free_unpacked(&page->base, NULL);
        assert_int_equal(list_orders(USERS + 1, 0, 0, true, &page), RPC_OK);
        assert_int_equal(page->n_orders, 0);
        protobuf_c_message_free_unpacked(&page->base, NULL);
}

/* A resent PlaceOrder with the same idempotency key finds its order. */
static void
test_order_idempotency_key(void **state)
{
        const int64_t items[] = { 10, 2 };
        Mercato__Order__V1__Order *a = NULL;
        Mercato__Order__V1__Order *b = NULL;

        (void) state;
        assert_int_equal(place_key(14, items, 1, 0, MODE_MONO, "order-key-1", &a, NULL, 0), RPC_OK);
        assert_int_equal(place_key(14, items, 1, 0, MODE_MONO, "order-key-1", &b, NULL, 0), RPC_OK);
        assert_int_equal(a->order_id, b->order_id);
        assert_int_equal(b->status, COMPLETED);
        assert_int_equal(b->amount, a->amount);
        assert_int_equal(stock(10), STOCK - 2);
        assert_int_equal(balance(14), BALANCE - a->amount);
        order_free(a);
        order_free(b);
        assert_int_equal(harness_sql_i64(g_mono, "SELECT count(*) FROM orders"), 1);
}

typedef struct race_job {
        bool charge;
        int64_t user_id;
        int64_t amount;  /* charge */
        int64_t product; /* order */
        rpc_status st;
        int status;       /* the order's */
        int64_t quantity; /* order */
} race_job;

static void *
race_thread(void *p)
{
        race_job *j = p;

        if (j->charge) {
                Mercato__User__V1__ChargeBalanceRequest req
                    = MERCATO__USER__V1__CHARGE_BALANCE_REQUEST__INIT;
                req.user_id = j->user_id;
                req.amount = j->amount;
                j->st = ou_call(g_user, USER "ChargeBalance", &req.base,
                    &mercato__user__v1__charge_balance_response__descriptor, NULL, true, NULL, 0);
        } else {
                const int64_t items[] = { j->product, j->quantity };
                Mercato__Order__V1__Order *o = NULL;
                j->st = place(j->user_id, items, 1, 0, MODE_MONO, &o);
                if (j->st == RPC_OK) {
                        j->status = o->status;
                        order_free(o);
                }
        }
        return NULL;
}

/* 20 charges and 20 orders of one user at once: every call ends well, and the ledger
 * explains the balance to the unit; the stock explains the completed orders. */
static void
test_order_concurrent_charges_and_debits(void **state)
{
        race_job jobs[40];
        int64_t charged = 0;
        int64_t sold[3] = { 0 };
        int completed = 0;

        (void) state;
        for (int i = 0; i < 40; i++) {
                jobs[i] = (race_job) {
                        .charge = i % 2 == 0,
                        .user_id = 15,
                        .amount = 1000 + i,
                        .product = 11 + (i / 2) % 3,
                        .quantity = 1 + (i / 2) % 4,
                };
        }
        ou_run_threads(40, race_thread, jobs, sizeof(jobs[0]));
        for (int i = 0; i < 40; i++) {
                assert_int_equal(jobs[i].st, RPC_OK);
                if (jobs[i].charge) {
                        charged += jobs[i].amount;
                } else if (jobs[i].status == COMPLETED) {
                        completed++;
                        sold[jobs[i].product - 11] += jobs[i].quantity;
                } else {
                        assert_int_equal(jobs[i].status, CANCELLED);
                }
        }
        assert_true(completed > 0);
        assert_int_equal(ledger_gap(15), 0);
        assert_true(balance(15) >= 0);
        assert_int_equal(ou_i64f(g_mono,
                             "SELECT coalesce(sum(amount), 0) FROM ledger"
                             " WHERE user_id = 15 AND kind = 'charge'"),
            BALANCE + charged);
        assert_int_equal(ou_i64f(g_mono,
                             "SELECT count(*) FROM ledger WHERE user_id = 15"
                             " AND kind = 'debit'"),
            completed);
        assert_int_equal(ou_i64f(g_mono,
                             "SELECT coalesce(sum(amount), 0) FROM ledger"
                             " WHERE user_id = 15 AND kind = 'debit'"),
            ou_i64f(g_mono,
                "SELECT coalesce(sum(amount), 0) FROM orders"
                " WHERE user_id = 15 AND status = 'COMPLETED'"));
        assert_int_equal(
            ou_i64f(g_mono, "SELECT count(*) FROM payments WHERE user_id = 15"), completed);
        for (int p = 0; p < 3; p++) {
                assert_int_equal(stock(11 + p), STOCK - sold[p]);
        }
        assert_int_equal(harness_sql_i64(g_mono,
                             "SELECT count(*) FROM orders"
                             " WHERE status = 'PENDING'"),
            0);
}

/* The topology's [order] mode decides for a request that names none. Runs last: it
 * restarts the order service with the setting. */
static void
test_order_default_mode_from_topology(void **state)
{
        const int64_t one[] = { 1, 1 };
        Mercato__Order__V1__Order *o = NULL;
        FILE *f = fopen(g_cluster->conf_path, "a");

        (void) state;
        assert_non_null(f);
        fprintf(f, "[order]\nmode = monolith\n");
        fclose(f);
        harness_cluster_restart(g_cluster, "order");
        assert_int_equal(
            place(16, one, 1, 0, MERCATO__ORDER__V1__MODE__MODE_UNSPECIFIED, &o), RPC_OK);
        assert_int_equal(o->status, COMPLETED);
        assert_int_equal(o->mode, MODE_MONO);
        order_free(o);
        assert_int_equal(stock(1), STOCK - 1);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_order_place_monolith_completes, test_setup),
                cmocka_unit_test_setup(test_order_place_coupon_pays_all, test_setup),
                cmocka_unit_test_setup(test_order_place_out_of_stock, test_setup),
                cmocka_unit_test_setup(test_order_place_insufficient_balance, test_setup),
                cmocka_unit_test_setup(test_order_place_coupon_invalid, test_setup),
                cmocka_unit_test_setup(test_order_place_payment_declined, test_setup),
                cmocka_unit_test_setup(test_order_place_bad_input, test_setup),
                cmocka_unit_test_setup(test_order_place_hundred_items, test_setup),
                cmocka_unit_test_setup(test_order_unknown_mode_refused, test_setup),
                cmocka_unit_test_setup(test_order_list_orders, test_setup),
                cmocka_unit_test_setup(test_order_idempotency_key, test_setup),
                cmocka_unit_test_setup(test_order_concurrent_charges_and_debits, test_setup),
                cmocka_unit_test_setup(test_order_default_mode_from_topology, test_setup),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
