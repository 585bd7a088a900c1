/* pgscript.c: a mode's transactions, recorded through the db trace, written for pgbench.
 *
 * NOTES
 *
 * Recording. The trace hands over every statement a connection sends. A connection's
 * statements between BEGIN and COMMIT, ROLLBACK or PREPARE TRANSACTION are one
 * transaction; a statement or command outside a block is a transaction of its own
 * (COMMIT PREPARED, an autocommit UPDATE). A transaction is kept, on its database, when it
 * ends, so that a COMMIT PREPARED always comes after its PREPARE TRANSACTION. Two kinds
 * are left out and counted apart: idle polls (every statement a prepared one that touched
 * no row: the relay's empty claims, a deadline scan that found nothing), whose number
 * depends on timing, not on the orders; and transactions in which a statement failed,
 * which pgbench would stop on.
 *
 * The script. One per database, run by pgbench with PGSCRIPT_PGBENCH_ARGS:
 *   - once per client, PREPARE of each statement the script uses, with the service's SQL,
 *     so that each then runs as a prepared statement, as the services run it (EXECUTE of a
 *     prepared statement counts in pg_stat_statements under that statement, the PREPARE
 *     not at all);
 *   - per run, the recorded transactions in order, each statement an EXECUTE with the
 *     recorded parameters.
 * One run of the script is the recording's orders on that database, so an order rate is
 * the script's rate times pgscript_write's orders.
 *
 * The order. Transactions keep the order in which they ended, with one exception: a
 * branch's COMMIT or ROLLBACK PREPARED comes right after its PREPARE TRANSACTION. A
 * pgbench client runs the script alone, one transaction after another, so what the
 * recording ran on other connections between the two would otherwise run while this
 * client's own prepared branch holds its locks, and wait on them forever. A prepared
 * branch thus holds its locks no longer than the database needs; the coordinator's waits
 * between the votes and the decision are the framework's cost, not the database's.
 *
 * Values that must differ between runs. A value a statement returned (an order id from a
 * sequence, an event id) becomes a variable, set by \gset from the same statement's
 * EXECUTE, and every later parameter equal to it, or holding it inside a key or a GID,
 * uses the variable. A returned value used only on another database cannot be gset there,
 * so there it is a fresh number per run: MARK + the client's id and the run's counter,
 * the same number for the same value within one run. Within the script, the parameter
 * text is substituted by pgbench (-M simple), inside quoted literals too.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "pgscript.h"

typedef struct rec_stmt {
        char *name; /* NULL: a command */
        char *sql;
        int n;
        char **vals; /* NULL entries: SQL NULL */
        int ncols;
        char **cols; /* the first row's column names and values */
        char **row;
        int64_t rows; /* affected or returned */
} rec_stmt;

typedef struct rec_tx {
        rec_stmt *s;
        size_t n, cap;
        bool failed;
} rec_tx;

typedef struct rec_db {
        char *name;
        rec_tx *tx;
        size_t n, cap;
        uint64_t idle, failed;
} rec_db;

typedef struct rec_conn {
        const db_conn *conn;
        size_t db;
        bool in_block;
        rec_tx open;
} rec_conn;

struct pgscript {
        pthread_mutex_t mu;
        rec_db *dbs;
        size_t n_dbs;
        rec_conn *conns;
        size_t n_conns;
        pthread_t owner; /* the recording's own thread: its calls are bookkeeping */
};

pgscript *
pgscript_new(void)
{
        pgscript *ps = rpc_xcalloc(1, sizeof(*ps));

        pthread_mutex_init(&ps->mu, NULL);
        return ps;
}

static void
stmt_free(rec_stmt *s)
{
        free(s->name);
        free(s->sql);
        for (int i = 0; i < s->n; i++) {
                free(s->vals[i]);
        }
        free(s->vals);
        for (int i = 0; i < s->ncols; i++) {
                free(s->cols[i]);
                free(s->row[i]);
        }
        free(s->cols);
        free(s->row);
}

static void
tx_clear(rec_tx *t)
{
        for (size_t i = 0; i < t->n; i++) {
                stmt_free(&t->s[i]);
        }
        free(t->s);
        *t = (rec_tx) { 0 };
}

void
pgscript_free(pgscript *ps)
{
        if (ps == NULL) {
                return;
        }
        for (size_t i = 0; i < ps->n_dbs; i++) {
                for (size_t j = 0; j < ps->dbs[i].n; j++) {
                        tx_clear(&ps->dbs[i].tx[j]);
                }
                free(ps->dbs[i].tx);
                free(ps->dbs[i].name);
        }
        for (size_t i = 0; i < ps->n_conns; i++) {
                tx_clear(&ps->conns[i].open);
        }
        free(ps->dbs);
        free(ps->conns);
        pthread_mutex_destroy(&ps->mu);
        free(ps);
}

static char *
dup_or_null(const char *s)
{
        return s != NULL ? rpc_xstrdup(s) : NULL;
}

static size_t
db_index(pgscript *ps, const char *name)
{
        for (size_t i = 0; i < ps->n_dbs; i++) {
                if (strcmp(ps->dbs[i].name, name) == 0) {
                        return i;
                }
        }
        ps->dbs = rpc_xrealloc(ps->dbs, (ps->n_dbs + 1) * sizeof(*ps->dbs));
        ps->dbs[ps->n_dbs] = (rec_db) { .name = rpc_xstrdup(name) };
        return ps->n_dbs++;
}

static rec_conn *
conn_of(pgscript *ps, const db_conn *conn, const char *dbname)
{
        size_t db = db_index(ps, dbname);

        /* A closed connection's address may come back for a new one: the database tells. */
        for (size_t i = 0; i < ps->n_conns; i++) {
                if (ps->conns[i].conn == conn && ps->conns[i].db == db) {
                        return &ps->conns[i];
                }
        }
        ps->conns = rpc_xrealloc(ps->conns, (ps->n_conns + 1) * sizeof(*ps->conns));
        ps->conns[ps->n_conns] = (rec_conn) { .conn = conn, .db = db };
        return &ps->conns[ps->n_conns++];
}

static void
record_stmt(rec_tx *t, const db_trace_call *call, bool ok)
{
        rec_stmt *s;

        if (t->n == t->cap) {
                t->cap = t->cap > 0 ? 2 * t->cap : 8;
                t->s = rpc_xrealloc(t->s, t->cap * sizeof(*t->s));
        }
        s = &t->s[t->n++];
        *s = (rec_stmt) { .name = dup_or_null(call->stmt), .sql = rpc_xstrdup(call->sql) };
        if (call->stmt != NULL && call->nparams > 0) {
                s->n = call->nparams;
                s->vals = rpc_xcalloc((size_t) s->n, sizeof(*s->vals));
                for (int i = 0; i < s->n; i++) {
                        s->vals[i] = dup_or_null(call->values[i]);
                }
        }
        if (!ok) {
                t->failed = true;
                return;
        }
        if (PQresultStatus(call->res) == PGRES_TUPLES_OK) {
                s->rows = PQntuples(call->res);
                if (s->rows > 0) {
                        s->ncols = PQnfields(call->res);
                        s->cols = rpc_xcalloc((size_t) s->ncols, sizeof(*s->cols));
                        s->row = rpc_xcalloc((size_t) s->ncols, sizeof(*s->row));
                        for (int i = 0; i < s->ncols; i++) {
                                s->cols[i] = rpc_xstrdup(PQfname(call->res, i));
                                s->row[i] = PQgetisnull(call->res, 0, i)
                                    ? NULL
                                    : rpc_xstrdup(PQgetvalue(call->res, 0, i));
                        }
                }
        } else {
                s->rows = strtoll(PQcmdTuples((PGresult *) call->res), NULL, 10);
        }
}

/* Every statement a prepared one that touched no row. */
static bool
tx_idle(const rec_tx *t)
{
        for (size_t i = 0; i < t->n; i++) {
                const rec_stmt *s = &t->s[i];
                if (s->name == NULL) {
                        if (strcmp(s->sql, "BEGIN") == 0 || strcmp(s->sql, "COMMIT") == 0
                            || strcmp(s->sql, "ROLLBACK") == 0) {
                                continue;
                        }
                        return false;
                }
                if (s->rows != 0) {
                        return false;
                }
        }
        return true;
}

static void
tx_end(pgscript *ps, rec_conn *rc)
{
        rec_db *d = &ps->dbs[rc->db];

        if (rc->open.failed) {
                d->failed++;
                tx_clear(&rc->open);
        } else if (tx_idle(&rc->open)) {
                d->idle++;
                tx_clear(&rc->open);
        } else {
                if (d->n == d->cap) {
                        d->cap = d->cap > 0 ? 2 * d->cap : 64;
                        d->tx = rpc_xrealloc(d->tx, d->cap * sizeof(*d->tx));
                }
                d->tx[d->n++] = rc->open;
                rc->open = (rec_tx) { 0 };
        }
        rc->in_block = false;
}

static bool
starts_with(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void
on_trace(void *arg, db_conn *conn, const db_trace_call *call)
{
        pgscript *ps = arg;
        ExecStatusType rs = call->res != NULL ? PQresultStatus(call->res) : PGRES_FATAL_ERROR;
        bool ok = rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK;
        rec_conn *rc;

        if (pthread_equal(pthread_self(), ps->owner)) {
                return;
        }
        pthread_mutex_lock(&ps->mu);
        rc = conn_of(ps, conn, call->dbname != NULL ? call->dbname : "");
        if (call->stmt == NULL && strcmp(call->sql, "BEGIN") == 0) {
                if (rc->in_block || rc->open.n > 0) {
                        tx_clear(&rc->open); /* a lost end: never kept */
                }
                rc->in_block = true;
                record_stmt(&rc->open, call, ok);
        } else if (call->stmt == NULL
            && (strcmp(call->sql, "COMMIT") == 0 || strcmp(call->sql, "ROLLBACK") == 0
                || starts_with(call->sql, "PREPARE TRANSACTION"))) {
                record_stmt(&rc->open, call, ok);
                /* a COMMIT the server answered with ROLLBACK ended a failed transaction */
                if (ok && strcmp(call->sql, "COMMIT") == 0
                    && strcmp(PQcmdStatus((PGresult *) call->res), "ROLLBACK") == 0) {
                        rc->open.failed = true;
                }
                tx_end(ps, rc);
        } else {
                record_stmt(&rc->open, call, ok);
                if (!rc->in_block) {
                        tx_end(ps, rc);
                }
        }
        pthread_mutex_unlock(&ps->mu);
}

void
pgscript_record(pgscript *ps, bool on)
{
        ps->owner = pthread_self();
        db_set_trace(on ? on_trace : NULL, on ? ps : NULL);
}

size_t
pgscript_databases(const pgscript *ps)
{
        return ps->n_dbs;
}

const char *
pgscript_database(const pgscript *ps, size_t i)
{
        return ps->dbs[i].name;
}

void
pgscript_counts(const pgscript *ps, size_t i, uint64_t *ret_statements, uint64_t *ret_transactions)
{
        uint64_t n = 0;

        for (size_t j = 0; j < ps->dbs[i].n; j++) {
                for (size_t k = 0; k < ps->dbs[i].tx[j].n; k++) {
                        n += ps->dbs[i].tx[j].s[k].name != NULL;
                }
        }
        *ret_statements = n;
        *ret_transactions = ps->dbs[i].n;
}

/*
 * Writing
 */

/* Fresh values: while recording, each sequence gives ids in a band of its own above 10^15
 * (replay_opts.high_ids), so an integer in [10^15, 5 10^15) is an id; a UUID is an event
 * id or a lease. */
#define FRESH_INT_MIN 1000000000000000LL
#define FRESH_INT_MAX 5000000000000000LL

/* The script's numbers for an id made on another database: 5e15 + (client, run, j). */
#define FOREIGN_INT "5000000000000000 + (:client_id * 10000000 + :it) * 10000"
#define FOREIGN_MAX 10000

/* The random start of each client, once: at most this long. */
#define PGSCRIPT_START_SPREAD_MS 1000

static bool
is_uuid(const char *v, size_t n)
{
        static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

        if (n != sizeof(shape) - 1) {
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                bool hex = (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f');
                if (shape[i] == '-' ? v[i] != '-' : !hex) {
                        return false;
                }
        }
        return true;
}

static bool
is_fresh(const char *v)
{
        char *end;
        long long x;

        if (v == NULL) {
                return false;
        }
        if (is_uuid(v, strlen(v))) {
                return true;
        }
        if (v[0] < '1' || v[0] > '9') {
                return false;
        }
        x = strtoll(v, &end, 10);
        return *end == '\0' && x >= FRESH_INT_MIN && x < FRESH_INT_MAX;
}

static bool
is_var_name(const char *v)
{
        if (v[0] == '\0') {
                return false;
        }
        for (const char *p = v; *p != '\0'; p++) {
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'
                        || (p > v && *p >= '0' && *p <= '9'))) {
                        return false;
                }
        }
        return true;
}

/* What a fresh value is written as in one database's script. */
typedef struct fresh {
        const char *value;
        char expr[96]; /* the text that replaces it inside a literal */
        size_t len;
        bool owned;    /* value is the writer's copy */
        size_t source; /* the statement that returned it (for an \aset), or SIZE_MAX */
        bool used;     /* a later statement uses it */
} fresh;

typedef struct writer {
        const rec_db *d;
        fresh *f;
        size_t n, cap;
        size_t n_foreign_int, n_foreign_uuid;
        bool *aset; /* per statement, in order: \aset after it */
        char err[256];
} writer;

static fresh *
fresh_find(writer *w, const char *v)
{
        for (size_t i = 0; i < w->n; i++) {
                if (strcmp(w->f[i].value, v) == 0) {
                        return &w->f[i];
                }
        }
        return NULL;
}

static fresh *
fresh_add(writer *w, const char *v)
{
        if (w->n == w->cap) {
                w->cap = w->cap > 0 ? 2 * w->cap : 64;
                w->f = rpc_xrealloc(w->f, w->cap * sizeof(*w->f));
        }
        w->f[w->n] = (fresh) { .value = v, .len = strlen(v), .source = SIZE_MAX };
        return &w->f[w->n++];
}

/* A value no earlier statement of this database returned: a number or UUID of its own per
 * run. */
static void
fresh_foreign(writer *w, const char *v)
{
        fresh *f = fresh_add(w, v);

        f->owned = true;
        if (is_uuid(v, strlen(v))) {
                /* 8 hex digits of j, and the run's 12 decimal digits */
                snprintf(
                    f->expr, sizeof(f->expr), "%08zx-0000-4000-8000-:m_u", w->n_foreign_uuid++);
        } else {
                snprintf(f->expr, sizeof(f->expr), ":m_i%zu", w->n_foreign_int++);
        }
}

static bool
digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool
hexdigit(char c)
{
        return digit(c) || (c >= 'a' && c <= 'f') || c == '-';
}

/* Every fresh value inside text, at a boundary: calls fn(w, value, len) on each. */
static void
scan_fresh(writer *w, const char *text, void (*fn)(writer *w, const char *at, size_t len))
{
        for (const char *p = text; *p != '\0';) {
                size_t n = 0;
                if (hexdigit(*p) && *p != '-' && (p == text || !hexdigit(p[-1]))) {
                        while (hexdigit(p[n])) {
                                n++;
                        }
                        if (is_uuid(p, n)) {
                                fn(w, p, n);
                                p += n;
                                continue;
                        }
                }
                n = 0;
                if (digit(*p) && (p == text || !digit(p[-1]))) {
                        while (digit(p[n])) {
                                n++;
                        }
                        if (n == 16) {
                                char buf[17];
                                memcpy(buf, p, 16);
                                buf[16] = '\0';
                                if (is_fresh(buf)) {
                                        fn(w, p, n);
                                }
                        }
                        p += n;
                        continue;
                }
                p++;
        }
}

static void
note_use(writer *w, const char *at, size_t len)
{
        char *v = rpc_xmalloc(len + 1);

        memcpy(v, at, len);
        v[len] = '\0';
        fresh *f = fresh_find(w, v);
        if (f == NULL) {
                fresh_foreign(w, rpc_xstrdup(v));
        } else {
                f->used = true;
        }
        free(v);
}

/* The first pass: which fresh values each statement returns and later ones use. A value
 * returned but never used is still known, so that it is never taken for a foreign one. */
static void
plan(writer *w)
{
        size_t k = 0;

        for (size_t j = 0; j < w->d->n; j++) {
                const rec_tx *t = &w->d->tx[j];
                for (size_t i = 0; i < t->n; i++, k++) {
                        const rec_stmt *s = &t->s[i];
                        if (s->name == NULL) {
                                scan_fresh(w, s->sql, note_use);
                                continue;
                        }
                        for (int p = 0; p < s->n; p++) {
                                if (s->vals[p] != NULL) {
                                        scan_fresh(w, s->vals[p], note_use);
                                }
                        }
                        /* what it returns, if pgbench can name it: \aset m<k>_<column> */
                        bool nameable = s->ncols > 0;
                        for (int c = 0; c < s->ncols; c++) {
                                nameable = nameable && is_var_name(s->cols[c]);
                        }
                        for (int c = 0; nameable && c < s->ncols; c++) {
                                if (!is_fresh(s->row[c]) || fresh_find(w, s->row[c]) != NULL) {
                                        continue;
                                }
                                fresh *f = fresh_add(w, s->row[c]);
                                snprintf(f->expr, sizeof(f->expr), ":m%zu_%s", k, s->cols[c]);
                                f->source = k;
                        }
                }
        }
        /* \aset only where a later statement reads what it set: fewer variables, and a
         * claim's many rows (of which \aset keeps the last) are never needed */
        for (size_t i = 0; i < w->n; i++) {
                if (w->f[i].source != SIZE_MAX && w->f[i].used) {
                        w->aset[w->f[i].source] = true;
                }
        }
}

static size_t
n_statements(const rec_db *d)
{
        size_t n = 0;

        for (size_t j = 0; j < d->n; j++) {
                n += d->tx[j].n;
        }
        return n;
}

/* Writes text with every fresh value replaced by its expression; quote doubles quotes. */
static void
put_text(writer *w, FILE *f, const char *text, bool quote)
{
        for (const char *p = text; *p != '\0';) {
                bool done = false;
                for (size_t i = 0; i < w->n && !done; i++) {
                        const fresh *fr = &w->f[i];
                        if (strncmp(p, fr->value, fr->len) == 0 && (p == text || !hexdigit(p[-1]))
                            && !hexdigit(p[fr->len])) {
                                /* pgbench skips a variable right after a ':' (it takes
                                 * "::" for a cast): that colon comes from :m_c, whose
                                 * value is ":" */
                                if (p > text && p[-1] == ':' && fr->expr[0] == ':') {
                                        fputs("m_c", f);
                                }
                                fputs(fr->expr, f);
                                p += fr->len;
                                done = true;
                        }
                }
                if (done) {
                        continue;
                }
                if (quote && *p == '\'') {
                        fputc('\'', f);
                }
                fputc(*p++, f);
        }
}

static bool
name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || digit(c) || c == '_';
}

/* pgbench substitutes ":name" for a variable it knows, also inside literals: a recorded
 * value or statement must not hold one of the script's own names by chance. */
static bool
clashes(const char *text)
{
        static const char *const names[]
            = { "client_id", "scale", "random_seed", "default_seed", "it", "prepared" };

        for (const char *p = strchr(text, ':'); p != NULL; p = strchr(p + 1, ':')) {
                const char *q = p + 1;
                size_t n = 0;
                if (*q == ':') {
                        p++; /* a cast */
                        continue;
                }
                while (name_char(q[n])) {
                        n++;
                }
                if (n >= 2 && q[0] == 'm' && (q[1] == '_' || digit(q[1]))) {
                        return true;
                }
                for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                        if (strlen(names[i]) == n && strncmp(q, names[i], n) == 0) {
                                return true;
                        }
                }
        }
        return false;
}

static bool
stmt_clashes(const rec_stmt *s)
{
        if (clashes(s->sql)) {
                return true;
        }
        for (int p = 0; p < s->n; p++) {
                if (s->vals[p] != NULL && clashes(s->vals[p])) {
                        return true;
                }
        }
        return false;
}

static const rec_stmt *
first_named(const rec_db *d, const char *name)
{
        for (size_t j = 0; j < d->n; j++) {
                for (size_t i = 0; i < d->tx[j].n; i++) {
                        const rec_stmt *s = &d->tx[j].s[i];
                        if (s->name != NULL && strcmp(s->name, name) == 0) {
                                return s;
                        }
                }
        }
        return NULL;
}

/* The GID a transaction ends with PREPARE TRANSACTION, as recorded (quoted); or NULL. */
static const char *
prepared_gid(const rec_tx *t)
{
        static const char verb[] = "PREPARE TRANSACTION ";
        const rec_stmt *s = t->n > 0 ? &t->s[t->n - 1] : NULL;

        return s != NULL && s->name == NULL && starts_with(s->sql, verb) ? s->sql + strlen(verb)
                                                                         : NULL;
}

/* The GID a lone COMMIT or ROLLBACK PREPARED finishes, as recorded (quoted); or NULL. */
static const char *
finished_gid(const rec_tx *t)
{
        static const char *const verbs[] = { "COMMIT PREPARED ", "ROLLBACK PREPARED " };

        if (t->n != 1 || t->s[0].name != NULL) {
                return NULL;
        }
        for (size_t i = 0; i < 2; i++) {
                if (starts_with(t->s[0].sql, verbs[i])) {
                        return t->s[0].sql + strlen(verbs[i]);
                }
        }
        return NULL;
}

/* Before statement k's \aset: its numeric variables set to 0, which no row holds. A
 * claim that the recording ran in real time can find nothing due when the script runs it
 * back to back (a retried delivery still in its backoff); \aset then sets nothing, and the
 * later statements that read the variable would abort the script. With the fallback they
 * run and match no row. (A UUID cannot be \set; those come from the outbox's own insert.) */
static void
set_fallbacks(writer *w, FILE *f, const rec_stmt *s, size_t k)
{
        for (int c = 0; c < s->ncols; c++) {
                const fresh *fr = s->row[c] != NULL ? fresh_find(w, s->row[c]) : NULL;

                if (fr != NULL && fr->source == k && fr->used
                    && !is_uuid(s->row[c], strlen(s->row[c]))) {
                        fprintf(f, "\\set m%zu_%s 0\n", k, s->cols[c]);
                }
        }
}

/* Writes transaction j, whose first statement is the k-th of the database. */
static void
write_tx(writer *w, FILE *f, size_t j, size_t k)
{
        const rec_tx *t = &w->d->tx[j];

        for (size_t i = 0; i < t->n; i++, k++) {
                const rec_stmt *s = &t->s[i];
                if (s->name == NULL) {
                        put_text(w, f, s->sql, false);
                        fputs(";\n", f);
                        continue;
                }
                if (w->aset[k]) {
                        set_fallbacks(w, f, s, k);
                }
                fprintf(f, "EXECUTE %s%s", s->name, s->n > 0 ? "(" : "");
                for (int p = 0; p < s->n; p++) {
                        if (p > 0) {
                                fputs(", ", f);
                        }
                        if (s->vals[p] == NULL) {
                                fputs("NULL", f);
                                continue;
                        }
                        fputc('\'', f);
                        put_text(w, f, s->vals[p], true);
                        fputc('\'', f);
                }
                if (s->n > 0) {
                        fputc(')', f);
                }
                if (w->aset[k]) {
                        fprintf(f, " \\aset m%zu_\n", k);
                } else {
                        fputs(";\n", f);
                }
        }
}

static void
write_script(writer *w, FILE *f, uint64_t orders)
{
        const rec_db *d = w->d;

        fprintf(f,
            "-- pgbench script: what one mode issued on database %s for %" PRIu64 " orders:\n"
            "-- %zu transactions, recorded by mercato-bench replay --emit-pgbench (left out:\n"
            "-- %" PRIu64 " idle polls, %" PRIu64 " failed transactions). Run it with\n"
            "--   pgbench " PGSCRIPT_PGBENCH_ARGS " -f THIS %s\n"
            "-- Once per client: every statement prepared, as the services prepare it, and a\n"
            "-- random start, so that the clients do not run the same order in step.\n"
            "\\if :prepared = 0\n",
            d->name, orders, d->n, d->idle, d->failed, d->name);
        for (size_t j = 0; j < d->n; j++) {
                for (size_t i = 0; i < d->tx[j].n; i++) {
                        const rec_stmt *s = &d->tx[j].s[i];
                        if (s->name != NULL && first_named(d, s->name) == s) {
                                fprintf(f, "PREPARE %s AS %s;\n", s->name, s->sql);
                        }
                }
        }
        fprintf(f, "\\set m_start random(0, %d)\n\\sleep :m_start ms\n\\set prepared 1\n\\endif\n",
            PGSCRIPT_START_SPREAD_MS);
        fprintf(f,
            "-- Per run: the run's own numbers for the ids made on other databases.\n"
            "\\set it :it + 1\n"
            "\\set m_u 100000000000 + :client_id * 10000000 + :it\n");
        for (size_t i = 0; i < w->n_foreign_int; i++) {
                fprintf(f, "\\set m_i%zu " FOREIGN_INT " + %zu\n", i, i);
        }
        size_t *first = rpc_xcalloc(d->n + 1, sizeof(*first));
        bool *done = rpc_xcalloc(d->n + 1, sizeof(*done));

        for (size_t j = 0; j < d->n; j++) {
                first[j + 1] = first[j] + d->tx[j].n;
        }
        for (size_t j = 0; j < d->n; j++) {
                const char *gid = prepared_gid(&d->tx[j]);
                if (done[j]) {
                        continue;
                }
                write_tx(w, f, j, first[j]);
                /* the branch's COMMIT or ROLLBACK PREPARED at once (see the NOTES) */
                for (size_t l = j + 1; gid != NULL && l < d->n; l++) {
                        const char *fin = finished_gid(&d->tx[l]);
                        if (!done[l] && fin != NULL && strcmp(fin, gid) == 0) {
                                write_tx(w, f, l, first[l]);
                                done[l] = true;
                                break;
                        }
                }
        }
        free(first);
        free(done);
}

rpc_status
pgscript_write(
    const pgscript *ps, size_t i, const char *path, uint64_t orders, char *err, size_t errlen)
{
        writer w = { .d = &ps->dbs[i] };
        rpc_status st = RPC_OK;
        FILE *f;

        for (size_t j = 0; j < w.d->n; j++) {
                for (size_t k = 0; k < w.d->tx[j].n; k++) {
                        if (stmt_clashes(&w.d->tx[j].s[k])) {
                                snprintf(err, errlen, "%s: statement %s holds a name of the script",
                                    w.d->name,
                                    w.d->tx[j].s[k].name ? w.d->tx[j].s[k].name : "(command)");
                                return RPC_INTERNAL;
                        }
                }
        }
        w.aset = rpc_xcalloc(n_statements(w.d) + 1, sizeof(*w.aset));
        plan(&w);
        if (w.n_foreign_int >= FOREIGN_MAX) {
                snprintf(err, errlen, "%s: %zu ids from other databases: more than %d", w.d->name,
                    w.n_foreign_int, FOREIGN_MAX);
                st = RPC_INTERNAL;
        }
        f = st == RPC_OK ? fopen(path, "w") : NULL;
        if (st == RPC_OK && f == NULL) {
                snprintf(err, errlen, "%s: cannot create", path);
                st = RPC_INTERNAL;
        }
        if (f != NULL) {
                write_script(&w, f, orders);
                if (fclose(f) != 0) {
                        snprintf(err, errlen, "%s: write failed", path);
                        st = RPC_INTERNAL;
                }
        }
        for (size_t j = 0; j < w.n; j++) {
                if (w.f[j].owned) {
                        free((char *) w.f[j].value);
                }
        }
        free(w.f);
        free(w.aset);
        return st;
}
