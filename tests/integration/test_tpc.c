/* test_tpc.c: PlaceOrder in 2pc mode on a real cluster: votes, crashes, recovery, late prepares.
 *
 * Every database lives on the one test server, so a test can count the prepared
 * transactions of each and stop the whole server with -m immediate (the suite runs alone:
 * is_parallel false). The coordinator runs with a short prepare timeout and grace period
 * ([order] prepare_timeout_ms, tpc_grace_ms) so that timeouts and presumed aborts happen
 * within seconds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cart_store.h"
#include "dataplatform_store.h"
#include "harness.h"
#include "order.pb-c.h"
#include "order_store.h"
#include "orders_util.h"
#include "payment_store.h"
#include "product_store.h"
#include "rpc.h"
#include "txn.pb-c.h"
#include "user_store.h"

#define ORDER_PLACE "/mercato.order.v1.OrderService/PlaceOrder"
#define P_PREPARE "/mercato.txn.v1.Participant/Prepare"
#define P_COMMIT "/mercato.txn.v1.Participant/Commit"
#define P_ROLLBACK "/mercato.txn.v1.Participant/Rollback"
#define P_LIST "/mercato.txn.v1.Participant/ListPrepared"

#define COMPLETED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED
#define CANCELLED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED

#define PREPARE_TIMEOUT_MS 1500
#define GRACE_MS 3000

/* The seed before each test: users 19 and 20 decline. */
#define STOCK 10
#define BALANCE 100000

#define TOPOLOGY                                                                                   \
        "[order]\n"                                                                                \
        "prepare_timeout_ms = 1500\n"                                                              \
        "tpc_grace_ms = 3000\n"                                                                    \
        "tpc_recovery_ms = 200\n"

static harness_cluster *g_c;
static rpc_client *g_order;
static rpc_client *g_product;

/* The databases that hold 2pc branches. */
static const char *const branch_dbs[] = { "order", "product", "user", "payment" };

static const char *
db(const char *name)
{
        return harness_cluster_db(g_c, name);
}

static int
group_setup(void **state)
{
        (void) state;
        g_c = harness_cluster_new("product cart user payment dataplatform order", TOPOLOGY);
        harness_cluster_start(g_c);
        g_order = harness_client(g_c, "order");
        g_product = harness_client(g_c, "product");
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        rpc_client_free(g_order);
        rpc_client_free(g_product);
        harness_cluster_free(g_c);
        harness_cleanup();
        return 0;
}

/* Seeds one database with one store's seed function. */
static void
seed_one(const char *name, const db_stmt_table *stmts,
    rpc_status (*seed)(db_conn *db, const svc_seed *s))
{
        svc_seed s = {
                .products = 20,
                .stock = STOCK,
                .users = 20,
                .balance = BALANCE,
                .coupons = 4,
                .coupon_quantity = 10,
                .declining_users = 2,
                .seed = 3,
        };
        db_conn *conn = NULL;
        char err[256];

        assert_int_equal(db_connect(db(name), stmts, 1, &conn, err, sizeof(err)), RPC_OK);
        assert_int_equal(seed(conn, &s), RPC_OK);
        db_close(conn);
}

/* Rolls back what a failed test left prepared, so that seeding does not wait on its locks. */
static void
rollback_leftovers(void)
{
        for (size_t i = 0; i < sizeof(branch_dbs) / sizeof(branch_dbs[0]); i++) {
                for (;;) {
                        char *gid = ou_sql_str(db(branch_dbs[i]),
                            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
                            " LIMIT 1");
                        if (gid[0] == '\0') {
                                free(gid);
                                break;
                        }
                        ou_sqlf(db(branch_dbs[i]), "ROLLBACK PREPARED '%s'", gid);
                        free(gid);
                }
        }
}

static int
test_setup(void **state)
{
        (void) state;
        rollback_leftovers();
        assert_true(ou_wait_outbox_drained(db("order")));
        seed_one("product", &product_stmts, product_store_seed);
        seed_one("cart", &cart_stmts, cart_store_seed);
        seed_one("user", &user_stmts, user_store_seed);
        seed_one("payment", &payment_stmts, payment_store_seed);
        seed_one("order", &order_stmts, order_store_seed);
        seed_one("dataplatform", &dataplatform_stmts, dataplatform_store_seed);
        /* The coordinator's log of earlier tests (whose order ids the seed restarted). */
        harness_sql(db("order"), "TRUNCATE txn_tpc_log");
        /* User 1 holds coupon 1 (FIXED). */
        harness_sql(db("user"),
            "INSERT INTO user_coupons (user_id, coupon_id) VALUES (1, 1);"
            "UPDATE coupons SET issued = issued + 1 WHERE id = 1");
        return 0;
}

/* Prepared transactions left in the branch databases. */
static int64_t
prepared_count(void)
{
        int64_t n = 0;

        for (size_t i = 0; i < sizeof(branch_dbs) / sizeof(branch_dbs[0]); i++) {
                n += harness_sql_i64(db(branch_dbs[i]),
                    "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
        }
        return n;
}

typedef struct placed {
        rpc_status st;
        int64_t order_id;
        int status;
        char reason[64];
        int64_t amount;
        int64_t discount;
        char msg[256];
} placed;

/* Places a 2pc order of (product, quantity) pairs. */
static placed
place(int64_t user, const int64_t *pairs, size_t n, int64_t coupon, int64_t timeout_ms)
{
        Mercato__Order__V1__PlaceOrderRequest req = MERCATO__ORDER__V1__PLACE_ORDER_REQUEST__INIT;
        Mercato__Order__V1__PlaceOrderItem items[8];
        Mercato__Order__V1__PlaceOrderItem *ptrs[8];
        rpc_call_opts opts = { .timeout_ms = timeout_ms, .no_retry = true };
        ProtobufCMessage *resp = NULL;
        rpc_error err = { 0 };
        placed p = { 0 };

        for (size_t i = 0; i < n; i++) {
                mercato__order__v1__place_order_item__init(&items[i]);
                items[i].product_id = pairs[2 * i];
                items[i].quantity = pairs[2 * i + 1];
                ptrs[i] = &items[i];
        }
        req.user_id = user;
        req.items = ptrs;
        req.n_items = n;
        req.coupon_id = coupon;
        req.mode = MERCATO__ORDER__V1__MODE__MODE_TWO_PC;
        p.st = rpc_client_call(g_order, ORDER_PLACE, &req.base,
            &mercato__order__v1__place_order_response__descriptor, &resp, &opts, &err);
        snprintf(p.msg, sizeof(p.msg), "%s", err.message);
        if (p.st == RPC_OK) {
                Mercato__Order__V1__Order *o
                    = ((Mercato__Order__V1__PlaceOrderResponse *) resp)->order;
                p.order_id = o->order_id;
                p.status = o->status;
                p.amount = o->amount;
                p.discount = o->discount;
                snprintf(p.reason, sizeof(p.reason), "%s", o->reason);
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return p;
}

static int64_t
stock(int64_t product)
{
        return ou_i64f(
            db("product"), "SELECT stock FROM products WHERE id = %lld", (long long) product);
}

static int64_t
balance(int64_t user)
{
        return ou_i64f(db("user"), "SELECT balance FROM users WHERE id = %lld", (long long) user);
}

static char *
order_status(int64_t order_id)
{
        char sql[128];

        snprintf(sql, sizeof(sql), "SELECT status || ':' || reason FROM orders WHERE id = %lld",
            (long long) order_id);
        return ou_sql_str(db("order"), sql);
}

/* Every participant's effect of an order: all there (committed) or none (rolled back). */
static void
assert_effects(int64_t order_id, bool committed)
{
        int64_t want = committed ? 1 : 0;

        assert_int_equal(ou_i64f(db("product"),
                             "SELECT count(*) FROM reservations WHERE order_id = %lld AND status = "
                             "'sold'",
                             (long long) order_id),
            committed ? ou_i64f(db("order"),
                "SELECT count(*) FROM order_items WHERE order_id = %lld", (long long) order_id)
                      : 0);
        assert_int_equal(
            ou_i64f(db("product"), "SELECT count(*) FROM reservations WHERE order_id = %lld",
                (long long) order_id),
            committed ? ou_i64f(db("order"),
                "SELECT count(*) FROM order_items WHERE order_id = %lld", (long long) order_id)
                      : 0);
        assert_int_equal(ou_i64f(db("user"),
                             "SELECT count(*) FROM ledger WHERE order_id = %lld AND kind = 'debit'",
                             (long long) order_id),
            want);
        assert_int_equal(ou_i64f(db("payment"),
                             "SELECT count(*) FROM payments WHERE order_id = %lld AND status = "
                             "'captured'",
                             (long long) order_id),
            want);
}

/* Polls until cond() holds, up to ms. */
static bool
wait_for(bool (*cond)(int64_t), int64_t arg, int64_t ms)
{
        for (int64_t t = 0; t < ms; t += 100) {
                if (cond(arg)) {
                        return true;
                }
                usleep(100 * 1000);
        }
        return cond(arg);
}

static bool
no_prepared(int64_t unused)
{
        (void) unused;
        return prepared_count() == 0;
}

static bool
is_terminal(int64_t order_id)
{
        char *s = order_status(order_id);
        bool t = strncmp(s, "COMPLETED", 9) == 0 || strncmp(s, "CANCELLED", 9) == 0;

        free(s);
        return t;
}

static bool
dp_received(int64_t order_id)
{
        return ou_i64f(db("dataplatform"),
                   "SELECT count(*) FROM received_orders WHERE order_id = %lld",
                   (long long) order_id)
            == 1;
}

static bool
log_done(int64_t order_id)
{
        return ou_i64f(db("order"),
                   "SELECT count(*) FROM txn_tpc_log WHERE txid = %lld AND done_at IS NOT NULL",
                   (long long) order_id)
            == 1;
}

/* The participants' databases, but the 2pc markers (a rollback records its gid). */
static char *
participants_checksum(void)
{
        static const char *const skip[] = { "txn_tpc_marker", NULL };
        char *a = ou_checksum(db("product"), skip);
        char *b = ou_checksum(db("user"), skip);
        char *c = ou_checksum(db("payment"), skip);
        size_t len = strlen(a) + strlen(b) + strlen(c) + 1;
        char *all = rpc_xmalloc(len);

        snprintf(all, len, "%s%s%s", a, b, c);
        free(a);
        free(b);
        free(c);
        return all;
}

/* Appends settings to the topology file (a later key wins) and restarts a service. */
static void
reconfigure(const char *service, const char *settings)
{
        FILE *f = fopen(g_c->conf_path, "a");

        assert_non_null(f);
        fprintf(f, "\n[%s]\n%s\n", service, settings);
        fclose(f);
        harness_cluster_restart(g_c, service);
}

/*
 * Tests
 */
static void
test_tpc_happy_path(void **state)
{
        const int64_t items[] = { 1, 2, 2, 1 };
        int64_t total = 2 * ou_i64f(db("product"), "SELECT price FROM products WHERE id = 1")
            + ou_i64f(db("product"), "SELECT price FROM products WHERE id = 2");
        placed p;

        (void) state;
        p = place(1, items, 2, 1, 10000);
        assert_int_equal(p.st, RPC_OK);
        if (p.status != COMPLETED) {
                fail_msg(
                    "order %lld: status %d reason %s", (long long) p.order_id, p.status, p.reason);
        }
        assert_string_equal(p.reason, "");
        assert_true(p.discount > 0);
        assert_int_equal(p.amount, total - p.discount);
        assert_int_equal(stock(1), STOCK - 2);
        assert_int_equal(stock(2), STOCK - 1);
        assert_int_equal(balance(1), BALANCE - p.amount);
        assert_int_equal(ou_i64f(db("user"),
                             "SELECT used_order_id FROM user_coupons WHERE user_id = 1 AND "
                             "coupon_id = 1"),
            p.order_id);
        assert_int_equal(ou_i64f(db("payment"), "SELECT amount FROM payments WHERE order_id = %lld",
                             (long long) p.order_id),
            p.amount);
        assert_effects(p.order_id, true);
        assert_int_equal(prepared_count(), 0);
        /* The log: committed, done, and timed. */
        assert_int_equal(ou_i64f(db("order"),
                             "SELECT count(*) FROM txn_tpc_log WHERE txid = %lld AND decision = "
                             "'commit' AND done_at >= decided_at AND decided_at >= created_at",
                             (long long) p.order_id),
            1);
        assert_true(wait_for(dp_received, p.order_id, 15000));
}

static void
test_tpc_votes_no(void **state)
{
        static const struct {
                int64_t user;
                int64_t product;
                int64_t quantity;
                int64_t coupon;
                const char *reason;
        } cases[] = {
                { 2, 3, STOCK + 1, 0, "out_of_stock" },
                { 2, 3, 1, 2, "coupon_invalid" }, /* user 2 holds no coupon 2 */
                { 19, 4, 1, 0, "payment_declined" },
        };
        char *before;

        (void) state;
        /* User 3 can pay for nothing. */
        harness_sql(db("user"), "UPDATE users SET balance = 1 WHERE id = 3");
        before = participants_checksum();
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const int64_t items[] = { cases[i].product, cases[i].quantity };
                placed p = place(cases[i].user, items, 1, cases[i].coupon, 10000);

                assert_int_equal(p.st, RPC_OK);
                assert_int_equal(p.status, CANCELLED);
                assert_string_equal(p.reason, cases[i].reason);
                assert_effects(p.order_id, false);
        }
        {
                const int64_t items[] = { 5, 1 };
                placed p = place(3, items, 1, 0, 10000);
                assert_int_equal(p.st, RPC_OK);
                assert_int_equal(p.status, CANCELLED);
                assert_string_equal(p.reason, "insufficient_balance");
        }
        {
                /* Bad input records nothing. */
                const int64_t items[] = { 999, 1 };
                int64_t orders = harness_sql_i64(db("order"), "SELECT count(*) FROM orders");
                placed p = place(1, items, 1, 0, 10000);
                assert_int_equal(p.st, RPC_NOT_FOUND);
                assert_int_equal(
                    harness_sql_i64(db("order"), "SELECT count(*) FROM orders"), orders);
        }
        assert_int_equal(prepared_count(), 0);
        {
                char *after = participants_checksum();
                assert_string_equal(before, after);
                free(after);
        }
        free(before);
        assert_int_equal(
            harness_sql_i64(db("order"), "SELECT count(*) FROM txn_tpc_log WHERE done_at IS NULL"),
            0);
}

/* A participant that does not answer Prepare in time: abort with reason timeout; its late
 * prepare is refused, so nothing stays prepared and nothing changes. */
static void
test_tpc_prepare_timeout(void **state)
{
        const int64_t items[] = { 6, 1 };
        char *before;
        int64_t t0;
        placed p;

        (void) state;
        reconfigure("payment", "step.capture = timeout");
        before = participants_checksum();
        t0 = rpc_now_mono_ms();
        p = place(4, items, 1, 0, 15000);
        assert_int_equal(p.st, RPC_OK);
        assert_int_equal(p.status, CANCELLED);
        assert_string_equal(p.reason, "timeout");
        assert_true(rpc_now_mono_ms() - t0 >= PREPARE_TIMEOUT_MS);
        /* The participant wakes after the coordinator's timeout and tries to prepare. */
        usleep((PREPARE_TIMEOUT_MS + 1500) * 1000);
        assert_int_equal(prepared_count(), 0);
        assert_effects(p.order_id, false);
        {
                char *after = participants_checksum();
                assert_string_equal(before, after);
                free(after);
        }
        free(before);
        reconfigure("payment", "step.capture = ok");
}

/* The Participant methods called directly: a prepare after the gid's rollback is refused;
 * prepare, commit and rollback are idempotent and resolve 42704 by the marker. */
static void
test_tpc_late_prepare_refused(void **state)
{
        Mercato__Txn__V1__Item item = MERCATO__TXN__V1__ITEM__INIT;
        Mercato__Txn__V1__Item *items[] = { &item };
        Mercato__Txn__V1__PrepareRequest prep = MERCATO__TXN__V1__PREPARE_REQUEST__INIT;
        Mercato__Txn__V1__GidRequest gid = MERCATO__TXN__V1__GID_REQUEST__INIT;
        Mercato__Txn__V1__ListPreparedRequest lreq = MERCATO__TXN__V1__LIST_PREPARED_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        char msg[256];

        (void) state;
        item.product_id = 7;
        item.quantity = 2;
        prep.items = items;
        prep.n_items = 1;

        /* Rolled back before it ever prepared: the late prepare is refused. */
        gid.gid = prep.gid = "late:1:900001";
        prep.order_id = 900001;
        assert_int_equal(ou_call(g_product, P_ROLLBACK, &gid.base,
                             &mercato__txn__v1__outcome__descriptor, NULL, false, msg, sizeof(msg)),
            RPC_OK);
        assert_int_equal(ou_call(g_product, P_PREPARE, &prep.base,
                             &mercato__txn__v1__vote__descriptor, NULL, false, msg, sizeof(msg)),
            RPC_FAILED_PRECONDITION);
        assert_non_null(strstr(msg, "rolled back"));
        assert_int_equal(stock(7), STOCK);
        assert_int_equal(prepared_count(), 0);

        /* Prepared, prepared again (a resend: yes), listed, rolled back, then refused. */
        gid.gid = prep.gid = "late:1:900002";
        prep.order_id = 900002;
        for (int i = 0; i < 2; i++) {
                assert_int_equal(
                    ou_call(g_product, P_PREPARE, &prep.base, &mercato__txn__v1__vote__descriptor,
                        &resp, false, msg, sizeof(msg)),
                    RPC_OK);
                assert_true(((Mercato__Txn__V1__Vote *) resp)->yes);
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        assert_int_equal(prepared_count(), 1);
        lreq.prefix = "late:";
        assert_int_equal(ou_call(g_product, P_LIST, &lreq.base,
                             &mercato__txn__v1__list_prepared_response__descriptor, &resp, false,
                             msg, sizeof(msg)),
            RPC_OK);
        assert_int_equal(((Mercato__Txn__V1__ListPreparedResponse *) resp)->n_xacts, 1);
        assert_string_equal(
            ((Mercato__Txn__V1__ListPreparedResponse *) resp)->xacts[0]->gid, "late:1:900002");
        protobuf_c_message_free_unpacked(resp, NULL);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(
                    ou_call(g_product, P_ROLLBACK, &gid.base,
                        &mercato__txn__v1__outcome__descriptor, NULL, false, msg, sizeof(msg)),
                    RPC_OK);
        }
        assert_int_equal(stock(7), STOCK);
        assert_int_equal(ou_call(g_product, P_PREPARE, &prep.base,
                             &mercato__txn__v1__vote__descriptor, NULL, false, msg, sizeof(msg)),
            RPC_FAILED_PRECONDITION);
        assert_int_equal(ou_call(g_product, P_COMMIT, &gid.base,
                             &mercato__txn__v1__outcome__descriptor, NULL, false, msg, sizeof(msg)),
            RPC_FAILED_PRECONDITION);

        /* Committed, committed again (42704: the marker says committed); no rollback. */
        gid.gid = prep.gid = "late:1:900003";
        prep.order_id = 900003;
        assert_int_equal(ou_call(g_product, P_PREPARE, &prep.base,
                             &mercato__txn__v1__vote__descriptor, NULL, false, msg, sizeof(msg)),
            RPC_OK);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(
                    ou_call(g_product, P_COMMIT, &gid.base, &mercato__txn__v1__outcome__descriptor,
                        NULL, false, msg, sizeof(msg)),
                    RPC_OK);
        }
        assert_int_equal(ou_call(g_product, P_ROLLBACK, &gid.base,
                             &mercato__txn__v1__outcome__descriptor, NULL, false, msg, sizeof(msg)),
            RPC_FAILED_PRECONDITION);
        assert_int_equal(stock(7), STOCK - 2);
        assert_int_equal(prepared_count(), 0);
}

/* Kills the coordinator at a crash point with one order in flight; returns the order id. */
static int64_t
crash_at(const char *point, const int64_t *items, size_t n)
{
        char settings[128];
        placed p;

        snprintf(settings, sizeof(settings), "crash_at = %s", point);
        reconfigure("order", settings);
        p = place(5, items, n, 0, 3000);
        assert_int_not_equal(p.st, RPC_OK);
        for (int i = 0; i < 50 && harness_cluster_alive(g_c, "order"); i++) {
                usleep(100 * 1000);
        }
        if (harness_cluster_alive(g_c, "order")) {
                char cmd[512];
                snprintf(cmd, sizeof(cmd), "tail -n 20 '%s.order.log' >&2", g_c->conf_path);
                (void) system(cmd);
                fail_msg("the coordinator did not crash at %s: %s %s", point, rpc_status_name(p.st),
                    p.msg);
        }
        return harness_sql_i64(db("order"), "SELECT max(id) FROM orders");
}

static void
recover(void)
{
        reconfigure("order", "crash_at = none");
}

static void
test_tpc_crash_after_prepare(void **state)
{
        const int64_t items[] = { 8, 1, 9, 2 };
        char *before = participants_checksum();
        int64_t t0 = rpc_now_mono_ms();
        int64_t id;
        char *s;

        (void) state;
        id = crash_at("after_prepare", items, 2);
        assert_int_equal(prepared_count(), 4);
        recover();
        /* Undecided: nothing is rolled back before the grace period. */
        if (rpc_now_mono_ms() - t0 < GRACE_MS - 500) {
                assert_int_equal(prepared_count(), 4);
        }
        assert_true(wait_for(no_prepared, 0, GRACE_MS + 10000));
        assert_true(wait_for(is_terminal, id, 5000));
        s = order_status(id);
        assert_string_equal(s, "CANCELLED:timeout");
        free(s);
        assert_effects(id, false);
        {
                char *after = participants_checksum();
                assert_string_equal(before, after);
                free(after);
        }
        free(before);
}

static void
crash_and_commit(const char *point)
{
        const int64_t items[] = { 10, 1, 11, 3 };
        int64_t id;
        char *s;

        id = crash_at(point, items, 2);
        if (strcmp(point, "after_decision") == 0) {
                assert_int_equal(prepared_count(), 4);
        }
        recover();
        assert_true(wait_for(no_prepared, 0, 10000));
        assert_true(wait_for(is_terminal, id, 5000));
        s = order_status(id);
        assert_string_equal(s, "COMPLETED:");
        free(s);
        assert_effects(id, true);
        assert_int_equal(stock(10), STOCK - 1);
        assert_int_equal(stock(11), STOCK - 3);
        assert_true(wait_for(dp_received, id, 15000));
        assert_int_equal(ou_i64f(db("order"),
                             "SELECT count(*) FROM txn_tpc_log WHERE txid = %lld AND decision = "
                             "'commit' AND done_at IS NOT NULL",
                             (long long) id),
            1);
}

static void
test_tpc_crash_after_decision(void **state)
{
        (void) state;
        crash_and_commit("after_decision");
}

static void
test_tpc_crash_after_first_commit(void **state)
{
        (void) state;
        crash_and_commit("after_first_commit");
}

/* `mercato txn`: an in-doubt transaction after a crash, listed, shown, and resolved by hand;
 * a logged commit is never rolled back by hand. */
static void
test_tpc_cli_resolve(void **state)
{
        const int64_t items[] = { 12, 1 };
        char out[16384];
        char gid[128];
        int64_t id;
        char *s;

        (void) state;
        id = crash_at("after_decision", items, 1);
        s = ou_sql_str(db("order"), "SELECT gid FROM txn_tpc_log ORDER BY created_at DESC LIMIT 1");
        snprintf(gid, sizeof(gid), "%s", s);
        free(s);
        assert_int_equal(harness_cli(g_c, out, sizeof(out), "--json txn list"), 0);
        assert_non_null(strstr(out, gid));
        assert_non_null(strstr(out, "\"commit\""));
        assert_int_equal(harness_cli(g_c, out, sizeof(out), "--json txn show %s", gid), 0);
        assert_non_null(strstr(out, "\"prepared\""));
        /* The log says commit: a rollback by hand is refused, and changes nothing. */
        assert_int_equal(harness_cli(g_c, out, sizeof(out), "txn resolve %s rollback", gid), 1);
        assert_int_equal(prepared_count(), 4);
        assert_int_equal(
            harness_cli(g_c, out, sizeof(out), "--json txn resolve %s commit", gid), 0);
        assert_null(strstr(out, "\"prepared\""));
        assert_int_equal(prepared_count(), 0);
        assert_effects(id, true);
        /* The restarted coordinator finds every branch committed and closes the log row. */
        recover();
        assert_true(wait_for(log_done, id, 5000));
        s = order_status(id);
        assert_string_equal(s, "COMPLETED:");
        free(s);
}

/* PostgreSQL stopped with -m immediate while the branches are prepared and the commit
 * decision is logged: after the restart, recovery commits every branch. */
static void
test_tpc_postgres_immediate_stop(void **state)
{
        const char *dir = getenv("MERCATO_TEST_PGDIR");
        const char *port = getenv("MERCATO_TEST_PGPORT");
        const char *src = getenv("MERCATO_SOURCE_ROOT");
        const int64_t items[] = { 13, 2 };
        char cmd[1024];
        int64_t id;

        (void) state;
        if (dir == NULL || port == NULL || src == NULL) {
                fail_msg("MERCATO_TEST_PGDIR, MERCATO_TEST_PGPORT and MERCATO_SOURCE_ROOT must be "
                         "set (tests/run exports them)");
        }
        id = crash_at("after_decision", items, 1);
        assert_int_equal(prepared_count(), 4);
        snprintf(
            cmd, sizeof(cmd), "'%s/deploy/pg' stop --dir '%s' --immediate >/dev/null", src, dir);
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof(cmd), "'%s/deploy/pg' start --dir '%s' --port '%s' >/dev/null", src,
            dir, port);
        assert_int_equal(system(cmd), 0);
        /* The prepared transactions survived the crash. */
        assert_int_equal(prepared_count(), 4);
        recover();
        assert_true(wait_for(no_prepared, 0, 15000));
        assert_true(wait_for(is_terminal, id, 5000));
        {
                char *s = order_status(id);
                assert_string_equal(s, "COMPLETED:");
                free(s);
        }
        assert_effects(id, true);
        assert_int_equal(stock(13), STOCK - 2);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_tpc_happy_path, test_setup),
                cmocka_unit_test_setup(test_tpc_votes_no, test_setup),
                cmocka_unit_test_setup(test_tpc_prepare_timeout, test_setup),
                cmocka_unit_test_setup(test_tpc_late_prepare_refused, test_setup),
                cmocka_unit_test_setup(test_tpc_crash_after_prepare, test_setup),
                cmocka_unit_test_setup(test_tpc_crash_after_decision, test_setup),
                cmocka_unit_test_setup(test_tpc_crash_after_first_commit, test_setup),
                cmocka_unit_test_setup(test_tpc_cli_resolve, test_setup),
                cmocka_unit_test_setup(test_tpc_postgres_immediate_stop, test_setup),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
