/* txn.c: `mercato txn list|show|resolve`: the in-flight and in-doubt two-phase commits, by hand.
 *
 * Like `mercato seed`, these connect straight to the databases the topology names (every
 * section's db, and [monolith] db), so they work while the services are down:
 *
 *   list     every database's pg_prepared_xacts (gid, age, database), and the coordinator
 *            log's transactions not done ([order] db): decided and not yet confirmed by
 *            every branch, or undecided (in flight, or in doubt after a crash)
 *   show     one gid: the log's row (decision, participants, timings) and the state of
 *            its branch in each database: prepared, committed, rolled_back or unknown
 *   resolve  commits or rolls back a gid by hand. The decision goes into the log first
 *            (conditionally: a gid whose logged decision is commit is never rolled back,
 *            nor an aborted one committed), then every database's branch is finished
 *            (a rollback also refuses a late prepare of the gid). The coordinator's
 *            recovery then records the order's outcome and marks the row done.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "order_store.h"
#include "tpc.h"

/* The most databases a topology names. */
#define TXN_MAX_DBS 32

/* One database of the topology. */
typedef struct txn_db {
        const char *section; /* the first section naming it */
        const char *conninfo;
        db_conn *db; /* NULL when it could not be opened */
        char error[256];
} txn_db;

typedef struct txn_dbs {
        txn_db dbs[TXN_MAX_DBS];
        size_t n;
        db_conn *log; /* the coordinator's: [order] db, or NULL */
} txn_dbs;

/* The "dbname=..." part of a conninfo, or the whole string. */
static void
db_label(const char *conninfo, char *buf, size_t len)
{
        const char *p = strstr(conninfo, "dbname=");

        if (p == NULL) {
                snprintf(buf, len, "%s", conninfo);
                return;
        }
        p += strlen("dbname=");
        snprintf(buf, len, "%.*s", (int) strcspn(p, " "), p);
}

/* Opens every distinct database of the topology with the 2pc statements. A database that
 * cannot be opened (down, or without the txn tables) is kept with its error. */
static int
dbs_open(cli *c, txn_dbs *d)
{
        const char **sections = NULL;
        size_t n = rpc_conf_sections(c->conf, &sections);

        memset(d, 0, sizeof(*d));
        if (c->conf_error != NULL) {
                cli_error(RPC_NOT_FOUND, "cannot read the topology file: %s", c->conf_error);
                return CLI_EXIT_USAGE;
        }
        for (size_t i = 0; i < n && d->n < TXN_MAX_DBS; i++) {
                const char *conninfo = rpc_conf_get(c->conf, sections[i], "db");
                bool seen = false;

                if (conninfo == NULL) {
                        continue;
                }
                for (size_t k = 0; k < d->n; k++) {
                        seen = seen || strcmp(d->dbs[k].conninfo, conninfo) == 0;
                }
                if (seen) {
                        continue;
                }
                txn_db *t = &d->dbs[d->n++];
                /* The coordinator's database also answers what failed on an order. */
                const db_stmt_table tables[] = { txn_tpc_stmts, order_stmts };
                bool is_order = strcmp(sections[i], "order") == 0;
                t->section = sections[i];
                t->conninfo = conninfo;
                if (db_connect(
                        conninfo, tables, is_order ? 2 : 1, &t->db, t->error, sizeof(t->error))
                    != RPC_OK) {
                        t->db = NULL;
                }
                if (is_order) {
                        d->log = t->db;
                }
        }
        if (d->n == 0) {
                cli_error(RPC_NOT_FOUND, "the topology names no database");
                return CLI_EXIT_USAGE;
        }
        return CLI_EXIT_OK;
}

static void
dbs_close(txn_dbs *d)
{
        for (size_t i = 0; i < d->n; i++) {
                db_close(d->dbs[i].db);
        }
}

static json_t *
log_json(const txn_tpc_log_rec *r)
{
        int64_t now = rpc_now_unix_ms();

        return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "gid", r->gid,
            "coordinator", r->coordinator, "order_id", (json_int_t) r->txid, "participants",
            r->participants, "decision",
            r->decision == TXN_TPC_UNDECIDED ? "none" : txn_tpc_decision_name(r->decision),
            "reason", r->reason, "age_ms", (json_int_t) (now - r->created_at_ms), "created_at_ms",
            (json_int_t) r->created_at_ms, "decided_at_ms", (json_int_t) r->decided_at_ms,
            "done_at_ms", (json_int_t) r->done_at_ms);
}

static void
print_db_error(const txn_db *t)
{
        char label[128];

        db_label(t->conninfo, label, sizeof(label));
        fprintf(stderr, "mercato: %s (%s): unavailable: %s\n", t->section, label, t->error);
}

int
cli_txn_list_run(cli *c, const cli_args *a)
{
        json_t *prepared = json_array();
        json_t *open = json_array();
        txn_dbs d;
        int code;

        (void) a;
        if ((code = dbs_open(c, &d)) != CLI_EXIT_OK) {
                json_decref(prepared);
                json_decref(open);
                return code;
        }
        for (size_t i = 0; i < d.n; i++) {
                txn_tpc_prepared *list = NULL;
                size_t n = 0;
                char label[128];

                db_label(d.dbs[i].conninfo, label, sizeof(label));
                if (d.dbs[i].db == NULL) {
                        print_db_error(&d.dbs[i]);
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                if (txn_tpc_list_prepared(d.dbs[i].db, "", false, &list, &n) != RPC_OK) {
                        cli_error(RPC_UNAVAILABLE, "%s: %s", label, db_errmsg(d.dbs[i].db));
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                for (size_t k = 0; k < n; k++) {
                        json_array_append_new(prepared,
                            json_pack("{s:s, s:s, s:s, s:I, s:I}", "gid", list[k].gid, "service",
                                d.dbs[i].section, "database", label, "age_ms",
                                (json_int_t) list[k].age_ms, "prepared_at_ms",
                                (json_int_t) list[k].prepared_at_ms));
                }
                free(list);
        }
        if (d.log != NULL) {
                txn_tpc_log_rec *recs = NULL;
                size_t n = 0;
                if (txn_tpc_log_open(d.log, NULL, -1, 1000, &recs, &n) == RPC_OK) {
                        for (size_t k = 0; k < n; k++) {
                                json_array_append_new(open, log_json(&recs[k]));
                        }
                }
                free(recs);
        }
        if (c->json) {
                json_t *all = json_pack("{s:o, s:o}", "prepared", prepared, "log", open);
                cli_print_json(all);
                json_decref(all);
        } else {
                size_t i;
                json_t *v;

                printf("prepared transactions: %zu\n", json_array_size(prepared));
                json_array_foreach(prepared, i, v)
                {
                        printf("  %-40s %-12s %-28s %8lld ms\n",
                            json_string_value(json_object_get(v, "gid")),
                            json_string_value(json_object_get(v, "service")),
                            json_string_value(json_object_get(v, "database")),
                            (long long) json_integer_value(json_object_get(v, "age_ms")));
                }
                printf("coordinator log, not done: %zu\n", json_array_size(open));
                json_array_foreach(open, i, v)
                {
                        printf("  %-40s decision %-7s order %-8lld %8lld ms\n",
                            json_string_value(json_object_get(v, "gid")),
                            json_string_value(json_object_get(v, "decision")),
                            (long long) json_integer_value(json_object_get(v, "order_id")),
                            (long long) json_integer_value(json_object_get(v, "age_ms")));
                }
                json_decref(prepared);
                json_decref(open);
        }
        dbs_close(&d);
        return code;
}

/* The gid of a database's branch: "<gid>:<section>" for a coordinator's GID, else the gid
 * itself. */
static void
branch_gid(const char *gid, const char *section, char buf[TXN_TPC_GID_MAX])
{
        int64_t epoch;
        int64_t txid;

        if (!txn_tpc_gid_parse(gid, NULL, &epoch, &txid)
            || txn_tpc_branch_gid(buf, gid, section) != RPC_OK) {
                snprintf(buf, TXN_TPC_GID_MAX, "%s", gid);
        }
}

/* The branch states of gid in every database, as a JSON array. */
static json_t *
branches_json(txn_dbs *d, const char *gid, int *code)
{
        json_t *arr = json_array();

        for (size_t i = 0; i < d->n; i++) {
                txn_tpc_branch_state state = TXN_TPC_UNKNOWN;
                char label[128];
                char bgid[TXN_TPC_GID_MAX];

                db_label(d->dbs[i].conninfo, label, sizeof(label));
                branch_gid(gid, d->dbs[i].section, bgid);
                if (d->dbs[i].db == NULL
                    || txn_tpc_branch_state_get(d->dbs[i].db, bgid, &state) != RPC_OK) {
                        json_array_append_new(arr,
                            json_pack("{s:s, s:s, s:s}", "service", d->dbs[i].section, "database",
                                label, "state", "unavailable"));
                        *code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                json_array_append_new(arr,
                    json_pack("{s:s, s:s, s:s, s:s}", "service", d->dbs[i].section, "database",
                        label, "gid", bgid, "state", txn_tpc_branch_state_name(state)));
        }
        return arr;
}

static void
print_show(cli *c, json_t *out)
{
        size_t i;
        json_t *v;
        json_t *log = json_object_get(out, "log");

        if (c->json) {
                cli_print_json(out);
                return;
        }
        printf("gid       %s\n", json_string_value(json_object_get(out, "gid")));
        if (json_is_object(log)) {
                printf("decision  %s%s%s\n", json_string_value(json_object_get(log, "decision")),
                    json_string_length(json_object_get(log, "reason")) > 0 ? " " : "",
                    json_string_value(json_object_get(log, "reason")));
                printf("order     %lld\n",
                    (long long) json_integer_value(json_object_get(log, "order_id")));
                printf("branches  %s\n", json_string_value(json_object_get(log, "participants")));
                printf("done      %s\n",
                    json_integer_value(json_object_get(log, "done_at_ms")) > 0 ? "yes" : "no");
                const json_t *f = json_object_get(log, "failure");
                if (json_is_object(f)) {
                        printf("failure   %s: %s: %s\n",
                            json_string_value(json_object_get(f, "branch")),
                            json_string_value(json_object_get(f, "status")),
                            json_string_value(json_object_get(f, "message")));
                }
        } else {
                printf("decision  (not in the coordinator log)\n");
        }
        json_array_foreach(json_object_get(out, "branches"), i, v)
        {
                printf("  %-12s %-28s %s\n", json_string_value(json_object_get(v, "service")),
                    json_string_value(json_object_get(v, "database")),
                    json_string_value(json_object_get(v, "state")));
        }
}

/* Checks a gid argument; a branch GID names its transaction's GID (into buf). */
static int
check_gid(const char *arg, char buf[TXN_TPC_GID_MAX])
{
        if (!txn_tpc_gid_valid(arg)) {
                return cli_usage_error("'%s' is not a gid (1..199 bytes of [A-Za-z0-9_.:-])", arg);
        }
        if (!txn_tpc_global_gid(arg, buf)) {
                snprintf(buf, TXN_TPC_GID_MAX, "%s", arg);
        }
        return CLI_EXIT_OK;
}

/* Prints the gid's log row and branches. */
static int
show(cli *c, txn_dbs *d, const char *gid)
{
        txn_tpc_log_rec rec;
        int code = CLI_EXIT_OK;
        json_t *out = json_pack("{s:s}", "gid", gid);

        if (d->log != NULL && txn_tpc_log_get(d->log, gid, &rec) == RPC_OK) {
                json_t *log = log_json(&rec);
                order_rec o;
                if (order_store_get(d->log, rec.txid, &o) == RPC_OK) {
                        if (o.failure.branch[0] != '\0') {
                                json_object_set_new(log, "failure",
                                    json_pack("{s:s, s:s, s:s}", "branch", o.failure.branch,
                                        "status", o.failure.status, "message", o.failure.message));
                        }
                        order_rec_fini(&o);
                }
                json_object_set_new(out, "log", log);
        } else {
                json_object_set_new(out, "log", json_null());
        }
        json_object_set_new(out, "branches", branches_json(d, gid, &code));
        print_show(c, out);
        json_decref(out);
        return code;
}

int
cli_txn_show_run(cli *c, const cli_args *a)
{
        char gid[TXN_TPC_GID_MAX];
        txn_dbs d;
        int code;

        if ((code = check_gid(a->pos[0], gid)) != CLI_EXIT_OK
            || (code = dbs_open(c, &d)) != CLI_EXIT_OK) {
                return code;
        }
        code = show(c, &d, gid);
        dbs_close(&d);
        return code;
}

/* True if section is one of the log row's participants (the order's own branch is
 * "order", which is also its section). */
static bool
is_participant(const txn_tpc_log_rec *rec, const char *section)
{
        size_t len = strlen(section);

        for (const char *p = rec->participants; (p = strstr(p, section)) != NULL; p += len) {
                if ((p == rec->participants || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0')) {
                        return true;
                }
        }
        return false;
}

int
cli_txn_resolve_run(cli *c, const cli_args *a)
{
        char gid[TXN_TPC_GID_MAX];
        bool commit;
        txn_tpc_decision decision = TXN_TPC_UNDECIDED;
        txn_tpc_log_rec rec;
        txn_dbs d;
        int code;
        rpc_status st;

        if ((code = check_gid(a->pos[0], gid)) != CLI_EXIT_OK) {
                return code;
        }
        memset(&rec, 0, sizeof(rec));
        if (strcmp(a->pos[1], "commit") == 0) {
                commit = true;
        } else if (strcmp(a->pos[1], "rollback") == 0) {
                commit = false;
        } else {
                return cli_usage_error("resolve commit or rollback, not '%s'", a->pos[1]);
        }
        if ((code = dbs_open(c, &d)) != CLI_EXIT_OK) {
                return code;
        }
        /* The log first: the decision it holds is the one that stands. */
        st = d.log != NULL ? txn_tpc_log_get(d.log, gid, &rec) : RPC_NOT_FOUND;
        if (st == RPC_OK) {
                st = txn_tpc_log_decide(d.log, gid, commit ? TXN_TPC_COMMIT : TXN_TPC_ABORT,
                    commit ? "" : "resolved", 0, &decision);
                if (st != RPC_OK) {
                        cli_error(st, "coordinator log: %s", db_errmsg(d.log));
                        dbs_close(&d);
                        return CLI_EXIT_UNREACHABLE;
                }
                if (decision != (commit ? TXN_TPC_COMMIT : TXN_TPC_ABORT)) {
                        cli_error(RPC_FAILED_PRECONDITION,
                            "%s: the coordinator logged %s: refusing to %s it", gid,
                            txn_tpc_decision_name(decision), commit ? "commit" : "roll back");
                        dbs_close(&d);
                        return CLI_EXIT_SERVER;
                }
        } else if (st != RPC_NOT_FOUND) {
                cli_error(st, "coordinator log: %s", db_errmsg(d.log));
                dbs_close(&d);
                return CLI_EXIT_UNREACHABLE;
        } else if (d.log == NULL) {
                fprintf(stderr, "mercato: note: no [order] db reachable: no log to check\n");
        }
        for (size_t i = 0; i < d.n; i++) {
                txn_tpc_branch_state state = TXN_TPC_UNKNOWN;
                char label[128];
                char bgid[TXN_TPC_GID_MAX];

                db_label(d.dbs[i].conninfo, label, sizeof(label));
                branch_gid(gid, d.dbs[i].section, bgid);
                if (d.dbs[i].db == NULL) {
                        print_db_error(&d.dbs[i]);
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                st = txn_tpc_branch_state_get(d.dbs[i].db, bgid, &state);
                /* A rollback also records the gid aborted in each participant's database,
                 * prepared or not, so that a late prepare is refused there. */
                if (st == RPC_OK
                    && (state == TXN_TPC_PREPARED
                        || (!commit && state == TXN_TPC_UNKNOWN && decision != TXN_TPC_UNDECIDED
                            && is_participant(&rec, d.dbs[i].section)))) {
                        st = commit ? txn_tpc_commit(d.dbs[i].db, bgid, &state)
                                    : txn_tpc_rollback(d.dbs[i].db, bgid, &state);
                }
                if (st == RPC_FAILED_PRECONDITION) {
                        cli_error(st, "%s (%s): %s ended the other way: %s", d.dbs[i].section,
                            label, bgid, txn_tpc_branch_state_name(state));
                        code = CLI_EXIT_SERVER;
                } else if (st != RPC_OK) {
                        cli_error(
                            st, "%s (%s): %s", d.dbs[i].section, label, db_errmsg(d.dbs[i].db));
                        code = CLI_EXIT_UNREACHABLE;
                }
        }
        if (code == CLI_EXIT_OK) {
                code = show(c, &d, gid);
        } else {
                (void) show(c, &d, gid);
        }
        dbs_close(&d);
        return code;
}

const char cli_txn_help[]
    = "Connects straight to every database the topology file names (like `mercato seed`).\n"
      "  list     the prepared transactions of every database (gid, age, database) and the\n"
      "           coordinator log's transactions not done (in flight or in doubt)\n"
      "  show     one gid: its logged decision and the state of its branch in each database\n"
      "  resolve  commits or rolls back a gid by hand: the decision is logged first, and a\n"
      "           gid whose logged decision is commit is never rolled back (nor an aborted\n"
      "           one committed); the order service's recovery then records the order\n";
