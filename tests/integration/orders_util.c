/* orders_util.c: helpers shared by the user, payment and order service tests. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "orders_util.h"

const char *const ou_mono_md[] = { "dataset", "monolith", NULL };

static PGconn *
connect_or_die(const char *conninfo)
{
        PGconn *pg = PQconnectdb(conninfo);

        if (PQstatus(pg) != CONNECTION_OK) {
                fprintf(
                    stderr, "orders_util: cannot connect (%s): %s\n", conninfo, PQerrorMessage(pg));
                exit(1);
        }
        return pg;
}

static PGresult *
query_or_die(PGconn *pg, const char *sql)
{
        PGresult *res = PQexec(pg, sql);

        if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
                fprintf(stderr, "orders_util: SQL failed: %s\n  %s\n", sql, PQerrorMessage(pg));
                exit(1);
        }
        return res;
}

static bool
skipped(const char *name, const char *const *skip)
{
        if (strcmp(name, "mercato_migrations") == 0) {
                return true;
        }
        for (size_t i = 0; skip != NULL && skip[i] != NULL; i++) {
                if (strcmp(name, skip[i]) == 0) {
                        return true;
                }
        }
        return false;
}

char *
ou_checksum(const char *conninfo, const char *const *skip)
{
        PGconn *pg = connect_or_die(conninfo);
        PGresult *tables = query_or_die(pg,
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' ORDER BY 1");
        size_t cap = 64 + (size_t) PQntuples(tables) * 128;
        char *out = rpc_xcalloc(1, cap);
        size_t len = 0;

        for (int i = 0; i < PQntuples(tables); i++) {
                const char *name = PQgetvalue(tables, i, 0);
                char sql[512];
                PGresult *res;

                if (skipped(name, skip)) {
                        continue;
                }
                snprintf(sql, sizeof(sql),
                    "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
                    " FROM %s t",
                    name);
                res = query_or_die(pg, sql);
                len += (size_t) snprintf(
                    out + len, cap - len, "%s:%s;", name, PQgetvalue(res, 0, 0));
                PQclear(res);
        }
        PQclear(tables);
        PQfinish(pg);
        return out;
}

char *
ou_cluster_checksum(const harness_cluster *c)
{
        size_t cap = 1;
        char *parts[9];
        int n = 0;
        char *out;

        for (int i = 0; i < c->n; i++) {
                parts[n] = ou_checksum(c->dbs[i], NULL);
                cap += strlen(c->names[i]) + 2 + strlen(parts[n]);
                n++;
        }
        parts[n] = ou_checksum(c->monolith_db, NULL);
        cap += strlen("monolith") + 2 + strlen(parts[n]);
        n++;
        out = rpc_xcalloc(1, cap);
        for (int i = 0; i < n; i++) {
                strcat(out, i < c->n ? c->names[i] : "monolith");
                strcat(out, "=");
                strcat(out, parts[i]);
                strcat(out, "\n");
                free(parts[i]);
        }
        return out;
}

char *
ou_sql_str(const char *conninfo, const char *sql)
{
        PGconn *pg = connect_or_die(conninfo);
        PGresult *res = query_or_die(pg, sql);
        char *v = rpc_xstrdup(PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");

        PQclear(res);
        PQfinish(pg);
        return v;
}

int64_t
ou_i64f(const char *conninfo, const char *fmt, ...)
{
        char sql[2048];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(sql, sizeof(sql), fmt, ap);
        va_end(ap);
        return harness_sql_i64(conninfo, sql);
}

void
ou_sqlf(const char *conninfo, const char *fmt, ...)
{
        char sql[2048];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(sql, sizeof(sql), fmt, ap);
        va_end(ap);
        harness_sql(conninfo, sql);
}

rpc_status
ou_call(rpc_client *cl, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret_resp, bool mono, char *msg,
    size_t msglen)
{
        rpc_call_opts opts = {
                .timeout_ms = 15000,
                .no_retry = true,
                .metadata = mono ? ou_mono_md : NULL,
        };
        ProtobufCMessage *resp = NULL;
        rpc_error err = { 0 };
        rpc_status st;

        st = rpc_client_call(cl, method, req, desc, &resp, &opts, &err);
        if (msg != NULL && msglen > 0) {
                snprintf(msg, msglen, "%s", st == RPC_OK ? "" : err.message);
        }
        if (ret_resp != NULL) {
                *ret_resp = resp;
        } else if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return st;
}

bool
ou_wait_outbox_drained(const char *conninfo)
{
        for (int i = 0; i < 300; i++) {
                if (harness_sql_i64(conninfo,
                        "SELECT count(*) FROM txn_outbox"
                        " WHERE delivered_at IS NULL")
                    == 0) {
                        return true;
                }
                usleep(100 * 1000);
        }
        return false;
}

typedef struct gate {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool open;
} gate;

typedef struct thread_arg {
        gate *g;
        void *(*fn)(void *);
        void *arg;
} thread_arg;

static void *
gated(void *p)
{
        thread_arg *a = p;

        pthread_mutex_lock(&a->g->mu);
        while (!a->g->open) {
                pthread_cond_wait(&a->g->cv, &a->g->mu);
        }
        pthread_mutex_unlock(&a->g->mu);
        return a->fn(a->arg);
}

void
ou_run_threads(int n, void *(*fn)(void *), void *args, size_t size)
{
        gate g = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
        pthread_t *th = rpc_xcalloc((size_t) n, sizeof(*th));
        thread_arg *ta = rpc_xcalloc((size_t) n, sizeof(*ta));

        for (int i = 0; i < n; i++) {
                ta[i]
                    = (thread_arg) { .g = &g, .fn = fn, .arg = (char *) args + (size_t) i * size };
                if (pthread_create(&th[i], NULL, gated, &ta[i]) != 0) {
                        fprintf(stderr, "orders_util: pthread_create failed\n");
                        exit(1);
                }
        }
        pthread_mutex_lock(&g.mu);
        g.open = true;
        pthread_cond_broadcast(&g.cv);
        pthread_mutex_unlock(&g.mu);
        for (int i = 0; i < n; i++) {
                pthread_join(th[i], NULL);
        }
        free(th);
        free(ta);
}
