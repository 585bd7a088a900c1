/* tpc.h: two-phase commit over PostgreSQL prepared transactions: participants and coordinator. */
#ifndef MERCATO_TPC_H
#define MERCATO_TPC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "rpc.h"
#include "txn.pb-c.h"

/*
 * The protocol (see the NOTES of tpc_coordinator.c)
 *
 * A global transaction is named by a GID "<coordinator>:<epoch>:<txid>" (under 200 bytes):
 * the coordinator's id, an epoch it draws durably at each start, and its own id of the
 * transaction (the order id). Each branch prepares under the branch GID "<GID>:<branch>"
 * (the XA branch qualifier), since the branches' databases may share one server.
 *
 * PostgreSQL's prepared-transaction ids are unique across the whole server, not per
 * database: a PREPARE TRANSACTION whose id another database on the server holds prepared
 * fails ("transaction identifier is already in use"), and a COMMIT or ROLLBACK PREPARED
 * issued from the wrong database fails too. Two coordinators with the same id whose
 * branches share a server (two clusters on one PostgreSQL, each with coordinator "order"
 * and order ids from 1) would therefore fail each other's prepares. So the epoch is not a
 * counter but a random draw in 1..2^53-1, made by PostgreSQL and never equal to the one
 * before: two coordinators collide only if they draw the same epoch (about 1 in 2^53 per
 * pair), and one coordinator never reuses a GID, since its txids grow within an epoch and
 * a re-seed that restarts them draws a new one. The coordinator logs the
 * transaction (undecided) before the first prepare, asks every branch to prepare in
 * parallel, makes its decision durable in its log, then commits (or rolls back) every
 * branch in parallel and marks the log row done. Recovery re-drives what is not done; a
 * branch prepared with no decision is rolled back after a grace period (presumed abort).
 *
 * Tables (migration 002_tpc.sql of component "txn", so every database holding the txn
 * tables has them):
 *   txn_tpc_marker  participants: (gid, aborted): a prepared branch's marker, committed with
 *                   the branch; or the record that the gid was rolled back (aborted true),
 *                   which refuses a late prepare
 *   txn_tpc_epoch   coordinator: its current epoch
 *   txn_tpc_log     coordinator: one row per global transaction: participants, decision,
 *                   created_at (the prepares begin), decided_at, done_at
 */

/* The statements, all named txn_tpc_*. Prepare them on every connection that calls the
 * functions below (list txn_tpc_stmts in the service's statement tables). */
extern const db_stmt_table txn_tpc_stmts;

/* A GID is shorter than this many bytes; a buffer of this size holds any with its NUL. */
#define TXN_TPC_GID_MAX 200

/* The longest coordinator id and branch name, in bytes. */
#define TXN_TPC_NAME_MAX 64

/* The coordinator's prepare timeout, [order] prepare_timeout_ms (default 5000): the
 * participants read it too, for their `timeout` step switch. */
#define TXN_TPC_PREPARE_TIMEOUT_MS 5000
int64_t txn_tpc_prepare_timeout_ms(const rpc_conf *conf);

/* True for a well-formed GID: 1..199 bytes of [A-Za-z0-9_.:-]. */
bool txn_tpc_gid_valid(const char *gid);

/* True for a well-formed coordinator id or branch name: 1..64 bytes of [A-Za-z0-9_.-]. */
bool txn_tpc_name_valid(const char *name);

/*
 * Participant side
 */

typedef enum txn_tpc_branch_state {
        TXN_TPC_UNKNOWN = 0,     /* no trace of the gid */
        TXN_TPC_PREPARED = 1,    /* in doubt */
        TXN_TPC_COMMITTED = 2,   /* the marker committed */
        TXN_TPC_ROLLED_BACK = 3, /* recorded aborted */
} txn_tpc_branch_state;

/* "unknown", "prepared", "committed", "rolled_back". */
const char *txn_tpc_branch_state_name(txn_tpc_branch_state state);

/* Where a gid stands in this database: prepared, committed (marker), rolled back (aborted
 * record) or unknown. */
rpc_status txn_tpc_branch_state_get(
    db_conn *db, const char *gid, txn_tpc_branch_state *ret_state) RPC_WARN_UNUSED;

/* Opens the branch's transaction: BEGIN, then the marker row of gid, first thing, so a
 * gid recorded aborted is refused before any work: FAILED_PRECONDITION (rolled back
 * already, nothing done), with *ret_state (may be NULL) saying why: ROLLED_BACK for a late
 * prepare, COMMITTED for a gid that committed here already; RESOURCE_EXHAUSTED when a
 * twin (another session preparing the same gid) is at work: nothing done, ask again
 * later. Other failures map the SQLSTATE (ABORTED: retry). The caller then runs the branch's SQL and ends with
 * txn_tpc_prepare, or rolls back. */
rpc_status txn_tpc_begin(
    db_conn *db, const char *gid, txn_tpc_branch_state *ret_state) RPC_WARN_UNUSED;

/* PREPARE TRANSACTION gid: the open transaction becomes a prepared one, and the connection
 * is free for other work at once. NOTIFY must never run in it (PostgreSQL refuses). */
rpc_status txn_tpc_prepare(db_conn *db, const char *gid) RPC_WARN_UNUSED;

/* COMMIT PREPARED gid, outside any transaction. OK when the branch is committed, by this
 * call or before it (42704 with the marker present); FAILED_PRECONDITION when it was
 * rolled back or never prepared here (*ret_state, may be NULL, tells which); UNAVAILABLE,
 * ABORTED, ...: try again later. */
rpc_status txn_tpc_commit(
    db_conn *db, const char *gid, txn_tpc_branch_state *ret_state) RPC_WARN_UNUSED;

/* ROLLBACK PREPARED gid, and records the gid aborted so a late prepare is refused. OK
 * when the branch is rolled back or was never prepared (both now refuse a prepare);
 * FAILED_PRECONDITION when it committed. A prepare of the gid still in flight is waited
 * for (briefly) and then rolled back. */
rpc_status txn_tpc_rollback(
    db_conn *db, const char *gid, txn_tpc_branch_state *ret_state) RPC_WARN_UNUSED;

/* A prepared transaction as pg_prepared_xacts shows it. */
typedef struct txn_tpc_prepared {
        char gid[TXN_TPC_GID_MAX];
        int64_t age_ms;
        int64_t prepared_at_ms;
        char database[TXN_TPC_NAME_MAX + 1];
} txn_tpc_prepared;

/* The prepared transactions whose gid starts with prefix ("" for all), oldest first, of
 * this database (or of every database of the server when all_databases), in a malloc'd
 * array (free it; NULL when none). */
rpc_status txn_tpc_list_prepared(db_conn *db, const char *prefix, bool all_databases,
    txn_tpc_prepared **ret_list, size_t *ret_n) RPC_WARN_UNUSED;

/* For a participant's `timeout` step switch: sleeps past the coordinator's prepare timeout
 * (prepare_timeout_ms + 1 s, at most 30 s), so that the coordinator gives up first. */
void txn_tpc_sleep_past_timeout(const rpc_conf *conf);

/*
 * The Participant service (proto/txn.proto). A service implements its branch with the
 * callbacks below, and its handlers call the txn_tpc_handle_* functions, which validate,
 * open the transaction with the marker, retry on ABORTED, and prepare.
 */
typedef Mercato__Txn__V1__PrepareRequest txn_tpc_request;
typedef Mercato__Txn__V1__Vote txn_tpc_vote;

/* A branch's SQL inside its open transaction (the marker is in): returns OK having set
 * vote->yes, or vote->reason (a "no": the caller rolls back); or an error status with err
 * set (ABORTED is retried). Each service's store library has its branch as one of these,
 * so that the service and the replay (mercato-bench replay) run the same function. */
typedef rpc_status (*txn_tpc_branch_fn)(
    db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote, char *err, size_t errlen);

/* A branch's prepare, as the Participant's Prepare runs it, on db (name, "product", is for
 * messages): a branch prepared already
 * votes yes again; else before (may be NULL: the service's step switches) may vote no
 * first; then up to 4 runs of txn_tpc_begin (the marker), branch and PREPARE TRANSACTION,
 * again while they abort. Returns OK with the vote (a "no" is rolled back), or an error
 * status with err set: FAILED_PRECONDITION when the gid was rolled back before. */
rpc_status txn_tpc_prepare_branch(db_conn *db, const char *name, const txn_tpc_request *req,
    const char *(*before)(void *arg, const txn_tpc_request *req), void *before_arg,
    txn_tpc_branch_fn branch, txn_tpc_vote *vote, char *err, size_t errlen) RPC_WARN_UNUSED;

typedef struct txn_tpc_participant {
        const char *name; /* "product": for messages */
        /* The call's database connection (svc_db); NULL after setting the message. */
        db_conn *(*db)(rpc_call *call);
        /* Before any transaction: the step switches. Returns NULL to run the branch, or
         * the reason of a "no" vote. May sleep first (a `timeout` switch). May be NULL. */
        const char *(*before)(rpc_call *call, const txn_tpc_request *req);
        /* Validates the branch's fields: OK, or an error status with the message set. */
        rpc_status (*validate)(rpc_call *call, const txn_tpc_request *req);
        /* Runs the branch's SQL inside the open transaction (see txn_tpc_branch_fn). */
        txn_tpc_branch_fn branch;
        /* Quote: a read-only check, like branch but without writing. NULL: votes yes. */
        txn_tpc_branch_fn quote;
} txn_tpc_participant;

#define TXN_TPC_N_METHODS 5

rpc_status txn_tpc_handle_quote(rpc_call *call, const txn_tpc_participant *p,
    const txn_tpc_request *req, txn_tpc_vote *vote) RPC_WARN_UNUSED;
rpc_status txn_tpc_handle_prepare(rpc_call *call, const txn_tpc_participant *p,
    const txn_tpc_request *req, txn_tpc_vote *vote) RPC_WARN_UNUSED;
rpc_status txn_tpc_handle_commit(rpc_call *call, const txn_tpc_participant *p,
    const Mercato__Txn__V1__GidRequest *req, Mercato__Txn__V1__Outcome *out) RPC_WARN_UNUSED;
rpc_status txn_tpc_handle_rollback(rpc_call *call, const txn_tpc_participant *p,
    const Mercato__Txn__V1__GidRequest *req, Mercato__Txn__V1__Outcome *out) RPC_WARN_UNUSED;
rpc_status txn_tpc_handle_list_prepared(rpc_call *call, const txn_tpc_participant *p,
    const Mercato__Txn__V1__ListPreparedRequest *req,
    Mercato__Txn__V1__ListPreparedResponse *resp) RPC_WARN_UNUSED;

/* Declares the five Participant handlers over a txn_tpc_participant and their method
 * table `table` (TXN_TPC_N_METHODS entries), for a service's tpc.c. */
#define TXN_TPC_METHODS(table, participant)                                                        \
        RPC_HANDLER(table##_quote, Mercato__Txn__V1__PrepareRequest, Mercato__Txn__V1__Vote)       \
        {                                                                                          \
                return txn_tpc_handle_quote(call, &(participant), req, resp);                      \
        }                                                                                          \
        RPC_HANDLER(table##_prepare, Mercato__Txn__V1__PrepareRequest, Mercato__Txn__V1__Vote)     \
        {                                                                                          \
                return txn_tpc_handle_prepare(call, &(participant), req, resp);                    \
        }                                                                                          \
        RPC_HANDLER(table##_commit, Mercato__Txn__V1__GidRequest, Mercato__Txn__V1__Outcome)       \
        {                                                                                          \
                return txn_tpc_handle_commit(call, &(participant), req, resp);                     \
        }                                                                                          \
        RPC_HANDLER(table##_rollback, Mercato__Txn__V1__GidRequest, Mercato__Txn__V1__Outcome)     \
        {                                                                                          \
                return txn_tpc_handle_rollback(call, &(participant), req, resp);                   \
        }                                                                                          \
        RPC_HANDLER(table##_list, Mercato__Txn__V1__ListPreparedRequest,                           \
            Mercato__Txn__V1__ListPreparedResponse)                                                \
        {                                                                                          \
                return txn_tpc_handle_list_prepared(call, &(participant), req, resp);              \
        }                                                                                          \
        const rpc_method table[TXN_TPC_N_METHODS] = {                                              \
                RPC_METHOD_ENTRY("Quote", table##_quote,                                           \
                    mercato__txn__v1__prepare_request__descriptor,                                 \
                    mercato__txn__v1__vote__descriptor, RPC_METHOD_IDEMPOTENT),                    \
                RPC_METHOD_ENTRY("Prepare", table##_prepare,                                       \
                    mercato__txn__v1__prepare_request__descriptor,                                 \
                    mercato__txn__v1__vote__descriptor, RPC_METHOD_IDEMPOTENT),                    \
                RPC_METHOD_ENTRY("Commit", table##_commit,                                         \
                    mercato__txn__v1__gid_request__descriptor,                                     \
                    mercato__txn__v1__outcome__descriptor,                                         \
                    RPC_METHOD_IDEMPOTENT | RPC_METHOD_RELEASE),                                   \
                RPC_METHOD_ENTRY("Rollback", table##_rollback,                                     \
                    mercato__txn__v1__gid_request__descriptor,                                     \
                    mercato__txn__v1__outcome__descriptor,                                         \
                    RPC_METHOD_IDEMPOTENT | RPC_METHOD_RELEASE),                                   \
                RPC_METHOD_ENTRY("ListPrepared", table##_list,                                     \
                    mercato__txn__v1__list_prepared_request__descriptor,                           \
                    mercato__txn__v1__list_prepared_response__descriptor, RPC_METHOD_IDEMPOTENT),  \
        }

/*
 * Coordinator side
 */

/* Draws the coordinator's next epoch durably (its own statement, committed) and returns
 * it: a random 1..2^53-1, never the previous one (see the protocol above). */
rpc_status txn_tpc_next_epoch(
    db_conn *db, const char *coordinator, int64_t *ret_epoch) RPC_WARN_UNUSED;

/* Writes "<coordinator>:<epoch>:<txid>" into buf (TXN_TPC_GID_MAX bytes). INVALID_ARGUMENT
 * for a bad coordinator id, epoch or txid <= 0. */
rpc_status txn_tpc_gid(char buf[TXN_TPC_GID_MAX], const char *coordinator, int64_t epoch,
    int64_t txid) RPC_WARN_UNUSED;

/* Splits a GID, or a branch GID; false if it is neither. coordinator may be NULL. */
bool txn_tpc_gid_parse(
    const char *gid, char coordinator[TXN_TPC_NAME_MAX + 1], int64_t *ret_epoch, int64_t *ret_txid);

/* The branch GID "<gid>:<branch>" into buf. INVALID_ARGUMENT for a bad gid or branch. */
rpc_status txn_tpc_branch_gid(
    char buf[TXN_TPC_GID_MAX], const char *gid, const char *branch) RPC_WARN_UNUSED;

/* The GID of a branch GID (or of a GID: itself) into buf; false if it is neither. */
bool txn_tpc_global_gid(const char *gid, char buf[TXN_TPC_GID_MAX]);

typedef enum txn_tpc_decision {
        TXN_TPC_UNDECIDED = 0,
        TXN_TPC_COMMIT = 1,
        TXN_TPC_ABORT = 2,
} txn_tpc_decision;

/* "", "commit", "abort". */
const char *txn_tpc_decision_name(txn_tpc_decision d);

/* A row of the coordinator's log. Times are Unix ms, 0 when not yet. */
typedef struct txn_tpc_log_rec {
        char gid[TXN_TPC_GID_MAX];
        char coordinator[TXN_TPC_NAME_MAX + 1];
        int64_t txid;
        char participants[256]; /* branch names, space-separated */
        txn_tpc_decision decision;
        char reason[64];
        int64_t created_at_ms; /* the prepares begin */
        int64_t decided_at_ms;
        int64_t done_at_ms;
        /* A branch that answered with an error instead of a vote: "" when none. */
        char failed_branch[TXN_TPC_NAME_MAX + 1];
        char failed_status[24];
        char failed_message[256];
} txn_tpc_log_rec;

/* Records, on an undecided row, the branch that answered with an error and how (the abort
 * decision follows). OK also when the row is decided already: that decision stands. */
rpc_status txn_tpc_log_failed(db_conn *db, const char *gid, const char *branch, const char *status,
    const char *message) RPC_WARN_UNUSED;

/* Inside the caller's open transaction: logs a new global transaction, undecided.
 * participants: the branch names, space-separated. ALREADY_EXISTS if the gid is logged. */
rpc_status txn_tpc_log_begin(db_conn *db, const char *gid, const char *coordinator, int64_t txid,
    const char *participants) RPC_WARN_UNUSED;

/* Decides gid, if it is still undecided (and, when min_age_ms > 0, only if it was logged
 * at least that long ago): one statement, committed on its own unless the caller has a
 * transaction open. *ret_decision is the decision that stands afterwards: this one, or
 * the one someone else wrote first (UNDECIDED when min_age_ms kept it from deciding).
 * NOT_FOUND if gid is not logged. */
rpc_status txn_tpc_log_decide(db_conn *db, const char *gid, txn_tpc_decision decision,
    const char *reason, int64_t min_age_ms, txn_tpc_decision *ret_decision) RPC_WARN_UNUSED;

/* Marks gid done (every branch confirmed). Idempotent. */
rpc_status txn_tpc_log_done(db_conn *db, const char *gid) RPC_WARN_UNUSED;

/* One row of the log. NOT_FOUND if none. */
rpc_status txn_tpc_log_get(db_conn *db, const char *gid, txn_tpc_log_rec *ret_rec) RPC_WARN_UNUSED;

/* The rows not done, oldest first, at most limit: of one coordinator (NULL: all), decided
 * or logged at least undecided_age_ms ago (< 0: every undecided row too). malloc'd array. */
rpc_status txn_tpc_log_open(db_conn *db, const char *coordinator, int64_t undecided_age_ms,
    int limit, txn_tpc_log_rec **ret_recs, size_t *ret_n) RPC_WARN_UNUSED;

/*
 * Recovery
 *
 * A loop (a thread) of the coordinator that also runs once at start-up. Each pass:
 *  1. every log row not done that is decided, or undecided for longer than the grace
 *     period (then recovery decides abort, reason "timeout": presumed abort, and only if
 *     nobody decided first), is driven: each branch is committed or rolled back, and when
 *     every one confirmed, ops.finished records the outcome and the row is marked done;
 *  2. every branch's prepared transactions with this coordinator's prefix, prepared for
 *     longer than the grace period, are resolved by the log: decided, they are finished
 *     so; undecided, step 1 handles them when the grace ends; not logged at all, they are
 *     rolled back (presumed abort). Never sooner than the grace period.
 * GIDs that ops.in_flight claims (a live coordinator drives them) are left alone.
 */
typedef struct txn_tpc_ops {
        void *arg;
        /* Commits (commit true) or rolls back one branch: gid is the branch GID. db is the
         * coordinator's connection (for its own branch; NULL for the others in drive). OK
         * when the branch ended so (now or before), FAILED_PRECONDITION when it ended the
         * other way (a heuristic outcome: reported, and the branch counts as finished),
         * anything else: not now, try again later. */
        rpc_status (*finish)(
            void *arg, db_conn *db, const char *branch, const char *gid, bool commit);
        /* A branch's prepared transactions (branch GIDs) starting with prefix (malloc'd). */
        rpc_status (*list_prepared)(void *arg, db_conn *db, const char *branch, const char *prefix,
            txn_tpc_prepared **ret_list, size_t *ret_n);
        /* Inside db's open transaction, once every branch of txid confirmed: records the
         * business outcome (the order cancelled with reason, or completed), idempotently. */
        rpc_status (*finished)(void *arg, db_conn *db, const txn_tpc_log_rec *rec);
        /* True while a live coordinator drives gid (a GID). May be NULL. */
        bool (*in_flight)(void *arg, const char *gid);
        /* Opens the coordinator's own connection (with txn_tpc_stmts and whatever finished
         * needs). */
        rpc_status (*connect)(void *arg, db_conn **ret_db, char *errbuf, size_t errlen);
} txn_tpc_ops;

typedef struct txn_tpc_recovery_opts {
        const char *coordinator; /* its id (copied) */
        const char *branches;    /* every branch name, space-separated, for the scan */
        int64_t grace_ms;        /* presumed abort after this; 0 means 30000 */
        int64_t interval_ms;     /* between passes; 0 means 1000 */
        txn_tpc_ops ops;
        _Atomic bool *cancel; /* may be NULL; a pass ends early once it reads true (the
                                    recovery thread points it at its stop flag) */
} txn_tpc_recovery_opts;

/* What a pass did, for logs and tests. */
typedef struct txn_tpc_pass_stats {
        int committed; /* transactions driven to done with commit */
        int aborted;   /* ... with abort */
        int pending;   /* left for a later pass (a branch did not confirm) */
        int orphans;   /* prepared branches with no log row, rolled back */
} txn_tpc_pass_stats;

/* One pass on db (scan: step 2 too). */
rpc_status txn_tpc_recover_once(db_conn *db, const txn_tpc_recovery_opts *o, bool scan,
    txn_tpc_pass_stats *ret_stats) RPC_WARN_UNUSED;

/* Drives one logged transaction to the end as the log decides (the live coordinator uses
 * it too): finishes every branch (in parallel) and, when all confirmed, records the
 * outcome with ops.finished and marks the row done, in one transaction. OK when done;
 * UNAVAILABLE (or another status) when a branch is left for later. */
rpc_status txn_tpc_drive(
    db_conn *db, const txn_tpc_recovery_opts *o, const txn_tpc_log_rec *rec) RPC_WARN_UNUSED;

typedef struct txn_tpc_recovery txn_tpc_recovery;

/* Starts the recovery thread; its first pass runs at once. INVALID_ARGUMENT for bad
 * options. */
rpc_status txn_tpc_recovery_start(
    const txn_tpc_recovery_opts *o, txn_tpc_recovery **ret) RPC_WARN_UNUSED;

/* Runs a pass now rather than at the next interval. Accepts NULL. */
void txn_tpc_recovery_wake(txn_tpc_recovery *r);

/* Waits until the first pass ended (true), or timeout_ms passed (false). */
bool txn_tpc_recovery_wait_first(txn_tpc_recovery *r, int64_t timeout_ms);

/* Stops and frees (a pass in flight finishes first). Accepts NULL. */
void txn_tpc_recovery_stop(txn_tpc_recovery *r);

#endif
