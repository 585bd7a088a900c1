/* replay.c: `mercato-bench replay`: a mode's SQL straight through libpq: the database's ceiling.
 *
 * NOTES
 *
 * What runs. For each order of the workload (bench_order_next, the stream compare drives),
 * a client thread issues the SQL its mode issues, by calling the functions the services
 * call, so the statements and the transactions are the same by construction:
 *
 *   saga      PriceItems' and GetBalance's store reads; order_saga_create, committed; then
 *             the chain runs on the outbox relays (txn/relay.c, the very relay the services
 *             run, with its fan-out, claims, leases and acks), whose delivery hands each event
 *             in process to the step the subscriber's EventSink runs (product_saga_reserve,
 *             user_saga_debit, payment_saga_capture, the compensations, order_saga_end, and
 *             the order.completed consumers). The client waits for its order's end as
 *             PlaceOrder's waiter does, woken by order_saga_end's caller.
 *   2pc       PriceItems' read, Quote (user_tpc_quote), the order id, order_tpc_begin; the
 *             branches prepare in parallel, one thread each, as the coordinator's calls do:
 *             txn_tpc_prepare_branch with each store's branch (the Participant's Prepare) and
 *             order_tpc_prepare_own on the client's thread; txn_tpc_log_decide; txn_tpc_drive
 *             (COMMIT or ROLLBACK PREPARED on every branch in parallel, then
 *             order_tpc_finished and the log row done); the order read back (reply_order).
 *             Parallel threads, not a sequence: the locks a branch holds, from its prepare to
 *             its commit, are held as long as under the coordinator, and an order's latency
 *             is its slowest branch, as there. The GIDs use the coordinator id "replay", so
 *             they never meet a running order service's.
 *   monolith  order_monolith_run, the service's own function, on the monolith database.
 *   orchestration  PriceItems' and GetBalance's reads; order_orch_create; then the
 *             orchestrator's own moves (order_orch_move), whose commands run in process the
 *             very functions SagaParticipant/Run runs (product_orch_reserve, user_orch_debit,
 *             payment_orch_capture, the compensations), on the client's connection to each
 *             participant's database, one after the other as the orchestrator sends them.
 *   tcc       as orchestration, on the same driver (order_orch_move for an order of mode tcc):
 *             its commands are the TCC phases, run in process as SagaParticipant/Run runs
 *             them (product_tcc, user_tcc, payment_tcc): the tries, the decision, the
 *             confirms, or the cancels in reverse.
 * In every mode order.completed then flows through the relay to the data platform, the cart
 * and product sales, off the order's latency, as in the services.
 *
 * What is left out: the RPC hops (the relay's Deliver calls become function calls), and
 * what is service-only: the step switches (off), crash points, the saga deadline scan, 2pc
 * recovery passes, Health. What differs in connections: each client has one connection per
 * database it calls (a service worker's), each relay delivery thread one per subscriber
 * database (the subscriber's worker).
 *
 * The databases. The replay never touches the databases of the topology: their relays
 * would deliver its events. For each distinct database it uses "<dbname>_replay" on the
 * same server, created when missing, migrated and seeded every run with the workload's data
 * (seed_database, as `mercato seed`), and it records a `mercato check` baseline right after
 * seeding and writes a topology naming them, so that `mercato check` verifies every
 * invariant after a run.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bench.h"
#include "cart_steps.h"
#include "dataplatform_steps.h"
#include "event.pb-c.h"
#include "order_tx.h"
#include "payment_steps.h"
#include "pglimit.h"
#include "pgscript.h"
#include "product_steps.h"
#include "replay.h"
#include "seed_db.h"
#include "tpc.h"
#include "txn.h"
#include "user_steps.h"
#include "user_store.h"
#include "util.h"

/* The coordinator id of the replay's GIDs. */
#define REPLAY_COORDINATOR "replay"

/* The branches of a 2pc order, the coordinator's own first (as tpc.c's TPC_BRANCHES). */
#define REPLAY_BRANCHES "order product user payment"

/* How long a client waits for its saga order's end, and the run for the outboxes. */
#define REPLAY_SAGA_WAIT_MS 30000
#define REPLAY_DRAIN_MS 60000

/* The numbers a pgbench script takes for ids (pgscript.c's fresh ids from 10^15 and its
 * own from 5 10^15), which a 2pc epoch must keep out of under high_ids, and how many times
 * the epoch is drawn at most to find one outside (each draw falls there about half the
 * time). */
#define REPLAY_EPOCH_AVOID_MIN INT64_C(1000000000000000)
#define REPLAY_EPOCH_AVOID_MAX INT64_C(6000000000000000)
#define REPLAY_EPOCH_DRAWS 64

/* The orders --emit-pgbench records, unless --emit-orders says otherwise. */
#define REPLAY_EMIT_ORDERS 32

/* The roles, in seed_stores order: product, cart, user, payment, order, dataplatform. */
enum { R_PRODUCT = 0, R_CART = 1, R_USER = 2, R_PAYMENT = 3, R_ORDER = 4, R_DP = 5, N_ROLES = 6 };

/* The 2pc participants, in step order (the first "no" in this order is the reason). */
enum { P_PRODUCT = 0, P_USER = 1, P_PAYMENT = 2, N_PARTS = 3 };
static const int part_roles[N_PARTS] = { R_PRODUCT, R_USER, R_PAYMENT };
static const txn_tpc_branch_fn part_branches[N_PARTS]
    = { product_tpc_branch, user_tpc_branch, payment_tpc_branch };

typedef enum replay_mode {
        MODE_SAGA = 0,
        MODE_TPC = 1,
        MODE_MONO = 2,
        MODE_ORCH = 3,
        MODE_TCC = 4, /* on the orchestrator's driver, as MODE_ORCH */
} replay_mode;

typedef struct replay replay;

/* What a relay's in-process delivery needs: the run, and the dataset of its database. */
typedef struct relay_ctx {
        replay *rp;
        bool mono;
} relay_ctx;

/* One closed-loop client. */
typedef struct client {
        replay *rp;
        int id;
        pthread_t thread;
        db_conn *db[N_ROLES];
        db_conn *mono;
        pthread_cond_t cv; /* with rp->mu: the saga order's end */
        int64_t waiting_id;
        bool ended;
        bool completed;
        char reason[32];
        double *lat_ms;
        size_t n_lat;
        size_t cap_lat;
        uint64_t orders, completed_n, cancelled, errors, wrong;
        uint64_t seq;
        char err[256];
} client;

struct replay {
        const replay_opts *o;
        replay_mode mode;
        char *conninfo[N_ROLES]; /* the replay databases */
        char *mono_conninfo;
        txn_relay *relays[N_ROLES]; /* by source; split dataset */
        txn_relay *mono_relay;
        relay_ctx split_ctx;
        relay_ctx mono_ctx;
        pthread_key_t conn_key; /* a relay delivery thread's connection */
        int64_t epoch;
        int64_t t_warm_ns;
        int64_t t_end_ns;
        pthread_mutex_t mu;
        client *clients;
        int n_clients;
};

static int64_t
now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *
role_name(int role)
{
        return seed_stores[role].name;
}

static int
role_of(const char *name)
{
        for (int r = 0; r < N_ROLES; r++) {
                if (strcmp(role_name(r), name) == 0) {
                        return r;
                }
        }
        return -1;
}

/* The statements a role's connection prepares, as its service's (main.c): txn, 2pc, store.
 * The monolith's: every store's. */
static size_t
role_tables(int role, db_stmt_table *tables)
{
        size_t n = 0;

        tables[n++] = txn_stmts;
        tables[n++] = txn_tpc_stmts;
        if (role == R_ORDER) {
                tables[n++] = order_orch_stmts;
        }
        if (role >= 0) {
                tables[n++] = *seed_stores[role].stmts;
                return n;
        }
        for (int r = 0; r < N_ROLES; r++) {
                tables[n++] = *seed_stores[r].stmts;
        }
        return n;
}

static rpc_status
role_connect(const char *conninfo, int role, db_conn **ret, char *err, size_t errlen)
{
        db_stmt_table tables[3 + N_ROLES];
        size_t n = role_tables(role, tables);

        return db_connect(conninfo, tables, n, ret, err, errlen);
}

/*
 * The databases
 */

/* The replay twin of a conninfo: the same server, dbname "<dbname>_replay"; the later
 * dbname of a conninfo wins. ret_dbname gets the new name. NULL if it names no dbname. */
static char *
replay_conninfo(const char *conninfo, char *ret_dbname, size_t len)
{
        PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
        const char *dbname = NULL;
        char *out = NULL;

        if (opts == NULL) {
                return NULL;
        }
        for (PQconninfoOption *p = opts; p->keyword != NULL; p++) {
                if (strcmp(p->keyword, "dbname") == 0 && p->val != NULL && p->val[0] != '\0') {
                        dbname = p->val;
                }
        }
        if (dbname != NULL && strlen(dbname) + 8 < len && strlen(dbname) + 8 < 64) {
                size_t n = strlen(conninfo) + strlen(dbname) + 32;
                snprintf(ret_dbname, len, "%s_replay", dbname);
                out = rpc_xmalloc(n);
                snprintf(out, n, "%s dbname=%s", conninfo, ret_dbname);
        }
        PQconninfoFree(opts);
        return out;
}

/* Creates database dbname on conninfo's server unless it exists. */
static bool
create_database(const char *conninfo, const char *dbname, char *err, size_t errlen)
{
        size_t n = strlen(conninfo) + 32;
        char *admin = rpc_xmalloc(n);
        const char *params[1] = { dbname };
        PGconn *pg;
        PGresult *res;
        bool ok = false;

        snprintf(admin, n, "%s dbname=postgres", conninfo);
        pg = PQconnectdb(admin);
        free(admin);
        if (PQstatus(pg) != CONNECTION_OK) {
                snprintf(err, errlen, "connect to postgres: %s", PQerrorMessage(pg));
                PQfinish(pg);
                return false;
        }
        res = PQexecParams(
            pg, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                ok = true;
        } else if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                /* CREATE DATABASE takes no parameter: the name is quoted by libpq. */
                char *ident = PQescapeIdentifier(pg, dbname, strlen(dbname));
                char sql[256];

                if (ident != NULL) {
                        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", ident);
                        PQfreemem(ident);
                        PQclear(res);
                        res = PQexec(pg, sql);
                        /* 42P04: a concurrent run created it first. */
                        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                        ok = PQresultStatus(res) == PGRES_COMMAND_OK
                            || (state != NULL && strcmp(state, "42P04") == 0);
                }
        }
        if (!ok) {
                snprintf(err, errlen, "create database %s: %s", dbname, PQerrorMessage(pg));
        }
        PQclear(res);
        PQfinish(pg);
        return ok;
}

/* Names, creates and seeds every replay database, and writes the topology naming them. */
static const db_stmt prepared_stmts[] = {
        { "replay_prepared",
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
            " AND starts_with(gid, $1)",
            1 },
};
static const db_stmt_table prepared_table = { prepared_stmts, 1 };

/* Rolls back what a replay, or a pgbench run of its scripts, stopped midway left prepared
 * in the replay databases (the GIDs of REPLAY_COORDINATOR): it would hold its locks
 * against the seeding. */
static bool
clear_prepared(replay *rp, char *err, size_t errlen)
{
        for (int r = 0; r <= N_ROLES; r++) {
                const char *ci = r < N_ROLES ? rp->conninfo[r] : rp->mono_conninfo;
                db_conn *db = NULL;
                db_params p;
                PGresult *res = NULL;
                rpc_status st = db_connect(ci, &prepared_table, 1, &db, err, errlen);

                if (st == RPC_OK) {
                        db_params_init(&p);
                        db_params_str(&p, REPLAY_COORDINATOR ":");
                        st = db_exec(db, "replay_prepared", &p, &res);
                }
                for (int i = 0; st == RPC_OK && i < db_rows(res); i++) {
                        st = db_rollback_prepared(db, db_get_str(res, i, 0));
                        st = st == RPC_NOT_FOUND ? RPC_OK : st;
                }
                if (st != RPC_OK && db != NULL) {
                        snprintf(err, errlen, "clear the prepared transactions: %s", db_errmsg(db));
                }
                PQclear(res);
                db_close(db);
                if (st != RPC_OK) {
                        return false;
                }
        }
        return true;
}

static rpc_status
setup_databases(replay *rp, replay_result *ret, char *err, size_t errlen)
{
        const rpc_conf *conf = rp->o->conf;
        svc_seed seed;
        seed_failure f;
        char dbname[128];
        const seed_store *list[N_ROLES];
        FILE *out;

        bench_workload_seed(rp->o->w, &seed);
        for (int r = 0; r <= N_ROLES; r++) {
                const char *section = r < N_ROLES ? role_name(r) : "monolith";
                const char *ci = rpc_conf_get(conf, section, "db");
                char *rc;

                if (ci == NULL) {
                        snprintf(err, errlen, "the topology names no [%s] db", section);
                        return RPC_INVALID_ARGUMENT;
                }
                rc = replay_conninfo(ci, dbname, sizeof(dbname));
                if (rc == NULL) {
                        snprintf(err, errlen, "[%s] db names no dbname", section);
                        return RPC_INVALID_ARGUMENT;
                }
                if (!create_database(ci, dbname, err, errlen)) {
                        free(rc);
                        return RPC_UNAVAILABLE;
                }
                if (r < N_ROLES) {
                        rp->conninfo[r] = rc;
                } else {
                        rp->mono_conninfo = rc;
                }
        }
        if (!clear_prepared(rp, err, errlen)) {
                return RPC_UNAVAILABLE;
        }
        /* Each distinct database gets the stores of every role that names it. */
        for (int r = 0; r < N_ROLES; r++) {
                size_t n = 0;
                bool first = true;

                for (int q = 0; q < N_ROLES; q++) {
                        if (strcmp(rp->conninfo[q], rp->conninfo[r]) == 0) {
                                first = first && q >= r;
                                list[n++] = &seed_stores[q];
                        }
                }
                if (first
                    && seed_database(rp->conninfo[r], list, n, &seed, NULL, NULL, &f) != RPC_OK) {
                        snprintf(err, errlen, "seed %s: %s", role_name(r), f.msg);
                        return RPC_UNAVAILABLE;
                }
        }
        for (int r = 0; r < N_ROLES; r++) {
                list[r] = &seed_stores[r];
        }
        if (seed_database(rp->mono_conninfo, list, N_ROLES, &seed, NULL, NULL, &f) != RPC_OK) {
                snprintf(err, errlen, "seed the monolith: %s", f.msg);
                return RPC_UNAVAILABLE;
        }

        out = fopen(ret->conf_path, "w");
        if (out == NULL) {
                snprintf(err, errlen, "%s: %s", ret->conf_path, strerror(errno));
                return RPC_INTERNAL;
        }
        fprintf(out, "# The databases of a `mercato-bench replay` run (never a service's).\n");
        for (int r = 0; r < N_ROLES; r++) {
                fprintf(out, "[%s]\ndb = %s\n\n", role_name(r), rp->conninfo[r]);
        }
        fprintf(out, "[monolith]\ndb = %s\n", rp->mono_conninfo);
        if (fclose(out) != 0) {
                snprintf(err, errlen, "%s: %s", ret->conf_path, strerror(errno));
                return RPC_INTERNAL;
        }
        return RPC_OK;
}

/* Every sequence of the replay databases at an id band of its own (replay_opts.high_ids):
 * the k-th sequence seen, over all the databases, restarts at 10^15 + k * 10^13, so that
 * no two sequences give the same number and a fresh id is told apart from any other
 * number (pgscript.c). */
static const db_stmt raise_stmts[] = {
        { "replay_raise_sequences",
            "SELECT setval(format('%I.%I', schemaname, sequencename),"
            " 1000000000000000 + ($1::bigint + row_number() OVER"
            " (ORDER BY schemaname, sequencename) - 1) * 10000000000000, false)"
            " FROM pg_sequences",
            1 },
};
static const db_stmt_table raise_table = { raise_stmts, 1 };

/* The sequences bands can hold below pgscript.c's numbers for other databases' ids. */
#define REPLAY_ID_BANDS 400

static rpc_status
raise_sequences(replay *rp, char *err, size_t errlen)
{
        int64_t k = 0;

        for (int r = 0; r <= N_ROLES; r++) {
                const char *ci = r < N_ROLES ? rp->conninfo[r] : rp->mono_conninfo;
                db_conn *db = NULL;
                db_params p;
                int64_t n = 0;
                rpc_status st = db_connect(ci, &raise_table, 1, &db, err, errlen);

                if (st == RPC_OK) {
                        db_params_init(&p);
                        db_params_i64(&p, k);
                        st = db_exec_count(db, "replay_raise_sequences", &p, &n);
                        if (st != RPC_OK) {
                                snprintf(err, errlen, "raise the sequences: %s", db_errmsg(db));
                        }
                }
                db_close(db);
                if (st != RPC_OK) {
                        return st;
                }
                k += n;
        }
        if (k > REPLAY_ID_BANDS) {
                snprintf(
                    err, errlen, "%lld sequences: more than %d", (long long) k, REPLAY_ID_BANDS);
                return RPC_INTERNAL;
        }
        return RPC_OK;
}

/* `mercato --conf conf_path check --record-baseline baseline_path`, its output dropped. */
static rpc_status
record_baseline(const replay_result *ret, char *err, size_t errlen)
{
        int rc = bench_mercato_check(
            ret->conf_path, NULL, false, "--record-baseline", ret->baseline_path, NULL, true);

        if (rc != 0) {
                snprintf(err, errlen,
                    "%s check --record-baseline failed (exit %d; set MERCATO_BIN)",
                    bench_mercato_path(), rc);
                return RPC_INTERNAL;
        }
        return RPC_OK;
}

/*
 * The relays and the in-process deliveries
 */

static void
close_conn(void *p)
{
        db_close(p);
}

/* The delivery thread's connection to the subscriber's database, made on first use. */
static db_conn *
sub_conn(relay_ctx *x, int role, char *err, size_t errlen)
{
        db_conn *db = pthread_getspecific(x->rp->conn_key);

        if (db == NULL) {
                const char *ci = x->mono ? x->rp->mono_conninfo : x->rp->conninfo[role];
                if (role_connect(ci, x->mono ? -1 : role, &db, err, errlen) != RPC_OK) {
                        return NULL;
                }
                pthread_setspecific(x->rp->conn_key, db);
        }
        return db_ensure(db) == RPC_OK ? db : NULL;
}

static void
wake(replay *rp, int role)
{
        txn_relay_wake(rp->relays[role]);
}

/* An end of a saga order: its waiter, if any, learns it (saga_waiters_finish). */
static void
waiters_finish(replay *rp, const order_rec *rec)
{
        pthread_mutex_lock(&rp->mu);
        for (int i = 0; i < rp->n_clients; i++) {
                client *c = &rp->clients[i];
                if (c->waiting_id == rec->order_id) {
                        c->ended = true;
                        c->completed = rec->status == ORDER_COMPLETED;
                        snprintf(c->reason, sizeof(c->reason), "%s", rec->reason);
                        pthread_cond_signal(&c->cv);
                }
        }
        pthread_mutex_unlock(&rp->mu);
}

/* order.completed at one of its consumers, as each EventSink takes it. */
static rpc_status
deliver_completed(db_conn *db, int role, const Mercato__Event__V1__Event *ev)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__OrderCompleted *oc;
        bool dup = false;
        char perr[128];
        rpc_status st;

        st = rpc_payload_unpack(&mercato__event__v1__order_completed__descriptor, ev->payload.data,
            ev->payload.len, &msg, perr, sizeof(perr));
        if (st != RPC_OK) {
                return st;
        }
        oc = (const Mercato__Event__V1__OrderCompleted *) msg;
        switch (role) {
        case R_PRODUCT:
                return product_order_completed(db, ev->event_id, oc, ev->created_at_ms, &dup);
        case R_CART:
                return cart_order_completed(db, ev->event_id, oc, &dup);
        case R_DP:
                st = dataplatform_order_completed(db, ev->event_id, oc, &dup);
                return st == RPC_ALREADY_EXISTS ? RPC_OK : st;
        default:
                return RPC_INVALID_ARGUMENT;
        }
}

/* A saga event at its subscriber, as each EventSink takes it (step switches off). */
static rpc_status
deliver_saga(replay *rp, db_conn *db, int role, const Mercato__Event__V1__Event *ev)
{
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        const Mercato__Event__V1__SagaOrder *so;
        const char *t = ev->topic;
        bool cancelled = strcmp(t, "order.cancelled") == 0;
        bool dup = false;
        char perr[128];
        rpc_status st;

        st = rpc_payload_unpack(&mercato__event__v1__saga_order__descriptor, ev->payload.data,
            ev->payload.len, &msg, perr, sizeof(perr));
        if (st != RPC_OK) {
                return st;
        }
        so = (const Mercato__Event__V1__SagaOrder *) msg;
        switch (role) {
        case R_PRODUCT:
                st = strcmp(t, "order.created") == 0
                    ? product_saga_reserve(db, so, SVC_STEP_OK, &dup)
                    : product_saga_release(db, so, !cancelled, &dup);
                break;
        case R_USER:
                st = strcmp(t, "stock.reserved") == 0
                    ? user_saga_debit(db, so, SVC_STEP_OK, SVC_STEP_OK, &dup)
                    : user_saga_refund(db, so, !cancelled, &dup);
                break;
        case R_PAYMENT:
                st = strcmp(t, "balance.debited") == 0
                    ? payment_saga_capture(db, so, SVC_STEP_OK, &dup)
                    : payment_saga_refund(db, so, &dup);
                break;
        case R_ORDER: {
                bool complete = strcmp(t, "payment.captured") == 0;
                order_saga_outcome end = ORDER_SAGA_END_ALREADY;
                order_rec rec;

                st = order_saga_end(
                    db, so->order_id, complete, so->discount, so->reason, false, &rec, &end);
                if (st == RPC_OK && end == ORDER_SAGA_END_DONE) {
                        if (complete) {
                                wake(rp, R_ORDER);
                        }
                        waiters_finish(rp, &rec);
                        order_rec_fini(&rec);
                }
                return st;
        }
        default:
                return RPC_INVALID_ARGUMENT;
        }
        if (st == RPC_OK && !dup && !cancelled) {
                wake(rp, role);
        }
        return st;
}

/* txn_relay_opts.deliver: the event to its subscriber's step, in process. */
static rpc_status
replay_deliver(void *arg, const char *subscriber, const Mercato__Event__V1__Event *ev, char *err,
    size_t errlen)
{
        relay_ctx *x = arg;
        int role = role_of(subscriber);
        db_conn *db;
        rpc_status st;

        if (role < 0) {
                snprintf(err, errlen, "unknown subscriber %s", subscriber);
                return RPC_FAILED_PRECONDITION;
        }
        db = sub_conn(x, role, err, errlen);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        if (strcmp(ev->topic, "order.completed") == 0) {
                st = deliver_completed(db, role, ev);
        } else {
                st = deliver_saga(x->rp, db, role, ev);
        }
        if (st != RPC_OK) {
                snprintf(err, errlen, "%s %s: %s: %s", subscriber, ev->topic, rpc_status_name(st),
                    db_errmsg(db));
        }
        return st;
}

/* Starts the relay of source role on a database, as svc.c's relays_start does. */
static rpc_status
relay_start(replay *rp, int role, bool mono, txn_relay **ret)
{
        const rpc_conf *conf = rp->o->conf;
        const char *name = role_name(role);
        txn_relay_opts o = {
                .conninfo = mono ? rp->mono_conninfo : rp->conninfo[role],
                .source = name,
                .conf = conf,
                .max_attempts = (int) rpc_conf_get_int(conf, name, "relay_max_attempts", 0),
                .poll_ms = rpc_conf_get_int(conf, name, "relay_poll_ms", 0),
                .batch = (int) rpc_conf_get_int(conf, name, "relay_batch", 0),
                .deliver = replay_deliver,
                .deliver_arg = mono ? &rp->mono_ctx : &rp->split_ctx,
        };

        return txn_relay_start(&o, ret);
}

/*
 * One order per mode
 */

typedef struct order_out {
        bool completed;
        const char *reason; /* static, or the client's buffer */
} order_out;

static int
line_cmp(const void *a, const void *b)
{
        const order_line *x = a;
        const order_line *y = b;

        return (x->product_id > y->product_id) - (x->product_id < y->product_id);
}

/* The request PlaceOrder builds: the lines by product id. */
static void
make_request(client *c, const bench_order *bo, order_request *r, char *key, size_t keylen)
{
        memset(r, 0, sizeof(*r));
        r->user_id = bo->user_id;
        for (size_t i = 0; i < bo->n_items; i++) {
                r->lines[i]
                    = (order_line) { .product_id = bo->product_id[i], .quantity = bo->quantity[i] };
        }
        r->n_lines = bo->n_items;
        qsort(r->lines, r->n_lines, sizeof(r->lines[0]), line_cmp);
        key[0] = '\0';
        if (c->rp->o->keyed) {
                snprintf(key, keylen, "replay-%d-%llu", c->id, (unsigned long long) ++c->seq);
        }
        r->idempotency_key = key;
}

/* An idempotency key's lookup, as PlaceOrder runs it first (NOT_FOUND: go on). */
static rpc_status
find_key(db_conn *db, const order_request *r)
{
        order_rec rec;
        rpc_status st;

        if (r->idempotency_key[0] == '\0') {
                return RPC_OK;
        }
        st = order_store_find_key(db, r->idempotency_key, &rec);
        if (st == RPC_OK) {
                order_rec_fini(&rec);
                return RPC_ALREADY_EXISTS;
        }
        return st == RPC_NOT_FOUND ? RPC_OK : st;
}

/* PriceItems (product's handler): the lines get their prices, and the total. */
static rpc_status
price(client *c, order_line *lines, size_t n, int64_t *ret_total)
{
        product_item items[BENCH_ITEMS_MAX];
        char names[BENCH_ITEMS_MAX][128];
        int64_t total = 0;
        rpc_status st;

        for (size_t i = 0; i < n; i++) {
                items[i] = (product_item) { .product_id = lines[i].product_id,
                        .quantity = lines[i].quantity };
        }
        st = product_store_price_named(c->db[R_PRODUCT], items, n, names, c->err, sizeof(c->err));
        if (st != RPC_OK) {
                return st;
        }
        for (size_t i = 0; i < n; i++) {
                int64_t line;
                lines[i].unit_price = items[i].unit_price;
                if (__builtin_mul_overflow(lines[i].quantity, lines[i].unit_price, &line)
                    || __builtin_add_overflow(total, line, &total) || total > USER_AMOUNT_MAX) {
                        snprintf(c->err, sizeof(c->err), "order total exceeds 10^12");
                        return RPC_OUT_OF_RANGE;
                }
        }
        *ret_total = total;
        return RPC_OK;
}

/* What a saga's PlaceOrder (choreographed or orchestrated) reads before it creates the
 * order: PriceItems, check_user's GetBalance, the idempotency key. */
static rpc_status
saga_prelude(client *c, order_request *r, int64_t *ret_total)
{
        int64_t balance = 0;
        rpc_status st;

        if ((st = price(c, r->lines, r->n_lines, ret_total)) != RPC_OK) {
                return st;
        }
        if ((st = user_store_get_balance(c->db[R_USER], r->user_id, &balance, NULL)) != RPC_OK) {
                return st;
        }
        return find_key(c->db[R_ORDER], r);
}

static rpc_status
place_saga(client *c, order_request *r, order_out *out)
{
        replay *rp = c->rp;
        db_conn *odb = c->db[R_ORDER];
        int64_t total = 0;
        int64_t order_id = 0;
        int64_t created_at_ms = 0;
        rpc_status st;

        if ((st = saga_prelude(c, r, &total)) != RPC_OK) {
                return st;
        }
        order_new on = {
                .user_id = r->user_id,
                .items = r->lines,
                .n_items = r->n_lines,
                .total = total,
                .mode = ORDER_MODE_SAGA,
                .status = ORDER_PENDING,
                .idempotency_key = r->idempotency_key,
        };
        for (int attempt = 1; attempt <= 3; attempt++) {
                st = order_saga_create(odb, &on, true, &order_id, &created_at_ms);
                if (st == RPC_OK) {
                        /* The waiter, before the commit, as saga_waiter_add. */
                        pthread_mutex_lock(&rp->mu);
                        c->waiting_id = order_id;
                        c->ended = false;
                        pthread_mutex_unlock(&rp->mu);
                        st = db_commit(odb);
                }
                if (st == RPC_OK || !db_retryable(st)) {
                        break;
                }
                db_rollback(odb);
                pthread_mutex_lock(&rp->mu);
                c->waiting_id = 0;
                pthread_mutex_unlock(&rp->mu);
        }
        if (st != RPC_OK) {
                db_rollback(odb);
                snprintf(c->err, sizeof(c->err), "create order: %s", db_errmsg(odb));
                pthread_mutex_lock(&rp->mu);
                c->waiting_id = 0;
                pthread_mutex_unlock(&rp->mu);
                return st;
        }
        wake(rp, R_ORDER);

        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += REPLAY_SAGA_WAIT_MS / 1000;
        pthread_mutex_lock(&rp->mu);
        while (!c->ended) {
                if (pthread_cond_timedwait(&c->cv, &rp->mu, &until) == ETIMEDOUT) {
                        break;
                }
        }
        bool ended = c->ended;
        c->waiting_id = 0;
        pthread_mutex_unlock(&rp->mu);
        if (!ended) {
                snprintf(
                    c->err, sizeof(c->err), "order %lld did not end in time", (long long) order_id);
                return RPC_DEADLINE_EXCEEDED;
        }
        out->completed = c->completed;
        out->reason = c->reason;
        return RPC_OK;
}

/* One 2pc branch's prepare, on a thread of its own. */
typedef struct prepare_job {
        db_conn *db;
        const char *name;
        txn_tpc_branch_fn branch;
        Mercato__Txn__V1__PrepareRequest req;
        char gid[TXN_TPC_GID_MAX];
        Mercato__Txn__V1__Vote vote;
        rpc_status st;
        char err[256];
} prepare_job;

static void *
prepare_thread(void *arg)
{
        prepare_job *j = arg;

        mercato__txn__v1__vote__init(&j->vote);
        j->st = txn_tpc_prepare_branch(
            j->db, j->name, &j->req, NULL, NULL, j->branch, &j->vote, j->err, sizeof(j->err));
        return NULL;
}

/* txn_tpc_ops.finish: the own branch on the coordinator's connection, a participant's on
 * the client's connection to its database (its Commit or Rollback handler's call). */
static rpc_status
ops_finish(void *arg, db_conn *db, const char *branch, const char *gid, bool commit)
{
        client *c = arg;
        int role = role_of(branch);
        rpc_status st;

        if (role == R_ORDER) {
                db = c->db[R_ORDER];
        } else if (role >= 0) {
                db = c->db[role];
        } else {
                return RPC_INTERNAL;
        }
        st = commit ? txn_tpc_commit(db, gid, NULL) : txn_tpc_rollback(db, gid, NULL);
        if (st == RPC_OK && commit && role == R_ORDER) {
                wake(c->rp, R_ORDER); /* order.completed */
        }
        return st;
}

static rpc_status
ops_finished(void *arg, db_conn *db, const txn_tpc_log_rec *rec)
{
        (void) arg;
        return order_tpc_finished(db, rec);
}

static rpc_status
place_tpc(client *c, order_request *r, order_out *out)
{
        replay *rp = c->rp;
        db_conn *odb = c->db[R_ORDER];
        Mercato__Txn__V1__Item items[BENCH_ITEMS_MAX];
        Mercato__Txn__V1__Item *ptrs[BENCH_ITEMS_MAX];
        prepare_job jobs[N_PARTS];
        pthread_t threads[N_PARTS];
        bool started[N_PARTS] = { false };
        char gid[TXN_TPC_GID_MAX];
        char own_gid[TXN_TPC_GID_MAX];
        txn_tpc_decision decision = TXN_TPC_UNDECIDED;
        const char *reason = NULL;
        int64_t total = 0;
        int64_t order_id = 0;
        int64_t created_at_ms = 0;
        int64_t updated_at_ms = 0;
        bool own_prepared;
        order_rec rec;
        rpc_status st;

        if ((st = find_key(odb, r)) != RPC_OK) {
                return st;
        }
        if ((st = price(c, r->lines, r->n_lines, &total)) != RPC_OK) {
                return st;
        }
        /* Quote */
        Mercato__Txn__V1__PrepareRequest q = MERCATO__TXN__V1__PREPARE_REQUEST__INIT;
        Mercato__Txn__V1__Vote qv = MERCATO__TXN__V1__VOTE__INIT;
        q.user_id = r->user_id;
        q.total = total;
        q.amount = total;
        if ((st = user_tpc_quote(c->db[R_USER], &q, &qv, c->err, sizeof(c->err))) != RPC_OK) {
                return st;
        }
        if (!qv.yes) {
                snprintf(c->err, sizeof(c->err), "quote voted no: %s", qv.reason);
                return RPC_FAILED_PRECONDITION; /* no coupons in the workload */
        }
        if ((st = order_store_next_id(odb, &order_id)) != RPC_OK) {
                return st;
        }
        if (txn_tpc_gid(gid, REPLAY_COORDINATOR, rp->epoch, order_id) != RPC_OK
            || txn_tpc_branch_gid(own_gid, gid, "order") != RPC_OK) {
                return RPC_INTERNAL;
        }
        order_new on = {
                .order_id = order_id,
                .user_id = r->user_id,
                .items = r->lines,
                .n_items = r->n_lines,
                .total = total,
                .discount = qv.discount,
                .mode = ORDER_MODE_TWO_PC,
                .status = ORDER_PENDING,
                .idempotency_key = r->idempotency_key,
        };
        st = order_tpc_begin(odb, &on, gid, REPLAY_COORDINATOR, REPLAY_BRANCHES, &created_at_ms);
        if (st != RPC_OK) {
                snprintf(c->err, sizeof(c->err), "create order: %s", db_errmsg(odb));
                return st;
        }

        /* The prepares, in parallel. */
        for (size_t i = 0; i < r->n_lines; i++) {
                mercato__txn__v1__item__init(&items[i]);
                items[i].product_id = r->lines[i].product_id;
                items[i].quantity = r->lines[i].quantity;
                items[i].unit_price = r->lines[i].unit_price;
                ptrs[i] = &items[i];
        }
        for (int i = 0; i < N_PARTS; i++) {
                prepare_job *j = &jobs[i];
                memset(j, 0, sizeof(*j));
                mercato__txn__v1__prepare_request__init(&j->req);
                j->db = c->db[part_roles[i]];
                j->name = role_name(part_roles[i]);
                j->branch = part_branches[i];
                if (txn_tpc_branch_gid(j->gid, gid, j->name) != RPC_OK) {
                        return RPC_INTERNAL;
                }
                j->req.gid = j->gid;
                j->req.order_id = order_id;
                j->req.user_id = r->user_id;
        }
        jobs[P_PRODUCT].req.items = ptrs;
        jobs[P_PRODUCT].req.n_items = r->n_lines;
        jobs[P_USER].req.total = total;
        jobs[P_USER].req.discount = qv.discount;
        jobs[P_USER].req.amount = total - qv.discount;
        jobs[P_PAYMENT].req.amount = total - qv.discount;
        for (int i = 0; i < N_PARTS; i++) {
                started[i] = pthread_create(&threads[i], NULL, prepare_thread, &jobs[i]) == 0;
                if (!started[i]) {
                        prepare_thread(&jobs[i]);
                }
        }
        st = order_tpc_prepare_own(odb, own_gid, order_id, r->user_id, total, qv.discount, r->lines,
            r->n_lines, &updated_at_ms);
        own_prepared = st == RPC_OK;
        for (int i = 0; i < N_PARTS; i++) {
                if (started[i]) {
                        pthread_join(threads[i], NULL);
                }
        }
        bool all_yes = own_prepared;
        for (int i = 0; i < N_PARTS; i++) {
                if (jobs[i].st == RPC_OK && jobs[i].vote.yes) {
                        continue;
                }
                all_yes = false;
                if (jobs[i].st == RPC_OK && reason == NULL) {
                        reason = jobs[i].vote.reason != NULL && jobs[i].vote.reason[0] != '\0'
                            ? jobs[i].vote.reason
                            : ORDER_REASON_PARTICIPANT_ERROR;
                } else if (jobs[i].st != RPC_OK) {
                        snprintf(c->err, sizeof(c->err), "%s did not vote: %s", jobs[i].name,
                            jobs[i].err);
                }
        }
        if (!all_yes && reason == NULL) {
                /* In process, a branch that did not vote erred: no clock runs out here. */
                reason = ORDER_REASON_PARTICIPANT_ERROR;
        }
        st = txn_tpc_log_decide(odb, gid, all_yes ? TXN_TPC_COMMIT : TXN_TPC_ABORT,
            all_yes ? "" : reason, 0, &decision);
        if (st != RPC_OK || decision == TXN_TPC_UNDECIDED) {
                snprintf(c->err, sizeof(c->err), "decision not recorded: %s", db_errmsg(odb));
                return st != RPC_OK ? st : RPC_INTERNAL;
        }

        /* finish_all */
        txn_tpc_recovery_opts ro = {
                .coordinator = REPLAY_COORDINATOR,
                .branches = REPLAY_BRANCHES,
                .ops = { .arg = c, .finish = ops_finish, .finished = ops_finished },
        };
        txn_tpc_log_rec lr = { .txid = order_id, .decision = decision };
        snprintf(lr.gid, sizeof(lr.gid), "%s", gid);
        snprintf(lr.coordinator, sizeof(lr.coordinator), "%s", REPLAY_COORDINATOR);
        snprintf(lr.reason, sizeof(lr.reason), "%s", decision == TXN_TPC_COMMIT ? "" : reason);
        snprintf(lr.participants, sizeof(lr.participants), "%s",
            own_prepared || decision == TXN_TPC_COMMIT ? REPLAY_BRANCHES : "product user payment");
        st = txn_tpc_drive(odb, &ro, &lr);
        if (st != RPC_OK) {
                snprintf(c->err, sizeof(c->err), "drive %s: %s", gid, rpc_status_name(st));
                return st;
        }

        /* reply_order */
        st = order_store_get(odb, order_id, &rec);
        if (st != RPC_OK) {
                return st;
        }
        out->completed = rec.status == ORDER_COMPLETED;
        snprintf(c->reason, sizeof(c->reason), "%s", rec.reason);
        out->reason = c->reason;
        order_rec_fini(&rec);
        return RPC_OK;
}

/* The TCC phase an action names ("try", "confirm", "cancel"), or -1 for a saga's command. */
static int
tcc_phase(const char *action)
{
        for (int p = EVENTS_TCC_TRY; p <= EVENTS_TCC_CANCEL; p++) {
                if (strcmp(action, events_tcc_phase_name((events_tcc_phase) p)) == 0) {
                        return p;
                }
        }
        return -1;
}

/* One TCC phase of a branch, in process: what SagaParticipant/Run runs for mode tcc. */
static rpc_status
tcc_command(db_conn *db, int step, events_tcc_phase phase, const Mercato__Event__V1__SagaOrder *so,
    txn_outcome *out, bool *ret_duplicate)
{
        switch (step) {
        case 1:
                return product_tcc(db, so, phase, SVC_STEP_OK, out, ret_duplicate);
        case 2:
                return user_tcc(db, so, phase, SVC_STEP_OK, SVC_STEP_OK, out, ret_duplicate);
        default:
                return payment_tcc(db, so, phase, SVC_STEP_OK, out, ret_duplicate);
        }
}

/* The orchestrator's command, in process: what SagaParticipant/Run runs, on the client's
 * connection to the participant's database: a saga's step or compensation, or a TCC phase
 * (an order of mode tcc). */
static order_orch_cmd
orch_command(void *arg, int step, const char *action, const Mercato__Event__V1__SagaOrder *so,
    int64_t timeout_ms, order_orch_answer *a)
{
        static const int roles[ORDER_ORCH_STEPS] = { R_PRODUCT, R_USER, R_PAYMENT };
        client *c = arg;
        db_conn *db = c->db[roles[step - 1]];
        bool forward = strcmp(action, order_orch_step_name(step)) == 0;
        int phase = tcc_phase(action);
        bool duplicate = false;
        txn_outcome out;
        rpc_status st;

        (void) timeout_ms;
        if (phase >= 0) {
                st = tcc_command(db, step, (events_tcc_phase) phase, so, &out, &duplicate);
        } else if (step == 1) {
                st = forward ? product_orch_reserve(db, so, SVC_STEP_OK, &out, &duplicate)
                             : product_orch_release(db, so, &out, &duplicate);
        } else if (step == 2) {
                st = forward ? user_orch_debit(db, so, SVC_STEP_OK, SVC_STEP_OK, &out, &duplicate)
                             : user_orch_refund(db, so, &out, &duplicate);
        } else {
                st = forward ? payment_orch_capture(db, so, SVC_STEP_OK, &out, &duplicate)
                             : payment_orch_refund(db, so, &out, &duplicate);
        }
        if (st != RPC_OK) {
                snprintf(a->error, sizeof(a->error), "%s: %s: %s", action, rpc_status_name(st),
                    db_errmsg(db));
                order_failure_set(&a->failure, role_name(roles[step - 1]), st, "%s", db_errmsg(db));
                return db_retryable(st) ? ORDER_ORCH_CMD_RETRY : ORDER_ORCH_CMD_ERROR;
        }
        if (out.reason[0] != '\0') {
                snprintf(a->reason, sizeof(a->reason), "%s", out.reason);
                return ORDER_ORCH_CMD_REFUSED;
        }
        a->discount = out.discount;
        return ORDER_ORCH_CMD_DONE;
}

static void
orch_completed(void *arg)
{
        client *c = arg;

        wake(c->rp, R_ORDER);
}

/* The moves of one saga the orchestrator makes at most: three steps, three compensations,
 * the end, and room for the odd retry of an aborted transaction. A TCC order makes at most
 * three tries, the decision, three confirms (or cancels) and the end. */
#define REPLAY_ORCH_MOVES 32

/* An order of mode orchestration or tcc (mode), driven to its end by the orchestrator's
 * moves, as order_orch_place and its driver do. */
static rpc_status
place_orch(client *c, order_request *r, order_mode mode, order_out *out)
{
        db_conn *odb = c->db[R_ORDER];
        int64_t total = 0;
        int64_t order_id = 0;
        order_rec order;
        order_rec rec;
        bool terminal = false;
        rpc_status st;

        if ((st = saga_prelude(c, r, &total)) != RPC_OK) {
                return st;
        }
        order_new on = {
                .user_id = r->user_id,
                .items = r->lines,
                .n_items = r->n_lines,
                .total = total,
                .mode = mode,
                .status = ORDER_PENDING,
                .idempotency_key = r->idempotency_key,
        };
        st = order_orch_create(odb, &on, REPLAY_SAGA_WAIT_MS, &order_id, NULL);
        if (st == RPC_OK) {
                st = order_store_get(odb, order_id, &order);
        }
        if (st != RPC_OK) {
                snprintf(c->err, sizeof(c->err), "create order: %s", db_errmsg(odb));
                return st;
        }
        const order_orch_driver d = {
                .command = orch_command,
                .completed = orch_completed,
                .arg = c,
                .complete_sw = SVC_STEP_OK,
                .call_timeout_ms = REPLAY_SAGA_WAIT_MS,
                .stuck_after = 5,
        };
        order_orch_saga g = { 0 }; /* as the order service drives: the log read once */
        for (int i = 0; i < REPLAY_ORCH_MOVES && st == RPC_OK && !terminal; i++) {
                int64_t wait = 0;

                st = order_orch_move(
                    odb, &d, &order, REPLAY_SAGA_WAIT_MS, &g, &wait, &terminal, &rec);
                if (st == RPC_OK && wait > 0) {
                        snprintf(c->err, sizeof(c->err), "order %lld: a command must wait",
                            (long long) order_id);
                        st = RPC_INTERNAL;
                }
        }
        order_rec_fini(&order);
        if (st == RPC_OK && !terminal) {
                snprintf(c->err, sizeof(c->err), "order %lld: not ended after %d moves",
                    (long long) order_id, REPLAY_ORCH_MOVES);
                st = RPC_INTERNAL;
        } else if (st != RPC_OK && c->err[0] == '\0') {
                snprintf(
                    c->err, sizeof(c->err), "order %lld: %s", (long long) order_id, db_errmsg(odb));
        }
        if (st != RPC_OK) {
                return st;
        }
        out->completed = rec.status == ORDER_COMPLETED;
        snprintf(c->reason, sizeof(c->reason), "%s", rec.reason);
        out->reason = c->reason;
        order_rec_fini(&rec);
        return RPC_OK;
}

static rpc_status
place_mono(client *c, order_request *r, order_out *out)
{
        order_mono *o = rpc_xcalloc(1, sizeof(*o));
        order_mono_outcome res;
        rpc_status st;

        if ((st = find_key(c->mono, r)) != RPC_OK) {
                free(o);
                return st;
        }
        o->r = r;
        o->n = r->n_lines;
        res = order_monolith_run(c->mono, o);
        switch (res) {
        case ORDER_MONO_COMPLETED:
                txn_relay_wake(c->rp->mono_relay);
                out->completed = true;
                break;
        case ORDER_MONO_CANCELLED:
                snprintf(c->reason, sizeof(c->reason), "%s", o->reason);
                out->reason = c->reason;
                break;
        case ORDER_MONO_EXISTS:
                st = RPC_ALREADY_EXISTS;
                break;
        case ORDER_MONO_ERROR:
        default:
                snprintf(c->err, sizeof(c->err), "%s", o->msg);
                st = o->st != RPC_OK ? o->st : RPC_INTERNAL;
                break;
        }
        free(o);
        return st;
}

static void
record_latency(client *c, double ms)
{
        if (c->n_lat == c->cap_lat) {
                c->cap_lat = c->cap_lat > 0 ? 2 * c->cap_lat : 1024;
                c->lat_ms = rpc_xrealloc(c->lat_ms, c->cap_lat * sizeof(*c->lat_ms));
        }
        c->lat_ms[c->n_lat++] = ms;
}

static void *
client_thread(void *arg)
{
        client *c = arg;
        replay *rp = c->rp;
        bench_rng rng;

        uint64_t max = rp->o->orders_per_client;
        uint64_t placed = 0;

        bench_rng_init(&rng, rp->o->w->seed, (uint64_t) c->id);
        while (max > 0 ? placed++ < max : now_ns() < rp->t_end_ns) {
                bench_order bo;
                order_request r;
                order_out out = { .completed = false, .reason = "" };
                char key[64];
                int64_t t0;
                int64_t t1;
                rpc_status st;

                bench_order_next(rp->o->w, &rng, &bo);
                make_request(c, &bo, &r, key, sizeof(key));
                t0 = now_ns();
                switch (rp->mode) {
                case MODE_SAGA:
                        st = place_saga(c, &r, &out);
                        break;
                case MODE_TPC:
                        st = place_tpc(c, &r, &out);
                        break;
                case MODE_ORCH:
                        st = place_orch(c, &r, ORDER_MODE_ORCHESTRATION, &out);
                        break;
                case MODE_TCC:
                        st = place_orch(c, &r, ORDER_MODE_TCC, &out);
                        break;
                case MODE_MONO:
                default:
                        st = place_mono(c, &r, &out);
                        break;
                }
                t1 = now_ns();
                if (max == 0 && (t0 < rp->t_warm_ns || t1 > rp->t_end_ns)) {
                        continue;
                }
                c->orders++;
                if (st != RPC_OK) {
                        c->errors++;
                        if (!rp->o->quiet) {
                                fprintf(stderr, "replay: client %d: %s: %s\n", c->id,
                                    rpc_status_name(st), c->err);
                        }
                        continue;
                }
                record_latency(c, (double) (t1 - t0) / 1e6);
                if (out.completed) {
                        c->completed_n++;
                } else {
                        c->cancelled++;
                }
                if (out.completed != (bo.kind == BENCH_KIND_OK)
                    || (!out.completed && strcmp(out.reason, bench_kind_reason(bo.kind)) != 0)) {
                        c->wrong++;
                }
        }
        return NULL;
}

/*
 * The run
 */

/* Waits until no outbox of the replay databases has an event left to deliver. */
static rpc_status
drain(replay *rp, char *err, size_t errlen)
{
        int64_t until = rpc_now_mono_ms() + REPLAY_DRAIN_MS;

        for (;;) {
                int64_t left = 0;
                for (int r = 0; r <= N_ROLES; r++) {
                        const char *ci = r < N_ROLES ? rp->conninfo[r] : rp->mono_conninfo;
                        db_conn *db = NULL;
                        int64_t pending = 0;

                        if (role_connect(ci, r < N_ROLES ? r : -1, &db, err, errlen) != RPC_OK) {
                                return RPC_UNAVAILABLE;
                        }
                        if (txn_outbox_counts(db, &pending, NULL) != RPC_OK) {
                                snprintf(err, errlen, "outbox counts: %s", db_errmsg(db));
                                db_close(db);
                                return RPC_INTERNAL;
                        }
                        db_close(db);
                        left += pending;
                }
                if (left == 0) {
                        return RPC_OK;
                }
                if (rpc_now_mono_ms() > until) {
                        snprintf(err, errlen, "%lld events still undelivered", (long long) left);
                        return RPC_DEADLINE_EXCEEDED;
                }
                usleep(50 * 1000);
        }
}

static rpc_status
open_client(replay *rp, client *c, char *err, size_t errlen)
{
        if (rp->mode == MODE_MONO) {
                return role_connect(rp->mono_conninfo, -1, &c->mono, err, errlen);
        }
        for (int r = 0; r < N_ROLES; r++) {
                if (r == R_CART || r == R_DP || (rp->mode == MODE_SAGA && r == R_PAYMENT)) {
                        continue; /* a PlaceOrder never calls them */
                }
                if (role_connect(rp->conninfo[r], r, &c->db[r], err, errlen) != RPC_OK) {
                        return RPC_UNAVAILABLE;
                }
        }
        return RPC_OK;
}

static void
replay_free(replay *rp)
{
        for (int r = 0; r < N_ROLES; r++) {
                txn_relay_stop(rp->relays[r]);
                free(rp->conninfo[r]);
        }
        txn_relay_stop(rp->mono_relay);
        free(rp->mono_conninfo);
        for (int i = 0; rp->clients != NULL && i < rp->n_clients; i++) {
                client *c = &rp->clients[i];
                for (int r = 0; r < N_ROLES; r++) {
                        db_close(c->db[r]);
                }
                db_close(c->mono);
                pthread_cond_destroy(&c->cv);
                free(c->lat_ms);
        }
        free(rp->clients);
        pthread_mutex_destroy(&rp->mu);
        pthread_key_delete(rp->conn_key);
}

static rpc_status
start_relays(replay *rp)
{
        rpc_status st = RPC_OK;

        switch (rp->mode) {
        case MODE_SAGA:
                for (int r = 0; st == RPC_OK && r < N_ROLES; r++) {
                        if (r != R_CART && r != R_DP) {
                                st = relay_start(rp, r, false, &rp->relays[r]);
                        }
                }
                return st;
        case MODE_TPC:
        case MODE_ORCH:
        case MODE_TCC:
                return relay_start(rp, R_ORDER, false, &rp->relays[R_ORDER]);
        case MODE_MONO:
        default:
                return relay_start(rp, R_ORDER, true, &rp->mono_relay);
        }
}

rpc_status
bench_replay_run(const replay_opts *o, replay_result *ret, char *err, size_t errlen)
{
        replay rp = { .o = o };
        char dir[] = "/tmp/mercato-replay.XXXXXX";
        rpc_status st;

        memset(ret, 0, sizeof(*ret));
        if (o->mode == NULL || o->w == NULL || o->conf == NULL || o->clients < 1
            || o->clients > 1024 || !(o->duration_s > 0) || !(o->warmup_s >= 0)) {
                snprintf(err, errlen, "bad replay options");
                return RPC_INVALID_ARGUMENT;
        }
        if (strcmp(o->mode, "saga") == 0) {
                rp.mode = MODE_SAGA;
        } else if (strcmp(o->mode, "2pc") == 0) {
                rp.mode = MODE_TPC;
        } else if (strcmp(o->mode, "monolith") == 0) {
                rp.mode = MODE_MONO;
        } else if (strcmp(o->mode, "orchestration") == 0) {
                rp.mode = MODE_ORCH;
        } else if (strcmp(o->mode, "tcc") == 0) {
                rp.mode = MODE_TCC;
        } else {
                snprintf(err, errlen,
                    "unknown mode '%s' (saga, 2pc, monolith, orchestration or tcc)", o->mode);
                return RPC_INVALID_ARGUMENT;
        }
        if (mkdtemp(dir) == NULL) {
                snprintf(err, errlen, "mkdtemp: %s", strerror(errno));
                return RPC_INTERNAL;
        }
        snprintf(ret->conf_path, sizeof(ret->conf_path), "%s/replay.conf", dir);
        snprintf(ret->baseline_path, sizeof(ret->baseline_path), "%s/baseline", dir);
        pthread_mutex_init(&rp.mu, NULL);
        pthread_key_create(&rp.conn_key, close_conn);
        rp.split_ctx = (relay_ctx) { .rp = &rp, .mono = false };
        rp.mono_ctx = (relay_ctx) { .rp = &rp, .mono = true };

        st = setup_databases(&rp, ret, err, errlen);
        if (st == RPC_OK) {
                st = record_baseline(ret, err, errlen);
        }
        if (st == RPC_OK && o->high_ids) {
                st = raise_sequences(&rp, err, errlen);
        }
        if (st == RPC_OK && rp.mode == MODE_TPC) {
                db_conn *db = NULL;
                st = role_connect(rp.conninfo[R_ORDER], R_ORDER, &db, err, errlen);
                /* With high ids, an epoch among the numbers a script reads as ids
                 * (pgscript.c: [10^15, 5 10^15) and its own above) would be rewritten in
                 * the GIDs: drawn again until it lies outside them. */
                for (int draw = 0; st == RPC_OK && draw < REPLAY_EPOCH_DRAWS; draw++) {
                        st = txn_tpc_next_epoch(db, REPLAY_COORDINATOR, &rp.epoch);
                        if (st != RPC_OK) {
                                snprintf(err, errlen, "epoch: %s", db_errmsg(db));
                        } else if (!o->high_ids || rp.epoch < REPLAY_EPOCH_AVOID_MIN
                            || rp.epoch >= REPLAY_EPOCH_AVOID_MAX) {
                                break;
                        }
                }
                db_close(db);
        }
        rp.n_clients = o->clients;
        rp.clients = rpc_xcalloc((size_t) o->clients, sizeof(*rp.clients));
        for (int i = 0; i < o->clients; i++) {
                rp.clients[i].rp = &rp;
                rp.clients[i].id = i;
                pthread_cond_init(&rp.clients[i].cv, NULL);
        }
        for (int i = 0; st == RPC_OK && i < o->clients; i++) {
                st = open_client(&rp, &rp.clients[i], err, errlen);
        }
        if (st == RPC_OK) {
                st = start_relays(&rp);
                if (st != RPC_OK) {
                        snprintf(err, errlen, "cannot start the relays");
                }
        }
        if (st != RPC_OK) {
                replay_free(&rp);
                return st;
        }

        if (o->before_orders != NULL) {
                o->before_orders(o->before_arg);
        }
        int64_t t0 = now_ns();
        rp.t_warm_ns = t0 + (int64_t) (o->warmup_s * 1e9);
        rp.t_end_ns = rp.t_warm_ns + (int64_t) (o->duration_s * 1e9);
        int started = 0;
        for (int i = 0; i < o->clients; i++) {
                if (pthread_create(&rp.clients[i].thread, NULL, client_thread, &rp.clients[i])
                    != 0) {
                        break;
                }
                started++;
        }
        for (int i = 0; i < started; i++) {
                pthread_join(rp.clients[i].thread, NULL);
        }
        st = started == o->clients ? drain(&rp, err, errlen) : RPC_RESOURCE_EXHAUSTED;
        ret->drain_s = (double) (now_ns() - rp.t_end_ns) / 1e9;
        if (started != o->clients) {
                snprintf(err, errlen, "cannot start the client threads");
        }

        size_t n_lat = 0;
        for (int i = 0; i < o->clients; i++) {
                const client *c = &rp.clients[i];
                ret->orders += c->orders;
                ret->completed += c->completed_n;
                ret->cancelled += c->cancelled;
                ret->errors += c->errors;
                ret->wrong += c->wrong;
                n_lat += c->n_lat;
        }
        double *lat = rpc_xmalloc((n_lat > 0 ? n_lat : 1) * sizeof(*lat));
        size_t k = 0;
        for (int i = 0; i < o->clients; i++) {
                memcpy(lat + k, rp.clients[i].lat_ms, rp.clients[i].n_lat * sizeof(*lat));
                k += rp.clients[i].n_lat;
        }
        bench_sort(lat, n_lat);
        ret->p50_ms = bench_percentile(lat, n_lat, 50);
        ret->p99_ms = bench_percentile(lat, n_lat, 99);
        free(lat);
        ret->seconds = o->orders_per_client > 0 ? (double) (now_ns() - t0) / 1e9 : o->duration_s;
        ret->orders_per_s = (double) ret->orders / ret->seconds;
        replay_free(&rp);
        return st;
}

/*
 * The pgbench scripts
 */

/* The replay conninfo of the topology's database whose twin is dbname ("" if none). */
static void
script_conninfo(const rpc_conf *conf, const char *dbname, char *ret, size_t len)
{
        ret[0] = '\0';
        for (int r = 0; r <= N_ROLES; r++) {
                const char *ci = rpc_conf_get(conf, r < N_ROLES ? role_name(r) : "monolith", "db");
                char name[128];
                char *rc = ci != NULL ? replay_conninfo(ci, name, sizeof(name)) : NULL;

                if (rc != NULL && strcmp(name, dbname) == 0) {
                        snprintf(ret, len, "%s", rc);
                }
                free(rc);
        }
}

typedef struct emit_ctx {
        const replay_opts *o;
        pgscript *ps;
} emit_ctx;

static void
record_on(void *arg)
{
        emit_ctx *x = arg;

        if (x->o->before_orders != NULL) {
                x->o->before_orders(x->o->before_arg);
        }
        pgscript_record(x->ps, true);
}

rpc_status
bench_replay_emit(const replay_opts *o, const char *prefix, uint64_t orders, replay_scripts *ret,
    char *err, size_t errlen)
{
        replay_opts eo = *o;
        replay_result res;
        pgscript *ps = pgscript_new();
        emit_ctx x = { .o = o, .ps = ps };
        rpc_status st;

        memset(ret, 0, sizeof(*ret));
        if (o->clients < 1) {
                snprintf(err, errlen, "bad replay options");
                return RPC_INVALID_ARGUMENT;
        }
        /* as many clients as the run the scripts stand for, so that the relay batches as
         * it does under that load; the orders spread over them */
        eo.warmup_s = 0;
        eo.duration_s = 1;
        eo.orders_per_client = (orders + (uint64_t) o->clients - 1) / (uint64_t) o->clients;
        orders = eo.orders_per_client * (uint64_t) o->clients;
        eo.keyed = false;
        eo.high_ids = true;
        eo.before_orders = record_on;
        eo.before_arg = &x;
        st = bench_replay_run(&eo, &res, err, errlen);
        pgscript_record(ps, false);
        if (st == RPC_OK && (res.errors > 0 || res.orders != orders)) {
                snprintf(err, errlen, "%llu of %llu orders failed while recording",
                    (unsigned long long) res.errors, (unsigned long long) orders);
                st = RPC_INTERNAL;
        }
        if (st == RPC_OK && pgscript_databases(ps) > REPLAY_MAX_SCRIPTS) {
                snprintf(err, errlen, "%zu databases: more than %d", pgscript_databases(ps),
                    REPLAY_MAX_SCRIPTS);
                st = RPC_INTERNAL;
        }
        ret->orders = orders;
        for (size_t i = 0; st == RPC_OK && i < pgscript_databases(ps); i++) {
                replay_script *sc = &ret->s[ret->n++];
                const char *dbname = pgscript_database(ps, i);
                snprintf(sc->dbname, sizeof(sc->dbname), "%s", dbname);
                script_conninfo(o->conf, dbname, sc->conninfo, sizeof(sc->conninfo));
                snprintf(sc->path, sizeof(sc->path), "%s.%s.sql", prefix, dbname);
                pgscript_counts(ps, i, &sc->statements, &sc->transactions);
                st = pgscript_write(ps, i, sc->path, orders, err, errlen);
        }
        pgscript_free(ps);
        return st;
}

/*
 * The command line
 */

static void
usage(FILE *f)
{
        fprintf(f,
            "usage: mercato-bench replay --mode saga|2pc|monolith|orchestration|tcc\n"
            "       [--conf FILE] [--clients N] [--duration S] [--warmup S] [--keyed]\n"
            "       [--products P] [--users U] [--hot-fraction F] [--fail-fraction F]\n"
            "       [--seed N] [--stock N] [--balance N] [--json]\n"
            "       [--emit-pgbench PREFIX [--emit-orders K]] [--pglimit]\n"
            "\n"
            "Issues, straight through libpq, the SQL a mode issues for each order, in the same\n"
            "transactions, with no service and no RPC: the database-bound ceiling of the mode.\n"
            "It runs on \"<dbname>_replay\" twins of the topology's databases (created, migrated\n"
            "and seeded every run), never on the services' own.\n"
            "\n"
            "  --mode M        saga, 2pc, monolith, orchestration or tcc (required)\n"
            "  --conf FILE     the topology (default: $MERCATO_CONF, else deploy/local.conf)\n"
            "  --clients N     closed-loop client threads (default 16)\n"
            "  --duration S    measured seconds (default 10)\n"
            "  --warmup S      seconds before measuring (default 2)\n"
            "  --keyed         each order carries an idempotency key, as compare --keyed\n"
            "  --json          one JSON object on stdout\n"
            "  --emit-pgbench PREFIX\n"
            "                  record what the mode issues for --emit-orders orders (default\n"
            "                  50) and write PREFIX.<dbname>.sql, one pgbench script per\n"
            "                  database; print one line per script:\n"
            "                  <dbname> <path> <statements> <transactions>\n"
            "  --emit-orders K the orders one run of the scripts stands for\n"
            "The workload options are those of every mercato-bench command.\n");
}

/* --emit-pgbench: a line per script, "<dbname> <path> <statements> <transactions>". */
static int
emit_main(const replay_opts *o, const char *prefix, uint64_t orders, rpc_conf *conf)
{
        replay_scripts sc;
        char err[512];
        rpc_status st = bench_replay_emit(o, prefix, orders, &sc, err, sizeof(err));

        rpc_conf_free(conf);
        if (st != RPC_OK) {
                fprintf(stderr, "mercato-bench replay: %s\n", err);
                return 1;
        }
        printf("# %s: %llu orders per run of each script; run each with\n"
               "#   pgbench %s -f SCRIPT DBNAME\n",
            o->mode, (unsigned long long) sc.orders, PGSCRIPT_PGBENCH_ARGS);
        for (size_t i = 0; i < sc.n; i++) {
                printf("%s %s %llu %llu\n", sc.s[i].dbname, sc.s[i].path,
                    (unsigned long long) sc.s[i].statements,
                    (unsigned long long) sc.s[i].transactions);
        }
        return 0;
}

/* --pglimit: pgbench on the mode's scripts. */
static int
pglimit_main(const replay_opts *o, bool json, rpc_conf *conf)
{
        char dir[] = "/tmp/mercato-pglimit.XXXXXX";
        pglimit_result pl;
        char err[512];
        rpc_status st;

        if (mkdtemp(dir) == NULL) {
                fprintf(stderr, "mercato-bench replay: mkdtemp: %s\n", strerror(errno));
                rpc_conf_free(conf);
                return 1;
        }
        st = bench_pglimit(o, dir, o->warmup_s, o->duration_s, &pl, err, sizeof(err));
        rpc_conf_free(conf);
        if (st != RPC_OK) {
                fprintf(stderr, "mercato-bench replay: %s\n", err);
                return 1;
        }
        if (json) {
                printf("{\"mode\": \"%s\", \"clients\": %d, \"pglimit_orders_per_s\": %.1f,"
                       " \"orders_per_run\": %llu, \"scripts\": \"%s\", \"databases\": [",
                    o->mode, o->clients, pl.orders_per_s, (unsigned long long) pl.orders, dir);
                for (size_t i = 0; i < pl.n; i++) {
                        printf("%s{\"db\": \"%s\", \"orders_per_s\": %.1f, \"statements\": %llu,"
                               " \"transactions\": %llu}",
                            i > 0 ? ", " : "", pl.db[i].dbname, pl.db[i].orders_per_s,
                            (unsigned long long) pl.db[i].statements,
                            (unsigned long long) pl.db[i].transactions);
                }
                printf("]}\n");
                return 0;
        }
        printf("pglimit %s, %d clients: %.1f orders/s (scripts in %s, %llu orders per run)\n",
            o->mode, o->clients, pl.orders_per_s, dir, (unsigned long long) pl.orders);
        for (size_t i = 0; i < pl.n; i++) {
                printf("  %-28s %9.1f orders/s alone, %.1f statements and %.1f transactions per "
                       "order\n",
                    pl.db[i].dbname, pl.db[i].orders_per_s,
                    (double) pl.db[i].statements / (double) pl.orders,
                    (double) pl.db[i].transactions / (double) pl.orders);
        }
        return 0;
}

int
bench_replay_main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "mode", required_argument, NULL, 'm' },
                { "conf", required_argument, NULL, 'f' },
                { "clients", required_argument, NULL, 'c' },
                { "duration", required_argument, NULL, 'd' },
                { "warmup", required_argument, NULL, 'W' },
                { "keyed", no_argument, NULL, 'k' },
                { "json", no_argument, NULL, 'j' },
                { "emit-pgbench", required_argument, NULL, 'e' },
                { "emit-orders", required_argument, NULL, 'E' },
                { "pglimit", no_argument, NULL, 'P' },
                { "help", no_argument, NULL, 'h' },
                { "products", required_argument, NULL, 'o' },
                { "users", required_argument, NULL, 'o' },
                { "hot-fraction", required_argument, NULL, 'o' },
                { "fail-fraction", required_argument, NULL, 'o' },
                { "seed", required_argument, NULL, 'o' },
                { "stock", required_argument, NULL, 'o' },
                { "balance", required_argument, NULL, 'o' },
                { NULL, 0, NULL, 0 },
        };
        replay_opts o = { .clients = 16, .duration_s = 10, .warmup_s = 2 };
        const char *conf_path = rpc_conf_default_path();
        bench_workload w;
        replay_result res;
        rpc_conf *conf = NULL;
        bool json = false;
        const char *emit = NULL;
        bool pglimit = false;
        uint64_t emit_orders = REPLAY_EMIT_ORDERS;
        char err[512];
        double v;
        int opt, idx = 0;

        bench_workload_defaults(&w);
        optind = 1;
        while ((opt = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
                switch (opt) {
                case 'm':
                        o.mode = optarg;
                        break;
                case 'f':
                        conf_path = optarg;
                        break;
                case 'c':
                        if (!bench_parse_double(optarg, 1, 1024, &v) || v != floor(v)) {
                                fprintf(
                                    stderr, "mercato-bench replay: --clients must be 1..1024\n");
                                return 2;
                        }
                        o.clients = (int) v;
                        break;
                case 'd':
                        if (!bench_parse_double(optarg, 0, HUGE_VAL, &o.duration_s)
                            || o.duration_s <= 0) {
                                fprintf(stderr, "mercato-bench replay: bad --duration\n");
                                return 2;
                        }
                        break;
                case 'W':
                        if (!bench_parse_double(optarg, 0, HUGE_VAL, &o.warmup_s)) {
                                fprintf(stderr, "mercato-bench replay: bad --warmup\n");
                                return 2;
                        }
                        break;
                case 'k':
                        o.keyed = true;
                        break;
                case 'e':
                        emit = optarg;
                        break;
                case 'P':
                        pglimit = true;
                        break;
                case 'E':
                        if (!bench_parse_double(optarg, 1, 100000, &v) || v != floor(v)) {
                                fprintf(stderr,
                                    "mercato-bench replay: --emit-orders must be 1..100000\n");
                                return 2;
                        }
                        emit_orders = (uint64_t) v;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'o':
                        if (bench_workload_option(&w, longopts[idx].name, optarg, err, sizeof(err))
                            != 1) {
                                fprintf(stderr, "mercato-bench replay: %s\n", err);
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc || o.mode == NULL) {
                usage(stderr);
                return 2;
        }
        if (!bench_workload_finish(&w, err, sizeof(err))) {
                fprintf(stderr, "mercato-bench replay: %s\n", err);
                return 2;
        }
        if (rpc_conf_load(conf_path, &conf, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "mercato-bench replay: %s: %s\n", conf_path, err);
                return 2;
        }
        o.conf = conf;
        o.w = &w;
        o.quiet = json;
        if (emit != NULL) {
                return emit_main(&o, emit, emit_orders, conf);
        }
        if (pglimit) {
                return pglimit_main(&o, json, conf);
        }
        rpc_status st = bench_replay_run(&o, &res, err, sizeof(err));
        rpc_conf_free(conf);
        if (st != RPC_OK) {
                fprintf(stderr, "mercato-bench replay: %s\n", err);
                return 1;
        }
        if (json) {
                printf("{\"mode\": \"%s\", \"clients\": %d, \"seconds\": %.3f, \"orders\": %llu,"
                       " \"completed\": %llu, \"cancelled\": %llu, \"errors\": %llu,"
                       " \"wrong\": %llu, \"orders_per_s\": %.1f, \"p50_ms\": %.3f,"
                       " \"p99_ms\": %.3f, \"conf\": \"%s\", \"baseline\": \"%s\"}\n",
                    o.mode, o.clients, res.seconds, (unsigned long long) res.orders,
                    (unsigned long long) res.completed, (unsigned long long) res.cancelled,
                    (unsigned long long) res.errors, (unsigned long long) res.wrong,
                    res.orders_per_s, res.p50_ms, res.p99_ms, res.conf_path, res.baseline_path);
        } else {
                printf("replay %s, %d clients, %.1f s: %.1f orders/s\n", o.mode, o.clients,
                    res.seconds, res.orders_per_s);
                printf("  orders %llu: completed %llu, cancelled %llu, errors %llu, not as built "
                       "%llu\n",
                    (unsigned long long) res.orders, (unsigned long long) res.completed,
                    (unsigned long long) res.cancelled, (unsigned long long) res.errors,
                    (unsigned long long) res.wrong);
                printf("  latency p50 %.2f ms, p99 %.2f ms\n", res.p50_ms, res.p99_ms);
                printf("  check: mercato --conf %s check --baseline %s\n", res.conf_path,
                    res.baseline_path);
        }
        return res.errors > 0 || res.wrong > 0 ? 1 : 0;
}
