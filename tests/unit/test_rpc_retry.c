/* test_rpc_retry.c: backoff with full jitter, and which calls the client retries. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "echo_service.h"
#include "rpc.h"
#include "rpc_test_util.h"

#define SEEDS 4000

static int64_t
ceiling_of(int attempt, int64_t initial, int64_t max)
{
        int64_t c = initial;

        for (int i = 1; i < attempt && c < max; i++) {
                c *= 2;
        }
        return c < max ? c : max;
}

/* Over many seeds every delay lies in [0, min(max, initial * 2^(attempt-1))]. */
static void
test_rpc_backoff_within_bounds(void **state)
{
        for (int attempt = 1; attempt <= 12; attempt++) {
                int64_t ceiling = ceiling_of(attempt, 20, 1000);

                for (uint64_t seed = 1; seed <= SEEDS; seed++) {
                        uint64_t rng = seed;
                        int64_t d = rpc_backoff_ms(attempt, 20, 1000, &rng);

                        assert_true(d >= 0);
                        assert_true(d <= ceiling);
                }
        }
}

/* However many the attempts (huge ones included, where 2^attempt would overflow), the delay
 * never passes max_ms, and the cap is reached. */
static void
test_rpc_backoff_capped(void **state)
{
        static const int attempts[] = { 7, 20, 31, 32, 62, 63, 64, 65, 1000, INT_MAX };

        for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
                int64_t top = 0;

                for (uint64_t seed = 1; seed <= SEEDS; seed++) {
                        uint64_t rng = seed * 7919;
                        int64_t d = rpc_backoff_ms(attempts[i], 20, 1000, &rng);

                        assert_true(d >= 0);
                        assert_true(d <= 1000);
                        top = d > top ? d : top;
                }
                /* 4000 uniform draws in [0, 1000]: the largest is above 900 but for 1e-180. */
                assert_true(top > 900);
        }
}

/* The largest delay seen over many seeds grows with the attempt until the cap, and tracks the
 * theoretical ceiling closely: the jitter spans the whole range. */
static void
test_rpc_backoff_ceiling_monotonic(void **state)
{
        int64_t prev = -1;

        for (int attempt = 1; attempt <= 12; attempt++) {
                int64_t ceiling = ceiling_of(attempt, 16, 5000);
                int64_t top = 0, bottom = INT64_MAX;

                for (uint64_t seed = 1; seed <= SEEDS; seed++) {
                        uint64_t rng = seed ^ 0x5555;
                        int64_t d = rpc_backoff_ms(attempt, 16, 5000, &rng);

                        top = d > top ? d : top;
                        bottom = d < bottom ? d : bottom;
                }
                assert_true(top <= ceiling);
                assert_true(top * 10 >= ceiling * 9);
                assert_true(bottom * 10 <= ceiling); /* full jitter reaches near 0 */
                assert_true(top >= prev);
                prev = top;
        }
}

/* The same generator state gives the same delay; different seeds give many delays. */
static void
test_rpc_backoff_seeded(void **state)
{
        bool seen[1001] = { false };
        int distinct = 0;

        for (uint64_t seed = 1; seed <= 500; seed++) {
                uint64_t a = seed, b = seed;
                int64_t da = rpc_backoff_ms(6, 100, 1000, &a);

                assert_int_equal(da, rpc_backoff_ms(6, 100, 1000, &b));
                assert_int_equal(a, b);
                if (!seen[da]) {
                        seen[da] = true;
                        distinct++;
                }
        }
        assert_true(distinct > 200);
}

/* --- The client's retries, against a server that fails on purpose. --- */

/* The fault outcomes a spec gives for its first n matching requests. */
static void
predict(const char *spec, uint64_t seed, bool *fires, int n)
{
        rpc_faults *f = NULL;
        char err[256] = "";

        assert_int_equal(rpc_faults_parse(spec, seed, &f, err, sizeof(err)), RPC_OK);
        for (int i = 0; i < n; i++) {
                fires[i] = rpc_faults_decide(f, ECHO_METHOD_ECHO).action != RPC_FAULT_NONE;
        }
        rpc_faults_free(f);
}

typedef struct retry_fixture {
        char url[128];
        rpc_faults *faults;
        rpc_server *srv;
        rpc_client *client;
} retry_fixture;

static void
fixture_start(retry_fixture *fx, const char *spec, uint64_t seed, int max_attempts)
{
        char err[256] = "";
        rpc_client_opts copts = {
                .timeout_ms = 10000,
                .max_attempts = max_attempts,
                .backoff_initial_ms = 1,
                .backoff_max_ms = 5,
                .breaker_threshold = 1000,
                .seed = 99,
        };

        memset(fx, 0, sizeof(*fx));
        assert_int_equal(rpc_faults_parse(spec, seed, &fx->faults, err, sizeof(err)), RPC_OK);
        rpc_test_unique(fx->url, sizeof(fx->url), "inproc://retry");
        fx->srv = rpc_test_echo_server(fx->url, 2, 0, fx->faults);
        fx->client = rpc_test_client(fx->url, &copts);
}

static void
fixture_stop(retry_fixture *fx)
{
        rpc_client_free(fx->client);
        rpc_test_server_free(fx->srv);
        rpc_faults_free(fx->faults);
}

static rpc_status
echo_call(rpc_client *c, const char *text, const rpc_call_opts *opts, rpc_error *e)
{
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_status st;

        er.text = (char *) text;
        st = rpc_client_call(c, ECHO_METHOD_ECHO, &er.base,
            &mercato__test__v1__echo_reply__descriptor, &resp, opts, e);
        if (st == RPC_OK) {
                assert_string_equal(((Mercato__Test__V1__EchoReply *) resp)->text, text);
        }
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return st;
}

#define FLAKY "/mercato.test.v1.EchoService/Echo fail 0.5 UNAVAILABLE"
#define MAX_ATTEMPTS 10

/* Picks a seed whose first request fails and one of the next few succeeds; returns how many
 * attempts the client must make to succeed. */
static int
pick_flaky_seed(uint64_t *ret_seed)
{
        bool fires[MAX_ATTEMPTS];

        for (uint64_t seed = 1; seed < 1000; seed++) {
                predict(FLAKY, seed, fires, MAX_ATTEMPTS);
                if (!fires[0]) {
                        continue;
                }
                for (int i = 1; i < MAX_ATTEMPTS; i++) {
                        if (!fires[i]) {
                                *ret_seed = seed;
                                return i + 1;
                        }
                }
        }
        fail_msg("no usable seed");
        return 0;
}

/* An idempotent call is retried through UNAVAILABLE replies until one succeeds: exactly as
 * many attempts as the seeded rule predicts, and the handler runs once. */
static void
test_rpc_retry_idempotent_until_success(void **state)
{
        retry_fixture fx;
        uint64_t seed = 0;
        int want = pick_flaky_seed(&seed);
        rpc_call_opts opts = { .idempotent = true };
        rpc_error e = { 0 };

        assert_true(want > 1);
        fixture_start(&fx, FLAKY, seed, MAX_ATTEMPTS);
        assert_int_equal(echo_call(fx.client, "retry-idempotent", &opts, &e), RPC_OK);
        assert_int_equal(e.attempts, want);
        assert_true(e.attempts > 1);
        assert_int_equal(rpc_faults_fired(fx.faults), (uint64_t) (want - 1));
        assert_int_equal(echo_service_count("retry-idempotent"), 1);
        fixture_stop(&fx);
}

/* An idempotency key makes a call retryable too. */
static void
test_rpc_retry_with_idempotency_key(void **state)
{
        retry_fixture fx;
        uint64_t seed = 0;
        int want = pick_flaky_seed(&seed);
        rpc_call_opts opts = { .idempotency_key = "order-7-step-2" };
        rpc_error e = { 0 };

        fixture_start(&fx, FLAKY, seed, MAX_ATTEMPTS);
        assert_int_equal(echo_call(fx.client, "retry-key", &opts, &e), RPC_OK);
        assert_int_equal(e.attempts, want);
        assert_int_equal(rpc_faults_fired(fx.faults), (uint64_t) (want - 1));
        fixture_stop(&fx);
}

/* A call neither idempotent nor keyed goes out once, whatever comes back. */
static void
test_rpc_retry_never_non_idempotent(void **state)
{
        retry_fixture fx;
        rpc_call_opts opts = { 0 };
        rpc_error e = { 0 };

        fixture_start(
            &fx, "/mercato.test.v1.EchoService/Echo fail 1.0 UNAVAILABLE", 1, MAX_ATTEMPTS);
        assert_int_equal(echo_call(fx.client, "retry-never", &opts, &e), RPC_UNAVAILABLE);
        assert_int_equal(e.code, RPC_UNAVAILABLE);
        assert_int_equal(e.attempts, 1);
        assert_int_equal(rpc_faults_fired(fx.faults), 1);
        assert_int_equal(echo_service_count("retry-never"), 0);
        fixture_stop(&fx);
}

/* no_retry wins over idempotent. */
static void
test_rpc_retry_no_retry_wins(void **state)
{
        retry_fixture fx;
        rpc_call_opts opts = { .idempotent = true, .idempotency_key = "k", .no_retry = true };
        rpc_error e = { 0 };

        fixture_start(
            &fx, "/mercato.test.v1.EchoService/Echo fail 1.0 UNAVAILABLE", 1, MAX_ATTEMPTS);
        assert_int_equal(echo_call(fx.client, "retry-no", &opts, &e), RPC_UNAVAILABLE);
        assert_int_equal(e.attempts, 1);
        assert_int_equal(rpc_faults_fired(fx.faults), 1);
        fixture_stop(&fx);
}

/* A status no retry can cure is not retried, idempotent or not. */
static void
test_rpc_retry_not_on_permanent_status(void **state)
{
        retry_fixture fx;
        rpc_call_opts opts = { .idempotent = true };
        rpc_error e = { 0 };

        fixture_start(
            &fx, "/mercato.test.v1.EchoService/Echo fail 1.0 FAILED_PRECONDITION", 1, MAX_ATTEMPTS);
        assert_int_equal(
            echo_call(fx.client, "retry-permanent", &opts, &e), RPC_FAILED_PRECONDITION);
        assert_int_equal(e.attempts, 1);
        assert_int_equal(rpc_faults_fired(fx.faults), 1);
        fixture_stop(&fx);
}

/* A call that keeps failing stops after max_attempts and reports the last status. */
static void
test_rpc_retry_stops_at_max_attempts(void **state)
{
        retry_fixture fx;
        rpc_call_opts opts = { .idempotent = true };
        rpc_error e = { 0 };

        fixture_start(&fx, "/mercato.test.v1.EchoService/Echo fail 1.0 UNAVAILABLE", 1, 3);
        assert_int_equal(echo_call(fx.client, "retry-max", &opts, &e), RPC_UNAVAILABLE);
        assert_int_equal(e.code, RPC_UNAVAILABLE);
        assert_int_equal(e.attempts, 3);
        assert_int_equal(rpc_faults_fired(fx.faults), 3);
        fixture_stop(&fx);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_backoff_within_bounds),
                cmocka_unit_test(test_rpc_backoff_capped),
                cmocka_unit_test(test_rpc_backoff_ceiling_monotonic),
                cmocka_unit_test(test_rpc_backoff_seeded),
                cmocka_unit_test(test_rpc_retry_idempotent_until_success),
                cmocka_unit_test(test_rpc_retry_with_idempotency_key),
                cmocka_unit_test(test_rpc_retry_never_non_idempotent),
                cmocka_unit_test(test_rpc_retry_no_retry_wins),
                cmocka_unit_test(test_rpc_retry_not_on_permanent_status),
                cmocka_unit_test(test_rpc_retry_stops_at_max_attempts),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
