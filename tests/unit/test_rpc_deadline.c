/* test_rpc_deadline.c: deadline arithmetic, and a server that refuses calls already past theirs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "echo_service.h"
#include "rpc.h"
#include "rpc_test_util.h"

/* No deadline never expires and leaves all the time in the world. */
static void
test_rpc_deadline_none_never_expires(void **state)
{
        static const int64_t nows[] = { 0, 1, 1700000000000, INT64_MAX };

        for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
                assert_false(rpc_deadline_expired(0, nows[i]));
                assert_int_equal(rpc_deadline_remaining_ms(0, nows[i]), INT64_MAX);
        }
}

/* Before the deadline the remainder is exact; after it, it is 0 and the deadline expired.
 * Expired and "nothing remains" always agree. */
static void
test_rpc_deadline_expiry_and_remaining(void **state)
{
        const int64_t d = 1700000000000;

        assert_false(rpc_deadline_expired(d, d - 1000));
        assert_int_equal(rpc_deadline_remaining_ms(d, d - 1000), 1000);
        assert_false(rpc_deadline_expired(d, d - 1));
        assert_int_equal(rpc_deadline_remaining_ms(d, d - 1), 1);
        assert_true(rpc_deadline_expired(d, d + 1));
        assert_int_equal(rpc_deadline_remaining_ms(d, d + 1), 0);
        assert_true(rpc_deadline_expired(d, d + 86400000));
        assert_int_equal(rpc_deadline_remaining_ms(d, d + 86400000), 0);
        for (int64_t now = d - 5; now <= d + 5; now++) {
                assert_int_equal(
                    rpc_deadline_expired(d, now), rpc_deadline_remaining_ms(d, now) == 0);
        }
}

/* A frame whose deadline has passed is answered DEADLINE_EXCEEDED and Echo never runs. */
static void
test_rpc_deadline_past_refused_without_handler(void **state)
{
        char url[128];
        rpc_test_unique(url, sizeof(url), "inproc://deadline");
        rpc_server *srv = rpc_test_echo_server(url, 2, 0, NULL);
        rpc_client *c = rpc_test_client(url, NULL);
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        size_t len;
        uint8_t *frame;

        er.text = (char *) "deadline-past-frame";
        frame = rpc_test_request_frame(
            ECHO_METHOD_ECHO, &er.base, rpc_now_unix_ms() - 1000, "late-1", &len);
        assert_int_equal(rpc_test_send_frame(c, frame, len, 10000, NULL), RPC_DEADLINE_EXCEEDED);
        free(frame);
        assert_int_equal(echo_service_count("deadline-past-frame"), 0);

        /* The same through the client API, with a deadline long gone. */
        ProtobufCMessage *resp = NULL;
        rpc_error e = { 0 };
        rpc_call_opts opts = { .deadline_unix_ms = rpc_now_unix_ms() - 1000 };
        er.text = (char *) "deadline-past-call";
        assert_int_equal(rpc_client_call(c, ECHO_METHOD_ECHO, &er.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e),
            RPC_DEADLINE_EXCEEDED);
        assert_int_equal(e.code, RPC_DEADLINE_EXCEEDED);
        assert_null(resp);
        assert_int_equal(echo_service_count("deadline-past-call"), 0);

        /* A good call still runs. */
        rpc_test_echo_ok(c, "deadline-after");
        assert_int_equal(echo_service_count("deadline-after"), 1);

        rpc_client_free(c);
        rpc_test_server_free(srv);
}

/* An absolute deadline reaches the handler unchanged; a timeout becomes one near now+timeout. */
static void
test_rpc_deadline_propagated_to_handler(void **state)
{
        char url[128];
        rpc_test_unique(url, sizeof(url), "inproc://deadline");
        rpc_server *srv = rpc_test_echo_server(url, 2, 0, NULL);
        rpc_client *c = rpc_test_client(url, NULL);
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_error e = { 0 };
        int64_t deadline = rpc_now_unix_ms() + 30000;
        rpc_call_opts opts = { .deadline_unix_ms = deadline };

        er.text = (char *) "deadline-propagated";
        assert_int_equal(rpc_client_call(c, ECHO_METHOD_ECHO, &er.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e),
            RPC_OK);
        assert_int_equal(((Mercato__Test__V1__EchoReply *) resp)->deadline_unix_ms, deadline);
        protobuf_c_message_free_unpacked(resp, NULL);

        resp = NULL;
        int64_t before = rpc_now_unix_ms();
        rpc_call_opts topts = { .timeout_ms = 20000 };
        assert_int_equal(rpc_client_call(c, ECHO_METHOD_ECHO, &er.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &topts, &e),
            RPC_OK);
        int64_t seen = ((Mercato__Test__V1__EchoReply *) resp)->deadline_unix_ms;
        assert_true(seen >= before + 20000);
        assert_true(seen <= rpc_now_unix_ms() + 20000);
        protobuf_c_message_free_unpacked(resp, NULL);

        rpc_client_free(c);
        rpc_test_server_free(srv);
}

/* A handler slower than the caller's timeout gives the caller DEADLINE_EXCEEDED, well before
 * the handler is done. */
static void
test_rpc_deadline_slow_handler_times_out(void **state)
{
        char url[128];
        rpc_test_unique(url, sizeof(url), "inproc://deadline");
        rpc_server *srv = rpc_test_echo_server(url, 2, 0, NULL);
        rpc_client *c = rpc_test_client(url, NULL);
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_error e = { 0 };
        rpc_call_opts opts = { .timeout_ms = 200, .no_retry = true };

        er.text = (char *) "deadline-slow";
        er.sleep_ms = 3000;
        int64_t t0 = rpc_now_mono_ms();
        assert_int_equal(rpc_client_call(c, ECHO_METHOD_ECHO, &er.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e),
            RPC_DEADLINE_EXCEEDED);
        assert_true(rpc_now_mono_ms() - t0 < 2500);
        assert_int_equal(e.code, RPC_DEADLINE_EXCEEDED);
        assert_int_equal(e.attempts, 1);
        assert_null(resp);

        rpc_test_echo_ok(c, "deadline-slow-after");
        rpc_client_free(c);
        rpc_test_server_free(srv);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_deadline_none_never_expires),
                cmocka_unit_test(test_rpc_deadline_expiry_and_remaining),
                cmocka_unit_test(test_rpc_deadline_past_refused_without_handler),
                cmocka_unit_test(test_rpc_deadline_propagated_to_handler),
                cmocka_unit_test(test_rpc_deadline_slow_handler_times_out),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
