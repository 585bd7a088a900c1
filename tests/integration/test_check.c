/* test_check.c: `mercato check`: a consistent state passes; each corruption fails its own line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

/*
 * The state: a full cluster on fresh databases, seeded with `mercato seed` and its baseline
 * recorded with `mercato check --record-baseline`. On the monolith dataset, orders placed
 * through the running services with `mercato order place --mode monolith` (completed ones,
 * with and without a coupon, and cancelled ones for each business reason) and a charge,
 * then the outbox drained into the data platform. On the split dataset, the rows a saga
 * leaves, written with SQL (a completed order, one compensated after its debit, one
 * cancelled before any step, a charge), so that the split checks do not depend on the saga.
 * Then the services stop, so the databases can serve as templates.
 *
 * Each corruption runs on a copy of one database (CREATE DATABASE ... TEMPLATE), with a
 * topology that names the copy instead of the original, and asserts that exactly the
 * expected lines FAIL, the rest PASS, and the first expected line names the offending id.
 */

#define SERVICES "product cart user payment dataplatform order"
#define PRODUCTS 20
#define STOCK 50
#define USERS 8
#define BALANCE 100000
#define DRAIN_MS 30000
#define N_LINES 15 /* the invariants: lines per dataset */

enum { DS_MONOLITH = 0, DS_SPLIT = 1, N_DS = 2 };
static const char *const ds_names[N_DS] = { "monolith", "split" };

/* The ids a corruption names: per dataset. */
typedef struct ids {
        int64_t c;  /* {C}: a completed order without a coupon */
        int64_t u;  /* {U}: its user */
        int64_t p;  /* {P}: its first product */
        int64_t x;  /* {X}: a cancelled order that holds nothing */
        int64_t xr; /* {XR}: a cancelled order with a debit and its refund (split; else {X}) */
        int64_t v;  /* {V}: a user holding coupon {K}, unused */
        int64_t k;  /* {K} */
} ids;

static harness_cluster *hc;
static char *mercato;
static char baseline[256];
static ids vars[N_DS];

/* The copy of the current case, dropped by its teardown. */
static char copy_name[128];
static char copy_gid[64];

/*
 * Helpers
 */

static const char *
db_of(int ds, const char *role)
{
        return ds == DS_MONOLITH ? hc->monolith_db : harness_cluster_db(hc, role);
}

/* The dbname= part of a conninfo. */
static void
dbname_of(const char *conninfo, char *buf, size_t len)
{
        const char *p = strstr(conninfo, "dbname=");

        assert_non_null(p);
        p += strlen("dbname=");
        snprintf(buf, len, "%.*s", (int) strcspn(p, " "), p);
}

static int run_mercato(const char *conf, char **ret_out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Runs `mercato --conf CONF ARGS` (ARGS a shell word list built by the test); *ret_out gets
 * its stdout (malloc'd). Returns the exit status. */
static int
run_mercato(const char *conf, char **ret_out, const char *fmt, ...)
{
        char args[1024];
        char cmd[2048];
        char buf[4096];
        size_t len = 0, cap = 8192;
        char *out = malloc(cap);
        va_list ap;
        FILE *f;
        size_t n;
        int status;

        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        snprintf(cmd, sizeof(cmd), "%s --conf %s %s", mercato, conf, args);
        f = popen(cmd, "r");
        assert_non_null(f);
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
                if (len + n + 1 > cap) {
                        cap = (len + n + 1) * 2;
                        out = realloc(out, cap);
                }
                memcpy(out + len, buf, n);
                len += n;
        }
        out[len] = '\0';
        status = pclose(f);
        if (ret_out != NULL) {
                *ret_out = out;
        } else {
                free(out);
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A topology naming the cluster's databases, with one role's database (or the monolith's)
 * replaced by conninfo when role is not NULL. Written to a fresh file; returns its path. */
static char *
write_conf(const char *role, const char *conninfo)
{
        static const char *const roles[]
            = { "product", "cart", "user", "payment", "order", "dataplatform" };
        char path[] = "/tmp/mercato-check-conf-XXXXXX";
        int fd = mkstemp(path);
        FILE *f;

        assert_true(fd >= 0);
        f = fdopen(fd, "w");
        assert_non_null(f);
        fprintf(f, "[monolith]\ndb = %s\n",
            role != NULL && strcmp(role, "monolith") == 0 ? conninfo : hc->monolith_db);
        for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
                fprintf(f, "[%s]\ndb = %s\n", roles[i],
                    role != NULL && strcmp(role, roles[i]) == 0 ? conninfo
                                                                : harness_cluster_db(hc, roles[i]));
        }
        fclose(f);
        return strdup(path);
}

/* One line of the checker's output. */
typedef struct line {
        char status[8];
        char dataset[16];
        char name[32];
        char rest[1024]; /* the count, the ids, the note */
} line;

/* Parses the PASS/FAIL lines of an output; returns how many. */
static int
parse_lines(const char *out, line *lines, int max)
{
        int n = 0;

        for (const char *p = out; *p != '\0' && n < max;) {
                const char *eol = strchr(p, '\n');
                size_t len = eol != NULL ? (size_t) (eol - p) : strlen(p);
                if (len > 39 && (strncmp(p, "PASS  ", 6) == 0 || strncmp(p, "FAIL  ", 6) == 0)) {
                        line *l = &lines[n++];
                        /* "%s  %-8s  %-21s  %lld..." */
                        snprintf(l->status, sizeof(l->status), "%.4s", p);
                        snprintf(l->dataset, sizeof(l->dataset), "%.*s", (int) strcspn(p + 6, " "),
                            p + 6);
                        snprintf(l->name, sizeof(l->name), "%.21s", p + 16);
                        for (size_t k = strlen(l->name); k > 0 && l->name[k - 1] == ' '; k--) {
                                l->name[k - 1] = '\0';
                        }
                        snprintf(l->rest, sizeof(l->rest), "%.*s", (int) (len - 39), p + 39);
                }
                p = eol != NULL ? eol + 1 : p + len;
        }
        return n;
}

/* The ids a line lists, as " id1 id2 ... " (for strstr with " id "). */
static void
line_ids(const line *l, char *buf, size_t len)
{
        const char *p = strstr(l->rest, "ids:");
        size_t n;

        if (p == NULL) {
                snprintf(buf, len, " ");
                return;
        }
        p += strlen("ids:");
        n = strcspn(p, "(");
        snprintf(buf, len, "%.*s ", (int) n, p);
}

static bool
in_list(const char *const *list, const char *name)
{
        for (; *list != NULL; list++) {
                if (strcmp(*list, name) == 0) {
                        return true;
                }
        }
        return false;
}

/* Checks an output: N_LINES lines of the dataset, the names in fails FAIL and only they, and the
 * first of them lists id (may be NULL). */
static void
assert_lines(const char *out, const char *dataset, const char *const *fails, const char *id)
{
        line lines[64];
        int n = parse_lines(out, lines, 64);
        int mine = 0;

        for (int i = 0; i < n; i++) {
                bool expect_fail;
                if (strcmp(lines[i].dataset, dataset) != 0) {
                        continue;
                }
                mine++;
                expect_fail = in_list(fails, lines[i].name);
                if (expect_fail != (strcmp(lines[i].status, "FAIL") == 0)) {
                        fail_msg("%s %s: %s, expected %s\n%s", dataset, lines[i].name,
                            lines[i].status, expect_fail ? "FAIL" : "PASS", out);
                }
                if (id != NULL && strcmp(lines[i].name, fails[0]) == 0) {
                        char got[1024];
                        char want[160];
                        line_ids(&lines[i], got, sizeof(got));
                        snprintf(want, sizeof(want), " %s ", id);
                        if (strstr(got, want) == NULL) {
                                fail_msg("%s %s: ids [%s], expected %s\n%s", dataset, lines[i].name,
                                    got, id, out);
                        }
                }
        }
        if (mine != N_LINES) {
                fail_msg("%d lines of %s, expected %d\n%s", mine, dataset, N_LINES, out);
        }
}

/* Replaces {C} {U} {P} {X} {XR} {V} {K} {PID} in a template. */
static void
expand(const char *tmpl, const ids *v, char *buf, size_t len)
{
        static const char *const keys[]
            = { "{C}", "{U}", "{P}", "{XR}", "{X}", "{V}", "{K}", "{PID}" };
        size_t o = 0;

        while (*tmpl != '\0' && o + 32 < len) {
                bool done = false;
                for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]) && !done; k++) {
                        size_t kl = strlen(keys[k]);
                        long long val;
                        if (strncmp(tmpl, keys[k], kl) != 0) {
                                continue;
                        }
                        switch (k) {
                        case 0:
                                val = v->c;
                                break;
                        case 1:
                                val = v->u;
                                break;
                        case 2:
                                val = v->p;
                                break;
                        case 3:
                                val = v->xr;
                                break;
                        case 4:
                                val = v->x;
                                break;
                        case 5:
                                val = v->v;
                                break;
                        case 6:
                                val = v->k;
                                break;
                        default:
                                val = (long long) getpid();
                                break;
                        }
                        o += (size_t) snprintf(buf + o, len - o, "%lld", val);
                        tmpl += kl;
                        done = true;
                }
                if (!done) {
                        buf[o++] = *tmpl++;
                }
        }
        buf[o] = '\0';
}

static int64_t i64f(const char *conninfo, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int64_t
i64f(const char *conninfo, const char *fmt, ...)
{
        char sql[2048];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(sql, sizeof(sql), fmt, ap);
        va_end(ap);
        return harness_sql_i64(conninfo, sql);
}

static void sqlf(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sqlf(const char *conninfo, const char *fmt, ...)
{
        char sql[4096];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(sql, sizeof(sql), fmt, ap);
        va_end(ap);
        harness_sql(conninfo, sql);
}

/*
 * Building the state
 */

static void
place(const char *args, const char *expect)
{
        char *out = NULL;
        int rc = run_mercato(
            hc->conf_path, &out, "--dataset monolith order place %s --mode monolith", args);

        if (rc != 0 || strstr(out, expect) == NULL) {
                fail_msg("order place %s: exit %d, expected %s:\n%s", args, rc, expect, out);
        }
        free(out);
}

static void
build_monolith(void)
{
        const char *db = hc->monolith_db;
        int64_t completed, dear, qty;
        ids *v = &vars[DS_MONOLITH];
        char args[64];

        /* User 1 holds coupon 1 and uses it; user 2 holds coupon 2 and never uses it. */
        assert_int_equal(
            run_mercato(hc->conf_path, NULL, "--dataset monolith coupon issue 1 1"), 0);
        assert_int_equal(
            run_mercato(hc->conf_path, NULL, "--dataset monolith coupon issue 2 2"), 0);
        place("1 1:2 3:1 --coupon 1", "COMPLETED");
        place("2 2:1", "COMPLETED");
        place("3 4:3 5:1", "COMPLETED");
        place("4 6:100", "out_of_stock");
        /* Enough of the dearest product to exceed the balance, within its stock. */
        dear = harness_sql_i64(db, "SELECT id FROM products ORDER BY price DESC, id LIMIT 1");
        qty = BALANCE / i64f(db, "SELECT price FROM products WHERE id = %lld", (long long) dear)
            + 1;
        assert_true(qty <= STOCK);
        snprintf(args, sizeof(args), "6 %lld:%lld", (long long) dear, (long long) qty);
        place(args, "insufficient_balance");
        place("5 8:1 --coupon 3", "coupon_invalid");
        place("8 7:1", "payment_declined");
        /* A charge after the baseline. */
        assert_int_equal(
            run_mercato(hc->conf_path, NULL, "--dataset monolith balance charge 3 777"), 0);

        completed = harness_sql_i64(db, "SELECT count(*) FROM orders WHERE status = 'COMPLETED'");
        assert_int_equal(completed, 3);
        assert_int_equal(
            harness_sql_i64(db, "SELECT count(*) FROM orders WHERE status = 'CANCELLED'"), 4);
        for (int ms = 0;; ms += 100) {
                if (harness_sql_i64(
                        db, "SELECT count(*) FROM txn_outbox WHERE delivered_at IS NULL")
                        == 0
                    && harness_sql_i64(db, "SELECT count(*) FROM received_orders") == completed) {
                        break;
                }
                if (ms > DRAIN_MS) {
                        fail_msg("the monolith outbox did not drain");
                }
                usleep(100 * 1000);
        }
        v->c = harness_sql_i64(
            db, "SELECT min(id) FROM orders WHERE status = 'COMPLETED' AND coupon_id IS NULL");
        v->u = i64f(db, "SELECT user_id FROM orders WHERE id = %lld", (long long) v->c);
        v->p = i64f(
            db, "SELECT min(product_id) FROM order_items WHERE order_id = %lld", (long long) v->c);
        v->x = harness_sql_i64(db, "SELECT min(id) FROM orders WHERE status = 'CANCELLED'");
        v->xr = v->x;
        v->v = 2;
        v->k = 2;
        assert_true(v->c > 0 && v->u > 0 && v->p > 0 && v->x > 0);
        assert_int_equal(harness_sql_i64(db,
                             "SELECT count(*) FROM user_coupons WHERE user_id = 2 AND coupon_id "
                             "= 2 AND used_order_id IS NULL"),
            1);
}

/* A price from the product database. */
static int64_t
price(int64_t product)
{
        return i64f(harness_cluster_db(hc, "product"), "SELECT price FROM products WHERE id = %lld",
            (long long) product);
}

/* Writes one order of the split dataset as the saga would leave it. lines: {product, qty}.
 * kind: 'C' completed, 'R' cancelled after its debit (refunded, released), 'X' cancelled
 * before any step. */
static void
split_order(
    int64_t id, int64_t user, const int64_t (*lines)[2], size_t n, int64_t coupon, char kind)
{
        const char *product = harness_cluster_db(hc, "product");
        const char *user_db = harness_cluster_db(hc, "user");
        const char *order = harness_cluster_db(hc, "order");
        const char *payment = harness_cluster_db(hc, "payment");
        const char *dp = harness_cluster_db(hc, "dataplatform");
        int64_t total = 0, discount = 0, amount;
        char coupon_sql[32] = "NULL";
        char event[64];

        for (size_t i = 0; i < n; i++) {
                total += lines[i][1] * price(lines[i][0]);
        }
        if (coupon > 0) {
                /* Odd coupons are FIXED. */
                int64_t value = i64f(
                    user_db, "SELECT value FROM coupons WHERE id = %lld", (long long) coupon);
                assert_true(coupon % 2 == 1);
                discount = value < total ? value : total;
                sqlf(user_db,
                    "UPDATE coupons SET issued = issued + 1 WHERE id = %lld;"
                    "INSERT INTO user_coupons (user_id, coupon_id, used_order_id)"
                    " VALUES (%lld, %lld, %lld)",
                    (long long) coupon, (long long) user, (long long) coupon, (long long) id);
        }
        amount = total - discount;
        if (coupon > 0) {
                snprintf(coupon_sql, sizeof(coupon_sql), "%lld", (long long) coupon);
        }
        sqlf(order,
            "INSERT INTO orders (id, user_id, status, reason, total, discount, amount, coupon_id,"
            " mode) VALUES (%lld, %lld, '%s', '%s', %lld, %lld, %lld, %s, 'saga');"
            "SELECT setval('orders_id_seq', %lld)",
            (long long) id, (long long) user, kind == 'C' ? "COMPLETED" : "CANCELLED",
            kind == 'C' ? "" : (kind == 'R' ? "payment_declined" : "out_of_stock"),
            (long long) total, (long long) (kind == 'C' ? discount : 0),
            (long long) (kind == 'C' ? amount : total), coupon_sql, (long long) id);
        for (size_t i = 0; i < n; i++) {
                sqlf(order,
                    "INSERT INTO order_items (order_id, product_id, quantity, unit_price)"
                    " VALUES (%lld, %lld, %lld, %lld)",
                    (long long) id, (long long) lines[i][0], (long long) lines[i][1],
                    (long long) price(lines[i][0]));
                if (kind == 'C') {
                        sqlf(product,
                            "UPDATE products SET stock = stock - %lld WHERE id = %lld;"
                            "INSERT INTO reservations (order_id, product_id, quantity, status)"
                            " VALUES (%lld, %lld, %lld, 'sold')",
                            (long long) lines[i][1], (long long) lines[i][0], (long long) id,
                            (long long) lines[i][0], (long long) lines[i][1]);
                } else if (kind == 'R') {
                        sqlf(product,
                            "INSERT INTO reservations (order_id, product_id, quantity, status)"
                            " VALUES (%lld, %lld, %lld, 'released')",
                            (long long) id, (long long) lines[i][0], (long long) lines[i][1]);
                }
        }
        if (kind == 'C') {
                sqlf(user_db,
                    "UPDATE users SET balance = balance - %lld WHERE id = %lld;"
                    "INSERT INTO ledger (user_id, kind, amount, order_id)"
                    " VALUES (%lld, 'debit', %lld, %lld)",
                    (long long) amount, (long long) user, (long long) user, (long long) amount,
                    (long long) id);
                sqlf(payment,
                    "INSERT INTO payments (order_id, user_id, amount, status)"
                    " VALUES (%lld, %lld, %lld, 'captured')",
                    (long long) id, (long long) user, (long long) amount);
                snprintf(event, sizeof(event), "00000000-0000-4000-8000-%012lld", (long long) id);
                sqlf(order,
                    "INSERT INTO txn_outbox (event_id, source, topic, aggregate_id, payload,"
                    " fanned_out, pending, delivered_at)"
                    " VALUES ('%s', 'order', 'order.completed', %lld, '\\x', true, 0, now());"
                    "INSERT INTO txn_delivery (event_id, subscriber, source, seq, state, attempts,"
                    " finished_at) SELECT event_id, s, source, seq, 'done', 1, now()"
                    " FROM txn_outbox, unnest(ARRAY['dataplatform', 'cart', 'product']) s"
                    " WHERE event_id = '%s'",
                    event, (long long) id, event);
                sqlf(dp,
                    "INSERT INTO received_orders (event_id, order_id, user_id, amount)"
                    " VALUES ('%s', %lld, %lld, %lld)",
                    event, (long long) id, (long long) user, (long long) amount);
        } else if (kind == 'R') {
                sqlf(user_db,
                    "INSERT INTO ledger (user_id, kind, amount, order_id) VALUES"
                    " (%lld, 'debit', %lld, %lld), (%lld, 'refund', %lld, %lld)",
                    (long long) user, (long long) total, (long long) id, (long long) user,
                    (long long) total, (long long) id);
                sqlf(payment,
                    "INSERT INTO payments (order_id, user_id, amount, status)"
                    " VALUES (%lld, %lld, %lld, 'refunded')",
                    (long long) id, (long long) user, (long long) total);
        }
}

static void
build_split(void)
{
        static const int64_t order1[][2] = { { 1, 2 }, { 3, 1 } };
        static const int64_t order2[][2] = { { 2, 1 } };
        static const int64_t order3[][2] = { { 4, 1 } };
        static const int64_t order4[][2] = { { 6, 100 } };
        const char *user_db = harness_cluster_db(hc, "user");
        ids *v = &vars[DS_SPLIT];

        split_order(1, 1, order1, 2, 1, 'C');
        split_order(2, 2, order2, 1, 0, 'C');
        split_order(3, 3, order3, 1, 0, 'R');
        split_order(4, 4, order4, 1, 0, 'X');
        /* User 2 holds coupon 2, unused; user 3 charged after the baseline. */
        sqlf(user_db,
            "UPDATE coupons SET issued = issued + 1 WHERE id = 2;"
            "INSERT INTO user_coupons (user_id, coupon_id) VALUES (2, 2);"
            "UPDATE users SET balance = balance + 777 WHERE id = 3;"
            "INSERT INTO ledger (user_id, kind, amount) VALUES (3, 'charge', 777)");
        *v = (ids) { .c = 2, .u = 2, .p = 2, .x = 4, .xr = 3, .v = 2, .k = 2 };
}

static int
group_setup(void **state)
{
        char *out = NULL;
        int rc;

        (void) state;
        mercato = harness_build_path("services/mercato/mercato");
        hc = harness_cluster_new(SERVICES, NULL);
        snprintf(baseline, sizeof(baseline), "%s.baseline.json", hc->conf_path);
        rc = run_mercato(hc->conf_path, &out,
            "seed --products %d --stock %d --users %d --balance %d --coupons 4"
            " --coupon-quantity 10 --declining-users 1",
            PRODUCTS, STOCK, USERS, BALANCE);
        if (rc != 0) {
                fprintf(stderr, "mercato seed: exit %d\n%s", rc, out);
                free(out);
                return -1;
        }
        free(out);
        rc = run_mercato(hc->conf_path, &out, "check --record-baseline %s", baseline);
        if (rc != 0) {
                fprintf(stderr, "mercato check --record-baseline: exit %d\n%s", rc, out);
                free(out);
                return -1;
        }
        free(out);
        harness_cluster_start(hc);
        build_monolith();
        /* The databases become templates: nothing may stay connected. */
        for (int i = 0; i < hc->n; i++) {
                harness_cluster_signal(hc, hc->names[i], SIGTERM);
        }
        build_split();
        return 0;
}

static int
group_teardown(void **state)
{
        (void) state;
        remove(baseline);
        return 0;
}

/*
 * The consistent state
 */

static void
test_check_consistent_state_passes(void **state)
{
        static const char *const none[] = { NULL };
        char *out = NULL;
        char *conf = write_conf(NULL, NULL);

        (void) state;
        assert_int_equal(run_mercato(conf, &out, "check --baseline %s", baseline), 0);
        assert_lines(out, "monolith", none, NULL);
        assert_lines(out, "split", none, NULL);
        free(out);

        /* Without a baseline: the stock line says what it could not check. */
        assert_int_equal(run_mercato(conf, &out, "check --dataset monolith"), 0);
        assert_lines(out, "monolith", none, NULL);
        assert_non_null(strstr(out, "only stock >= 0 checked"));
        free(out);

        /* The seed's numbers. */
        assert_int_equal(
            run_mercato(conf, &out, "--dataset split check --initial-stock %d --initial-balance %d",
                STOCK, BALANCE),
            0);
        assert_lines(out, "split", none, NULL);
        assert_null(strstr(out, "monolith"));
        free(out);
        remove(conf);
        free(conf);
}

static void
test_check_wrong_initial_stock_fails(void **state)
{
        static const char *const stock[] = { "stock", NULL };
        char *out = NULL;
        char *conf = write_conf(NULL, NULL);

        (void) state;
        assert_int_equal(
            run_mercato(conf, &out, "check --dataset monolith --initial-stock %d", STOCK - 1), 1);
        assert_lines(out, "monolith", stock, "1");
        /* Every product is off by one: all counted, ten listed. */
        assert_non_null(strstr(out, "FAIL  monolith  stock                  20  ids:"));
        free(out);
        remove(conf);
        free(conf);
}

static void
test_check_json(void **state)
{
        char *out = NULL;
        char *conf = write_conf(NULL, NULL);
        json_error_t jerr;
        json_t *root;
        json_t *inv;
        size_t i;

        (void) state;
        assert_int_equal(run_mercato(conf, &out, "--json check --baseline %s", baseline), 0);
        root = json_loads(out, 0, &jerr);
        assert_non_null(root);
        assert_true(json_is_true(json_object_get(root, "ok")));
        assert_int_equal(json_array_size(json_object_get(root, "invariants")), 2 * N_LINES);
        json_array_foreach(json_object_get(root, "invariants"), i, inv)
        {
                assert_string_equal(json_string_value(json_object_get(inv, "status")), "PASS");
        }
        assert_int_equal(
            json_integer_value(json_object_get(
                json_object_get(json_object_get(root, "dead_letters"), "monolith"), "monolith")),
            0);
        json_decref(root);
        free(out);
        remove(conf);
        free(conf);
}

static void
test_check_unreachable_database(void **state)
{
        char *conf = write_conf("payment", "host=127.0.0.1 port=1 user=mercato dbname=nowhere");
        char *out = NULL;

        (void) state;
        assert_int_equal(run_mercato(conf, &out, "check --dataset split"), 3);
        assert_null(strstr(out, "PASS"));
        free(out);
        /* The monolith dataset does not need it. */
        assert_int_equal(run_mercato(conf, NULL, "check --dataset monolith"), 0);
        assert_int_equal(run_mercato(conf, NULL, "check --dataset elsewhere"), 2);
        assert_int_equal(
            run_mercato(conf, NULL, "check --baseline %s --initial-stock 3", baseline), 2);
        remove(conf);
        free(conf);
}

/* Waits until the split dataset of a cluster is quiet: no PENDING order, every outbox drained,
 * no prepared transaction, the data platform holding every completed order. */
static void
wait_split_quiet(const harness_cluster *c)
{
        static const char *const roles[]
            = { "product", "cart", "user", "payment", "order", "dataplatform" };
        const char *order = harness_cluster_db(c, "order");
        int64_t left = 0;

        for (int ms = 0; ms <= DRAIN_MS; ms += 100) {
                left
                    = harness_sql_i64(order, "SELECT count(*) FROM orders WHERE status = 'PENDING'")
                    + harness_sql_i64(
                        order, "SELECT count(*) FROM orders WHERE status = 'COMPLETED'")
                    - harness_sql_i64(harness_cluster_db(c, "dataplatform"),
                        "SELECT count(*) FROM received_orders");
                for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
                        const char *db = harness_cluster_db(c, roles[i]);
                        left += harness_sql_i64(db,
                                    "SELECT count(*) FROM txn_outbox WHERE delivered_at IS NULL")
                            + harness_sql_i64(db,
                                "SELECT count(*) FROM pg_prepared_xacts"
                                " WHERE database = current_database()");
                }
                if (left == 0) {
                        return;
                }
                usleep(100 * 1000);
        }
        fail_msg("the split dataset did not go quiet (%lld things left)", (long long) left);
}

/* The checker over the state the saga, 2pc and tcc modes really leave: completed orders,
 * orders cancelled before any step and after the debit (a saga refunds it, a TCC cancel
 * unfreezes it and voids the payment), on a cluster of its own. */
static void
test_check_saga_2pc_and_tcc_orders(void **state)
{
        static const char *const none[] = { NULL };
        static const char *const modes[] = { "saga", "2pc", "tcc" };
        static const char *const orders[] = { "1 1:2 3:1 --coupon 1", "2 2:1", "3 4:2 5:1",
                "4 6:100", "8 7:1", "5 8:1 --coupon 3" };
        harness_cluster *c = harness_cluster_new(SERVICES, NULL);
        char base[256];
        char *out = NULL;
        int rc;

        (void) state;
        snprintf(base, sizeof(base), "%s.baseline.json", c->conf_path);
        assert_int_equal(run_mercato(c->conf_path, NULL,
                             "seed --dataset split --products %d --stock %d --users %d --balance %d"
                             " --coupons 4 --coupon-quantity 10 --declining-users 1",
                             PRODUCTS, STOCK, USERS, BALANCE),
            0);
        assert_int_equal(
            run_mercato(c->conf_path, NULL, "check --dataset split --record-baseline %s", base), 0);
        harness_cluster_start(c);
        assert_int_equal(run_mercato(c->conf_path, NULL, "coupon issue 1 1"), 0);
        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
                for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++) {
                        rc = run_mercato(
                            c->conf_path, &out, "order place %s --mode %s", orders[i], modes[m]);
                        if (rc != 0) {
                                fail_msg("order place %s --mode %s: exit %d\n%s", orders[i],
                                    modes[m], rc, out);
                        }
                        free(out);
                }
        }
        wait_split_quiet(c);
        assert_true(harness_sql_i64(harness_cluster_db(c, "order"),
                        "SELECT count(*) FROM orders WHERE status = 'COMPLETED'")
            >= 2);
        assert_true(harness_sql_i64(harness_cluster_db(c, "order"),
                        "SELECT count(*) FROM orders WHERE status = 'CANCELLED'")
            >= 2);
        /* The saga order of the declining user was debited, then refunded. */
        assert_true(harness_sql_i64(harness_cluster_db(c, "user"),
                        "SELECT count(*) FROM ledger WHERE kind = 'refund'")
            >= 1);
        rc = run_mercato(c->conf_path, &out, "check --dataset split --baseline %s", base);
        if (rc != 0) {
                fail_msg("check: exit %d\n%s", rc, out);
        }
        assert_lines(out, "split", none, NULL);
        free(out);
        harness_cluster_free(c);
        remove(base);
}

/*
 * Corruptions
 */

typedef struct corruption {
        const char *name;
        const char *only;     /* "monolith" or "split" for one dataset only; NULL: both */
        const char *role;     /* the database copied and corrupted (monolith: the monolith's) */
        const char *sql;      /* the corruption, with {C} ... placeholders */
        bool prepared;        /* it leaves the prepared transaction check_<PID> behind */
        bool no_baseline;     /* check without the baseline */
        const char *fails[4]; /* the lines that must FAIL; the first lists the id */
        const char *id;       /* the id it must list, with placeholders */
} corruption;

static const corruption corruptions[] = {
        { "stock removed", NULL, "product", "UPDATE products SET stock = stock - 1 WHERE id = {P}",
            false, false, { "stock" }, "{P}" },
        { "stock negative (no baseline)", NULL, "product",
            "ALTER TABLE products DROP CONSTRAINT products_stock_check,"
            " DROP CONSTRAINT products_held_check;"
            "UPDATE products SET stock = -3 WHERE id = {P}",
            false, true, { "stock" }, "{P}" },
        { "sold stock released", NULL, "product",
            "UPDATE products p SET stock = p.stock + r.quantity FROM reservations r"
            " WHERE r.order_id = {C} AND r.product_id = {P} AND p.id = {P};"
            "UPDATE reservations SET status = 'released' WHERE order_id = {C} AND product_id = {P}",
            false, false, { "completed orders" }, "{C}" },
        { "payment deleted", NULL, "payment", "DELETE FROM payments WHERE order_id = {C}", false,
            false, { "completed orders" }, "{C}" },
        { "payment refunded", NULL, "payment",
            "UPDATE payments SET status = 'refunded' WHERE order_id = {C}", false, false,
            { "completed orders" }, "{C}" },
        { "money created", NULL, "user",
            "UPDATE users SET balance = balance + 100 WHERE id = {U};"
            "UPDATE ledger SET amount = amount + 100 WHERE id ="
            " (SELECT min(id) FROM ledger WHERE user_id = {U} AND kind = 'charge')",
            false, false, { "balance" }, "{U}" },
        { "ledger row changed", NULL, "user",
            "UPDATE ledger SET amount = amount + 1 WHERE id ="
            " (SELECT min(id) FROM ledger WHERE user_id = {U} AND kind = 'charge')",
            false, false, { "ledger" }, "{U}" },
        { "balance changed", NULL, "user", "UPDATE users SET balance = balance - 1 WHERE id = {U}",
            false, false, { "balance", "ledger" }, "{U}" },
        { "debit changed", NULL, "user",
            "UPDATE ledger SET amount = amount + 1 WHERE order_id = {C} AND kind = 'debit'", false,
            false, { "completed orders", "ledger" }, "{C}" },
        { "refund to another user", "split", "user",
            "UPDATE ledger SET user_id = {V} WHERE order_id = {XR} AND kind = 'refund'", false,
            false, { "refunds", "ledger" }, "{XR}" },
        { "refund without a debit", "monolith", "user",
            "INSERT INTO ledger (user_id, kind, amount, order_id) VALUES ({U}, 'refund', 5, {X});"
            "UPDATE users SET balance = balance + 5 WHERE id = {U}",
            false, false, { "refunds", "cancelled orders", "balance" }, "{X}" },
        { "order back to pending", NULL, "order",
            "UPDATE orders SET status = 'PENDING' WHERE id = {C}", false, false,
            { "pending orders" }, "{C}" },
        { "prepared transaction left", NULL, "order",
            "BEGIN; INSERT INTO txn_barrier (consumer, key) VALUES ('check-test', 'x');"
            " PREPARE TRANSACTION 'check_{PID}'",
            true, false, { "prepared transactions" }, "check_{PID}" },
        { "outbox row undelivered", NULL, "order",
            "INSERT INTO txn_outbox (event_id, source, topic, aggregate_id, payload)"
            " VALUES ('00000000-0000-4000-8000-00000000c4ec', 'order', 'order.completed', {C},"
            " '\\x')",
            false, false, { "outbox" }, "00000000-0000-4000-8000-00000000c4ec" },
        { "delivery pending", NULL, "order",
            "UPDATE txn_delivery SET state = 'pending' WHERE (event_id, subscriber) ="
            " (SELECT event_id, subscriber FROM txn_delivery WHERE event_id ="
            "  (SELECT event_id FROM txn_outbox WHERE aggregate_id = {C})"
            "  ORDER BY subscriber LIMIT 1)",
            false, false, { "outbox" }, NULL },
        { "dead letter", NULL, "order",
            "INSERT INTO txn_outbox (event_id, source, topic, aggregate_id, payload, fanned_out,"
            " pending, delivered_at) VALUES ('00000000-0000-4000-8000-0000000dead1', 'order',"
            " 'order.completed', {C}, '\\x', true, 0, now());"
            "INSERT INTO txn_dead_letters (event_id, subscriber, source, topic, attempts,"
            " last_error) VALUES ('00000000-0000-4000-8000-0000000dead1', 'cart', 'order',"
            " 'order.completed', 10, 'test')",
            false, false, { "dead letters" }, "00000000-0000-4000-8000-0000000dead1" },
        { "2pc log not done", NULL, "order",
            "INSERT INTO txn_tpc_log (gid, coordinator, txid, participants)"
            " VALUES ('check-test:1:{C}', 'check-test', {C}, 'product user')",
            false, false, { "2pc log" }, "check-test:1:{C}" },
        { "duplicate dataplatform record", NULL, "dataplatform",
            "INSERT INTO received_orders (event_id, order_id, user_id, amount)"
            " SELECT 'check-test-dup', order_id, user_id, amount FROM received_orders"
            " WHERE order_id = {C}",
            false, false, { "dataplatform" }, "{C}" },
        { "dataplatform record lost", NULL, "dataplatform",
            "DELETE FROM received_orders WHERE order_id = {C}", false, false, { "dataplatform" },
            "{C}" },
        { "record of a cancelled order", NULL, "dataplatform",
            "INSERT INTO received_orders (event_id, order_id, user_id, amount)"
            " VALUES ('check-test-x', {X}, {U}, 1)",
            false, false, { "dataplatform" }, "{X}" },
        { "coupon used by a cancelled order", NULL, "user",
            "UPDATE user_coupons SET used_order_id = {X} WHERE user_id = {V} AND coupon_id = {K}",
            false, false, { "cancelled orders" }, "{X}" },
        { "cancel reason unknown", NULL, "order",
            "UPDATE orders SET reason = 'gremlins' WHERE id = {X}", false, false,
            { "cancelled orders" }, "{X}" },
        { "participant_error without its branch", NULL, "order",
            "UPDATE orders SET reason = 'participant_error', failure_branch = '' WHERE id = {X}",
            false, false, { "cancelled orders" }, "{X}" },
        { "captured payment of a cancelled order", NULL, "payment",
            "INSERT INTO payments (order_id, user_id, amount, status)"
            " VALUES ({X}, {U}, 0, 'captured')",
            false, false, { "cancelled orders" }, "{X}" },
        { "payment of an unknown order", NULL, "payment",
            "INSERT INTO payments (order_id, user_id, amount, status)"
            " VALUES (999999, {U}, 5, 'captured')",
            false, false, { "orphans" }, "999999" },
        { "stock held without a try", NULL, "product",
            "UPDATE products SET held = held + 1 WHERE id = {P}", false, false, { "tcc holds" },
            "{P}" },
        { "balance frozen for a completed order", NULL, "user",
            "INSERT INTO balance_holds (order_id, user_id, amount, discount, status)"
            " VALUES ({C}, {U}, 5, 0, 'frozen');"
            "UPDATE users SET frozen = frozen + 5 WHERE id = {U}",
            false, false, { "tcc holds" }, "{C}" },
        { "payment of a completed order only authorized", NULL, "payment",
            "UPDATE payments SET status = 'authorized' WHERE order_id = {C}", false, false,
            { "completed orders", "tcc holds" }, "{C}" },
        { "stock tried by a cancelled order", NULL, "product",
            "INSERT INTO reservations (order_id, product_id, quantity, status)"
            " VALUES ({X}, {P}, 1, 'tried');"
            "UPDATE products SET held = held + 1 WHERE id = {P}",
            false, false, { "cancelled orders", "tcc holds" }, "{X}" },
        { "coupon held by a cancelled order", NULL, "user",
            "UPDATE user_coupons SET held_order_id = {X} WHERE user_id = {V} AND coupon_id = {K}",
            false, false, { "cancelled orders", "tcc holds" }, "{X}" },
        /* Neither dataset's orders have an orch_saga row: the corruption adds one. */
        { "saga of a completed order back in flight", NULL, "order",
            "INSERT INTO orch_saga (order_id, state, deadline_at) VALUES ({C}, 'forward', now())",
            false, false, { "unfinished" }, "{C}" },
        { "saga ended, its order pending", NULL, "order",
            "UPDATE orders SET status = 'PENDING' WHERE id = {C};"
            "INSERT INTO orch_saga (order_id, state, deadline_at) VALUES ({C}, 'completed', now())",
            false, false, { "unfinished", "pending orders" }, "{C}" },
};

#define N_CORRUPTIONS (sizeof(corruptions) / sizeof(corruptions[0]))

typedef struct ccase {
        const corruption *c;
        int ds;
} ccase;

static int
case_teardown(void **state)
{
        char admin[1024];
        char sql[256];

        (void) state;
        if (copy_name[0] == '\0') {
                return 0;
        }
        if (copy_gid[0] != '\0') {
                char conninfo[1024];
                snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", harness_pg(), copy_name);
                if (i64f(conninfo, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = '%s'",
                        copy_gid)
                    > 0) {
                        sqlf(conninfo, "ROLLBACK PREPARED '%s'", copy_gid);
                }
                copy_gid[0] = '\0';
        }
        snprintf(admin, sizeof(admin), "%s dbname=postgres", harness_pg());
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", copy_name);
        harness_sql(admin, sql);
        copy_name[0] = '\0';
        return 0;
}

static void
test_check_corruption(void **state)
{
        static int counter;
        const ccase *k = *state;
        const corruption *c = k->c;
        const char *role = k->ds == DS_MONOLITH ? "monolith" : c->role;
        char source[128];
        char conninfo[1024];
        char admin[1024];
        char sql[4096];
        char id[128];
        char *conf;
        char *out = NULL;
        int rc;

        dbname_of(db_of(k->ds, c->role), source, sizeof(source));
        snprintf(copy_name, sizeof(copy_name), "t_check_copy_%d_%d", (int) getpid(), counter++);
        snprintf(admin, sizeof(admin), "%s dbname=postgres", harness_pg());
        sqlf(admin, "DROP DATABASE IF EXISTS %s", copy_name);
        sqlf(admin, "CREATE DATABASE %s TEMPLATE %s", copy_name, source);
        snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", harness_pg(), copy_name);

        expand(c->sql, &vars[k->ds], sql, sizeof(sql));
        if (c->prepared) {
                snprintf(copy_gid, sizeof(copy_gid), "check_%d", (int) getpid());
        }
        harness_sql(conninfo, sql);
        conf = write_conf(role, conninfo);
        if (c->no_baseline) {
                rc = run_mercato(conf, &out, "check --dataset %s", ds_names[k->ds]);
        } else {
                rc = run_mercato(
                    conf, &out, "check --dataset %s --baseline %s", ds_names[k->ds], baseline);
        }
        if (c->id != NULL) {
                expand(c->id, &vars[k->ds], id, sizeof(id));
        }
        if (rc != 1) {
                fail_msg("%s (%s): exit %d, expected 1\n%s", c->name, ds_names[k->ds], rc, out);
        }
        assert_lines(out, ds_names[k->ds], c->fails, c->id != NULL ? id : NULL);
        free(out);
        remove(conf);
        free(conf);
}

int
main(void)
{
        struct CMUnitTest tests[5 + 2 * N_CORRUPTIONS];
        ccase cases[2 * N_CORRUPTIONS];
        char names[2 * N_CORRUPTIONS][128];
        size_t n = 0, m = 0;

        tests[n++] = (struct CMUnitTest) cmocka_unit_test(test_check_consistent_state_passes);
        tests[n++] = (struct CMUnitTest) cmocka_unit_test(test_check_wrong_initial_stock_fails);
        tests[n++] = (struct CMUnitTest) cmocka_unit_test(test_check_json);
        tests[n++] = (struct CMUnitTest) cmocka_unit_test(test_check_unreachable_database);
        tests[n++] = (struct CMUnitTest) cmocka_unit_test(test_check_saga_2pc_and_tcc_orders);
        for (int ds = 0; ds < N_DS; ds++) {
                for (size_t i = 0; i < N_CORRUPTIONS; i++) {
                        const corruption *c = &corruptions[i];
                        if (c->only != NULL && strcmp(c->only, ds_names[ds]) != 0) {
                                continue;
                        }
                        cases[m] = (ccase) { c, ds };
                        snprintf(
                            names[m], sizeof(names[m]), "test_check_%s: %s", ds_names[ds], c->name);
                        tests[n++] = (struct CMUnitTest) { .name = names[m],
                                .test_func = test_check_corruption,
                                .setup_func = NULL,
                                .teardown_func = case_teardown,
                                .initial_state = &cases[m] };
                        m++;
                }
        }
        return _cmocka_run_group_tests("check", tests, n, group_setup, group_teardown);
}
