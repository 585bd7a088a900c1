/* test_rpc_status.c: the status enum's names, parsing, wire mapping and retryable set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rpc.h"

/* Every code's name is the name the wire's Code enum gives it. */
static void
test_rpc_status_names_match_wire_enum(void **state)
{
        const ProtobufCEnumDescriptor *d = &mercato__rpc__v1__code__descriptor;

        assert_int_equal(d->n_values, RPC_STATUS_MAX + 1);
        for (unsigned i = 0; i < d->n_values; i++) {
                int v = d->values[i].value;

                assert_true(v >= 0 && v <= RPC_STATUS_MAX);
                assert_string_equal(rpc_status_name((rpc_status) v), d->values[i].name);
        }
        assert_string_equal(rpc_status_name(RPC_OK), "OK");
        assert_string_equal(rpc_status_name(RPC_NOT_FOUND), "NOT_FOUND");
        assert_string_equal(rpc_status_name(RPC_UNAUTHENTICATED), "UNAUTHENTICATED");
}

/* A value outside the enum is named UNKNOWN. */
static void
test_rpc_status_name_out_of_range_is_unknown(void **state)
{
        assert_string_equal(rpc_status_name((rpc_status) 17), "UNKNOWN");
        assert_string_equal(rpc_status_name((rpc_status) -1), "UNKNOWN");
        assert_string_equal(rpc_status_name(RPC_DEFERRED), "UNKNOWN");
}

/* Every name parses back to its code, whatever its case. */
static void
test_rpc_status_from_name_round_trips_any_case(void **state)
{
        for (int i = 0; i <= RPC_STATUS_MAX; i++) {
                const char *name = rpc_status_name((rpc_status) i);
                char lower[64];
                rpc_status st = RPC_INTERNAL;

                assert_true(rpc_status_from_name(name, &st));
                assert_int_equal(st, i);

                assert_true(strlen(name) < sizeof(lower));
                for (size_t k = 0; k <= strlen(name); k++) {
                        lower[k]
                            = (char) (name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
                }
                st = RPC_INTERNAL;
                assert_true(rpc_status_from_name(lower, &st));
                assert_int_equal(st, i);
        }
        rpc_status st = RPC_OK;
        assert_true(rpc_status_from_name("Unavailable", &st));
        assert_int_equal(st, RPC_UNAVAILABLE);
}

/* An unknown name is refused and the output is left as it was. */
static void
test_rpc_status_from_name_unknown_leaves_output(void **state)
{
        static const char *const bad[]
            = { "", "NOPE", "NOT FOUND", "OK ", " OK", "DEFERRED", "14", "UNAVAILABLEX" };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                rpc_status st = (rpc_status) 77;

                assert_false(rpc_status_from_name(bad[i], &st));
                assert_int_equal(st, 77);
        }
        rpc_status st = (rpc_status) 77;
        assert_false(rpc_status_from_name(NULL, &st));
        assert_int_equal(st, 77);
}

/* A code in gRPC's range maps to itself; anything else is UNKNOWN. */
static void
test_rpc_status_from_wire_out_of_range_is_unknown(void **state)
{
        for (int32_t c = 0; c <= RPC_STATUS_MAX; c++) {
                assert_int_equal(rpc_status_from_wire(c), c);
        }
        static const int32_t out[] = { -1, -16, 17, 100, RPC_DEFERRED, INT32_MAX, INT32_MIN };
        for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
                assert_int_equal(rpc_status_from_wire(out[i]), RPC_UNKNOWN);
        }
}

/* Exactly UNAVAILABLE, DEADLINE_EXCEEDED and ABORTED are retryable. */
static void
test_rpc_status_retryable_set(void **state)
{
        for (int i = 0; i <= RPC_STATUS_MAX; i++) {
                bool want = i == RPC_UNAVAILABLE || i == RPC_DEADLINE_EXCEEDED || i == RPC_ABORTED;

                assert_int_equal(rpc_status_retryable((rpc_status) i), want);
        }
        assert_false(rpc_status_retryable(RPC_DEFERRED));
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_status_names_match_wire_enum),
                cmocka_unit_test(test_rpc_status_name_out_of_range_is_unknown),
                cmocka_unit_test(test_rpc_status_from_name_round_trips_any_case),
                cmocka_unit_test(test_rpc_status_from_name_unknown_leaves_output),
                cmocka_unit_test(test_rpc_status_from_wire_out_of_range_is_unknown),
                cmocka_unit_test(test_rpc_status_retryable_set),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
