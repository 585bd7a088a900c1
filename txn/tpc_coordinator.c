/* tpc_coordinator.c: the coordinator side of two-phase commit: GIDs, the log, recovery.
 *
 * NOTES
 *
 * The coordinator's log lives in its own database (txn_tpc_log). A global transaction:
 *
 *   1. log_begin        the row, undecided, committed before the first prepare (the caller
 *                       writes it with its own business rows: the order PENDING)
 *   2. prepare          every branch, in parallel (the caller's business)
 *   3. log_decide       commit only when every branch voted yes; the UPDATE is conditional
 *                       (decision IS NULL), committed, and durable (synchronous_commit) before
 *                       the first COMMIT PREPARED. Whoever decides first wins: the live
 *                       coordinator, or recovery presuming abort after the grace period, so
 *                       the two can never disagree.
 *   4. drive            COMMIT PREPARED (or ROLLBACK PREPARED) on every branch, in parallel;
 *                       when every one confirmed, ops.finished records the outcome and the
 *                       row is marked done, in one local transaction.
 *
 * Presumed abort: no decision means abort, but only once the grace period has passed since
 * the row was logged (and, for a branch found prepared, since it prepared), so recovery
 * never aborts a transaction the live coordinator is still preparing. The live coordinator
 * also claims its GIDs (ops.in_flight) so recovery leaves them alone while it works.
 *
 * Timing: created_at (the prepares begin), decided_at and done_at give per transaction the
 * time from the first prepare to the decision and to the last commit.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tpc.h"

/* The most branches a transaction has. */
#define TPC_MAX_BRANCHES 8

/* The rows one pass drives at most. */
#define TPC_PASS_LIMIT 200

/* Runs of the final local transaction when it aborts. */
#define TPC_DONE_ATTEMPTS 3

rpc_status
txn_tpc_next_epoch(db_conn *db, const char *coordinator, int64_t *ret_epoch)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        if (!txn_tpc_name_valid(coordinator)) {
                return RPC_INVALID_ARGUMENT;
        }
        db_params_init(&p);
        db_params_str(&p, coordinator);
        st = db_exec(db, "txn_tpc_epoch_next", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) != 1) {
                return RPC_INTERNAL;
        }
        *ret_epoch = db_get_i64(res, 0, 0);
        return RPC_OK;
}

rpc_status
txn_tpc_gid(char buf[TXN_TPC_GID_MAX], const char *coordinator, int64_t epoch, int64_t txid)
{
        int n;

        if (!txn_tpc_name_valid(coordinator) || epoch <= 0 || txid <= 0) {
                return RPC_INVALID_ARGUMENT;
        }
        /* 64 + 2 colons + two 19-digit numbers: always under 200 bytes. */
        n = snprintf(buf, TXN_TPC_GID_MAX, "%s:%" PRId64 ":%" PRId64, coordinator, epoch, txid);
        if (n <= 0 || n >= TXN_TPC_GID_MAX) {
                return RPC_INTERNAL;
        }
        return RPC_OK;
}

/* A positive decimal number of at most 19 digits. */
static bool
parse_positive(const char *s, size_t len, int64_t *ret)
{
        int64_t v = 0;

        if (len == 0 || len > 19) {
                return false;
        }
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9') {
                        return false;
                }
                if (__builtin_mul_overflow(v, 10, &v)
                    || __builtin_add_overflow(v, s[i] - '0', &v)) {
                        return false;
                }
        }
        *ret = v;
        return v > 0;
}

bool
txn_tpc_gid_parse(
    const char *gid, char coordinator[TXN_TPC_NAME_MAX + 1], int64_t *ret_epoch, int64_t *ret_txid)
{
        const char *c1;
        const char *c2;
        const char *c3;
        size_t clen;

        if (!txn_tpc_gid_valid(gid) || (c1 = strchr(gid, ':')) == NULL
            || (c2 = strchr(c1 + 1, ':')) == NULL) {
                return false;
        }
        if ((c3 = strchr(c2 + 1, ':')) != NULL) {
                /* A branch GID: the branch is a name, and the rest a GID. */
                if (!txn_tpc_name_valid(c3 + 1) || c3 - gid >= TXN_TPC_GID_MAX) {
                        return false;
                }
        } else {
                c3 = c2 + strlen(c2);
        }
        clen = (size_t) (c1 - gid);
        if (clen == 0 || clen > TXN_TPC_NAME_MAX) {
                return false;
        }
        if (!parse_positive(c1 + 1, (size_t) (c2 - c1 - 1), ret_epoch)
            || !parse_positive(c2 + 1, (size_t) (c3 - c2 - 1), ret_txid)) {
                return false;
        }
        if (coordinator != NULL) {
                memcpy(coordinator, gid, clen);
                coordinator[clen] = '\0';
        }
        return true;
}

rpc_status
txn_tpc_branch_gid(char buf[TXN_TPC_GID_MAX], const char *gid, const char *branch)
{
        int n;

        if (!txn_tpc_gid_valid(gid) || !txn_tpc_name_valid(branch)) {
                return RPC_INVALID_ARGUMENT;
        }
        n = snprintf(buf, TXN_TPC_GID_MAX, "%s:%s", gid, branch);
        return n > 0 && n < TXN_TPC_GID_MAX ? RPC_OK : RPC_INVALID_ARGUMENT;
}

bool
txn_tpc_global_gid(const char *gid, char buf[TXN_TPC_GID_MAX])
{
        int64_t epoch;
        int64_t txid;
        const char *c;

        if (!txn_tpc_gid_parse(gid, NULL, &epoch, &txid)) {
                return false;
        }
        c = strchr(strchr(gid, ':') + 1, ':');
        c = strchr(c + 1, ':');
        snprintf(
            buf, TXN_TPC_GID_MAX, "%.*s", (int) (c != NULL ? c - gid : (long) strlen(gid)), gid);
        return true;
}

const char *
txn_tpc_decision_name(txn_tpc_decision d)
{
        switch (d) {
        case TXN_TPC_COMMIT:
                return "commit";
        case TXN_TPC_ABORT:
                return "abort";
        case TXN_TPC_UNDECIDED:
        default:
                return "";
        }
}

static txn_tpc_decision
decision_from_name(const char *s)
{
        if (strcmp(s, "commit") == 0) {
                return TXN_TPC_COMMIT;
        }
        if (strcmp(s, "abort") == 0) {
                return TXN_TPC_ABORT;
        }
        return TXN_TPC_UNDECIDED;
}

rpc_status
txn_tpc_log_begin(
    db_conn *db, const char *gid, const char *coordinator, int64_t txid, const char *participants)
{
        db_params p;

        if (!txn_tpc_gid_valid(gid) || !txn_tpc_name_valid(coordinator) || participants == NULL
            || strlen(participants) >= sizeof(((txn_tpc_log_rec *) 0)->participants)) {
                return RPC_INVALID_ARGUMENT;
        }
        db_params_init(&p);
        db_params_str(&p, gid);
        db_params_str(&p, coordinator);
        db_params_i64(&p, txid);
        db_params_str(&p, participants);
        return db_exec(db, "txn_tpc_log_begin", &p, NULL);
}

static void
rec_read(const PGresult *res, int r, txn_tpc_log_rec *rec)
{
        memset(rec, 0, sizeof(*rec));
        snprintf(rec->gid, sizeof(rec->gid), "%s", db_get_str(res, r, 0));
        snprintf(rec->coordinator, sizeof(rec->coordinator), "%s", db_get_str(res, r, 1));
        rec->txid = db_get_i64(res, r, 2);
        snprintf(rec->participants, sizeof(rec->participants), "%s", db_get_str(res, r, 3));
        rec->decision = decision_from_name(db_get_str(res, r, 4));
        snprintf(rec->reason, sizeof(rec->reason), "%s", db_get_str(res, r, 5));
        rec->created_at_ms = db_get_i64(res, r, 6);
        rec->decided_at_ms = db_get_i64(res, r, 7);
        rec->done_at_ms = db_get_i64(res, r, 8);
        snprintf(rec->failed_branch, sizeof(rec->failed_branch), "%s", db_get_str(res, r, 9));
        snprintf(rec->failed_status, sizeof(rec->failed_status), "%s", db_get_str(res, r, 10));
        snprintf(rec->failed_message, sizeof(rec->failed_message), "%s", db_get_str(res, r, 11));
}

rpc_status
txn_tpc_log_failed(
    db_conn *db, const char *gid, const char *branch, const char *status, const char *message)
{
        db_params p;

        db_params_init(&p);
        db_params_str(&p, gid);
        db_params_str(&p, branch);
        db_params_str(&p, status);
        db_params_str(&p, message);
        return db_exec(db, "txn_tpc_log_failed", &p, NULL);
}

rpc_status
txn_tpc_log_get(db_conn *db, const char *gid, txn_tpc_log_rec *ret_rec)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_str(&p, gid);
        st = db_exec(db, "txn_tpc_log_get", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_NOT_FOUND;
        }
        rec_read(res, 0, ret_rec);
        return RPC_OK;
}

rpc_status
txn_tpc_log_decide(db_conn *db, const char *gid, txn_tpc_decision decision, const char *reason,
    int64_t min_age_ms, txn_tpc_decision *ret_decision)
{
        txn_tpc_log_rec rec;
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        if (decision != TXN_TPC_COMMIT && decision != TXN_TPC_ABORT) {
                return RPC_INVALID_ARGUMENT;
        }
        db_params_init(&p);
        db_params_str(&p, gid);
        db_params_str(&p, txn_tpc_decision_name(decision));
        db_params_str(&p, reason != NULL ? reason : "");
        db_params_i64(&p, min_age_ms > 0 ? min_age_ms : 0);
        st = db_exec_count(db, "txn_tpc_log_decide", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        if (rows == 1) {
                *ret_decision = decision;
                return RPC_OK;
        }
        st = txn_tpc_log_get(db, gid, &rec);
        if (st != RPC_OK) {
                return st;
        }
        *ret_decision = rec.decision;
        return RPC_OK;
}

rpc_status
txn_tpc_log_done(db_conn *db, const char *gid)
{
        db_params p;

        db_params_init(&p);
        db_params_str(&p, gid);
        return db_exec(db, "txn_tpc_log_done", &p, NULL);
}

rpc_status
txn_tpc_log_open(db_conn *db, const char *coordinator, int64_t undecided_age_ms, int limit,
    txn_tpc_log_rec **ret_recs, size_t *ret_n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        txn_tpc_log_rec *recs = NULL;
        db_params p;
        rpc_status st;
        int rows;

        db_params_init(&p);
        if (coordinator != NULL) {
                db_params_str(&p, coordinator);
        } else {
                db_params_null(&p);
        }
        db_params_i64(&p, undecided_age_ms);
        db_params_i64(&p, limit > 0 ? limit : TPC_PASS_LIMIT);
        st = db_exec(db, "txn_tpc_log_open", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        rows = db_rows(res);
        if (rows > 0) {
                recs = rpc_xcalloc((size_t) rows, sizeof(*recs));
        }
        for (int r = 0; r < rows; r++) {
                rec_read(res, r, &recs[r]);
        }
        *ret_recs = recs;
        *ret_n = (size_t) rows;
        return RPC_OK;
}

/*
 * Driving a decided transaction
 */

/* Splits a space-separated list of branch names into names[][]; returns the count. */
static size_t
split_branches(const char *list, char names[TPC_MAX_BRANCHES][TXN_TPC_NAME_MAX + 1])
{
        size_t n = 0;
        const char *s = list;

        while (s != NULL && *s != '\0' && n < TPC_MAX_BRANCHES) {
                size_t len;
                while (*s == ' ') {
                        s++;
                }
                len = strcspn(s, " ");
                if (len == 0) {
                        break;
                }
                if (len <= TXN_TPC_NAME_MAX) {
                        memcpy(names[n], s, len);
                        names[n][len] = '\0';
                        n++;
                }
                s += len;
        }
        return n;
}

typedef struct finish_job {
        const txn_tpc_ops *ops;
        const char *branch;
        char gid[TXN_TPC_GID_MAX]; /* the branch GID */
        bool commit;
        rpc_status st;
} finish_job;

static void *
finish_thread(void *arg)
{
        finish_job *j = arg;

        j->st = j->ops->finish(j->ops->arg, NULL, j->branch, j->gid, j->commit);
        return NULL;
}

typedef struct done_args {
        const txn_tpc_recovery_opts *o;
        const txn_tpc_log_rec *rec;
} done_args;

static rpc_status
done_tx(db_conn *db, void *arg)
{
        const done_args *a = arg;
        rpc_status st = RPC_OK;

        if (a->o->ops.finished != NULL) {
                st = a->o->ops.finished(a->o->ops.arg, db, a->rec);
        }
        if (st != RPC_OK) {
                return st;
        }
        return txn_tpc_log_done(db, a->rec->gid);
}

/* In one local transaction: ops.finished, then the row done. */
static rpc_status
record_done(db_conn *db, const txn_tpc_recovery_opts *o, const txn_tpc_log_rec *rec)
{
        done_args a = { .o = o, .rec = rec };

        return db_transaction(db, TPC_DONE_ATTEMPTS, done_tx, &a);
}

rpc_status
txn_tpc_drive(db_conn *db, const txn_tpc_recovery_opts *o, const txn_tpc_log_rec *rec)
{
        char names[TPC_MAX_BRANCHES][TXN_TPC_NAME_MAX + 1];
        finish_job jobs[TPC_MAX_BRANCHES];
        pthread_t threads[TPC_MAX_BRANCHES];
        bool started[TPC_MAX_BRANCHES] = { false };
        bool commit = rec->decision == TXN_TPC_COMMIT;
        rpc_status result = RPC_OK;
        size_t n;

        if (rec->decision != TXN_TPC_COMMIT && rec->decision != TXN_TPC_ABORT) {
                return RPC_FAILED_PRECONDITION;
        }
        n = split_branches(rec->participants, names);
        for (size_t i = 0; i < n; i++) {
                jobs[i] = (finish_job) { .ops = &o->ops, .branch = names[i], .commit = commit };
                if (txn_tpc_branch_gid(jobs[i].gid, rec->gid, names[i]) != RPC_OK) {
                        return RPC_INVALID_ARGUMENT;
                }
        }
        /* Every branch but the first on a thread of its own; the first, which may use db
         * (the coordinator's own branch), here. */
        for (size_t i = 1; i < n; i++) {
                started[i] = pthread_create(&threads[i], NULL, finish_thread, &jobs[i]) == 0;
                if (!started[i]) {
                        finish_thread(&jobs[i]);
                }
        }
        if (n > 0) {
                jobs[0].st = o->ops.finish(o->ops.arg, db, names[0], jobs[0].gid, commit);
        }
        for (size_t i = 1; i < n; i++) {
                if (started[i]) {
                        pthread_join(threads[i], NULL);
                }
        }
        for (size_t i = 0; i < n; i++) {
                if (jobs[i].st == RPC_FAILED_PRECONDITION) {
                        fprintf(stderr,
                            "txn: %s: branch %s did not %s: it ended the other way "
                            "(heuristic outcome)\n",
                            rec->gid, names[i], commit ? "commit" : "roll back");
                } else if (jobs[i].st != RPC_OK) {
                        result = jobs[i].st;
                }
        }
        if (result != RPC_OK) {
                return result;
        }
        return record_done(db, o, rec);
}

static bool
in_flight(const txn_tpc_recovery_opts *o, const char *gid)
{
        return o->ops.in_flight != NULL && o->ops.in_flight(o->ops.arg, gid);
}

static int64_t
grace_of(const txn_tpc_recovery_opts *o)
{
        return o->grace_ms > 0 ? o->grace_ms : 30000;
}

/* Step 1: the log's open rows. */
static rpc_status
pass_log(db_conn *db, const txn_tpc_recovery_opts *o, txn_tpc_pass_stats *stats)
{
        RPC_CLEANUP(rpc_freep) txn_tpc_log_rec *recs = NULL;
        size_t n = 0;
        rpc_status st;

        st = txn_tpc_log_open(db, o->coordinator, grace_of(o), TPC_PASS_LIMIT, &recs, &n);
        if (st != RPC_OK) {
                return st;
        }
        for (size_t i = 0; i < n; i++) {
                txn_tpc_log_rec *rec = &recs[i];

                if (o->cancel != NULL && atomic_load(o->cancel)) {
                        break; /* stopping: the next start re-drives the rest */
                }
                if (in_flight(o, rec->gid)) {
                        continue;
                }
                if (rec->decision == TXN_TPC_UNDECIDED) {
                        /* Presumed abort, once the grace period is over, if still nobody
                         * decided. */
                        st = txn_tpc_log_decide(
                            db, rec->gid, TXN_TPC_ABORT, "timeout", grace_of(o), &rec->decision);
                        if (st != RPC_OK) {
                                return st;
                        }
                        if (rec->decision == TXN_TPC_UNDECIDED) {
                                continue;
                        }
                        if (rec->decision == TXN_TPC_ABORT && rec->reason[0] == '\0') {
                                snprintf(rec->reason, sizeof(rec->reason), "timeout");
                        }
                }
                st = txn_tpc_drive(db, o, rec);
                if (st == RPC_OK) {
                        if (rec->decision == TXN_TPC_COMMIT) {
                                stats->committed++;
                        } else {
                                stats->aborted++;
                        }
                } else {
                        stats->pending++;
                        if (!db_retryable(st) && st != RPC_UNAVAILABLE
                            && st != RPC_DEADLINE_EXCEEDED) {
                                fprintf(stderr, "txn: recovery of %s: %s\n", rec->gid,
                                    rpc_status_name(st));
                        }
                }
        }
        return RPC_OK;
}

/* Step 2: the branches' prepared transactions the log does not account for. */
static void
pass_scan(db_conn *db, const txn_tpc_recovery_opts *o, txn_tpc_pass_stats *stats)
{
        char names[TPC_MAX_BRANCHES][TXN_TPC_NAME_MAX + 1];
        char prefix[TXN_TPC_NAME_MAX + 2];
        size_t nb = split_branches(o->branches, names);

        snprintf(prefix, sizeof(prefix), "%s:", o->coordinator);
        for (size_t b = 0; b < nb; b++) {
                RPC_CLEANUP(rpc_freep) txn_tpc_prepared *list = NULL;
                size_t n = 0;

                if (o->cancel != NULL && atomic_load(o->cancel)) {
                        return; /* stopping: the next start scans again */
                }
                if (o->ops.list_prepared(o->ops.arg, db, names[b], prefix, &list, &n) != RPC_OK) {
                        continue; /* that branch is unreachable now */
                }
                for (size_t i = 0; i < n; i++) {
                        char gid[TXN_TPC_GID_MAX];
                        txn_tpc_log_rec rec;
                        rpc_status st;

                        if (list[i].age_ms < grace_of(o) || !txn_tpc_global_gid(list[i].gid, gid)
                            || in_flight(o, gid)) {
                                continue;
                        }
                        st = txn_tpc_log_get(db, gid, &rec);
                        if (st == RPC_NOT_FOUND) {
                                /* Never logged here: presumed abort. */
                                if (o->ops.finish(o->ops.arg, db, names[b], list[i].gid, false)
                                    == RPC_OK) {
                                        stats->orphans++;
                                }
                                continue;
                        }
                        if (st != RPC_OK || rec.decision == TXN_TPC_UNDECIDED
                            || rec.done_at_ms == 0) {
                                continue; /* step 1 drives it */
                        }
                        /* Done, yet a branch is prepared: finish it as decided. */
                        (void) o->ops.finish(
                            o->ops.arg, db, names[b], list[i].gid, rec.decision == TXN_TPC_COMMIT);
                }
        }
}

rpc_status
txn_tpc_recover_once(
    db_conn *db, const txn_tpc_recovery_opts *o, bool scan, txn_tpc_pass_stats *ret_stats)
{
        txn_tpc_pass_stats stats = { 0 };
        rpc_status st;

        st = pass_log(db, o, &stats);
        if (st == RPC_OK && scan) {
                pass_scan(db, o, &stats);
        }
        if (ret_stats != NULL) {
                *ret_stats = stats;
        }
        return st;
}

/*
 * The recovery thread
 */
struct txn_tpc_recovery {
        txn_tpc_recovery_opts o;
        char *coordinator;
        char *branches;
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cond;
        bool stop;
        _Atomic bool cancel; /* stop, readable without the lock by a pass in progress */
        bool wake;
        bool first_done;
};

static void
deadline_after(struct timespec *ts, int64_t ms)
{
        clock_gettime(CLOCK_MONOTONIC, ts);
        ts->tv_sec += ms / 1000;
        ts->tv_nsec += (ms % 1000) * 1000000;
        if (ts->tv_nsec >= 1000000000) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000;
        }
}

static void *
recovery_thread(void *arg)
{
        txn_tpc_recovery *r = arg;
        db_conn *db = NULL;
        bool first = true;
        int64_t interval = r->o.interval_ms > 0 ? r->o.interval_ms : 1000;

        for (;;) {
                struct timespec until;
                char err[512];
                txn_tpc_pass_stats stats = { 0 };

                if (db == NULL) {
                        if (r->o.ops.connect(r->o.ops.arg, &db, err, sizeof(err)) != RPC_OK) {
                                db = NULL;
                        }
                } else if (db_ensure(db) != RPC_OK) {
                        db_close(db);
                        db = NULL;
                }
                if (db != NULL) {
                        /* The first pass only re-drives the log: it must be quick, since
                         * the coordinator waits for it; the scan follows at the next. */
                        if (txn_tpc_recover_once(db, &r->o, !first, &stats) != RPC_OK) {
                                fprintf(stderr, "txn: recovery pass failed: %s\n", db_errmsg(db));
                        } else if (stats.committed + stats.aborted + stats.orphans > 0) {
                                fprintf(stderr,
                                    "txn: recovery: %d committed, %d aborted, %d orphan "
                                    "branches rolled back, %d left\n",
                                    stats.committed, stats.aborted, stats.orphans, stats.pending);
                        }
                }
                pthread_mutex_lock(&r->mu);
                if (first) {
                        first = false;
                        r->first_done = true;
                        pthread_cond_broadcast(&r->cond);
                }
                deadline_after(&until, interval);
                while (!r->stop && !r->wake) {
                        if (pthread_cond_timedwait(&r->cond, &r->mu, &until) != 0) {
                                break; /* ETIMEDOUT */
                        }
                }
                r->wake = false;
                if (r->stop) {
                        pthread_mutex_unlock(&r->mu);
                        break;
                }
                pthread_mutex_unlock(&r->mu);
        }
        db_close(db);
        return NULL;
}

rpc_status
txn_tpc_recovery_start(const txn_tpc_recovery_opts *o, txn_tpc_recovery **ret)
{
        txn_tpc_recovery *r;
        pthread_condattr_t attr;

        if (o == NULL || !txn_tpc_name_valid(o->coordinator) || o->branches == NULL
            || o->ops.finish == NULL || o->ops.list_prepared == NULL || o->ops.connect == NULL
            || o->grace_ms < 0 || o->interval_ms < 0) {
                return RPC_INVALID_ARGUMENT;
        }
        r = rpc_xcalloc(1, sizeof(*r));
        r->o = *o;
        r->coordinator = rpc_xstrdup(o->coordinator);
        r->branches = rpc_xstrdup(o->branches);
        r->o.coordinator = r->coordinator;
        r->o.branches = r->branches;
        atomic_init(&r->cancel, false);
        r->o.cancel = &r->cancel;
        pthread_mutex_init(&r->mu, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&r->cond, &attr);
        pthread_condattr_destroy(&attr);
        if (pthread_create(&r->thread, NULL, recovery_thread, r) != 0) {
                pthread_cond_destroy(&r->cond);
                pthread_mutex_destroy(&r->mu);
                free(r->coordinator);
                free(r->branches);
                free(r);
                return RPC_INTERNAL;
        }
        *ret = r;
        return RPC_OK;
}

void
txn_tpc_recovery_wake(txn_tpc_recovery *r)
{
        if (r == NULL) {
                return;
        }
        pthread_mutex_lock(&r->mu);
        r->wake = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->mu);
}

bool
txn_tpc_recovery_wait_first(txn_tpc_recovery *r, int64_t timeout_ms)
{
        struct timespec until;
        bool done;

        if (r == NULL) {
                return false;
        }
        deadline_after(&until, timeout_ms > 0 ? timeout_ms : 0);
        pthread_mutex_lock(&r->mu);
        while (!r->first_done && !r->stop) {
                if (pthread_cond_timedwait(&r->cond, &r->mu, &until) != 0) {
                        break; /* ETIMEDOUT */
                }
        }
        done = r->first_done;
        pthread_mutex_unlock(&r->mu);
        return done;
}

void
txn_tpc_recovery_stop(txn_tpc_recovery *r)
{
        if (r == NULL) {
                return;
        }
        atomic_store(&r->cancel, true);
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->mu);
        free(r->coordinator);
        free(r->branches);
        free(r);
}
