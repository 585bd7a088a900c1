/* modes_util.c: the cross-mode tests' helpers: a seeded cluster, orders per mode, totals, quiet. */
#include <signal.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "modes_util.h"
#include "seed_db.h"
#include "user.pb-c.h"

const Mercato__Order__V1__Mode mu_modes[MU_N_MODES] = { MU_SAGA, MU_TPC, MU_MONO, MU_ORCH, MU_TCC };

static const char *const mono_md[] = { "dataset", "monolith", NULL };

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "modes_util: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\n");
        exit(1);
}

const char *
mu_mode_name(Mercato__Order__V1__Mode mode)
{
        switch (mode) {
        case MU_SAGA:
                return "saga";
        case MU_TPC:
                return "2pc";
        case MU_MONO:
                return "monolith";
        case MU_ORCH:
                return "orchestration";
        case MU_TCC:
                return "tcc";
        default:
                return "unspecified";
        }
}

bool
mu_mode_selected(Mercato__Order__V1__Mode mode)
{
        const char *list = getenv("MERCATO_TEST_MODES");
        const char *name = mu_mode_name(mode);
        size_t len = strlen(name);

        if (list == NULL || list[0] == '\0') {
                return true;
        }
        for (const char *p = list; *p != '\0';) {
                size_t n = strcspn(p, ",");
                if (n == len && strncmp(p, name, len) == 0) {
                        return true;
                }
                p += n;
                p += *p == ',' ? 1 : 0;
        }
        return false;
}

mu_dataset
mu_dataset_of(Mercato__Order__V1__Mode mode)
{
        return mode == MU_MONO ? MU_MONOLITH : MU_SPLIT;
}

const char *
mu_dataset_name(mu_dataset ds)
{
        return ds == MU_MONOLITH ? "monolith" : "split";
}

const char *const *
mu_metadata(mu_dataset ds)
{
        return ds == MU_MONOLITH ? mono_md : NULL;
}

int64_t
mu_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * SQL
 */

static PGconn *
connect_or_die(const char *conninfo)
{
        PGconn *pg = PQconnectdb(conninfo);

        if (PQstatus(pg) != CONNECTION_OK) {
                die("cannot connect (%s): %s", conninfo, PQerrorMessage(pg));
        }
        return pg;
}

/* Kept-open connections, one per conninfo: a poll of a dataset runs a score of queries, and
 * a backend forked for each costs seconds per wait. Under conns_mu, held for the query. */
#define CONNS_MAX 32
static struct {
        char *conninfo;
        PGconn *pg;
} conns[CONNS_MAX];
static size_t conns_next; /* the slot to reuse when all are taken */
static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;

static void
conn_close(size_t i)
{
        PQfinish(conns[i].pg);
        free(conns[i].conninfo);
        conns[i].pg = NULL;
        conns[i].conninfo = NULL;
}

/* The slot of conninfo's connection, opened (or reopened, if it broke) as needed. */
static size_t
conn_get(const char *conninfo)
{
        size_t i;

        for (i = 0; i < CONNS_MAX; i++) {
                if (conns[i].conninfo != NULL && strcmp(conns[i].conninfo, conninfo) == 0) {
                        if (PQstatus(conns[i].pg) == CONNECTION_OK) {
                                return i;
                        }
                        conn_close(i);
                        break;
                }
        }
        for (i = 0; i < CONNS_MAX && conns[i].conninfo != NULL; i++) { }
        if (i == CONNS_MAX) {
                i = conns_next;
                conns_next = (conns_next + 1) % CONNS_MAX;
                conn_close(i);
        }
        conns[i].pg = connect_or_die(conninfo);
        conns[i].conninfo = rpc_xstrdup(conninfo);
        return i;
}

/* Closes every kept connection (a cluster's databases are about to be dropped). */
static void
conns_close_all(void)
{
        pthread_mutex_lock(&conns_mu);
        for (size_t i = 0; i < CONNS_MAX; i++) {
                if (conns[i].conninfo != NULL) {
                        conn_close(i);
                }
        }
        pthread_mutex_unlock(&conns_mu);
}

static char *
sql_str(const char *conninfo, const char *sql)
{
        PGresult *res = NULL;
        char *v;
        size_t i;

        pthread_mutex_lock(&conns_mu);
        for (int attempt = 0; attempt < 2; attempt++) {
                i = conn_get(conninfo);
                res = PQexec(conns[i].pg, sql);
                if (PQresultStatus(res) == PGRES_TUPLES_OK
                    || PQstatus(conns[i].pg) == CONNECTION_OK) {
                        break;
                }
                /* The server restarted under a kept connection: once more, on a new one. */
                PQclear(res);
                res = NULL;
                conn_close(i);
        }
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                die("SQL failed: %s\n  %s", sql,
                    conns[i].pg != NULL ? PQerrorMessage(conns[i].pg) : "connection lost");
        }
        v = rpc_xstrdup(PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "");
        PQclear(res);
        pthread_mutex_unlock(&conns_mu);
        return v;
}

char *
mu_strf(const char *conninfo, const char *fmt, ...)
{
        char sql[2048];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(sql, sizeof(sql), fmt, ap);
        va_end(ap);
        return sql_str(conninfo, sql);
}

int64_t
mu_i64f(const char *conninfo, const char *fmt, ...)
{
        char sql[2048];
        va_list ap;
        char *v;
        int64_t n;

        va_start(ap, fmt);
        vsnprintf(sql, sizeof(sql), fmt, ap);
        va_end(ap);
        v = sql_str(conninfo, sql);
        n = v[0] != '\0' ? strtoll(v, NULL, 10) : 0;
        free(v);
        return n;
}

const char *
mu_db(const harness_cluster *hc, mu_dataset ds, const char *service)
{
        const char *db = harness_cluster_db(hc, ds == MU_MONOLITH ? "monolith" : service);

        if (db == NULL) {
                die("no database for %s", service);
        }
        return db;
}

/* Whether a table exists in a database (the txn tables exist where txn migrated). */
static bool
has_table(const char *conninfo, const char *table)
{
        return mu_i64f(conninfo, "SELECT (to_regclass('%s') IS NOT NULL)::int", table) != 0;
}

/* The databases of a dataset: every service's, or the monolith one. */
static int
dataset_dbs(const harness_cluster *hc, mu_dataset ds, const char **dbs)
{
        if (ds == MU_MONOLITH) {
                dbs[0] = hc->monolith_db;
                return 1;
        }
        for (int i = 0; i < hc->n; i++) {
                dbs[i] = hc->dbs[i];
        }
        return hc->n;
}

/*
 * Cluster
 */

rpc_client *
mu_client(const harness_cluster *hc, const char *name)
{
        const char *addr = harness_cluster_address(hc, name);
        rpc_client_opts opts = {
                .timeout_ms = 30000,
                .max_attempts = 1,
                .breaker_threshold = 1 << 30,
        };
        rpc_client *cl = NULL;

        if (addr == NULL || rpc_client_open(addr, &opts, &cl) != RPC_OK) {
                die("no client for %s", name);
        }
        return cl;
}

void
mu_seed(const harness_cluster *hc, const svc_seed *s)
{
        const seed_store *list[SEED_N_STORES];
        seed_failure f;

        for (size_t i = 0; i < SEED_N_STORES; i++) {
                const char *db = harness_cluster_db(hc, seed_stores[i].name);
                list[0] = &seed_stores[i];
                if (db == NULL) {
                        die("the cluster has no %s", seed_stores[i].name);
                }
                if (seed_database(db, list, 1, s, NULL, NULL, &f) != RPC_OK) {
                        die("seeding %s: %s", seed_stores[i].name, f.msg);
                }
        }
        for (size_t i = 0; i < SEED_N_STORES; i++) {
                list[i] = &seed_stores[i];
        }
        if (seed_database(hc->monolith_db, list, SEED_N_STORES, s, NULL, NULL, &f) != RPC_OK) {
                die("seeding the monolith (%s): %s", f.store != NULL ? f.store->name : "-", f.msg);
        }
}

mu_cluster *
mu_cluster_start(const char *extra, const svc_seed *s)
{
        mu_cluster *mc = rpc_xcalloc(1, sizeof(*mc));

        mc->seed = *s;
        mc->hc = harness_cluster_new(MU_SERVICES, extra);
        mu_seed(mc->hc, s);
        harness_cluster_start(mc->hc);
        mc->order = mu_client(mc->hc, "order");
        mc->user = mu_client(mc->hc, "user");
        return mc;
}

void
mu_cluster_free(mu_cluster *mc)
{
        if (mc == NULL) {
                return;
        }
        rpc_client_free(mc->order);
        rpc_client_free(mc->user);
        /* The order service first, while the services it calls still answer: its
         * background loops (relay, 2pc recovery) then finish their passes at once. */
        harness_cluster_signal(mc->hc, "order", SIGTERM);
        conns_close_all();
        harness_cluster_free(mc->hc);
        free(mc);
}

/*
 * Calls
 */

static void
result_of(const Mercato__Order__V1__Order *o, mu_result *r)
{
        r->order_id = o->order_id;
        r->status = (int) o->status;
        snprintf(r->reason, sizeof(r->reason), "%s", o->reason != NULL ? o->reason : "");
        r->total = o->total;
        r->discount = o->discount;
        r->amount = o->amount;
        r->mode = (int) o->mode;
}

void
mu_place(rpc_client *order, Mercato__Order__V1__Mode mode, int64_t user_id, const mu_item *items,
    size_t n, int64_t coupon_id, int64_t timeout_ms, mu_result *ret)
{
        Mercato__Order__V1__PlaceOrderRequest req = MERCATO__ORDER__V1__PLACE_ORDER_REQUEST__INIT;
        Mercato__Order__V1__PlaceOrderItem *its = rpc_xcalloc(n > 0 ? n : 1, sizeof(*its));
        Mercato__Order__V1__PlaceOrderItem **ptrs = rpc_xcalloc(n > 0 ? n : 1, sizeof(*ptrs));
        Mercato__Order__V1__PlaceOrderResponse *resp = NULL;
        rpc_call_opts opts = {
                .timeout_ms = timeout_ms > 0 ? timeout_ms : 30000,
                .no_retry = true,
                .metadata = mu_metadata(mu_dataset_of(mode)),
        };
        rpc_error err = { 0 };

        memset(ret, 0, sizeof(*ret));
        for (size_t i = 0; i < n; i++) {
                mercato__order__v1__place_order_item__init(&its[i]);
                its[i].product_id = items[i].product_id;
                its[i].quantity = items[i].quantity;
                ptrs[i] = &its[i];
        }
        req.user_id = user_id;
        req.items = ptrs;
        req.n_items = n;
        req.coupon_id = coupon_id;
        req.mode = mode;
        ret->st = rpc_client_call(order, MU_ORDER "PlaceOrder", &req.base,
            &mercato__order__v1__place_order_response__descriptor, (ProtobufCMessage **) &resp,
            &opts, &err);
        if (ret->st == RPC_OK) {
                if (resp->order != NULL) {
                        result_of(resp->order, ret);
                }
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        } else {
                snprintf(ret->msg, sizeof(ret->msg), "%s", err.message);
        }
        free(its);
        free(ptrs);
}

void
mu_get(rpc_client *order, Mercato__Order__V1__Mode mode, int64_t order_id, mu_result *ret)
{
        Mercato__Order__V1__GetOrderRequest req = MERCATO__ORDER__V1__GET_ORDER_REQUEST__INIT;
        Mercato__Order__V1__Order *resp = NULL;
        rpc_call_opts opts = {
                .timeout_ms = 10000,
                .no_retry = true,
                .metadata = mu_metadata(mu_dataset_of(mode)),
        };
        rpc_error err = { 0 };

        memset(ret, 0, sizeof(*ret));
        req.order_id = order_id;
        ret->st = rpc_client_call(order, MU_ORDER "GetOrder", &req.base,
            &mercato__order__v1__order__descriptor, (ProtobufCMessage **) &resp, &opts, &err);
        if (ret->st == RPC_OK) {
                result_of(resp, ret);
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        } else {
                snprintf(ret->msg, sizeof(ret->msg), "%s", err.message);
        }
}

bool
mu_wait_terminal(rpc_client *order, Mercato__Order__V1__Mode mode, int64_t order_id,
    int64_t timeout_ms, mu_result *ret)
{
        int64_t end = mu_now_ms() + timeout_ms;

        for (;;) {
                mu_get(order, mode, order_id, ret);
                if (ret->st == RPC_OK
                    && (ret->status == MU_COMPLETED || ret->status == MU_CANCELLED)) {
                        return true;
                }
                if (mu_now_ms() >= end) {
                        return false;
                }
                usleep(50 * 1000);
        }
}

static rpc_status
user_call(rpc_client *user, mu_dataset ds, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc)
{
        rpc_call_opts opts = {
                .timeout_ms = 15000,
                .no_retry = true,
                .metadata = mu_metadata(ds),
        };
        ProtobufCMessage *resp = NULL;
        rpc_error err = { 0 };
        rpc_status st;

        st = rpc_client_call(user, method, req, desc, &resp, &opts, &err);
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return st;
}

rpc_status
mu_charge(rpc_client *user, mu_dataset ds, int64_t user_id, int64_t amount)
{
        Mercato__User__V1__ChargeBalanceRequest req
            = MERCATO__USER__V1__CHARGE_BALANCE_REQUEST__INIT;

        req.user_id = user_id;
        req.amount = amount;
        return user_call(user, ds, MU_USER "ChargeBalance", &req.base,
            &mercato__user__v1__charge_balance_response__descriptor);
}

rpc_status
mu_issue_coupon(rpc_client *user, mu_dataset ds, int64_t user_id, int64_t coupon_id)
{
        Mercato__User__V1__IssueCouponRequest req = MERCATO__USER__V1__ISSUE_COUPON_REQUEST__INIT;

        req.user_id = user_id;
        req.coupon_id = coupon_id;
        return user_call(user, ds, MU_USER "IssueCoupon", &req.base,
            &mercato__user__v1__user_coupon__descriptor);
}

/*
 * Totals, quiet, snapshots
 */

/* The unfinished outbox events and the dead letters of one database (0 without txn). */
static void
outbox_of(const char *db, int64_t *pending, int64_t *dead)
{
        if (!has_table(db, "txn_outbox")) {
                return;
        }
        *pending += mu_i64f(db, "SELECT count(*) FROM txn_outbox WHERE delivered_at IS NULL");
        *dead += mu_i64f(db, "SELECT count(*) FROM txn_dead_letters");
}

static int64_t
prepared_of(const char *db)
{
        return mu_i64f(
            db, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
}

void
mu_totals_read(const harness_cluster *hc, mu_dataset ds, mu_totals *t)
{
        const char *product = mu_db(hc, ds, "product");
        const char *user = mu_db(hc, ds, "user");
        const char *payment = mu_db(hc, ds, "payment");
        const char *order = mu_db(hc, ds, "order");
        const char *dp = mu_db(hc, ds, "dataplatform");
        const char *dbs[9];
        int n = dataset_dbs(hc, ds, dbs);

        memset(t, 0, sizeof(*t));
        t->stock = mu_i64f(product, "SELECT coalesce(sum(stock), 0) FROM products");
        t->stock_negative = mu_i64f(product, "SELECT count(*) FROM products WHERE stock < 0");
        t->held = mu_i64f(
            product, "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE status = 'held'");
        t->sold = mu_i64f(
            product, "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE status = 'sold'");
        t->released = mu_i64f(product,
            "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE status = 'released'");
        t->tried = mu_i64f(
            product, "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE status = 'tried'");
        t->stock_held = mu_i64f(product, "SELECT coalesce(sum(held), 0) FROM products");
        t->frozen = mu_i64f(user, "SELECT coalesce(sum(frozen), 0) FROM users");
        t->coupons_held
            = mu_i64f(user, "SELECT count(*) FROM user_coupons WHERE held_order_id IS NOT NULL");
        t->authorized
            = mu_i64f(payment, "SELECT count(*) FROM payments WHERE status = 'authorized'");
        t->balance = mu_i64f(user, "SELECT coalesce(sum(balance), 0) FROM users");
        t->balance_negative = mu_i64f(user, "SELECT count(*) FROM users WHERE balance < 0");
        t->charges
            = mu_i64f(user, "SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind = 'charge'");
        t->debits
            = mu_i64f(user, "SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind = 'debit'");
        t->refunds
            = mu_i64f(user, "SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind = 'refund'");
        t->coupons_used
            = mu_i64f(user, "SELECT count(*) FROM user_coupons WHERE used_order_id IS NOT NULL");
        t->coupons_issued = mu_i64f(user, "SELECT coalesce(sum(issued), 0) FROM coupons");
        t->captured = mu_i64f(payment, "SELECT count(*) FROM payments WHERE status = 'captured'");
        t->captured_amount = mu_i64f(
            payment, "SELECT coalesce(sum(amount), 0) FROM payments WHERE status = 'captured'");
        t->refunded = mu_i64f(payment, "SELECT count(*) FROM payments WHERE status = 'refunded'");
        t->pending = mu_i64f(order, "SELECT count(*) FROM orders WHERE status = 'PENDING'");
        t->completed = mu_i64f(order, "SELECT count(*) FROM orders WHERE status = 'COMPLETED'");
        t->cancelled = mu_i64f(order, "SELECT count(*) FROM orders WHERE status = 'CANCELLED'");
        t->completed_amount = mu_i64f(
            order, "SELECT coalesce(sum(amount), 0) FROM orders WHERE status = 'COMPLETED'");
        t->completed_quantity = mu_i64f(order,
            "SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o"
            " ON o.id = i.order_id WHERE o.status = 'COMPLETED'");
        t->dp_records = mu_i64f(dp, "SELECT count(*) FROM received_orders");
        t->dp_orders = mu_i64f(dp, "SELECT count(DISTINCT order_id) FROM received_orders");
        for (int i = 0; i < n; i++) {
                t->prepared += prepared_of(dbs[i]);
                outbox_of(dbs[i], &t->outbox_pending, &t->dead_letters);
        }
}

bool
mu_totals_settled(const mu_totals *t)
{
        return t->held == 0 && t->tried == 0 && t->stock_held == 0 && t->frozen == 0
            && t->coupons_held == 0 && t->authorized == 0;
}

void
mu_totals_print(FILE *f, const char *label, const mu_totals *t)
{
        fprintf(f,
            "%s: stock %lld (neg %lld) held %lld sold %lld released %lld"
            " | tcc: tried %lld held %lld frozen %lld coupons %lld authorized %lld | balance %lld"
            " (neg %lld) charges %lld debits %lld refunds %lld | payments captured %lld (%lld)"
            " refunded %lld | orders pending %lld completed %lld (amount %lld, qty %lld)"
            " cancelled %lld | coupons used %lld issued %lld | dp %lld (%lld orders) |"
            " prepared %lld outbox %lld dead %lld\n",
            label, (long long) t->stock, (long long) t->stock_negative, (long long) t->held,
            (long long) t->sold, (long long) t->released, (long long) t->tried,
            (long long) t->stock_held, (long long) t->frozen, (long long) t->coupons_held,
            (long long) t->authorized, (long long) t->balance, (long long) t->balance_negative,
            (long long) t->charges, (long long) t->debits, (long long) t->refunds,
            (long long) t->captured, (long long) t->captured_amount, (long long) t->refunded,
            (long long) t->pending, (long long) t->completed, (long long) t->completed_amount,
            (long long) t->completed_quantity, (long long) t->cancelled,
            (long long) t->coupons_used, (long long) t->coupons_issued, (long long) t->dp_records,
            (long long) t->dp_orders, (long long) t->prepared, (long long) t->outbox_pending,
            (long long) t->dead_letters);
}

void
mu_dead_letters_print(FILE *f, const harness_cluster *hc, mu_dataset ds)
{
        const char *dbs[9];
        int n = dataset_dbs(hc, ds, dbs);

        for (int i = 0; i < n; i++) {
                if (!has_table(dbs[i], "txn_dead_letters")) {
                        continue;
                }
                char *s = mu_strf(dbs[i],
                    "SELECT coalesce(string_agg(format('%%s x%%s: %%s', subscriber || ' ' || topic,"
                    " n, e), E'\\n'), '') FROM (SELECT subscriber, topic, last_error AS e,"
                    " count(*) AS n FROM txn_dead_letters GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT "
                    "10) d");
                if (s[0] != '\0') {
                        fprintf(f, "dead letters in %s:\n%s\n", dbs[i], s);
                }
                free(s);
        }
}

bool
mu_wait_quiet(const harness_cluster *hc, mu_dataset ds, int64_t timeout_ms)
{
        const char *order = mu_db(hc, ds, "order");
        const char *dbs[9];
        int n = dataset_dbs(hc, ds, dbs);
        int64_t start = mu_now_ms(), end = start + timeout_ms;
        int64_t pending, outbox, dead, prepared;
        int64_t first_pending = -1, first_outbox = 0, first_prepared = 0;

        for (;;) {
                pending = mu_i64f(order, "SELECT count(*) FROM orders WHERE status = 'PENDING'");
                outbox = dead = prepared = 0;
                for (int i = 0; i < n; i++) {
                        prepared += prepared_of(dbs[i]);
                        outbox_of(dbs[i], &outbox, &dead);
                }
                if (first_pending < 0) {
                        first_pending = pending;
                        first_outbox = outbox;
                        first_prepared = prepared;
                }
                if (pending == 0 && outbox == 0 && prepared == 0) {
                        if (mu_now_ms() - start > 2000) {
                                fprintf(stderr,
                                    "modes_util: %s dataset quiet after %lld ms (at first:"
                                    " %lld pending orders, %lld outbox events, %lld prepared)\n",
                                    mu_dataset_name(ds), (long long) (mu_now_ms() - start),
                                    (long long) first_pending, (long long) first_outbox,
                                    (long long) first_prepared);
                        }
                        return true;
                }
                if (mu_now_ms() >= end) {
                        fprintf(stderr,
                            "modes_util: %s dataset not quiet after %lld ms: %lld pending"
                            " orders, %lld outbox events, %lld prepared transactions\n",
                            mu_dataset_name(ds), (long long) timeout_ms, (long long) pending,
                            (long long) outbox, (long long) prepared);
                        return false;
                }
                usleep(100 * 1000);
        }
}

/* "label" followed by s, which it frees. */
static char *
prefixed(const char *label, char *s)
{
        char *out = rpc_xcalloc(1, strlen(label) + strlen(s) + 1);

        strcpy(out, label);
        strcat(out, s);
        free(s);
        return out;
}

char *
mu_snapshot(const harness_cluster *hc, mu_dataset ds)
{
        const char *product = mu_db(hc, ds, "product");
        const char *user = mu_db(hc, ds, "user");
        char *parts[7];
        size_t len = 1;
        char *out;

        parts[0] = mu_strf(product,
            "SELECT 'stock ' || string_agg(id || ':' || stock || '/' || held, ',' ORDER BY id)"
            " FROM products");
        parts[1] = mu_strf(product,
            "SELECT 'reserved ' || coalesce(string_agg(order_id || '/' || product_id || ':'"
            " || quantity || status, ',' ORDER BY order_id, product_id), '') FROM reservations"
            " WHERE status <> 'released'");
        parts[2] = mu_strf(user,
            "SELECT 'balance ' || string_agg(id || ':' || balance || '/' || frozen, ',' ORDER BY "
            "id)"
            " FROM users");
        parts[3] = mu_strf(user,
            "SELECT 'coupons ' || coalesce(string_agg(id || ':' || issued, ',' ORDER BY id), '')"
            " FROM coupons");
        parts[4] = mu_strf(user,
            "SELECT 'held ' || coalesce(string_agg(user_id || '/' || coupon_id || ':'"
            " || coalesce(used_order_id, 0) || '/' || coalesce(held_order_id, 0),"
            " ',' ORDER BY user_id, coupon_id), '')"
            " FROM user_coupons");
        parts[5] = prefixed("captured ", mu_captured_list(hc, ds));
        parts[6] = prefixed("dp ", mu_dp_list(hc, ds));
        for (int i = 0; i < 7; i++) {
                len += strlen(parts[i]) + 1;
        }
        out = rpc_xcalloc(1, len);
        for (int i = 0; i < 7; i++) {
                strcat(out, parts[i]);
                strcat(out, "\n");
                free(parts[i]);
        }
        return out;
}

char *
mu_completed_list(const harness_cluster *hc, mu_dataset ds, Mercato__Order__V1__Mode mode)
{
        if (mode == MERCATO__ORDER__V1__MODE__MODE_UNSPECIFIED) {
                return mu_strf(mu_db(hc, ds, "order"),
                    "SELECT coalesce(string_agg(id || ':' || amount, ',' ORDER BY id), '')"
                    " FROM orders WHERE status = 'COMPLETED'");
        }
        return mu_strf(mu_db(hc, ds, "order"),
            "SELECT coalesce(string_agg(id || ':' || amount, ',' ORDER BY id), '')"
            " FROM orders WHERE status = 'COMPLETED' AND mode = '%s'",
            mu_mode_name(mode));
}

char *
mu_captured_list(const harness_cluster *hc, mu_dataset ds)
{
        return mu_strf(mu_db(hc, ds, "payment"),
            "SELECT coalesce(string_agg(order_id || ':' || amount, ',' ORDER BY order_id), '')"
            " FROM payments WHERE status = 'captured'");
}

char *
mu_dp_list(const harness_cluster *hc, mu_dataset ds)
{
        return mu_strf(mu_db(hc, ds, "dataplatform"),
            "SELECT coalesce(string_agg(order_id || ':' || amount, ',' ORDER BY order_id,"
            " event_id), '') FROM received_orders");
}
