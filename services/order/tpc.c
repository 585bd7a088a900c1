/* tpc.c: PlaceOrder as a two-phase commit that the order service coordinates.
 *
 * NOTES
 *
 * The order service is the coordinator (txn/tpc.h has the protocol and its tables). An
 * order in 2pc mode:
 *
 *   price the items                    product PriceItems (unknown product: error)
 *   quote the user's branch            user Quote: checks the user and coupon (unknown:
 *                                      error, nothing recorded), computes the discount
 *                                      (coupon not usable: CANCELLED coupon_invalid)
 *   create the order PENDING, and log  one local transaction: the order with its items,
 *   the transaction (undecided)        and txn_tpc_log's row for GID
 *                                      "<coordinator_id>:<epoch>:<order id>"
 *   prepare, in parallel               product: reserve the stock (and mark it sold)
 *                                      user: use the coupon, debit total - discount
 *                                      payment: capture
 *                                      order (here, on the order's database): the order
 *                                      COMPLETED and order.completed in the outbox
 *                                      each ends with PREPARE TRANSACTION GID
 *   all voted yes in time              decide commit (durable) -> COMMIT PREPARED on every
 *                                      branch, in parallel -> the log row done; wake the
 *                                      relay so order.completed flows
 *   a "no", an error or a timeout      decide abort -> ROLLBACK PREPARED on every branch
 *                                      that may have prepared (an unknown gid is fine, and
 *                                      refuses a late prepare) -> the order CANCELLED with
 *                                      the reason and the row done, in one transaction
 *
 * The reason is the first "no" in step order (out_of_stock, coupon_invalid or
 * insufficient_balance, payment_declined). With no "no", the first branch in step order
 * (the order's own last) that did not vote yes gives it: "timeout" when its vote did not
 * arrive in time ([order] prepare_timeout_ms, default 5000: DEADLINE_EXCEEDED), and
 * "participant_error" when it answered with an error instead of a vote (a transport
 * error, UNAVAILABLE from an open breaker or a stopping peer, INTERNAL, ABORTED from a
 * lock timeout). A participant_error's branch, status and message go into the log row
 * before the decision (the order's row is locked by its own prepared branch), and onto
 * the order with its cancellation, so GetOrder and `mercato txn show` tell what failed,
 * also when recovery finishes the abort.
 *
 * Recovery (txn_tpc_recovery, a thread started by tpc_start) finishes what a crash
 * or an unreachable participant left: it re-drives every decision not done, and presumes
 * abort for a transaction undecided after [order] tpc_grace_ms (default 30000), cancelling
 * its order with reason timeout. PlaceOrder in 2pc waits for its first pass. A new epoch is
 * drawn at each start, and again whenever the order ids restart (a re-seed), so a GID is
 * never reused.
 *
 * Step switches: order.create `fail` is an INTERNAL error before anything is written,
 * `timeout` records the order CANCELLED (timeout) without preparing; order.complete `fail`
 * or `timeout` makes the order's own branch vote no (timeout). Each participant reads its
 * own (services/<svc>/tpc.c). Crash points for tests: [order] crash_at = after_prepare |
 * after_decision | after_first_commit makes the process _exit(137) right there.
 *
 * Test-only: [order] tpc_recovery = off makes recovery leave every branch as it finds it
 * (it still runs its passes, and PlaceOrder still waits for the first), so that the fault
 * suite can show that it catches a coordinator without recovery. Never set it otherwise.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "event.pb-c.h"
#include "modes.h"
#include "reply.h"
#include "product.pb-c.h"
#include "tpc.h"
#include "txn.h"
#include "txn.pb-c.h"

/* The branches, the coordinator's own first (txn_tpc_drive runs the first on the calling
 * thread, with the coordinator's connection). */
#define TPC_BRANCHES "order product user payment"
#define TPC_OWN "order"

/* The remote participants, in step order. */
enum { P_PRODUCT = 0, P_USER = 1, P_PAYMENT = 2, N_PARTS = 3 };
static const char *const part_names[N_PARTS] = { "product", "user", "payment" };

#define TPC_TOTAL_MAX INT64_C(1000000000000)

/* How far behind the highest order id of the epoch an order may take its id and still be
 * told apart from a re-seed (more than the orders ever in flight at once). */
#define EPOCH_WINDOW 4096
#define TPC_CALL_TIMEOUT_MS 3000
#define TPC_READY_WAIT_MS 15000

#define METHOD_PREPARE "/mercato.txn.v1.Participant/Prepare"
#define METHOD_QUOTE "/mercato.txn.v1.Participant/Quote"
#define METHOD_COMMIT "/mercato.txn.v1.Participant/Commit"
#define METHOD_ROLLBACK "/mercato.txn.v1.Participant/Rollback"
#define METHOD_LIST "/mercato.txn.v1.Participant/ListPrepared"
#define METHOD_PRICE "/mercato.product.v1.ProductService/PriceItems"

typedef enum crash_point {
        CRASH_NONE = 0,
        CRASH_AFTER_PREPARE = 1,
        CRASH_AFTER_DECISION = 2,
        CRASH_AFTER_FIRST_COMMIT = 3,
} crash_point;

/* The coordinator: one per process. */
typedef struct tpc_coord {
        svc *s;
        char id[TXN_TPC_NAME_MAX + 1];
        rpc_client *clients[N_PARTS];
        int64_t prepare_timeout_ms;
        crash_point crash_at;
        bool recovery_off; /* test-only: recovery finishes nothing */
        txn_tpc_recovery *recovery;
        pthread_mutex_t mu;               /* guards what follows */
        pthread_cond_t ready;             /* signalled when recovery starts */
        txn_tpc_recovery *recovery_ready; /* recovery once tpc_start is done */
        int active;                       /* PlaceOrder calls past coordinator_enter */
        bool stopping;                    /* tpc_stop began: no new 2pc order */
        int64_t epoch;                    /* 0 until started */
        int64_t epoch_max_id;             /* the highest order id used in this epoch */
        /* Which of the EPOCH_WINDOW ids up to epoch_max_id this epoch used, bit id % window:
         * concurrent orders take their ids out of order, and only an id used twice (a
         * re-seed restarted the sequence) needs a new epoch. */
        uint64_t epoch_used[EPOCH_WINDOW / 64];
        char (*inflight)[TXN_TPC_GID_MAX];
        size_t n_inflight;
        size_t cap_inflight;
} tpc_coord;

static tpc_coord coord = { .mu = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER };

static void epoch_begin(int64_t epoch);

/* What the txn_tpc_ops callbacks get: live (a PlaceOrder) or recovery. */
typedef struct tpc_ctx {
        bool live;
} tpc_ctx;

static tpc_ctx live_ctx = { .live = true };
static tpc_ctx recovery_ctx = { .live = false };

static void
crash_if(crash_point at)
{
        if (coord.crash_at == at) {
                fprintf(stderr, "mercato-order: crash_at point reached: exiting\n");
                _exit(137);
        }
}

/*
 * The GIDs a live PlaceOrder drives: recovery leaves them alone.
 */
static void
inflight_add(const char *gid)
{
        pthread_mutex_lock(&coord.mu);
        if (coord.n_inflight == coord.cap_inflight) {
                coord.cap_inflight = coord.cap_inflight > 0 ? 2 * coord.cap_inflight : 16;
                coord.inflight
                    = rpc_xrealloc(coord.inflight, coord.cap_inflight * sizeof(*coord.inflight));
        }
        snprintf(coord.inflight[coord.n_inflight++], TXN_TPC_GID_MAX, "%s", gid);
        pthread_mutex_unlock(&coord.mu);
}

static void
inflight_remove(const char *gid)
{
        pthread_mutex_lock(&coord.mu);
        for (size_t i = 0; i < coord.n_inflight; i++) {
                if (strcmp(coord.inflight[i], gid) == 0) {
                        memcpy(coord.inflight[i], coord.inflight[--coord.n_inflight],
                            sizeof(coord.inflight[i]));
                        break;
                }
        }
        pthread_mutex_unlock(&coord.mu);
}

static bool
ops_in_flight(void *arg, const char *gid)
{
        bool found = false;

        (void) arg;
        pthread_mutex_lock(&coord.mu);
        for (size_t i = 0; i < coord.n_inflight && !found; i++) {
                found = strcmp(coord.inflight[i], gid) == 0;
        }
        pthread_mutex_unlock(&coord.mu);
        return found;
}

/*
 * The txn_tpc_ops of the order service
 */
static rpc_client *
client_of(const char *branch)
{
        for (int i = 0; i < N_PARTS; i++) {
                if (strcmp(branch, part_names[i]) == 0) {
                        return coord.clients[i];
                }
        }
        return NULL;
}

static rpc_status
ops_finish(void *arg, db_conn *db, const char *branch, const char *gid, bool commit)
{
        tpc_ctx *ctx = arg;
        rpc_status st;

        if (!ctx->live && coord.recovery_off) {
                return RPC_UNAVAILABLE; /* left for a later pass, forever */
        }
        if (strcmp(branch, TPC_OWN) == 0) {
                if (db == NULL) {
                        return RPC_INTERNAL;
                }
                st = commit ? txn_tpc_commit(db, gid, NULL) : txn_tpc_rollback(db, gid, NULL);
                if (st == RPC_OK && commit) {
                        svc_relay_wake(coord.s, SVC_DATASET_SPLIT); /* order.completed */
                }
        } else {
                Mercato__Txn__V1__GidRequest req = MERCATO__TXN__V1__GID_REQUEST__INIT;
                RPC_PB_CLEANUP ProtobufCMessage *resp = NULL;
                rpc_call_opts opts = { .timeout_ms = TPC_CALL_TIMEOUT_MS, .idempotent = true };
                rpc_client *cl = client_of(branch);

                if (cl == NULL) {
                        return RPC_UNAVAILABLE;
                }
                req.gid = (char *) gid;
                st = rpc_client_call(cl, commit ? METHOD_COMMIT : METHOD_ROLLBACK, &req.base,
                    &mercato__txn__v1__outcome__descriptor, &resp, &opts, NULL);
        }
        if (ctx->live && commit && st == RPC_OK) {
                crash_if(CRASH_AFTER_FIRST_COMMIT);
        }
        return st;
}

static rpc_status
ops_list_prepared(void *arg, db_conn *db, const char *branch, const char *prefix,
    txn_tpc_prepared **ret_list, size_t *ret_n)
{
        Mercato__Txn__V1__ListPreparedRequest req = MERCATO__TXN__V1__LIST_PREPARED_REQUEST__INIT;
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        /* One short attempt: the scan runs again at the next pass, and a stop must not wait
         * on a participant that is gone. */
        rpc_call_opts opts = { .timeout_ms = 1000, .no_retry = true };
        Mercato__Txn__V1__ListPreparedResponse *resp;
        txn_tpc_prepared *list = NULL;
        rpc_client *cl;
        rpc_status st;

        (void) arg;
        if (strcmp(branch, TPC_OWN) == 0) {
                return txn_tpc_list_prepared(db, prefix, false, ret_list, ret_n);
        }
        if ((cl = client_of(branch)) == NULL) {
                return RPC_UNAVAILABLE;
        }
        req.prefix = (char *) prefix;
        st = rpc_client_call(cl, METHOD_LIST, &req.base,
            &mercato__txn__v1__list_prepared_response__descriptor, &msg, &opts, NULL);
        if (st != RPC_OK) {
                return st;
        }
        resp = (Mercato__Txn__V1__ListPreparedResponse *) msg;
        if (resp->n_xacts > 0) {
                list = rpc_xcalloc(resp->n_xacts, sizeof(*list));
        }
        for (size_t i = 0; i < resp->n_xacts; i++) {
                snprintf(list[i].gid, sizeof(list[i].gid), "%s", resp->xacts[i]->gid);
                list[i].age_ms = resp->xacts[i]->age_ms;
                list[i].prepared_at_ms = resp->xacts[i]->prepared_at_ms;
                snprintf(
                    list[i].database, sizeof(list[i].database), "%s", resp->xacts[i]->database);
        }
        *ret_list = list;
        *ret_n = resp->n_xacts;
        return RPC_OK;
}

/* Every branch confirmed: an aborted order is CANCELLED (idempotent); a committed one is
 * COMPLETED by its own branch already. */
static rpc_status
ops_finished(void *arg, db_conn *db, const txn_tpc_log_rec *rec)
{
        (void) arg;
        return order_tpc_finished(db, rec);
}

static rpc_status
ops_connect(void *arg, db_conn **ret_db, char *errbuf, size_t errlen)
{
        (void) arg;
        return svc_connect(coord.s, SVC_DATASET_SPLIT, ret_db, errbuf, errlen);
}

static txn_tpc_recovery_opts
recovery_opts(tpc_ctx *ctx)
{
        const rpc_conf *conf = svc_conf(coord.s);

        return (txn_tpc_recovery_opts) {
                .coordinator = coord.id,
                .branches = TPC_BRANCHES,
                .grace_ms = rpc_conf_get_int(conf, "order", "tpc_grace_ms", 30000),
                .interval_ms = rpc_conf_get_int(conf, "order", "tpc_recovery_ms", 1000),
                .ops = {
                        .arg = ctx,
                        .finish = ops_finish,
                        .list_prepared = ops_list_prepared,
                        .finished = ops_finished,
                        .in_flight = ops_in_flight,
                        .connect = ops_connect,
                },
        };
}

/*
 * Start and stop
 */
/* Draws a new epoch, opens the participants' clients, starts recovery. */
static rpc_status
tpc_start(svc *s)
{
        const rpc_conf *conf = svc_conf(s);
        const char *id = rpc_conf_get(conf, "order", "coordinator_id");
        const char *crash = rpc_conf_get(conf, "order", "crash_at");
        const char *recovery = rpc_conf_get(conf, "order", "tpc_recovery");
        txn_tpc_recovery_opts o;
        db_conn *db = NULL;
        char err[512];
        int64_t epoch = 0;
        rpc_status st;

        coord.s = s;
        if (id == NULL) {
                id = "order";
        }
        if (!txn_tpc_name_valid(id)) {
                fprintf(stderr, "mercato-order: coordinator_id must be 1..%d of [A-Za-z0-9_.-]\n",
                    TXN_TPC_NAME_MAX);
                return RPC_INVALID_ARGUMENT;
        }
        snprintf(coord.id, sizeof(coord.id), "%s", id);
        coord.prepare_timeout_ms = txn_tpc_prepare_timeout_ms(conf);
        coord.recovery_off = recovery != NULL && strcmp(recovery, "off") == 0;
        coord.crash_at = CRASH_NONE;
        if (crash != NULL && strcmp(crash, "after_prepare") == 0) {
                coord.crash_at = CRASH_AFTER_PREPARE;
        } else if (crash != NULL && strcmp(crash, "after_decision") == 0) {
                coord.crash_at = CRASH_AFTER_DECISION;
        } else if (crash != NULL && strcmp(crash, "after_first_commit") == 0) {
                coord.crash_at = CRASH_AFTER_FIRST_COMMIT;
        }
        for (int i = 0; i < N_PARTS; i++) {
                const char *addr = rpc_conf_get(conf, part_names[i], "address");
                if (addr != NULL && rpc_client_open(addr, NULL, &coord.clients[i]) != RPC_OK) {
                        coord.clients[i] = NULL;
                }
        }
        /* A new epoch at every start: GIDs of an earlier run are never drawn again. */
        st = svc_connect(s, SVC_DATASET_SPLIT, &db, err, sizeof(err));
        if (st == RPC_OK) {
                st = txn_tpc_next_epoch(db, coord.id, &epoch);
                if (st != RPC_OK) {
                        snprintf(err, sizeof(err), "%s", db_errmsg(db));
                }
                db_close(db);
        }
        if (st != RPC_OK) {
                fprintf(stderr, "mercato-order: 2pc: cannot draw an epoch: %s\n", err);
                return st;
        }
        pthread_mutex_lock(&coord.mu);
        epoch_begin(epoch);
        pthread_mutex_unlock(&coord.mu);
        o = recovery_opts(&recovery_ctx);
        st = txn_tpc_recovery_start(&o, &coord.recovery);
        if (st != RPC_OK) {
                fprintf(stderr, "mercato-order: 2pc: bad tpc_grace_ms or tpc_recovery_ms\n");
                return st;
        }
        pthread_mutex_lock(&coord.mu);
        coord.recovery_ready = coord.recovery;
        pthread_cond_broadcast(&coord.ready);
        pthread_mutex_unlock(&coord.mu);
        return RPC_OK;
}

/* Waits on coord.ready for at most 50 ms; coord.mu held. */
static void
ready_wait(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&coord.ready, &coord.mu, &ts);
}

/* Waits (a bounded time) until the coordinator started and recovery's first pass ended:
 * the server answers before the start hook has run. On true the call counts as active
 * until coordinator_leave. */
static bool
coordinator_enter(void)
{
        int64_t until = rpc_now_mono_ms() + TPC_READY_WAIT_MS;
        txn_tpc_recovery *r;

        pthread_mutex_lock(&coord.mu);
        while (coord.recovery_ready == NULL && !coord.stopping && rpc_now_mono_ms() < until) {
                ready_wait();
        }
        r = coord.stopping ? NULL : coord.recovery_ready;
        if (r != NULL) {
                coord.active++;
        }
        pthread_mutex_unlock(&coord.mu);
        if (r == NULL) {
                return false;
        }
        if (!txn_tpc_recovery_wait_first(r, until - rpc_now_mono_ms())) {
                pthread_mutex_lock(&coord.mu);
                coord.active--;
                pthread_cond_broadcast(&coord.ready);
                pthread_mutex_unlock(&coord.mu);
                return false;
        }
        return true;
}

static void
coordinator_leave(void)
{
        pthread_mutex_lock(&coord.mu);
        coord.active--;
        pthread_cond_broadcast(&coord.ready);
        pthread_mutex_unlock(&coord.mu);
}

static void
tpc_stop(svc *s)
{
        int64_t until = rpc_now_mono_ms() + 10000;

        (void) s;
        /* No new 2pc order; the ones in flight finish first (they use the clients). */
        pthread_mutex_lock(&coord.mu);
        coord.recovery_ready = NULL;
        coord.stopping = true;
        while (coord.active > 0 && rpc_now_mono_ms() < until) {
                ready_wait();
        }
        pthread_mutex_unlock(&coord.mu);
        txn_tpc_recovery_stop(coord.recovery);
        coord.recovery = NULL;
        for (int i = 0; i < N_PARTS; i++) {
                rpc_client_free(coord.clients[i]);
                coord.clients[i] = NULL;
        }
        pthread_mutex_lock(&coord.mu);
        free(coord.inflight);
        coord.inflight = NULL;
        coord.n_inflight = coord.cap_inflight = 0;
        pthread_mutex_unlock(&coord.mu);
}

/* Under coord.mu: a new epoch, no id used in it yet. */
static void
epoch_begin(int64_t epoch)
{
        coord.epoch = epoch;
        coord.epoch_max_id = 0;
        memset(coord.epoch_used, 0, sizeof(coord.epoch_used));
}

static bool
epoch_bit(int64_t id)
{
        uint64_t slot = (uint64_t) id % EPOCH_WINDOW;

        return (coord.epoch_used[slot / 64] >> (slot % 64)) & 1;
}

/* Under coord.mu: whether this epoch may have used the id. */
static bool
epoch_id_used(int64_t id)
{
        if (id > coord.epoch_max_id) {
                return false;
        }
        return id <= coord.epoch_max_id - EPOCH_WINDOW || epoch_bit(id);
}

/* Under coord.mu: marks the id used; the ids that fall out of the window lose their bits. */
static void
epoch_id_use(int64_t id)
{
        if (id > coord.epoch_max_id) {
                if (id - coord.epoch_max_id >= EPOCH_WINDOW) {
                        memset(coord.epoch_used, 0, sizeof(coord.epoch_used));
                } else {
                        for (int64_t k = coord.epoch_max_id + 1; k <= id; k++) {
                                uint64_t slot = (uint64_t) k % EPOCH_WINDOW;
                                coord.epoch_used[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
                        }
                }
                coord.epoch_max_id = id;
        }
        uint64_t slot = (uint64_t) id % EPOCH_WINDOW;
        coord.epoch_used[slot / 64] |= UINT64_C(1) << (slot % 64);
}

/* The GID of an order: a new epoch first when its id was used in this one already (the
 * order ids restarted: a re-seed). An id too far behind the highest to tell counts as used. */
static rpc_status
gid_for(db_conn *db, int64_t order_id, char gid[TXN_TPC_GID_MAX])
{
        rpc_status st = RPC_OK;
        int64_t epoch;

        pthread_mutex_lock(&coord.mu);
        if (epoch_id_used(order_id)) {
                st = txn_tpc_next_epoch(db, coord.id, &epoch);
                if (st == RPC_OK) {
                        epoch_begin(epoch);
                }
        }
        if (st == RPC_OK) {
                epoch_id_use(order_id);
                st = txn_tpc_gid(gid, coord.id, coord.epoch, order_id);
        }
        pthread_mutex_unlock(&coord.mu);
        return st;
}

/*
 * One order
 */
typedef struct tpc_order {
        rpc_call *call;
        const order_request *r;
        order_line lines[ORDER_ITEMS_MAX];
        size_t n;
        int64_t order_id;
        int64_t total;
        int64_t discount;
        int64_t created_at_ms;
        int64_t updated_at_ms;
        order_failure failure;         /* what failed, for participant_error */
        char gid[TXN_TPC_GID_MAX];     /* the GID */
        char own_gid[TXN_TPC_GID_MAX]; /* its own branch's: "<gid>:order" */
} tpc_order;

/* One remote branch's prepare, on a thread of its own. */
typedef struct prepare_job {
        rpc_client *client;
        char gid[TXN_TPC_GID_MAX]; /* the branch GID */
        Mercato__Txn__V1__PrepareRequest req;
        int64_t timeout_ms;
        rpc_status st;
        bool yes;
        char reason[64];
        char msg[256];
} prepare_job;

static void *
prepare_thread(void *arg)
{
        prepare_job *j = arg;
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        rpc_call_opts opts = { .timeout_ms = j->timeout_ms, .no_retry = true };
        rpc_error err = { 0 };

        if (j->client == NULL) {
                j->st = RPC_UNAVAILABLE;
                snprintf(j->msg, sizeof(j->msg), "no address");
                return NULL;
        }
        j->st = rpc_client_call(j->client, METHOD_PREPARE, &j->req.base,
            &mercato__txn__v1__vote__descriptor, &msg, &opts, &err);
        if (j->st != RPC_OK) {
                snprintf(j->msg, sizeof(j->msg), "%s", err.message);
                return NULL;
        }
        const Mercato__Txn__V1__Vote *v = (const Mercato__Txn__V1__Vote *) msg;
        j->yes = v->yes;
        snprintf(j->reason, sizeof(j->reason), "%s", v->reason != NULL ? v->reason : "");
        return NULL;
}

/* The coordinator's own branch: the order COMPLETED and its event, prepared. Returns NULL
 * for a yes, "timeout" for the step switch `timeout`, or participant_error (with
 * *failure filled) when the branch failed. */
static const char *
prepare_own(db_conn *db, tpc_order *o, order_failure *failure)
{
        svc_step_result sw = svc_step(svc_conf(coord.s), "order", "complete");
        rpc_status st;

        if (sw == SVC_STEP_TIMEOUT) {
                return "timeout"; /* the order's own vote never comes */
        }
        if (sw == SVC_STEP_FAIL) {
                order_failure_set(
                    failure, TPC_OWN, RPC_INTERNAL, "order.complete failed (step switch)");
                return ORDER_REASON_PARTICIPANT_ERROR;
        }
        st = order_tpc_prepare_own(db, o->own_gid, o->order_id, o->r->user_id, o->total,
            o->discount, o->lines, o->n, &o->updated_at_ms);
        if (st == RPC_OK) {
                return NULL;
        }
        fprintf(stderr, "mercato-order: 2pc %s: own branch: %s: %s\n", o->gid, rpc_status_name(st),
            db_errmsg(db));
        order_failure_set(failure, TPC_OWN, st, "%s", db_errmsg(db));
        return st == RPC_DEADLINE_EXCEEDED ? "timeout" : ORDER_REASON_PARTICIPANT_ERROR;
}

/* Answers with the order as stored (or as known, if it cannot be read). */
static rpc_status
reply_order(db_conn *db, tpc_order *o, order_state status, const char *reason,
    Mercato__Order__V1__PlaceOrderResponse *resp)
{
        order_rec rec;

        if (order_store_get(db, o->order_id, &rec) == RPC_OK) {
                resp->order = order_msg(o->call, &rec, NULL);
                order_rec_fini(&rec);
                return RPC_OK;
        }
        rec = (order_rec) {
                .order_id = o->order_id,
                .user_id = o->r->user_id,
                .status = status,
                .reason = (char *) (reason != NULL ? reason : ""),
                .total = o->total,
                .discount = status == ORDER_COMPLETED ? o->discount : 0,
                .amount = o->total - (status == ORDER_COMPLETED ? o->discount : 0),
                .coupon_id = o->r->coupon_id,
                .mode = ORDER_MODE_TWO_PC,
                .created_at_ms = o->created_at_ms,
                .updated_at_ms = o->updated_at_ms > 0 ? o->updated_at_ms : o->created_at_ms,
                .items = o->lines,
                .n_items = o->n,
        };
        resp->order = order_msg(o->call, &rec, NULL);
        return RPC_OK;
}

/* Records an order that never prepared: CANCELLED with reason, in one transaction. */
static rpc_status
record_cancelled(
    db_conn *db, tpc_order *o, const char *reason, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        order_new on = {
                .order_id = o->order_id,
                .user_id = o->r->user_id,
                .items = o->lines,
                .n_items = o->n,
                .total = o->total,
                .coupon_id = o->r->coupon_id,
                .mode = ORDER_MODE_TWO_PC,
                .status = ORDER_CANCELLED,
                .reason = reason,
                .idempotency_key = o->r->idempotency_key,
                .failure = strcmp(reason, ORDER_REASON_PARTICIPANT_ERROR) == 0 ? &o->failure : NULL,
        };
        rpc_status st;

        st = order_store_create(db, &on, &o->order_id, &o->created_at_ms);
        if (st == RPC_ALREADY_EXISTS && o->r->idempotency_key[0] != '\0'
            && order_reply_key(o->call, db, o->r->idempotency_key, resp) == RPC_OK) {
                return RPC_OK;
        }
        if (st != RPC_OK) {
                return rpc_call_error(o->call, st, "record cancelled order: %s", db_errmsg(db));
        }
        o->discount = 0;
        return reply_order(db, o, ORDER_CANCELLED, reason, resp);
}

/* Prices the items with product's PriceItems; the lines get their prices and o->total. */
static rpc_status
price(tpc_order *o)
{
        Mercato__Product__V1__PriceItemsRequest req
            = MERCATO__PRODUCT__V1__PRICE_ITEMS_REQUEST__INIT;
        Mercato__Product__V1__ItemQuantity items[ORDER_ITEMS_MAX];
        Mercato__Product__V1__ItemQuantity *ptrs[ORDER_ITEMS_MAX];
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        rpc_call_opts opts = { .timeout_ms = coord.prepare_timeout_ms, .idempotent = true };
        Mercato__Product__V1__PriceItemsResponse *resp;
        rpc_error err = { 0 };
        rpc_status st;

        if (coord.clients[P_PRODUCT] == NULL) {
                return rpc_call_error(o->call, RPC_UNAVAILABLE, "no address for product");
        }
        for (size_t i = 0; i < o->n; i++) {
                mercato__product__v1__item_quantity__init(&items[i]);
                items[i].product_id = o->lines[i].product_id;
                items[i].quantity = o->lines[i].quantity;
                ptrs[i] = &items[i];
        }
        req.items = ptrs;
        req.n_items = o->n;
        st = rpc_client_call(coord.clients[P_PRODUCT], METHOD_PRICE, &req.base,
            &mercato__product__v1__price_items_response__descriptor, &msg, &opts, &err);
        if (st != RPC_OK) {
                return rpc_call_error(o->call, st, "price: %s", err.message);
        }
        resp = (Mercato__Product__V1__PriceItemsResponse *) msg;
        if (resp->n_items != o->n) {
                return rpc_call_error(
                    o->call, RPC_INTERNAL, "price: %zu items priced of %zu", resp->n_items, o->n);
        }
        o->total = 0;
        for (size_t i = 0; i < o->n; i++) {
                int64_t line;
                if (resp->items[i]->product_id != o->lines[i].product_id) {
                        return rpc_call_error(o->call, RPC_INTERNAL, "price: items out of order");
                }
                o->lines[i].unit_price = resp->items[i]->unit_price;
                if (__builtin_mul_overflow(o->lines[i].quantity, o->lines[i].unit_price, &line)
                    || __builtin_add_overflow(o->total, line, &o->total)
                    || o->total > TPC_TOTAL_MAX) {
                        return rpc_call_error(
                            o->call, RPC_OUT_OF_RANGE, "order total exceeds 1000000000000");
                }
        }
        return RPC_OK;
}

/* Asks the user participant's Quote: the user and the coupon exist, and the discount.
 * Returns OK with *ret_reason NULL (go on) or a reason (cancel), or an error status. */
static rpc_status
quote(tpc_order *o, const char **ret_reason)
{
        Mercato__Txn__V1__PrepareRequest req = MERCATO__TXN__V1__PREPARE_REQUEST__INIT;
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        rpc_call_opts opts = { .timeout_ms = coord.prepare_timeout_ms, .idempotent = true };
        const Mercato__Txn__V1__Vote *v;
        rpc_error err = { 0 };
        rpc_status st;

        *ret_reason = NULL;
        if (coord.clients[P_USER] == NULL) {
                return rpc_call_error(o->call, RPC_UNAVAILABLE, "no address for user");
        }
        req.user_id = o->r->user_id;
        req.coupon_id = o->r->coupon_id;
        req.total = o->total;
        req.amount = o->total;
        st = rpc_client_call(coord.clients[P_USER], METHOD_QUOTE, &req.base,
            &mercato__txn__v1__vote__descriptor, &msg, &opts, &err);
        if (st != RPC_OK) {
                return rpc_call_error(o->call, st, "%s", err.message);
        }
        v = (const Mercato__Txn__V1__Vote *) msg;
        if (!v->yes) {
                if (v->reason != NULL && strcmp(v->reason, "coupon_invalid") == 0) {
                        *ret_reason = "coupon_invalid";
                } else {
                        /* Quote has no other "no": an answer it should not give. */
                        order_failure_set(&o->failure, part_names[P_USER], RPC_INTERNAL,
                            "Quote voted no with reason '%s'", v->reason != NULL ? v->reason : "");
                        *ret_reason = ORDER_REASON_PARTICIPANT_ERROR;
                }
                return RPC_OK;
        }
        if (v->discount < 0 || v->discount > o->total) {
                return rpc_call_error(o->call, RPC_INTERNAL, "quote: discount out of range");
        }
        o->discount = v->discount;
        return RPC_OK;
}

/* Answers with the order an idempotency key placed, if any: true when it answered. */
static bool
reply_key(db_conn *db, tpc_order *o, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        return o->r->idempotency_key[0] != '\0'
            && order_reply_key(o->call, db, o->r->idempotency_key, resp) == RPC_OK;
}

/* The order PENDING with its items, and the log's row, in one transaction. */
static rpc_status
begin_order(db_conn *db, tpc_order *o)
{
        order_new on = {
                .order_id = o->order_id,
                .user_id = o->r->user_id,
                .items = o->lines,
                .n_items = o->n,
                .total = o->total,
                .discount = o->discount,
                .coupon_id = o->r->coupon_id,
                .mode = ORDER_MODE_TWO_PC,
                .status = ORDER_PENDING,
                .idempotency_key = o->r->idempotency_key,
        };

        return order_tpc_begin(db, &on, o->gid, coord.id, TPC_BRANCHES, &o->created_at_ms);
}

/* The reason a branch that did not vote yes gives, by its call's status (see NOTES). */
static const char *
missing_vote_reason(rpc_status st)
{
        return st == RPC_DEADLINE_EXCEEDED ? "timeout" : ORDER_REASON_PARTICIPANT_ERROR;
}

/* The prepare phase: the three remote branches on threads, the own one here. Returns NULL
 * when every branch voted yes in time, else the reason to cancel with (NOTES), with
 * o->failure filled for participant_error; *own_prepared tells whether the own branch
 * holds a prepared transaction. */
static const char *
prepare_all(db_conn *db, tpc_order *o, bool *own_prepared)
{
        prepare_job jobs[N_PARTS];
        pthread_t threads[N_PARTS];
        bool started[N_PARTS] = { false };
        Mercato__Txn__V1__Item items[ORDER_ITEMS_MAX];
        Mercato__Txn__V1__Item *ptrs[ORDER_ITEMS_MAX];
        order_failure own_failure = { 0 };
        const char *own;
        const char *reason = NULL;
        const char *missing = NULL; /* the first branch's without a vote, in step order */
        bool all_yes = true;

        for (size_t i = 0; i < o->n; i++) {
                mercato__txn__v1__item__init(&items[i]);
                items[i].product_id = o->lines[i].product_id;
                items[i].quantity = o->lines[i].quantity;
                items[i].unit_price = o->lines[i].unit_price;
                ptrs[i] = &items[i];
        }
        for (int i = 0; i < N_PARTS; i++) {
                prepare_job *j = &jobs[i];
                memset(j, 0, sizeof(*j));
                mercato__txn__v1__prepare_request__init(&j->req);
                j->client = coord.clients[i];
                j->timeout_ms = coord.prepare_timeout_ms;
                if (txn_tpc_branch_gid(j->gid, o->gid, part_names[i]) != RPC_OK) {
                        /* cannot happen: names and gid are valid */
                        order_failure_set(&o->failure, TPC_OWN, RPC_INTERNAL, "bad branch gid");
                        return ORDER_REASON_PARTICIPANT_ERROR;
                }
                j->req.gid = j->gid;
                j->req.order_id = o->order_id;
                j->req.user_id = o->r->user_id;
        }
        jobs[P_PRODUCT].req.items = ptrs;
        jobs[P_PRODUCT].req.n_items = o->n;
        jobs[P_USER].req.coupon_id = o->r->coupon_id;
        jobs[P_USER].req.total = o->total;
        jobs[P_USER].req.discount = o->discount;
        jobs[P_USER].req.amount = o->total - o->discount;
        jobs[P_PAYMENT].req.amount = o->total - o->discount;
        for (int i = 0; i < N_PARTS; i++) {
                started[i] = pthread_create(&threads[i], NULL, prepare_thread, &jobs[i]) == 0;
                if (!started[i]) {
                        prepare_thread(&jobs[i]);
                }
        }
        own = prepare_own(db, o, &own_failure);
        *own_prepared = own == NULL;
        for (int i = 0; i < N_PARTS; i++) {
                if (started[i]) {
                        pthread_join(threads[i], NULL);
                }
        }
        /* The first "no" in step order; else the first branch without a vote. */
        for (int i = 0; i < N_PARTS; i++) {
                const prepare_job *j = &jobs[i];
                if (j->st == RPC_OK && j->yes) {
                        continue;
                }
                all_yes = false;
                if (j->st == RPC_OK && j->reason[0] != '\0') {
                        if (reason == NULL) {
                                reason = rpc_call_strdup(o->call, j->reason);
                        }
                        continue;
                }
                if (j->st == RPC_OK) {
                        /* A "no" without a reason: no participant answers so. */
                        fprintf(stderr, "mercato-order: 2pc %s: %s voted no without a reason\n",
                            o->gid, part_names[i]);
                } else {
                        fprintf(stderr, "mercato-order: 2pc %s: %s did not vote: %s: %s\n", o->gid,
                            part_names[i], rpc_status_name(j->st), j->msg);
                }
                if (missing == NULL) {
                        missing = j->st == RPC_OK ? ORDER_REASON_PARTICIPANT_ERROR
                                                  : missing_vote_reason(j->st);
                        if (j->st == RPC_OK) {
                                order_failure_set(&o->failure, part_names[i], RPC_INTERNAL,
                                    "voted no without a reason");
                        } else {
                                order_failure_set(&o->failure, part_names[i], j->st, "%s", j->msg);
                        }
                }
        }
        if (own != NULL) {
                all_yes = false;
                if (missing == NULL) {
                        missing = own;
                        o->failure = own_failure;
                }
        }
        if (all_yes) {
                return NULL;
        }
        if (reason != NULL) {
                memset(&o->failure, 0, sizeof(o->failure)); /* a business "no" decides */
                return reason;
        }
        return missing;
}

/* After a decision: every branch finished as decided, the outcome recorded, the row done.
 * A branch that cannot be reached now is left to recovery. */
static void
finish_all(
    db_conn *db, tpc_order *o, txn_tpc_decision decision, const char *reason, bool own_prepared)
{
        txn_tpc_recovery_opts ro = recovery_opts(&live_ctx);
        txn_tpc_log_rec rec = { .txid = o->order_id, .decision = decision };
        rpc_status st;

        snprintf(rec.gid, sizeof(rec.gid), "%s", o->gid);
        snprintf(rec.coordinator, sizeof(rec.coordinator), "%s", coord.id);
        snprintf(rec.reason, sizeof(rec.reason), "%s", reason != NULL ? reason : "");
        snprintf(rec.failed_branch, sizeof(rec.failed_branch), "%s", o->failure.branch);
        snprintf(rec.failed_status, sizeof(rec.failed_status), "%s", o->failure.status);
        snprintf(rec.failed_message, sizeof(rec.failed_message), "%s", o->failure.message);
        /* An own branch that never prepared was rolled back here already. */
        snprintf(rec.participants, sizeof(rec.participants), "%s",
            own_prepared || decision == TXN_TPC_COMMIT ? TPC_BRANCHES : "product user payment");
        st = txn_tpc_drive(db, &ro, &rec);
        if (st != RPC_OK && decision == TXN_TPC_ABORT) {
                /* The abort is durable. Once the own branch is gone (it never prepared, or
                 * the drive rolled it back before a remote branch failed), the order is
                 * cancelled now, so that the reply says so; recovery rolls the rest back
                 * later. An own branch still prepared holds the order's row: recovery. */
                txn_tpc_branch_state own = TXN_TPC_PREPARED;
                if (!own_prepared
                    || (txn_tpc_branch_state_get(db, o->own_gid, &own) == RPC_OK
                        && own != TXN_TPC_PREPARED)) {
                        (void) ops_finished(NULL, db, &rec);
                }
        }
        inflight_remove(o->gid);
        if (st != RPC_OK) {
                fprintf(stderr, "mercato-order: 2pc %s: left to recovery: %s\n", o->gid,
                    rpc_status_name(st));
                txn_tpc_recovery_wake(coord.recovery);
        }
}

static rpc_status place(
    rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp);

/* Replies with the order COMPLETED or CANCELLED (PENDING only when the decision could not
 * be recorded). */
static rpc_status
tpc_place(rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        rpc_status st;

        if (!coordinator_enter()) {
                return rpc_call_error(call, RPC_UNAVAILABLE, "2pc: the coordinator is not ready");
        }
        st = place(call, r, resp);
        coordinator_leave();
        return st;
}

/* PlaceOrder in 2pc mode, once the coordinator is ready. */
static rpc_status
place(rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        tpc_order *o = rpc_call_alloc(call, sizeof(*o));
        const svc_step_result create = svc_step(svc_conf(coord.s), "order", "create");
        txn_tpc_decision decision = TXN_TPC_UNDECIDED;
        const char *reason = NULL;
        bool own_prepared = false;
        rpc_status st;

        memset(o, 0, sizeof(*o));
        o->call = call;
        o->r = r;
        o->n = r->n_lines;
        memcpy(o->lines, r->lines, r->n_lines * sizeof(r->lines[0]));
        /* 2pc runs on each service's own database, whatever the call's metadata. */
        db_conn *db = svc_db_dataset(call, SVC_DATASET_SPLIT);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        if (reply_key(db, o, resp)) {
                return RPC_OK;
        }
        if (create == SVC_STEP_FAIL) {
                return rpc_call_error(call, RPC_INTERNAL, "order.create failed (step switch)");
        }
        if ((st = price(o)) != RPC_OK) {
                return st;
        }
        if ((st = quote(o, &reason)) != RPC_OK) {
                return st;
        }
        st = order_store_next_id(db, &o->order_id);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        if (reason != NULL || create == SVC_STEP_TIMEOUT) {
                return record_cancelled(db, o, reason != NULL ? reason : "timeout", resp);
        }
        st = gid_for(db, o->order_id, o->gid);
        if (st == RPC_OK) {
                st = txn_tpc_branch_gid(o->own_gid, o->gid, TPC_OWN);
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "gid: %s", db_errmsg(db));
        }
        st = begin_order(db, o);
        if (st == RPC_ALREADY_EXISTS && reply_key(db, o, resp)) {
                return RPC_OK;
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "create order: %s", db_errmsg(db));
        }
        inflight_add(o->gid);

        reason = prepare_all(db, o, &own_prepared);
        if (reason == NULL) {
                crash_if(CRASH_AFTER_PREPARE);
                st = txn_tpc_log_decide(db, o->gid, TXN_TPC_COMMIT, "", 0, &decision);
        } else {
                if (strcmp(reason, ORDER_REASON_PARTICIPANT_ERROR) == 0
                    && txn_tpc_log_failed(
                           db, o->gid, o->failure.branch, o->failure.status, o->failure.message)
                        != RPC_OK) {
                        /* The reason still says it; only the detail is lost. */
                        fprintf(stderr, "mercato-order: 2pc %s: failure not recorded: %s\n", o->gid,
                            db_errmsg(db));
                }
                st = txn_tpc_log_decide(db, o->gid, TXN_TPC_ABORT, reason, 0, &decision);
        }
        if (st != RPC_OK || decision == TXN_TPC_UNDECIDED) {
                /* The decision may or may not be durable: recovery finds out. */
                fprintf(stderr, "mercato-order: 2pc %s: decision not recorded: %s\n", o->gid,
                    db_errmsg(db));
                inflight_remove(o->gid);
                txn_tpc_recovery_wake(coord.recovery);
                return reply_order(db, o, ORDER_PENDING, "", resp);
        }
        if (decision == TXN_TPC_COMMIT) {
                crash_if(CRASH_AFTER_DECISION);
                finish_all(db, o, decision, "", own_prepared);
                return reply_order(db, o, ORDER_COMPLETED, "", resp);
        }
        if (reason == NULL) {
                reason = "timeout"; /* recovery presumed abort first */
        }
        finish_all(db, o, decision, reason, own_prepared);
        return reply_order(db, o, ORDER_CANCELLED, reason, resp);
}

const order_mode_ops order_tpc_ops = {
        .mode = ORDER_MODE_TWO_PC,
        .place = tpc_place,
        .start = tpc_start,
        .stop = tpc_stop,
};
