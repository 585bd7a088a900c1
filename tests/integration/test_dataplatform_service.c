/* test_dataplatform_service.c: mercato-dataplatform on a real PostgreSQL: once per event id. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplatform.pb-c.h"
#include "event.pb-c.h"
#include "harness.h"
#include "rpc.h"

#define SVC "/mercato.dataplatform.v1.DataPlatformService/"
#define DELIVER "/mercato.event.v1.EventSink/Deliver"

/* A checksum of the data platform's tables, to prove a call changed nothing. */
#define DP_CHECKSUM                                                                                \
        "SELECT ('x' || substr(md5("                                                               \
        " coalesce((SELECT string_agg(t::text, ',' ORDER BY t.event_id)"                           \
        "  FROM received_orders t), '') || '|' ||"                                                 \
        " coalesce((SELECT string_agg(t::text, ',' ORDER BY t.name) FROM dp_counters t), '')"      \
        " || '|' || coalesce((SELECT string_agg(t::text, ',' ORDER BY t.consumer, t.key)"          \
        "  FROM txn_barrier t), '')), 1, 16))::bit(64)::bigint"

static harness_fixture fx;

static int
group_setup(void **state)
{
        (void) state;
        harness_fixture_start(&fx, "dataplatform", "dataplatform", NULL);
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        harness_fixture_stop(&fx);
        return 0;
}

static int
test_setup(void **state)
{
        (void) state;
        harness_sql(fx.db, "TRUNCATE received_orders, txn_barrier");
        harness_sql(fx.db, "UPDATE dp_counters SET value = 0");
        harness_sql(fx.mono, "TRUNCATE received_orders, txn_barrier");
        harness_sql(fx.mono, "UPDATE dp_counters SET value = 0");
        return 0;
}

static int64_t
checksum(void)
{
        return harness_sql_i64(fx.db, DP_CHECKSUM);
}

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
list_received(int32_t page_size, int64_t after, int64_t order_id, bool mono,
    Mercato__Dataplatform__V1__ListReceivedResponse **ret)
{
        Mercato__Dataplatform__V1__ListReceivedRequest req
            = MERCATO__DATAPLATFORM__V1__LIST_RECEIVED_REQUEST__INIT;

        req.page_size = page_size;
        req.after_order_id = after;
        req.order_id = order_id;
        return call(SVC "ListReceived", &req.base,
            &mercato__dataplatform__v1__list_received_response__descriptor,
            (ProtobufCMessage **) ret, mono);
}

static void
stats(bool mono, int64_t *ret_received, int64_t *ret_duplicates)
{
        Mercato__Dataplatform__V1__StatsRequest req
            = MERCATO__DATAPLATFORM__V1__STATS_REQUEST__INIT;
        Mercato__Dataplatform__V1__StatsResponse *r = NULL;

        assert_int_equal(
            call(SVC "Stats", &req.base, &mercato__dataplatform__v1__stats_response__descriptor,
                (ProtobufCMessage **) &r, mono),
            RPC_OK);
        *ret_received = r->received;
        *ret_duplicates = r->duplicates;
        protobuf_c_message_free_unpacked(&r->base, NULL);
}

static rpc_status
deliver_raw(const char *event_id, const char *topic, const uint8_t *payload, size_t len, bool mono,
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
            (ProtobufCMessage **) &ack, mono);
        if (ack != NULL) {
                if (ret_duplicate != NULL) {
                        *ret_duplicate = ack->duplicate;
                }
                protobuf_c_message_free_unpacked(&ack->base, NULL);
        }
        return st;
}

static rpc_status
deliver_completed(const char *event_id, int64_t order_id, int64_t user, int64_t amount, bool mono,
    bool *ret_duplicate)
{
        Mercato__Event__V1__OrderCompleted oc = MERCATO__EVENT__V1__ORDER_COMPLETED__INIT;
        Mercato__Event__V1__OrderCompleted__Line line
            = MERCATO__EVENT__V1__ORDER_COMPLETED__LINE__INIT;
        Mercato__Event__V1__OrderCompleted__Line *lines[] = { &line };
        uint8_t *buf;
        size_t len;
        rpc_status st;

        line.product_id = 1;
        line.quantity = 1;
        line.unit_price = amount;
        oc.order_id = order_id;
        oc.user_id = user;
        oc.amount = amount;
        oc.n_items = 1;
        oc.items = lines;
        oc.completed_at_ms = 1700000000000;
        buf = rpc_pack(&oc.base, &len);
        st = deliver_raw(event_id, "order.completed", buf, len, mono, ret_duplicate);
        free(buf);
        return st;
}

static void
test_dataplatform_records_once(void **state)
{
        Mercato__Dataplatform__V1__ListReceivedResponse *r = NULL;
        int64_t received, duplicates, before;
        bool dup = true;

        (void) state;
        assert_int_equal(deliver_completed("ev-1", 42, 7, 1234, false, &dup), RPC_OK);
        assert_false(dup);
        assert_int_equal(list_received(0, 0, 0, false, &r), RPC_OK);
        assert_int_equal(r->n_received, 1);
        assert_string_equal(r->received[0]->event_id, "ev-1");
        assert_int_equal(r->received[0]->order_id, 42);
        assert_int_equal(r->received[0]->user_id, 7);
        assert_int_equal(r->received[0]->amount, 1234);
        assert_true(r->received[0]->received_at_ms > 1700000000000);
        assert_int_equal(r->next_after_order_id, 0);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        stats(false, &received, &duplicates);
        assert_int_equal(received, 1);
        assert_int_equal(duplicates, 0);

        /* Again: acked as a duplicate, the record is untouched, the refusal counted. */
        before = harness_sql_i64(fx.db,
            "SELECT ('x' || substr(md5(string_agg(t::text, ','"
            " ORDER BY event_id)), 1, 16))::bit(64)::bigint"
            " FROM received_orders t");
        assert_int_equal(deliver_completed("ev-1", 42, 7, 1234, false, &dup), RPC_OK);
        assert_true(dup);
        assert_int_equal(deliver_completed("ev-1", 42, 7, 1234, false, &dup), RPC_OK);
        assert_true(dup);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT ('x' || substr(md5(string_agg(t::text,"
                             " ',' ORDER BY event_id)), 1, 16))::bit(64)::bigint"
                             " FROM received_orders t"),
            before);
        stats(false, &received, &duplicates);
        assert_int_equal(received, 1);
        assert_int_equal(duplicates, 2);

        /* One order's record by order_id; an order never received gives none. */
        assert_int_equal(deliver_completed("ev-2", 43, 8, 10, false, &dup), RPC_OK);
        assert_int_equal(list_received(0, 0, 43, false, &r), RPC_OK);
        assert_int_equal(r->n_received, 1);
        assert_string_equal(r->received[0]->event_id, "ev-2");
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_int_equal(list_received(0, 0, 44, false, &r), RPC_OK);
        assert_int_equal(r->n_received, 0);
        protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
test_dataplatform_list_pages(void **state)
{
        Mercato__Dataplatform__V1__ListReceivedResponse *r = NULL;
        int64_t after = 0;
        int64_t seen = 0;
        int pages = 0;
        int64_t last = 0;

        (void) state;
        harness_sql(fx.db,
            "INSERT INTO received_orders (event_id, order_id, user_id, amount)"
            " SELECT 'e-' || g, g, 1, g FROM generate_series(1, 45) g");
        /* Order 10 recorded twice (a fault the checker must see): its records stay together. */
        harness_sql(fx.db,
            "INSERT INTO received_orders (event_id, order_id, user_id, amount)"
            " VALUES ('e-10-again', 10, 1, 10)");
        do {
                assert_int_equal(list_received(10, after, 0, false, &r), RPC_OK);
                for (size_t i = 0; i < r->n_received; i++) {
                        assert_true(r->received[i]->order_id >= last);
                        last = r->received[i]->order_id;
                        seen++;
                }
                after = r->next_after_order_id;
                if (after != 0) {
                        assert_int_equal(after, last);
                }
                protobuf_c_message_free_unpacked(&r->base, NULL);
                pages++;
        } while (after != 0 && pages < 20);
        assert_int_equal(seen, 46);
        assert_int_equal(last, 45);
        assert_int_equal(pages, 5);

        assert_int_equal(list_received(0, 0, 10, false, &r), RPC_OK);
        assert_int_equal(r->n_received, 2);
        protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void
test_dataplatform_bad_input(void **state)
{
        static const uint8_t garbage[] = { 0x08, 0x80, 0x80, 0x80 };
        int64_t before;

        (void) state;
        assert_int_equal(deliver_completed("ev-1", 1, 1, 1, false, NULL), RPC_OK);
        before = checksum();
        assert_int_equal(list_received(-1, 0, 0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_received(101, 0, 0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_received(0, -1, 0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_received(0, 0, -1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(
            deliver_raw("ev-g", "order.completed", garbage, sizeof(garbage), false, NULL),
            RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("ev-o", 0, 1, 1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("ev-u", 1, -1, 1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("ev-a", 1, 1, -1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_completed("", 1, 1, 1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(deliver_raw("ev-t", "", NULL, 0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(checksum(), before);
}

static void
test_dataplatform_monolith_dataset(void **state)
{
        Mercato__Dataplatform__V1__ListReceivedResponse *r = NULL;
        int64_t received, duplicates;

        (void) state;
        harness_sql(fx.db,
            "INSERT INTO received_orders (event_id, order_id, user_id, amount)"
            " VALUES ('split-1', 1, 1, 1)");
        assert_int_equal(deliver_completed("mono-1", 77, 3, 300, true, NULL), RPC_OK);
        assert_int_equal(list_received(0, 0, 0, true, &r), RPC_OK);
        assert_int_equal(r->n_received, 1);
        assert_string_equal(r->received[0]->event_id, "mono-1");
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_int_equal(list_received(0, 0, 0, false, &r), RPC_OK);
        assert_int_equal(r->n_received, 1);
        assert_string_equal(r->received[0]->event_id, "split-1");
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_int_equal(harness_sql_i64(fx.mono, "SELECT count(*) FROM received_orders"), 1);
        stats(true, &received, &duplicates);
        assert_int_equal(received, 1);
        assert_int_equal(duplicates, 0);
}

static void *
deliver_thread(void *arg)
{
        int *ok_new = arg;
        bool dup = true;

        for (int i = 0; i < 5; i++) {
                if (deliver_completed("ev-race", 9, 9, 9, false, &dup) == RPC_OK && !dup) {
                        (*ok_new)++;
                }
        }
        return NULL;
}

static void
test_dataplatform_concurrent_duplicates(void **state)
{
        int fresh[4] = { 0 };
        pthread_t th[4];
        int64_t received, duplicates;

        (void) state;
        for (int i = 0; i < 4; i++) {
                pthread_create(&th[i], NULL, deliver_thread, &fresh[i]);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
        }
        assert_int_equal(fresh[0] + fresh[1] + fresh[2] + fresh[3], 1);
        stats(false, &received, &duplicates);
        assert_int_equal(received, 1);
        assert_int_equal(duplicates, 19);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_dataplatform_records_once, test_setup),
                cmocka_unit_test_setup(test_dataplatform_list_pages, test_setup),
                cmocka_unit_test_setup(test_dataplatform_bad_input, test_setup),
                cmocka_unit_test_setup(test_dataplatform_monolith_dataset, test_setup),
                cmocka_unit_test_setup(test_dataplatform_concurrent_duplicates, test_setup),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
