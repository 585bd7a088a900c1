/* test_reasons.c: a cancelled order says why, truly: no "timeout" that no clock ran out for.
 *
 * Three cases, on full clusters of the one test server:
 *
 *   shared server   two clusters on one PostgreSQL, both with the default coordinator id
 *                   "order" and order ids from 1. Cluster B's orders hold their user and
 *                   payment branches prepared (its product never votes in time) while
 *                   cluster A places the orders with the same ids. Prepared-transaction ids
 *                   are unique per server, so if the two coordinators drew the same GIDs,
 *                   A's prepares would fail ("transaction identifier is already in use")
 *                   and A's valid orders would be cancelled. Every A order must complete,
 *                   and every B order must end CANCELLED timeout: its vote really did not
 *                   come in time (its failure names product, DEADLINE_EXCEEDED), also when
 *                   the rollback cannot reach the product, still asleep, at once.
 *   no then yes     a business "no" (coupon_invalid, by the user.coupon switch) followed at
 *                   once by a valid order of another user, many times over, in every mode:
 *                   every valid order completes, every declined one says coupon_invalid.
 *   declines keep   100 declined orders in a row, in 2pc and in saga (out of stock, coupon
 *   breakers        invalid, insufficient balance, payment declined, in turn): a participant's
 *     closed        "no" is an answer, not a peer failure, so every breaker of every service
 *                   stays closed (Stats' peers: never opened, no peer failure), and the next
 *                   valid order completes.
 *   participant     a participant that answers Prepare with an error (a fault rule: UNAVAILABLE)
 *     error         cancels the order with reason participant_error, and the order records
 *                   which branch failed, with its status and message (GetOrder's failure,
 *                   `mercato txn show`). Nothing changed anywhere, and once the fault is
 *                   gone the next order completes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "modes_util.h"
#include "rpc.pb-c.h"

#define PRODUCTS 20
#define STOCK 1000
#define USERS 60
#define BALANCE 100000000
#define COUPON 1 /* FIXED: always takes something off */

/* Cluster B's coordinator waits this long for its product's vote, which never comes. */
#define B_PREPARE_TIMEOUT_MS 3000
/* Cluster B's orders in flight at once, and so the order ids A places into them. */
#define B_ORDERS 2

/* The "no then yes" rounds per mode. */
#define ROUNDS_TPC 100
#define ROUNDS_OTHER 30

#define QUIET_MS 60000

static const svc_seed seed = {
        .products = PRODUCTS,
        .stock = STOCK,
        .users = USERS,
        .balance = BALANCE,
        .coupons = 4,
        .coupon_quantity = 1000,
        .declining_users = 0,
        .seed = 5,
};

static const mu_item one_item[] = { { 3, 1 } };

/* The clusters of the running test, stopped by the teardown even when an assertion failed,
 * and cluster B's order threads, joined first. */
static mu_cluster *g_a;
static mu_cluster *g_b;
static pthread_t g_threads[8];
static int g_n_threads;

static int
case_teardown(void **state)
{
        (void) state;
        for (int i = 0; i < g_n_threads; i++) {
                pthread_join(g_threads[i], NULL);
        }
        g_n_threads = 0;
        mu_cluster_free(g_b);
        mu_cluster_free(g_a);
        g_a = g_b = NULL;
        return 0;
}

static const char *
status_name(int st)
{
        return st == MU_COMPLETED ? "COMPLETED" : st == MU_CANCELLED ? "CANCELLED" : "PENDING";
}

/* Fails the test unless r is an order that ended as wanted (reason NULL: COMPLETED). */
static void
expect_order(const char *what, const mu_result *r, const char *reason)
{
        if (r->st != RPC_OK) {
                fail_msg("%s: PlaceOrder failed: %s: %s", what, rpc_status_name(r->st), r->msg);
        }
        if (reason == NULL && r->status != MU_COMPLETED) {
                fail_msg("%s: order %lld: expected COMPLETED, got %s %s", what,
                    (long long) r->order_id, status_name(r->status), r->reason);
        }
        if (reason != NULL && (r->status != MU_CANCELLED || strcmp(r->reason, reason) != 0)) {
                fail_msg("%s: order %lld: expected CANCELLED %s, got %s %s", what,
                    (long long) r->order_id, reason, status_name(r->status), r->reason);
        }
}

/* Places an order in a mode and waits for it to be terminal (a saga may answer PENDING). */
static void
place_terminal(
    mu_cluster *mc, Mercato__Order__V1__Mode mode, int64_t user_id, int64_t coupon_id, mu_result *r)
{
        mu_place(mc->order, mode, user_id, one_item, 1, coupon_id, 20000, r);
        if (r->st == RPC_OK && r->status == MU_PENDING) {
                assert_true(mu_wait_terminal(mc->order, mode, r->order_id, 30000, r));
        }
}

/*
 * Two clusters, one server
 */
typedef struct b_order {
        mu_cluster *mc;
        int64_t user_id;
        mu_result r;
} b_order;

static void *
b_place(void *arg)
{
        b_order *b = arg;

        mu_place(b->mc->order, MU_TPC, b->user_id, one_item, 1, 0, 20000, &b->r);
        return NULL;
}

static int64_t
prepared_in(const char *conninfo)
{
        return mu_i64f(
            conninfo, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
}

static void
test_reasons_shared_server(void **state)
{
        char extra[256];
        static b_order bs[B_ORDERS];
        int64_t t0;

        (void) state;
        snprintf(extra, sizeof(extra),
            "[order]\nprepare_timeout_ms = %d\n[product]\nstep.reserve = timeout\n",
            B_PREPARE_TIMEOUT_MS);
        g_b = mu_cluster_start(extra, &seed);
        g_a = mu_cluster_start(NULL, &seed);
        /* Fresh clusters: both coordinators are "order", both number their orders from 1. */
        for (int i = 0; i < B_ORDERS; i++) {
                bs[i] = (b_order) { .mc = g_b, .user_id = 1 + i };
                assert_int_equal(pthread_create(&g_threads[i], NULL, b_place, &bs[i]), 0);
                g_n_threads++;
        }
        /* Until B's user and payment branches of all its orders are prepared. */
        t0 = mu_now_ms();
        while (prepared_in(mu_db(g_b->hc, MU_SPLIT, "user")) < B_ORDERS
            || prepared_in(mu_db(g_b->hc, MU_SPLIT, "payment")) < B_ORDERS) {
                if (mu_now_ms() - t0 > B_PREPARE_TIMEOUT_MS / 2) {
                        fail_msg("cluster B's branches did not prepare within %d ms: user %lld,"
                                 " payment %lld",
                            B_PREPARE_TIMEOUT_MS / 2,
                            (long long) prepared_in(mu_db(g_b->hc, MU_SPLIT, "user")),
                            (long long) prepared_in(mu_db(g_b->hc, MU_SPLIT, "payment")));
                }
                usleep(10 * 1000);
        }
        /* A's orders 1..B_ORDERS, while B's orders 1..B_ORDERS hold their branches. */
        for (int i = 0; i < B_ORDERS; i++) {
                mu_result r;
                mu_place(g_a->order, MU_TPC, 10 + i, one_item, 1, 0, 20000, &r);
                printf("  A: order %lld %s %s\n", (long long) r.order_id, status_name(r.status),
                    r.reason);
                expect_order("cluster A", &r, NULL);
        }
        assert_true(mu_now_ms() - t0 < B_PREPARE_TIMEOUT_MS); /* B still held them */
        for (int i = 0; i < B_ORDERS; i++) {
                pthread_join(g_threads[i], NULL);
                printf("  B: order %lld %s %s\n", (long long) bs[i].r.order_id,
                    status_name(bs[i].r.status), bs[i].r.reason);
                if (bs[i].r.status != MU_CANCELLED) {
                        harness_cluster_print_log(g_b->hc, "order");
                }
                expect_order("cluster B", &bs[i].r, "timeout");
                /* The order names the branch whose vote was late. */
                char *f = mu_strf(mu_db(g_b->hc, MU_SPLIT, "order"),
                    "SELECT failure_branch || '|' || failure_status FROM orders WHERE id = %lld",
                    (long long) bs[i].r.order_id);
                assert_string_equal(f, "product|DEADLINE_EXCEEDED");
                free(f);
        }
        g_n_threads = 0;
        assert_true(mu_wait_quiet(g_a->hc, MU_SPLIT, QUIET_MS));
        assert_true(mu_wait_quiet(g_b->hc, MU_SPLIT, QUIET_MS));
}

/*
 * A business "no", then a valid order, many times
 */
static void
test_reasons_no_then_yes(void **state)
{
        mu_totals t0, t;

        (void) state;
        g_a = mu_cluster_start("[user]\nstep.coupon = fail\n", &seed);
        for (int m = 0; m < MU_N_MODES; m++) {
                Mercato__Order__V1__Mode mode = mu_modes[m];
                mu_dataset ds = mu_dataset_of(mode);
                int rounds = mode == MU_TPC ? ROUNDS_TPC : ROUNDS_OTHER;
                int64_t ms0 = mu_now_ms();

                if (!mu_mode_selected(mode)) {
                        continue;
                }
                mu_totals_read(g_a->hc, ds, &t0); /* saga and 2pc share their dataset */
                for (int i = 0; i < rounds; i++) {
                        /* Users 1..USERS/2 decline, USERS/2+1.. order: the pairs differ. */
                        int64_t no_user = 1 + (i % (USERS / 2));
                        int64_t yes_user = 1 + USERS / 2 + (i % (USERS / 2));
                        char what[64];
                        mu_result r;

                        /* The declined order leaves the coupon unused: issue it once per
                         * dataset (saga and 2pc share one). */
                        if (i < USERS / 2) {
                                rpc_status st = mu_issue_coupon(g_a->user, ds, no_user, COUPON);
                                assert_true(st == RPC_OK || st == RPC_ALREADY_EXISTS);
                        }
                        place_terminal(g_a, mode, no_user, COUPON, &r);
                        snprintf(what, sizeof(what), "%s round %d, the no", mu_mode_name(mode), i);
                        expect_order(what, &r, "coupon_invalid");
                        place_terminal(g_a, mode, yes_user, 0, &r);
                        snprintf(what, sizeof(what), "%s round %d, the yes", mu_mode_name(mode), i);
                        expect_order(what, &r, NULL);
                }
                printf("  %-8s %d rounds in %lld ms\n", mu_mode_name(mode), rounds,
                    (long long) (mu_now_ms() - ms0));
                assert_true(mu_wait_quiet(g_a->hc, ds, QUIET_MS));
                mu_totals_read(g_a->hc, ds, &t);
                assert_int_equal(t.completed - t0.completed, rounds);
                assert_int_equal(t.cancelled - t0.cancelled, rounds);
                assert_int_equal(t.coupons_used, t0.coupons_used); /* no declined order used one */
                assert_int_equal(t.balance + t.completed_amount, t.charges);
                assert_int_equal(t.prepared, 0);
        }
}

/*
 * Declines leave the breakers closed
 */
#define DECLINES 100
#define D_USERS 40
#define D_POOR 4      /* users 33..36 start with balance 0 */
#define D_DECLINING 4 /* users 37..40 have payments that decline */
#define D_UNISSUED 2  /* a coupon no user holds */

static const svc_seed decline_seed = {
        .products = PRODUCTS,
        .stock = STOCK,
        .users = D_USERS,
        .balance = BALANCE,
        .coupons = 4,
        .coupon_quantity = 1000,
        .declining_users = D_DECLINING,
        .poor_users = D_POOR,
        .seed = 6,
};

/* The i-th declined order of a run: who places what, and the reason it must end with. */
static const char *
place_declined(mu_cluster *mc, Mercato__Order__V1__Mode mode, int i, mu_result *r)
{
        int64_t user = 1 + (i % 8);
        mu_item too_many = { 3, STOCK + 1 };

        switch (i % 4) {
        case 0:
                mu_place(mc->order, mode, user, &too_many, 1, 0, 20000, r);
                break;
        case 1:
                mu_place(mc->order, mode, user, one_item, 1, D_UNISSUED, 20000, r);
                break;
        case 2:
                user = D_USERS - D_DECLINING - D_POOR + 1 + (i / 4) % D_POOR;
                mu_place(mc->order, mode, user, one_item, 1, 0, 20000, r);
                break;
        default:
                user = D_USERS - D_DECLINING + 1 + (i / 4) % D_DECLINING;
                mu_place(mc->order, mode, user, one_item, 1, 0, 20000, r);
                break;
        }
        if (r->st == RPC_OK && r->status == MU_PENDING) {
                assert_true(mu_wait_terminal(mc->order, mode, r->order_id, 30000, r));
        }
        static const char *const reasons[]
            = { "out_of_stock", "coupon_invalid", "insufficient_balance", "payment_declined" };
        return reasons[i % 4];
}

/* The service of the cluster at a url, for the printout. */
static const char *
service_at(const mu_cluster *mc, const char *url)
{
        static const char *const names[]
            = { "product", "cart", "user", "payment", "dataplatform", "order" };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                const char *a = harness_cluster_address(mc->hc, names[i]);
                if (a != NULL && strcmp(a, url) == 0) {
                        return names[i];
                }
        }
        return url;
}

/* Fails unless every client of the service's process has a closed breaker that never opened
 * and never saw a peer failure. Returns how many attempts its clients made. */
static uint64_t
expect_breakers_closed(const mu_cluster *mc, const char *service)
{
        Mercato__Rpc__V1__StatsRequest req = MERCATO__RPC__V1__STATS_REQUEST__INIT;
        ProtobufCMessage *msg = NULL;
        rpc_client *cl = mu_client(mc->hc, service);
        rpc_error err;
        uint64_t attempts = 0;

        assert_int_equal(rpc_client_call(cl, "/mercato.rpc.v1.StandardService/Stats", &req.base,
                             &mercato__rpc__v1__stats_response__descriptor, &msg, NULL, &err),
            RPC_OK);
        Mercato__Rpc__V1__StatsResponse *sr = (Mercato__Rpc__V1__StatsResponse *) msg;
        for (size_t i = 0; i < sr->n_peers; i++) {
                const Mercato__Rpc__V1__PeerStats *p = sr->peers[i];
                printf("  %-8s -> %-12s %-9s opens %llu, %4llu attempts, %llu peer failures\n",
                    service, service_at(mc, p->url), p->breaker,
                    (unsigned long long) p->breaker_opens, (unsigned long long) p->attempts,
                    (unsigned long long) p->peer_failures);
                if (strcmp(p->breaker, "closed") != 0 || p->breaker_opens != 0
                    || p->peer_failures != 0) {
                        fail_msg("%s's breaker for %s: %s, opened %llu times, %llu peer failures",
                            service, p->url, p->breaker, (unsigned long long) p->breaker_opens,
                            (unsigned long long) p->peer_failures);
                }
                attempts += p->attempts;
        }
        protobuf_c_message_free_unpacked(msg, NULL);
        rpc_client_free(cl);
        return attempts;
}

static void
test_reasons_declines_keep_breakers_closed(void **state)
{
        static const Mercato__Order__V1__Mode modes[] = { MU_TPC, MU_SAGA };
        static const char *const services[] = { "order", "product", "user", "payment", "cart" };

        (void) state;
        g_a = mu_cluster_start(NULL, &decline_seed);
        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
                Mercato__Order__V1__Mode mode = modes[m];
                uint64_t attempts = 0;
                mu_result r;

                if (!mu_mode_selected(mode)) {
                        continue;
                }
                for (int i = 0; i < DECLINES; i++) {
                        char what[64];
                        const char *reason = place_declined(g_a, mode, i, &r);

                        snprintf(what, sizeof(what), "%s decline %d", mu_mode_name(mode), i);
                        expect_order(what, &r, reason);
                }
                printf("  %s: %d declined orders in a row\n", mu_mode_name(mode), DECLINES);
                assert_true(mu_wait_quiet(g_a->hc, MU_SPLIT, QUIET_MS));
                for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
                        attempts += expect_breakers_closed(g_a, services[i]);
                }
                /* The breakers were in use: the declines went through them. */
                assert_true(attempts >= DECLINES);
                place_terminal(g_a, mode, 9, 0, &r);
                expect_order("the valid order after the declines", &r, NULL);
        }
}

/*
 * A participant that errs
 */

static void
reconfigure(mu_cluster *mc, const char *service, const char *settings)
{
        FILE *f = fopen(mc->hc->conf_path, "a");

        assert_non_null(f);
        fprintf(f, "\n[%s]\n%s\n", service, settings);
        fclose(f);
        harness_cluster_restart(mc->hc, service);
}

static void
test_reasons_participant_error(void **state)
{
        const char *order_db;
        char out[8192];
        char cmd[256];
        char *before, *after, *s;
        mu_result r;

        (void) state;
        g_a = mu_cluster_start(NULL, &seed);
        order_db = mu_db(g_a->hc, MU_SPLIT, "order");
        reconfigure(
            g_a, "payment", "faults = /mercato.txn.v1.Participant/Prepare fail 1.0 UNAVAILABLE");
        assert_true(mu_wait_quiet(g_a->hc, MU_SPLIT, QUIET_MS));
        before = mu_snapshot(g_a->hc, MU_SPLIT);
        mu_place(g_a->order, MU_TPC, 7, one_item, 1, 0, 20000, &r);
        expect_order("payment erring", &r, "participant_error");

        /* The order says which branch failed, and how. */
        s = mu_strf(order_db,
            "SELECT failure_branch || '|' || failure_status || '|' || failure_message"
            " FROM orders WHERE id = %lld",
            (long long) r.order_id);
        printf("  failure: %s\n", s);
        assert_non_null(strstr(s, "payment|UNAVAILABLE|"));
        free(s);
        snprintf(cmd, sizeof(cmd), "--json order get %lld", (long long) r.order_id);
        assert_int_equal(harness_cli(g_a->hc, out, sizeof(out), "%s", cmd), 0);
        assert_non_null(strstr(out, "\"failure\""));
        assert_non_null(strstr(out, "\"UNAVAILABLE\""));
        s = mu_strf(
            order_db, "SELECT gid FROM txn_tpc_log WHERE txid = %lld", (long long) r.order_id);
        snprintf(cmd, sizeof(cmd), "txn show %s", s);
        free(s);
        assert_int_equal(harness_cli(g_a->hc, out, sizeof(out), "%s", cmd), 0);
        printf("%s", out);
        assert_non_null(strstr(out, "decision  abort participant_error"));
        assert_non_null(strstr(out, "failure   payment: UNAVAILABLE:"));

        /* Nothing changed, nothing is left prepared. */
        assert_true(mu_wait_quiet(g_a->hc, MU_SPLIT, QUIET_MS));
        after = mu_snapshot(g_a->hc, MU_SPLIT);
        assert_string_equal(before, after);
        free(before);
        free(after);

        /* The fault gone, the next order completes. */
        reconfigure(g_a, "payment", "faults =");
        mu_place(g_a->order, MU_TPC, 8, one_item, 1, 0, 20000, &r);
        expect_order("payment back", &r, NULL);
        assert_int_equal(
            mu_i64f(order_db, "SELECT count(*) FROM orders WHERE id = %lld AND failure_branch = ''",
                (long long) r.order_id),
            1);
}

/* argv[1], if given: run only the tests whose name matches this cmocka pattern
 * ("*shared_server", to loop the reproducer). */
int
main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_reasons_shared_server, case_teardown),
                cmocka_unit_test_teardown(test_reasons_no_then_yes, case_teardown),
                cmocka_unit_test_teardown(
                    test_reasons_declines_keep_breakers_closed, case_teardown),
                cmocka_unit_test_teardown(test_reasons_participant_error, case_teardown),
        };
        int failed;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc > 1) {
                cmocka_set_test_filter(argv[1]);
        }
        failed = cmocka_run_group_tests_name("reasons", tests, NULL, NULL);
        harness_cleanup();
        return failed;
}
