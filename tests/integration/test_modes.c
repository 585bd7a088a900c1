/* test_modes.c: every mode (saga, 2pc, monolith): the happy path and each step switched off. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modes_util.h"

/*
 * One cluster per step switch (the switches live in the topology, which the services read
 * at start), and on each cluster the orders of all three modes, one mode after the other:
 * saga and 2pc share the services' databases, monolith has its own. Each mode places two
 * orders, one with a coupon and one without (user.coupon only fails an order that has one).
 * Before and after each order the dataset is let go quiet and fingerprinted: a cancelled
 * order leaves stock, balances, coupons, captured payments and the data platform exactly as
 * they were; a completed one moves exactly its quantities and its amount, has one captured
 * payment and one data-platform record.
 */

#define PRODUCTS 10
#define STOCK 100
#define USERS 30
#define BALANCE 1000000
#define COUPONS 4
#define COUPON_QUANTITY 100
#define SEED 11

/* The coupon of the orders that have one: coupon 1 is FIXED (odd id), so it always takes
 * something off. */
#define COUPON 1

/* A saga whose step never answers is cancelled after this long, and a 2pc vote that does
 * not come in this long aborts its order (the default is 5000; a branch switched to
 * `timeout` sleeps 1 s past it). Both stay far above what a step takes here. */
#define SAGA_TIMEOUT_MS 3000
#define PREPARE_TIMEOUT_MS 2000

#define QUIET_MS 60000
#define TERMINAL_MS 60000

static const svc_seed seed = {
        .products = PRODUCTS,
        .stock = STOCK,
        .users = USERS,
        .balance = BALANCE,
        .coupons = COUPONS,
        .coupon_quantity = COUPON_QUANTITY,
        .declining_users = 0,
        .seed = SEED,
};

/* A switch and what it does to the two orders of a mode. */
typedef struct sw_case {
        const char *service; /* NULL: no switch, the happy path */
        const char *step;
        const char *value;        /* "fail" or "timeout" */
        const char *reason;       /* the order with a coupon: its cancel reason, or NULL */
        const char *reason_plain; /* the order without: its cancel reason, or NULL */
        bool create_error;        /* PlaceOrder fails (INTERNAL), nothing is recorded */
} sw_case;

static const mu_item items_coupon[] = { { 1, 2 }, { 2, 1 } };
static const mu_item items_plain[] = { { 3, 1 } };

static const char *
status_name(int st)
{
        switch (st) {
        case MU_PENDING:
                return "PENDING";
        case MU_COMPLETED:
                return "COMPLETED";
        case MU_CANCELLED:
                return "CANCELLED";
        default:
                return "?";
        }
}

static int64_t
stock_of(const harness_cluster *hc, mu_dataset ds, int64_t product_id)
{
        return mu_i64f(mu_db(hc, ds, "product"), "SELECT stock FROM products WHERE id = %lld",
            (long long) product_id);
}

static int64_t
balance_of(const harness_cluster *hc, mu_dataset ds, int64_t user_id)
{
        return mu_i64f(mu_db(hc, ds, "user"), "SELECT balance FROM users WHERE id = %lld",
            (long long) user_id);
}

static int64_t
count_orders(const harness_cluster *hc, mu_dataset ds)
{
        return mu_i64f(mu_db(hc, ds, "order"), "SELECT count(*) FROM orders");
}

/* What a cancelled order must not have left anywhere in its dataset. */
static void
assert_no_trace(const harness_cluster *hc, mu_dataset ds, int64_t order_id)
{
        long long id = (long long) order_id;

        assert_int_equal(mu_i64f(mu_db(hc, ds, "user"),
                             "SELECT coalesce(sum(CASE kind WHEN 'debit' THEN amount"
                             " ELSE -amount END), 0) FROM ledger WHERE order_id = %lld",
                             id),
            0);
        assert_int_equal(mu_i64f(mu_db(hc, ds, "user"),
                             "SELECT count(*) FROM user_coupons WHERE used_order_id = %lld", id),
            0);
        assert_int_equal(mu_i64f(mu_db(hc, ds, "payment"),
                             "SELECT count(*) FROM payments WHERE order_id = %lld"
                             " AND status = 'captured'",
                             id),
            0);
        assert_int_equal(mu_i64f(mu_db(hc, ds, "product"),
                             "SELECT count(*) FROM reservations WHERE order_id = %lld"
                             " AND status <> 'released'",
                             id),
            0);
        assert_int_equal(mu_i64f(mu_db(hc, ds, "dataplatform"),
                             "SELECT count(*) FROM received_orders WHERE order_id = %lld", id),
            0);
}

/* Places one order and checks its outcome and its effects. reason NULL: it must complete. */
static void
run_order(mu_cluster *mc, const sw_case *c, Mercato__Order__V1__Mode mode, int64_t user_id,
    const mu_item *items, size_t n, int64_t coupon_id, const char *reason)
{
        harness_cluster *hc = mc->hc;
        mu_dataset ds = mu_dataset_of(mode);
        int64_t stock_before[4], balance_before, orders_before, t0;
        char *before, *after;
        mu_result r;

        assert_true(mu_wait_quiet(hc, ds, QUIET_MS));
        before = mu_snapshot(hc, ds);
        orders_before = count_orders(hc, ds);
        balance_before = balance_of(hc, ds, user_id);
        for (size_t i = 0; i < n; i++) {
                stock_before[i] = stock_of(hc, ds, items[i].product_id);
        }

        t0 = mu_now_ms();
        mu_place(mc->order, mode, user_id, items, n, coupon_id, 30000, &r);
        printf("  %-8s user %2lld coupon %lld: status %s, order %lld %s %s (%lld ms)\n",
            mu_mode_name(mode), (long long) user_id, (long long) coupon_id, rpc_status_name(r.st),
            (long long) r.order_id, r.st == RPC_OK ? status_name(r.status) : "",
            r.st == RPC_OK ? r.reason : r.msg, (long long) (mu_now_ms() - t0));
        fflush(stdout);

        if (c->create_error) {
                /* Nothing at all: no order, no effect. */
                assert_int_equal(r.st, RPC_INTERNAL);
                assert_true(mu_wait_quiet(hc, ds, QUIET_MS));
                after = mu_snapshot(hc, ds);
                assert_string_equal(before, after);
                assert_int_equal(count_orders(hc, ds), orders_before);
                free(before);
                free(after);
                return;
        }
        if (r.st != RPC_OK) {
                fail_msg("%s: PlaceOrder failed: %s: %s", mu_mode_name(mode), rpc_status_name(r.st),
                    r.msg);
        }
        assert_true(r.order_id > 0);
        if (r.status == MU_PENDING) {
                if (!mu_wait_terminal(mc->order, mode, r.order_id, TERMINAL_MS, &r)) {
                        fail_msg("%s: order %lld still %s after %d ms", mu_mode_name(mode),
                            (long long) r.order_id, status_name(r.status), TERMINAL_MS);
                }
                printf("           ... then %s %s\n", status_name(r.status), r.reason);
        }
        assert_true(mu_wait_quiet(hc, ds, QUIET_MS));
        after = mu_snapshot(hc, ds);
        /* The reply and the stored order agree. */
        {
                mu_result g;
                mu_get(mc->order, mode, r.order_id, &g);
                assert_int_equal(g.st, RPC_OK);
                assert_int_equal(g.status, r.status);
                assert_string_equal(g.reason, r.reason);
                assert_int_equal(g.mode, (int) mode);
        }
        assert_int_equal(count_orders(hc, ds), orders_before + 1);

        if (reason != NULL) {
                if (r.status != MU_CANCELLED || strcmp(r.reason, reason) != 0) {
                        fail_msg("%s: order %lld: expected CANCELLED %s, got %s %s",
                            mu_mode_name(mode), (long long) r.order_id, reason,
                            status_name(r.status), r.reason);
                }
                assert_string_equal(before, after);
                assert_no_trace(hc, ds, r.order_id);
                free(before);
                free(after);
                return;
        }

        if (r.status != MU_COMPLETED) {
                fail_msg("%s: order %lld: expected COMPLETED, got %s %s", mu_mode_name(mode),
                    (long long) r.order_id, status_name(r.status), r.reason);
        }
        assert_string_equal(r.reason, "");
        assert_int_equal(r.amount, r.total - r.discount);
        if (coupon_id > 0) {
                assert_true(r.discount > 0);
                assert_int_equal(mu_i64f(mu_db(hc, ds, "user"),
                                     "SELECT used_order_id FROM user_coupons"
                                     " WHERE user_id = %lld AND coupon_id = %lld",
                                     (long long) user_id, (long long) coupon_id),
                    r.order_id);
        } else {
                assert_int_equal(r.discount, 0);
        }
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(
                    stock_of(hc, ds, items[i].product_id), stock_before[i] - items[i].quantity);
                assert_int_equal(mu_i64f(mu_db(hc, ds, "product"),
                                     "SELECT coalesce(sum(quantity), 0) FROM reservations"
                                     " WHERE order_id = %lld AND product_id = %lld"
                                     " AND status = 'sold'",
                                     (long long) r.order_id, (long long) items[i].product_id),
                    items[i].quantity);
        }
        assert_int_equal(balance_of(hc, ds, user_id), balance_before - r.amount);
        assert_int_equal(mu_i64f(mu_db(hc, ds, "payment"),
                             "SELECT amount FROM payments WHERE order_id = %lld"
                             " AND status = 'captured'",
                             (long long) r.order_id),
            r.amount);
        assert_int_equal(mu_i64f(mu_db(hc, ds, "dataplatform"),
                             "SELECT count(*) FROM received_orders WHERE order_id = %lld",
                             (long long) r.order_id),
            1);
        free(before);
        free(after);
}

/* Every completed order has one captured payment and one data-platform record, and
 * nothing else has either; nothing is pending, prepared or undelivered. */
static void
check_dataset(const harness_cluster *hc, mu_dataset ds)
{
        mu_totals t;
        char *completed, *captured, *dp;

        assert_true(mu_wait_quiet(hc, ds, QUIET_MS));
        mu_totals_read(hc, ds, &t);
        mu_totals_print(stdout, mu_dataset_name(ds), &t);
        mu_dead_letters_print(stdout, hc, ds);
        completed = mu_completed_list(hc, ds, MERCATO__ORDER__V1__MODE__MODE_UNSPECIFIED);
        captured = mu_captured_list(hc, ds);
        dp = mu_dp_list(hc, ds);
        assert_string_equal(completed, captured);
        assert_string_equal(completed, dp);
        assert_int_equal(t.pending, 0);
        assert_int_equal(t.prepared, 0);
        assert_int_equal(t.outbox_pending, 0);
        assert_int_equal(t.dead_letters, 0);
        assert_true(mu_totals_settled(&t));
        assert_int_equal(t.stock_negative, 0);
        assert_int_equal(t.balance_negative, 0);
        assert_int_equal(t.stock + t.sold, PRODUCTS * STOCK);
        assert_int_equal(t.sold, t.completed_quantity);
        assert_int_equal(t.balance + t.completed_amount, t.charges);
        assert_int_equal(t.debits - t.refunds, t.completed_amount);
        free(completed);
        free(captured);
        free(dp);
}

/* The cluster of the running test, stopped by its teardown even when an assertion failed. */
static mu_cluster *g_mc;

static void
run_case(const sw_case *c)
{
        char extra[512];
        mu_cluster *mc;
        int64_t t0 = mu_now_ms();

        snprintf(extra, sizeof(extra), "[order]\nsaga_timeout_ms = %d\nprepare_timeout_ms = %d\n",
            SAGA_TIMEOUT_MS, PREPARE_TIMEOUT_MS);
        if (c->service != NULL) {
                size_t len = strlen(extra);
                snprintf(extra + len, sizeof(extra) - len, "[%s]\nstep.%s = %s\n", c->service,
                    c->step, c->value);
                printf("switch %s.%s = %s\n", c->service, c->step, c->value);
        } else {
                printf("no switch\n");
        }
        mc = g_mc = mu_cluster_start(extra, &seed);
        printf("  cluster up in %lld ms\n", (long long) (mu_now_ms() - t0));
        for (int i = 0; i < MU_N_MODES; i++) {
                Mercato__Order__V1__Mode mode = mu_modes[i];
                mu_dataset ds = mu_dataset_of(mode);
                int64_t user_coupon = 1 + 2 * i;
                int64_t user_plain = 2 + 2 * i;

                if (!mu_mode_selected(mode)) {
                        continue;
                }

                assert_int_equal(mu_issue_coupon(mc->user, ds, user_coupon, COUPON), RPC_OK);
                run_order(mc, c, mode, user_coupon, items_coupon,
                    sizeof(items_coupon) / sizeof(items_coupon[0]), COUPON, c->reason);
                run_order(mc, c, mode, user_plain, items_plain,
                    sizeof(items_plain) / sizeof(items_plain[0]), 0, c->reason_plain);
        }
        if (mu_mode_selected(MU_SAGA) || mu_mode_selected(MU_TPC) || mu_mode_selected(MU_ORCH)
            || mu_mode_selected(MU_TCC)) {
                check_dataset(mc->hc, MU_SPLIT);
        }
        if (mu_mode_selected(MU_MONO)) {
                check_dataset(mc->hc, MU_MONOLITH);
        }
        printf("  checked in %lld ms\n", (long long) (mu_now_ms() - t0));
        mu_cluster_free(mc);
        g_mc = NULL;
        printf("  done in %lld ms\n", (long long) (mu_now_ms() - t0));
        fflush(stdout);
}

#define CASE_TEST(fn, ...)                                                                         \
        static void fn(void **state)                                                               \
        {                                                                                          \
                static const sw_case c = { __VA_ARGS__ };                                          \
                (void) state;                                                                      \
                run_case(&c);                                                                      \
        }

CASE_TEST(test_modes_happy_path, .service = NULL)

CASE_TEST(test_modes_create_fail, .service = "order", .step = "create", .value = "fail",
    .create_error = true)
CASE_TEST(test_modes_reserve_fail, .service = "product", .step = "reserve", .value = "fail",
    .reason = "out_of_stock", .reason_plain = "out_of_stock")
CASE_TEST(test_modes_coupon_fail, .service = "user", .step = "coupon", .value = "fail",
    .reason = "coupon_invalid", .reason_plain = NULL)
CASE_TEST(test_modes_debit_fail, .service = "user", .step = "debit", .value = "fail",
    .reason = "insufficient_balance", .reason_plain = "insufficient_balance")
CASE_TEST(test_modes_capture_fail, .service = "payment", .step = "capture", .value = "fail",
    .reason = "payment_declined", .reason_plain = "payment_declined")
CASE_TEST(test_modes_complete_fail, .service = "order", .step = "complete", .value = "fail",
    .reason = "participant_error", .reason_plain = "participant_error")

CASE_TEST(test_modes_create_timeout, .service = "order", .step = "create", .value = "timeout",
    .reason = "timeout", .reason_plain = "timeout")
CASE_TEST(test_modes_reserve_timeout, .service = "product", .step = "reserve", .value = "timeout",
    .reason = "timeout", .reason_plain = "timeout")
CASE_TEST(test_modes_coupon_timeout, .service = "user", .step = "coupon", .value = "timeout",
    .reason = "timeout", .reason_plain = NULL)
CASE_TEST(test_modes_debit_timeout, .service = "user", .step = "debit", .value = "timeout",
    .reason = "timeout", .reason_plain = "timeout")
CASE_TEST(test_modes_capture_timeout, .service = "payment", .step = "capture", .value = "timeout",
    .reason = "timeout", .reason_plain = "timeout")
CASE_TEST(test_modes_complete_timeout, .service = "order", .step = "complete", .value = "timeout",
    .reason = "timeout", .reason_plain = "timeout")

static int
case_teardown(void **state)
{
        (void) state;
        mu_cluster_free(g_mc);
        g_mc = NULL;
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        harness_cleanup();
        return 0;
}

/* argv[1]: "fail" (the happy path and every step failing), "timeout" (every step timing
 * out), or nothing for both. */
int
main(int argc, char **argv)
{
        const struct CMUnitTest fail_tests[] = {
                cmocka_unit_test_teardown(test_modes_happy_path, case_teardown),
                cmocka_unit_test_teardown(test_modes_create_fail, case_teardown),
                cmocka_unit_test_teardown(test_modes_reserve_fail, case_teardown),
                cmocka_unit_test_teardown(test_modes_coupon_fail, case_teardown),
                cmocka_unit_test_teardown(test_modes_debit_fail, case_teardown),
                cmocka_unit_test_teardown(test_modes_capture_fail, case_teardown),
                cmocka_unit_test_teardown(test_modes_complete_fail, case_teardown),
        };
        const struct CMUnitTest timeout_tests[] = {
                cmocka_unit_test_teardown(test_modes_create_timeout, case_teardown),
                cmocka_unit_test_teardown(test_modes_reserve_timeout, case_teardown),
                cmocka_unit_test_teardown(test_modes_coupon_timeout, case_teardown),
                cmocka_unit_test_teardown(test_modes_debit_timeout, case_teardown),
                cmocka_unit_test_teardown(test_modes_capture_timeout, case_teardown),
                cmocka_unit_test_teardown(test_modes_complete_timeout, case_teardown),
        };
        const char *which = argc > 1 ? argv[1] : "all";
        int failed = 0;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (strcmp(which, "fail") == 0 || strcmp(which, "all") == 0) {
                failed += cmocka_run_group_tests_name("modes_fail", fail_tests, NULL, NULL);
        }
        if (strcmp(which, "timeout") == 0 || strcmp(which, "all") == 0) {
                failed += cmocka_run_group_tests_name("modes_timeout", timeout_tests, NULL, NULL);
        }
        group_teardown(NULL);
        return failed;
}
