/* conn.c: libpq connections with prepared statement tables, commands, transactions and 2PC. */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_priv.h"

#define DB_ERRMSG_MAX 1024

/* How many times db_ensure drains a readable socket before it judges the connection. */
#define DB_PROBE_ROUNDS 8

struct db_conn {
        PGconn *pg;     /* never NULL once connected */
        char *conninfo; /* owned; PQreset reuses what PQconnectdb parsed */
        db_stmt *stmts; /* owned copies of every statement of every table */
        size_t n_stmts;
        bool must_reset;            /* reconnect at the next db_ensure: the backend said FATAL,
                                       or the statements did not prepare after a reconnect */
        char sqlstate[6];           /* of the last failed command, "" if none */
        char errmsg[DB_ERRMSG_MAX]; /* of the last failure, on one line */
};

static db_trace_fn trace_fn;
static void *trace_arg;

void
db_set_trace(db_trace_fn fn, void *arg)
{
        trace_arg = arg;
        trace_fn = fn;
}

static PGresult *
conn_traced(db_conn *c, const db_stmt *s, const char *sql, const db_params *params, PGresult *res)
{
        if (trace_fn != NULL) {
                db_trace_call call = {
                        .dbname = PQdb(c->pg),
                        .stmt = s != NULL ? s->name : NULL,
                        .sql = s != NULL ? s->sql : sql,
                        .nparams = params != NULL ? params->n : 0,
                        .values = params != NULL ? params->values : NULL,
                        .res = res,
                };
                trace_fn(trace_arg, c, &call);
        }
        return res;
}

/* libpq prints notices and warnings on stderr by default; library code does not log. A FATAL
 * message that arrives while the connection is idle (the backend was terminated, or the
 * server is shutting down) is handed here too: the backend is on its way out, so the next
 * db_ensure reconnects. */
static void
conn_notice(void *arg, const PGresult *res)
{
        db_conn *c = arg;
        const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

        if (severity != NULL
            && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0)) {
                c->must_reset = true;
        }
}

/* Copies a libpq message onto one line: runs of white space (libpq's "\n\t" continuation
 * lines included) become one space, and the ends are trimmed. */
static void
msg_copy_line(char *dst, size_t len, const char *src)
{
        size_t n = 0;
        bool space = false;

        if (len == 0) {
                return;
        }
        for (; src != NULL && *src != '\0' && n + 1 < len; src++) {
                if (*src == ' ' || *src == '\n' || *src == '\t' || *src == '\r') {
                        space = n > 0;
                        continue;
                }
                if (space) {
                        dst[n++] = ' ';
                        space = false;
                        if (n + 1 >= len) {
                                break;
                        }
                }
                dst[n++] = *src;
        }
        dst[n] = '\0';
}

void
db_errbuf_printf(char *errbuf, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (errbuf == NULL || errlen == 0) {
                return;
        }
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
}

static void
conn_set_error(db_conn *c, const char *sqlstate, const char *msg)
{
        snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate != NULL ? sqlstate : "");
        msg_copy_line(c->errmsg, sizeof(c->errmsg), msg);
}

rpc_status
db_fail(db_conn *c, rpc_status st, const char *fmt, ...)
{
        char msg[DB_ERRMSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        conn_set_error(c, "", msg);
        return st;
}

/* The connection is gone: libpq's message, no SQLSTATE. */
static rpc_status
conn_fail_lost(db_conn *c)
{
        conn_set_error(c, "", PQerrorMessage(c->pg));
        if (c->errmsg[0] == '\0') {
                snprintf(c->errmsg, sizeof(c->errmsg), "connection lost");
        }
        return RPC_UNAVAILABLE;
}

rpc_status
db_take_result(db_conn *c, PGresult *res, PGresult **ret_res)
{
        const char *state;
        const char *msg;
        rpc_status st;

        if (res == NULL) {
                /* libpq returns no result when it is out of memory or the connection is gone. */
                if (PQstatus(c->pg) == CONNECTION_BAD) {
                        return conn_fail_lost(c);
                }
                conn_set_error(c, "", PQerrorMessage(c->pg));
                return RPC_INTERNAL;
        }

        switch (PQresultStatus(res)) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
                if (ret_res != NULL) {
                        *ret_res = res;
                } else {
                        PQclear(res);
                }
                return RPC_OK;
        case PGRES_FATAL_ERROR:
                state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
                if (msg == NULL) {
                        /* errors made by libpq itself carry neither field */
                        msg = PQresultErrorMessage(res);
                }
                conn_set_error(c, state, msg);
                if (PQstatus(c->pg) == CONNECTION_BAD) {
                        st = RPC_UNAVAILABLE;
                } else if (state == NULL || state[0] == '\0') {
                        st = RPC_INTERNAL;
                } else {
                        st = db_status_from_sqlstate(state);
                }
                break;
        default:
                /* COPY, an empty query, a bad response: nothing a statement table should do */
                conn_set_error(c, "", "unexpected kind of result from the server");
                st = PQstatus(c->pg) == CONNECTION_BAD ? RPC_UNAVAILABLE : RPC_INTERNAL;
                break;
        }
        PQclear(res);
        return st;
}

/* Prepares every statement on the current connection and checks that the server counts as
 * many parameters as the table declares. */
static rpc_status
conn_prepare_all(db_conn *c, char *errbuf, size_t errlen)
{
        for (size_t i = 0; i < c->n_stmts; i++) {
                const db_stmt *s = &c->stmts[i];
                PGresult *res;
                rpc_status st;
                int nparams;

                st = db_take_result(c, PQprepare(c->pg, s->name, s->sql, 0, NULL), NULL);
                if (st != RPC_OK) {
                        db_errbuf_printf(errbuf, errlen, "statement %s: %s", s->name, c->errmsg);
                        return st == RPC_UNAVAILABLE ? st : RPC_INTERNAL;
                }
                res = NULL;
                st = db_take_result(c, PQdescribePrepared(c->pg, s->name), &res);
                if (st != RPC_OK) {
                        db_errbuf_printf(errbuf, errlen, "statement %s: %s", s->name, c->errmsg);
                        return st == RPC_UNAVAILABLE ? st : RPC_INTERNAL;
                }
                nparams = PQnparams(res);
                PQclear(res);
                if (nparams != s->nparams) {
                        st = db_fail(c, RPC_INTERNAL,
                            "statement %s: declares %d parameters, its sql has %d", s->name,
                            s->nparams, nparams);
                        db_errbuf_printf(errbuf, errlen, "%s", c->errmsg);
                        return st;
                }
        }
        return RPC_OK;
}

static void
conn_free(db_conn *c)
{
        if (c == NULL) {
                return;
        }
        if (c->pg != NULL) {
                PQfinish(c->pg);
        }
        for (size_t i = 0; i < c->n_stmts; i++) {
                free((char *) c->stmts[i].name);
                free((char *) c->stmts[i].sql);
        }
        free(c->stmts);
        free(c->conninfo);
        free(c);
}

rpc_status
db_connect(const char *conninfo, const db_stmt_table *tables, size_t n_tables, db_conn **ret_conn,
    char *errbuf, size_t errlen)
{
        db_conn *c;
        size_t n = 0;
        rpc_status st;

        if (conninfo == NULL || ret_conn == NULL || (tables == NULL && n_tables > 0)) {
                db_errbuf_printf(errbuf, errlen, "db_connect: missing argument");
                return RPC_INTERNAL;
        }
        for (size_t t = 0; t < n_tables; t++) {
                if (tables[t].stmts == NULL && tables[t].n > 0) {
                        db_errbuf_printf(
                            errbuf, errlen, "statement table %zu has no statements", t);
                        return RPC_INTERNAL;
                }
                for (size_t i = 0; i < tables[t].n; i++) {
                        const db_stmt *s = &tables[t].stmts[i];
                        if (s->name == NULL || s->name[0] == '\0' || s->sql == NULL
                            || s->nparams < 0 || s->nparams > DB_MAX_PARAMS) {
                                db_errbuf_printf(errbuf, errlen,
                                    "statement %zu of table %zu is malformed", i, t);
                                return RPC_INTERNAL;
                        }
                }
                n += tables[t].n;
        }

        c = rpc_xcalloc(1, sizeof(*c));
        c->conninfo = rpc_xstrdup(conninfo);
        c->stmts = rpc_xcalloc(n > 0 ? n : 1, sizeof(*c->stmts));
        for (size_t t = 0; t < n_tables; t++) {
                for (size_t i = 0; i < tables[t].n; i++) {
                        const db_stmt *s = &tables[t].stmts[i];
                        c->stmts[c->n_stmts++] = (db_stmt) {
                                .name = rpc_xstrdup(s->name),
                                .sql = rpc_xstrdup(s->sql),
                                .nparams = s->nparams,
                        };
                }
        }

        c->pg = PQconnectdb(c->conninfo);
        if (c->pg == NULL) {
                db_errbuf_printf(errbuf, errlen, "out of memory");
                conn_free(c);
                return RPC_UNAVAILABLE;
        }
        if (PQstatus(c->pg) != CONNECTION_OK) {
                conn_set_error(c, "", PQerrorMessage(c->pg));
                db_errbuf_printf(errbuf, errlen, "%s", c->errmsg);
                conn_free(c);
                return RPC_UNAVAILABLE;
        }
        PQsetNoticeReceiver(c->pg, conn_notice, c);

        st = conn_prepare_all(c, errbuf, errlen);
        if (st != RPC_OK) {
                conn_free(c);
                return st;
        }
        c->sqlstate[0] = '\0';
        c->errmsg[0] = '\0';
        *ret_conn = c;
        return RPC_OK;
}

void
db_close(db_conn *c)
{
        conn_free(c);
}

/* Whether the connection still looks alive, without a round trip. A backend that the
 * server ended has sent a FATAL message and closed the socket, so the socket reads as ready;
 * libpq notices either only when it reads, and passes the message on (to conn_notice) only
 * when it parses, which PQisBusy does. */
static bool
conn_alive(db_conn *c)
{
        for (int i = 0; i < DB_PROBE_ROUNDS; i++) {
                struct pollfd pfd;

                if (PQstatus(c->pg) != CONNECTION_OK || c->must_reset) {
                        return false;
                }
                if (PQtransactionStatus(c->pg) == PQTRANS_ACTIVE || PQisBusy(c->pg)) {
                        return true; /* not between commands: nothing to judge by */
                }
                if (c->must_reset) {
                        return false; /* PQisBusy parsed a FATAL message */
                }
                pfd = (struct pollfd) { .fd = PQsocket(c->pg), .events = POLLIN };
                if (pfd.fd < 0) {
                        return false;
                }
                if (poll(&pfd, 1, 0) <= 0) {
                        return true;
                }
                if (!PQconsumeInput(c->pg)) {
                        return false;
                }
        }
        return PQstatus(c->pg) == CONNECTION_OK && !c->must_reset;
}

rpc_status
db_ensure(db_conn *c)
{
        rpc_status st;

        if (conn_alive(c)) {
                return RPC_OK;
        }
        PQreset(c->pg);
        if (PQstatus(c->pg) != CONNECTION_OK) {
                c->must_reset = true;
                return conn_fail_lost(c);
        }
        c->must_reset = false;
        st = conn_prepare_all(c, NULL, 0);
        if (st != RPC_OK) {
                /* the message is on the connection; try from scratch next time */
                c->must_reset = true;
                return RPC_UNAVAILABLE;
        }
        return RPC_OK;
}

PGconn *
db_pg(db_conn *c)
{
        return c->pg;
}

const char *
db_errmsg(db_conn *c)
{
        return c->errmsg;
}

const char *
db_sqlstate(db_conn *c)
{
        return c->sqlstate;
}

void
db_params_init(db_params *p)
{
        p->n = 0;
}

/* Claims the next slot, or marks the set as overflowed (db_exec then refuses it). */
static int
params_slot(db_params *p)
{
        if (p->n >= DB_MAX_PARAMS) {
                p->n = DB_MAX_PARAMS + 1;
                return -1;
        }
        return p->n++;
}

void
db_params_i64(db_params *p, int64_t v)
{
        int i = params_slot(p);

        if (i < 0) {
                return;
        }
        snprintf(p->buf[i], sizeof(p->buf[i]), "%lld", (long long) v);
        p->values[i] = p->buf[i];
}

void
db_params_str(db_params *p, const char *s)
{
        int i = params_slot(p);

        if (i < 0) {
                return;
        }
        p->values[i] = s;
}

void
db_params_null(db_params *p)
{
        int i = params_slot(p);

        if (i < 0) {
                return;
        }
        p->values[i] = NULL;
}

void
db_params_bool(db_params *p, bool v)
{
        int i = params_slot(p);

        if (i < 0) {
                return;
        }
        p->values[i] = v ? "true" : "false";
}

static const db_stmt *
conn_find_stmt(const db_conn *c, const char *name)
{
        for (size_t i = 0; i < c->n_stmts; i++) {
                if (strcmp(c->stmts[i].name, name) == 0) {
                        return &c->stmts[i];
                }
        }
        return NULL;
}

rpc_status
db_exec(db_conn *c, const char *stmt, const db_params *params, PGresult **ret_res)
{
        const db_stmt *s;
        int n = params != NULL ? params->n : 0;

        s = stmt != NULL ? conn_find_stmt(c, stmt) : NULL;
        if (s == NULL) {
                return db_fail(
                    c, RPC_INTERNAL, "unknown statement %s", stmt != NULL ? stmt : "(null)");
        }
        if (n > DB_MAX_PARAMS) {
                return db_fail(c, RPC_INTERNAL, "statement %s: more than %d parameters", s->name,
                    DB_MAX_PARAMS);
        }
        if (n != s->nparams) {
                return db_fail(c, RPC_INTERNAL, "statement %s: %d parameters given, %d declared",
                    s->name, n, s->nparams);
        }
        return db_take_result(c,
            conn_traced(c, s, NULL, params,
                PQexecPrepared(c->pg, s->name, n, n > 0 ? params->values : NULL, NULL, NULL, 0)),
            ret_res);
}

rpc_status
db_exec_count(db_conn *c, const char *stmt, const db_params *params, int64_t *ret_rows)
{
        PGresult *res = NULL;
        rpc_status st;
        int64_t rows;

        st = db_exec(c, stmt, params, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                rows = PQntuples(res);
        } else {
                rows = strtoll(PQcmdTuples(res), NULL, 10);
        }
        PQclear(res);
        if (ret_rows != NULL) {
                *ret_rows = rows;
        }
        return RPC_OK;
}

/* Runs one statement without parameters over the extended protocol, which refuses several
 * statements in one string. *ret_rolled_back tells a COMMIT or PREPARE TRANSACTION that the
 * server answered ROLLBACK because the transaction had failed. */
static rpc_status
conn_run(db_conn *c, const char *sql, bool *ret_rolled_back)
{
        PGresult *res = NULL;
        rpc_status st;

        st = db_take_result(c,
            conn_traced(c, NULL, sql, NULL, PQexecParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0)),
            &res);
        if (st != RPC_OK) {
                return st;
        }
        if (ret_rolled_back != NULL) {
                *ret_rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
        }
        PQclear(res);
        return RPC_OK;
}

rpc_status
db_command(db_conn *c, const char *sql)
{
        if (sql == NULL) {
                return db_fail(c, RPC_INTERNAL, "db_command: no sql");
        }
        return conn_run(c, sql, NULL);
}

rpc_status
db_begin(db_conn *c)
{
        switch (PQtransactionStatus(c->pg)) {
        case PQTRANS_IDLE:
                return conn_run(c, "BEGIN", NULL);
        case PQTRANS_INTRANS:
        case PQTRANS_INERROR:
                return db_fail(c, RPC_INTERNAL, "already in a transaction");
        case PQTRANS_ACTIVE:
                return db_fail(c, RPC_INTERNAL, "a command is in progress");
        case PQTRANS_UNKNOWN:
        default:
                return conn_fail_lost(c);
        }
}

/* Checks that a transaction is open, for COMMIT and PREPARE TRANSACTION. */
static rpc_status
conn_check_open(db_conn *c)
{
        switch (PQtransactionStatus(c->pg)) {
        case PQTRANS_INTRANS:
        case PQTRANS_INERROR:
                return RPC_OK;
        case PQTRANS_IDLE:
                return db_fail(c, RPC_INTERNAL, "no transaction in progress");
        case PQTRANS_ACTIVE:
                return db_fail(c, RPC_INTERNAL, "a command is in progress");
        case PQTRANS_UNKNOWN:
        default:
                return conn_fail_lost(c);
        }
}

/* The server ended a failed transaction with ROLLBACK. The SQLSTATE of the command that
 * failed it stays; the message says what happened to the transaction. */
static rpc_status
conn_fail_rolled_back(db_conn *c)
{
        static const char prefix[] = "transaction aborted";
        size_t plen = sizeof(prefix) - 1;
        size_t mlen = strnlen(c->errmsg, sizeof(c->errmsg) - 1 - plen - 2);

        /* "transaction aborted: <message>", the message cut to fit */
        if (mlen > 0) {
                memmove(c->errmsg + plen + 2, c->errmsg, mlen);
                memcpy(c->errmsg + plen, ": ", 2);
                mlen += 2;
        }
        memcpy(c->errmsg, prefix, plen);
        c->errmsg[plen + mlen] = '\0';
        return RPC_ABORTED;
}

rpc_status
db_commit(db_conn *c)
{
        bool rolled_back = false;
        rpc_status st;

        st = conn_check_open(c);
        if (st != RPC_OK) {
                return st;
        }
        st = conn_run(c, "COMMIT", &rolled_back);
        if (st != RPC_OK) {
                return st;
        }
        return rolled_back ? conn_fail_rolled_back(c) : RPC_OK;
}

void
db_rollback(db_conn *c)
{
        PGTransactionStatusType ts = PQtransactionStatus(c->pg);

        /* Leaves the error of the failure that led here in place, for the caller to log. If
         * the connection broke, the server has already rolled back, and db_ensure reconnects. */
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
                PGresult *res = conn_traced(c, NULL, "ROLLBACK", NULL, PQexec(c->pg, "ROLLBACK"));
                PQclear(res);
        }
}

/* Runs "VERB 'gid'" with the gid quoted by libpq. */
static rpc_status
conn_gid_command(db_conn *c, const char *verb, const char *gid, bool *ret_rolled_back)
{
        char *lit;
        char *sql;
        size_t len;
        rpc_status st;

        if (gid == NULL || gid[0] == '\0') {
                return db_fail(c, RPC_INTERNAL, "%s: empty gid", verb);
        }
        lit = PQescapeLiteral(c->pg, gid, strlen(gid));
        if (lit == NULL) {
                if (PQstatus(c->pg) == CONNECTION_BAD) {
                        return conn_fail_lost(c);
                }
                conn_set_error(c, "", PQerrorMessage(c->pg));
                return RPC_INTERNAL;
        }
        len = strlen(verb) + 1 + strlen(lit) + 1;
        sql = rpc_xmalloc(len);
        snprintf(sql, len, "%s %s", verb, lit);
        PQfreemem(lit);
        st = conn_run(c, sql, ret_rolled_back);
        free(sql);
        return st;
}

rpc_status
db_prepare_transaction(db_conn *c, const char *gid)
{
        bool rolled_back = false;
        rpc_status st;

        st = conn_check_open(c);
        if (st != RPC_OK) {
                return st;
        }
        st = conn_gid_command(c, "PREPARE TRANSACTION", gid, &rolled_back);
        if (st != RPC_OK) {
                return st;
        }
        return rolled_back ? conn_fail_rolled_back(c) : RPC_OK;
}

/* COMMIT PREPARED and ROLLBACK PREPARED: 42704 (no such gid) maps to NOT_FOUND as usual;
 * 55000 here means another session is finishing the same gid right now, which is worth a
 * retry, so it is ABORTED rather than INTERNAL. */
static rpc_status
conn_finish_prepared(db_conn *c, const char *verb, const char *gid)
{
        rpc_status st = conn_gid_command(c, verb, gid, NULL);

        if (st == RPC_INTERNAL && strcmp(c->sqlstate, "55000") == 0) {
                return RPC_ABORTED;
        }
        return st;
}

rpc_status
db_commit_prepared(db_conn *c, const char *gid)
{
        return conn_finish_prepared(c, "COMMIT PREPARED", gid);
}

rpc_status
db_rollback_prepared(db_conn *c, const char *gid)
{
        return conn_finish_prepared(c, "ROLLBACK PREPARED", gid);
}

bool
db_in_transaction(db_conn *c)
{
        PGTransactionStatusType ts = PQtransactionStatus(c->pg);

        return ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
}

rpc_status
db_transaction(db_conn *c, int attempts, rpc_status (*fn)(db_conn *conn, void *arg), void *arg)
{
        rpc_status st = RPC_INTERNAL;

        if (db_in_transaction(c)) {
                return fn(c, arg);
        }
        for (int attempt = 0; attempt < attempts; attempt++) {
                st = db_begin(c);
                if (st != RPC_OK) {
                        return st;
                }
                st = fn(c, arg);
                if (st == RPC_OK) {
                        st = db_commit(c);
                }
                if (st == RPC_OK) {
                        return RPC_OK;
                }
                db_rollback(c);
                if (!db_retryable(st)) {
                        return st;
                }
        }
        return st;
}

int64_t
db_get_i64(const PGresult *res, int row, int col)
{
        const char *v;

        if (res == NULL || PQgetisnull(res, row, col)) {
                return 0;
        }
        v = PQgetvalue(res, row, col);
        return v != NULL ? strtoll(v, NULL, 10) : 0;
}

const char *
db_get_str(const PGresult *res, int row, int col)
{
        const char *v;

        if (res == NULL || PQgetisnull(res, row, col)) {
                return "";
        }
        v = PQgetvalue(res, row, col);
        return v != NULL ? v : "";
}

bool
db_get_bool(const PGresult *res, int row, int col)
{
        const char *v = db_get_str(res, row, col);

        return strcmp(v, "t") == 0 || strcmp(v, "true") == 0;
}

bool
db_is_null(const PGresult *res, int row, int col)
{
        return res == NULL || PQgetisnull(res, row, col);
}

int
db_rows(const PGresult *res)
{
        return res != NULL ? PQntuples(res) : 0;
}
