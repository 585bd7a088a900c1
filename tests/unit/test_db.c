/* test_db.c: the db module: SQLSTATE mapping, parameters, and a real PostgreSQL for the rest. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"

/*
 * The tests that need PostgreSQL read MERCATO_TEST_PG, a conninfo without dbname, and work
 * in a database of their own, mercato_test_db_<pid>, created on first use and dropped at the
 * end. Without MERCATO_TEST_PG they fail; they never skip.
 */
static char g_base[512];       /* MERCATO_TEST_PG */
static char g_dbname[64];      /* the test database */
static char g_conninfo[640];   /* MERCATO_TEST_PG plus dbname */
static bool g_created;         /* g_dbname exists */
static char g_conc_dbname[80]; /* a second, fresh database for the concurrent migrators */
static bool g_conc_created;

static void
notice_ignore(void *arg, const char *message)
{
        (void) arg;
        (void) message;
}

/* Runs SQL on a fresh raw connection; fails the test unless it succeeds. */
static void
raw_exec(const char *conninfo, const char *sql)
{
        PGconn *pg = PQconnectdb(conninfo);
        PGresult *res;

        PQsetNoticeProcessor(pg, notice_ignore, NULL); /* "does not exist, skipping" */
        if (PQstatus(pg) != CONNECTION_OK) {
                char msg[512];
                snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
                PQfinish(pg);
                fail_msg("cannot connect with \"%s\": %s", conninfo, msg);
        }
        res = PQexec(pg, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
                char msg[512];
                snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
                PQclear(res);
                PQfinish(pg);
                fail_msg("\"%s\" failed: %s", sql, msg);
        }
        PQclear(res);
        PQfinish(pg);
}

/* Runs a query on a fresh raw connection and returns the first column of the first row. */
static int64_t
raw_i64(const char *conninfo, const char *sql)
{
        PGconn *pg = PQconnectdb(conninfo);
        PGresult *res;
        int64_t v;

        if (PQstatus(pg) != CONNECTION_OK) {
                PQfinish(pg);
                fail_msg("cannot connect with \"%s\"", conninfo);
        }
        res = PQexec(pg, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                char msg[512];
                snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
                PQclear(res);
                PQfinish(pg);
                fail_msg("\"%s\" did not return one row: %s", sql, msg);
        }
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        PQfinish(pg);
        return v;
}

static const char *
test_pg_base(void)
{
        const char *base = getenv("MERCATO_TEST_PG");

        if (base == NULL || base[0] == '\0') {
                fail_msg("MERCATO_TEST_PG is not set: this test needs a PostgreSQL conninfo "
                         "without dbname, e.g. \"host=127.0.0.1 port=55432 user=mercato\"");
        }
        snprintf(g_base, sizeof(g_base), "%s", base);
        return g_base;
}

/* Drops (if it exists) and creates a database, from the maintenance database. */
static void
admin_recreate(const char *dbname)
{
        char admin[600];
        char sql[256];

        snprintf(admin, sizeof(admin), "%s dbname=postgres", test_pg_base());
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
        raw_exec(admin, sql);
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
        raw_exec(admin, sql);
}

/* The test database's conninfo, creating the database and its items table on first use. */
static const char *
test_pg(void)
{
        if (g_created) {
                return g_conninfo;
        }
        snprintf(g_dbname, sizeof(g_dbname), "mercato_test_db_%ld", (long) getpid());
        admin_recreate(g_dbname);
        g_created = true;
        snprintf(g_conninfo, sizeof(g_conninfo), "%s dbname=%s", test_pg_base(), g_dbname);
        raw_exec(g_conninfo,
            "CREATE TABLE items ("
            " id bigint PRIMARY KEY,"
            " name text NOT NULL,"
            " qty integer NOT NULL CHECK (qty >= 0),"
            " active boolean NOT NULL DEFAULT true,"
            " note text)");
        return g_conninfo;
}

static int
group_teardown(void **state)
{
        (void) state;
        /* no cmocka assertions here: a failure would not be reported against any test */
        if (g_created || g_conc_created) {
                char admin[600];
                PGconn *pg;

                snprintf(admin, sizeof(admin), "%s dbname=postgres", g_base);
                pg = PQconnectdb(admin);
                if (PQstatus(pg) == CONNECTION_OK) {
                        const char *names[] = { g_created ? g_dbname : NULL,
                                g_conc_created ? g_conc_dbname : NULL };
                        for (size_t i = 0; i < 2; i++) {
                                char sql[256];
                                if (names[i] == NULL) {
                                        continue;
                                }
                                snprintf(sql, sizeof(sql),
                                    "DROP DATABASE IF EXISTS %s WITH (FORCE)", names[i]);
                                PQclear(PQexec(pg, sql));
                        }
                }
                PQfinish(pg);
        }
        return 0;
}

static const db_stmt item_stmts[] = {
        { .name = "item_insert",
            .sql = "INSERT INTO items (id, name, qty) VALUES ($1, $2, $3)",
            .nparams = 3 },
        { .name = "item_get",
            .sql = "SELECT id, name, qty, active, note FROM items WHERE id = $1",
            .nparams = 1 },
        { .name = "item_count",
            .sql = "SELECT count(*) FROM items WHERE id BETWEEN $1 AND $2",
            .nparams = 2 },
        { .name = "item_set_active",
            .sql = "UPDATE items SET active = $1 WHERE id BETWEEN $2 AND $3",
            .nparams = 3 },
        { .name = "item_set_note",
            .sql = "UPDATE items SET note = $1 WHERE id = $2",
            .nparams = 2 },
};

static const db_stmt misc_stmts[] = {
        { .name = "backend_pid", .sql = "SELECT pg_backend_pid()", .nparams = 0 },
        { .name = "is_null", .sql = "SELECT $1::text IS NULL", .nparams = 1 },
};

static const db_stmt_table test_tables[] = {
        { .stmts = item_stmts, .n = sizeof(item_stmts) / sizeof(item_stmts[0]) },
        { .stmts = misc_stmts, .n = sizeof(misc_stmts) / sizeof(misc_stmts[0]) },
};

static db_conn *
connect_test(void)
{
        char err[512] = "";
        db_conn *c = NULL;
        rpc_status st = db_connect(test_pg(), test_tables, 2, &c, err, sizeof(err));

        if (st != RPC_OK) {
                fail_msg("db_connect: %s: %s", rpc_status_name(st), err);
        }
        assert_non_null(c);
        return c;
}

static rpc_status
insert_item(db_conn *c, int64_t id, const char *name, int64_t qty)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, id);
        db_params_str(&p, name);
        db_params_i64(&p, qty);
        return db_exec(c, "item_insert", &p, NULL);
}

/* The number of items with ids in [lo, hi], seen from another connection. */
static int64_t
count_items(int64_t lo, int64_t hi)
{
        char sql[128];

        snprintf(sql, sizeof(sql), "SELECT count(*) FROM items WHERE id BETWEEN %lld AND %lld",
            (long long) lo, (long long) hi);
        return raw_i64(test_pg(), sql);
}

/*
 * Pure tests
 */

static void
test_db_sqlstate_mapping(void **state)
{
        static const struct {
                const char *sqlstate;
                rpc_status want;
        } cases[] = {
                { "40001", RPC_ABORTED },
                { "40P01", RPC_ABORTED },
                { "55P03", RPC_ABORTED },
                { "57014", RPC_DEADLINE_EXCEEDED },
                { "23505", RPC_ALREADY_EXISTS },
                { "23514", RPC_FAILED_PRECONDITION },
                { "23503", RPC_FAILED_PRECONDITION },
                { "22003", RPC_OUT_OF_RANGE },
                { "22P02", RPC_INVALID_ARGUMENT },
                { "22023", RPC_INVALID_ARGUMENT },
                { "42704", RPC_NOT_FOUND },
                { "08000", RPC_UNAVAILABLE },
                { "08003", RPC_UNAVAILABLE },
                { "08006", RPC_UNAVAILABLE },
                { "08001", RPC_UNAVAILABLE },
                { "08P01", RPC_UNAVAILABLE },
                { "57P01", RPC_UNAVAILABLE },
                { "57P02", RPC_UNAVAILABLE },
                { "57P03", RPC_UNAVAILABLE },
                { "57P04", RPC_INTERNAL },
                { "42P01", RPC_INTERNAL },
                { "XX000", RPC_INTERNAL },
                { "23000", RPC_INTERNAL },
                { "", RPC_INTERNAL },
                { "08", RPC_INTERNAL },
                { "235050", RPC_INTERNAL },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                rpc_status got = db_status_from_sqlstate(cases[i].sqlstate);
                if (got != cases[i].want) {
                        fail_msg("sqlstate \"%s\": got %s, want %s", cases[i].sqlstate,
                            rpc_status_name(got), rpc_status_name(cases[i].want));
                }
        }
        assert_int_equal(db_status_from_sqlstate(NULL), RPC_INTERNAL);
}

static void
test_db_retryable_only_aborted(void **state)
{
        (void) state;
        for (int st = RPC_OK; st <= RPC_STATUS_MAX; st++) {
                assert_int_equal(db_retryable((rpc_status) st), st == RPC_ABORTED);
        }
        assert_false(db_retryable(RPC_DEFERRED));
}

static void
test_db_params_build(void **state)
{
        db_params p;

        (void) state;
        db_params_init(&p);
        assert_int_equal(p.n, 0);
        db_params_i64(&p, 42);
        db_params_i64(&p, INT64_MIN);
        db_params_i64(&p, INT64_MAX);
        db_params_str(&p, "abc 'quoted'");
        db_params_null(&p);
        db_params_bool(&p, true);
        db_params_bool(&p, false);
        db_params_i64(&p, -7);

        assert_int_equal(p.n, 8);
        assert_string_equal(p.values[0], "42");
        assert_string_equal(p.values[1], "-9223372036854775808");
        assert_string_equal(p.values[2], "9223372036854775807");
        assert_string_equal(p.values[3], "abc 'quoted'");
        assert_null(p.values[4]);
        assert_string_equal(p.values[5], "true");
        assert_string_equal(p.values[6], "false");
        assert_string_equal(p.values[7], "-7");
        /* each number lives in its own slot */
        assert_ptr_equal(p.values[0], p.buf[0]);
        assert_ptr_equal(p.values[1], p.buf[1]);
        assert_ptr_equal(p.values[7], p.buf[7]);

        db_params_init(&p);
        assert_int_equal(p.n, 0);
}

static void
test_db_params_overflow_is_marked(void **state)
{
        db_params p;

        (void) state;
        db_params_init(&p);
        for (int i = 0; i < DB_MAX_PARAMS; i++) {
                db_params_i64(&p, i);
        }
        assert_int_equal(p.n, DB_MAX_PARAMS);
        assert_string_equal(p.values[DB_MAX_PARAMS - 1], "15");
        db_params_str(&p, "one too many");
        assert_int_equal(p.n, DB_MAX_PARAMS + 1);
        db_params_i64(&p, 99);
        db_params_null(&p);
        db_params_bool(&p, true);
        assert_int_equal(p.n, DB_MAX_PARAMS + 1);
        assert_string_equal(p.values[DB_MAX_PARAMS - 1], "15");
}

static void
test_db_getters_read_values_and_nulls(void **state)
{
        PGresAttDesc attrs[3] = {
                { .name = (char *) "n", .format = 0, .typid = 20, .typlen = 8, .atttypmod = -1 },
                { .name = (char *) "b", .format = 0, .typid = 16, .typlen = 1, .atttypmod = -1 },
                { .name = (char *) "s", .format = 0, .typid = 25, .typlen = -1, .atttypmod = -1 },
        };
        PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

        (void) state;
        assert_non_null(res);
        assert_true(PQsetResultAttrs(res, 3, attrs));
        assert_true(PQsetvalue(res, 0, 0, (char *) "123", 3));
        assert_true(PQsetvalue(res, 0, 1, (char *) "t", 1));
        assert_true(PQsetvalue(res, 0, 2, NULL, -1));
        assert_true(PQsetvalue(res, 1, 0, (char *) "-9223372036854775808", 20));
        assert_true(PQsetvalue(res, 1, 1, (char *) "f", 1));
        assert_true(PQsetvalue(res, 1, 2, (char *) "hello", 5));
        assert_true(PQsetvalue(res, 2, 0, NULL, -1));
        assert_true(PQsetvalue(res, 2, 1, NULL, -1));
        assert_true(PQsetvalue(res, 2, 2, (char *) "", 0));

        assert_int_equal(db_rows(res), 3);
        assert_int_equal(db_get_i64(res, 0, 0), 123);
        assert_true(db_get_bool(res, 0, 1));
        assert_true(db_is_null(res, 0, 2));
        assert_string_equal(db_get_str(res, 0, 2), "");
        assert_true(db_get_i64(res, 1, 0) == INT64_MIN);
        assert_false(db_get_bool(res, 1, 1));
        assert_string_equal(db_get_str(res, 1, 2), "hello");
        assert_false(db_is_null(res, 1, 2));
        /* NULL reads as 0, "" and false; an empty string is not NULL */
        assert_int_equal(db_get_i64(res, 2, 0), 0);
        assert_false(db_get_bool(res, 2, 1));
        assert_true(db_is_null(res, 2, 0));
        assert_false(db_is_null(res, 2, 2));
        PQclear(res);

        assert_int_equal(db_rows(NULL), 0);
        assert_string_equal(db_get_str(NULL, 0, 0), "");
}

static void
test_db_connect_unreachable_is_unavailable(void **state)
{
        char err[512] = "";
        db_conn *c = (db_conn *) 0x1; /* must stay untouched */
        rpc_status st;

        (void) state;
        st = db_connect("host=127.0.0.1 port=1 dbname=none user=none connect_timeout=2", NULL, 0,
            &c, err, sizeof(err));
        assert_int_equal(st, RPC_UNAVAILABLE);
        assert_ptr_equal(c, (db_conn *) 0x1);
        assert_true(strlen(err) > 0);
        assert_null(strchr(err, '\n'));
        db_close(NULL);
}

/*
 * Against PostgreSQL
 */

static void
test_db_connect_prepare_exec_count(void **state)
{
        db_conn *c = connect_test();
        PGresult *res = NULL;
        db_params p;
        int64_t rows = -1;

        (void) state;
        assert_string_equal(db_sqlstate(c), "");
        assert_false(db_in_transaction(c));
        assert_non_null(db_pg(c));

        assert_int_equal(insert_item(c, 100, "apple", 3), RPC_OK);
        assert_int_equal(insert_item(c, 101, "pear", 0), RPC_OK);
        db_params_init(&p);
        db_params_i64(&p, 102);
        db_params_str(&p, "plum");
        db_params_i64(&p, 9);
        assert_int_equal(db_exec_count(c, "item_insert", &p, &rows), RPC_OK);
        assert_int_equal(rows, 1);

        /* a row, through the getters */
        db_params_init(&p);
        db_params_i64(&p, 100);
        assert_int_equal(db_exec(c, "item_get", &p, &res), RPC_OK);
        assert_non_null(res);
        assert_int_equal(db_rows(res), 1);
        assert_int_equal(db_get_i64(res, 0, 0), 100);
        assert_string_equal(db_get_str(res, 0, 1), "apple");
        assert_int_equal(db_get_i64(res, 0, 2), 3);
        assert_true(db_get_bool(res, 0, 3));
        assert_true(db_is_null(res, 0, 4));
        PQclear(res);

        /* rows affected by an UPDATE */
        db_params_init(&p);
        db_params_bool(&p, false);
        db_params_i64(&p, 100);
        db_params_i64(&p, 101);
        rows = -1;
        assert_int_equal(db_exec_count(c, "item_set_active", &p, &rows), RPC_OK);
        assert_int_equal(rows, 2);

        /* rows returned by a SELECT, and the count it holds */
        db_params_init(&p);
        db_params_i64(&p, 100);
        db_params_i64(&p, 199);
        rows = -1;
        assert_int_equal(db_exec_count(c, "item_count", &p, &rows), RPC_OK);
        assert_int_equal(rows, 1);
        res = NULL;
        assert_int_equal(db_exec(c, "item_count", &p, &res), RPC_OK);
        assert_int_equal(db_get_i64(res, 0, 0), 3);
        PQclear(res);

        /* no rows wanted; no rows matched */
        db_params_init(&p);
        db_params_str(&p, "ripe");
        db_params_i64(&p, 102);
        assert_int_equal(db_exec(c, "item_set_note", &p, NULL), RPC_OK);
        db_params_init(&p);
        db_params_str(&p, "none");
        db_params_i64(&p, 999);
        rows = -1;
        assert_int_equal(db_exec_count(c, "item_set_note", &p, &rows), RPC_OK);
        assert_int_equal(rows, 0);

        /* a NULL parameter reaches the server as NULL; a statement of the second table */
        db_params_init(&p);
        db_params_null(&p);
        res = NULL;
        assert_int_equal(db_exec(c, "is_null", &p, &res), RPC_OK);
        assert_true(db_get_bool(res, 0, 0));
        PQclear(res);

        assert_int_equal(count_items(100, 199), 3);
        db_close(c);
}

static void
test_db_exec_refuses_bad_calls(void **state)
{
        db_conn *c = connect_test();
        PGresult *res = (PGresult *) 0x1;
        db_params p;

        (void) state;
        db_params_init(&p);
        db_params_i64(&p, 1);
        assert_int_equal(db_exec(c, "no_such_statement", &p, &res), RPC_INTERNAL);
        assert_ptr_equal(res, (PGresult *) 0x1);
        assert_non_null(strstr(db_errmsg(c), "no_such_statement"));

        /* item_get takes one parameter */
        db_params_i64(&p, 2);
        assert_int_equal(db_exec(c, "item_get", &p, &res), RPC_INTERNAL);
        assert_ptr_equal(res, (PGresult *) 0x1);
        assert_int_equal(db_exec(c, "item_get", NULL, &res), RPC_INTERNAL);

        db_params_init(&p);
        for (int i = 0; i <= DB_MAX_PARAMS; i++) {
                db_params_i64(&p, i);
        }
        assert_int_equal(db_exec(c, "item_get", &p, &res), RPC_INTERNAL);
        assert_ptr_equal(res, (PGresult *) 0x1);

        /* the connection is still good */
        db_params_init(&p);
        db_params_i64(&p, 0);
        db_params_i64(&p, 0);
        assert_int_equal(db_exec(c, "item_count", &p, NULL), RPC_OK);
        db_close(c);
}

static void
test_db_connect_bad_statement_is_internal(void **state)
{
        static const db_stmt broken[] = {
                { .name = "fine", .sql = "SELECT 1", .nparams = 0 },
                { .name = "broken_stmt", .sql = "SELECT * FROM no_such_table", .nparams = 0 },
        };
        static const db_stmt miscounted[] = {
                { .name = "miscounted_stmt", .sql = "SELECT $1::int + $2::int", .nparams = 1 },
        };
        const db_stmt_table t1 = { .stmts = broken, .n = 2 };
        const db_stmt_table t2 = { .stmts = miscounted, .n = 1 };
        const db_stmt_table twice[] = { { .stmts = broken, .n = 1 }, { .stmts = broken, .n = 1 } };
        char err[512] = "";
        db_conn *c = NULL;

        (void) state;
        assert_int_equal(db_connect(test_pg(), &t1, 1, &c, err, sizeof(err)), RPC_INTERNAL);
        assert_null(c);
        assert_non_null(strstr(err, "broken_stmt"));
        assert_non_null(strstr(err, "no_such_table"));

        err[0] = '\0';
        assert_int_equal(db_connect(test_pg(), &t2, 1, &c, err, sizeof(err)), RPC_INTERNAL);
        assert_null(c);
        assert_non_null(strstr(err, "miscounted_stmt"));

        /* two tables that both name one statement */
        err[0] = '\0';
        assert_int_equal(db_connect(test_pg(), twice, 2, &c, err, sizeof(err)), RPC_INTERNAL);
        assert_null(c);
        assert_non_null(strstr(err, "fine"));
}

static void
test_db_unique_violation_is_already_exists(void **state)
{
        db_conn *c = connect_test();

        (void) state;
        assert_int_equal(insert_item(c, 200, "first", 1), RPC_OK);
        assert_int_equal(insert_item(c, 200, "second", 1), RPC_ALREADY_EXISTS);
        assert_string_equal(db_sqlstate(c), "23505");
        assert_non_null(strstr(db_errmsg(c), "duplicate key"));
        assert_false(db_in_transaction(c));
        /* the error stays until the next failure */
        assert_int_equal(insert_item(c, 201, "third", 1), RPC_OK);
        assert_string_equal(db_sqlstate(c), "23505");
        assert_int_equal(count_items(200, 299), 2);
        db_close(c);
}

/* A body for db_transaction: inserts item id (the next one each run), then fails with the
 * statuses of fail[] in turn (OK once they run out). */
typedef struct tx_body {
        int64_t id;
        const rpc_status *fail;
        int n_fail;
        int runs;
} tx_body;

static rpc_status
tx_insert(db_conn *c, void *arg)
{
        tx_body *b = arg;
        rpc_status st = insert_item(c, b->id + b->runs, "tx", 1);

        b->runs++;
        if (st != RPC_OK) {
                return st;
        }
        return b->runs <= b->n_fail ? b->fail[b->runs - 1] : RPC_OK;
}

/* db_transaction commits a body that succeeds, rolls back and reruns one that aborts, up to
 * its attempts, gives up at once on any other failure, and inside an open transaction runs
 * the body once and leaves the commit to the caller. */
static void
test_db_transaction_retries_aborted_only(void **state)
{
        static const rpc_status aborted[] = { RPC_ABORTED, RPC_ABORTED, RPC_ABORTED };
        static const rpc_status refused[] = { RPC_FAILED_PRECONDITION };
        db_conn *c = connect_test();

        (void) state;
        tx_body retried = { .id = 1300, .fail = aborted, .n_fail = 2 };
        assert_int_equal(db_transaction(c, 3, tx_insert, &retried), RPC_OK);
        assert_int_equal(retried.runs, 3);
        assert_false(db_in_transaction(c));
        assert_int_equal(count_items(1300, 1309), 1); /* the third run's row alone */
        assert_int_equal(count_items(1302, 1302), 1);

        tx_body exhausted = { .id = 1310, .fail = aborted, .n_fail = 3 };
        assert_int_equal(db_transaction(c, 3, tx_insert, &exhausted), RPC_ABORTED);
        assert_int_equal(exhausted.runs, 3);
        assert_int_equal(count_items(1310, 1319), 0);

        tx_body final = { .id = 1320, .fail = refused, .n_fail = 1 };
        assert_int_equal(db_transaction(c, 3, tx_insert, &final), RPC_FAILED_PRECONDITION);
        assert_int_equal(final.runs, 1);
        assert_false(db_in_transaction(c));
        assert_int_equal(count_items(1320, 1329), 0);

        tx_body nested = { .id = 1330 };
        assert_int_equal(db_begin(c), RPC_OK);
        assert_int_equal(db_transaction(c, 3, tx_insert, &nested), RPC_OK);
        assert_true(db_in_transaction(c));
        assert_int_equal(count_items(1330, 1339), 0); /* not committed yet */
        assert_int_equal(db_commit(c), RPC_OK);
        assert_int_equal(count_items(1330, 1339), 1);
        db_close(c);
}

static void
test_db_check_violation_is_failed_precondition(void **state)
{
        db_conn *c = connect_test();

        (void) state;
        assert_int_equal(insert_item(c, 300, "negative", -1), RPC_FAILED_PRECONDITION);
        assert_string_equal(db_sqlstate(c), "23514");
        assert_non_null(strstr(db_errmsg(c), "check constraint"));
        assert_int_equal(count_items(300, 399), 0);
        db_close(c);
}

static void
test_db_bad_input_is_invalid_argument(void **state)
{
        db_conn *c = connect_test();
        db_params p;

        (void) state;
        db_params_init(&p);
        db_params_str(&p, "not a number");
        assert_int_equal(db_exec(c, "item_get", &p, NULL), RPC_INVALID_ARGUMENT);
        assert_string_equal(db_sqlstate(c), "22P02");
        /* qty is an integer column: 2^40 is out of its range */
        assert_int_equal(insert_item(c, 350, "huge", INT64_C(1) << 40), RPC_OUT_OF_RANGE);
        assert_string_equal(db_sqlstate(c), "22003");
        db_close(c);
}

static void
test_db_commit_of_aborted_transaction_is_aborted(void **state)
{
        db_conn *c = connect_test();

        (void) state;
        assert_int_equal(insert_item(c, 400, "there before", 1), RPC_OK);

        assert_int_equal(db_begin(c), RPC_OK);
        assert_true(db_in_transaction(c));
        assert_int_equal(insert_item(c, 401, "in the transaction", 1), RPC_OK);
        assert_int_equal(insert_item(c, 400, "duplicate", 1), RPC_ALREADY_EXISTS);
        assert_true(db_in_transaction(c));
        assert_int_equal(db_commit(c), RPC_ABORTED);
        assert_true(db_retryable(RPC_ABORTED));
        assert_false(db_in_transaction(c));
        /* the failure that aborted it is still on the connection */
        assert_string_equal(db_sqlstate(c), "23505");
        assert_non_null(strstr(db_errmsg(c), "transaction aborted"));
        assert_int_equal(count_items(401, 401), 0);

        /* COMMIT with no transaction is a bug, not a success */
        assert_int_equal(db_commit(c), RPC_INTERNAL);
        db_close(c);
}

static void
test_db_transaction_commit_and_rollback(void **state)
{
        db_conn *c = connect_test();

        (void) state;
        assert_int_equal(db_begin(c), RPC_OK);
        assert_int_equal(db_begin(c), RPC_INTERNAL); /* no nesting */
        assert_int_equal(insert_item(c, 500, "rolled back", 1), RPC_OK);
        db_rollback(c);
        assert_false(db_in_transaction(c));
        assert_int_equal(count_items(500, 599), 0);
        db_rollback(c); /* harmless outside a transaction */

        assert_int_equal(db_begin(c), RPC_OK);
        assert_int_equal(insert_item(c, 501, "committed", 1), RPC_OK);
        assert_int_equal(count_items(500, 599), 0); /* not visible before COMMIT */
        assert_int_equal(db_commit(c), RPC_OK);
        assert_false(db_in_transaction(c));
        assert_int_equal(count_items(500, 599), 1);

        /* db_command runs one statement; several in one string are refused */
        assert_int_equal(db_command(c, "BEGIN ISOLATION LEVEL SERIALIZABLE"), RPC_OK);
        assert_true(db_in_transaction(c));
        assert_int_equal(db_command(c, "COMMIT"), RPC_OK);
        assert_int_equal(db_command(c, "SELECT 1; SELECT 2"), RPC_INTERNAL);
        db_close(c);
}

/* How many prepared transactions carry exactly this gid. */
static int64_t
prepared_count(const char *gid)
{
        PGconn *pg = PQconnectdb(test_pg());
        const char *values[1] = { gid };
        PGresult *res;
        int64_t n;

        assert_int_equal(PQstatus(pg), CONNECTION_OK);
        res = PQexecParams(pg, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1", 1, NULL,
            values, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        PQfinish(pg);
        return n;
}

static void
test_db_two_phase_commit(void **state)
{
        db_conn *c = connect_test();
        char gid[128];

        (void) state;
        /* a quote in the gid shows that it is quoted as a literal */
        snprintf(gid, sizeof(gid), "test-2pc-%ld-o'commit", (long) getpid());
        assert_int_equal(db_begin(c), RPC_OK);
        assert_int_equal(insert_item(c, 600, "prepared", 1), RPC_OK);
        assert_int_equal(db_prepare_transaction(c, gid), RPC_OK);
        assert_false(db_in_transaction(c));
        assert_int_equal(prepared_count(gid), 1);
        assert_int_equal(count_items(600, 600), 0);

        assert_int_equal(db_commit_prepared(c, gid), RPC_OK);
        assert_int_equal(count_items(600, 600), 1);
        assert_int_equal(prepared_count(gid), 0);

        /* finished already: the caller resolves NOT_FOUND with its marker row */
        assert_int_equal(db_commit_prepared(c, gid), RPC_NOT_FOUND);
        assert_string_equal(db_sqlstate(c), "42704");
        assert_int_equal(db_rollback_prepared(c, gid), RPC_NOT_FOUND);

        /* PREPARE TRANSACTION needs a transaction */
        assert_int_equal(db_prepare_transaction(c, gid), RPC_INTERNAL);
        db_close(c);
}

static void
test_db_two_phase_rollback(void **state)
{
        db_conn *c = connect_test();
        db_conn *other = connect_test();
        char gid[128];

        (void) state;
        snprintf(gid, sizeof(gid), "test-2pc-%ld-rollback", (long) getpid());
        assert_int_equal(db_begin(c), RPC_OK);
        assert_int_equal(insert_item(c, 700, "prepared", 1), RPC_OK);
        assert_int_equal(db_prepare_transaction(c, gid), RPC_OK);
        db_close(c); /* a prepared transaction outlives its session */

        assert_int_equal(prepared_count(gid), 1);
        assert_int_equal(db_rollback_prepared(other, gid), RPC_OK);
        assert_int_equal(prepared_count(gid), 0);
        assert_int_equal(count_items(700, 700), 0);
        assert_int_equal(db_rollback_prepared(other, gid), RPC_NOT_FOUND);
        assert_int_equal(db_commit_prepared(other, gid), RPC_NOT_FOUND);
        db_close(other);
}

static void
test_db_prepare_of_aborted_transaction_is_aborted(void **state)
{
        db_conn *c = connect_test();
        char gid[128];

        (void) state;
        snprintf(gid, sizeof(gid), "test-2pc-%ld-aborted", (long) getpid());
        assert_int_equal(insert_item(c, 800, "there before", 1), RPC_OK);
        assert_int_equal(db_begin(c), RPC_OK);
        assert_int_equal(insert_item(c, 800, "duplicate", 1), RPC_ALREADY_EXISTS);
        assert_int_equal(db_prepare_transaction(c, gid), RPC_ABORTED);
        assert_false(db_in_transaction(c));
        assert_int_equal(prepared_count(gid), 0);
        db_close(c);
}

static int64_t
backend_pid(db_conn *c)
{
        PGresult *res = NULL;
        int64_t pid;

        assert_int_equal(db_exec(c, "backend_pid", NULL, &res), RPC_OK);
        pid = db_get_i64(res, 0, 0);
        PQclear(res);
        assert_true(pid > 0);
        return pid;
}

/* Terminates the backend of c from another connection, and waits until c's socket holds the
 * server's farewell and the backend is gone. */
static void
terminate_backend(db_conn *c, int64_t pid)
{
        char sql[128];
        struct pollfd pfd = { .fd = PQsocket(db_pg(c)), .events = POLLIN };

        snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld)::int", (long long) pid);
        assert_int_equal(raw_i64(test_pg(), sql), 1);
        assert_int_equal(poll(&pfd, 1, 10000), 1);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld",
            (long long) pid);
        for (int i = 0; i < 500 && raw_i64(test_pg(), sql) > 0; i++) {
                nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
        assert_int_equal(raw_i64(test_pg(), sql), 0);
}

static void
test_db_ensure_reconnects_after_terminate(void **state)
{
        db_conn *c = connect_test();
        int64_t pid1 = backend_pid(c);
        int64_t pid2;

        (void) state;
        assert_int_equal(db_ensure(c), RPC_OK); /* alive: nothing to do */
        assert_int_equal(backend_pid(c), pid1);

        terminate_backend(c, pid1);
        assert_int_equal(db_ensure(c), RPC_OK);
        pid2 = backend_pid(c);
        assert_true(pid2 != pid1);
        /* the statements were prepared again on the new backend */
        assert_int_equal(insert_item(c, 900, "after reconnect", 1), RPC_OK);
        assert_int_equal(count_items(900, 900), 1);
        db_close(c);
}

static void
test_db_exec_on_terminated_backend_is_unavailable(void **state)
{
        db_conn *c = connect_test();
        int64_t pid1 = backend_pid(c);
        db_params p;

        (void) state;
        terminate_backend(c, pid1);
        db_params_init(&p);
        db_params_i64(&p, 0);
        db_params_i64(&p, 0);
        assert_int_equal(db_exec(c, "item_count", &p, NULL), RPC_UNAVAILABLE);
        assert_true(strlen(db_errmsg(c)) > 0);
        assert_int_equal(db_begin(c), RPC_UNAVAILABLE);

        assert_int_equal(db_ensure(c), RPC_OK);
        assert_true(backend_pid(c) != pid1);
        assert_int_equal(db_exec(c, "item_count", &p, NULL), RPC_OK);
        db_close(c);
}

/*
 * Migrations
 */

static int64_t
migration_rows(const char *conninfo, const char *component)
{
        char sql[256];

        snprintf(sql, sizeof(sql), "SELECT count(*) FROM mercato_migrations WHERE component = '%s'",
            component);
        return raw_i64(conninfo, sql);
}

static db_conn *
connect_bare(const char *conninfo)
{
        char err[512] = "";
        db_conn *c = NULL;
        rpc_status st = db_connect(conninfo, NULL, 0, &c, err, sizeof(err));

        if (st != RPC_OK) {
                fail_msg("db_connect: %s: %s", rpc_status_name(st), err);
        }
        return c;
}

static void
test_db_migrate_applies_once(void **state)
{
        /* listed out of order on purpose: 002 needs the table 001 creates */
        static const db_migration two[] = {
                { .version = 2,
                    .name = "002_note",
                    .sql = "ALTER TABLE mig_once ADD COLUMN note text;\n"
                           "INSERT INTO mig_once_runs VALUES ('002');\n" },
                { .version = 1,
                    .name = "001_init",
                    .sql = "CREATE TABLE mig_once (id int PRIMARY KEY);\n"
                           "CREATE TABLE mig_once_runs (migration text NOT NULL);\n"
                           "INSERT INTO mig_once_runs VALUES ('001');\n" },
        };
        static const db_migration three[] = {
                { .version = 1, .name = "001_init", .sql = "SELECT 1/0" }, /* never runs again */
                { .version = 2, .name = "002_note", .sql = "SELECT 1/0" },
                { .version = 3,
                    .name = "003_more",
                    .sql = "INSERT INTO mig_once_runs VALUES ('003'); "
                           "INSERT INTO mig_once (id, note) VALUES (1, 'it''s here')" },
        };
        const db_migration_set set2 = { .component = "test_once", .migrations = two, .n = 2 };
        const db_migration_set set3 = { .component = "test_once", .migrations = three, .n = 3 };
        const char *conninfo = test_pg();
        db_conn *c = connect_bare(conninfo);
        char err[512] = "";

        (void) state;
        assert_int_equal(db_migrate(c, &set2, 1, err, sizeof(err)), RPC_OK);
        assert_int_equal(migration_rows(conninfo, "test_once"), 2);
        assert_int_equal(raw_i64(conninfo, "SELECT count(*) FROM mig_once_runs"), 2);
        assert_int_equal(raw_i64(conninfo,
                             "SELECT count(*) FROM mercato_migrations "
                             "WHERE component = 'test_once' AND version = 1 "
                             "AND name = '001_init' AND applied_at IS NOT NULL"),
            1);

        /* again: nothing to do */
        assert_int_equal(db_migrate(c, &set2, 1, err, sizeof(err)), RPC_OK);
        assert_int_equal(migration_rows(conninfo, "test_once"), 2);
        assert_int_equal(raw_i64(conninfo, "SELECT count(*) FROM mig_once_runs"), 2);

        /* a new migration: only it runs */
        assert_int_equal(db_migrate(c, &set3, 1, err, sizeof(err)), RPC_OK);
        assert_int_equal(migration_rows(conninfo, "test_once"), 3);
        assert_int_equal(raw_i64(conninfo, "SELECT count(*) FROM mig_once_runs"), 3);
        assert_int_equal(
            raw_i64(conninfo, "SELECT count(*) FROM mig_once WHERE note = 'it''s here'"), 1);
        assert_false(db_in_transaction(c));
        db_close(c);
}

static void
test_db_migrate_failure_leaves_nothing(void **state)
{
        static const db_migration migs[] = {
                { .version = 1, .name = "001_ok", .sql = "CREATE TABLE mig_fail_ok (id int)" },
                { .version = 2,
                    .name = "002_bad",
                    .sql = "CREATE TABLE mig_fail_partial (id int);\n"
                           "INSERT INTO mig_fail_ok VALUES (1);\n"
                           "INSERT INTO no_such_table VALUES (1);\n" },
                { .version = 3,
                    .name = "003_after",
                    .sql = "CREATE TABLE mig_fail_after (id int)" },
        };
        const db_migration_set set = { .component = "test_fail", .migrations = migs, .n = 3 };
        const char *conninfo = test_pg();
        db_conn *c = connect_bare(conninfo);
        char err[512] = "";
        rpc_status st;

        (void) state;
        st = db_migrate(c, &set, 1, err, sizeof(err));
        assert_int_not_equal(st, RPC_OK);
        assert_int_equal(st, RPC_INTERNAL); /* 42P01, undefined table */
        assert_non_null(strstr(err, "test_fail/002_bad"));
        assert_non_null(strstr(err, "no_such_table"));
        assert_false(db_in_transaction(c));

        /* 001 stays; nothing of 002, not even its record; 003 never ran */
        assert_int_equal(migration_rows(conninfo, "test_fail"), 1);
        assert_int_equal(raw_i64(conninfo, "SELECT count(*) FROM mig_fail_ok"), 0);
        assert_int_equal(
            raw_i64(conninfo, "SELECT (to_regclass('mig_fail_partial') IS NULL)::int"), 1);
        assert_int_equal(
            raw_i64(conninfo, "SELECT (to_regclass('mig_fail_after') IS NULL)::int"), 1);

        /* it fails the same way again, and the connection still works */
        err[0] = '\0';
        assert_int_equal(db_migrate(c, &set, 1, err, sizeof(err)), RPC_INTERNAL);
        assert_non_null(strstr(err, "002_bad"));
        assert_int_equal(migration_rows(conninfo, "test_fail"), 1);
        assert_int_equal(db_command(c, "SELECT 1"), RPC_OK);
        db_close(c);
}

static void
test_db_migrate_refuses_duplicate_versions(void **state)
{
        static const db_migration migs[] = {
                { .version = 1, .name = "001_a", .sql = "CREATE TABLE mig_dup_a (id int)" },
                { .version = 1, .name = "001_b", .sql = "CREATE TABLE mig_dup_b (id int)" },
        };
        const db_migration_set set = { .component = "test_dup", .migrations = migs, .n = 2 };
        const char *conninfo = test_pg();
        db_conn *c = connect_bare(conninfo);
        char err[512] = "";

        (void) state;
        assert_int_equal(db_migrate(c, &set, 1, err, sizeof(err)), RPC_INVALID_ARGUMENT);
        assert_non_null(strstr(err, "version 1"));
        assert_int_equal(raw_i64(conninfo, "SELECT (to_regclass('mig_dup_a') IS NULL)::int"), 1);
        db_close(c);
}

#define MIGRATORS 2

static const db_migration conc_migs[] = {
        { .version = 1,
            .name = "001_slow",
            .sql = "CREATE TABLE conc_runs (migration int NOT NULL);\n"
                   "INSERT INTO conc_runs VALUES (1);\n"
                   "SELECT pg_sleep(0.3);\n" },
        { .version = 2, .name = "002_next", .sql = "INSERT INTO conc_runs VALUES (2);" },
};
static const db_migration_set conc_sets[] = {
        { .component = "test_conc", .migrations = conc_migs, .n = 2 },
        { .component = "test_conc_b", .migrations = conc_migs + 1, .n = 1 },
};

typedef struct migrator {
        const char *conninfo;
        pthread_barrier_t *start;
        rpc_status st;
        char err[512];
} migrator;

/* A thread: no cmocka assertions here, the main thread checks what it records. */
static void *
migrator_run(void *arg)
{
        migrator *m = arg;
        db_conn *c = NULL;

        m->st = db_connect(m->conninfo, NULL, 0, &c, m->err, sizeof(m->err));
        pthread_barrier_wait(m->start);
        if (m->st == RPC_OK) {
                m->st = db_migrate(c, conc_sets, 2, m->err, sizeof(m->err));
        }
        db_close(c);
        return NULL;
}

static void
test_db_migrate_concurrent_migrators(void **state)
{
        char conninfo[700];
        pthread_barrier_t start;
        pthread_t threads[MIGRATORS];
        migrator ms[MIGRATORS];

        (void) state;
        /* a fresh database, so that the migrators also race to create mercato_migrations */
        test_pg();
        snprintf(g_conc_dbname, sizeof(g_conc_dbname), "%s_conc", g_dbname);
        admin_recreate(g_conc_dbname);
        g_conc_created = true;
        snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", test_pg_base(), g_conc_dbname);

        assert_int_equal(pthread_barrier_init(&start, NULL, MIGRATORS), 0);
        for (int i = 0; i < MIGRATORS; i++) {
                ms[i] = (migrator) { .conninfo = conninfo, .start = &start, .st = RPC_UNKNOWN };
                assert_int_equal(pthread_create(&threads[i], NULL, migrator_run, &ms[i]), 0);
        }
        for (int i = 0; i < MIGRATORS; i++) {
                assert_int_equal(pthread_join(threads[i], NULL), 0);
        }
        pthread_barrier_destroy(&start);
        for (int i = 0; i < MIGRATORS; i++) {
                if (ms[i].st != RPC_OK) {
                        fail_msg("migrator %d: %s: %s", i, rpc_status_name(ms[i].st), ms[i].err);
                }
        }

        /* each migration ran exactly once */
        assert_int_equal(
            raw_i64(conninfo, "SELECT count(*) FROM conc_runs WHERE migration = 1"), 1);
        assert_int_equal(
            raw_i64(conninfo, "SELECT count(*) FROM conc_runs WHERE migration = 2"), 2);
        assert_int_equal(migration_rows(conninfo, "test_conc"), 2);
        assert_int_equal(migration_rows(conninfo, "test_conc_b"), 1);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_db_sqlstate_mapping),
                cmocka_unit_test(test_db_retryable_only_aborted),
                cmocka_unit_test(test_db_params_build),
                cmocka_unit_test(test_db_params_overflow_is_marked),
                cmocka_unit_test(test_db_getters_read_values_and_nulls),
                cmocka_unit_test(test_db_connect_unreachable_is_unavailable),
                cmocka_unit_test(test_db_connect_prepare_exec_count),
                cmocka_unit_test(test_db_exec_refuses_bad_calls),
                cmocka_unit_test(test_db_connect_bad_statement_is_internal),
                cmocka_unit_test(test_db_unique_violation_is_already_exists),
                cmocka_unit_test(test_db_transaction_retries_aborted_only),
                cmocka_unit_test(test_db_check_violation_is_failed_precondition),
                cmocka_unit_test(test_db_bad_input_is_invalid_argument),
                cmocka_unit_test(test_db_commit_of_aborted_transaction_is_aborted),
                cmocka_unit_test(test_db_transaction_commit_and_rollback),
                cmocka_unit_test(test_db_two_phase_commit),
                cmocka_unit_test(test_db_two_phase_rollback),
                cmocka_unit_test(test_db_prepare_of_aborted_transaction_is_aborted),
                cmocka_unit_test(test_db_ensure_reconnects_after_terminate),
                cmocka_unit_test(test_db_exec_on_terminated_backend_is_unavailable),
                cmocka_unit_test(test_db_migrate_applies_once),
                cmocka_unit_test(test_db_migrate_failure_leaves_nothing),
                cmocka_unit_test(test_db_migrate_refuses_duplicate_versions),
                cmocka_unit_test(test_db_migrate_concurrent_migrators),
        };

        return cmocka_run_group_tests(tests, NULL, group_teardown);
}
