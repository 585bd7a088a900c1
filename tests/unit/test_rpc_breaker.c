/* test_rpc_breaker.c: the circuit breaker's states, alone and inside a client facing a dead peer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rpc.h"
#include "rpc_test_util.h"

#define T0 1000000 /* an arbitrary monotonic start */

/* Fewer failures than the threshold keep it closed; the threshold-th opens it. */
static void
test_rpc_breaker_opens_at_threshold(void **state)
{
        rpc_breaker b;

        rpc_breaker_init(&b, 3, 500);
        assert_int_equal(b.state, RPC_BREAKER_CLOSED);
        for (int i = 0; i < 2; i++) {
                assert_true(rpc_breaker_allow(&b, T0));
                rpc_breaker_record(&b, false, T0);
                assert_int_equal(b.state, RPC_BREAKER_CLOSED);
        }
        assert_true(rpc_breaker_allow(&b, T0));
        rpc_breaker_record(&b, false, T0);
        assert_int_equal(b.state, RPC_BREAKER_OPEN);
}

/* Only consecutive failures count: a success in between starts the count again. */
static void
test_rpc_breaker_success_resets_count(void **state)
{
        rpc_breaker b;

        rpc_breaker_init(&b, 3, 500);
        for (int round = 0; round < 10; round++) {
                rpc_breaker_record(&b, false, T0);
                rpc_breaker_record(&b, false, T0);
                rpc_breaker_record(&b, true, T0);
                assert_int_equal(b.state, RPC_BREAKER_CLOSED);
        }
}

/* While open every call is refused and counted, until the cool-down ends. */
static void
test_rpc_breaker_fails_fast_while_open(void **state)
{
        rpc_breaker b;

        rpc_breaker_init(&b, 1, 500);
        rpc_breaker_record(&b, false, T0);
        assert_int_equal(b.state, RPC_BREAKER_OPEN);
        uint64_t rejected = b.rejected;
        for (int64_t t = T0; t < T0 + 500; t += 50) {
                assert_false(rpc_breaker_allow(&b, t));
                assert_int_equal(b.state, RPC_BREAKER_OPEN);
        }
        assert_false(rpc_breaker_allow(&b, T0 + 499));
        assert_int_equal(b.rejected, rejected + 11);
}

/* After the cool-down exactly one probe goes out; the rest wait for its outcome. */
static void
test_rpc_breaker_half_open_one_probe(void **state)
{
        rpc_breaker b;

        rpc_breaker_init(&b, 2, 500);
        rpc_breaker_record(&b, false, T0);
        rpc_breaker_record(&b, false, T0);
        assert_true(rpc_breaker_allow(&b, T0 + 500));
        assert_int_equal(b.state, RPC_BREAKER_HALF_OPEN);
        for (int i = 0; i < 20; i++) {
                assert_false(rpc_breaker_allow(&b, T0 + 500 + i * 1000));
        }
        assert_int_equal(b.state, RPC_BREAKER_HALF_OPEN);
}

/* A successful probe closes the breaker, and calls flow again. */
static void
test_rpc_breaker_probe_success_closes(void **state)
{
        rpc_breaker b;

        rpc_breaker_init(&b, 2, 500);
        rpc_breaker_record(&b, false, T0);
        rpc_breaker_record(&b, false, T0);
        assert_true(rpc_breaker_allow(&b, T0 + 600));
        rpc_breaker_record(&b, true, T0 + 610);
        assert_int_equal(b.state, RPC_BREAKER_CLOSED);
        for (int i = 0; i < 10; i++) {
                assert_true(rpc_breaker_allow(&b, T0 + 620));
        }
        /* And it takes the full threshold to open it again. */
        rpc_breaker_record(&b, false, T0 + 630);
        assert_int_equal(b.state, RPC_BREAKER_CLOSED);
        rpc_breaker_record(&b, false, T0 + 630);
        assert_int_equal(b.state, RPC_BREAKER_OPEN);
}

/* A failed probe reopens it for a fresh cool-down from the time of the failure. */
static void
test_rpc_breaker_probe_failure_reopens(void **state)
{
        rpc_breaker b;

        rpc_breaker_init(&b, 2, 500);
        rpc_breaker_record(&b, false, T0);
        rpc_breaker_record(&b, false, T0);
        assert_true(rpc_breaker_allow(&b, T0 + 500));
        rpc_breaker_record(&b, false, T0 + 700);
        assert_int_equal(b.state, RPC_BREAKER_OPEN);
        assert_false(rpc_breaker_allow(&b, T0 + 1000)); /* 300 ms into the new cool-down */
        assert_false(rpc_breaker_allow(&b, T0 + 1199));
        assert_true(rpc_breaker_allow(&b, T0 + 1200)); /* the next probe */
        assert_int_equal(b.state, RPC_BREAKER_HALF_OPEN);
        assert_false(rpc_breaker_allow(&b, T0 + 1200));
}

/* A client calling a peer nobody listens on opens its breaker after threshold failures, and
 * then refuses calls at once without sending them. */
static void
test_rpc_breaker_client_opens_on_dead_peer(void **state)
{
        char url[64];
        rpc_client_opts copts = {
                .timeout_ms = 300,
                .max_attempts = 1,
                .breaker_threshold = 3,
                .breaker_cooldown_ms = 60000,
        };
        rpc_call_opts opts = { .no_retry = true };

        snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", rpc_test_free_port());
        rpc_client *c = rpc_test_client(url, &copts);

        assert_int_equal(rpc_client_breaker_state(c), RPC_BREAKER_CLOSED);
        for (int i = 0; i < 3; i++) {
                rpc_error e = { 0 };
                uint8_t *out = NULL;
                size_t out_len = 0;
                rpc_status st = rpc_client_call_raw(c, "/mercato.rpc.v1.StandardService/Health",
                    NULL, 0, &opts, &out, &out_len, &e);

                assert_true(st == RPC_UNAVAILABLE || st == RPC_DEADLINE_EXCEEDED);
                assert_int_equal(e.attempts, 1);
                assert_null(out);
        }
        assert_int_equal(rpc_client_breaker_state(c), RPC_BREAKER_OPEN);

        /* Fail fast: nothing goes out, and no timeout is waited for. */
        for (int i = 0; i < 5; i++) {
                rpc_error e = { 0 };
                uint8_t *out = NULL;
                size_t out_len = 0;
                int64_t t0 = rpc_now_mono_ms();
                rpc_status st = rpc_client_call_raw(c, "/mercato.rpc.v1.StandardService/Health",
                    NULL, 0, &opts, &out, &out_len, &e);

                assert_int_not_equal(st, RPC_OK);
                assert_int_equal(e.code, st);
                assert_int_equal(e.attempts, 0);
                assert_true(rpc_now_mono_ms() - t0 < 250);
        }
        assert_int_equal(rpc_client_breaker_state(c), RPC_BREAKER_OPEN);
        rpc_client_free(c);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_breaker_opens_at_threshold),
                cmocka_unit_test(test_rpc_breaker_success_resets_count),
                cmocka_unit_test(test_rpc_breaker_fails_fast_while_open),
                cmocka_unit_test(test_rpc_breaker_half_open_one_probe),
                cmocka_unit_test(test_rpc_breaker_probe_success_closes),
                cmocka_unit_test(test_rpc_breaker_probe_failure_reopens),
                cmocka_unit_test(test_rpc_breaker_client_opens_on_dead_peer),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
