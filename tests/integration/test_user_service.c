/* test_user_service.c: mercato-user on a real PostgreSQL: balances, charges, coupons, the store. */
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
#include "rpc.h"
#include "user.pb-c.h"
#include "user_store.h"

#define SVC "/mercato.user.v1.UserService/"

/* What the seed loads into both datasets (the monolith one with another balance). */
#define USERS 100
#define BALANCE 10000
#define MONO_BALANCE 20000
#define COUPONS 10
#define COUPON_QUANTITY 10
#define SEED 42

static harness_fixture fx;

static void
seed(const char *conninfo, int64_t balance)
{
        svc_seed s = {
                .users = USERS,
                .balance = balance,
                .coupons = COUPONS,
                .coupon_quantity = COUPON_QUANTITY,
                .seed = SEED,
        };
        db_conn *db = NULL;
        char err[256];

        assert_int_equal(db_connect(conninfo, &user_stmts, 1, &db, err, sizeof(err)), RPC_OK);
        assert_int_equal(user_store_seed(db, &s), RPC_OK);
        db_close(db);
}

static int
group_setup(void **state)
{
        (void) state;
        harness_fixture_start(&fx, "user", "user", "[defaults]\nworkers = 8\n");
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        harness_fixture_stop(&fx);
        return 0;
}

/* Every test starts from the seed. */
static int
test_setup(void **state)
{
        (void) state;
        seed(fx.db, BALANCE);
        seed(fx.mono, MONO_BALANCE);
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
get_balance(int64_t user_id, bool mono, int64_t *ret_balance)
{
        Mercato__User__V1__GetBalanceRequest req = MERCATO__USER__V1__GET_BALANCE_REQUEST__INIT;
        Mercato__User__V1__Balance *resp = NULL;
        rpc_status st;

        req.user_id = user_id;
        st = ou_call(fx.client, SVC "GetBalance", &req.base,
            &mercato__user__v1__balance__descriptor, (ProtobufCMessage **) &resp, mono, NULL, 0);
        if (st == RPC_OK) {
                assert_int_equal(resp->user_id, user_id);
                if (ret_balance != NULL) {
                        *ret_balance = resp->balance;
                }
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        return st;
}

static rpc_status
charge(int64_t user_id, int64_t amount, bool mono, Mercato__User__V1__ChargeBalanceResponse **ret)
{
        Mercato__User__V1__ChargeBalanceRequest req
            = MERCATO__USER__V1__CHARGE_BALANCE_REQUEST__INIT;

        req.user_id = user_id;
        req.amount = amount;
        return ou_call(fx.client, SVC "ChargeBalance", &req.base,
            &mercato__user__v1__charge_balance_response__descriptor, (ProtobufCMessage **) ret,
            mono, NULL, 0);
}

static rpc_status
issue(int64_t user_id, int64_t coupon_id, bool mono, Mercato__User__V1__UserCoupon **ret)
{
        Mercato__User__V1__IssueCouponRequest req = MERCATO__USER__V1__ISSUE_COUPON_REQUEST__INIT;

        req.user_id = user_id;
        req.coupon_id = coupon_id;
        return ou_call(fx.client, SVC "IssueCoupon", &req.base,
            &mercato__user__v1__user_coupon__descriptor, (ProtobufCMessage **) ret, mono, NULL, 0);
}

static rpc_status
list_coupons(int64_t user_id, bool mono, Mercato__User__V1__ListCouponsResponse **ret)
{
        Mercato__User__V1__ListCouponsRequest req = MERCATO__USER__V1__LIST_COUPONS_REQUEST__INIT;

        req.user_id = user_id;
        return ou_call(fx.client, SVC "ListCoupons", &req.base,
            &mercato__user__v1__list_coupons_response__descriptor, (ProtobufCMessage **) ret, mono,
            NULL, 0);
}

/* balance - (charges - debits + refunds) of a user: 0 when the ledger explains the balance. */
static int64_t
ledger_gap(const char *db, int64_t user_id)
{
        return ou_i64f(db,
            "SELECT u.balance - coalesce((SELECT sum(CASE kind WHEN 'debit' THEN -amount"
            " ELSE amount END) FROM ledger WHERE user_id = u.id), 0)"
            " FROM users u WHERE u.id = %lld",
            (long long) user_id);
}

static void
test_user_seed_is_deterministic(void **state)
{
        (void) state;
        assert_int_equal(harness_sql_i64(fx.db, "SELECT count(*) FROM users"), USERS);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT sum(balance) FROM users"), USERS * BALANCE);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM ledger WHERE kind = 'charge'"
                             " AND amount = 10000 AND order_id IS NULL"),
            USERS);
        /* coupon 1: FIXED 500 + (131 + 42) % 1500; coupon 2: PERCENT 5 + (2 + 42) % 26 */
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT value FROM coupons WHERE id = 1"
                             " AND kind = 'FIXED'"),
            500 + (131 + SEED) % 1500);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT value FROM coupons WHERE id = 2"
                             " AND kind = 'PERCENT'"),
            5 + (2 + SEED) % 26);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM coupons WHERE quantity = 10"
                             " AND issued = 0"),
            COUPONS);
        for (int64_t u = 1; u <= 3; u++) {
                assert_int_equal(ledger_gap(fx.db, u), 0);
        }
}

static void
test_user_get_balance(void **state)
{
        int64_t balance = 0;

        (void) state;
        assert_int_equal(get_balance(7, false, &balance), RPC_OK);
        assert_int_equal(balance, BALANCE);
        /* The monolith dataset is another database. */
        assert_int_equal(get_balance(7, true, &balance), RPC_OK);
        assert_int_equal(balance, MONO_BALANCE);
}

static void
test_user_get_balance_bad_input(void **state)
{
        char *before = checksum();

        (void) state;
        assert_int_equal(get_balance(0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(get_balance(-3, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(get_balance(USERS + 1, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(get_balance(USERS + 1, true, NULL), RPC_NOT_FOUND);
        assert_unchanged(before);
}

static void
test_user_charge(void **state)
{
        Mercato__User__V1__ChargeBalanceResponse *resp = NULL;
        int64_t balance = 0;

        (void) state;
        assert_int_equal(charge(5, 1234, false, &resp), RPC_OK);
        assert_int_equal(resp->user_id, 5);
        assert_int_equal(resp->balance, BALANCE + 1234);
        assert_true(resp->ledger_id > 0);
        assert_int_equal(ou_i64f(fx.db,
                             "SELECT count(*) FROM ledger WHERE id = %lld AND user_id = 5"
                             " AND kind = 'charge' AND amount = 1234 AND order_id IS NULL",
                             (long long) resp->ledger_id),
            1);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        assert_int_equal(get_balance(5, false, &balance), RPC_OK);
        assert_int_equal(balance, BALANCE + 1234);
        assert_int_equal(ledger_gap(fx.db, 5), 0);

        /* The largest amount, on the monolith dataset; the user database stays as it was. */
        assert_int_equal(charge(5, 1000000000000LL, true, &resp), RPC_OK);
        assert_int_equal(resp->balance, MONO_BALANCE + 1000000000000LL);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        assert_int_equal(ledger_gap(fx.mono, 5), 0);
        assert_int_equal(get_balance(5, false, &balance), RPC_OK);
        assert_int_equal(balance, BALANCE + 1234);
}

static void
test_user_charge_bad_input(void **state)
{
        char *before;

        (void) state;
        /* A balance one charge away from overflowing. */
        harness_sql(fx.db, "UPDATE users SET balance = 9223372036854775000 WHERE id = 9");
        before = checksum();
        assert_int_equal(charge(5, 0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(charge(5, -1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(charge(5, INT64_MIN, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(charge(5, 1000000000001LL, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(charge(5, INT64_MAX, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(charge(0, 10, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(charge(-5, 10, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(charge(USERS + 1, 10, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(charge(USERS + 1, 10, true, NULL), RPC_NOT_FOUND);
        assert_int_equal(charge(9, 1000000000000LL, false, NULL), RPC_OUT_OF_RANGE);
        assert_unchanged(before);
}

static void
test_user_charge_garbage_payload(void **state)
{
        static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
        rpc_call_opts opts = { .timeout_ms = 5000, .no_retry = true };
        uint8_t *out = NULL;
        size_t out_len = 0;
        char *before = checksum();

        (void) state;
        assert_int_equal(rpc_client_call_raw(fx.client, SVC "ChargeBalance", garbage,
                             sizeof(garbage), &opts, &out, &out_len, NULL),
            RPC_INVALID_ARGUMENT);
        free(out);
        assert_unchanged(before);
}

/* A resent charge with the same idempotency key applies once. */
static void
test_user_charge_idempotency_key(void **state)
{
        Mercato__User__V1__ChargeBalanceRequest req
            = MERCATO__USER__V1__CHARGE_BALANCE_REQUEST__INIT;
        Mercato__User__V1__ChargeBalanceResponse *r1 = NULL;
        Mercato__User__V1__ChargeBalanceResponse *r2 = NULL;
        rpc_call_opts opts = { .timeout_ms = 5000, .idempotency_key = "charge-k1" };
        int64_t ledger_id;
        char *before;

        (void) state;
        req.user_id = 11;
        req.amount = 300;
        assert_int_equal(rpc_client_call(fx.client, SVC "ChargeBalance", &req.base,
                             &mercato__user__v1__charge_balance_response__descriptor,
                             (ProtobufCMessage **) &r1, &opts, NULL),
            RPC_OK);
        assert_int_equal(rpc_client_call(fx.client, SVC "ChargeBalance", &req.base,
                             &mercato__user__v1__charge_balance_response__descriptor,
                             (ProtobufCMessage **) &r2, &opts, NULL),
            RPC_OK);
        assert_int_equal(r1->ledger_id, r2->ledger_id);
        assert_int_equal(r1->balance, BALANCE + 300);
        assert_int_equal(r2->balance, BALANCE + 300);
        ledger_id = r1->ledger_id;
        protobuf_c_message_free_unpacked(&r1->base, NULL);
        protobuf_c_message_free_unpacked(&r2->base, NULL);
        assert_int_equal(
            harness_sql_i64(fx.db, "SELECT count(*) FROM ledger WHERE user_id = 11"), 2);
        assert_int_equal(
            ou_i64f(fx.db, "SELECT amount FROM ledger WHERE id = %lld", (long long) ledger_id),
            300);

        /* The key with another amount is refused, and changes nothing. */
        before = checksum();
        req.amount = 301;
        assert_int_equal(rpc_client_call(fx.client, SVC "ChargeBalance", &req.base,
                             &mercato__user__v1__charge_balance_response__descriptor,
                             (ProtobufCMessage **) &r1, &opts, NULL),
            RPC_ALREADY_EXISTS);
        assert_unchanged(before);
}

static void
test_user_issue_and_list_coupons(void **state)
{
        Mercato__User__V1__UserCoupon *uc = NULL;
        Mercato__User__V1__ListCouponsResponse *list = NULL;

        (void) state;
        assert_int_equal(list_coupons(3, false, &list), RPC_OK);
        assert_int_equal(list->n_coupons, 0);
        protobuf_c_message_free_unpacked(&list->base, NULL);

        assert_int_equal(issue(3, 2, false, &uc), RPC_OK);
        assert_int_equal(uc->user_id, 3);
        assert_non_null(uc->coupon);
        assert_int_equal(uc->coupon->coupon_id, 2);
        assert_string_equal(uc->coupon->name, "coupon-2");
        assert_int_equal(uc->coupon->kind, MERCATO__USER__V1__DISCOUNT_KIND__DISCOUNT_KIND_PERCENT);
        assert_int_equal(uc->coupon->value, 5 + (2 + SEED) % 26);
        assert_int_equal(uc->coupon->quantity, COUPON_QUANTITY);
        assert_int_equal(uc->coupon->issued, 1);
        assert_false(uc->used);
        assert_int_equal(uc->used_order_id, 0);
        assert_true(uc->issued_at_ms > 0);
        protobuf_c_message_free_unpacked(&uc->base, NULL);
        assert_int_equal(issue(3, 1, false, &uc), RPC_OK);
        assert_int_equal(uc->coupon->kind, MERCATO__USER__V1__DISCOUNT_KIND__DISCOUNT_KIND_FIXED);
        protobuf_c_message_free_unpacked(&uc->base, NULL);

        assert_int_equal(list_coupons(3, false, &list), RPC_OK);
        assert_int_equal(list->n_coupons, 2);
        assert_int_equal(list->coupons[0]->coupon->coupon_id, 1);
        assert_int_equal(list->coupons[1]->coupon->coupon_id, 2);
        assert_int_equal(list->coupons[1]->coupon->issued, 1);
        protobuf_c_message_free_unpacked(&list->base, NULL);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT issued FROM coupons WHERE id = 2"), 1);

        /* The monolith dataset has its own holdings. */
        assert_int_equal(list_coupons(3, true, &list), RPC_OK);
        assert_int_equal(list->n_coupons, 0);
        protobuf_c_message_free_unpacked(&list->base, NULL);
}

static void
test_user_coupon_bad_input(void **state)
{
        Mercato__User__V1__ListCouponsResponse *list = NULL;
        char *before;

        (void) state;
        harness_sql(fx.db,
            "INSERT INTO coupons (id, name, kind, value, quantity)"
            " VALUES (50, 'one-off', 'FIXED', 100, 1)");
        assert_int_equal(issue(1, 50, false, NULL), RPC_OK);
        before = checksum();
        assert_int_equal(issue(0, 1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(issue(-1, 1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(issue(1, 0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(issue(1, -1, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(issue(1, 999, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(issue(USERS + 1, 1, false, NULL), RPC_NOT_FOUND);
        /* held already; sold out */
        assert_int_equal(issue(1, 50, false, NULL), RPC_ALREADY_EXISTS);
        assert_int_equal(issue(2, 50, false, NULL), RPC_RESOURCE_EXHAUSTED);
        assert_int_equal(list_coupons(0, false, NULL), RPC_INVALID_ARGUMENT);
        assert_int_equal(list_coupons(USERS + 1, false, NULL), RPC_NOT_FOUND);
        assert_int_equal(list_coupons(2, false, &list), RPC_OK);
        assert_int_equal(list->n_coupons, 0);
        protobuf_c_message_free_unpacked(&list->base, NULL);
        assert_unchanged(before);
}

typedef struct issue_job {
        int64_t user_id;
        int64_t coupon_id;
        rpc_status st;
} issue_job;

static void *
issue_thread(void *p)
{
        issue_job *j = p;

        j->st = issue(j->user_id, j->coupon_id, false, NULL);
        return NULL;
}

/* 50 users at once for a coupon of 10: exactly 10 get it. */
static void
test_user_issue_coupon_concurrent_users(void **state)
{
        issue_job jobs[50];
        int ok = 0;
        int sold_out = 0;

        (void) state;
        harness_sql(fx.db,
            "INSERT INTO coupons (id, name, kind, value, quantity)"
            " VALUES (60, 'rush', 'PERCENT', 10, 10)");
        for (int i = 0; i < 50; i++) {
                jobs[i] = (issue_job) { .user_id = i + 1, .coupon_id = 60 };
        }
        ou_run_threads(50, issue_thread, jobs, sizeof(jobs[0]));
        for (int i = 0; i < 50; i++) {
                ok += jobs[i].st == RPC_OK;
                sold_out += jobs[i].st == RPC_RESOURCE_EXHAUSTED;
        }
        assert_int_equal(ok, 10);
        assert_int_equal(sold_out, 40);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT issued FROM coupons WHERE id = 60"), 10);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM user_coupons"
                             " WHERE coupon_id = 60"),
            10);
}

/* One user 20 times at once: one holding, one issued. */
static void
test_user_issue_coupon_concurrent_same_user(void **state)
{
        issue_job jobs[20];
        int ok = 0;
        int exists = 0;

        (void) state;
        for (int i = 0; i < 20; i++) {
                jobs[i] = (issue_job) { .user_id = 8, .coupon_id = 3 };
        }
        ou_run_threads(20, issue_thread, jobs, sizeof(jobs[0]));
        for (int i = 0; i < 20; i++) {
                ok += jobs[i].st == RPC_OK;
                exists += jobs[i].st == RPC_ALREADY_EXISTS;
        }
        assert_int_equal(ok, 1);
        assert_int_equal(exists, 19);
        assert_int_equal(harness_sql_i64(fx.db, "SELECT issued FROM coupons WHERE id = 3"), 1);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM user_coupons"
                             " WHERE coupon_id = 3 AND user_id = 8"),
            1);
}

typedef struct charge_job {
        int64_t user_id;
        int64_t amount;
        rpc_status st;
} charge_job;

static void *
charge_thread(void *p)
{
        charge_job *j = p;

        j->st = charge(j->user_id, j->amount, false, NULL);
        return NULL;
}

/* Concurrent charges of one user: every one lands, and the ledger explains the balance. */
static void
test_user_charge_concurrent(void **state)
{
        charge_job jobs[20];
        int64_t balance = 0;

        (void) state;
        for (int i = 0; i < 20; i++) {
                jobs[i] = (charge_job) { .user_id = 12, .amount = 100 + i };
        }
        ou_run_threads(20, charge_thread, jobs, sizeof(jobs[0]));
        for (int i = 0; i < 20; i++) {
                assert_int_equal(jobs[i].st, RPC_OK);
        }
        assert_int_equal(get_balance(12, false, &balance), RPC_OK);
        assert_int_equal(balance, BALANCE + 20 * 100 + 190);
        assert_int_equal(ledger_gap(fx.db, 12), 0);
}

/*
 * The store, directly: what the order flows call (debit, refund, coupons) and RPC cannot
 * reach in this service alone.
 */

static db_conn *
store_conn(void)
{
        db_conn *db = NULL;
        char err[256];

        assert_int_equal(db_connect(fx.db, &user_stmts, 1, &db, err, sizeof(err)), RPC_OK);
        return db;
}

static void
test_user_store_debit_and_refund(void **state)
{
        db_conn *db = store_conn();
        int64_t balance = 0;
        char *before;

        (void) state;
        assert_int_equal(user_store_debit(db, 20, 700, 9001), RPC_OK);
        assert_int_equal(user_store_get_balance(db, 20, &balance, NULL), RPC_OK);
        assert_int_equal(balance, BALANCE - 700);
        /* A repeated debit of one order changes nothing. */
        assert_int_equal(user_store_debit(db, 20, 700, 9001), RPC_OK);
        assert_int_equal(user_store_get_balance(db, 20, &balance, NULL), RPC_OK);
        assert_int_equal(balance, BALANCE - 700);
        assert_int_equal(ledger_gap(fx.db, 20), 0);

        /* The refund gives it back once. */
        assert_int_equal(user_store_refund(db, 9001), RPC_OK);
        assert_int_equal(user_store_refund(db, 9001), RPC_OK);
        assert_int_equal(user_store_get_balance(db, 20, &balance, NULL), RPC_OK);
        assert_int_equal(balance, BALANCE);
        assert_int_equal(
            harness_sql_i64(fx.db, "SELECT count(*) FROM ledger WHERE order_id = 9001"), 2);
        assert_int_equal(ledger_gap(fx.db, 20), 0);

        /* Failures leave everything as it was. */
        before = checksum();
        assert_int_equal(user_store_refund(db, 9002), RPC_OK); /* nothing to refund */
        assert_int_equal(user_store_debit(db, 20, BALANCE + 1, 9003), RPC_FAILED_PRECONDITION);
        assert_int_equal(user_store_debit(db, USERS + 1, 10, 9004), RPC_NOT_FOUND);
        assert_int_equal(user_store_debit(db, 20, 0, 9005), RPC_INVALID_ARGUMENT);
        assert_false(db_in_transaction(db));
        assert_unchanged(before);

        /* The whole balance may go, not a unit more. */
        assert_int_equal(user_store_debit(db, 21, BALANCE, 9006), RPC_OK);
        assert_int_equal(user_store_get_balance(db, 21, &balance, NULL), RPC_OK);
        assert_int_equal(balance, 0);
        assert_int_equal(user_store_debit(db, 21, 1, 9007), RPC_FAILED_PRECONDITION);
        db_close(db);
}

static void
test_user_store_coupon_use_and_restore(void **state)
{
        db_conn *db = store_conn();
        user_coupon_rec rec;
        const char *what = NULL;
        int64_t discount = -1;
        int64_t fixed = 500 + (131 + SEED) % 1500; /* coupon 1 */
        int64_t pct = 5 + (2 + SEED) % 26;         /* coupon 2 */
        char *before;

        (void) state;
        assert_int_equal(user_store_issue_coupon(db, 30, 1, &rec, &what), RPC_OK);
        assert_int_equal(user_store_issue_coupon(db, 30, 2, &rec, &what), RPC_OK);
        assert_int_equal(rec.kind, USER_DISCOUNT_PERCENT);

        /* Not held, unknown: nothing changes. */
        before = checksum();
        assert_int_equal(
            user_store_use_coupon(db, 31, 1, 7001, 10000, &discount), RPC_FAILED_PRECONDITION);
        assert_int_equal(user_store_use_coupon(db, 30, 999, 7001, 10000, &discount), RPC_NOT_FOUND);
        assert_unchanged(before);

        assert_int_equal(user_store_use_coupon(db, 30, 1, 7001, 10000, &discount), RPC_OK);
        assert_int_equal(discount, fixed);
        /* The same order again: the same discount; another order: used. */
        assert_int_equal(user_store_use_coupon(db, 30, 1, 7001, 10000, &discount), RPC_OK);
        assert_int_equal(discount, fixed);
        assert_int_equal(
            user_store_use_coupon(db, 30, 1, 7002, 10000, &discount), RPC_FAILED_PRECONDITION);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT used_order_id FROM user_coupons"
                             " WHERE user_id = 30 AND coupon_id = 1"),
            7001);
        /* A PERCENT discount rounds down. */
        assert_int_equal(user_store_use_coupon(db, 30, 2, 7003, 1999, &discount), RPC_OK);
        assert_int_equal(discount, 1999 * pct / 100);

        assert_int_equal(user_store_restore_coupon(db, 7001), RPC_OK);
        assert_int_equal(user_store_restore_coupon(db, 7001), RPC_OK);
        assert_int_equal(harness_sql_i64(fx.db,
                             "SELECT count(*) FROM user_coupons"
                             " WHERE user_id = 30 AND coupon_id = 1"
                             " AND used_order_id IS NULL"),
            1);
        /* Usable again; a FIXED discount never exceeds the total. */
        assert_int_equal(user_store_use_coupon(db, 30, 1, 7002, 100, &discount), RPC_OK);
        assert_int_equal(discount, 100);
        db_close(db);
}

static void
test_user_store_discount(void **state)
{
        (void) state;
        assert_int_equal(user_discount(USER_DISCOUNT_FIXED, 500, 10000), 500);
        assert_int_equal(user_discount(USER_DISCOUNT_FIXED, 500, 300), 300);
        assert_int_equal(user_discount(USER_DISCOUNT_PERCENT, 10, 1999), 199);
        assert_int_equal(user_discount(USER_DISCOUNT_PERCENT, 100, 1999), 1999);
        assert_int_equal(user_discount(USER_DISCOUNT_PERCENT, 30, 0), 0);
        /* No overflow on the largest totals. */
        assert_int_equal(user_discount(USER_DISCOUNT_PERCENT, 99, INT64_MAX),
            (INT64_MAX / 100) * 99 + (INT64_MAX % 100) * 99 / 100);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_user_seed_is_deterministic, test_setup),
                cmocka_unit_test_setup(test_user_get_balance, test_setup),
                cmocka_unit_test_setup(test_user_get_balance_bad_input, test_setup),
                cmocka_unit_test_setup(test_user_charge, test_setup),
                cmocka_unit_test_setup(test_user_charge_bad_input, test_setup),
                cmocka_unit_test_setup(test_user_charge_garbage_payload, test_setup),
                cmocka_unit_test_setup(test_user_charge_idempotency_key, test_setup),
                cmocka_unit_test_setup(test_user_issue_and_list_coupons, test_setup),
                cmocka_unit_test_setup(test_user_coupon_bad_input, test_setup),
                cmocka_unit_test_setup(test_user_issue_coupon_concurrent_users, test_setup),
                cmocka_unit_test_setup(test_user_issue_coupon_concurrent_same_user, test_setup),
                cmocka_unit_test_setup(test_user_charge_concurrent, test_setup),
                cmocka_unit_test_setup(test_user_store_debit_and_refund, test_setup),
                cmocka_unit_test_setup(test_user_store_coupon_use_and_restore, test_setup),
                cmocka_unit_test_setup(test_user_store_discount, test_setup),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
