/* test_orch.c: the orchestrated saga, or TCC, on a real cluster: the log, repeated and early
 * commands, bad commands, a participant paused, and the coordinator killed at every point.
 *
 * argv[1] is the mode: orchestration (test_orch) or tcc (test_tcc). Both run on the
 * orchestrator's log; TCC's commands are try, confirm and cancel, and its tries set amounts
 * aside (held, frozen, authorised) instead of spending them.
 *
 * One cluster for the group, with a short saga deadline and a fast recovery scan. After
 * each test the split dataset must be quiet and whole: no order pending, no saga
 * unfinished, nothing held, every completed order paid once and recorded once, the ledgers
 * summing up, and `mercato check` passing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.pb-c.h"
#include "modes_util.h"
#include "orders_util.h"
#include "product.pb-c.h"
#include "txn.pb-c.h"
#include "user.pb-c.h"

#define RUN "/mercato.txn.v1.SagaParticipant/Run"

#define PRODUCTS 10
#define STOCK 100
#define USERS 20
#define BALANCE 1000000
#define SEED 5

/* Users 19 and 20 have payments that decline. */
#define DECLINING_USER 19

#define SAGA_TIMEOUT_MS 4000
#define QUIET_MS 60000
#define TERMINAL_MS 60000

#define TOPOLOGY                                                                                   \
        "[order]\n"                                                                                \
        "saga_timeout_ms = 4000\n"                                                                 \
        "saga_scan_ms = 200\n"                                                                     \
        "orch_stuck_after = 2\n"

static const svc_seed seed = {
        .products = PRODUCTS,
        .stock = STOCK,
        .users = USERS,
        .balance = BALANCE,
        .coupons = 4,
        .coupon_quantity = 100,
        .declining_users = 2,
        .seed = SEED,
};

static mu_cluster *g_mc;

/* The mode under test: MU_ORCH or MU_TCC (main sets it). */
static Mercato__Order__V1__Mode g_mode = MU_ORCH;
static bool g_tcc;

static const char *
db(const char *service)
{
        return mu_db(g_mc->hc, MU_SPLIT, service);
}

static int
group_setup(void **state)
{
        (void) state;
        setvbuf(stdout, NULL, _IOLBF, 0);
        g_mc = mu_cluster_start(TOPOLOGY, &seed);
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        mu_cluster_free(g_mc);
        harness_cleanup();
        return 0;
}

/* Appends settings to a service's section of the topology and restarts it. */
static void
reconfigure(const char *service, const char *settings)
{
        FILE *f = fopen(g_mc->hc->conf_path, "a");

        assert_non_null(f);
        fprintf(f, "\n[%s]\n%s\n", service, settings);
        fclose(f);
        harness_cluster_restart(g_mc->hc, service);
}

/* The dataset is quiet and whole (see the top), and `mercato check` agrees. */
static void
assert_whole(void)
{
        harness_cluster *hc = g_mc->hc;
        char *completed, *captured, *dp;
        char out[8192];
        mu_totals t;
        int rc;

        assert_true(mu_wait_quiet(hc, MU_SPLIT, QUIET_MS));
        mu_totals_read(hc, MU_SPLIT, &t);
        mu_totals_print(stdout, "split", &t);
        mu_dead_letters_print(stdout, hc, MU_SPLIT);
        completed = mu_completed_list(hc, MU_SPLIT, MERCATO__ORDER__V1__MODE__MODE_UNSPECIFIED);
        captured = mu_captured_list(hc, MU_SPLIT);
        dp = mu_dp_list(hc, MU_SPLIT);
        assert_string_equal(completed, captured);
        assert_string_equal(completed, dp);
        free(completed);
        free(captured);
        free(dp);
        assert_int_equal(t.pending, 0);
        assert_int_equal(t.outbox_pending, 0);
        assert_int_equal(t.dead_letters, 0);
        assert_true(mu_totals_settled(&t));
        assert_int_equal(t.stock_negative, 0);
        assert_int_equal(t.balance_negative, 0);
        assert_int_equal(t.stock + t.sold, PRODUCTS * STOCK);
        assert_int_equal(t.sold, t.completed_quantity);
        assert_int_equal(t.balance + t.completed_amount, t.charges);
        assert_int_equal(t.debits - t.refunds, t.completed_amount);
        assert_int_equal(mu_i64f(db("order"),
                             "SELECT count(*) FROM orch_saga WHERE state IN ('forward', "
                             "'backward', 'confirming')"),
            0);
        rc = harness_cli(hc, out, sizeof(out), "check");
        if (rc != 0) {
                fail_msg("mercato check exited %d:\n%s", rc, out);
        }
}

/* Places one orchestrated order of product 1 x 2 and product 2 x 1. */
static void
place(int64_t user_id, int64_t timeout_ms, mu_result *r)
{
        static const mu_item items[] = { { 1, 2 }, { 2, 1 } };

        mu_place(g_mc->order, g_mode, user_id, items, 2, 0, timeout_ms, r);
}

/* Waits for an order to end and checks how. */
static void
expect_end(int64_t order_id, int status, const char *reason)
{
        mu_result r;

        if (!mu_wait_terminal(g_mc->order, g_mode, order_id, TERMINAL_MS, &r)) {
                fail_msg("order %lld still pending after %d ms", (long long) order_id, TERMINAL_MS);
        }
        if (r.status != status || strcmp(r.reason, reason) != 0) {
                fail_msg("order %lld: expected %d '%s', got %d '%s'", (long long) order_id, status,
                    reason, r.status, r.reason);
        }
        assert_int_equal(r.mode, (int) g_mode);
}

/*
 * The happy path and its log
 */

static void
test_orch_happy_path_log(void **state)
{
        mu_result r;

        (void) state;
        place(1, 10000, &r);
        assert_int_equal(r.st, RPC_OK);
        assert_int_equal(r.status, MU_COMPLETED);
        assert_int_equal(r.mode, (int) g_mode);
        char *saga_state = mu_strf(db("order"), "SELECT state FROM orch_saga WHERE order_id = %lld",
            (long long) r.order_id);
        assert_string_equal(saga_state, "completed");
        free(saga_state);
        /* Each step sent once; in tcc each branch tried once and confirmed once. */
        assert_int_equal(mu_i64f(db("order"),
                             "SELECT count(*) FROM orch_step WHERE order_id = %lld"
                             " AND state = '%s' AND attempts = 1 AND compensations = %d",
                             (long long) r.order_id, g_tcc ? "confirmed" : "done", g_tcc ? 1 : 0),
            3);
        assert_whole();
}

/*
 * The participants' side of a command
 */

/* Sends one command to a participant; *ret is its reply on OK. */
static rpc_status
run(const char *service, const char *action, int64_t order_id, int64_t user_id, bool mono,
    bool with_order, Mercato__Txn__V1__SagaCommandReply *ret)
{
        Mercato__Txn__V1__SagaCommand cmd = MERCATO__TXN__V1__SAGA_COMMAND__INIT;
        Mercato__Event__V1__SagaOrder so = MERCATO__EVENT__V1__SAGA_ORDER__INIT;
        Mercato__Event__V1__SagaOrder__Line line = MERCATO__EVENT__V1__SAGA_ORDER__LINE__INIT;
        Mercato__Event__V1__SagaOrder__Line *lines[] = { &line };
        rpc_client *c = mu_client(g_mc->hc, service);
        ProtobufCMessage *resp = NULL;
        char msg[256];
        rpc_status st;

        line.product_id = 3;
        line.quantity = 2;
        line.unit_price = 100;
        so.order_id = order_id;
        so.user_id = user_id;
        so.total = 200;
        so.amount = 200;
        so.items = lines;
        so.n_items = 1;
        cmd.action = (char *) action;
        cmd.order = with_order ? &so : NULL;
        st = ou_call(c, RUN, &cmd.base, &mercato__txn__v1__saga_command_reply__descriptor, &resp,
            mono, msg, sizeof(msg));
        if (st == RPC_OK) {
                const Mercato__Txn__V1__SagaCommandReply *r
                    = (const Mercato__Txn__V1__SagaCommandReply *) resp;
                *ret = (Mercato__Txn__V1__SagaCommandReply) { .done = r->done,
                        .duplicate = r->duplicate,
                        .discount = r->discount,
                        .reason = strdup(r->reason) };
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        rpc_client_free(c);
        return st;
}

/* A command that must answer OK with done, duplicate and reason as given. */
static void
expect_run(const char *service, const char *action, int64_t order_id, bool done, bool duplicate,
    const char *reason)
{
        Mercato__Txn__V1__SagaCommandReply r;

        assert_int_equal(run(service, action, order_id, 5, false, true, &r), RPC_OK);
        if (r.done != done || r.duplicate != duplicate || strcmp(r.reason, reason) != 0) {
                fail_msg("%s %s %lld: done %d duplicate %d reason '%s', expected %d %d '%s'",
                    service, action, (long long) order_id, r.done, r.duplicate, r.reason, done,
                    duplicate, reason);
        }
        free(r.reason);
}

static int64_t
stock3(void)
{
        return mu_i64f(db("product"), "SELECT stock FROM products WHERE id = 3");
}

static int64_t
balance5(void)
{
        return mu_i64f(db("user"), "SELECT balance FROM users WHERE id = 5");
}

/* Every command twice: the second is answered as the first, and changes nothing. */
static void
test_orch_commands_twice(void **state)
{
        int64_t stock = stock3(), balance = balance5();

        (void) state;
        for (int i = 0; i < 2; i++) {
                expect_run("product", "reserve", 900001, true, i == 1, "");
                expect_run("user", "debit", 900001, true, i == 1, "");
                expect_run("payment", "capture", 900001, true, i == 1, "");
                assert_int_equal(stock3(), stock - 2);
                assert_int_equal(balance5(), balance - 200);
                assert_int_equal(mu_i64f(db("payment"),
                                     "SELECT count(*) FROM payments WHERE order_id = 900001"
                                     " AND status = 'captured'"),
                    1);
        }
        for (int i = 0; i < 2; i++) {
                expect_run("payment", "refund", 900001, true, i == 1, "");
                expect_run("user", "refund", 900001, true, i == 1, "");
                expect_run("product", "release", 900001, true, i == 1, "");
                assert_int_equal(stock3(), stock);
                assert_int_equal(balance5(), balance);
        }
        /* The step again after its compensation: answered as it was the first time. */
        expect_run("product", "reserve", 900001, true, true, "");
        assert_int_equal(stock3(), stock);
        assert_whole();
}

/* A compensation before its step is recorded, and the late step is refused. */
static void
test_orch_compensation_first(void **state)
{
        char *before = mu_snapshot(g_mc->hc, MU_SPLIT);
        char *after;

        (void) state;
        expect_run("product", "release", 900002, true, false, "");
        expect_run("user", "refund", 900002, true, false, "");
        expect_run("payment", "refund", 900002, true, false, "");
        expect_run("product", "reserve", 900002, false, true, "compensated");
        expect_run("user", "debit", 900002, false, true, "compensated");
        expect_run("payment", "capture", 900002, false, true, "compensated");
        after = mu_snapshot(g_mc->hc, MU_SPLIT);
        assert_string_equal(before, after);
        free(before);
        free(after);
        assert_whole();
}

static int64_t
held3(void)
{
        return mu_i64f(db("product"), "SELECT held FROM products WHERE id = 3");
}

static int64_t
frozen5(void)
{
        return mu_i64f(db("user"), "SELECT frozen FROM users WHERE id = 5");
}

static int64_t
payment_count(int64_t order_id, const char *status)
{
        return mu_i64f(db("payment"),
            "SELECT count(*) FROM payments WHERE order_id = %lld AND status = '%s'",
            (long long) order_id, status);
}

/* The public reads of product 3 and user 5: their totals and available amounts. */
static void
public_reads(int64_t *stock, int64_t *stock_available, int64_t *balance, int64_t *balance_available)
{
        Mercato__Product__V1__GetProductRequest pr
            = MERCATO__PRODUCT__V1__GET_PRODUCT_REQUEST__INIT;
        Mercato__User__V1__GetBalanceRequest br = MERCATO__USER__V1__GET_BALANCE_REQUEST__INIT;
        rpc_client *c = mu_client(g_mc->hc, "product");
        ProtobufCMessage *resp = NULL;
        char msg[256];

        pr.product_id = 3;
        assert_int_equal(ou_call(c, "/mercato.product.v1.ProductService/GetProduct", &pr.base,
                             &mercato__product__v1__get_product_response__descriptor, &resp, false,
                             msg, sizeof(msg)),
            RPC_OK);
        const Mercato__Product__V1__Product *p
            = ((const Mercato__Product__V1__GetProductResponse *) resp)->product;
        assert_non_null(p);
        *stock = p->stock;
        *stock_available = p->available;
        protobuf_c_message_free_unpacked(resp, NULL);
        rpc_client_free(c);
        c = mu_client(g_mc->hc, "user");
        br.user_id = 5;
        assert_int_equal(
            ou_call(c, "/mercato.user.v1.UserService/GetBalance", &br.base,
                &mercato__user__v1__balance__descriptor, &resp, false, msg, sizeof(msg)),
            RPC_OK);
        *balance = ((const Mercato__User__V1__Balance *) resp)->balance;
        *balance_available = ((const Mercato__User__V1__Balance *) resp)->available;
        protobuf_c_message_free_unpacked(resp, NULL);
        rpc_client_free(c);
}

/* Asserts what GetProduct and GetBalance report: the totals, and the available amounts
 * less what is set aside. */
static void
expect_public(int64_t stock, int64_t held, int64_t balance, int64_t frozen)
{
        int64_t s, sa, b, ba;

        public_reads(&s, &sa, &b, &ba);
        assert_int_equal(s, stock);
        assert_int_equal(sa, stock - held);
        assert_int_equal(b, balance);
        assert_int_equal(ba, balance - frozen);
}

/* TCC: every phase twice. The tries set aside (the totals stay, the available amounts fall)
 * and the confirms spend; the repeats are answered as the first and change nothing. A
 * second order is tried and cancelled twice, and everything is as before it. */
static void
test_tcc_commands_twice(void **state)
{
        static const char *const services[] = { "product", "user", "payment" };
        int64_t stock = stock3(), balance = balance5();

        (void) state;
        for (int i = 0; i < 2; i++) {
                for (size_t k = 0; k < 3; k++) {
                        expect_run(services[k], "try", 900011, true, i == 1, "");
                }
                assert_int_equal(stock3(), stock);
                assert_int_equal(held3(), 2);
                assert_int_equal(balance5(), balance);
                assert_int_equal(frozen5(), 200);
                assert_int_equal(payment_count(900011, "authorized"), 1);
                expect_public(stock, 2, balance, 200);
        }
        for (int i = 0; i < 2; i++) {
                for (size_t k = 0; k < 3; k++) {
                        expect_run(services[k], "confirm", 900011, true, i == 1, "");
                }
                assert_int_equal(stock3(), stock - 2);
                assert_int_equal(held3(), 0);
                assert_int_equal(balance5(), balance - 200);
                assert_int_equal(frozen5(), 0);
                assert_int_equal(payment_count(900011, "captured"), 1);
                expect_public(stock - 2, 0, balance - 200, 0);
                assert_int_equal(mu_i64f(db("user"),
                                     "SELECT count(*) FROM ledger WHERE order_id = 900011"
                                     " AND kind = 'debit' AND amount = 200"),
                    1);
        }
        /* The try again after its confirm: answered as the first time, nothing held. */
        expect_run("product", "try", 900011, true, true, "");
        assert_int_equal(held3(), 0);
        /* Undo the order by hand (a refund is not a TCC phase): the sale, the debit. */
        expect_run("payment", "refund", 900011, true, false, "");
        assert_int_equal(mu_i64f(db("product"),
                             "WITH r AS (UPDATE reservations SET status = 'released'"
                             " WHERE order_id = 900011 RETURNING quantity)"
                             " UPDATE products SET stock = stock + (SELECT sum(quantity) FROM r)"
                             " WHERE id = 3 RETURNING stock"),
            stock);
        expect_run("user", "refund", 900011, true, false, "");
        assert_int_equal(balance5(), balance);

        char *before = mu_snapshot(g_mc->hc, MU_SPLIT);
        for (size_t k = 0; k < 3; k++) {
                expect_run(services[k], "try", 900012, true, false, "");
        }
        for (int i = 0; i < 2; i++) {
                for (size_t k = 3; k-- > 0;) {
                        expect_run(services[k], "cancel", 900012, true, i == 1, "");
                }
        }
        assert_int_equal(payment_count(900012, "voided"), 1);
        char *after = mu_snapshot(g_mc->hc, MU_SPLIT);
        assert_string_equal(before, after);
        free(before);
        free(after);
        /* A confirm after the cancel finds nothing tried: refused, nothing changed. */
        Mercato__Txn__V1__SagaCommandReply r;
        for (size_t k = 0; k < 3; k++) {
                assert_int_equal(run(services[k], "confirm", 900012, 5, false, true, &r),
                    RPC_FAILED_PRECONDITION);
        }
        assert_whole();
}

/* TCC: a cancel before its try is recorded, and the late try is refused and holds nothing. */
static void
test_tcc_cancel_first(void **state)
{
        static const char *const services[] = { "product", "user", "payment" };
        char *before = mu_snapshot(g_mc->hc, MU_SPLIT);
        char *after;

        (void) state;
        for (size_t k = 0; k < 3; k++) {
                expect_run(services[k], "cancel", 900013, true, false, "");
        }
        for (size_t k = 0; k < 3; k++) {
                expect_run(services[k], "try", 900013, false, true, "compensated");
        }
        after = mu_snapshot(g_mc->hc, MU_SPLIT);
        assert_string_equal(before, after);
        assert_int_equal(held3(), 0);
        assert_int_equal(frozen5(), 0);
        free(before);
        free(after);
        assert_whole();
}

/* The forward action of participant i (0 product, 1 user, 2 payment) in the mode. */
static const char *
step_action(size_t i)
{
        return g_tcc ? "try" : i == 0 ? "reserve" : i == 1 ? "debit" : "capture";
}

/* Unknown actions, a command without its order, the monolith dataset: each a clear error,
 * nothing changed, every participant still up. */
static void
test_orch_bad_commands(void **state)
{
        static const char *const services[] = { "product", "user", "payment" };
        char *before = mu_snapshot(g_mc->hc, MU_SPLIT);
        Mercato__Txn__V1__SagaCommandReply r;
        char *after;

        (void) state;
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(
                    run(services[i], "explode", 900003, 5, false, true, &r), RPC_INVALID_ARGUMENT);
                assert_int_equal(
                    run(services[i], "", 900003, 5, false, true, &r), RPC_INVALID_ARGUMENT);
                assert_int_equal(run(services[i], step_action(i), 900003, 5, false, false, &r),
                    RPC_INVALID_ARGUMENT);
                assert_int_equal(run(services[i], step_action(i), 900003, 5, true, true, &r),
                    RPC_FAILED_PRECONDITION);
                assert_int_equal(run(services[i],
                                     g_tcc        ? "cancel"
                                         : i == 0 ? "reserve"
                                                  : "refund",
                                     -1, 5, false, true, &r),
                    RPC_INVALID_ARGUMENT);
                assert_int_equal(run(services[i], step_action(i), 900003, -5, false, true, &r),
                    RPC_INVALID_ARGUMENT);
                assert_true(harness_cluster_alive(g_mc->hc, services[i]));
        }
        after = mu_snapshot(g_mc->hc, MU_SPLIT);
        assert_string_equal(before, after);
        free(before);
        free(after);
        assert_whole();
}

/*
 * A participant paused
 */

typedef struct placing {
        int64_t user_id;
        mu_result r;
} placing;

static void *
place_thread(void *arg)
{
        placing *p = arg;

        place(p->user_id, 20000, &p->r);
        return NULL;
}

/* Payment stopped (SIGSTOP) for a second, well inside the deadline: the capture waits and
 * the order completes. */
static void
test_orch_participant_paused(void **state)
{
        placing p = { .user_id = 2 };
        pthread_t t;

        (void) state;
        harness_cluster_signal(g_mc->hc, "payment", SIGSTOP);
        assert_int_equal(pthread_create(&t, NULL, place_thread, &p), 0);
        usleep(1000 * 1000);
        harness_cluster_signal(g_mc->hc, "payment", SIGCONT);
        pthread_join(t, NULL);
        assert_int_equal(p.r.st, RPC_OK);
        expect_end(p.r.order_id, MU_COMPLETED, "");
        assert_whole();
}

/* Payment stopped past the deadline: the saga goes backward with reason timeout, the
 * capture's compensation waits for payment, `mercato txn list` shows it stuck (after
 * orch_stuck_after = 2 sends), `txn resolve ORDER retry` drives it once payment is back,
 * and the order ends CANCELLED with nothing left anywhere. */
static void
test_orch_participant_down_past_deadline(void **state)
{
        char *before = mu_snapshot(g_mc->hc, MU_SPLIT);
        char *after;
        mu_result r;

        (void) state;
        harness_cluster_signal(g_mc->hc, "payment", SIGSTOP);
        place(3, SAGA_TIMEOUT_MS + 2000, &r);
        assert_int_equal(r.st, RPC_OK);
        /* Backward, its capture's compensation unanswered: listed, then stuck. */
        char out[16384], line[64];
        bool stuck = false;
        snprintf(line, sizeof(line), "order %-10lld", (long long) r.order_id);
        for (int i = 0; i < 100 && !stuck; i++) {
                assert_int_equal(harness_cli(g_mc->hc, out, sizeof(out), "txn list"), 0);
                const char *at = strstr(out, line);
                stuck = at != NULL && strstr(at, "backward timeout STUCK") != NULL;
                if (!stuck) {
                        usleep(200 * 1000);
                }
        }
        if (!stuck) {
                fail_msg("order %lld never listed stuck:\n%s", (long long) r.order_id, out);
        }
        assert_int_equal(
            harness_cli(g_mc->hc, out, sizeof(out), "txn show %lld", (long long) r.order_id), 0);
        assert_non_null(
            strstr(out, g_tcc ? "tcc       backward timeout" : "saga      backward timeout"));
        assert_non_null(strstr(out, "capture  compensating"));
        assert_int_equal(harness_cli(g_mc->hc, out, sizeof(out), "txn resolve %lld commit",
                             (long long) r.order_id),
            2);
        /* Due now, while payment is still stopped: the saga cannot have ended. */
        assert_int_equal(harness_cli(g_mc->hc, out, sizeof(out), "txn resolve %lld retry",
                             (long long) r.order_id),
            0);
        harness_cluster_signal(g_mc->hc, "payment", SIGCONT);
        expect_end(r.order_id, MU_CANCELLED, "timeout");
        assert_true(mu_wait_quiet(g_mc->hc, MU_SPLIT, QUIET_MS));
        after = mu_snapshot(g_mc->hc, MU_SPLIT);
        assert_string_equal(before, after);
        free(before);
        free(after);
        assert_true(mu_i64f(db("order"),
                        "SELECT compensations FROM orch_step WHERE order_id = %lld AND step = 3",
                        (long long) r.order_id)
            >= 1);
        assert_whole();
}

/*
 * The orchestrator killed at every point
 */

/* Kills the order service at point with one order of user_id in flight, restarts it
 * without the point, and checks that the order ends as expected and the data is whole. */
static void
crash_case(const char *point, int64_t user_id, int status, const char *reason)
{
        int64_t t0 = mu_now_ms();
        char settings[128];
        int64_t order_id;
        mu_result r;

        snprintf(settings, sizeof(settings), "orch_crash_at = %s", point);
        reconfigure("order", settings);
        place(user_id, 5000, &r);
        assert_int_not_equal(r.st, RPC_OK);
        for (int i = 0; i < 50 && harness_cluster_alive(g_mc->hc, "order"); i++) {
                usleep(100 * 1000);
        }
        if (harness_cluster_alive(g_mc->hc, "order")) {
                harness_cluster_print_log(g_mc->hc, "order");
                fail_msg("the orchestrator did not crash at %s: %s %s", point,
                    rpc_status_name(r.st), r.msg);
        }
        order_id = mu_i64f(db("order"), "SELECT max(id) FROM orders");
        reconfigure("order", "orch_crash_at = none");
        expect_end(order_id, status, reason);
        printf("  crash at %-17s order %lld %s %s (%lld ms)\n", point, (long long) order_id,
            status == MU_COMPLETED ? "COMPLETED" : "CANCELLED", reason,
            (long long) (mu_now_ms() - t0));
        assert_whole();
}

static void
test_orch_crash_forward(void **state)
{
        static const char *const points[] = { "sent:reserve", "answered:reserve", "sent:debit",
                "answered:debit", "sent:capture", "answered:capture", "finish" };
        /* TCC: the tries, the decision, each confirm, the end. */
        static const char *const tcc_points[] = { "sent:reserve", "answered:reserve", "sent:debit",
                "answered:debit", "sent:capture", "answered:capture", "decide", "confirm:reserve",
                "confirm:debit", "confirm:capture", "finish" };
        const char *const *p = g_tcc ? tcc_points : points;
        size_t n = g_tcc ? sizeof(tcc_points) / sizeof(tcc_points[0])
                         : sizeof(points) / sizeof(points[0]);

        (void) state;
        for (size_t i = 0; i < n; i++) {
                crash_case(p[i], 4 + (int64_t) i, MU_COMPLETED, "");
        }
}

/* A declining user: the capture is refused and the saga compensates backward. */
static void
test_orch_crash_backward(void **state)
{
        static const char *const points[]
            = { "answered:capture", "undo:debit", "undo:reserve", "finish" };

        (void) state;
        for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
                crash_case(points[i], DECLINING_USER, MU_CANCELLED, "payment_declined");
        }
}

/* A paused participant goes on, whatever the test asserted. */
static int
resume_payment(void **state)
{
        (void) state;
        harness_cluster_signal(g_mc->hc, "payment", SIGCONT);
        return 0;
}

/* argv[1]: orchestration or tcc. */
int
main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_orch_happy_path_log),
                cmocka_unit_test(test_orch_commands_twice),
                cmocka_unit_test(test_orch_compensation_first),
                cmocka_unit_test(test_orch_bad_commands),
                cmocka_unit_test_teardown(test_orch_participant_paused, resume_payment),
                cmocka_unit_test_teardown(test_orch_participant_down_past_deadline, resume_payment),
                cmocka_unit_test(test_orch_crash_forward),
                cmocka_unit_test(test_orch_crash_backward),
        };
        const struct CMUnitTest tcc_tests[] = {
                cmocka_unit_test(test_orch_happy_path_log),
                cmocka_unit_test(test_tcc_commands_twice),
                cmocka_unit_test(test_tcc_cancel_first),
                cmocka_unit_test(test_orch_bad_commands),
                cmocka_unit_test_teardown(test_orch_participant_paused, resume_payment),
                cmocka_unit_test_teardown(test_orch_participant_down_past_deadline, resume_payment),
                cmocka_unit_test(test_orch_crash_forward),
                cmocka_unit_test(test_orch_crash_backward),
        };

        if (argc != 2 || (strcmp(argv[1], "orchestration") != 0 && strcmp(argv[1], "tcc") != 0)) {
                fprintf(stderr, "usage: test_orch orchestration|tcc\n");
                return 2;
        }
        g_tcc = strcmp(argv[1], "tcc") == 0;
        g_mode = g_tcc ? MU_TCC : MU_ORCH;
        if (g_tcc) {
                return cmocka_run_group_tests_name("tcc", tcc_tests, group_setup, group_teardown);
        }
        return cmocka_run_group_tests_name("orch", tests, group_setup, group_teardown);
}
