/* test_cart_service.c: mercato-cart (with mercato-product) on a real PostgreSQL. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cart.pb-c.h"
#include "event.pb-c.h"
#include "harness.h"
#include "rpc.h"

#define SVC "/mercato.cart.v1.CartService/"
#define DELIVER "/mercato.event.v1.EventSink/Deliver"
#define QMAX INT64_C(1000000000000)

/* A checksum of the cart's tables, to prove a call changed nothing. */
#define CART_CHECKSUM                                                                              \
        "SELECT ('x' || substr(md5("                                                               \
        " coalesce((SELECT string_agg(t::text, ',' ORDER BY t.user_id, t.product_id)"              \
        "  FROM cart_items t), '') || '|' ||"                                                      \
        " coalesce((SELECT string_agg(t::text, ',' ORDER BY t.consumer, t.key)"                    \
        "  FROM txn_barrier t), '')), 1, 16))::bit(64)::bigint"

static harness_fixture fx;
static const char *g_product; /* the product database */

static int
group_setup(void **state)
{
        (void) state;
        harness_fixture_start(&fx, "product cart", "cart", NULL);
        g_product = harness_cluster_db(fx.cluster, "product");
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        harness_fixture_stop(&fx);
        return 0;
}

/* Empties both datasets, then gives the split catalogue products 1..120. */
static int
test_setup(void **state)
{
        (void) state;
        harness_sql(fx.db, "TRUNCATE cart_items, txn_barrier");
        harness_sql(fx.mono, "TRUNCATE cart_items, products, txn_barrier");
        harness_sql(g_product, "TRUNCATE products");
        harness_sql(g_product,
            "INSERT INTO products (id, name, price, stock)"
            " SELECT g, 'p-' || g, 100, 10 FROM generate_series(1, 120) g");
        return 0;
}

static int64_t
checksum(void)
{
        return harness_sql_i64(fx.db, CART_CHECKSUM);
}

static rpc_status
call(const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **ret_resp, bool mono, const char *key)
{
        static const char *const mono_md[] = { "dataset", "monolith", NULL };
        rpc_call_opts opts = { .timeout_ms = 15000,
                .no_retry = true,
                .metadata = mono ? mono_md : NULL,
                .idempotency_key = key };
        ProtobufCMessage *resp = NULL;
        rpc_error err = { 0 };
        rpc_status st;

        st = rpc_client_call(fx.client, method, req, desc, &resp, &opts, &err);
        if (ret_resp != NULL) {
                *ret_resp = resp;
        } else if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return st;
}

static rpc_status
list_cart(int64_t user, Mercato__Cart__V1__Cart **ret)
{
        Mercato__Cart__V1__ListCartRequest req = MERCATO__CART__V1__LIST_CART_REQUEST__INIT;

        req.user_id = user;
        return call(SVC "ListCart", &req.base, &mercato__cart__v1__cart__descriptor,
            (ProtobufCMessage **) ret, false, NULL);
}

static rpc_status
add_opts(int64_t user, int64_t product, int64_t quantity, bool mono, const char *key,
    Mercato__Cart__V1__Cart **ret)
{
        Mercato__Cart__V1__AddToCartRequest req = MERCATO__CART__V1__ADD_TO_CART_REQUEST__INIT;

        req.user_id = user;
        req.product_id = product;
        req.quantity = quantity;
        return call(SVC "AddToCart", &req.base, &mercato__cart__v1__cart__descriptor,
            (ProtobufCMessage **) ret, mono, key);
}

static rpc_status
add(int64_t user, int64_t product, int64_t quantity, Mercato__Cart__V1__Cart **ret)
{
        return add_opts(user, product, quantity, false, NULL, ret);
}

static rpc_status
remove_item(int64_t user, int64_t product, Mercato__Cart__V1__Cart **ret)
{
        Mercato__Cart__V1__RemoveFromCartRequest req
            = MERCATO__CART__V1__REMOVE_FROM_CART_REQUEST__INIT;

        req.user_id = user;
        req.product_id = product;
        return call(SVC "RemoveFromCart", &req.base, &mercato__cart__v1__cart__descriptor,
            (ProtobufCMessage **) ret, false, NULL);
}

static rpc_status
deliver_raw(const char *event_id, const char *topic, const uint8_t *payload, size_t len,
    bool *ret_duplicate)
{
        Mercato__Event__V1__Event ev = MERCATO__EVENT__V1__EVENT__INIT;
        Mercato__Event__V1__DeliverAck *ack = NULL;
        rpc_status st;

        ev.event_id = (char *) event_id;
        ev.topic = (char *) topic;
        ev.aggregate_id = 1;
        ev.payload.data = (uint8_t *) payload;
        ev.payload.len = len;
        ev.source = "order";
        st = call(DELIVER, &ev.base, &mercato__event__v1__deliver_ack__descriptor,
            (ProtobufCMessage **) &ack, false, NULL);
        if (ack != NULL) {
                if (ret_duplicate != NULL) {
                        *ret_duplicate = ack->duplicate;
                }
                protobuf_c_message_free_unpacked(&ack->base, NULL);
        }
        return st;
}

/* order.completed for a user, with n products of quantity 1. */
static rpc_status
deliver_completed(const char *event_id, int64_t order_id, int64_t user, const int64_t *products,
    size_t n, bool *ret_duplicate)
{
        Mercato__Event__V1__OrderCompleted oc = MERCATO__EVENT__V1__ORDER_COMPLETED__INIT;
        Mercato__Event__V1__OrderCompleted__Line lines[8];
        Mercato__Event__V1__OrderCompleted__Line *ptrs[8];
        uint8_t *buf;
        size_t len;
        rpc_status st;

        assert_true(n <= 8);
        for (size_t i = 0; i < n; i++) {
                mercato__event__v1__order_completed__line__init(&lines[i]);
                lines[i].product_id = products[i];
                lines[i].quantity = 1;
                lines[i].unit_price = 100;
                ptrs[i] = &lines[i];
        }
        oc.order_id = order_id;
        oc.user_id = user;
        oc.amount = 100 * (int64_t) n;
        oc.n_items = n;
        oc.items = ptrs;
        buf = rpc_pack(&oc.base, &len);
        st = deliver_raw(event_id, "order.completed", buf, len, ret_duplicate);
        free(buf);
        return st;
}

static void
test_cart_add_list_remove(void **state)
{
        Mercato__Cart__V1__Cart *c = NULL;

        (void) state;
        assert_int_equal(list_cart(5, &c), RPC_OK);
        assert_int_equal(c->user_id, 5);
        assert_int_equal(c->n_items, 0);
        protobuf_c_message_free_unpacked(&c->base, NULL);

        assert_int_equal(add(5, 7, 2, &c), RPC_OK);
        assert_int_equal(c->n_items, 1);
        assert_int_equal(c->items[0]->product_id, 7);
        assert_int_equal(c->items[0]->quantity, 2);
        assert_true(c->items[0]->added_at_ms > 0);
        protobuf_c_message_free_unpacked(&c->base, NULL);

        /* Added to what is there; lines come by product id. */
        assert_int_equal(add(5, 7, 3, NULL), RPC_OK);
        assert_int_equal(add(5, 2, 1, &c), RPC_OK);
        assert_int_equal(c->n_items, 2);
        assert_int_equal(c->items[0]->product_id, 2);
        assert_int_equal(c->items[0]->quantity, 1);
        assert_int_equal(c->items[1]->product_id, 7);
        assert_int_equal(c->items[1]->quantity, 5);
        protobuf_c_message_free_unpacked(&c->base, NULL);

        /* Another user's cart is separate. */
        assert_int_equal(add(6, 7, 1, NULL), RPC_OK);
        assert_int_equal(list_cart(5, &c), RPC_OK);
        assert_int_equal(c->n_items, 2);
        protobuf_c_message_free_unpacked(&c->base, NULL);

        assert_int_equal(remove_item(5, 7, &c), RPC_OK);
        assert_int_equal(c->n_items, 1);
        assert_int_equal(c->items[0]->product_id, 2);
        protobuf_c_message_free_unpacked(&c->base, NULL);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT count(*) FROM cart_items"), 2);
}

static void
test_cart_bad_input(void **state)
{
        int64_t before;

        (void) state;
        assert_int_equal(add(5, 1, 3, NULL), RPC_OK);
        before = checksum();
        assert_int_equal(list_cart(0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_cart(-1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(0, 1, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(-5, 1, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(5, 0, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(5, -1, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(5, 1, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(5, 1, -3, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(5, 1, QMAX + 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(5, 1, INT64_MAX, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(add(5, 999, 1, NULL), RPC_NOT_FOUND);
        assert_int_equal(remove_item(0, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(remove_item(5, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(remove_item(5, 2, NULL), RPC_NOT_FOUND);
        assert_int_equal(remove_item(6, 1, NULL), RPC_NOT_FOUND);
        assert_int_equal(checksum(), before);
}

static void
test_cart_quantity_overflow(void **state)
{
        Mercato__Cart__V1__Cart *c = NULL;
        int64_t before;

        (void) state;
        assert_int_equal(add(5, 1, QMAX - 1, NULL), RPC_OK);
        assert_int_equal(add(5, 1, 1, &c), RPC_OK);
        assert_int_equal(c->items[0]->quantity, QMAX);
        protobuf_c_message_free_unpacked(&c->base, NULL);
        before = checksum();
        assert_int_equal(add(5, 1, 1, NULL), RPC_OUT_OF_RANGE);
        assert_int_equal(add(5, 1, QMAX, NULL), RPC_OUT_OF_RANGE);
        assert_int_equal(checksum(), before);
}

static void
test_cart_full(void **state)
{
        int64_t before;

        (void) state;
        harness_sql(fx.db,
            "INSERT INTO cart_items (user_id, product_id, quantity)"
            " SELECT 5, g, 1 FROM generate_series(1, 100) g");
        before = checksum();
        assert_int_equal(add(5, 101, 1, NULL), RPC_FAILED_PRECONDITION);
        assert_int_equal(checksum(), before);
        /* A line already there still grows. */
        assert_int_equal(add(5, 100, 1, NULL), RPC_OK);
        assert_int_equal(
            harness_sql_i64(fx.db, "SELECT quantity FROM cart_items WHERE product_id = 100"), 2);
}

static void
test_cart_idempotency_key(void **state)
{
        (void) state;
        assert_int_equal(add_opts(5, 3, 4, false, "add-once-1", NULL), RPC_OK);
        assert_int_equal(add_opts(5, 3, 4, false, "add-once-1", NULL), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT quantity FROM cart_items"
                             " WHERE user_id = 5 AND product_id = 3"),
            4);
        assert_int_equal(add_opts(5, 3, 4, false, "add-once-2", NULL), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT quantity FROM cart_items"
                             " WHERE user_id = 5 AND product_id = 3"),
            8);
}

static void
test_cart_deliver_order_completed_once(void **state)
{
        static const int64_t ordered[] = { 1, 3, 50 };
        Mercato__Cart__V1__Cart *c = NULL;
        bool dup = true;
        int64_t before;

        (void) state;
        assert_int_equal(add(5, 1, 1, NULL), RPC_OK);
        assert_int_equal(add(5, 2, 1, NULL), RPC_OK);
        assert_int_equal(add(5, 3, 1, NULL), RPC_OK);
        assert_int_equal(add(6, 1, 1, NULL), RPC_OK);
        assert_int_equal(deliver_completed("ev-1", 1, 5, ordered, 3, &dup), RPC_OK);
        assert_false(dup);
        assert_int_equal(list_cart(5, &c), RPC_OK);
        assert_int_equal(c->n_items, 1);
        assert_int_equal(c->items[0]->product_id, 2);
        protobuf_c_message_free_unpacked(&c->base, NULL);
        assert_int_equal(list_cart(6, &c), RPC_OK);
        assert_int_equal(c->n_items, 1);
        protobuf_c_message_free_unpacked(&c->base, NULL);

        /* Delivered again after the user put product 1 back: a duplicate, nothing removed. */
        assert_int_equal(add(5, 1, 1, NULL), RPC_OK);
        before = checksum();
        assert_int_equal(deliver_completed("ev-1", 1, 5, ordered, 3, &dup), RPC_OK);
        assert_true(dup);
        assert_int_equal(checksum(), before);
}

static void
test_cart_deliver_bad_input(void **state)
{
        static const uint8_t garbage[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f };
        static const int64_t ordered[] = { 1 };
        int64_t before;

        (void) state;
        assert_int_equal(add(5, 1, 1, NULL), RPC_OK);
        before = checksum();
        assert_int_equal(deliver_raw("ev-g", "order.completed", garbage, sizeof(garbage), NULL),
            RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("ev-u", 1, 0, ordered, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("", 1, 5, ordered, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_raw("ev-t", "cart.whatever", NULL, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(checksum(), before);
}

static void
test_cart_monolith_dataset(void **state)
{
        Mercato__Cart__V1__Cart *c = NULL;
        int64_t before;

        (void) state;
        /* Product 500 exists only in the monolith catalogue. */
        harness_sql(fx.mono,
            "INSERT INTO products (id, name, price, stock)"
            " VALUES (500, 'mono-500', 1, 1)");
        before = checksum();
        assert_int_equal(add(5, 500, 1, NULL), RPC_NOT_FOUND);
        assert_int_equal(add_opts(5, 500, 2, true, NULL, &c), RPC_OK);
        assert_int_equal(c->n_items, 1);
        assert_int_equal(c->items[0]->product_id, 500);
        protobuf_c_message_free_unpacked(&c->base, NULL);
        assert_int_equal(checksum(), before);
        assert_int_equal(harness_sql_i64(fx.mono,
                             "SELECT quantity FROM cart_items"
                             " WHERE user_id = 5 AND product_id = 500"),
            2);
        /* And product 1, only in the split catalogue, is unknown to the monolith one. */
        assert_int_equal(add_opts(5, 1, 1, true, NULL, NULL), RPC_NOT_FOUND);
}

/* Last: the product service goes away, and comes back. */
static void
test_cart_product_unavailable(void **state)
{
        int64_t before;

        (void) state;
        before = checksum();
        harness_cluster_signal(fx.cluster, "product", SIGKILL);
        assert_int_equal(add(5, 1, 1, NULL), RPC_UNAVAILABLE);
        assert_int_equal(checksum(), before);
        harness_cluster_restart(fx.cluster, "product");
        /* The breaker may stay open for its cool-down; the next call goes through. */
        rpc_status st = RPC_UNAVAILABLE;
        for (int i = 0; i < 50 && st != RPC_OK; i++) {
                st = add(5, 1, 1, NULL);
                if (st != RPC_OK) {
                        struct timespec ts = { 0, 100 * 1000 * 1000 };
                        nanosleep(&ts, NULL);
                }
        }
        assert_int_equal(st, RPC_OK);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_cart_add_list_remove, test_setup),
                cmocka_unit_test_setup(test_cart_bad_input, test_setup),
                cmocka_unit_test_setup(test_cart_quantity_overflow, test_setup),
                cmocka_unit_test_setup(test_cart_full, test_setup),
                cmocka_unit_test_setup(test_cart_idempotency_key, test_setup),
                cmocka_unit_test_setup(test_cart_deliver_order_completed_once, test_setup),
                cmocka_unit_test_setup(test_cart_deliver_bad_input, test_setup),
                cmocka_unit_test_setup(test_cart_monolith_dataset, test_setup),
                cmocka_unit_test_setup(test_cart_product_unavailable, test_setup),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
