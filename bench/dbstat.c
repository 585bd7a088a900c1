/* dbstat.c: lock-wait sampling, quiescence and 2pc timings, straight through libpq. */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dbstat.h"
#include "load.h"

static const char *const split_sections[]
    = { "order", "product", "user", "payment", "cart", "dataplatform" };

bool
dbstat_dataset(const rpc_conf *conf, bool monolith, dbstat_dbs *ret, char *err, size_t errlen)
{
        memset(ret, 0, sizeof(*ret));
        if (monolith) {
                ret->conninfo[0] = rpc_conf_get(conf, "monolith", "db");
                ret->n = 1;
        } else {
                for (size_t i = 0; i < sizeof(split_sections) / sizeof(split_sections[0]); i++) {
                        ret->conninfo[ret->n++] = rpc_conf_get(conf, split_sections[i], "db");
                }
        }
        for (int i = 0; i < ret->n; i++) {
                if (ret->conninfo[i] == NULL) {
                        snprintf(err, errlen, "the topology names no db for [%s]",
                            monolith ? "monolith" : split_sections[i]);
                        return false;
                }
        }
        return true;
}

/* A connection, or NULL with err. */
static PGconn *
connect_db(const char *conninfo, char *err, size_t errlen)
{
        PGconn *c = PQconnectdb(conninfo);

        if (PQstatus(c) != CONNECTION_OK) {
                snprintf(err, errlen, "cannot connect to '%s': %s", conninfo, PQerrorMessage(c));
                PQfinish(c);
                return NULL;
        }
        return c;
}

/* The first column of the first row as a number; -1 on error (with err). */
static int64_t
query_i64(PGconn *c, const char *sql, int n, const char *const *params, char *err, size_t errlen)
{
        PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
        int64_t v = -1;

        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
                v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        } else {
                snprintf(err, errlen, "%s", PQerrorMessage(c));
        }
        PQclear(r);
        return v;
}

/* The {a,b,c} array literal of the datasets' database names. */
static void
dbname_array(const dbstat_dbs *dbs, char *buf, size_t len)
{
        size_t off = 0;

        off += (size_t) snprintf(buf, len, "{");
        for (int i = 0; i < dbs->n && off < len; i++) {
                PQconninfoOption *opts = PQconninfoParse(dbs->conninfo[i], NULL);
                const char *name = "";
                for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
                        if (strcmp(o->keyword, "dbname") == 0 && o->val != NULL) {
                                name = o->val;
                        }
                }
                off += (size_t) snprintf(buf + off, len - off, "%s\"%s\"", i > 0 ? "," : "", name);
                PQconninfoFree(opts);
        }
        if (off < len) {
                snprintf(buf + off, len - off, "}");
        }
}

struct dbstat_sampler {
        PGconn *conn;
        char names[1024];
        int64_t interval_ms;
        pthread_t tid;
        atomic_bool stop;
        double waited_s;
        uint64_t samples;
};

static void *
sampler_main(void *arg)
{
        dbstat_sampler *s = arg;
        const char *params[1] = { s->names };
        int64_t last = bench_now_ns();

        /* Prepared once: planning a query over the pg_stat_activity view every 10 ms would
         * cost the server more than the sample is worth. */
        PGresult *prep = PQprepare(s->conn, "lock_waiters",
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = ANY ($1::text[])",
            1, NULL);
        bool prepared = PQresultStatus(prep) == PGRES_COMMAND_OK;
        PQclear(prep);
        while (prepared && !atomic_load(&s->stop)) {
                struct timespec ts = { .tv_sec = 0, .tv_nsec = s->interval_ms * 1000000 };
                nanosleep(&ts, NULL);
                PGresult *r = PQexecPrepared(s->conn, "lock_waiters", 1, params, NULL, NULL, 0);
                int64_t waiting = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                    ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                    : -1;
                PQclear(r);
                int64_t now = bench_now_ns();
                if (waiting > 0) {
                        s->waited_s += (double) waiting * (double) (now - last) / 1e9;
                }
                last = now;
                s->samples++;
        }
        return NULL;
}

rpc_status
dbstat_sampler_start(
    const dbstat_dbs *dbs, int64_t interval_ms, dbstat_sampler **ret, char *err, size_t errlen)
{
        dbstat_sampler *s = rpc_xcalloc(1, sizeof(*s));

        s->conn = connect_db(dbs->conninfo[0], err, errlen);
        if (s->conn == NULL) {
                free(s);
                return RPC_UNAVAILABLE;
        }
        dbname_array(dbs, s->names, sizeof(s->names));
        s->interval_ms = interval_ms > 0 ? interval_ms : 10;
        atomic_store(&s->stop, false);
        if (pthread_create(&s->tid, NULL, sampler_main, s) != 0) {
                PQfinish(s->conn);
                free(s);
                snprintf(err, errlen, "cannot start the lock-wait sampler");
                return RPC_INTERNAL;
        }
        *ret = s;
        return RPC_OK;
}

double
dbstat_sampler_stop(dbstat_sampler *s, uint64_t *ret_samples)
{
        double waited;

        if (s == NULL) {
                return 0;
        }
        atomic_store(&s->stop, true);
        pthread_join(s->tid, NULL);
        waited = s->waited_s;
        if (ret_samples != NULL) {
                *ret_samples = s->samples;
        }
        PQfinish(s->conn);
        free(s);
        return waited;
}

bool
dbstat_wait_quiet(
    const dbstat_dbs *dbs, int64_t timeout_ms, double *ret_ms, char *err, size_t errlen)
{
        PGconn *conns[DBSTAT_MAX_DBS] = { 0 };
        char names[1024];
        const char *params[1] = { names };
        int64_t t0 = bench_now_ns(), until = t0 + timeout_ms * 1000000;
        bool quiet = false;

        dbname_array(dbs, names, sizeof(names));
        for (int i = 0; i < dbs->n; i++) {
                conns[i] = connect_db(dbs->conninfo[i], err, errlen);
                if (conns[i] == NULL) {
                        goto out;
                }
        }
        for (;;) {
                /* The orders' database comes first. */
                int64_t busy = query_i64(conns[0],
                    "SELECT count(*) FROM orders WHERE status = 'PENDING'", 0, NULL, err, errlen);
                busy = busy < 0 ? 1 : busy;
                busy += query_i64(conns[0],
                    "SELECT count(*) FROM pg_prepared_xacts WHERE database = ANY ($1::text[])", 1,
                    params, err, errlen);
                for (int i = 0; i < dbs->n && busy == 0; i++) {
                        int64_t n = query_i64(conns[i],
                            "SELECT count(*) FROM txn_outbox WHERE delivered_at IS NULL", 0, NULL,
                            err, errlen);
                        busy += n < 0 ? 1 : n;
                }
                if (busy == 0) {
                        quiet = true;
                        break;
                }
                if (bench_now_ns() >= until) {
                        snprintf(err, errlen, "not quiet after %lld ms", (long long) timeout_ms);
                        break;
                }
                struct timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000000 };
                nanosleep(&ts, NULL);
        }
        *ret_ms = (double) (bench_now_ns() - t0) / 1e6;
out:
        for (int i = 0; i < dbs->n; i++) {
                PQfinish(conns[i]);
        }
        return quiet;
}

rpc_status
dbstat_tpc_times(const char *order_conninfo, dbstat_tpc *ret, char *err, size_t errlen)
{
        static const char sql[]
            = "SELECT count(*),"
              " coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY p), 0),"
              " coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY p), 0),"
              " coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY c), 0),"
              " coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY c), 0),"
              " coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 0),"
              " coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY d), 0)"
              " FROM (SELECT extract(epoch FROM decided_at - created_at) * 1000 AS p,"
              " extract(epoch FROM done_at - decided_at) * 1000 AS c,"
              " extract(epoch FROM done_at - created_at) * 1000 AS d"
              " FROM txn_tpc_log WHERE decision = 'commit' AND done_at IS NOT NULL) t";
        PGconn *c = connect_db(order_conninfo, err, errlen);
        PGresult *r;
        rpc_status st = RPC_OK;

        memset(ret, 0, sizeof(*ret));
        if (c == NULL) {
                return RPC_UNAVAILABLE;
        }
        r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
                ret->commits = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
                ret->prepare_p50_ms = strtod(PQgetvalue(r, 0, 1), NULL);
                ret->prepare_p99_ms = strtod(PQgetvalue(r, 0, 2), NULL);
                ret->commit_p50_ms = strtod(PQgetvalue(r, 0, 3), NULL);
                ret->commit_p99_ms = strtod(PQgetvalue(r, 0, 4), NULL);
                ret->in_doubt_p50_ms = strtod(PQgetvalue(r, 0, 5), NULL);
                ret->in_doubt_p99_ms = strtod(PQgetvalue(r, 0, 6), NULL);
        } else {
                snprintf(err, errlen, "2pc log: %s", PQerrorMessage(c));
                st = RPC_INTERNAL;
        }
        PQclear(r);
        PQfinish(c);
        return st;
}
