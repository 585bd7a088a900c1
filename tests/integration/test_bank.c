/* test_bank.c: the bank-style test in each mode: concurrent orders that mostly fail, conserved. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modes_util.h"
#include "orders_util.h"

/*
 * 500 orders from 20 concurrent clients over 10 products with little stock, from users with
 * small balances (the last few of whom have payments that decline), some with a coupon,
 * while other clients charge balances: most orders fail, for every reason. Once the system
 * is quiet, across the mode's databases:
 *
 *   no stock and no balance is negative, and no order is PENDING;
 *   stock + sold = the initial stock, and sold = the completed orders' quantities;
 *   balances + paid = the initial balances + the charges (paid = the completed orders'
 *   amounts), and the ledger's debits - refunds = paid;
 *   the captured payments are exactly the completed orders, with their amounts;
 *   the data platform holds exactly one record per completed order;
 *   the used coupons are exactly those of the completed orders that had one;
 *   every order a reply called terminal is still in that state;
 *   nothing is prepared, nothing left in an outbox, nothing dead-lettered.
 *
 * Each mode gets a cluster of its own (saga and 2pc would otherwise share the stock).
 */

#define PRODUCTS 10
#define STOCK 15
#define USERS 40
#define BALANCE 15000
#define COUPONS 2
#define COUPON_QUANTITY 100
#define DECLINING 4 /* users 37..40 */
#define SEED 3

#define CLIENTS 20
#define ORDERS 500
#define PER_CLIENT (ORDERS / CLIENTS)
#define COUPON_USERS 20 /* users 1..20 hold coupons 1 and 2 */

#define CHARGERS 2
#define CHARGES 50 /* per charger */

/* The whole run of a mode (orders, then quiet) must fit in this. */
#define RUN_BUDGET_MS 120000

static const svc_seed seed = {
        .products = PRODUCTS,
        .stock = STOCK,
        .users = USERS,
        .balance = BALANCE,
        .coupons = COUPONS,
        .coupon_quantity = COUPON_QUANTITY,
        .declining_users = DECLINING,
        .seed = SEED,
};

/* One reply to a PlaceOrder. */
typedef struct placed {
        rpc_status st;
        int64_t order_id;
        int status;
        char reason[64];
        int64_t amount;
        int64_t coupon_id;
} placed;

typedef struct client_arg {
        const harness_cluster *hc;
        Mercato__Order__V1__Mode mode;
        int index;
        placed out[PER_CLIENT];
} client_arg;

typedef struct charger_arg {
        const harness_cluster *hc;
        mu_dataset ds;
        int index;
        int64_t charged; /* the sum of the charges acknowledged */
        int failed;
} charger_arg;

/* xorshift64*: a deterministic stream per client. */
static uint64_t
next_rand(uint64_t *s)
{
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * UINT64_C(2685821657736338717);
}

static void *
client_run(void *p)
{
        client_arg *a = p;
        rpc_client *order = mu_client(a->hc, "order");
        uint64_t rs = UINT64_C(0x9e3779b97f4a7c15) * (uint64_t) (a->index + 1);

        for (int k = 0; k < PER_CLIENT; k++) {
                mu_item items[3];
                size_t n = 1 + next_rand(&rs) % 3;
                int64_t user = 1 + (int64_t) (next_rand(&rs) % USERS);
                int64_t coupon = 0;
                mu_result r;

                /* n distinct products out of the ten. */
                int64_t first = 1 + (int64_t) (next_rand(&rs) % PRODUCTS);
                for (size_t i = 0; i < n; i++) {
                        items[i].product_id = 1 + (first - 1 + (int64_t) i * 3) % PRODUCTS;
                        items[i].quantity = 1 + (int64_t) (next_rand(&rs) % 3);
                }
                if (user <= COUPON_USERS && next_rand(&rs) % 3 == 0) {
                        coupon = 1 + (int64_t) (next_rand(&rs) % COUPONS);
                }
                mu_place(order, a->mode, user, items, n, coupon, 30000, &r);
                a->out[k] = (placed) {
                        .st = r.st,
                        .order_id = r.order_id,
                        .status = r.status,
                        .amount = r.amount,
                        .coupon_id = coupon,
                };
                snprintf(a->out[k].reason, sizeof(a->out[k].reason), "%s", r.reason);
                if (r.st != RPC_OK) {
                        fprintf(stderr, "client %d: PlaceOrder: %s: %s\n", a->index,
                            rpc_status_name(r.st), r.msg);
                }
        }
        rpc_client_free(order);
        return NULL;
}

static void *
charger_run(void *p)
{
        charger_arg *a = p;
        rpc_client *user = mu_client(a->hc, "user");
        uint64_t rs = UINT64_C(0x2545f4914f6cdd1d) * (uint64_t) (a->index + 7);

        for (int k = 0; k < CHARGES; k++) {
                int64_t uid = 1 + (int64_t) (next_rand(&rs) % USERS);
                int64_t amount = 1000 + (int64_t) (next_rand(&rs) % 4000);
                rpc_status st = mu_charge(user, a->ds, uid, amount);
                if (st == RPC_OK) {
                        a->charged += amount;
                } else {
                        a->failed++;
                        fprintf(stderr, "charger %d: ChargeBalance: %s\n", a->index,
                            rpc_status_name(st));
                }
        }
        rpc_client_free(user);
        return NULL;
}

/* Runs the clients and the chargers together. */
typedef struct run_arg {
        int kind; /* 0: a client, 1: a charger */
        client_arg *client;
        charger_arg *charger;
} run_arg;

static void *
run_one(void *p)
{
        run_arg *a = p;

        return a->kind == 0 ? client_run(a->client) : charger_run(a->charger);
}

/* "id:STATUS,..." of a dataset's orders, parsed into status_of[id] (ids 1..max). */
static int *
read_statuses(const harness_cluster *hc, mu_dataset ds, int64_t *ret_max)
{
        const char *db = mu_db(hc, ds, "order");
        int64_t max = mu_i64f(db, "SELECT coalesce(max(id), 0) FROM orders");
        char *list = mu_strf(db,
            "SELECT coalesce(string_agg(id || ':' || status, ',' ORDER BY id), '') FROM orders");
        int *status_of = rpc_xcalloc((size_t) max + 1, sizeof(*status_of));

        for (char *p = list; *p != '\0';) {
                char *end;
                int64_t id = strtoll(p, &end, 10);
                assert_true(*end == ':' && id > 0 && id <= max);
                p = end + 1;
                status_of[id] = strncmp(p, "COMPLETED", 9) == 0 ? MU_COMPLETED
                    : strncmp(p, "CANCELLED", 9) == 0           ? MU_CANCELLED
                                                                : MU_PENDING;
                p += strcspn(p, ",");
                p += *p == ',' ? 1 : 0;
        }
        free(list);
        *ret_max = max;
        return status_of;
}

/* Per product and per user, not just in sum: each product's stock + sold is its initial
 * stock and sold is what its completed orders hold; each user's ledger explains the
 * balance, and the net debit is what the user's completed orders paid. */
static void
check_each(const harness_cluster *hc, mu_dataset ds)
{
        const char *product = mu_db(hc, ds, "product");
        const char *user = mu_db(hc, ds, "user");
        const char *order = mu_db(hc, ds, "order");
        char *sold, *ordered, *paid, *spent;

        assert_int_equal(mu_i64f(product,
                             "SELECT count(*) FROM products p WHERE p.stock + coalesce((SELECT"
                             " sum(quantity) FROM reservations r WHERE r.product_id = p.id AND"
                             " r.status = 'sold'), 0) <> %d",
                             STOCK),
            0);
        sold = mu_strf(product,
            "SELECT coalesce(string_agg(product_id || ':' || q, ',' ORDER BY product_id), '')"
            " FROM (SELECT product_id, sum(quantity) q FROM reservations WHERE status = 'sold'"
            " GROUP BY product_id) x");
        ordered = mu_strf(order,
            "SELECT coalesce(string_agg(product_id || ':' || q, ',' ORDER BY product_id), '')"
            " FROM (SELECT i.product_id, sum(i.quantity) q FROM order_items i JOIN orders o"
            " ON o.id = i.order_id WHERE o.status = 'COMPLETED' GROUP BY i.product_id) x");
        assert_string_equal(sold, ordered);
        assert_int_equal(mu_i64f(user,
                             "SELECT count(*) FROM users u WHERE u.balance <> coalesce((SELECT"
                             " sum(CASE kind WHEN 'debit' THEN -amount ELSE amount END)"
                             " FROM ledger l WHERE l.user_id = u.id), 0)"),
            0);
        paid = mu_strf(user,
            "SELECT coalesce(string_agg(user_id || ':' || net, ',' ORDER BY user_id), '')"
            " FROM (SELECT user_id, sum(CASE kind WHEN 'debit' THEN amount ELSE -amount END)"
            " net FROM ledger WHERE kind <> 'charge' GROUP BY user_id"
            " HAVING sum(CASE kind WHEN 'debit' THEN amount ELSE -amount END) <> 0) x");
        spent = mu_strf(order,
            "SELECT coalesce(string_agg(user_id || ':' || s, ',' ORDER BY user_id), '')"
            " FROM (SELECT user_id, sum(amount) s FROM orders WHERE status = 'COMPLETED'"
            " GROUP BY user_id HAVING sum(amount) <> 0) x");
        assert_string_equal(paid, spent);
        free(sold);
        free(ordered);
        free(paid);
        free(spent);
}

/* The cluster of the running test, stopped by its teardown even when an assertion failed. */
static mu_cluster *g_mc;

static int
bank_teardown(void **state)
{
        (void) state;
        mu_cluster_free(g_mc);
        g_mc = NULL;
        return 0;
}

static void
run_bank(Mercato__Order__V1__Mode mode)
{
        static client_arg clients[CLIENTS];
        static charger_arg chargers[CHARGERS];
        static run_arg runs[CLIENTS + CHARGERS];
        mu_dataset ds = mu_dataset_of(mode);
        int64_t t0 = mu_now_ms(), t_orders, charged = 0;
        int ok = 0, errors = 0, completed = 0, cancelled = 0, pending = 0;
        int out_of_stock = 0, insufficient = 0, declined = 0, coupon_invalid = 0, timeouts = 0;
        mu_totals t;
        mu_cluster *mc;

        if (!mu_mode_selected(mode)) {
                skip();
        }
        mc = g_mc = mu_cluster_start("[defaults]\nworkers = 8\n", &seed);
        printf("%s: cluster up in %lld ms\n", mu_mode_name(mode), (long long) (mu_now_ms() - t0));
        for (int64_t u = 1; u <= COUPON_USERS; u++) {
                for (int64_t c = 1; c <= COUPONS; c++) {
                        assert_int_equal(mu_issue_coupon(mc->user, ds, u, c), RPC_OK);
                }
        }
        assert_true(mu_wait_quiet(mc->hc, ds, 30000));
        mu_totals_read(mc->hc, ds, &t);
        mu_totals_print(stdout, "before", &t);
        assert_int_equal(t.stock, PRODUCTS * STOCK);
        assert_int_equal(t.balance, USERS * BALANCE);

        t0 = mu_now_ms();
        for (int i = 0; i < CLIENTS; i++) {
                memset(&clients[i], 0, sizeof(clients[i]));
                clients[i] = (client_arg) { .hc = mc->hc, .mode = mode, .index = i };
                runs[i] = (run_arg) { .kind = 0, .client = &clients[i] };
        }
        for (int i = 0; i < CHARGERS; i++) {
                chargers[i] = (charger_arg) { .hc = mc->hc, .ds = ds, .index = i };
                runs[CLIENTS + i] = (run_arg) { .kind = 1, .charger = &chargers[i] };
        }
        ou_run_threads(CLIENTS + CHARGERS, run_one, runs, sizeof(runs[0]));
        t_orders = mu_now_ms() - t0;

        for (int i = 0; i < CHARGERS; i++) {
                charged += chargers[i].charged;
                assert_int_equal(chargers[i].failed, 0);
        }
        for (int i = 0; i < CLIENTS; i++) {
                for (int k = 0; k < PER_CLIENT; k++) {
                        const placed *p = &clients[i].out[k];
                        if (p->st != RPC_OK) {
                                errors++;
                                continue;
                        }
                        ok++;
                        if (p->status == MU_COMPLETED) {
                                completed++;
                        } else if (p->status == MU_CANCELLED) {
                                cancelled++;
                                out_of_stock += strcmp(p->reason, "out_of_stock") == 0;
                                insufficient += strcmp(p->reason, "insufficient_balance") == 0;
                                declined += strcmp(p->reason, "payment_declined") == 0;
                                coupon_invalid += strcmp(p->reason, "coupon_invalid") == 0;
                                timeouts += strcmp(p->reason, "timeout") == 0;
                        } else {
                                pending++;
                        }
                }
        }
        printf("%s: %d orders in %lld ms: %d replies (%d completed, %d cancelled: %d"
               " out_of_stock, %d insufficient_balance, %d payment_declined, %d coupon_invalid,"
               " %d timeout; %d pending), %d errors; charged %lld\n",
            mu_mode_name(mode), ORDERS, (long long) t_orders, ok, completed, cancelled,
            out_of_stock, insufficient, declined, coupon_invalid, timeouts, pending, errors,
            (long long) charged);

        /* Quiet: every order terminal, every outbox drained, nothing prepared. */
        assert_true(mu_wait_quiet(mc->hc, ds, RUN_BUDGET_MS - (mu_now_ms() - t0)));
        printf("%s: quiet after %lld ms\n", mu_mode_name(mode), (long long) (mu_now_ms() - t0));
        assert_true(mu_now_ms() - t0 <= RUN_BUDGET_MS);
        mu_totals_read(mc->hc, ds, &t);
        mu_totals_print(stdout, "after", &t);
        mu_dead_letters_print(stdout, mc->hc, ds);

        /* Every request answered, and the orders fail for every reason. */
        assert_true(errors * 50 <= ORDERS); /* at most 2% */
        assert_true(completed > 0);
        assert_true(out_of_stock > 0);
        assert_true(insufficient > 0);
        assert_true(declined > 0);

        /* Stock. */
        assert_int_equal(t.stock_negative, 0);
        assert_true(mu_totals_settled(&t));
        assert_int_equal(t.stock + t.sold, PRODUCTS * STOCK);
        assert_int_equal(t.sold, t.completed_quantity);
        /* Money. */
        assert_int_equal(t.balance_negative, 0);
        assert_int_equal(t.charges, USERS * BALANCE + charged);
        assert_int_equal(t.balance + t.completed_amount, t.charges);
        assert_int_equal(t.debits - t.refunds, t.completed_amount);
        /* Everything ends. */
        assert_int_equal(t.pending, 0);
        assert_int_equal(t.prepared, 0);
        assert_int_equal(t.outbox_pending, 0);
        assert_int_equal(t.dead_letters, 0);
        /* Payments, the data platform and coupons agree with the completed orders. */
        {
                char *completed_list = mu_completed_list(mc->hc, ds, mode);
                char *captured = mu_captured_list(mc->hc, ds);
                char *dp = mu_dp_list(mc->hc, ds);
                char *with_coupon = mu_strf(mu_db(mc->hc, ds, "order"),
                    "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM orders"
                    " WHERE status = 'COMPLETED' AND coupon_id IS NOT NULL");
                char *used = mu_strf(mu_db(mc->hc, ds, "user"),
                    "SELECT coalesce(string_agg(used_order_id::text, ',' ORDER BY"
                    " used_order_id), '') FROM user_coupons WHERE used_order_id IS NOT NULL");
                assert_int_equal(t.completed, t.captured);
                assert_int_equal(t.completed_amount, t.captured_amount);
                assert_string_equal(completed_list, captured);
                assert_string_equal(completed_list, dp);
                assert_string_equal(with_coupon, used);
                free(completed_list);
                free(captured);
                free(dp);
                free(with_coupon);
                free(used);
        }
        check_each(mc->hc, ds);
        /* Every reply that said terminal still holds, and every order is one of ours. */
        {
                int64_t max = 0;
                int *status_of = read_statuses(mc->hc, ds, &max);
                int64_t count = mu_i64f(mu_db(mc->hc, ds, "order"), "SELECT count(*) FROM orders");
                assert_int_equal(t.completed + t.cancelled, count);
                assert_true(count >= ok && count <= ORDERS);
                for (int i = 0; i < CLIENTS; i++) {
                        for (int k = 0; k < PER_CLIENT; k++) {
                                const placed *p = &clients[i].out[k];
                                if (p->st != RPC_OK || p->status == MU_PENDING) {
                                        continue;
                                }
                                assert_true(p->order_id > 0 && p->order_id <= max);
                                if (status_of[p->order_id] != p->status) {
                                        fail_msg("order %lld: replied %d, now %d",
                                            (long long) p->order_id, p->status,
                                            status_of[p->order_id]);
                                }
                        }
                }
                free(status_of);
        }
        mu_cluster_free(mc);
        g_mc = NULL;
}

static void
test_bank_saga(void **state)
{
        (void) state;
        run_bank(MU_SAGA);
}

static void
test_bank_2pc(void **state)
{
        (void) state;
        run_bank(MU_TPC);
}

static void
test_bank_monolith(void **state)
{
        (void) state;
        run_bank(MU_MONO);
}

static void
test_bank_orchestration(void **state)
{
        (void) state;
        run_bank(MU_ORCH);
}

static void
test_bank_tcc(void **state)
{
        (void) state;
        run_bank(MU_TCC);
}

/* argv[1]: the mode to run (saga, 2pc, monolith, orchestration, tcc), or nothing for all. */
int
main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_bank_saga, bank_teardown),
                cmocka_unit_test_teardown(test_bank_2pc, bank_teardown),
                cmocka_unit_test_teardown(test_bank_monolith, bank_teardown),
                cmocka_unit_test_teardown(test_bank_orchestration, bank_teardown),
                cmocka_unit_test_teardown(test_bank_tcc, bank_teardown),
        };
        int rc;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc > 1) {
                setenv("MERCATO_TEST_MODES", argv[1], 1);
        }
        rc = cmocka_run_group_tests_name("bank", tests, NULL, NULL);
        harness_cleanup();
        return rc;
}
