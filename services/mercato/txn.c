/* txn.c: `mercato txn list|show|resolve`: the transactions in flight, in every mode, by hand.
 *
 * Like `mercato seed`, these connect straight to the databases the topology names (every
 * section's db, and [monolith] db), so they work while the services are down. Each mode is
 * an entry of txn_modes: list adds what it has in flight, show and resolve act on the ids
 * it owns. For 2pc (the id is a GID):
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
 *
 * For the saga (the id is an order id):
 *
 *   list     the orders PENDING in saga mode, with their age, and what their events are
 *            waiting for: deliveries pending (with the most attempts any took, and the
 *            last error) or dead-lettered, in every database's outbox
 *   show     one order: its row, and every event it caused in every outbox, with each
 *            subscriber's delivery state, attempts and last error
 *   resolve  refused: a choreographed saga has no coordinator to decide for it; it ends
 *            when its events are delivered, or at its deadline
 *
 * For the orchestrated saga (the id is an order id too):
 *
 *   list     the sagas not finished (forward or backward), with each step's state, the
 *            most sends of a command and of a compensation, the last error, and "stuck"
 *            once a compensation was sent [order] orch_stuck_after times (5)
 *   show     the order, its saga (state, reason, deadline, next attempt) and its steps
 *   resolve  ORDER retry: the orchestrator's recovery drives the saga at its next pass,
 *            whatever its backoff (after the operator fixed what the last error names)
 *
 * TCC runs on the same log, and gets the same three, with its branches for steps: list
 * gives its transactions not finished (forward: trying, confirming, backward: cancelling),
 * stuck once a confirm or cancel was sent orch_stuck_after times; show the transaction and
 * its branches; resolve ORDER retry.
 *
 * The monolith runs an order in one local transaction: nothing of it outlives the call.
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
        db_conn *log; /* the coordinator's and the orders': [order] db, or NULL */
} txn_dbs;

/* What the saga views read: the orders, in the order's database. */
static const db_stmt saga_order_stmt_list[] = {
        { "cli_saga_pending",
            "SELECT id, (extract(epoch FROM clock_timestamp() - created_at) * 1000)::bigint"
            " FROM orders WHERE status = 'PENDING' AND mode = 'saga' ORDER BY id LIMIT $1",
            1 },
};
/* ... and the orchestrated sagas' log, in the order's database. */
static const db_stmt orch_stmt_list[] = {
        { "cli_orch_open",
            "SELECT s.order_id, s.state, s.reason,"
            " (extract(epoch FROM clock_timestamp() - s.created_at) * 1000)::bigint,"
            " max(t.attempts), max(t.compensations),"
            " string_agg(t.name || ' ' || t.state, ', ' ORDER BY t.step),"
            " coalesce(max(t.last_error) FILTER (WHERE t.last_error <> ''), ''),"
            " (SELECT o.mode FROM orders o WHERE o.id = s.order_id)"
            " FROM orch_saga s JOIN orch_step t ON t.order_id = s.order_id"
            " WHERE s.state IN ('forward', 'backward', 'confirming') GROUP BY s.order_id"
            " ORDER BY s.order_id LIMIT $1",
            1 },
        { "cli_orch_saga",
            "SELECT state, reason, (extract(epoch FROM deadline_at) * 1000)::bigint,"
            " (extract(epoch FROM next_attempt_at) * 1000)::bigint, failed_branch,"
            " failed_status, failed_message FROM orch_saga WHERE order_id = $1",
            1 },
        { "cli_orch_steps",
            "SELECT step, name, state, attempts, compensations, last_error,"
            " (extract(epoch FROM updated_at) * 1000)::bigint FROM orch_step"
            " WHERE order_id = $1 ORDER BY step",
            1 },
        { "cli_orch_retry",
            "UPDATE orch_saga SET next_attempt_at = now() WHERE order_id = $1"
            " AND state IN ('forward', 'backward', 'confirming')",
            1 },
};

static const db_stmt_table orch_stmts
    = { orch_stmt_list, sizeof(orch_stmt_list) / sizeof(orch_stmt_list[0]) };

static const db_stmt_table saga_order_stmts
    = { saga_order_stmt_list, sizeof(saga_order_stmt_list) / sizeof(saga_order_stmt_list[0]) };

/* ... and the events, in every database's outbox. */
static const db_stmt saga_stmt_list[] = {
        /* Per order of $1: events, deliveries pending, dead, not fanned out yet, the most
         * attempts of a pending one, and a pending one's last error. */
        { "cli_saga_waiting",
            "SELECT o.aggregate_id, count(DISTINCT o.event_id),"
            " count(d.event_id) FILTER (WHERE d.state = 'pending'),"
            " count(d.event_id) FILTER (WHERE d.state = 'dead'),"
            " count(DISTINCT o.event_id) FILTER (WHERE NOT o.fanned_out),"
            " coalesce(max(d.attempts) FILTER (WHERE d.state = 'pending'), 0),"
            " coalesce(max(d.last_error) FILTER (WHERE d.state <> 'done'), '')"
            " FROM txn_outbox o LEFT JOIN txn_delivery d ON d.event_id = o.event_id"
            " WHERE o.aggregate_id = ANY ($1::bigint[]) GROUP BY o.aggregate_id",
            1 },
        { "cli_saga_events",
            "SELECT o.source, o.topic, (extract(epoch FROM o.created_at) * 1000)::bigint,"
            " coalesce(d.subscriber, ''), coalesce(d.state, CASE WHEN o.fanned_out"
            " THEN 'no subscriber' ELSE 'not fanned out' END), coalesce(d.attempts, 0),"
            " coalesce(d.last_error, '')"
            " FROM txn_outbox o LEFT JOIN txn_delivery d ON d.event_id = o.event_id"
            " WHERE o.aggregate_id = $1 ORDER BY o.created_at, o.seq, d.subscriber",
            1 },
};
static const db_stmt_table saga_stmts
    = { saga_stmt_list, sizeof(saga_stmt_list) / sizeof(saga_stmt_list[0]) };

/* The most saga orders list shows. */
#define SAGA_LIST_MAX 1000

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
                const db_stmt_table tables[]
                    = { txn_tpc_stmts, saga_stmts, order_stmts, saga_order_stmts, orch_stmts };
                bool is_order = strcmp(sections[i], "order") == 0;
                t->section = sections[i];
                t->conninfo = conninfo;
                if (db_connect(
                        conninfo, tables, is_order ? 5 : 2, &t->db, t->error, sizeof(t->error))
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

/*
 * 2pc
 */

/* Adds "prepared" and "log" to out; prints them unless --json. */
static int
tpc_list(cli *c, txn_dbs *d, json_t *out)
{
        json_t *prepared = json_array();
        json_t *open = json_array();
        int code = CLI_EXIT_OK;

        for (size_t i = 0; i < d->n; i++) {
                txn_tpc_prepared *list = NULL;
                size_t n = 0;
                char label[128];

                db_label(d->dbs[i].conninfo, label, sizeof(label));
                if (d->dbs[i].db == NULL) {
                        print_db_error(&d->dbs[i]);
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                if (txn_tpc_list_prepared(d->dbs[i].db, "", false, &list, &n) != RPC_OK) {
                        cli_error(RPC_UNAVAILABLE, "%s: %s", label, db_errmsg(d->dbs[i].db));
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                for (size_t k = 0; k < n; k++) {
                        json_array_append_new(prepared,
                            json_pack("{s:s, s:s, s:s, s:I, s:I}", "gid", list[k].gid, "service",
                                d->dbs[i].section, "database", label, "age_ms",
                                (json_int_t) list[k].age_ms, "prepared_at_ms",
                                (json_int_t) list[k].prepared_at_ms));
                }
                free(list);
        }
        if (d->log != NULL) {
                txn_tpc_log_rec *recs = NULL;
                size_t n = 0;
                if (txn_tpc_log_open(d->log, NULL, -1, 1000, &recs, &n) == RPC_OK) {
                        for (size_t k = 0; k < n; k++) {
                                json_array_append_new(open, log_json(&recs[k]));
                        }
                }
                free(recs);
        }
        json_object_set_new(out, "prepared", prepared);
        json_object_set_new(out, "log", open);
        if (!c->json) {
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
        }
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
tpc_show_gid(cli *c, txn_dbs *d, const char *gid)
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

static bool
tpc_owns(const char *id)
{
        return txn_tpc_gid_valid(id);
}

static int
tpc_show(cli *c, txn_dbs *d, const char *id)
{
        char gid[TXN_TPC_GID_MAX];
        int code = check_gid(id, gid);

        return code == CLI_EXIT_OK ? tpc_show_gid(c, d, gid) : code;
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

static int
tpc_resolve(cli *c, txn_dbs *d, const char *id, const char *action)
{
        char gid[TXN_TPC_GID_MAX];
        bool commit;
        txn_tpc_decision decision = TXN_TPC_UNDECIDED;
        txn_tpc_log_rec rec;
        int code;
        rpc_status st;

        if ((code = check_gid(id, gid)) != CLI_EXIT_OK) {
                return code;
        }
        memset(&rec, 0, sizeof(rec));
        if (strcmp(action, "commit") == 0) {
                commit = true;
        } else if (strcmp(action, "rollback") == 0) {
                commit = false;
        } else {
                return cli_usage_error("resolve commit or rollback, not '%s'", action);
        }
        /* The log first: the decision it holds is the one that stands. */
        st = d->log != NULL ? txn_tpc_log_get(d->log, gid, &rec) : RPC_NOT_FOUND;
        if (st == RPC_OK) {
                st = txn_tpc_log_decide(d->log, gid, commit ? TXN_TPC_COMMIT : TXN_TPC_ABORT,
                    commit ? "" : "resolved", 0, &decision);
                if (st != RPC_OK) {
                        cli_error(st, "coordinator log: %s", db_errmsg(d->log));
                        return CLI_EXIT_UNREACHABLE;
                }
                if (decision != (commit ? TXN_TPC_COMMIT : TXN_TPC_ABORT)) {
                        cli_error(RPC_FAILED_PRECONDITION,
                            "%s: the coordinator logged %s: refusing to %s it", gid,
                            txn_tpc_decision_name(decision), commit ? "commit" : "roll back");
                        return CLI_EXIT_SERVER;
                }
        } else if (st != RPC_NOT_FOUND) {
                cli_error(st, "coordinator log: %s", db_errmsg(d->log));
                return CLI_EXIT_UNREACHABLE;
        } else if (d->log == NULL) {
                fprintf(stderr, "mercato: note: no [order] db reachable: no log to check\n");
        }
        for (size_t i = 0; i < d->n; i++) {
                txn_tpc_branch_state state = TXN_TPC_UNKNOWN;
                char label[128];
                char bgid[TXN_TPC_GID_MAX];

                db_label(d->dbs[i].conninfo, label, sizeof(label));
                branch_gid(gid, d->dbs[i].section, bgid);
                if (d->dbs[i].db == NULL) {
                        print_db_error(&d->dbs[i]);
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                st = txn_tpc_branch_state_get(d->dbs[i].db, bgid, &state);
                /* A rollback also records the gid aborted in each participant's database,
                 * prepared or not, so that a late prepare is refused there. */
                if (st == RPC_OK
                    && (state == TXN_TPC_PREPARED
                        || (!commit && state == TXN_TPC_UNKNOWN && decision != TXN_TPC_UNDECIDED
                            && is_participant(&rec, d->dbs[i].section)))) {
                        st = commit ? txn_tpc_commit(d->dbs[i].db, bgid, &state)
                                    : txn_tpc_rollback(d->dbs[i].db, bgid, &state);
                }
                if (st == RPC_FAILED_PRECONDITION) {
                        cli_error(st, "%s (%s): %s ended the other way: %s", d->dbs[i].section,
                            label, bgid, txn_tpc_branch_state_name(state));
                        code = CLI_EXIT_SERVER;
                } else if (st != RPC_OK) {
                        cli_error(
                            st, "%s (%s): %s", d->dbs[i].section, label, db_errmsg(d->dbs[i].db));
                        code = CLI_EXIT_UNREACHABLE;
                }
        }
        if (code == CLI_EXIT_OK) {
                code = tpc_show_gid(c, d, gid);
        } else {
                (void) tpc_show_gid(c, d, gid);
        }
        return code;
}

/*
 * saga
 */

/* Adds "sagas" to out: the PENDING saga orders and what their events wait for. */
static int
saga_list(cli *c, txn_dbs *d, json_t *out)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        json_t *sagas = json_array();
        char limit[16], *ids = NULL;
        size_t ids_len = 0;
        int code = CLI_EXIT_OK;
        db_params p;

        json_object_set_new(out, "sagas", sagas);
        if (d->log == NULL) {
                return code;
        }
        snprintf(limit, sizeof(limit), "%d", SAGA_LIST_MAX);
        db_params_init(&p);
        db_params_str(&p, limit);
        if (db_exec(d->log, "cli_saga_pending", &p, &res) != RPC_OK) {
                cli_error(RPC_UNAVAILABLE, "order: %s", db_errmsg(d->log));
                return CLI_EXIT_UNREACHABLE;
        }
        FILE *f = open_memstream(&ids, &ids_len);
        fputc('{', f);
        for (int r = 0; r < db_rows(res); r++) {
                json_array_append_new(sagas,
                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "order_id",
                        (json_int_t) db_get_i64(res, r, 0), "age_ms",
                        (json_int_t) db_get_i64(res, r, 1), "events", (json_int_t) 0, "pending",
                        (json_int_t) 0, "dead", (json_int_t) 0, "not_fanned_out", (json_int_t) 0,
                        "max_attempts", (json_int_t) 0, "last_error", ""));
                fprintf(f, "%s%s", r > 0 ? "," : "", db_get_str(res, r, 0));
        }
        fputc('}', f);
        fclose(f);
        for (size_t i = 0; i < d->n && json_array_size(sagas) > 0; i++) {
                DB_RES_CLEANUP PGresult *w = NULL;
                if (d->dbs[i].db == NULL) {
                        print_db_error(&d->dbs[i]);
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                db_params_init(&p);
                db_params_str(&p, ids);
                if (db_exec(d->dbs[i].db, "cli_saga_waiting", &p, &w) != RPC_OK) {
                        cli_error(
                            RPC_UNAVAILABLE, "%s: %s", d->dbs[i].section, db_errmsg(d->dbs[i].db));
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                for (int r = 0; r < db_rows(w); r++) {
                        size_t k;
                        json_t *v;
                        json_array_foreach(sagas, k, v)
                        {
                                if (json_integer_value(json_object_get(v, "order_id"))
                                    != db_get_i64(w, r, 0)) {
                                        continue;
                                }
                                static const char *const sums[]
                                    = { "events", "pending", "dead", "not_fanned_out" };
                                for (int s = 0; s < 4; s++) {
                                        json_object_set_new(v, sums[s],
                                            json_integer(
                                                json_integer_value(json_object_get(v, sums[s]))
                                                + db_get_i64(w, r, 1 + s)));
                                }
                                json_int_t at = (json_int_t) db_get_i64(w, r, 5);
                                if (at > json_integer_value(json_object_get(v, "max_attempts"))) {
                                        json_object_set_new(v, "max_attempts", json_integer(at));
                                }
                                if (db_get_str(w, r, 6)[0] != '\0') {
                                        json_object_set_new(
                                            v, "last_error", json_string(db_get_str(w, r, 6)));
                                }
                        }
                }
        }
        free(ids);
        if (!c->json) {
                size_t i;
                json_t *v;

                printf("saga orders pending: %zu\n", json_array_size(sagas));
                json_array_foreach(sagas, i, v)
                {
                        printf("  order %-10lld %8lld ms  events %lld, deliveries pending %lld"
                               " (attempts up to %lld), dead %lld, not fanned out %lld%s%s\n",
                            (long long) json_integer_value(json_object_get(v, "order_id")),
                            (long long) json_integer_value(json_object_get(v, "age_ms")),
                            (long long) json_integer_value(json_object_get(v, "events")),
                            (long long) json_integer_value(json_object_get(v, "pending")),
                            (long long) json_integer_value(json_object_get(v, "max_attempts")),
                            (long long) json_integer_value(json_object_get(v, "dead")),
                            (long long) json_integer_value(json_object_get(v, "not_fanned_out")),
                            json_string_length(json_object_get(v, "last_error")) > 0 ? ": " : "",
                            json_string_value(json_object_get(v, "last_error")));
                }
        }
        return code;
}

/* An order id: 1..19 digits, not 0. */
static bool
saga_owns(const char *id)
{
        size_t n = strspn(id, "0123456789");

        return n > 0 && n <= 18 && id[n] == '\0' && strtoll(id, NULL, 10) > 0;
}

/*
 * orchestration
 */

/* [order] orch_stuck_after, as the order service reads it. */
static int64_t
stuck_after(const cli *c)
{
        return rpc_conf_get_int(c->conf, "order", "orch_stuck_after", 5);
}

/* Adds "orchestrated" to out: the sagas and TCC transactions not finished, each with its
 * mode and steps, and stuck when a compensation (a cancel or confirm) was sent
 * orch_stuck_after times. */
static int
orch_list(cli *c, txn_dbs *d, json_t *out)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        json_t *sagas = json_array();
        int64_t stuck = stuck_after(c);
        size_t n_stuck = 0;
        char limit[16];
        db_params p;

        json_object_set_new(out, "orchestrated", sagas);
        if (d->log == NULL) {
                return CLI_EXIT_OK;
        }
        snprintf(limit, sizeof(limit), "%d", SAGA_LIST_MAX);
        db_params_init(&p);
        db_params_str(&p, limit);
        if (db_exec(d->log, "cli_orch_open", &p, &res) != RPC_OK) {
                cli_error(RPC_UNAVAILABLE, "order: %s", db_errmsg(d->log));
                return CLI_EXIT_UNREACHABLE;
        }
        for (int r = 0; r < db_rows(res); r++) {
                bool is_stuck = strcmp(db_get_str(res, r, 1), "forward") != 0
                    && db_get_i64(res, r, 5) >= stuck;
                n_stuck += is_stuck;
                json_array_append_new(sagas,
                    json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:b}", "order_id",
                        (json_int_t) db_get_i64(res, r, 0), "mode", db_get_str(res, r, 8), "state",
                        db_get_str(res, r, 1), "reason", db_get_str(res, r, 2), "age_ms",
                        (json_int_t) db_get_i64(res, r, 3), "max_attempts",
                        (json_int_t) db_get_i64(res, r, 4), "max_compensations",
                        (json_int_t) db_get_i64(res, r, 5), "steps", db_get_str(res, r, 6),
                        "last_error", db_get_str(res, r, 7), "stuck", is_stuck));
        }
        if (!c->json) {
                size_t i;
                json_t *v;

                printf("orchestrated sagas and TCC transactions not finished: %zu (%zu stuck)\n",
                    json_array_size(sagas), n_stuck);
                json_array_foreach(sagas, i, v)
                {
                        printf("  order %-10lld %-13s %8lld ms  %s%s%s%s  [%s]%s%s\n",
                            (long long) json_integer_value(json_object_get(v, "order_id")),
                            json_string_value(json_object_get(v, "mode")),
                            (long long) json_integer_value(json_object_get(v, "age_ms")),
                            json_string_value(json_object_get(v, "state")),
                            json_string_length(json_object_get(v, "reason")) > 0 ? " " : "",
                            json_string_value(json_object_get(v, "reason")),
                            json_is_true(json_object_get(v, "stuck")) ? " STUCK" : "",
                            json_string_value(json_object_get(v, "steps")),
                            json_string_length(json_object_get(v, "last_error")) > 0 ? ": " : "",
                            json_string_value(json_object_get(v, "last_error")));
                }
        }
        return CLI_EXIT_OK;
}

/* The saga log of an orchestrated order, as JSON; NULL when the database fails. */
static json_t *
orch_log_json(db_conn *db, int64_t order_id)
{
        DB_RES_CLEANUP PGresult *saga = NULL;
        DB_RES_CLEANUP PGresult *steps = NULL;
        json_t *out, *list;
        char arg[24];
        db_params p;

        snprintf(arg, sizeof(arg), "%lld", (long long) order_id);
        db_params_init(&p);
        db_params_str(&p, arg);
        if (db_exec(db, "cli_orch_saga", &p, &saga) != RPC_OK
            || db_exec(db, "cli_orch_steps", &p, &steps) != RPC_OK) {
                return NULL;
        }
        if (db_rows(saga) != 1) {
                return json_pack("{s:s}", "state", "none");
        }
        out = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "state", db_get_str(saga, 0, 0),
            "reason", db_get_str(saga, 0, 1), "deadline_ms", (json_int_t) db_get_i64(saga, 0, 2),
            "next_attempt_ms", (json_int_t) db_get_i64(saga, 0, 3), "failed_branch",
            db_get_str(saga, 0, 4), "failed_status", db_get_str(saga, 0, 5), "failed_message",
            db_get_str(saga, 0, 6));
        list = json_array();
        for (int r = 0; r < db_rows(steps); r++) {
                json_array_append_new(list,
                    json_pack("{s:I, s:s, s:s, s:I, s:I, s:s, s:I}", "step",
                        (json_int_t) db_get_i64(steps, r, 0), "name", db_get_str(steps, r, 1),
                        "state", db_get_str(steps, r, 2), "attempts",
                        (json_int_t) db_get_i64(steps, r, 3), "compensations",
                        (json_int_t) db_get_i64(steps, r, 4), "last_error", db_get_str(steps, r, 5),
                        "updated_at_ms", (json_int_t) db_get_i64(steps, r, 6)));
        }
        json_object_set_new(out, "steps", list);
        return out;
}

/* Prints the log of an orchestrated saga, or with tcc of a TCC transaction (whose steps
 * are its branches, and whose second-phase sends are its confirms and cancels). */
static void
orch_log_print(const json_t *log, bool tcc)
{
        size_t i;
        json_t *v;

        printf("%-9s %s%s%s%s%s\n", tcc ? "tcc" : "saga",
            json_string_value(json_object_get(log, "state")),
            json_string_length(json_object_get(log, "reason")) > 0 ? " " : "",
            json_string_value(json_object_get(log, "reason")),
            json_string_length(json_object_get(log, "failed_branch")) > 0 ? ", failed: " : "",
            json_string_value(json_object_get(log, "failed_branch")));
        json_array_foreach(json_object_get(log, "steps"), i, v)
        {
                printf(tcc ? "  %lld %-8s %-13s tries %lld, confirms and cancels %lld%s%s\n"
                           : "  %lld %-8s %-13s sent %lld, compensations %lld%s%s\n",
                    (long long) json_integer_value(json_object_get(v, "step")),
                    json_string_value(json_object_get(v, "name")),
                    json_string_value(json_object_get(v, "state")),
                    (long long) json_integer_value(json_object_get(v, "attempts")),
                    (long long) json_integer_value(json_object_get(v, "compensations")),
                    json_string_length(json_object_get(v, "last_error")) > 0 ? ": " : "",
                    json_string_value(json_object_get(v, "last_error")));
        }
}

static const char saga_no_resolve[]
    = "a choreographed saga has no coordinator to decide for it: it ends when its events are "
      "delivered (see `mercato txn show`), or CANCELLED at its deadline";

/* An order id: an orchestrated saga's can be retried now; a choreographed one's is
 * refused. */
static int
saga_resolve(cli *c, txn_dbs *d, const char *id, const char *action)
{
        int64_t order_id = strtoll(id, NULL, 10);
        int64_t rows = 0;
        char arg[24];
        order_rec o;
        db_params p;
        rpc_status st;

        (void) c;
        st = d->log != NULL ? order_store_get(d->log, order_id, &o) : RPC_UNAVAILABLE;
        if (st == RPC_NOT_FOUND) {
                cli_error(st, "no order %lld", (long long) order_id);
                return CLI_EXIT_SERVER;
        }
        if (st != RPC_OK) {
                cli_error(st, "order: %s", d->log != NULL ? db_errmsg(d->log) : "no [order] db");
                return CLI_EXIT_UNREACHABLE;
        }
        bool orchestrated = o.mode == ORDER_MODE_ORCHESTRATION || o.mode == ORDER_MODE_TCC;
        order_rec_fini(&o);
        if (!orchestrated) {
                return cli_usage_error("%s: saga: %s", id, saga_no_resolve);
        }
        if (strcmp(action, "retry") != 0) {
                return cli_usage_error(
                    "%s: an orchestrated saga takes `retry` (drive it now), not '%s'", id, action);
        }
        snprintf(arg, sizeof(arg), "%lld", (long long) order_id);
        db_params_init(&p);
        db_params_str(&p, arg);
        if (db_exec_count(d->log, "cli_orch_retry", &p, &rows) != RPC_OK) {
                cli_error(RPC_UNAVAILABLE, "order: %s", db_errmsg(d->log));
                return CLI_EXIT_UNREACHABLE;
        }
        if (rows == 0) {
                cli_error(RPC_FAILED_PRECONDITION, "order %lld: its saga has ended",
                    (long long) order_id);
                return CLI_EXIT_SERVER;
        }
        printf("order %lld: its saga is due now; the order service's recovery drives it\n",
            (long long) order_id);
        return CLI_EXIT_OK;
}

static int
saga_show(cli *c, txn_dbs *d, const char *id)
{
        int64_t order_id = strtoll(id, NULL, 10);
        json_t *out = json_pack("{s:I}", "order_id", (json_int_t) order_id);
        json_t *events = json_array();
        int code = CLI_EXIT_OK;
        order_rec o;
        rpc_status st = d->log != NULL ? order_store_get(d->log, order_id, &o) : RPC_UNAVAILABLE;

        if (st == RPC_NOT_FOUND) {
                json_decref(out);
                json_decref(events);
                cli_error(st, "no order %lld", (long long) order_id);
                return CLI_EXIT_SERVER;
        }
        if (st != RPC_OK) {
                json_decref(out);
                json_decref(events);
                cli_error(st, "order: %s",
                    d->log != NULL ? db_errmsg(d->log) : "no [order] db reachable");
                return CLI_EXIT_UNREACHABLE;
        }
        json_object_set_new(out, "status", json_string(order_state_name(o.status)));
        json_object_set_new(out, "reason", json_string(o.reason != NULL ? o.reason : ""));
        json_object_set_new(out, "mode", json_string(order_mode_name(o.mode)));
        json_object_set_new(out, "created_at_ms", json_integer((json_int_t) o.created_at_ms));
        json_object_set_new(out, "updated_at_ms", json_integer((json_int_t) o.updated_at_ms));
        bool orchestrated = o.mode == ORDER_MODE_ORCHESTRATION || o.mode == ORDER_MODE_TCC;
        bool tcc = o.mode == ORDER_MODE_TCC;
        order_rec_fini(&o);
        if (orchestrated) {
                json_t *log = orch_log_json(d->log, order_id);
                if (log == NULL) {
                        cli_error(RPC_UNAVAILABLE, "order: %s", db_errmsg(d->log));
                        code = CLI_EXIT_UNREACHABLE;
                } else {
                        json_object_set_new(out, "saga", log);
                }
        }
        for (size_t i = 0; i < d->n; i++) {
                DB_RES_CLEANUP PGresult *res = NULL;
                db_params p;
                char arg[24];

                if (d->dbs[i].db == NULL) {
                        print_db_error(&d->dbs[i]);
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                snprintf(arg, sizeof(arg), "%lld", (long long) order_id);
                db_params_init(&p);
                db_params_str(&p, arg);
                if (db_exec(d->dbs[i].db, "cli_saga_events", &p, &res) != RPC_OK) {
                        cli_error(
                            RPC_UNAVAILABLE, "%s: %s", d->dbs[i].section, db_errmsg(d->dbs[i].db));
                        code = CLI_EXIT_UNREACHABLE;
                        continue;
                }
                for (int r = 0; r < db_rows(res); r++) {
                        json_array_append_new(events,
                            json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:s}", "database",
                                d->dbs[i].section, "source", db_get_str(res, r, 0), "topic",
                                db_get_str(res, r, 1), "created_at_ms",
                                (json_int_t) db_get_i64(res, r, 2), "subscriber",
                                db_get_str(res, r, 3), "state", db_get_str(res, r, 4), "attempts",
                                (json_int_t) db_get_i64(res, r, 5), "last_error",
                                db_get_str(res, r, 6)));
                }
        }
        json_object_set_new(out, "events", events);
        if (c->json) {
                cli_print_json(out);
        } else {
                size_t i;
                json_t *v;

                printf("order     %lld (%s)\n", (long long) order_id,
                    json_string_value(json_object_get(out, "mode")));
                printf("status    %s%s%s\n", json_string_value(json_object_get(out, "status")),
                    json_string_length(json_object_get(out, "reason")) > 0 ? " " : "",
                    json_string_value(json_object_get(out, "reason")));
                if (json_object_get(out, "saga") != NULL) {
                        orch_log_print(json_object_get(out, "saga"), tcc);
                }
                printf("events    %zu deliveries\n", json_array_size(events));
                json_array_foreach(events, i, v)
                {
                        printf("  %-12s %-20s -> %-22s %-14s attempts %lld%s%s\n",
                            json_string_value(json_object_get(v, "source")),
                            json_string_value(json_object_get(v, "topic")),
                            json_string_value(json_object_get(v, "subscriber")),
                            json_string_value(json_object_get(v, "state")),
                            (long long) json_integer_value(json_object_get(v, "attempts")),
                            json_string_length(json_object_get(v, "last_error")) > 0 ? ": " : "",
                            json_string_value(json_object_get(v, "last_error")));
                }
        }
        json_decref(out);
        return code;
}

/*
 * The table
 */

typedef struct txn_mode {
        const char *name;
        /* Adds the mode's transactions in flight to out (its own keys); prints them unless
         * --json. NULL: nothing of the mode outlives a call. */
        int (*list)(cli *c, txn_dbs *d, json_t *out);
        /* True when id names one of the mode's transactions (an order id, a GID). */
        bool (*owns)(const char *id);
        int (*show)(cli *c, txn_dbs *d, const char *id);
        /* Finishes id by hand with action; NULL when the mode has nothing to resolve, and
         * no_resolve says why. */
        int (*resolve)(cli *c, txn_dbs *d, const char *id, const char *action);
        const char *no_resolve;
} txn_mode;

/* An order id is tried before a GID: a GID always holds a colon. */
static const txn_mode txn_modes[] = {
        { "saga", saga_list, saga_owns, saga_show, saga_resolve, NULL },
        { "2pc", tpc_list, tpc_owns, tpc_show, tpc_resolve, NULL },
        { "monolith", NULL, NULL, NULL, NULL, NULL },
        /* Its order ids are the saga entry's: show and resolve look at the order's mode. */
        { "orchestration", orch_list, NULL, NULL, NULL, NULL },
        /* On the orchestrator's log too: orch_list lists it, show and resolve as above. */
        { "tcc", NULL, NULL, NULL, NULL, NULL },
};

#define N_TXN_MODES (sizeof(txn_modes) / sizeof(txn_modes[0]))

/* The mode that owns id; NULL, after saying so, when none does. */
static const txn_mode *
mode_of(const char *id)
{
        for (size_t i = 0; i < N_TXN_MODES; i++) {
                if (txn_modes[i].owns != NULL && txn_modes[i].owns(id)) {
                        return &txn_modes[i];
                }
        }
        (void) cli_usage_error(
            "'%s' is neither an order id nor a gid (1..199 bytes of [A-Za-z0-9_.:-])", id);
        return NULL;
}

int
cli_txn_list_run(cli *c, const cli_args *a)
{
        json_t *out = json_object();
        txn_dbs d;
        int code;

        (void) a;
        if ((code = dbs_open(c, &d)) != CLI_EXIT_OK) {
                json_decref(out);
                return code;
        }
        for (size_t i = 0; i < N_TXN_MODES; i++) {
                int mc = txn_modes[i].list != NULL ? txn_modes[i].list(c, &d, out) : CLI_EXIT_OK;
                code = code == CLI_EXIT_OK ? mc : code;
        }
        if (c->json) {
                cli_print_json(out);
        }
        json_decref(out);
        dbs_close(&d);
        return code;
}

int
cli_txn_show_run(cli *c, const cli_args *a)
{
        const txn_mode *m = mode_of(a->pos[0]);
        txn_dbs d;
        int code;

        if (m == NULL) {
                return CLI_EXIT_USAGE;
        }
        if ((code = dbs_open(c, &d)) != CLI_EXIT_OK) {
                return code;
        }
        code = m->show(c, &d, a->pos[0]);
        dbs_close(&d);
        return code;
}

int
cli_txn_resolve_run(cli *c, const cli_args *a)
{
        const txn_mode *m = mode_of(a->pos[0]);
        txn_dbs d;
        int code;

        if (m == NULL) {
                return CLI_EXIT_USAGE;
        }
        if (m->resolve == NULL) {
                return cli_usage_error("%s: %s: %s", a->pos[0], m->name, m->no_resolve);
        }
        if ((code = dbs_open(c, &d)) != CLI_EXIT_OK) {
                return code;
        }
        code = m->resolve(c, &d, a->pos[0], a->pos[1]);
        dbs_close(&d);
        return code;
}

const char cli_txn_help[]
    = "Connects straight to every database the topology file names (like `mercato seed`).\n"
      "  list     2pc: the prepared transactions of every database (gid, age, database) and\n"
      "           the coordinator log's transactions not done (in flight or in doubt);\n"
      "           saga: the PENDING saga orders and the deliveries their events wait for\n"
      "  show     a gid: its logged decision and the state of its branch in each database;\n"
      "           an order id: the order and every event it caused, with each subscriber's\n"
      "           delivery state, attempts and last error\n"
      "  resolve  commits or rolls back a gid by hand: the decision is logged first, and a\n"
      "           gid whose logged decision is commit is never rolled back (nor an aborted\n"
      "           one committed); the order service's recovery then records the order.\n"
      "           ORDER retry: an orchestrated saga is driven at once, whatever its backoff;\n"
      "           a choreographed saga has no coordinator: resolving it is refused\n"
      "  list and show also give the orchestrated sagas not finished and their steps;\n"
      "  a saga whose compensation was sent [order] orch_stuck_after times is stuck\n";
