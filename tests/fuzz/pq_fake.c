/* pq_fake.c: libpq's network side replaced for the fuzz targets (see pq_fake.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "pq_fake.h"

/* The wrapped functions (-Wl,--wrap=NAME sends NAME here, __real_NAME to libpq). */
PGconn *__wrap_PQconnectdb(const char *conninfo);
void __wrap_PQfinish(PGconn *conn);
void __wrap_PQreset(PGconn *conn);
ConnStatusType __wrap_PQstatus(const PGconn *conn);
PGTransactionStatusType __wrap_PQtransactionStatus(const PGconn *conn);
char *__wrap_PQerrorMessage(const PGconn *conn);
PQnoticeReceiver __wrap_PQsetNoticeReceiver(PGconn *conn, PQnoticeReceiver proc, void *arg);
PGresult *__wrap_PQprepare(
    PGconn *conn, const char *name, const char *query, int nparams, const Oid *types);
PGresult *__wrap_PQdescribePrepared(PGconn *conn, const char *name);
int __wrap_PQnparams(const PGresult *res);
int __real_PQnparams(const PGresult *res);
PGresult *__wrap_PQexecPrepared(PGconn *conn, const char *name, int nparams,
    const char *const *values, const int *lengths, const int *formats, int result_format);
PGresult *__wrap_PQexecParams(PGconn *conn, const char *command, int nparams, const Oid *types,
    const char *const *values, const int *lengths, const int *formats, int result_format);
PGresult *__wrap_PQexec(PGconn *conn, const char *query);
int __wrap_PQisBusy(PGconn *conn);
int __wrap_PQsocket(const PGconn *conn);
int __wrap_PQconsumeInput(PGconn *conn);
char *__wrap_PQescapeLiteral(PGconn *conn, const char *str, size_t len);
char *__wrap_PQresultErrorField(const PGresult *res, int fieldcode);
char *__real_PQresultErrorField(const PGresult *res, int fieldcode);
char *__wrap_PQcmdStatus(PGresult *res);
char *__real_PQcmdStatus(PGresult *res);

typedef struct fake_conn {
        ConnStatusType status;
        PGTransactionStatusType tx; /* IDLE, INTRANS or INERROR while the status is OK */
        int last_nparams;           /* of the statement PQprepare saw last */
        struct fake_conn *next;
} fake_conn;

static fake_conn *conns;

static struct {
        const uint8_t *p;
        size_t n;
} script;

/* The results that carry something libpq cannot store: their SQLSTATE, their nparams, a
 * COMMIT that rolled back. Each is read right after it is made, by db/conn.c. */
static const PGresult *error_res;
static const char *error_state;
static const PGresult *described_res;
static int described_nparams;
static const PGresult *rolled_back_res;

/* The SQLSTATEs an error outcome draws from: every class db_status_from_sqlstate maps, and
 * some it does not. */
static const char *const sqlstates[] = {
        "40001",
        "40P01",
        "55P03",
        "57014",
        "23505",
        "23514",
        "23503",
        "22003",
        "22P02",
        "22023",
        "42704",
        "08006",
        "57P01",
        "55000",
        "XX000",
        "42P01",
        "",
};

/* The words a cell draws from. */
static const char *const words[] = {
        "",
        "t",
        "f",
        "true",
        "false",
        "-1",
        "0",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "1000000000000",
        "1000000000001",
        "2147483647",
        "2147483648",
        "PENDING",
        "COMPLETED",
        "CANCELLED",
        "RESERVED",
        "SOLD",
        "RELEASED",
        "CAPTURED",
        "DECLINED",
        "REFUNDED",
        "ISSUED",
        "USED",
        "saga",
        "2pc",
        "monolith",
        "order.created",
        "order.cancelled",
        "order.completed",
        "payment.captured",
        "stock.reserved",
        "stock.rejected",
        "out_of_stock",
        "insufficient_balance",
        "coupon_invalid",
        "payment_declined",
        "timeout",
        "prepared",
        "committed",
        "aborted",
        "commit",
        "abort",
        "mercato:1:1",
        "mercato:1:1:product",
        "\\x0801",
        "\\x",
        "1e3",
        " 12",
        "12abc",
        "0x10",
};

void
pq_fake_script(const uint8_t *data, size_t len)
{
        script.p = data;
        script.n = len;
}

int
pq_fake_open_transactions(void)
{
        int n = 0;

        for (const fake_conn *c = conns; c != NULL; c = c->next) {
                n += c->status == CONNECTION_OK && c->tx != PQTRANS_IDLE;
        }
        return n;
}

/* The next script byte, or -1 when the script is exhausted. */
static int
next_byte(void)
{
        if (script.n == 0) {
                return -1;
        }
        script.n--;
        return *script.p++;
}

static fake_conn *
fc(const PGconn *conn)
{
        return (fake_conn *) conn;
}

PGconn *
__wrap_PQconnectdb(const char *conninfo)
{
        fake_conn *c = calloc(1, sizeof(*c));

        (void) conninfo;
        if (c == NULL) {
                return NULL;
        }
        c->status = CONNECTION_OK;
        c->tx = PQTRANS_IDLE;
        c->next = conns;
        conns = c;
        return (PGconn *) c;
}

void
__wrap_PQfinish(PGconn *conn)
{
        fake_conn *c = fc(conn);

        for (fake_conn **p = &conns; *p != NULL; p = &(*p)->next) {
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        }
        free(c);
}

void
__wrap_PQreset(PGconn *conn)
{
        fc(conn)->status = CONNECTION_OK;
        fc(conn)->tx = PQTRANS_IDLE;
}

ConnStatusType
__wrap_PQstatus(const PGconn *conn)
{
        return conn != NULL ? fc(conn)->status : CONNECTION_BAD;
}

PGTransactionStatusType
__wrap_PQtransactionStatus(const PGconn *conn)
{
        return conn != NULL && fc(conn)->status == CONNECTION_OK ? fc(conn)->tx : PQTRANS_UNKNOWN;
}

char *
__wrap_PQerrorMessage(const PGconn *conn)
{
        return conn != NULL && fc(conn)->status == CONNECTION_OK ? ""
                                                                 : "server closed the connection\n";
}

PQnoticeReceiver
__wrap_PQsetNoticeReceiver(PGconn *conn, PQnoticeReceiver proc, void *arg)
{
        (void) conn;
        (void) proc;
        (void) arg;
        return NULL;
}

/* A fresh result from libpq, forgotten by the side tables: it may sit where a freed one
 * they name was. */
static PGresult *
result_new(ExecStatusType status)
{
        PGresult *res = PQmakeEmptyPGresult(NULL, status);

        if (res == error_res) {
                error_res = NULL;
        }
        if (res == described_res) {
                described_res = NULL;
        }
        if (res == rolled_back_res) {
                rolled_back_res = NULL;
        }
        return res;
}

static PGresult *
result_command(void)
{
        return result_new(PGRES_COMMAND_OK);
}

/* The highest $n of a statement: what the server would count as its parameters. */
static int
count_params(const char *sql)
{
        int max = 0;

        for (const char *s = sql; *s != '\0'; s++) {
                if (*s == '$' && s[1] >= '1' && s[1] <= '9') {
                        int v = (int) strtol(s + 1, NULL, 10);
                        max = v > max ? v : max;
                }
        }
        return max;
}

PGresult *
__wrap_PQprepare(PGconn *conn, const char *name, const char *query, int nparams, const Oid *types)
{
        (void) name;
        (void) nparams;
        (void) types;
        fc(conn)->last_nparams = count_params(query);
        return result_command();
}

PGresult *
__wrap_PQdescribePrepared(PGconn *conn, const char *name)
{
        PGresult *res = result_command();

        (void) name;
        described_res = res;
        described_nparams = fc(conn)->last_nparams;
        return res;
}

int
__wrap_PQnparams(const PGresult *res)
{
        return res == described_res ? described_nparams : __real_PQnparams(res);
}

/* An error result with a SQLSTATE; inside a transaction the transaction fails. */
static PGresult *
result_error(fake_conn *c, const char *state)
{
        PGresult *res = result_new(PGRES_FATAL_ERROR);

        error_res = res;
        error_state = state;
        if (c->tx == PQTRANS_INTRANS) {
                c->tx = PQTRANS_INERROR;
        }
        return res;
}

/* Draws an outcome: NULL with *ret_res set for an error or a lost connection, or the
 * result kind OK. */
static bool
draw_failure(fake_conn *c, PGresult **ret_res)
{
        int b = next_byte();

        if (b < 0xc0) {
                return false;
        }
        if (b >= 0xf0) {
                c->status = CONNECTION_BAD;
                *ret_res = NULL;
                return true;
        }
        *ret_res = result_error(
            c, sqlstates[(size_t) (b - 0xc0) % (sizeof(sqlstates) / sizeof(sqlstates[0]))]);
        return true;
}

static void
set_cell(PGresult *res, int row, int col)
{
        char buf[72];
        int b = next_byte();

        if (b < 0) {
                PQsetvalue(res, row, col, "1", 1);
        } else if (b < 0x80) {
                int n = snprintf(buf, sizeof(buf), "%d", b);
                PQsetvalue(res, row, col, buf, n);
        } else if (b < 0xc0) {
                const char *w = words[(size_t) (b - 0x80) % (sizeof(words) / sizeof(words[0]))];
                PQsetvalue(res, row, col, (char *) w, (int) strlen(w));
        } else if (b < 0xe0) {
                PQsetvalue(res, row, col, NULL, -1);
        } else {
                int len = next_byte();
                size_t n = 0;

                len = len < 0 ? 0 : len % 64;
                while ((int) n < len && script.n > 0) {
                        buf[n++] = (char) next_byte();
                }
                PQsetvalue(res, row, col, buf, (int) n);
        }
}

static PGresult *
result_rows(void)
{
        static PGresAttDesc attrs[PQ_FAKE_COLUMNS];
        static char names[PQ_FAKE_COLUMNS][8];
        PGresult *res = result_new(PGRES_TUPLES_OK);
        int b = next_byte();
        int rows;

        if (attrs[0].name == NULL) {
                for (int i = 0; i < PQ_FAKE_COLUMNS; i++) {
                        snprintf(names[i], sizeof(names[i]), "c%d", i);
                        attrs[i] = (PGresAttDesc) {
                                .name = names[i], .typid = 25, .typlen = -1, .atttypmod = -1
                        };
                }
        }
        PQsetResultAttrs(res, PQ_FAKE_COLUMNS, attrs);
        rows = b < 0 ? 1 : b < 0xf0 ? b % 4 : (b - 0xf0) * 16;
        for (int r = 0; r < rows; r++) {
                for (int col = 0; col < PQ_FAKE_COLUMNS; col++) {
                        set_cell(res, r, col);
                }
        }
        return res;
}

PGresult *
__wrap_PQexecPrepared(PGconn *conn, const char *name, int nparams, const char *const *values,
    const int *lengths, const int *formats, int result_format)
{
        fake_conn *c = fc(conn);
        PGresult *res;
        size_t sum = 0;

        (void) name;
        (void) lengths;
        (void) formats;
        (void) result_format;
        /* Read every parameter, as the server would: a dangling one shows up here. */
        for (int i = 0; i < nparams; i++) {
                sum += values[i] != NULL ? strlen(values[i]) : 0;
        }
        (void) sum;
        if (c->status != CONNECTION_OK) {
                return NULL;
        }
        if (c->tx == PQTRANS_INERROR) {
                return result_error(c, "25P02");
        }
        if (draw_failure(c, &res)) {
                return res;
        }
        return result_rows();
}

static bool
starts(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A command without parameters: transaction control, savepoints, 2pc. */
static PGresult *
run_command(PGconn *conn, const char *sql)
{
        fake_conn *c = fc(conn);
        PGresult *res;

        if (c->status != CONNECTION_OK) {
                return NULL;
        }
        if (starts(sql, "ROLLBACK TO")) {
                if (c->tx == PQTRANS_IDLE) {
                        return result_error(c, "25P01");
                }
                c->tx = PQTRANS_INTRANS;
                return result_command();
        }
        if (starts(sql, "ROLLBACK PREPARED") || starts(sql, "COMMIT PREPARED")) {
                if (c->tx != PQTRANS_IDLE) {
                        return result_error(c, "25001");
                }
                return draw_failure(c, &res) ? res : result_command();
        }
        if (starts(sql, "ROLLBACK")) {
                c->tx = PQTRANS_IDLE;
                return result_command();
        }
        if (starts(sql, "COMMIT") || starts(sql, "PREPARE TRANSACTION")) {
                bool failed = c->tx == PQTRANS_INERROR;

                if (!failed && draw_failure(c, &res)) {
                        if (c->status == CONNECTION_OK) {
                                c->tx = PQTRANS_IDLE;
                        }
                        return res;
                }
                c->tx = PQTRANS_IDLE;
                res = result_command();
                if (failed) {
                        rolled_back_res = res;
                }
                return res;
        }
        if (c->tx == PQTRANS_INERROR) {
                return result_error(c, "25P02");
        }
        if (starts(sql, "SAVEPOINT") && c->tx == PQTRANS_IDLE) {
                return result_error(c, "25P01");
        }
        if (draw_failure(c, &res)) {
                return res;
        }
        if (starts(sql, "BEGIN")) {
                c->tx = PQTRANS_INTRANS;
        }
        return result_command();
}

PGresult *
__wrap_PQexecParams(PGconn *conn, const char *command, int nparams, const Oid *types,
    const char *const *values, const int *lengths, const int *formats, int result_format)
{
        (void) nparams;
        (void) types;
        (void) values;
        (void) lengths;
        (void) formats;
        (void) result_format;
        return run_command(conn, command);
}

PGresult *
__wrap_PQexec(PGconn *conn, const char *query)
{
        return run_command(conn, query);
}

int
__wrap_PQisBusy(PGconn *conn)
{
        (void) conn;
        return 0;
}

/* A pipe nobody writes to: poll(2) finds it quiet, as an idle connection's socket is. */
int
__wrap_PQsocket(const PGconn *conn)
{
        static int fds[2] = { -1, -1 };

        (void) conn;
        if (fds[0] < 0 && pipe(fds) != 0) {
                return -1;
        }
        return fds[0];
}

int
__wrap_PQconsumeInput(PGconn *conn)
{
        (void) conn;
        return 1;
}

/* Quotes as PostgreSQL with standard_conforming_strings: quotes doubled. Freed with
 * PQfreemem, which is free(3). */
char *
__wrap_PQescapeLiteral(PGconn *conn, const char *str, size_t len)
{
        char *out = malloc(2 * len + 3);
        size_t n = 0;

        (void) conn;
        if (out == NULL) {
                return NULL;
        }
        out[n++] = '\'';
        for (size_t i = 0; i < len && str[i] != '\0'; i++) {
                if (str[i] == '\'') {
                        out[n++] = '\'';
                }
                out[n++] = str[i];
        }
        out[n++] = '\'';
        out[n] = '\0';
        return out;
}

char *
__wrap_PQresultErrorField(const PGresult *res, int fieldcode)
{
        if (res != NULL && res == error_res) {
                switch (fieldcode) {
                case PG_DIAG_SQLSTATE:
                        return (char *) error_state;
                case PG_DIAG_MESSAGE_PRIMARY:
                        return "injected error";
                case PG_DIAG_SEVERITY_NONLOCALIZED:
                        return "ERROR";
                default:
                        break;
                }
        }
        return __real_PQresultErrorField(res, fieldcode);
}

char *
__wrap_PQcmdStatus(PGresult *res)
{
        return res != NULL && res == rolled_back_res ? "ROLLBACK" : __real_PQcmdStatus(res);
}
