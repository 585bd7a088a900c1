/* test_bench_observe.c: the dirty-read judge and the workload's order mix. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "observe.h"
#include "order.pb-c.h"
#include "workload.h"

#define COMPLETED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED
#define CANCELLED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED
#define PENDING MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_PENDING
#define MS INT64_C(1000000)

static bench_workload w;

static int
setup(void **state)
{
        char err[128];

        bench_workload_defaults(&w);
        w.users = 100;
        w.products = 100;
        w.balance = 10000;
        w.stock = 500;
        assert_true(bench_workload_finish(&w, err, sizeof(err)));
        return 0;
}

/* An order of user on product (qty) from start to end (ms), ending as status. */
static load_order
order(int64_t user, int64_t product, int64_t qty, int64_t start, int64_t end, int status,
    int64_t amount)
{
        load_order o = { 0 };

        o.want.user_id = user;
        o.want.n_items = 1;
        o.want.product_id[0] = product;
        o.want.quantity[0] = qty;
        o.start_ns = start * MS;
        o.end_ns = end * MS;
        o.status = status;
        o.amount = amount;
        o.counted = true;
        return o;
}

static observe_read
rd(int kind, int64_t key, int64_t t0, int64_t t1, int64_t value)
{
        return (observe_read) { kind, key, t0 * MS, t1 * MS, value };
}

static observe_result
judge(load_order *orders, size_t n_orders, const observe_read *reads, size_t n_reads)
{
        load_result run = { .orders = orders, .n_orders = n_orders };
        observe_result r;

        observe_judge(reads, n_reads, &run, &w, &r);
        return r;
}

/* A read that saw a completed order's debit and stock, while it ran or after, is clean. */
static void
test_completed_effects_are_not_dirty(void **state)
{
        load_order o[] = { order(5, 7, 2, 100, 200, COMPLETED, 300) };
        observe_read r[] = {
                rd(OBSERVE_BALANCE, 5, 150, 151, 10000 - 300),
                rd(OBSERVE_STOCK, 7, 150, 151, 500 - 2),
                rd(OBSERVE_BALANCE, 5, 250, 251, 10000 - 300),
                rd(OBSERVE_BALANCE, 5, 150, 151, 10000), /* not yet */
        };
        observe_result res = judge(o, 1, r, 4);

        assert_int_equal(res.reads, 4);
        assert_int_equal(res.dirty_reads, 0);
        assert_int_equal(res.dirty_orders, 0);
}

/* A debit or a hold that a cancelled order made, seen before it was undone, is dirty and
 * is charged to that order, with the span between the reads that saw it. */
static void
test_cancelled_effects_are_dirty(void **state)
{
        load_order o[] = {
                order(6, 8, 3, 100, 200, CANCELLED, 0),
                order(9, 9, 1, 100, 200, CANCELLED, 0),
        };
        observe_read r[] = {
                rd(OBSERVE_BALANCE, 6, 120, 121, 10000 - 450), /* the debit, later refunded */
                rd(OBSERVE_STOCK, 8, 130, 131, 500 - 3),       /* the hold, later released */
                rd(OBSERVE_BALANCE, 6, 170, 171, 10000 - 450),
                rd(OBSERVE_BALANCE, 6, 210, 211, 10000), /* after: clean */
                rd(OBSERVE_BALANCE, 9, 150, 151, 10000), /* never showed: clean */
        };
        observe_result res = judge(o, 2, r, 5);

        assert_int_equal(res.reads, 5);
        assert_int_equal(res.dirty_reads, 3);
        assert_int_equal(res.dirty_balance, 2);
        assert_int_equal(res.dirty_stock, 1);
        assert_int_equal(res.dirty_orders, 1);
        /* From the first read that saw it (120.5 ms) to the last (170.5 ms). */
        assert_true(res.visible_max_ms > 49.9 && res.visible_max_ms < 50.1);
}

/* A completed order that started after the read cannot explain its value. */
static void
test_later_orders_do_not_excuse_a_read(void **state)
{
        load_order o[] = {
                order(10, 11, 1, 300, 400, COMPLETED, 100),
                order(10, 11, 1, 100, 200, CANCELLED, 0),
        };
        observe_read r[] = { rd(OBSERVE_BALANCE, 10, 150, 151, 10000 - 100) };
        observe_result res = judge(o, 2, r, 1);

        assert_int_equal(res.dirty_reads, 1);
        assert_int_equal(res.dirty_orders, 1);
}

/* A key an order of unknown outcome touched is not judged from that order's start on;
 * before it, it is. Order reads count what they saw. */
static void
test_unknown_outcomes_are_not_judged(void **state)
{
        load_order o[] = { order(12, 13, 1, 100, 0, 0, 0) };
        observe_read r[] = {
                rd(OBSERVE_BALANCE, 12, 150, 151, 1),
                rd(OBSERVE_STOCK, 13, 150, 151, 1),
                rd(OBSERVE_BALANCE, 12, 50, 51, 10000),
                rd(OBSERVE_ORDER, 12, 150, 151, PENDING),
                rd(OBSERVE_ORDER, 12, 250, 251, COMPLETED),
        };
        observe_result res = judge(o, 1, r, 5);

        assert_int_equal(res.unjudged, 2);
        assert_int_equal(res.reads, 1);
        assert_int_equal(res.dirty_reads, 0);
        assert_int_equal(res.order_reads, 2);
        assert_int_equal(res.pending_seen, 1);
}

/* A poor user starts with nothing: a negative-looking read would be dirty, zero is not. */
static void
test_poor_users_start_at_zero(void **state)
{
        int64_t poor = w.normal_users + 1;
        observe_read r[] = {
                rd(OBSERVE_BALANCE, poor, 10, 11, 0),
                rd(OBSERVE_BALANCE, 1, 10, 11, 0), /* a normal user at zero: dirty */
        };
        observe_result res = judge(NULL, 0, r, 2);

        assert_int_equal(res.reads, 2);
        assert_int_equal(res.dirty_reads, 1);
}

/* The order mix: the failing kinds use their own users and quantities, items are distinct,
 * and a client's stream is reproducible. */
static void
test_orders_are_built_as_their_kind(void **state)
{
        bench_workload ww = w;
        bench_rng a, b;
        int kinds[BENCH_N_KINDS] = { 0 };
        char err[128];

        ww.fail_fraction = 0.5;
        ww.hot_fraction = 0.5;
        assert_true(bench_workload_finish(&ww, err, sizeof(err)));
        bench_rng_init(&a, 7, 3);
        bench_rng_init(&b, 7, 3);
        for (int i = 0; i < 2000; i++) {
                bench_order x, y;
                bench_order_next(&ww, &a, &x);
                bench_order_next(&ww, &b, &y);
                assert_memory_equal(&x, &y, sizeof(x));
                kinds[x.kind]++;
                assert_true(x.n_items >= 1 && x.n_items <= BENCH_ITEMS_MAX);
                bool over = false;
                for (size_t k = 0; k < x.n_items; k++) {
                        for (size_t j = 0; j < k; j++) {
                                assert_true(x.product_id[j] != x.product_id[k]);
                        }
                        assert_true(x.product_id[k] >= 1 && x.product_id[k] <= ww.products);
                        over = over || x.quantity[k] > ww.stock;
                }
                assert_true(over == (x.kind == BENCH_KIND_NO_STOCK));
                switch (x.kind) {
                case BENCH_KIND_NO_BALANCE:
                        assert_true(x.user_id > ww.normal_users
                            && x.user_id <= ww.normal_users + ww.poor_users);
                        break;
                case BENCH_KIND_DECLINED:
                        assert_true(x.user_id > ww.users - ww.declining_users);
                        break;
                default:
                        assert_true(x.user_id >= 1 && x.user_id <= ww.normal_users);
                }
        }
        for (int k = 0; k < BENCH_N_KINDS; k++) {
                assert_true(kinds[k] > 100);
        }
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_completed_effects_are_not_dirty),
                cmocka_unit_test(test_cancelled_effects_are_dirty),
                cmocka_unit_test(test_later_orders_do_not_excuse_a_read),
                cmocka_unit_test(test_unknown_outcomes_are_not_judged),
                cmocka_unit_test(test_poor_users_start_at_zero),
                cmocka_unit_test(test_orders_are_built_as_their_kind),
        };

        return cmocka_run_group_tests(tests, setup, NULL);
}
