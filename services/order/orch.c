/* orch.c: PlaceOrder as an orchestrated saga: the order service drives each step by command.
 *
 * NOTES
 *
 * The order service is the orchestrator. Its saga log is in its own database (orch_tx.c:
 * orch_saga, one row per saga, and orch_step, one per step), and every change of state is
 * committed before the next command goes out. The steps, each a command by RPC
 * (/mercato.txn.v1.SagaParticipant/Run) to the participant that runs it, and their
 * compensations:
 *
 *   1 reserve   product  the items, all or none          release
 *   2 debit     user     the coupon (if any), the debit   refund (and the coupon back)
 *   3 capture   payment  the amount                       refund
 *
 * then the order COMPLETED with order.completed in the same transaction as the saga's end.
 * A command's idempotency key is its action and the order ("reserve:<order>"): the barrier
 * key of the choreographed saga's step, in the participant's own database. A repeated
 * command finds the key taken and is answered as the first was (txn_saga_outcome); a
 * compensation enters its step's key too, so that a compensation that comes before its
 * step is recorded and the late step is refused ("compensated").
 *
 * Saga states: forward (the steps run in order) -> completed, or forward -> backward (the
 * compensations run in reverse) -> cancelled. Step states: pending -> sent -> done or
 * refused; backward, a sent or done step -> compensating -> compensated. A refused step
 * did nothing and needs no compensation; a sent step may have run, so it is compensated.
 *
 * Forward, a step's "no" (out_of_stock, coupon_invalid, insufficient_balance,
 * payment_declined) turns the saga backward with that reason, in one transaction with the
 * step refused. An error answer (INTERNAL, a bad request) turns it backward with reason
 * participant_error and the branch, status and message. No answer (a transport error,
 * UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED) leaves the step sent, and it is sent again with
 * backoff while the deadline ([order] saga_timeout_ms from the creation) holds; past it,
 * the saga goes backward with reason timeout. Backward, a compensation is sent again with
 * backoff until it is done: it is never given up, and after [order] orch_stuck_after
 * attempts (5) the saga shows as stuck.
 *
 * Who drives: the PlaceOrder that created the saga, until the saga is terminal or its
 * call's deadline nears (then it answers PENDING); and the recovery thread, at start-up
 * and every saga_scan_ms, each saga whose next attempt is due. One saga has one driver at
 * a time in the process (the claims below); the order service runs once per database.
 *
 * Crash rules: a crash before a state change commits loses only what was not yet sent; a
 * step left sent is sent again after the restart (a repeat, answered from the outcome), or
 * compensated if the saga went backward or its deadline passed meanwhile. A compensation
 * left compensating is sent again. The saga's end and the order's are one transaction.
 *
 * Crash points, for tests: [order] orch_crash_at = sent:<step> (the step recorded sent,
 * its command not yet out), answered:<step> (the command answered, the answer not yet
 * recorded), undo:<step> (its compensation recorded sent, not yet out) or finish (before
 * the end's transaction), with <step> one of reserve, debit, capture: the process exits
 * there, as a crash would. Mode tcc (tcc.c) runs on this orchestrator, with two points
 * more: decide and confirm:<step>.
 *
 * Step switches: order.create fail is an INTERNAL error before anything is written;
 * order.create timeout creates the saga but sends nothing, so that its deadline cancels it.
 * order.complete fail turns the saga backward with participant_error (branch order);
 * order.complete timeout holds the completion until the deadline cancels it. The
 * participants read their own switches.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "event.pb-c.h"
#include "saga_priv.h"
#include "txn.pb-c.h"

#define ORCH_METHOD_RUN "/mercato.txn.v1.SagaParticipant/Run"

/* One command waits this long for its answer at most (less when the deadline is nearer). */
#define ORCH_CALL_TIMEOUT_MS 2000

/* Recovery puts a saga whose command failed off by at most this much. */
#define ORCH_DEFER_MAX_MS 5000

/* After this many compensations sent for one step a saga shows as stuck, by default. */
#define ORCH_STUCK_AFTER_DEFAULT 5

/* How long a PlaceOrder waits for the orchestrator to start. */
#define ORCH_START_WAIT_MS 10000

/* The sagas driven at once in the process, and recovery's batch. */
#define ORCH_CLAIMS_MAX 1024
#define ORCH_DUE_BATCH 64

static const char *const peer_names[ORDER_ORCH_STEPS] = { "product", "user", "payment" };

static struct {
        _Atomic bool started;
        _Atomic bool stopping;
        svc *s;
        rpc_client *peers[ORDER_ORCH_STEPS];
        int64_t timeout_ms;
        int64_t scan_ms;
        int stuck_after;
        pthread_t recovery;
        bool recovery_running;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int64_t claimed[ORCH_CLAIMS_MAX];
        size_t n_claimed;
        char crash_at[32];        /* orch_crash_at; "" for none */
        order_orch_driver driver; /* the moves' commands and hooks, set at start */
} orch = {
        .mu = PTHREAD_MUTEX_INITIALIZER,
        .cv = PTHREAD_COND_INITIALIZER,
};

/*
 * Claims: one driver per saga
 */

static bool
claim(int64_t order_id)
{
        bool ok = true;

        pthread_mutex_lock(&orch.mu);
        for (size_t i = 0; i < orch.n_claimed && ok; i++) {
                ok = orch.claimed[i] != order_id;
        }
        if (ok && orch.n_claimed == ORCH_CLAIMS_MAX) {
                ok = false;
        }
        if (ok) {
                orch.claimed[orch.n_claimed++] = order_id;
        }
        pthread_mutex_unlock(&orch.mu);
        return ok;
}

static void
unclaim(int64_t order_id)
{
        pthread_mutex_lock(&orch.mu);
        for (size_t i = 0; i < orch.n_claimed; i++) {
                if (orch.claimed[i] == order_id) {
                        orch.claimed[i] = orch.claimed[--orch.n_claimed];
                        break;
                }
        }
        pthread_mutex_unlock(&orch.mu);
}

/* Sleeps ms, or less when the orchestrator stops. */
static void
nap(int64_t ms)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&orch.mu);
        if (!atomic_load(&orch.stopping)) {
                pthread_cond_timedwait(&orch.cv, &orch.mu, &ts);
        }
        pthread_mutex_unlock(&orch.mu);
}

/* The driver's point hook: exits if the crash point is kind ("sent", ...) at step
 * (1-based; 0 for none). */
static void
crash_if(void *arg, const char *kind, int step)
{
        char point[32];

        (void) arg;
        if (orch.crash_at[0] == '\0') {
                return;
        }
        snprintf(point, sizeof(point), step > 0 ? "%s:%s" : "%s", kind, order_orch_step_name(step));
        if (strcmp(point, orch.crash_at) == 0) {
                fprintf(stderr, "mercato-order: orch_crash_at %s reached: exiting\n", point);
                _exit(137);
        }
}

/*
 * Commands
 */

/* The driver's command: SagaParticipant/Run by RPC to the step's participant. */
static order_orch_cmd
command_send(void *arg, int step, const char *action, const Mercato__Event__V1__SagaOrder *so,
    int64_t timeout_ms, order_orch_answer *a)
{
        Mercato__Txn__V1__SagaCommand cmd = MERCATO__TXN__V1__SAGA_COMMAND__INIT;
        RPC_PB_CLEANUP ProtobufCMessage *msg = NULL;
        rpc_call_opts opts = { .timeout_ms = timeout_ms };
        const char *peer = peer_names[step - 1];
        rpc_client *c = orch.peers[step - 1];
        rpc_error e = { 0 };
        rpc_status st;

        (void) arg;
        if (c == NULL) {
                snprintf(a->error, sizeof(a->error), "no address for %s", peer);
                return ORDER_ORCH_CMD_RETRY;
        }
        cmd.action = (char *) action;
        cmd.order = (Mercato__Event__V1__SagaOrder *) so;
        st = rpc_client_call(c, ORCH_METHOD_RUN, &cmd.base,
            &mercato__txn__v1__saga_command_reply__descriptor, &msg, &opts, &e);
        if (st == RPC_OK) {
                const Mercato__Txn__V1__SagaCommandReply *r
                    = (const Mercato__Txn__V1__SagaCommandReply *) msg;

                if (r->done) {
                        a->discount = r->discount;
                        return ORDER_ORCH_CMD_DONE;
                }
                snprintf(a->reason, sizeof(a->reason), "%s", r->reason);
                snprintf(a->error, sizeof(a->error), "%s said no: %s", peer, r->reason);
                return ORDER_ORCH_CMD_REFUSED;
        }
        snprintf(a->error, sizeof(a->error), "%s: %s: %s", peer, rpc_status_name(st), e.message);
        if (e.transport || st == RPC_UNAVAILABLE || st == RPC_DEADLINE_EXCEEDED || st == RPC_ABORTED
            || st == RPC_RESOURCE_EXHAUSTED) {
                return ORDER_ORCH_CMD_RETRY;
        }
        order_failure_set(&a->failure, peer, st, "%s", e.message);
        return ORDER_ORCH_CMD_ERROR;
}

/* Wakes the relay after a completion added order.completed. */
static void
completed(void *arg)
{
        (void) arg;
        svc_relay_wake(orch.s, SVC_DATASET_SPLIT);
}

/*
 * The driver
 */

/* How a drive ended. */
typedef enum drive_end {
        DRIVE_TERMINAL = 0, /* the saga and its order ended: *rec is the order */
        DRIVE_LATER = 1,    /* not finished: its driver's time is up, or recovery's next look */
        DRIVE_FAILED = 2,   /* the database failed: st */
} drive_end;

/* Drives a claimed saga until it is terminal (*rec: the order), or until until_mono_ms
 * (a PlaceOrder's time to answer); with until_mono_ms 0 (recovery) until a command must
 * wait, and then puts recovery's next look off by the backoff. */
static drive_end
drive(db_conn *db, int64_t order_id, int64_t until_mono_ms, order_rec *rec, rpc_status *ret_st)
{
        order_orch_saga g = { 0 }; /* the log as the moves left it: read once per drive */
        order_rec order;
        rpc_status st;
        drive_end end = DRIVE_LATER;

        st = order_store_get(db, order_id, &order);
        while (st == RPC_OK && !atomic_load(&orch.stopping)) {
                int64_t wait = 0;
                bool terminal = false;

                /* A PlaceOrder's command waits no longer than the call can. */
                int64_t budget
                    = until_mono_ms > 0 ? until_mono_ms - rpc_now_mono_ms() : ORCH_CALL_TIMEOUT_MS;

                st = order_orch_move(db, &orch.driver, &order, budget, &g, &wait, &terminal, rec);
                if (terminal) {
                        end = DRIVE_TERMINAL;
                        break;
                }
                if (st != RPC_OK) {
                        break;
                }
                if (wait == 0) {
                        continue;
                }
                if (until_mono_ms == 0) {
                        st = order_orch_defer(
                            db, order_id, wait < ORCH_DEFER_MAX_MS ? wait : ORCH_DEFER_MAX_MS);
                        break;
                }
                if (rpc_now_mono_ms() + wait >= until_mono_ms) {
                        break;
                }
                nap(wait);
        }
        if (st != RPC_OK) {
                end = DRIVE_FAILED;
        }
        order_rec_fini(&order);
        *ret_st = st;
        return end;
}

/*
 * Recovery
 */

static void *
recovery_main(void *arg)
{
        db_conn *db = NULL;

        (void) arg;
        while (!atomic_load(&orch.stopping)) {
                int64_t ids[ORCH_DUE_BATCH];
                size_t n = 0;
                char err[256];

                if (db == NULL
                    && svc_connect(orch.s, SVC_DATASET_SPLIT, &db, err, sizeof(err)) != RPC_OK) {
                        db = NULL;
                } else if (db_ensure(db) == RPC_OK
                    && order_orch_due(db, ORCH_DUE_BATCH, ids, &n) == RPC_OK) {
                        for (size_t i = 0; i < n && !atomic_load(&orch.stopping); i++) {
                                order_rec rec;
                                rpc_status st;

                                if (!claim(ids[i])) {
                                        continue;
                                }
                                if (drive(db, ids[i], 0, &rec, &st) == DRIVE_TERMINAL) {
                                        order_rec_fini(&rec);
                                }
                                unclaim(ids[i]);
                        }
                }
                if (n < ORCH_DUE_BATCH) {
                        nap(orch.scan_ms);
                }
        }
        db_close(db);
        return NULL;
}

/*
 * PlaceOrder
 */

/* Drives the saga of order_id for the call, unless another driver has it, and answers
 * with the order as it is then. */
static rpc_status
drive_and_answer(rpc_call *call, db_conn *db, int64_t order_id, bool start,
    Mercato__Order__V1__PlaceOrderResponse *resp)
{
        order_rec rec;
        rpc_status st = RPC_OK;

        if (start && claim(order_id)) {
                drive_end end = drive(db, order_id, order_saga_answer_by(call), &rec, &st);
                unclaim(order_id);
                if (end == DRIVE_TERMINAL) {
                        resp->order = order_msg(call, &rec, NULL);
                        order_rec_fini(&rec);
                        return RPC_OK;
                }
                if (db_in_transaction(db)) {
                        db_rollback(db);
                }
                if (end == DRIVE_FAILED && st != RPC_OK) {
                        /* Recovery takes it from here; the order is as the log left it. */
                        fprintf(stderr, "mercato-order: saga of order %lld: %s: %s\n",
                            (long long) order_id, rpc_status_name(st), db_errmsg(db));
                }
        }
        st = order_store_get(db, order_id, &rec);
        if (st != RPC_OK) {
                return rpc_call_error(
                    call, st, "order %lld: %s", (long long) order_id, db_errmsg(db));
        }
        resp->order = order_msg(call, &rec, NULL);
        order_rec_fini(&rec);
        return RPC_OK;
}

/* An order an idempotency key placed already: driven on if it is an orchestrated saga
 * still in flight, then answered. */
static rpc_status
answer_key(
    rpc_call *call, db_conn *db, const char *key, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        order_rec rec;
        rpc_status st = order_store_find_key(db, key, &rec);
        int64_t order_id;
        bool open;

        if (st == RPC_NOT_FOUND) {
                return rpc_call_error(
                    call, RPC_ABORTED, "order of idempotency key: not found, retry");
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        order_id = rec.order_id;
        open = rec.status == ORDER_PENDING
            && (rec.mode == ORDER_MODE_ORCHESTRATION || rec.mode == ORDER_MODE_TCC);
        order_rec_fini(&rec);
        return drive_and_answer(call, db, order_id, open, resp);
}

/* The modes start one after the other while the server already answers: a PlaceOrder
 * that comes first waits for the orchestrator, up to ORCH_START_WAIT_MS. */
static bool
started_wait(void)
{
        int64_t until = rpc_now_mono_ms() + ORCH_START_WAIT_MS;

        while (!atomic_load(&orch.started) && !atomic_load(&orch.stopping)
            && rpc_now_mono_ms() < until) {
                nap(20);
        }
        return atomic_load(&orch.started);
}

rpc_status
order_orch_place(rpc_call *call, const order_request *r, order_mode mode,
    Mercato__Order__V1__PlaceOrderResponse *resp)
{
        svc *s = svc_of_call(call);
        svc_step_result create = svc_step(s != NULL ? svc_conf(s) : NULL, "order", "create");
        order_line *lines = rpc_call_alloc(call, ORDER_ITEMS_MAX * sizeof(*lines));
        int64_t order_id = 0;
        int64_t total = 0;
        rpc_status st;

        if (create == SVC_STEP_FAIL) {
                return rpc_call_error(call, RPC_INTERNAL, "order.create failed (step switch)");
        }
        if (!started_wait() || atomic_load(&orch.stopping)) {
                return rpc_call_error(call, RPC_UNAVAILABLE, "the orchestrator is not running");
        }
        db_conn *db = svc_db_dataset(call, SVC_DATASET_SPLIT);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        if (r->idempotency_key[0] != '\0') {
                st = answer_key(call, db, r->idempotency_key, resp);
                if (st != RPC_ABORTED) {
                        return st;
                }
        }
        st = order_saga_price(call, r, lines, &total);
        if (st == RPC_OK) {
                st = order_saga_check_user(call, r->user_id);
        }
        if (st != RPC_OK) {
                return st;
        }
        order_new on = {
                .user_id = r->user_id,
                .items = lines,
                .n_items = r->n_lines,
                .total = total,
                .coupon_id = r->coupon_id,
                .mode = mode,
                .status = ORDER_PENDING,
                .idempotency_key = r->idempotency_key,
        };
        st = order_orch_create(db, &on, orch.timeout_ms, &order_id, NULL);
        if (st == RPC_ALREADY_EXISTS && r->idempotency_key[0] != '\0') {
                return answer_key(call, db, r->idempotency_key, resp);
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "create order: %s", db_errmsg(db));
        }
        if (create == SVC_STEP_TIMEOUT) {
                /* Nothing is sent: recovery finds the saga once its deadline has passed. */
                st = order_orch_defer(db, order_id, orch.timeout_ms + 1);
                if (st != RPC_OK) {
                        return rpc_call_error(call, st, "defer: %s", db_errmsg(db));
                }
        }
        return drive_and_answer(call, db, order_id, create == SVC_STEP_OK, resp);
}

/*
 * Life cycle
 */

/* Reads [order] saga_timeout_ms (the deadline), saga_scan_ms (recovery's period) and
 * orch_stuck_after, opens the participants' clients and starts recovery. */
static rpc_status
orch_start(svc *s)
{
        const rpc_conf *conf = svc_conf(s);
        int64_t stuck
            = rpc_conf_get_int(conf, "order", "orch_stuck_after", ORCH_STUCK_AFTER_DEFAULT);

        if (stuck < 1 || stuck > 1000000) {
                fprintf(stderr, "mercato-order: orch_stuck_after must be 1..1000000\n");
                return RPC_INVALID_ARGUMENT;
        }
        orch.s = s;
        orch.timeout_ms = order_saga_timeout_ms();
        orch.scan_ms = order_saga_scan_ms();
        orch.stuck_after = (int) stuck;
        const char *crash = rpc_conf_get(conf, "order", "orch_crash_at");
        snprintf(orch.crash_at, sizeof(orch.crash_at), "%s",
            crash != NULL && strcmp(crash, "none") != 0 ? crash : "");
        orch.driver = (order_orch_driver) {
                .command = command_send,
                .point = crash_if,
                .completed = completed,
                .complete_sw = svc_step(conf, "order", "complete"),
                .call_timeout_ms = ORCH_CALL_TIMEOUT_MS,
                .stuck_after = orch.stuck_after,
        };
        for (int i = 0; i < ORDER_ORCH_STEPS; i++) {
                orch.peers[i] = order_saga_open_peer(conf, peer_names[i], ORCH_CALL_TIMEOUT_MS);
        }
        atomic_store(&orch.stopping, false);
        if (pthread_create(&orch.recovery, NULL, recovery_main, NULL) != 0) {
                return RPC_INTERNAL;
        }
        orch.recovery_running = true;
        atomic_store(&orch.started, true);
        return RPC_OK;
}

/* Stops recovery and wakes the drivers that wait, which answer PENDING. */
static void
orch_stop(svc *s)
{
        (void) s;
        pthread_mutex_lock(&orch.mu);
        atomic_store(&orch.stopping, true);
        pthread_cond_broadcast(&orch.cv);
        pthread_mutex_unlock(&orch.mu);
        if (orch.recovery_running) {
                pthread_join(orch.recovery, NULL);
                orch.recovery_running = false;
        }
        /* The clients stay open: handlers may still run until the server stops. */
}

static rpc_status
orch_place(rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        return order_orch_place(call, r, ORDER_MODE_ORCHESTRATION, resp);
}

const order_mode_ops order_orch_ops = {
        .mode = ORDER_MODE_ORCHESTRATION,
        .place = orch_place,
        .start = orch_start,
        .stop = orch_stop,
};
