/* test_payment_service.c: mercato-payment on a real PostgreSQL: GetPayment, capture, refund, seed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "orders_util.h"
#include "payment.pb-c.h"
#include "payment_store.h"
#include "rpc.h"

#define SVC "/mercato.payment.v1.PaymentService/"

#define USERS 50
#define DECLINING 5

static harness_fixture fx;

static db_conn *
store_conn(const char *conninfo)
{
        db_conn *db = NULL;
        char err[256];

        assert_int_equal(db_connect(conninfo, &payment_stmts, 1, &db, err, sizeof(err)), RPC_OK);
        return db;
}

static void
seed(const char *conninfo)
{
        svc_seed s = { .users = USERS, .declining_users = DECLINING, .seed = 1 };
        db_conn *db = store_conn(conninfo);

        assert_int_equal(payment_store_seed(db, &s), RPC_OK);
        db_close(db);
}

static int
group_setup(void **state)
{
        (void) state;
        harness_fixture_start(&fx, "payment", "payment", NULL);
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
        seed(fx.db);
        seed(fx.mono);
        return 0;
}

static char *
checksum(void)
{
        return ou_cluster_checksum(fx.cluster);
}

static void
assert_unchanged(char *before)
{
        char *after = checksum();

        assert_string_equal(before, after);
        free(before);
        free(after);
}

static rpc_status
get_payment(int64_t order_id, bool mono, Mercato__Payment__V1__Payment **ret)
{
        Mercato__Payment__V1__GetPaymentRequest req
            = MERCATO__PAYMENT__V1__GET_PAYMENT_REQUEST__INIT;

        req.order_id = order_id;
        return ou_call(fx.client, SVC "GetPayment", &req.base,
            &mercato__payment__v1__payment__descriptor, (ProtobufCMessage **) ret, mono, NULL, 0);
}

static void
test_payment_seed_declines_the_last_users(void **state)
{
        (void) state;
        assert_int_equal(harness_sql_i64(fx.db, "SELECT count(*) FROM declined_users"), DECLINING);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT min(user_id) FROM declined_users"),
            USERS - DECLINING + 1);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT max(user_id) FROM declined_users"), USERS);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT count(*) FROM payments"), 0);
}

static void
test_payment_get(void **state)
{
        Mercato__Payment__V1__Payment *p = NULL;
        db_conn *db = store_conn(fx.db);
        db_conn *mono = store_conn(fx.mono);

        (void) state;
        assert_int_equal(payment_store_capture(db, 101, 7, 2500), RPC_OK);
        assert_int_equal(payment_store_capture(mono, 101, 8, 900), RPC_OK);

        assert_int_equal(get_payment(101, false, &p), RPC_OK);
        assert_true(p->payment_id > 0);
        assert_int_equal(p->order_id, 101);
        assert_int_equal(p->user_id, 7);
        assert_int_equal(p->amount, 2500);
        assert_int_equal(p->status, MERCATO__PAYMENT__V1__PAYMENT_STATUS__PAYMENT_STATUS_CAPTURED);
        assert_true(p->created_at_ms > 0);
        assert_true(p->updated_at_ms >= p->created_at_ms);
        protobuf_c_message_free_unpacked(&p->base, NULL);

        /* The monolith dataset holds its own payment of the same order id. */
        assert_int_equal(get_payment(101, true, &p), RPC_OK);
        assert_int_equal(p->user_id, 8);
        assert_int_equal(p->amount, 900);
        protobuf_c_message_free_unpacked(&p->base, NULL);

        assert_int_equal(payment_store_refund(db, 101), RPC_OK);
        assert_int_equal(get_payment(101, false, &p), RPC_OK);
        assert_int_equal(p->status, MERCATO__PAYMENT__V1__PAYMENT_STATUS__PAYMENT_STATUS_REFUNDED);
        protobuf_c_message_free_unpacked(&p->base, NULL);
        db_close(db);
        db_close(mono);
}

static void
test_payment_get_bad_input(void **state)
{
        db_conn *db = store_conn(fx.db);
        char *before;

        (void) state;
        assert_int_equal(payment_store_capture(db, 5, 1, 10), RPC_OK);
        db_close(db);
        before = checksum();
        assert_int_equal(get_payment(0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(get_payment(-5, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(get_payment(6, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(get_payment(5, true, NULL), RPC_NOT_FOUND);
        assert_unchanged(before);
}

static void
test_payment_store_capture_is_idempotent(void **state)
{
        db_conn *db = store_conn(fx.db);
        char *before;

        (void) state;
        assert_int_equal(payment_store_capture(db, 200, 3, 1000), RPC_OK);
        before = checksum();
        assert_int_equal(payment_store_capture(db, 200, 3, 1000), RPC_OK);
        assert_unchanged(before);
        assert_int_equal(
            harness_sql_i64(fx.db, "SELECT count(*) FROM payments WHERE order_id = 200"), 1);
        /* A zero amount (a coupon paid it all) is a payment too. */
        assert_int_equal(payment_store_capture(db, 201, 3, 0), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM payments WHERE order_id = 201"
                             " AND amount = 0 AND status = 'captured'"),
            1);
        db_close(db);
}

static void
test_payment_store_declined_user(void **state)
{
        db_conn *db = store_conn(fx.db);
        char *before = checksum();

        (void) state;
        assert_int_equal(payment_store_capture(db, 300, USERS, 1000), RPC_FAILED_PRECONDITION);
        assert_int_equal(
            payment_store_capture(db, 301, USERS - DECLINING + 1, 1), RPC_FAILED_PRECONDITION);
        assert_false(db_in_transaction(db));
        assert_unchanged(before);
        assert_int_equal(payment_store_capture(db, 302, USERS - DECLINING, 1), RPC_OK);
        db_close(db);
}

static void
test_payment_store_refund(void **state)
{
        db_conn *db = store_conn(fx.db);
        char *before;

        (void) state;
        assert_int_equal(payment_store_capture(db, 400, 2, 700), RPC_OK);
        assert_int_equal(payment_store_refund(db, 400), RPC_OK);
        before = checksum();
        /* Refunded once; nothing to refund; a capture after the refund is refused. */
        assert_int_equal(payment_store_refund(db, 400), RPC_OK);
        assert_int_equal(payment_store_refund(db, 401), RPC_OK);
        assert_int_equal(payment_store_capture(db, 400, 2, 700), RPC_FAILED_PRECONDITION);
        assert_unchanged(before);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM payments WHERE order_id = 400"
                             " AND status = 'refunded'"),
            1);
        db_close(db);
}

/* Inside a caller's transaction, a failed capture leaves the rollback to the caller. */
static void
test_payment_store_in_callers_transaction(void **state)
{
        db_conn *db = store_conn(fx.db);
        char *before = checksum();

        (void) state;
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(payment_store_capture(db, 500, 1, 10), RPC_OK);
        assert_int_equal(payment_store_capture(db, 501, USERS, 10), RPC_FAILED_PRECONDITION);
        assert_true(db_in_transaction(db));
        db_rollback(db);
        assert_unchanged(before);
        db_close(db);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_payment_seed_declines_the_last_users, test_setup),
                cmocka_unit_test_setup(test_payment_get, test_setup),
                cmocka_unit_test_setup(test_payment_get_bad_input, test_setup),
                cmocka_unit_test_setup(test_payment_store_capture_is_idempotent, test_setup),
                cmocka_unit_test_setup(test_payment_store_declined_user, test_setup),
                cmocka_unit_test_setup(test_payment_store_refund, test_setup),
                cmocka_unit_test_setup(test_payment_store_in_callers_transaction, test_setup),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
