/* test_cli_json.c: the mercato client's JSON <-> protobuf conversion, by descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "event.pb-c.h"
#include "json.h"
#include "order.pb-c.h"
#include "rpc.pb-c.h"

/* Parses text as desc; asserts success. */
static ProtobufCMessage *
parse_ok(const ProtobufCMessageDescriptor *desc, const char *text)
{
        ProtobufCMessage *msg = NULL;
        char err[256] = "";
        rpc_status st = cli_json_parse_message(desc, text, &msg, err, sizeof(err));

        if (st != RPC_OK) {
                fail_msg("parse of %s failed: %s", text, err);
        }
        assert_non_null(msg);
        return msg;
}

/* Parses text as desc; asserts INVALID_ARGUMENT with a message containing want. */
static void
parse_fails(const ProtobufCMessageDescriptor *desc, const char *text, const char *want)
{
        ProtobufCMessage *msg = NULL;
        char err[256] = "";
        rpc_status st = cli_json_parse_message(desc, text, &msg, err, sizeof(err));

        if (st == RPC_OK) {
                protobuf_c_message_free_unpacked(msg, NULL);
                fail_msg("%s was accepted, want an error with \"%s\"", text, want);
        }
        assert_int_equal(st, RPC_INVALID_ARGUMENT);
        assert_null(msg);
        if (strstr(err, want) == NULL) {
                fail_msg("error for %s is \"%s\", want it to contain \"%s\"", text, err, want);
        }
}

/* Asserts that a message prints as the JSON text want (compared as JSON values). */
static void
assert_json(const ProtobufCMessage *msg, const char *want)
{
        json_error_t jerr;
        json_t *expected = json_loads(want, 0, &jerr);
        json_t *got = cli_json_from_message(msg);

        if (expected == NULL) {
                fail_msg("bad expected JSON: %s", jerr.text);
        }
        if (!json_equal(expected, got)) {
                char *s = cli_json_dump(got);
                fail_msg("got %s\nwant %s", s, want);
        }
        json_decref(expected);
        json_decref(got);
}

/* Packs msg to the wire and unpacks it again, as the client does. */
static ProtobufCMessage *
through_wire(const ProtobufCMessage *msg)
{
        size_t len;
        uint8_t *buf = rpc_pack(msg, &len);
        ProtobufCMessage *out = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);

        free(buf);
        assert_non_null(out);
        return out;
}

static void
test_cli_json_nested_repeated_round_trip(void **state)
{
        (void) state;
        ProtobufCMessage *m = parse_ok(&mercato__order__v1__order__descriptor,
            "{\"order_id\": 7, \"user_id\": 3, \"status\": \"ORDER_STATUS_COMPLETED\","
            " \"items\": [{\"product_id\": 1, \"quantity\": 2, \"unit_price\": 150},"
            "             {\"product_id\": 9, \"quantity\": 1, \"unit_price\": 99}],"
            " \"total\": 399, \"reason\": \"\", \"mode\": \"MODE_MONOLITH\"}");
        Mercato__Order__V1__Order *o = (Mercato__Order__V1__Order *) m;

        assert_int_equal(o->order_id, 7);
        assert_int_equal(o->status, MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED);
        assert_int_equal(o->n_items, 2);
        assert_int_equal(o->items[1]->product_id, 9);
        assert_int_equal(o->items[0]->unit_price, 150);

        ProtobufCMessage *back = through_wire(m);
        assert_json(back,
            "{\"order_id\": 7, \"user_id\": 3, \"status\": \"ORDER_STATUS_COMPLETED\","
            " \"reason\": \"\","
            " \"items\": [{\"product_id\": 1, \"quantity\": 2, \"unit_price\": 150},"
            "             {\"product_id\": 9, \"quantity\": 1, \"unit_price\": 99}],"
            " \"total\": 399, \"discount\": 0, \"amount\": 0, \"coupon_id\": 0,"
            " \"mode\": \"MODE_MONOLITH\", \"created_at_ms\": 0,"
            " \"updated_at_ms\": 0, \"failure\": null}");
        protobuf_c_message_free_unpacked(back, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
}

static void
test_cli_json_defaults_included(void **state)
{
        (void) state;
        ProtobufCMessage *m = parse_ok(&mercato__order__v1__place_order_response__descriptor, "{}");

        /* An unset message field prints as null; a set one prints every field. */
        assert_json(m, "{\"order\": null}");
        protobuf_c_message_free_unpacked(m, NULL);

        m = parse_ok(&mercato__order__v1__place_order_response__descriptor, "{\"order\": {}}");
        assert_json(m,
            "{\"order\": {\"order_id\": 0, \"user_id\": 0,"
            " \"status\": \"ORDER_STATUS_UNSPECIFIED\", \"reason\": \"\", \"items\": [],"
            " \"total\": 0, \"discount\": 0, \"amount\": 0, \"coupon_id\": 0,"
            " \"mode\": \"MODE_UNSPECIFIED\", \"created_at_ms\": 0,"
            " \"updated_at_ms\": 0, \"failure\": null}}");
        protobuf_c_message_free_unpacked(m, NULL);
}

static void
test_cli_json_enum_by_name_or_number(void **state)
{
        (void) state;
        ProtobufCMessage *m
            = parse_ok(&mercato__order__v1__place_order_request__descriptor, "{\"mode\": 2}");

        assert_int_equal(((Mercato__Order__V1__PlaceOrderRequest *) m)->mode,
            MERCATO__ORDER__V1__MODE__MODE_TWO_PC);
        assert_json(m,
            "{\"user_id\": 0, \"items\": [], \"coupon_id\": 0,"
            " \"mode\": \"MODE_TWO_PC\"}");
        protobuf_c_message_free_unpacked(m, NULL);

        /* A number without a name prints as the number. */
        m = parse_ok(&mercato__order__v1__place_order_request__descriptor, "{\"mode\": 42}");
        assert_json(m, "{\"user_id\": 0, \"items\": [], \"coupon_id\": 0, \"mode\": 42}");
        protobuf_c_message_free_unpacked(m, NULL);

        parse_fails(&mercato__order__v1__place_order_request__descriptor,
            "{\"mode\": \"MODE_FAST\"}", "not a value of mercato.order.v1.Mode");
        parse_fails(&mercato__order__v1__place_order_request__descriptor, "{\"mode\": true}",
            "mode: expected a mercato.order.v1.Mode name or number");
}

static void
test_cli_json_int64_as_number_or_string(void **state)
{
        (void) state;
        ProtobufCMessage *m = parse_ok(&mercato__order__v1__place_order_request__descriptor,
            "{\"user_id\": \"9223372036854775807\", \"coupon_id\": -9223372036854775808,"
            " \"items\": [{\"product_id\": 5.0, \"quantity\": \"-3\"}]}");
        Mercato__Order__V1__PlaceOrderRequest *r = (Mercato__Order__V1__PlaceOrderRequest *) m;

        assert_true(r->user_id == INT64_MAX);
        assert_true(r->coupon_id == INT64_MIN);
        assert_int_equal(r->items[0]->product_id, 5);
        assert_int_equal(r->items[0]->quantity, -3);
        /* Printed as JSON numbers, not strings. */
        assert_json(m,
            "{\"user_id\": 9223372036854775807, \"coupon_id\": -9223372036854775808,"
            " \"items\": [{\"product_id\": 5, \"quantity\": -3}],"
            " \"mode\": \"MODE_UNSPECIFIED\"}");
        protobuf_c_message_free_unpacked(m, NULL);
}

static void
test_cli_json_int_out_of_range_rejected(void **state)
{
        (void) state;
        parse_fails(&mercato__order__v1__place_order_request__descriptor,
            "{\"user_id\": \"9223372036854775808\"}",
            "user_id: 9223372036854775808 is out of range for int64");
        parse_fails(&mercato__order__v1__place_order_request__descriptor,
            "{\"user_id\": \"-9223372036854775809\"}", "out of range for int64");
        parse_fails(&mercato__order__v1__place_order_request__descriptor, "{\"user_id\": 1e19}",
            "out of range for int64");
        parse_fails(&mercato__order__v1__list_orders_request__descriptor,
            "{\"page_size\": 2147483648}", "page_size: 2147483648 is out of range for int32");
        parse_fails(&mercato__rpc__v1__health_response__descriptor, "{\"workers\": -2147483649}",
            "out of range for int32");
        parse_fails(&mercato__rpc__v1__method_stats__descriptor, "{\"calls\": -1}",
            "calls: -1 is out of range for uint64");
        parse_fails(&mercato__rpc__v1__method_stats__descriptor, "{\"calls\": \"-1\"}",
            "out of range for uint64");
        parse_fails(&mercato__rpc__v1__method_stats__descriptor,
            "{\"calls\": \"18446744073709551616\"}", "out of range for uint64");
        parse_fails(&mercato__order__v1__place_order_request__descriptor, "{\"user_id\": 1.5}",
            "expected an integer");
}

static void
test_cli_json_uint64_and_double(void **state)
{
        (void) state;
        ProtobufCMessage *m = parse_ok(&mercato__rpc__v1__method_stats__descriptor,
            "{\"name\": \"/a.B/C\", \"calls\": \"18446744073709551615\","
            " \"errors\": 3, \"p50_ms\": 1.5, \"p99_ms\": \"NaN\","
            " \"max_ms\": \"Infinity\", \"mean_ms\": 2}");
        Mercato__Rpc__V1__MethodStats *s = (Mercato__Rpc__V1__MethodStats *) m;

        assert_true(s->calls == UINT64_MAX);
        assert_true(s->p50_ms == 1.5);
        assert_true(s->mean_ms == 2.0);
        /* A uint64 past INT64_MAX keeps its digits as a string. */
        assert_json(m,
            "{\"name\": \"/a.B/C\", \"calls\": \"18446744073709551615\", \"errors\": 3,"
            " \"p50_ms\": 1.5, \"p99_ms\": \"NaN\", \"max_ms\": \"Infinity\","
            " \"mean_ms\": 2.0}");
        protobuf_c_message_free_unpacked(m, NULL);
        parse_fails(&mercato__rpc__v1__method_stats__descriptor, "{\"p50_ms\": \"fast\"}",
            "expected a number");
}

static void
test_cli_json_bytes_base64_round_trip(void **state)
{
        (void) state;
        ProtobufCMessage *m = parse_ok(&mercato__event__v1__event__descriptor,
            "{\"event_id\": \"e1\", \"payload\": \"AAEC/w==\"}");
        Mercato__Event__V1__Event *e = (Mercato__Event__V1__Event *) m;
        static const uint8_t want[] = { 0, 1, 2, 255 };

        assert_int_equal(e->payload.len, 4);
        assert_memory_equal(e->payload.data, want, 4);
        ProtobufCMessage *back = through_wire(m);
        assert_json(back,
            "{\"event_id\": \"e1\", \"topic\": \"\", \"aggregate_id\": 0,"
            " \"payload\": \"AAEC/w==\", \"created_at_ms\": 0, \"source\": \"\"}");
        protobuf_c_message_free_unpacked(back, NULL);
        protobuf_c_message_free_unpacked(m, NULL);

        /* URL-safe and unpadded forms decode to the same bytes. */
        m = parse_ok(&mercato__event__v1__event__descriptor, "{\"payload\": \"AAEC_w\"}");
        e = (Mercato__Event__V1__Event *) m;
        assert_int_equal(e->payload.len, 4);
        assert_memory_equal(e->payload.data, want, 4);
        protobuf_c_message_free_unpacked(m, NULL);

        parse_fails(&mercato__event__v1__event__descriptor, "{\"payload\": \"a!b=\"}",
            "payload: not valid base64");
        parse_fails(
            &mercato__event__v1__event__descriptor, "{\"payload\": \"abcde\"}", "not valid base64");
        parse_fails(
            &mercato__event__v1__event__descriptor, "{\"payload\": 12}", "expected base64 bytes");
}

static void
test_cli_json_base64_vectors(void **state)
{
        (void) state;
        static const char *const vectors[][2] = {
                { "", "" },
                { "f", "Zg==" },
                { "fo", "Zm8=" },
                { "foo", "Zm9v" },
                { "foob", "Zm9vYg==" },
                { "fooba", "Zm9vYmE=" },
                { "foobar", "Zm9vYmFy" },
        };

        for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
                char *enc
                    = cli_base64_encode((const uint8_t *) vectors[i][0], strlen(vectors[i][0]));
                uint8_t *dec = NULL;
                size_t len = 0;
                assert_string_equal(enc, vectors[i][1]);
                assert_true(cli_base64_decode(enc, &dec, &len));
                assert_int_equal(len, strlen(vectors[i][0]));
                if (len > 0) {
                        assert_memory_equal(dec, vectors[i][0], len);
                }
                free(dec);
                free(enc);
        }
}

static void
test_cli_json_camel_case_keys(void **state)
{
        (void) state;
        ProtobufCMessage *m = parse_ok(&mercato__order__v1__place_order_request__descriptor,
            "{\"userId\": 4, \"couponId\": 2,"
            " \"items\": [{\"productId\": 8, \"quantity\": 1}]}");
        Mercato__Order__V1__PlaceOrderRequest *r = (Mercato__Order__V1__PlaceOrderRequest *) m;
        char buf[64];

        assert_int_equal(r->user_id, 4);
        assert_int_equal(r->coupon_id, 2);
        assert_int_equal(r->items[0]->product_id, 8);
        protobuf_c_message_free_unpacked(m, NULL);
        cli_json_camel_name("next_after_order_id", buf, sizeof(buf));
        assert_string_equal(buf, "nextAfterOrderId");
        /* The same field twice, in both spellings, is refused. */
        parse_fails(&mercato__order__v1__place_order_request__descriptor,
            "{\"user_id\": 1, \"userId\": 2}", "given twice");
}

static void
test_cli_json_unknown_key_rejected(void **state)
{
        (void) state;
        parse_fails(&mercato__order__v1__place_order_request__descriptor, "{\"user\": 1}",
            "unknown field \"user\" in mercato.order.v1.PlaceOrderRequest");
        parse_fails(&mercato__order__v1__place_order_request__descriptor,
            "{\"items\": [{\"product_id\": 1}, {\"product_id\": 2, \"qty\": 1}]}",
            "items[1]: unknown field \"qty\"");
        parse_fails(&mercato__order__v1__place_order_request__descriptor, "{\"UserId\": 1}",
            "unknown field");
}

static void
test_cli_json_wrong_type_rejected(void **state)
{
        (void) state;
        const ProtobufCMessageDescriptor *d = &mercato__order__v1__place_order_request__descriptor;

        parse_fails(d, "{\"user_id\": \"abc\"}", "user_id: expected an integer, got \"abc\"");
        parse_fails(d, "{\"user_id\": true}", "user_id: expected an integer, got a bool");
        parse_fails(d, "{\"user_id\": \" 1\"}", "expected an integer");
        parse_fails(
            d, "{\"items\": {\"product_id\": 1}}", "items: expected an array, got an object");
        parse_fails(d, "{\"items\": [1]}", "items[0]: expected an object");
        parse_fails(d, "{\"items\": [null]}", "items[0]: null is not allowed");
        parse_fails(d, "{\"items\": [{\"quantity\": [1]}]}",
            "items[0].quantity: expected an integer, got an array");
        parse_fails(&mercato__rpc__v1__method_info__descriptor, "{\"idempotent\": \"yes\"}",
            "idempotent: expected true or false");
        parse_fails(&mercato__rpc__v1__method_info__descriptor, "{\"name\": 5}",
            "name: expected a string, got a number");
        parse_fails(d, "[1, 2]", "expected an object");
        parse_fails(d, "{\"user_id\": 1", "bad JSON");
        parse_fails(d, "{\"user_id\": 1, \"user_id\": 2}", "bad JSON");
}

static void
test_cli_json_null_keeps_default(void **state)
{
        (void) state;
        ProtobufCMessage *m = parse_ok(&mercato__order__v1__place_order_request__descriptor,
            "{\"user_id\": null, \"items\": null, \"mode\": null}");

        assert_json(m,
            "{\"user_id\": 0, \"items\": [], \"coupon_id\": 0,"
            " \"mode\": \"MODE_UNSPECIFIED\"}");
        protobuf_c_message_free_unpacked(m, NULL);
}

static void
test_cli_json_map_round_trip(void **state)
{
        (void) state;
        ProtobufCMessage *m = parse_ok(&mercato__rpc__v1__request__descriptor,
            "{\"method\": \"/a.B/C\","
            " \"metadata\": {\"dataset\": \"monolith\", \"k\": \"v\"}}");
        Mercato__Rpc__V1__Request *r = (Mercato__Rpc__V1__Request *) m;

        assert_int_equal(r->n_metadata, 2);
        assert_string_equal(r->metadata[0]->key, "dataset");
        assert_string_equal(r->metadata[0]->value, "monolith");
        ProtobufCMessage *back = through_wire(m);
        assert_json(back,
            "{\"method\": \"/a.B/C\", \"payload\": \"\", \"deadline_unix_ms\": 0,"
            " \"request_id\": \"\", \"trace_id\": \"\", \"idempotency_key\": \"\","
            " \"metadata\": {\"dataset\": \"monolith\", \"k\": \"v\"}}");
        protobuf_c_message_free_unpacked(back, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        parse_fails(&mercato__rpc__v1__request__descriptor, "{\"metadata\": {\"k\": 1}}",
            "metadata.k: expected a string");
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cli_json_nested_repeated_round_trip),
                cmocka_unit_test(test_cli_json_defaults_included),
                cmocka_unit_test(test_cli_json_enum_by_name_or_number),
                cmocka_unit_test(test_cli_json_int64_as_number_or_string),
                cmocka_unit_test(test_cli_json_int_out_of_range_rejected),
                cmocka_unit_test(test_cli_json_uint64_and_double),
                cmocka_unit_test(test_cli_json_bytes_base64_round_trip),
                cmocka_unit_test(test_cli_json_base64_vectors),
                cmocka_unit_test(test_cli_json_camel_case_keys),
                cmocka_unit_test(test_cli_json_unknown_key_rejected),
                cmocka_unit_test(test_cli_json_wrong_type_rejected),
                cmocka_unit_test(test_cli_json_null_keeps_default),
                cmocka_unit_test(test_cli_json_map_round_trip),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
