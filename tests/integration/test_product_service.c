/* test_product_service.c: mercato-product on a real PostgreSQL: methods, bad input, events, store. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "harness.h"
#include "product.pb-c.h"
#include "product_store.h"
#include "rpc.h"
#include "txn.h"

#define SVC "/mercato.product.v1.ProductService/"
#define DELIVER "/mercato.event.v1.EventSink/Deliver"

/* A checksum of every table the product service owns, to prove a call changed nothing. */
#define PRODUCT_CHECKSUM                                                                           \
        "SELECT ('x' || substr(md5("                                                               \
        " coalesce((SELECT string_agg(t::text, ',' ORDER BY t.id) FROM products t), '') || '|' ||" \
        " coalesce((SELECT string_agg(t::text, ',' ORDER BY t.order_id, t.product_id)"             \
        "  FROM reservations t), '') || '|' ||"                                                    \
        " coalesce((SELECT string_agg(t::text, ',' ORDER BY t.product_id, t.day)"                  \
        "  FROM sales_daily t), '') || '|' ||"                                                     \
        " coalesce((SELECT string_agg(t::text, ',' ORDER BY t.consumer, t.key)"                    \
        "  FROM txn_barrier t), '')), 1, 16))::bit(64)::bigint"

static harness_fixture fx;

static int
group_setup(void **state)
{
        (void) state;
        harness_fixture_start(&fx, "product", "product", NULL);
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        harness_fixture_stop(&fx);
        return 0;
}

/* Empties the product tables and the barrier of both datasets before each test. */
static int
test_setup(void **state)
{
        (void) state;
        harness_sql(fx.db, "TRUNCATE products, reservations, sales_daily, txn_barrier");
        harness_sql(fx.mono, "TRUNCATE products, reservations, sales_daily, txn_barrier");
        return 0;
}

static int64_t
checksum(void)
{
        return harness_sql_i64(fx.db, PRODUCT_CHECKSUM);
}

/* Seeds products 1..n on a database: 'p-N', price 100 * N, stock 10 * N. */
static void
seed_products(const char *db, int n)
{
        char sql[256];

        snprintf(sql, sizeof(sql),
            "INSERT INTO products (id, name, price, stock) SELECT g, 'p-' || g, 100 * g,"
            " 10 * g FROM generate_series(1, %d) g",
            n);
        harness_sql(db, sql);
}

/* Calls a method, on the monolith dataset if mono; *ret_resp (may be NULL) gets the reply. */
static rpc_status
call(const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **ret_resp, bool mono)
{
        static const char *const mono_md[] = { "dataset", "monolith", NULL };
        rpc_call_opts opts
            = { .timeout_ms = 10000, .no_retry = true, .metadata = mono ? mono_md : NULL };
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
list_products(int32_t page_size, int64_t after_id, bool mono,
    Mercato__Product__V1__ListProductsResponse **ret)
{
        Mercato__Product__V1__ListProductsRequest req
            = MERCATO__PRODUCT__V1__LIST_PRODUCTS_REQUEST__INIT;

        req.page_size = page_size;
        req.after_id = after_id;
        return call(SVC "ListProducts", &req.base,
            &mercato__product__v1__list_products_response__descriptor, (ProtobufCMessage **) ret,
            mono);
}

static rpc_status
get_product(int64_t id, bool mono, Mercato__Product__V1__GetProductResponse **ret)
{
        Mercato__Product__V1__GetProductRequest req
            = MERCATO__PRODUCT__V1__GET_PRODUCT_REQUEST__INIT;

        req.product_id = id;
        return call(SVC "GetProduct", &req.base,
            &mercato__product__v1__get_product_response__descriptor, (ProtobufCMessage **) ret,
            mono);
}

static rpc_status
top_products(int32_t limit, int32_t days, Mercato__Product__V1__TopProductsResponse **ret)
{
        Mercato__Product__V1__TopProductsRequest req
            = MERCATO__PRODUCT__V1__TOP_PRODUCTS_REQUEST__INIT;

        req.limit = limit;
        req.days = days;
        return call(SVC "TopProducts", &req.base,
            &mercato__product__v1__top_products_response__descriptor, (ProtobufCMessage **) ret,
            false);
}

/* PriceItems over n (product, quantity) pairs given as an array of 2n int64. */
static rpc_status
price_items(const int64_t *pairs, size_t n, Mercato__Product__V1__PriceItemsResponse **ret)
{
        Mercato__Product__V1__PriceItemsRequest req
            = MERCATO__PRODUCT__V1__PRICE_ITEMS_REQUEST__INIT;
        Mercato__Product__V1__ItemQuantity *items = calloc(n + 1, sizeof(*items));
        Mercato__Product__V1__ItemQuantity **ptrs = calloc(n + 1, sizeof(*ptrs));
        rpc_status st;

        for (size_t i = 0; i < n; i++) {
                mercato__product__v1__item_quantity__init(&items[i]);
                items[i].product_id = pairs[2 * i];
                items[i].quantity = pairs[2 * i + 1];
                ptrs[i] = &items[i];
        }
        req.n_items = n;
        req.items = ptrs;
        st = call(SVC "PriceItems", &req.base,
            &mercato__product__v1__price_items_response__descriptor, (ProtobufCMessage **) ret,
            false);
        free(items);
        free(ptrs);
        return st;
}

/* Delivers an event whose payload is given raw. */
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
            (ProtobufCMessage **) &ack, false);
        if (ack != NULL) {
                if (ret_duplicate != NULL) {
                        *ret_duplicate = ack->duplicate;
                }
                protobuf_c_message_free_unpacked(&ack->base, NULL);
        }
        return st;
}

/* Delivers order.completed for an order with lines given as 2n int64 (product, quantity). */
static rpc_status
deliver_completed(const char *event_id, int64_t order_id, const int64_t *pairs, size_t n,
    int64_t completed_at_ms, bool *ret_duplicate)
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
                lines[i].product_id = pairs[2 * i];
                lines[i].quantity = pairs[2 * i + 1];
                lines[i].unit_price = 100;
                ptrs[i] = &lines[i];
        }
        oc.order_id = order_id;
        oc.user_id = 7;
        oc.amount = 1000;
        oc.n_items = n;
        oc.items = ptrs;
        oc.completed_at_ms = completed_at_ms;
        buf = rpc_pack(&oc.base, &len);
        st = deliver_raw(event_id, "order.completed", buf, len, ret_duplicate);
        free(buf);
        return st;
}

static void
test_product_list_pages_stable_and_complete(void **state)
{
        Mercato__Product__V1__ListProductsResponse *r = NULL;
        int64_t after = 0;
        int64_t expect = 1;
        int pages = 0;

        (void) state;
        seed_products(fx.db, 45);
        do {
                assert_int_equal(list_products(10, after, false, &r), RPC_OK);
                for (size_t i = 0; i < r->n_products; i++) {
                        assert_int_equal(r->products[i]->id, expect);
                        assert_int_equal(r->products[i]->price, 100 * expect);
                        assert_int_equal(r->products[i]->stock, 10 * expect);
                        expect++;
                }
                after = r->next_after_id;
                if (after != 0) {
                        assert_int_equal(r->n_products, 10);
                        assert_int_equal(after, r->products[r->n_products - 1]->id);
                }
                protobuf_c_message_free_unpacked(&r->base, NULL);
                pages++;
        } while (after != 0);
        assert_int_equal(expect, 46);
        assert_int_equal(pages, 5);

        /* The same page twice reads the same. */
        Mercato__Product__V1__ListProductsResponse *a = NULL, *b = NULL;
        assert_int_equal(list_products(7, 10, false, &a), RPC_OK);
        assert_int_equal(list_products(7, 10, false, &b), RPC_OK);
        assert_int_equal(a->n_products, 7);
        assert_int_equal(b->n_products, 7);
        for (size_t i = 0; i < 7; i++) {
                assert_int_equal(a->products[i]->id, b->products[i]->id);
                assert_int_equal(a->products[i]->id, 11 + (int64_t) i);
        }
        protobuf_c_message_free_unpacked(&a->base, NULL);
        protobuf_c_message_free_unpacked(&b->base, NULL);

        /* page_size 0 means 20; a last page that is exactly full says there is no more. */
        assert_int_equal(list_products(0, 0, false, &r), RPC_OK);
        assert_int_equal(r->n_products, 20);
        assert_int_equal(r->next_after_id, 20);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_int_equal(list_products(5, 40, false, &r), RPC_OK);
        assert_int_equal(r->n_products, 5);
        assert_int_equal(r->next_after_id, 0);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_int_equal(list_products(100, 45, false, &r), RPC_OK);
        assert_int_equal(r->n_products, 0);
        assert_int_equal(r->next_after_id, 0);
        protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
test_product_list_bad_input(void **state)
{
        int64_t before;

        (void) state;
        seed_products(fx.db, 3);
        before = checksum();
        assert_int_equal(list_products(-1, 0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_products(101, 0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_products(10, -1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_products(100, 0, false, NULL), RPC_OK);
        assert_int_equal(checksum(), before);
}

static void
test_product_get(void **state)
{
        Mercato__Product__V1__GetProductResponse *r = NULL;
        int64_t before;

        (void) state;
        seed_products(fx.db, 3);
        assert_int_equal(get_product(2, false, &r), RPC_OK);
        assert_non_null(r->product);
        assert_int_equal(r->product->id, 2);
        assert_string_equal(r->product->name, "p-2");
        assert_int_equal(r->product->price, 200);
        assert_int_equal(r->product->stock, 20);
        protobuf_c_message_free_unpacked(&r->base, NULL);

        before = checksum();
        assert_int_equal(get_product(0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(get_product(-5, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(get_product(4, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(checksum(), before);
}

static void
test_product_top_counts_last_days_only(void **state)
{
        Mercato__Product__V1__TopProductsResponse *r = NULL;
        int64_t before;

        (void) state;
        seed_products(fx.db, 8);
        /* Today and the two days before count by default; older sales do not. */
        harness_sql(fx.db,
            "INSERT INTO sales_daily (product_id, day, quantity) VALUES"
            " (1, (now() AT TIME ZONE 'UTC')::date, 5),"
            " (1, (now() AT TIME ZONE 'UTC')::date - 2, 5),"
            " (2, (now() AT TIME ZONE 'UTC')::date - 1, 7),"
            " (3, (now() AT TIME ZONE 'UTC')::date, 7),"
            " (4, (now() AT TIME ZONE 'UTC')::date, 3),"
            " (5, (now() AT TIME ZONE 'UTC')::date, 2),"
            " (6, (now() AT TIME ZONE 'UTC')::date, 1),"
            " (7, (now() AT TIME ZONE 'UTC')::date - 3, 1000),"
            " (8, (now() AT TIME ZONE 'UTC')::date - 30, 2000)");
        assert_int_equal(top_products(0, 0, &r), RPC_OK);
        assert_int_equal(r->n_products, 5);
        int64_t want[5][2] = { { 1, 10 }, { 2, 7 }, { 3, 7 }, { 4, 3 }, { 5, 2 } };
        for (size_t i = 0; i < 5; i++) {
                assert_int_equal(r->products[i]->product->id, want[i][0]);
                assert_int_equal(r->products[i]->quantity_sold, want[i][1]);
        }
        assert_string_equal(r->products[0]->product->name, "p-1");
        protobuf_c_message_free_unpacked(&r->base, NULL);

        /* days = 1: today only. */
        assert_int_equal(top_products(2, 1, &r), RPC_OK);
        assert_int_equal(r->n_products, 2);
        assert_int_equal(r->products[0]->product->id, 3);
        assert_int_equal(r->products[0]->quantity_sold, 7);
        assert_int_equal(r->products[1]->product->id, 1);
        assert_int_equal(r->products[1]->quantity_sold, 5);
        protobuf_c_message_free_unpacked(&r->base, NULL);

        /* days = 4 reaches product 7; 31 reaches product 8. */
        assert_int_equal(top_products(1, 4, &r), RPC_OK);
        assert_int_equal(r->products[0]->product->id, 7);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_int_equal(top_products(100, 31, &r), RPC_OK);
        assert_int_equal(r->n_products, 8);
        assert_int_equal(r->products[0]->product->id, 8);
        assert_int_equal(r->products[0]->quantity_sold, 2000);
        protobuf_c_message_free_unpacked(&r->base, NULL);

        before = checksum();
        assert_int_equal(top_products(-1, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(top_products(101, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(top_products(0, -1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(top_products(0, 366, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(top_products(100, 365, NULL), RPC_OK);
        assert_int_equal(checksum(), before);
}

static void
test_product_price_items(void **state)
{
        Mercato__Product__V1__PriceItemsResponse *r = NULL;
        int64_t ok[] = { 3, 2, 1, 5 };

        (void) state;
        seed_products(fx.db, 5);
        assert_int_equal(price_items(ok, 2, &r), RPC_OK);
        assert_int_equal(r->n_items, 2);
        assert_int_equal(r->items[0]->product_id, 3);
        assert_int_equal(r->items[0]->quantity, 2);
        assert_int_equal(r->items[0]->unit_price, 300);
        assert_string_equal(r->items[0]->name, "p-3");
        assert_int_equal(r->items[1]->product_id, 1);
        assert_int_equal(r->items[1]->unit_price, 100);
        assert_int_equal(r->total, 2 * 300 + 5 * 100);
        protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
test_product_price_items_bad_input(void **state)
{
        int64_t many[2 * 101];
        int64_t dup[] = { 1, 1, 2, 1, 1, 3 };
        int64_t zero_id[] = { 0, 1 };
        int64_t neg_id[] = { -1, 1 };
        int64_t zero_q[] = { 1, 0 };
        int64_t neg_q[] = { 1, -2 };
        int64_t big_q[] = { 1, 1000000000001 };
        int64_t unknown[] = { 1, 1, 99, 1 };
        int64_t overflow[] = { 5, 1000000000000, 4, 1000000000000 };
        int64_t before;

        (void) state;
        seed_products(fx.db, 5);
        harness_sql(fx.db, "UPDATE products SET price = 5000000 WHERE id IN (4, 5)");
        for (int i = 0; i < 101; i++) {
                many[2 * i] = i + 1;
                many[2 * i + 1] = 1;
        }
        before = checksum();
        assert_int_equal(price_items(NULL, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(price_items(many, 101, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(price_items(dup, 3, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(price_items(zero_id, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(price_items(neg_id, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(price_items(zero_q, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(price_items(neg_q, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(price_items(big_q, 1, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(price_items(unknown, 2, NULL), RPC_NOT_FOUND);
        /* 1e12 x 5e6 overflows int64 */
        assert_int_equal(price_items(overflow, 2, NULL), RPC_OUT_OF_RANGE);
        assert_int_equal(checksum(), before);

        /* 100 items is the most, and fine. */
        harness_sql(fx.db,
            "INSERT INTO products (id, name, price, stock) SELECT g, 'p-' || g, 1,"
            " 1 FROM generate_series(6, 100) g");
        assert_int_equal(price_items(many, 100, NULL), RPC_OK);
}

static void
test_product_deliver_order_completed_once(void **state)
{
        Mercato__Product__V1__TopProductsResponse *r = NULL;
        int64_t lines[] = { 2, 3, 1, 4 };
        int64_t more[] = { 2, 10 };
        bool dup = true;
        int64_t before;

        (void) state;
        seed_products(fx.db, 3);
        assert_int_equal(deliver_completed("ev-1", 11, lines, 2, 0, &dup), RPC_OK);
        assert_false(dup);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT sum(quantity) FROM sales_daily"
                             " WHERE product_id = 2"),
            3);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT quantity FROM sales_daily WHERE"
                             " product_id = 1 AND day ="
                             " (now() AT TIME ZONE 'UTC')::date"),
            4);

        /* The same event again: acked as a duplicate, nothing changes. */
        before = checksum();
        assert_int_equal(deliver_completed("ev-1", 11, lines, 2, 0, &dup), RPC_OK);
        assert_true(dup);
        assert_int_equal(checksum(), before);

        /* Another order adds to the same day. */
        assert_int_equal(deliver_completed("ev-2", 12, more, 1, 0, &dup), RPC_OK);
        assert_false(dup);
        assert_int_equal(top_products(0, 0, &r), RPC_OK);
        assert_int_equal(r->n_products, 2);
        assert_int_equal(r->products[0]->product->id, 2);
        assert_int_equal(r->products[0]->quantity_sold, 13);
        assert_int_equal(r->products[1]->product->id, 1);
        assert_int_equal(r->products[1]->quantity_sold, 4);
        protobuf_c_message_free_unpacked(&r->base, NULL);

        /* An order completed ten days ago counts on its own day. */
        int64_t old_ms = harness_sql_i64(
            fx.db, "SELECT (extract(epoch FROM now() - interval '10 days') * 1000)::bigint");
        assert_int_equal(deliver_completed("ev-3", 13, more, 1, old_ms, &dup), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT quantity FROM sales_daily WHERE"
                             " product_id = 2 AND day ="
                             " (now() AT TIME ZONE 'UTC')::date - 10"),
            10);
        assert_int_equal(top_products(1, 0, &r), RPC_OK);
        assert_int_equal(r->products[0]->quantity_sold, 13);
        protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
test_product_deliver_bad_input(void **state)
{
        static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0x01, 0x02 };
        char long_id[80];
        int64_t lines[] = { 1, 1 };
        int64_t zero_q[] = { 1, 0 };
        int64_t before;

        (void) state;
        seed_products(fx.db, 1);
        memset(long_id, 'e', 65);
        long_id[65] = '\0';
        before = checksum();
        assert_int_equal(deliver_raw("ev-g", "order.completed", garbage, sizeof(garbage), NULL),
            RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("", 1, lines, 1, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed(long_id, 1, lines, 1, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("ev-z", 0, lines, 1, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("ev-q", 1, zero_q, 1, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(
            deliver_raw("ev-t", "order.exploded", NULL, 0, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(checksum(), before);
}

static void
test_product_monolith_dataset(void **state)
{
        Mercato__Product__V1__GetProductResponse *g = NULL;
        Mercato__Product__V1__ListProductsResponse *l = NULL;

        (void) state;
        seed_products(fx.db, 2);
        harness_sql(fx.mono,
            "INSERT INTO products (id, name, price, stock) VALUES"
            " (1, 'mono-1', 42, 4), (2, 'mono-2', 43, 5), (3, 'mono-3', 44, 6)");
        assert_int_equal(get_product(1, true, &g), RPC_OK);
        assert_string_equal(g->product->name, "mono-1");
        assert_int_equal(g->product->price, 42);
        protobuf_c_message_free_unpacked(&g->base, NULL);
        assert_int_equal(get_product(1, false, &g), RPC_OK);
        assert_string_equal(g->product->name, "p-1");
        protobuf_c_message_free_unpacked(&g->base, NULL);
        assert_int_equal(get_product(3, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(list_products(0, 0, true, &l), RPC_OK);
        assert_int_equal(l->n_products, 3);
        assert_string_equal(l->products[2]->name, "mono-3");
        protobuf_c_message_free_unpacked(&l->base, NULL);
}

/*
 * The store API the order service's monolith mode calls, straight over a connection.
 */

static db_conn *
store_connect(void)
{
        const db_stmt_table tables[] = { txn_stmts, product_stmts };
        db_conn *db = NULL;
        char err[512];

        if (db_connect(fx.db, tables, 2, &db, err, sizeof(err)) != RPC_OK) {
                fail_msg("connect: %s", err);
        }
        return db;
}

static void
test_product_store_price(void **state)
{
        product_item items[] = { { 2, 1, 0 }, { 1, 3, 0 } };
        product_item bad[] = { { 1, 1, 0 }, { 77, 1, 0 } };
        char err[128] = "";
        db_conn *db;

        (void) state;
        seed_products(fx.db, 2);
        db = store_connect();
        assert_int_equal(product_store_price(db, items, 2, err, sizeof(err)), RPC_OK);
        assert_int_equal(items[0].unit_price, 200);
        assert_int_equal(items[1].unit_price, 100);
        assert_int_equal(product_store_price(db, bad, 2, err, sizeof(err)), RPC_NOT_FOUND);
        assert_non_null(strstr(err, "77"));
        db_close(db);
}

static void
test_product_store_reserve_release_commit(void **state)
{
        product_item items[] = { { 3, 30, 0 }, { 1, 5, 0 } };
        product_item too_many[] = { { 1, 1, 0 }, { 2, 21, 0 } };
        product_item unknown[] = { { 1, 1, 0 }, { 9, 1, 0 } };
        char err[128] = "";
        int64_t before;
        db_conn *db;

        (void) state;
        seed_products(fx.db, 3); /* stock 10, 20, 30 */
        db = store_connect();

        /* All or nothing: product 2 lacks stock, so product 1 keeps its stock too. */
        before = checksum();
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(
            product_store_reserve(db, 100, too_many, 2, err, sizeof(err)), RPC_FAILED_PRECONDITION);
        assert_string_equal(err, "out of stock: product 2");
        db_rollback(db);
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(
            product_store_reserve(db, 100, unknown, 2, err, sizeof(err)), RPC_NOT_FOUND);
        db_rollback(db);
        /* Bad lines are refused before any write. */
        product_item zero_q[] = { { 1, 0, 0 } };
        product_item twice[] = { { 1, 1, 0 }, { 1, 2, 0 } };
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(
            product_store_reserve(db, 100, zero_q, 1, err, sizeof(err)), RPC_INVALID_ARGUMENT);
        assert_int_equal(
            product_store_reserve(db, 100, twice, 2, err, sizeof(err)), RPC_INVALID_ARGUMENT);
        assert_int_equal(
            product_store_reserve(db, 0, items, 2, err, sizeof(err)), RPC_INVALID_ARGUMENT);
        assert_int_equal(db_commit(db), RPC_OK);
        assert_int_equal(checksum(), before);

        /* A reservation takes the stock and records 'held' rows. */
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(product_store_reserve(db, 101, items, 2, err, sizeof(err)), RPC_OK);
        assert_int_equal(db_commit(db), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT stock FROM products WHERE id = 3"), 0);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT stock FROM products WHERE id = 1"), 5);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM reservations"
                             " WHERE order_id = 101 AND status = 'held'"),
            2);
        /* Product 3 is now out of stock. */
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(
            product_store_reserve(db, 102, items, 2, err, sizeof(err)), RPC_FAILED_PRECONDITION);
        assert_string_equal(err, "out of stock: product 3");
        db_rollback(db);

        /* Release gives the stock back, once. */
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(product_store_release(db, 101), RPC_OK);
        assert_int_equal(db_commit(db), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT stock FROM products WHERE id = 3"), 30);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT stock FROM products WHERE id = 1"), 10);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM reservations"
                             " WHERE order_id = 101 AND status = 'released'"),
            2);
        before = checksum();
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(product_store_release(db, 101), RPC_OK);
        assert_int_equal(product_store_release(db, 999), RPC_OK);
        assert_int_equal(db_commit(db), RPC_OK);
        assert_int_equal(checksum(), before);

        /* Commit marks a completed order's reservations sold; release then does nothing. */
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(product_store_reserve(db, 103, items, 2, err, sizeof(err)), RPC_OK);
        assert_int_equal(product_store_commit_reservation(db, 103), RPC_OK);
        assert_int_equal(product_store_release(db, 103), RPC_OK);
        assert_int_equal(db_commit(db), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM reservations"
                             " WHERE order_id = 103 AND status = 'sold'"),
            2);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT stock FROM products WHERE id = 3"), 0);
        db_close(db);
}

typedef struct reserver {
        int64_t first_order;
        bool reverse;
        int ok;
        int failed;
} reserver;

/* Reserves one unit of products 1..5, in ascending or descending order of the list, for
 * 40 orders: the store must sort, so that no two reservers deadlock. */
static void *
reserve_loop(void *arg)
{
        reserver *r = arg;
        db_conn *db = store_connect();
        char err[128];

        for (int i = 0; i < 40; i++) {
                product_item items[5];
                for (int k = 0; k < 5; k++) {
                        items[k] = (product_item) { .product_id = r->reverse ? 5 - k : k + 1,
                                .quantity = 1 };
                }
                if (db_begin(db) != RPC_OK) {
                        r->failed++;
                        continue;
                }
                if (product_store_reserve(db, r->first_order + i, items, 5, err, sizeof(err))
                        == RPC_OK
                    && db_commit(db) == RPC_OK) {
                        r->ok++;
                } else {
                        db_rollback(db);
                        r->failed++;
                }
        }
        db_close(db);
        return NULL;
}

static void
test_product_store_reserve_concurrent_no_deadlock(void **state)
{
        reserver rs[4] = { { 1000, false, 0, 0 }, { 2000, true, 0, 0 }, { 3000, false, 0, 0 },
                { 4000, true, 0, 0 } };
        pthread_t th[4];

        (void) state;
        harness_sql(fx.db,
            "INSERT INTO products (id, name, price, stock) SELECT g, 'p-' || g, 1,"
            " 1000 FROM generate_series(1, 5) g");
        for (int i = 0; i < 4; i++) {
                pthread_create(&th[i], NULL, reserve_loop, &rs[i]);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(rs[i].failed, 0);
                assert_int_equal(rs[i].ok, 40);
        }
        assert_int_equal(harness_sql_i64(fx.db, "SELECT sum(stock) FROM products"), 5000 - 800);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT sum(quantity) FROM reservations"), 800);
}

static void
test_product_store_seed(void **state)
{
        svc_seed s = { .products = 50, .stock = 7, .seed = 18446744073709551615ULL };
        db_conn *db;

        (void) state;
        harness_sql(fx.db, "INSERT INTO products (id, name, price, stock) VALUES (999, 'x', 1, 1)");
        harness_sql(fx.db,
            "INSERT INTO sales_daily (product_id, day, quantity)"
            " VALUES (1, current_date, 3)");
        db = store_connect();
        assert_int_equal(product_store_seed(db, &s), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT count(*) FROM products"), 50);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT count(*) FROM sales_daily"), 0);
        assert_int_equal(
            harness_sql_i64(fx.db, "SELECT count(*) FROM products WHERE stock <> 7"), 0);
        /* price = 100 + ((g * 7919 + seed) % 9901), exact although seed = 2^64 - 1 */
        for (uint64_t g = 1; g <= 50; g += 7) {
                char sql[128];
                uint64_t want = 100 + ((g * 7919) % 9901 + s.seed % 9901) % 9901;

                snprintf(sql, sizeof(sql), "SELECT price FROM products WHERE id = %llu",
                    (unsigned long long) g);
                assert_int_equal(harness_sql_i64(fx.db, sql), (int64_t) want);
        }
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM products"
                             " WHERE name = 'product-' || id"),
            50);
        db_close(db);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_product_list_pages_stable_and_complete, test_setup),
                cmocka_unit_test_setup(test_product_list_bad_input, test_setup),
                cmocka_unit_test_setup(test_product_get, test_setup),
                cmocka_unit_test_setup(test_product_top_counts_last_days_only, test_setup),
                cmocka_unit_test_setup(test_product_price_items, test_setup),
                cmocka_unit_test_setup(test_product_price_items_bad_input, test_setup),
                cmocka_unit_test_setup(test_product_deliver_order_completed_once, test_setup),
                cmocka_unit_test_setup(test_product_deliver_bad_input, test_setup),
                cmocka_unit_test_setup(test_product_monolith_dataset, test_setup),
                cmocka_unit_test_setup(test_product_store_price, test_setup),
                cmocka_unit_test_setup(test_product_store_reserve_release_commit, test_setup),
                cmocka_unit_test_setup(
                    test_product_store_reserve_concurrent_no_deadlock, test_setup),
                cmocka_unit_test_setup(test_product_store_seed, test_setup),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
