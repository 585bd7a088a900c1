/* tpc_participant.c: the participant side of two-phase commit: markers, prepare, commit, rollback.
 *
 * NOTES
 *
 * A branch runs in one transaction that starts by inserting its marker row (gid, aborted
 * false) and ends with PREPARE TRANSACTION gid; PostgreSQL then keeps the transaction, its
 * locks and its marker, across crashes, until COMMIT PREPARED or ROLLBACK PREPARED. The
 * marker becomes visible exactly when the branch commits, which is how a COMMIT or
 * ROLLBACK PREPARED that fails with 42704 (no such prepared transaction: someone finished
 * it already) learns the outcome.
 *
 * A rollback records the gid aborted: a row (gid, aborted true) with the marker's primary
 * key, committed on its own. A prepare that comes later (a Prepare the network delayed
 * past the coordinator's timeout) fails on the key before doing anything, and is refused.
 * A prepare still running when the rollback comes holds its uncommitted marker, so the
 * rollback's insert waits for it (for at most TPC_ROLLBACK_LOCK_TIMEOUT): when that prepare
 * rolls back, the insert goes in; when it prepares, the wait times out and the rollback
 * starts over, now finding the prepared transaction to roll back. Either way, no prepared
 * branch survives a rollback of its gid.
 *
 * Twins: a Prepare may arrive twice (a duplicated request, a resend after a timeout) and
 * run in two sessions at once. The marker insert also takes a transaction-level advisory
 * lock on the gid, without waiting; the twin that finds it taken inserts nothing, and
 * txn_tpc_begin answers BUSY: the caller waits a moment and asks where the gid stands.
 * The lock lives as long as the branch, prepared or not, so the twin learns PREPARED or
 * COMMITTED (and votes yes), or UNKNOWN after a rollback (and starts over), instead of
 * waiting on the marker's key for lock_timeout while holding a worker.
 *
 * The connection a branch ran on is free as soon as PREPARE TRANSACTION returns: the
 * prepared transaction belongs to no session, and any connection to the same database
 * can finish it.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tpc.h"

/* How long a rollback waits for a prepare of the same gid still in flight. */
#define TPC_ROLLBACK_LOCK_TIMEOUT "SET LOCAL lock_timeout = '1s'"

/* The runs of a branch, and of a commit or rollback, when they abort (deadlock, busy). */
#define TPC_ATTEMPTS 4

/* How long a prepare waits, at most, for a twin holding its gid: 200 x 10 ms. */
#define TPC_TWIN_WAITS 200
#define TPC_TWIN_WAIT_US 10000

static const db_stmt tpc_stmt_list[] = {
        /* The transaction-level advisory lock on the gid marks a prepare in progress: a twin
         * (a duplicated or resent Prepare of the same gid) finds it taken and inserts
         * nothing, instead of waiting on the marker's key until the first one commits. */
        { "txn_tpc_marker_add",
            "INSERT INTO txn_tpc_marker (gid) SELECT $1::text"
            " WHERE pg_try_advisory_xact_lock(hashtext($1::text), hashtext(reverse($1::text)))",
            1 },
        { "txn_tpc_marker_abort",
            "INSERT INTO txn_tpc_marker (gid, aborted) VALUES ($1, true) ON CONFLICT DO NOTHING",
            1 },
        /* prepared here?, then the marker's aborted flag (NULL: no marker). */
        { "txn_tpc_branch_state",
            "SELECT EXISTS (SELECT 1 FROM pg_prepared_xacts"
            "               WHERE gid = $1 AND database = current_database()),"
            " (SELECT aborted FROM txn_tpc_marker WHERE gid = $1)",
            1 },
        { "txn_tpc_list_prepared",
            "SELECT gid, (extract(epoch FROM clock_timestamp() - prepared) * 1000)::bigint,"
            " (extract(epoch FROM prepared) * 1000)::bigint, database FROM pg_prepared_xacts"
            " WHERE ($2::boolean OR database = current_database())"
            " AND left(gid, length($1)) = $1 ORDER BY prepared, gid",
            2 },
        /* A random epoch in 1..2^53-1, never the one before: see txn/tpc.h. */
        { "txn_tpc_epoch_next",
            "INSERT INTO txn_tpc_epoch AS e (coordinator, epoch)"
            " VALUES ($1, 1 + floor(random() * 9007199254740990)::bigint)"
            " ON CONFLICT (coordinator) DO UPDATE SET started_at = now(),"
            " epoch = CASE WHEN EXCLUDED.epoch = e.epoch"
            "              THEN e.epoch % 9007199254740990 + 1 ELSE EXCLUDED.epoch END"
            " RETURNING epoch",
            1 },
        { "txn_tpc_log_begin",
            "INSERT INTO txn_tpc_log (gid, coordinator, txid, participants)"
            " VALUES ($1, $2, $3, $4)",
            4 },
        /* $1 gid, $2 decision, $3 reason, $4 min age ms (0: any). */
        { "txn_tpc_log_decide",
            "UPDATE txn_tpc_log SET decision = $2, reason = $3, decided_at = clock_timestamp()"
            " WHERE gid = $1 AND decision IS NULL"
            " AND created_at <= clock_timestamp() - $4::bigint * interval '1 millisecond'",
            4 },
        /* $1 gid, $2 branch, $3 status, $4 message: before an abort decision. */
        { "txn_tpc_log_failed",
            "UPDATE txn_tpc_log SET failed_branch = $2, failed_status = $3, failed_message = $4"
            " WHERE gid = $1 AND decision IS NULL",
            4 },
        { "txn_tpc_log_done",
            "UPDATE txn_tpc_log SET done_at = clock_timestamp() WHERE gid = $1 AND done_at IS NULL",
            1 },
#define TPC_LOG_COLUMNS                                                                            \
        "gid, coordinator, txid, participants, coalesce(decision, ''), reason,"                    \
        " (extract(epoch FROM created_at) * 1000)::bigint,"                                        \
        " coalesce((extract(epoch FROM decided_at) * 1000)::bigint, 0),"                           \
        " coalesce((extract(epoch FROM done_at) * 1000)::bigint, 0),"                              \
        " failed_branch, failed_status, failed_message"
        { "txn_tpc_log_get", "SELECT " TPC_LOG_COLUMNS " FROM txn_tpc_log WHERE gid = $1", 1 },
        /* $1 coordinator (NULL: all), $2 undecided age ms (< 0: all), $3 limit. */
        { "txn_tpc_log_open",
            "SELECT " TPC_LOG_COLUMNS " FROM txn_tpc_log"
            " WHERE done_at IS NULL AND ($1::text IS NULL OR coordinator = $1)"
            " AND (decision IS NOT NULL OR $2::bigint < 0"
            "      OR created_at <= clock_timestamp() - $2::bigint * interval '1 millisecond')"
            " ORDER BY created_at, gid LIMIT $3",
            3 },
};

const db_stmt_table txn_tpc_stmts = {
        .stmts = tpc_stmt_list,
        .n = sizeof(tpc_stmt_list) / sizeof(tpc_stmt_list[0]),
};

int64_t
txn_tpc_prepare_timeout_ms(const rpc_conf *conf)
{
        int64_t ms = conf != NULL
            ? rpc_conf_get_int(conf, "order", "prepare_timeout_ms", TXN_TPC_PREPARE_TIMEOUT_MS)
            : TXN_TPC_PREPARE_TIMEOUT_MS;

        return ms > 0 ? ms : TXN_TPC_PREPARE_TIMEOUT_MS;
}

void
txn_tpc_sleep_past_timeout(const rpc_conf *conf)
{
        int64_t ms = txn_tpc_prepare_timeout_ms(conf) + 1000;

        if (ms > 30000) {
                ms = 30000;
        }
        usleep((useconds_t) ms * 1000);
}

static bool
valid_chars(const char *s, size_t max, bool colon)
{
        size_t n = 0;

        if (s == NULL || s[0] == '\0') {
                return false;
        }
        for (; s[n] != '\0'; n++) {
                char c = s[n];
                if (n >= max) {
                        return false;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                        || c == '_' || c == '.' || c == '-' || (colon && c == ':'))) {
                        return false;
                }
        }
        return true;
}

bool
txn_tpc_gid_valid(const char *gid)
{
        return valid_chars(gid, TXN_TPC_GID_MAX - 1, true);
}

bool
txn_tpc_name_valid(const char *name)
{
        return valid_chars(name, TXN_TPC_NAME_MAX, false);
}

const char *
txn_tpc_branch_state_name(txn_tpc_branch_state state)
{
        switch (state) {
        case TXN_TPC_PREPARED:
                return "prepared";
        case TXN_TPC_COMMITTED:
                return "committed";
        case TXN_TPC_ROLLED_BACK:
                return "rolled_back";
        case TXN_TPC_UNKNOWN:
        default:
                return "unknown";
        }
}

rpc_status
txn_tpc_branch_state_get(db_conn *db, const char *gid, txn_tpc_branch_state *ret_state)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_str(&p, gid);
        st = db_exec(db, "txn_tpc_branch_state", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_get_bool(res, 0, 0)) {
                *ret_state = TXN_TPC_PREPARED;
        } else if (db_is_null(res, 0, 1)) {
                *ret_state = TXN_TPC_UNKNOWN;
        } else {
                *ret_state = db_get_bool(res, 0, 1) ? TXN_TPC_ROLLED_BACK : TXN_TPC_COMMITTED;
        }
        return RPC_OK;
}

static void
set_state(txn_tpc_branch_state *ret, txn_tpc_branch_state state)
{
        if (ret != NULL) {
                *ret = state;
        }
}

rpc_status
txn_tpc_begin(db_conn *db, const char *gid, txn_tpc_branch_state *ret_state)
{
        txn_tpc_branch_state state = TXN_TPC_UNKNOWN;
        db_params p;
        rpc_status st;

        if (!txn_tpc_gid_valid(gid)) {
                return RPC_INVALID_ARGUMENT;
        }
        st = db_begin(db);
        if (st != RPC_OK) {
                return st;
        }
        db_params_init(&p);
        db_params_str(&p, gid);
        int64_t rows = 0;
        st = db_exec_count(db, "txn_tpc_marker_add", &p, &rows);
        if (st == RPC_OK && rows == 1) {
                return RPC_OK;
        }
        db_rollback(db);
        if (st == RPC_OK) {
                return RPC_RESOURCE_EXHAUSTED; /* a twin holds the gid: see NOTES */
        }
        if (st != RPC_ALREADY_EXISTS) {
                return st;
        }
        /* The key is taken by a committed marker or an aborted record. */
        st = txn_tpc_branch_state_get(db, gid, &state);
        if (st != RPC_OK) {
                return st;
        }
        set_state(ret_state, state);
        return RPC_FAILED_PRECONDITION;
}

rpc_status
txn_tpc_prepare(db_conn *db, const char *gid)
{
        if (!txn_tpc_gid_valid(gid)) {
                return RPC_INVALID_ARGUMENT;
        }
        return db_prepare_transaction(db, gid);
}

rpc_status
txn_tpc_commit(db_conn *db, const char *gid, txn_tpc_branch_state *ret_state)
{
        rpc_status st = RPC_INTERNAL;

        if (!txn_tpc_gid_valid(gid)) {
                return RPC_INVALID_ARGUMENT;
        }
        for (int attempt = 0; attempt < TPC_ATTEMPTS; attempt++) {
                txn_tpc_branch_state state = TXN_TPC_UNKNOWN;

                if (attempt > 0) {
                        usleep(20 * 1000 * (useconds_t) attempt);
                }
                st = db_commit_prepared(db, gid);
                if (st == RPC_OK) {
                        set_state(ret_state, TXN_TPC_COMMITTED);
                        return RPC_OK;
                }
                if (st == RPC_ABORTED) {
                        continue; /* another session is finishing it right now */
                }
                if (st != RPC_NOT_FOUND) {
                        return st;
                }
                /* 42704: finished before, or never prepared: the marker tells. */
                st = txn_tpc_branch_state_get(db, gid, &state);
                if (st != RPC_OK) {
                        return st;
                }
                if (state == TXN_TPC_PREPARED) {
                        continue; /* prepared meanwhile: commit it now */
                }
                set_state(ret_state, state);
                return state == TXN_TPC_COMMITTED ? RPC_OK : RPC_FAILED_PRECONDITION;
        }
        return st;
}

/* Records gid aborted, in a transaction of its own that waits only briefly for a prepare
 * of the gid in flight. *ret_state: ROLLED_BACK, or COMMITTED when the branch committed. */
static rpc_status
record_aborted(db_conn *db, const char *gid, txn_tpc_branch_state *ret_state)
{
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        st = db_begin(db);
        if (st != RPC_OK) {
                return st;
        }
        st = db_command(db, TPC_ROLLBACK_LOCK_TIMEOUT);
        if (st == RPC_OK) {
                db_params_init(&p);
                db_params_str(&p, gid);
                st = db_exec_count(db, "txn_tpc_marker_abort", &p, &rows);
        }
        if (st == RPC_OK) {
                st = db_commit(db);
        }
        if (st != RPC_OK) {
                db_rollback(db);
                return st;
        }
        if (rows == 1) {
                *ret_state = TXN_TPC_ROLLED_BACK;
                return RPC_OK;
        }
        return txn_tpc_branch_state_get(db, gid, ret_state);
}

rpc_status
txn_tpc_rollback(db_conn *db, const char *gid, txn_tpc_branch_state *ret_state)
{
        rpc_status st = RPC_INTERNAL;

        if (!txn_tpc_gid_valid(gid)) {
                return RPC_INVALID_ARGUMENT;
        }
        for (int attempt = 0; attempt < TPC_ATTEMPTS; attempt++) {
                txn_tpc_branch_state state = TXN_TPC_UNKNOWN;

                if (attempt > 0) {
                        usleep(20 * 1000 * (useconds_t) attempt);
                }
                st = db_rollback_prepared(db, gid);
                if (st == RPC_ABORTED) {
                        continue;
                }
                if (st != RPC_OK && st != RPC_NOT_FOUND) {
                        return st;
                }
                /* Rolled back now, or not prepared (never, not yet, or finished before). */
                st = record_aborted(db, gid, &state);
                if (st == RPC_ABORTED) {
                        continue; /* a prepare of the gid in flight: try again */
                }
                if (st != RPC_OK) {
                        return st;
                }
                if (state == TXN_TPC_PREPARED) {
                        continue;
                }
                set_state(ret_state, state);
                return state == TXN_TPC_COMMITTED ? RPC_FAILED_PRECONDITION : RPC_OK;
        }
        return st;
}

rpc_status
txn_tpc_list_prepared(
    db_conn *db, const char *prefix, bool all_databases, txn_tpc_prepared **ret_list, size_t *ret_n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        txn_tpc_prepared *list = NULL;
        db_params p;
        rpc_status st;
        int rows;

        db_params_init(&p);
        db_params_str(&p, prefix != NULL ? prefix : "");
        db_params_bool(&p, all_databases);
        st = db_exec(db, "txn_tpc_list_prepared", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        rows = db_rows(res);
        if (rows > 0) {
                list = rpc_xcalloc((size_t) rows, sizeof(*list));
        }
        for (int r = 0; r < rows; r++) {
                snprintf(list[r].gid, sizeof(list[r].gid), "%s", db_get_str(res, r, 0));
                list[r].age_ms = db_get_i64(res, r, 1);
                list[r].prepared_at_ms = db_get_i64(res, r, 2);
                snprintf(list[r].database, sizeof(list[r].database), "%s", db_get_str(res, r, 3));
        }
        *ret_list = list;
        *ret_n = (size_t) rows;
        return RPC_OK;
}

/*
 * The Participant service's handlers
 */

static rpc_status
check_gid(rpc_call *call, const char *gid)
{
        if (!txn_tpc_gid_valid(gid)) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                    "gid must be 1..%d bytes of [A-Za-z0-9_.:-]", TXN_TPC_GID_MAX - 1);
        }
        return RPC_OK;
}

static rpc_status
vote_no(txn_tpc_vote *vote, const char *reason)
{
        vote->yes = false;
        vote->reason = (char *) reason;
        return RPC_OK;
}

rpc_status
txn_tpc_handle_quote(
    rpc_call *call, const txn_tpc_participant *p, const txn_tpc_request *req, txn_tpc_vote *vote)
{
        char err[256] = "";
        rpc_status st;

        if (p->validate != NULL && (st = p->validate(call, req)) != RPC_OK) {
                return st;
        }
        if (p->quote == NULL) {
                vote->yes = true;
                return RPC_OK;
        }
        db_conn *db = p->db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = p->quote(db, req, vote, err, sizeof(err));
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "%s", err);
        }
        return RPC_OK;
}

rpc_status
txn_tpc_prepare_branch(db_conn *db, const char *name, const txn_tpc_request *req,
    const char *(*before)(void *arg, const txn_tpc_request *req), void *before_arg,
    txn_tpc_branch_fn branch, txn_tpc_vote *vote, char *err, size_t errlen)
{
        txn_tpc_branch_state state = TXN_TPC_UNKNOWN;
        const char *reason;
        rpc_status st;

        /* A resent Prepare of a branch prepared already votes yes again. */
        st = txn_tpc_branch_state_get(db, req->gid, &state);
        if (st != RPC_OK) {
                snprintf(err, errlen, "database: %s", db_errmsg(db));
                return st;
        }
        if (state == TXN_TPC_PREPARED) {
                vote->yes = true;
                return RPC_OK;
        }
        if (before != NULL && (reason = before(before_arg, req)) != NULL) {
                return vote_no(vote, reason);
        }
        for (int attempt = 0; attempt < TPC_ATTEMPTS; attempt++) {
                vote->yes = false;
                vote->reason = (char *) "";
                st = txn_tpc_begin(db, req->gid, &state);
                for (int wait = 0; st == RPC_RESOURCE_EXHAUSTED && wait < TPC_TWIN_WAITS; wait++) {
                        /* A twin is preparing this gid: wait for it to get somewhere. */
                        usleep(TPC_TWIN_WAIT_US);
                        st = txn_tpc_branch_state_get(db, req->gid, &state);
                        if (st == RPC_OK && state == TXN_TPC_PREPARED) {
                                vote->yes = true;
                                return RPC_OK;
                        }
                        if (st == RPC_OK) {
                                st = txn_tpc_begin(db, req->gid, &state);
                        }
                }
                if (st == RPC_RESOURCE_EXHAUSTED) {
                        snprintf(err, errlen, "%s: a twin of this prepare of %s is still running",
                            name, req->gid);
                        return RPC_ABORTED;
                }
                if (st == RPC_FAILED_PRECONDITION) {
                        if (state == TXN_TPC_COMMITTED) {
                                vote->yes = true; /* a resend after the commit */
                                return RPC_OK;
                        }
                        snprintf(err, errlen, "%s: gid %s was rolled back: prepare refused", name,
                            req->gid);
                        return st;
                }
                if (st != RPC_OK) {
                        if (db_retryable(st)) {
                                continue;
                        }
                        snprintf(err, errlen, "database: %s", db_errmsg(db));
                        return st;
                }
                st = branch(db, req, vote, err, errlen);
                if (st != RPC_OK || !vote->yes) {
                        db_rollback(db);
                        if (st != RPC_OK && db_retryable(st) && attempt + 1 < TPC_ATTEMPTS) {
                                continue;
                        }
                        return st;
                }
                st = txn_tpc_prepare(db, req->gid);
                if (st == RPC_OK) {
                        return RPC_OK;
                }
                db_rollback(db);
                if (!db_retryable(st)) {
                        snprintf(err, errlen, "prepare transaction: %s", db_errmsg(db));
                        return st;
                }
        }
        snprintf(err, errlen, "%s: the branch kept aborting", name);
        return RPC_ABORTED;
}

/* The service's step switches, for txn_tpc_prepare_branch. */
typedef struct before_ctx {
        rpc_call *call;
        const txn_tpc_participant *p;
} before_ctx;

static const char *
call_before(void *arg, const txn_tpc_request *req)
{
        before_ctx *c = arg;

        return c->p->before(c->call, req);
}

rpc_status
txn_tpc_handle_prepare(
    rpc_call *call, const txn_tpc_participant *p, const txn_tpc_request *req, txn_tpc_vote *vote)
{
        before_ctx ctx = { .call = call, .p = p };
        char err[256] = "";
        rpc_status st;

        if ((st = check_gid(call, req->gid)) != RPC_OK) {
                return st;
        }
        if (req->order_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be > 0");
        }
        if (p->validate != NULL && (st = p->validate(call, req)) != RPC_OK) {
                return st;
        }
        db_conn *db = p->db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = txn_tpc_prepare_branch(db, p->name, req, p->before != NULL ? call_before : NULL, &ctx,
            p->branch, vote, err, sizeof(err));
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "%s", err);
        }
        return RPC_OK;
}

/* Phase two, either way: COMMIT PREPARED or ROLLBACK PREPARED on the branch `gid`. */
static rpc_status
handle_decision(rpc_call *call, const txn_tpc_participant *p,
    const Mercato__Txn__V1__GidRequest *req, bool commit, Mercato__Txn__V1__Outcome *out)
{
        txn_tpc_branch_state state = TXN_TPC_UNKNOWN;
        rpc_status st;

        if ((st = check_gid(call, req->gid)) != RPC_OK) {
                return st;
        }
        db_conn *db = p->db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = commit ? txn_tpc_commit(db, req->gid, &state) : txn_tpc_rollback(db, req->gid, &state);
        if (st == RPC_FAILED_PRECONDITION && commit) {
                return rpc_call_error(call, st, "%s: gid %s cannot commit: %s", p->name, req->gid,
                    state == TXN_TPC_ROLLED_BACK ? "it was rolled back" : "it was never prepared");
        }
        if (st == RPC_FAILED_PRECONDITION) {
                return rpc_call_error(
                    call, st, "%s: gid %s cannot roll back: it committed", p->name, req->gid);
        }
        if (st != RPC_OK) {
                return rpc_call_error(
                    call, st, "%s prepared: %s", commit ? "commit" : "rollback", db_errmsg(db));
        }
        out->gid = rpc_call_strdup(call, req->gid);
        out->state = commit ? MERCATO__TXN__V1__BRANCH_STATE__BRANCH_STATE_COMMITTED
                            : MERCATO__TXN__V1__BRANCH_STATE__BRANCH_STATE_ROLLED_BACK;
        return RPC_OK;
}

rpc_status
txn_tpc_handle_commit(rpc_call *call, const txn_tpc_participant *p,
    const Mercato__Txn__V1__GidRequest *req, Mercato__Txn__V1__Outcome *out)
{
        return handle_decision(call, p, req, true, out);
}

rpc_status
txn_tpc_handle_rollback(rpc_call *call, const txn_tpc_participant *p,
    const Mercato__Txn__V1__GidRequest *req, Mercato__Txn__V1__Outcome *out)
{
        return handle_decision(call, p, req, false, out);
}

rpc_status
txn_tpc_handle_list_prepared(rpc_call *call, const txn_tpc_participant *p,
    const Mercato__Txn__V1__ListPreparedRequest *req, Mercato__Txn__V1__ListPreparedResponse *resp)
{
        txn_tpc_prepared *list = NULL;
        size_t n = 0;
        rpc_status st;

        if (strlen(req->prefix) >= TXN_TPC_GID_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "prefix longer than %d bytes", TXN_TPC_GID_MAX - 1);
        }
        db_conn *db = p->db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = txn_tpc_list_prepared(db, req->prefix, false, &list, &n);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        resp->n_xacts = n;
        resp->xacts = rpc_call_alloc(call, (n > 0 ? n : 1) * sizeof(*resp->xacts));
        for (size_t i = 0; i < n; i++) {
                Mercato__Txn__V1__PreparedXact *x = rpc_call_alloc(call, sizeof(*x));
                mercato__txn__v1__prepared_xact__init(x);
                x->gid = rpc_call_strdup(call, list[i].gid);
                x->age_ms = list[i].age_ms;
                x->prepared_at_ms = list[i].prepared_at_ms;
                x->database = rpc_call_strdup(call, list[i].database);
                resp->xacts[i] = x;
        }
        free(list);
        return RPC_OK;
}
