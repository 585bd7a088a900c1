/* test_replay.c: the SQL replay issues what each mode issues, and every invariant holds after it.
 *
 * test_replay_modes_end_as_built: a short replay of each mode completes orders, cancels
 * the ones built to fail with their reasons, and `mercato check --baseline` passes on the
 * replay databases afterwards.
 *
 * test_replay_statements_equal: the same orders placed through a running cluster and then
 * replayed give, per database and per statement, the same number of calls in
 * pg_stat_statements (deploy/pg preloads it), except the statements whose count depends on
 * timing, listed in `timing` below with why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"
#include "modes_util.h"
#include "pgscript.h"
#include "replay.h"
#include "workload.h"

/* The databases of a cluster, by topology section. */
static const char *const sections[]
    = { "product", "cart", "user", "payment", "order", "dataplatform", "monolith" };
#define N_SECTIONS 7

/* The role the test's own SQL runs as, so that pg_stat_statements tells it apart from the
 * code's (which runs as the harness's user). */
#define OBSERVER "replay_observer"

static void
workload(bench_workload *w)
{
        char err[256];

        bench_workload_defaults(w);
        w->products = 30;
        w->users = 40;
        w->fail_fraction = 0.4;
        w->seed = 7;
        assert_true(bench_workload_finish(w, err, sizeof(err)));
}

/* The dbname of a conninfo (malloc'd). */
static char *
dbname_of(const char *conninfo)
{
        PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
        char *name = NULL;

        assert_non_null(opts);
        for (PQconninfoOption *p = opts; p->keyword != NULL; p++) {
                if (strcmp(p->keyword, "dbname") == 0 && p->val != NULL) {
                        free(name);
                        name = strdup(p->val);
                }
        }
        PQconninfoFree(opts);
        assert_non_null(name);
        return name;
}

static const char *
section_db(const harness_cluster *hc, int i)
{
        return i < N_SECTIONS - 1 ? harness_cluster_db(hc, sections[i]) : hc->monolith_db;
}

static char *
pg_db(const char *dbname, const char *user)
{
        size_t n = strlen(harness_pg()) + 128;
        char *ci = malloc(n);

        snprintf(ci, n, "%s dbname=%s%s%s", harness_pg(), dbname, user != NULL ? " user=" : "",
            user != NULL ? user : "");
        return ci;
}

/* Drops the replay twins of a cluster's databases. */
static void
drop_replay_dbs(const harness_cluster *hc)
{
        char *admin = pg_db("postgres", NULL);

        for (int i = 0; i < N_SECTIONS; i++) {
                char *name = dbname_of(section_db(hc, i));
                char sql[256];

                snprintf(
                    sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s_replay\" WITH (FORCE)", name);
                harness_sql(admin, sql);
                free(name);
        }
        free(admin);
}

/* `mercato --conf conf check --baseline base`: its exit status. */
static int
run_check(const replay_result *r)
{
        char *bin = harness_build_path("services/mercato/mercato");
        char cmd[12000];
        int rc;

        snprintf(cmd, sizeof(cmd), "'%s' --conf '%s' check --baseline '%s' > /dev/null", bin,
            r->conf_path, r->baseline_path);
        rc = system(cmd);
        free(bin);
        return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void
remove_outputs(const replay_result *r)
{
        char dir[4096];

        unlink(r->conf_path);
        unlink(r->baseline_path);
        snprintf(dir, sizeof(dir), "%s", r->conf_path);
        *strrchr(dir, '/') = '\0';
        rmdir(dir);
}

static void
set_mercato_bin(void)
{
        char *bin = harness_build_path("services/mercato/mercato");

        setenv("MERCATO_BIN", bin, 1);
        free(bin);
}

static void
test_replay_modes_end_as_built(void **state)
{
        static const char *const modes[] = { "saga", "2pc", "monolith", "orchestration", "tcc" };
        harness_cluster *hc = harness_cluster_new(MU_SERVICES, NULL);
        bench_workload w;
        rpc_conf *conf = NULL;
        char err[512];

        (void) state;
        set_mercato_bin();
        workload(&w);
        assert_int_equal(rpc_conf_load(hc->conf_path, &conf, err, sizeof(err)), RPC_OK);
        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
                replay_opts o = {
                        .conf = conf,
                        .mode = modes[m],
                        .w = &w,
                        .clients = 2,
                        .warmup_s = 0.2,
                        .duration_s = 1.5,
                };
                replay_result r;
                rpc_status st = bench_replay_run(&o, &r, err, sizeof(err));

                fprintf(stderr, "replay %s: %s; %llu orders, %llu completed, %llu cancelled\n",
                    modes[m], st == RPC_OK ? "ok" : err, (unsigned long long) r.orders,
                    (unsigned long long) r.completed, (unsigned long long) r.cancelled);
                assert_int_equal(st, RPC_OK);
                assert_true(r.orders >= 10);
                assert_int_equal(r.errors, 0);
                assert_int_equal(r.wrong, 0);
                assert_true(r.completed > 0);
                assert_true(r.cancelled > 0);
                /* Each failing kind was cancelled with its reason, and nothing else was. */
                char *odb_name = dbname_of(strcmp(modes[m], "monolith") == 0
                        ? hc->monolith_db
                        : harness_cluster_db(hc, "order"));
                char replay_name[256];
                snprintf(replay_name, sizeof(replay_name), "%s_replay", odb_name);
                char *odb = pg_db(replay_name, NULL);
                int64_t reasons = mu_i64f(
                    odb, "SELECT count(DISTINCT reason) FROM orders WHERE status = 'CANCELLED'");
                int64_t others = mu_i64f(odb,
                    "SELECT count(*) FROM orders WHERE status = 'CANCELLED' AND reason NOT IN"
                    " ('insufficient_balance', 'out_of_stock', 'payment_declined')");
                int64_t pending
                    = mu_i64f(odb, "SELECT count(*) FROM orders WHERE status = 'PENDING'");
                assert_int_equal(reasons, 3);
                assert_int_equal(others, 0);
                assert_int_equal(pending, 0);
                free(odb);
                free(odb_name);
                assert_int_equal(run_check(&r), 0);
                remove_outputs(&r);
        }
        rpc_conf_free(conf);
        drop_replay_dbs(hc);
        harness_cluster_free(hc);
}

/*
 * Statement counts
 */

/* Statements whose count depends on timing, not on the orders: how often a relay finds its
 * outbox idle, or a background scan runs. Matched by a fragment of their normalized SQL. */
static const struct {
        const char *fragment;
        bool compare_rows; /* their rows are per event, not per poll: compared instead */
} timing[] = {
        /* the relay's poll for new topics, run at every wake and every poll_ms */
        { "SELECT DISTINCT topic FROM txn_outbox", false },
        /* the relay's poll for subscribers with work, likewise */
        { "SELECT DISTINCT subscriber FROM txn_delivery", false },
        /* a delivery thread's look at its next due row, after every pass */
        { "min(next_attempt_at)", false },
        /* the fan-out and the claim run once per pass, over however many events are there:
         * their calls follow the timing, their rows (one per event fanned out, one per
         * delivery claimed) do not */
        { "INSERT INTO txn_delivery", true },
        { "lease = gen_random_uuid()", true },
        /* 2pc recovery's passes (every tpc_recovery_ms) and their scan of prepared xacts */
        { "FROM txn_tpc_log WHERE done_at IS ?", false },
        { "ORDER BY prepared, gid", false },
        /* the saga deadline scan (every saga_scan_ms) */
        { "ceil(extract(? FROM created_at", false },
        /* the orchestrator's recovery scan (every saga_scan_ms), orchestration's and tcc's */
        { "FROM orch_saga WHERE state IN", false },
        /* the coordinator's epoch, drawn once at its start (the order service's may come
         * after the reset; the replay draws its own before) */
        { "INSERT INTO txn_tpc_epoch", false },
        /* the outbox counts: the replay's wait for its relays to drain, the checker's */
        { "count(*) FROM txn_dead_letters", false },
};

typedef struct stmt_count {
        char *db;    /* the section */
        char *query; /* normalized */
        int64_t calls;
        int64_t rows;
} stmt_count;

typedef struct counts {
        stmt_count *v;
        size_t n;
} counts;

static int
timing_of(const char *query)
{
        for (size_t i = 0; i < sizeof(timing) / sizeof(timing[0]); i++) {
                if (strstr(query, timing[i].fragment) != NULL) {
                        return (int) i;
                }
        }
        return -1;
}

/* A statement's text with every constant and parameter as "?". pg_stat_statements keeps
 * the text of an entry's first execution: with its constants as $n when the statement was
 * parsed after the reset (a connection made since), as written when it was prepared before.
 * Both forms become the same here: quoted literals, numbers, $n, and the bare words the
 * parser turns into constants (true, false, null, epoch in extract). */
static bool
word_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
            || c == '_';
}

static char *
normalize(const char *q)
{
        static const char *const words[] = { "true", "false", "null", "epoch" };
        char *out = malloc(strlen(q) + 1);
        size_t k = 0;

        for (const char *p = q; *p != '\0';) {
                bool start = p == q || !word_char(p[-1]);
                const char *end = p;

                if (*p == '\'' && strchr(p + 1, '\'') != NULL) {
                        end = strchr(p + 1, '\'') + 1;
                } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
                        end = p + 1;
                        while (*end >= '0' && *end <= '9') {
                                end++;
                        }
                } else if (start && *p >= '0' && *p <= '9') {
                        end = p;
                        while ((*end >= '0' && *end <= '9')
                            || (*end == '.' && end[1] >= '0' && end[1] <= '9')) {
                                end++;
                        }
                        if (word_char(*end)) {
                                end = p; /* part of a word */
                        }
                } else if (start && word_char(*p)) {
                        const char *w = p;
                        while (word_char(*w)) {
                                w++;
                        }
                        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
                                if ((size_t) (w - p) == strlen(words[i])
                                    && strncasecmp(p, words[i], (size_t) (w - p)) == 0) {
                                        end = w;
                                }
                        }
                        if (end == p) {
                                memcpy(out + k, p, (size_t) (w - p));
                                k += (size_t) (w - p);
                                p = w;
                                continue;
                        }
                }
                if (end != p) {
                        out[k++] = '?';
                        p = end;
                } else {
                        out[k++] = *p++;
                }
        }
        out[k] = '\0';
        return out;
}

/* A pgbench script runs each statement as EXECUTE of a PREPARE made with the service's SQL;
 * pg_stat_statements counts it under that statement, shown with the PREPARE's text. */
static const char *
strip_prepare(const char *query)
{
        const char *as;

        if (strncmp(query, "PREPARE ", 8) != 0 || (as = strstr(query, " AS ")) == NULL) {
                return query;
        }
        return as + 4;
}

static void
counts_add(counts *c, const char *db, const char *query, int64_t calls, int64_t rows)
{
        char *q = normalize(strip_prepare(query));

        for (size_t i = 0; i < c->n; i++) {
                if (strcmp(c->v[i].db, db) == 0 && strcmp(c->v[i].query, q) == 0) {
                        c->v[i].calls += calls;
                        c->v[i].rows += rows;
                        free(q);
                        return;
                }
        }
        c->v = realloc(c->v, (c->n + 1) * sizeof(*c->v));
        c->v[c->n++] = (stmt_count) { .db = strdup(db), .query = q, .calls = calls, .rows = rows };
}

static void
counts_free(counts *c)
{
        for (size_t i = 0; i < c->n; i++) {
                free(c->v[i].db);
                free(c->v[i].query);
        }
        free(c->v);
        c->v = NULL;
        c->n = 0;
}

static const stmt_count *
counts_find(const counts *c, const char *db, const char *query)
{
        for (size_t i = 0; i < c->n; i++) {
                if (strcmp(c->v[i].db, db) == 0 && strcmp(c->v[i].query, query) == 0) {
                        return &c->v[i];
                }
        }
        return NULL;
}

static char *observer_db; /* where the extension lives; read as OBSERVER */

static void
pgss_reset(void *arg)
{
        (void) arg;
        harness_sql(observer_db, "SELECT pg_stat_statements_reset()");
}

/* The code's statements (the harness user's) on the databases of one dataset, with
 * `suffix` after each cluster database's name ("" or "_replay"), by section. */
static void
pgss_read(const harness_cluster *hc, bool mono, const char *suffix, counts *ret)
{
        PGconn *pg = PQconnectdb(observer_db);

        assert_int_equal(PQstatus(pg), CONNECTION_OK);
        for (int i = 0; i < N_SECTIONS; i++) {
                if (mono != (i == N_SECTIONS - 1)) {
                        continue;
                }
                char *name = dbname_of(section_db(hc, i));
                char datname[256];
                const char *params[2] = { datname, "mercato" };
                PGresult *res;

                snprintf(datname, sizeof(datname), "%s%s", name, suffix);
                res = PQexecParams(pg,
                    "SELECT s.query, s.calls, s.rows FROM pg_stat_statements s"
                    " JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid"
                    " WHERE d.datname = $1 AND r.rolname = $2",
                    2, NULL, params, NULL, NULL, 0);
                assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
                for (int row = 0; row < PQntuples(res); row++) {
                        counts_add(ret, sections[i], PQgetvalue(res, row, 0),
                            strtoll(PQgetvalue(res, row, 1), NULL, 10),
                            strtoll(PQgetvalue(res, row, 2), NULL, 10));
                }
                PQclear(res);
                free(name);
        }
        PQfinish(pg);
}

/* The deliveries of the recording sent more than once, on the replay databases. */
static int64_t
retried_deliveries(const harness_cluster *hc, bool mono)
{
        int64_t n = 0;

        for (int i = 0; i < N_SECTIONS; i++) {
                if (mono != (i == N_SECTIONS - 1)) {
                        continue;
                }
                char *name = dbname_of(section_db(hc, i));
                char datname[256];

                snprintf(datname, sizeof(datname), "%s_replay", name);
                char *ci = pg_db(datname, NULL);
                n += mu_i64f(ci, "SELECT coalesce(sum(attempts - 1), 0) FROM txn_delivery");
                free(ci);
                free(name);
        }
        return n;
}

/* Compares two runs' counts (the services' and the replay's, or a recording's and its
 * scripts'); prints every difference. slack is how many rows the per-event statements may
 * differ by in all: a script run back to back finds a delivery that was retried (and so
 * put off by its backoff) not yet due, where the recording, in real time, found it due. */
static int
counts_compare(const char *mode, const char *label_a, const char *label_b, const counts *svc,
    const counts *rep, int64_t slack, int *ret_compared)
{
        int diffs = 0;

        *ret_compared = 0;
        for (int side = 0; side < 2; side++) {
                const counts *a = side == 0 ? svc : rep;
                const counts *b = side == 0 ? rep : svc;
                for (size_t i = 0; i < a->n; i++) {
                        const stmt_count *x = &a->v[i];
                        const stmt_count *y = counts_find(b, x->db, x->query);
                        int t = timing_of(x->query);
                        int64_t xv, yv;

                        if (t >= 0 && !timing[t].compare_rows) {
                                continue;
                        }
                        if (side == 1 && y != NULL) {
                                continue; /* compared from the other side */
                        }
                        bool by_rows = t >= 0;

                        xv = by_rows ? x->rows : x->calls;
                        yv = y == NULL ? 0 : by_rows ? y->rows : y->calls;
                        if (xv == 0 && yv == 0) {
                                continue;
                        }
                        (*ret_compared)++;
                        if (by_rows && llabs(xv - yv) <= slack) {
                                slack -= llabs(xv - yv);
                                continue;
                        }
                        if (xv != yv) {
                                diffs++;
                                fprintf(stderr, "%s %s: %s %lld, %s %lld %s: %.160s\n", mode, x->db,
                                    label_a, (long long) (side == 0 ? xv : yv), label_b,
                                    (long long) (side == 0 ? yv : xv), by_rows ? "rows" : "calls",
                                    x->query);
                        }
                }
        }
        return diffs;
}

/* Waits, reading as OBSERVER, until the dataset's orders ended, its outboxes are drained
 * and no transaction is prepared. */
static void
wait_quiet(const harness_cluster *hc, bool mono)
{
        int64_t until = mu_now_ms() + 30000;

        for (;;) {
                int64_t busy = 0;
                for (int i = 0; i < N_SECTIONS; i++) {
                        if (mono != (i == N_SECTIONS - 1)) {
                                continue;
                        }
                        char *name = dbname_of(section_db(hc, i));
                        char *ci = pg_db(name, OBSERVER);
                        busy += mu_i64f(ci,
                            "SELECT (SELECT count(*) FROM txn_outbox WHERE delivered_at IS NULL)"
                            " + (SELECT count(*) FROM pg_prepared_xacts WHERE database = '%s')",
                            name);
                        if (strcmp(sections[i], "order") == 0 || mono) {
                                busy += mu_i64f(
                                    ci, "SELECT count(*) FROM orders WHERE status = 'PENDING'");
                        }
                        free(ci);
                        free(name);
                }
                if (busy == 0) {
                        return;
                }
                assert_true(mu_now_ms() < until);
                usleep(50 * 1000);
        }
}

/* Runs one pgbench script once, on one client; fails the test if pgbench does. */
static void
run_pgbench_once(const replay_script *sc)
{
        char cmd[8192];
        int rc;

        snprintf(cmd, sizeof(cmd), "pgbench %s -c 1 -t 1 -f '%s' '%s' > '%s.out' 2>&1",
            PGSCRIPT_PGBENCH_ARGS, sc->path, sc->conninfo, sc->path);
        rc = system(cmd);
        snprintf(cmd, sizeof(cmd), "grep -q 'aborted' '%s.out'", sc->path);
        if (rc != 0 || system(cmd) == 0) {
                snprintf(cmd, sizeof(cmd), "cat '%s.out' >&2", sc->path);
                (void) system(cmd);
                fail_msg("pgbench on %s failed", sc->path);
        }
}

/* The pgbench scripts of a mode (bench_replay_emit) issue what the replay issued while
 * they were recorded, statement for statement per database: the recording's counts in
 * pg_stat_statements against one run of every script. With test_replay_statements_equal's
 * first half (the replay against the services), the scripts issue what the services do.
 * Returns the number of differences, each printed. */
static int
pgbench_compare(const harness_cluster *hc, const replay_opts *ro, bool mono, size_t k)
{
        replay_opts o = *ro;
        replay_scripts sc;
        counts rec = { 0 };
        counts pgb = { 0 };
        char dir[] = "/tmp/test-pgbench.XXXXXX";
        char prefix[256];
        char err[512];
        int compared = 0;
        int diffs;

        assert_non_null(mkdtemp(dir));
        snprintf(prefix, sizeof(prefix), "%s/%s", dir, o.mode);
        o.before_orders = pgss_reset;
        if (bench_replay_emit(&o, prefix, k, &sc, err, sizeof(err)) != RPC_OK) {
                fail_msg("emit %s: %s", o.mode, err);
        }
        assert_int_equal(sc.orders, k);
        assert_int_equal(sc.n, mono ? 1 : 6);
        pgss_read(hc, mono, "_replay", &rec);
        int64_t retried = retried_deliveries(hc, mono);
        pgss_reset(NULL);
        for (size_t i = 0; i < sc.n; i++) {
                assert_true(sc.s[i].statements > 0);
                run_pgbench_once(&sc.s[i]);
        }
        pgss_read(hc, mono, "_replay", &pgb);
        diffs = counts_compare(o.mode, "recording", "pgbench", &rec, &pgb, retried, &compared);
        fprintf(stderr,
            "%s pgbench scripts: %d statements compared, %d differ (%lld rows of slack for"
            " retried deliveries)\n",
            o.mode, compared, diffs, (long long) retried);
        assert_true(compared >= 10);
        counts_free(&rec);
        counts_free(&pgb);
        for (size_t i = 0; i < sc.n; i++) {
                char out[4200];
                snprintf(out, sizeof(out), "%s.out", sc.s[i].path);
                unlink(out);
                unlink(sc.s[i].path);
        }
        rmdir(dir);
        return diffs;
}

static void
test_replay_statements_equal(void **state)
{
        static const Mercato__Order__V1__Mode modes[]
            = { MU_SAGA, MU_TPC, MU_MONO, MU_ORCH, MU_TCC };
        static const char *const names[] = { "saga", "2pc", "monolith", "orchestration", "tcc" };
        bench_workload w;
        svc_seed seed;
        bench_order orders[200];
        size_t k = 0;
        bool seen[BENCH_N_KINDS] = { false };
        bench_rng rng;
        rpc_conf *conf = NULL;
        char err[512];
        int failures = 0;

        (void) state;
        set_mercato_bin();
        workload(&w);
        bench_workload_seed(&w, &seed);
        /* The first orders of client 0's stream: at least 20, every kind among them. */
        bench_rng_init(&rng, w.seed, 0);
        while (k < 200 && (k < 20 || !seen[1] || !seen[2] || !seen[3] || !seen[0])) {
                bench_order_next(&w, &rng, &orders[k]);
                seen[orders[k].kind] = true;
                k++;
        }
        assert_true(seen[0] && seen[1] && seen[2] && seen[3]);

        observer_db = harness_db_create("replay_pgss");
        harness_sql(observer_db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        harness_sql(observer_db,
            "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '" OBSERVER "')"
            " THEN CREATE ROLE " OBSERVER " LOGIN SUPERUSER; END IF; END$$");
        mu_cluster *mc = mu_cluster_start(NULL, &seed);
        assert_int_equal(rpc_conf_load(mc->hc->conf_path, &conf, err, sizeof(err)), RPC_OK);

        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
                bool mono = modes[m] == MU_MONO;
                counts svc = { 0 };
                counts rep = { 0 };
                int compared = 0;

                pgss_reset(NULL);
                for (size_t i = 0; i < k; i++) {
                        mu_item items[BENCH_ITEMS_MAX];
                        mu_result r;

                        for (size_t j = 0; j < orders[i].n_items; j++) {
                                items[j]
                                    = (mu_item) { orders[i].product_id[j], orders[i].quantity[j] };
                        }
                        mu_place(mc->order, modes[m], orders[i].user_id, items, orders[i].n_items,
                            0, 0, &r);
                        assert_int_equal(r.st, RPC_OK);
                        if (r.status == MU_PENDING) {
                                assert_true(
                                    mu_wait_terminal(mc->order, modes[m], r.order_id, 20000, &r));
                        }
                        assert_int_equal(r.status,
                            orders[i].kind == BENCH_KIND_OK ? MU_COMPLETED : MU_CANCELLED);
                        assert_string_equal(r.reason, bench_kind_reason(orders[i].kind));
                }
                wait_quiet(mc->hc, mono);
                pgss_read(mc->hc, mono, "", &svc);

                replay_opts o = {
                        .conf = conf,
                        .mode = names[m],
                        .w = &w,
                        .clients = 1,
                        .duration_s = 60,
                        .orders_per_client = k,
                        .before_orders = pgss_reset,
                };
                replay_result res;
                assert_int_equal(bench_replay_run(&o, &res, err, sizeof(err)), RPC_OK);
                assert_int_equal(res.orders, k);
                assert_int_equal(res.errors, 0);
                assert_int_equal(res.wrong, 0);
                pgss_read(mc->hc, mono, "_replay", &rep);
                int diffs
                    = counts_compare(names[m], "services", "replay", &svc, &rep, 0, &compared);
                fprintf(stderr, "%s: %zu orders, %d statements compared, %d differ\n", names[m], k,
                    compared, diffs);
                assert_true(compared >= 10);
                failures += diffs;
                failures += pgbench_compare(mc->hc, &o, mono, k);
                counts_free(&svc);
                counts_free(&rep);
                remove_outputs(&res);
        }
        assert_int_equal(failures, 0);
        rpc_conf_free(conf);
        drop_replay_dbs(mc->hc);
        mu_cluster_free(mc);
        free(observer_db);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_replay_modes_end_as_built),
                cmocka_unit_test(test_replay_statements_equal),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
