/* orch_tx.c: the orchestrated saga's log: its transactions on the order's own database. */
#include <stdio.h>
#include <string.h>

#include "order_tx.h"

/* Transactions that abort run again, up to this many times in all. */
#define ORCH_TX_ATTEMPTS 3

/* Backoff between the sends of a command that got no answer. */
#define ORCH_BACKOFF_MIN_MS 20
#define ORCH_BACKOFF_MAX_MS 1000

static const char *const step_names[ORDER_ORCH_STEPS] = { "reserve", "debit", "capture" };
static const char *const undo_names[ORDER_ORCH_STEPS] = { "release", "refund", "refund" };

static const char *const step_state_names[] = {
        [ORDER_ORCH_PENDING] = "pending",
        [ORDER_ORCH_SENT] = "sent",
        [ORDER_ORCH_DONE] = "done",
        [ORDER_ORCH_REFUSED] = "refused",
        [ORDER_ORCH_COMPENSATING] = "compensating",
        [ORDER_ORCH_COMPENSATED] = "compensated",
        [ORDER_ORCH_CONFIRMING] = "confirming",
        [ORDER_ORCH_CONFIRMED] = "confirmed",
};

static const char *const state_names[] = {
        [ORDER_ORCH_FORWARD] = "forward",
        [ORDER_ORCH_BACKWARD] = "backward",
        [ORDER_ORCH_COMPLETED] = "completed",
        [ORDER_ORCH_CANCELLED] = "cancelled",
        [ORDER_ORCH_DECIDED] = "confirming",
};

#define N_STEP_STATES ((int) (sizeof(step_state_names) / sizeof(step_state_names[0])))
#define N_STATES ((int) (sizeof(state_names) / sizeof(state_names[0])))

static const db_stmt orch_stmt_list[] = {
        /* $1 order, $2 timeout in ms */
        { "orch_create",
            "INSERT INTO orch_saga (order_id, deadline_at)"
            " VALUES ($1, now() + $2 * interval '1 millisecond')",
            2 },
        /* $1 order */
        { "orch_create_steps",
            "INSERT INTO orch_step (order_id, step, name)"
            " VALUES ($1, 1, 'reserve'), ($1, 2, 'debit'), ($1, 3, 'capture')",
            1 },
        /* The saga and its steps in one round trip: a row per step, the saga's columns on
         * each (every move reads it). */
        { "orch_get",
            "SELECT s.state, s.reason, s.discount, s.failed_branch, s.failed_status,"
            " s.failed_message, floor(extract(epoch FROM s.deadline_at - now()) * 1000)::bigint,"
            " t.step, t.state, t.attempts, t.compensations, t.last_error"
            " FROM orch_saga s JOIN orch_step t ON t.order_id = s.order_id"
            " WHERE s.order_id = $1 ORDER BY t.step",
            1 },
        /* $1 order, $2 step, $3 state, $4 sent (0/1), $5 compensation (0/1), $6 last_error
         * (a NULL state or last_error keeps it) */
        { "orch_step_set",
            "UPDATE orch_step SET state = coalesce($3, state), attempts = attempts + $4,"
            " compensations = compensations + $5, last_error = coalesce($6, last_error),"
            " updated_at = now() WHERE order_id = $1 AND step = $2",
            6 },
        { "orch_discount",
            "UPDATE orch_saga SET discount = $2, updated_at = now() WHERE order_id = $1", 2 },
        /* $1 order, $2 reason, $3..$5 failure */
        { "orch_backward",
            "UPDATE orch_saga SET state = 'backward', reason = $2, failed_branch = $3,"
            " failed_status = $4, failed_message = $5, next_attempt_at = now(),"
            " updated_at = now() WHERE order_id = $1 AND state = 'forward'",
            5 },
        /* tcc: every try held, the decision to confirm */
        { "orch_confirm",
            "UPDATE orch_saga SET state = 'confirming', next_attempt_at = now(),"
            " updated_at = now() WHERE order_id = $1 AND state = 'forward'",
            1 },
        /* $1 order, $2 the state it ends in, $3 the state it must be in */
        { "orch_end",
            "UPDATE orch_saga SET state = $2, updated_at = now()"
            " WHERE order_id = $1 AND state = $3",
            3 },
        { "orch_defer",
            "UPDATE orch_saga SET next_attempt_at = now() + $2 * interval '1 millisecond'"
            " WHERE order_id = $1",
            2 },
        { "orch_due",
            "SELECT order_id FROM orch_saga WHERE state IN ('forward', 'backward', 'confirming')"
            " AND next_attempt_at <= now() ORDER BY next_attempt_at, order_id LIMIT $1",
            1 },
};

const db_stmt_table order_orch_stmts = {
        .stmts = orch_stmt_list,
        .n = sizeof(orch_stmt_list) / sizeof(orch_stmt_list[0]),
};

const char *
order_orch_step_state_name(order_orch_step_state st)
{
        return st >= ORDER_ORCH_PENDING && (int) st < N_STEP_STATES ? step_state_names[st] : "";
}

const char *
order_orch_state_name(order_orch_state st)
{
        return st >= ORDER_ORCH_FORWARD && (int) st < N_STATES ? state_names[st] : "";
}

/* A name back to its number, -1 if it is none of them. */
static int
name_index(const char *const *names, int n, const char *name)
{
        for (int i = 0; i < n; i++) {
                if (strcmp(names[i], name) == 0) {
                        return i;
                }
        }
        return -1;
}

/* What create_tx writes and draws. */
typedef struct create_arg {
        const order_new *on;
        int64_t timeout_ms;
        int64_t order_id;
        int64_t *ret_created_at_ms;
} create_arg;

static rpc_status
create_tx(db_conn *db, void *arg)
{
        create_arg *a = arg;
        db_params p;
        rpc_status st;

        st = order_store_create(db, a->on, &a->order_id, a->ret_created_at_ms);
        if (st == RPC_OK) {
                db_params_init(&p);
                db_params_i64(&p, a->order_id);
                db_params_i64(&p, a->timeout_ms);
                st = db_exec(db, "orch_create", &p, NULL);
        }
        if (st == RPC_OK) {
                db_params_init(&p);
                db_params_i64(&p, a->order_id);
                st = db_exec(db, "orch_create_steps", &p, NULL);
        }
        return st;
}

rpc_status
order_orch_create(db_conn *db, const order_new *on, int64_t timeout_ms, int64_t *ret_order_id,
    int64_t *ret_created_at_ms)
{
        create_arg a
            = { .on = on, .timeout_ms = timeout_ms, .ret_created_at_ms = ret_created_at_ms };
        rpc_status st = db_transaction(db, ORCH_TX_ATTEMPTS, create_tx, &a);

        if (st == RPC_OK) {
                *ret_order_id = a.order_id;
        }
        return st;
}

rpc_status
order_orch_load(db_conn *db, int64_t order_id, order_orch_saga *ret)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        *ret = (order_orch_saga) { .order_id = order_id };
        db_params_init(&p);
        db_params_i64(&p, order_id);
        st = db_exec(db, "orch_get", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (PQntuples(res) == 0) {
                return RPC_NOT_FOUND;
        }
        ret->state = (order_orch_state) name_index(state_names, N_STATES, db_get_str(res, 0, 0));
        snprintf(ret->reason, sizeof(ret->reason), "%s", db_get_str(res, 0, 1));
        ret->discount = db_get_i64(res, 0, 2);
        snprintf(ret->failure.branch, sizeof(ret->failure.branch), "%s", db_get_str(res, 0, 3));
        snprintf(ret->failure.status, sizeof(ret->failure.status), "%s", db_get_str(res, 0, 4));
        snprintf(ret->failure.message, sizeof(ret->failure.message), "%s", db_get_str(res, 0, 5));
        ret->deadline_in_ms = db_get_i64(res, 0, 6);
        if (PQntuples(res) != ORDER_ORCH_STEPS) {
                return RPC_INTERNAL;
        }
        for (int i = 0; i < ORDER_ORCH_STEPS; i++) {
                order_orch_step *s = &ret->steps[i];
                int k = name_index(step_state_names, N_STEP_STATES, db_get_str(res, i, 8));

                if ((int) db_get_i64(res, i, 7) != i + 1 || k < 0) {
                        return RPC_INTERNAL;
                }
                s->state = (order_orch_step_state) k;
                s->attempts = (int) db_get_i64(res, i, 9);
                s->compensations = (int) db_get_i64(res, i, 10);
                snprintf(s->last_error, sizeof(s->last_error), "%s", db_get_str(res, i, 11));
        }
        return ret->state >= ORDER_ORCH_FORWARD ? RPC_OK : RPC_INTERNAL;
}

/* The step update, in the caller's transaction or on its own; state NULL keeps it. */
static rpc_status
step_set(db_conn *db, int64_t order_id, int step, const char *state, bool compensation, bool sent,
    const char *last_error)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        db_params_i64(&p, step);
        if (state != NULL) {
                db_params_str(&p, state);
        } else {
                db_params_null(&p);
        }
        db_params_i64(&p, sent && !compensation ? 1 : 0);
        db_params_i64(&p, sent && compensation ? 1 : 0);
        if (last_error != NULL) {
                db_params_str(&p, last_error);
        } else {
                db_params_null(&p);
        }
        return db_exec(db, "orch_step_set", &p, NULL);
}

rpc_status
order_orch_step_set(db_conn *db, int64_t order_id, int step, order_orch_step_state state, bool sent,
    const char *last_error)
{
        if (step < 1 || step > ORDER_ORCH_STEPS) {
                return RPC_INVALID_ARGUMENT;
        }
        /* A compensation, a cancel and a confirm count as the step's second-phase sends. */
        return step_set(db, order_id, step, order_orch_step_state_name(state),
            state == ORDER_ORCH_COMPENSATING || state == ORDER_ORCH_CONFIRMING, sent, last_error);
}

/* What step_done_tx and backward_tx write. */
typedef struct change_arg {
        int64_t order_id;
        int step;
        int64_t discount;
        const char *reason;
        const order_failure *f;
        const char *last_error;
} change_arg;

static rpc_status
step_done_tx(db_conn *db, void *arg)
{
        const change_arg *a = arg;
        db_params p;
        rpc_status st;

        st = step_set(db, a->order_id, a->step, "done", false, false, "");
        if (st == RPC_OK) {
                db_params_init(&p);
                db_params_i64(&p, a->order_id);
                db_params_i64(&p, a->discount);
                st = db_exec(db, "orch_discount", &p, NULL);
        }
        return st;
}

rpc_status
order_orch_step_done(db_conn *db, int64_t order_id, int step, int64_t discount)
{
        change_arg a = { .order_id = order_id, .step = step, .discount = discount };

        return db_transaction(db, 1, step_done_tx, &a);
}

static rpc_status
backward_tx(db_conn *db, void *arg)
{
        const change_arg *a = arg;
        const order_failure *f = a->f;
        db_params p;
        rpc_status st = RPC_OK;

        if (a->step > 0) {
                /* A "no" leaves nothing to undo; any other cause leaves the step as it was
                 * (sent: done or not), for its compensation to settle. */
                bool refused = f == NULL && strcmp(a->reason, "timeout") != 0;
                st = step_set(db, a->order_id, a->step, refused ? "refused" : NULL, false, false,
                    a->last_error);
        }
        if (st == RPC_OK) {
                db_params_init(&p);
                db_params_i64(&p, a->order_id);
                db_params_str(&p, a->reason);
                db_params_str(&p, f != NULL ? f->branch : "");
                db_params_str(&p, f != NULL ? f->status : "");
                db_params_str(&p, f != NULL ? f->message : "");
                st = db_exec(db, "orch_backward", &p, NULL);
        }
        return st;
}

rpc_status
order_orch_backward(db_conn *db, int64_t order_id, int step, const char *reason,
    const order_failure *f, const char *last_error)
{
        change_arg a = { .order_id = order_id,
                .step = step,
                .reason = reason,
                .f = f,
                .last_error = last_error };

        return db_transaction(db, 1, backward_tx, &a);
}

/* What finish_tx ends, and the order as it ended (set once a run got that far). */
typedef struct finish_arg {
        int64_t order_id;
        bool complete;
        const char *from; /* the state it ends from */
        order_rec rec;
        bool have_rec;
} finish_arg;

static rpc_status
finish_tx(db_conn *db, void *arg)
{
        finish_arg *a = arg;
        order_orch_saga saga;
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        if (a->have_rec) {
                /* A run before this one read it, and its commit failed. */
                order_rec_fini(&a->rec);
                a->have_rec = false;
        }
        st = order_orch_load(db, a->order_id, &saga);
        if (st != RPC_OK) {
                return st;
        }
        db_params_init(&p);
        db_params_i64(&p, a->order_id);
        db_params_str(&p, a->complete ? "completed" : "cancelled");
        db_params_str(&p, a->from);
        st = db_exec_count(db, "orch_end", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        if (rows != 1) {
                return RPC_FAILED_PRECONDITION;
        }
        if (a->complete) {
                st = order_store_complete(db, a->order_id, saga.discount, NULL);
        } else {
                bool failed = strcmp(saga.reason, ORDER_REASON_PARTICIPANT_ERROR) == 0;
                st = order_store_cancel_failed(db, a->order_id,
                    saga.reason[0] != '\0' ? saga.reason : "timeout",
                    failed ? &saga.failure : NULL);
        }
        if (st == RPC_OK) {
                st = order_store_get(db, a->order_id, &a->rec);
                a->have_rec = st == RPC_OK;
        }
        if (st == RPC_OK && a->complete) {
                st = order_outbox_completed(db, a->rec.order_id, a->rec.user_id, a->rec.amount,
                    a->rec.items, a->rec.n_items, a->rec.updated_at_ms);
        }
        return st;
}

rpc_status
order_orch_finish(
    db_conn *db, int64_t order_id, bool complete, order_orch_state from, order_rec *ret_rec)
{
        finish_arg a
            = { .order_id = order_id, .complete = complete, .from = order_orch_state_name(from) };
        rpc_status st = db_transaction(db, ORCH_TX_ATTEMPTS, finish_tx, &a);

        if (st != RPC_OK) {
                if (a.have_rec) {
                        order_rec_fini(&a.rec);
                }
                return st;
        }
        *ret_rec = a.rec;
        return RPC_OK;
}

rpc_status
order_orch_confirm(db_conn *db, int64_t order_id)
{
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        st = db_exec_count(db, "orch_confirm", &p, &rows);
        return st == RPC_OK && rows != 1 ? RPC_FAILED_PRECONDITION : st;
}

rpc_status
order_orch_defer(db_conn *db, int64_t order_id, int64_t delay_ms)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        db_params_i64(&p, delay_ms);
        return db_exec(db, "orch_defer", &p, NULL);
}

rpc_status
order_orch_due(db_conn *db, int limit, int64_t *ids, size_t *ret_n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        *ret_n = 0;
        db_params_init(&p);
        db_params_i64(&p, limit);
        st = db_exec(db, "orch_due", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        for (int i = 0; i < PQntuples(res) && i < limit; i++) {
                ids[(*ret_n)++] = db_get_i64(res, i, 0);
        }
        return RPC_OK;
}

const char *
order_orch_step_name(int step)
{
        return step >= 1 && step <= ORDER_ORCH_STEPS ? step_names[step - 1] : "";
}

const char *
order_orch_undo_name(int step)
{
        return step >= 1 && step <= ORDER_ORCH_STEPS ? undo_names[step - 1] : "";
}

/*
 * The driver's moves (orch.c's NOTES)
 */

static void
point(const order_orch_driver *d, const char *kind, int step)
{
        if (d->point != NULL) {
                d->point(d->arg, kind, step);
        }
}

/* The index of the step to run forward (0-based), ORDER_ORCH_STEPS when all are done. */
static int
next_forward(const order_orch_saga *g)
{
        int i = 0;

        while (i < ORDER_ORCH_STEPS && g->steps[i].state == ORDER_ORCH_DONE) {
                i++;
        }
        return i;
}

/* The index of the step to compensate next (the last one sent), -1 when none is left. */
static int
next_backward(const order_orch_saga *g)
{
        for (int i = ORDER_ORCH_STEPS - 1; i >= 0; i--) {
                order_orch_step_state st = g->steps[i].state;
                if (st == ORDER_ORCH_SENT || st == ORDER_ORCH_DONE
                    || st == ORDER_ORCH_COMPENSATING) {
                        return i;
                }
        }
        return -1;
}

/* Reports a saga that just became stuck: a second-phase command (action) sent stuck_after
 * times (this was send number `sends`). */
static void
note_stuck(const order_orch_driver *d, const order_orch_saga *g, int i, int sends,
    const char *action, const char *error)
{
        if (sends == d->stuck_after) {
                fprintf(stderr,
                    "mercato-order: saga of order %lld stuck: %s of step %s sent %d times: %s\n",
                    (long long) g->order_id, action, step_names[i], d->stuck_after, error);
        }
}

/* The backoff before the next send, after `sends` sends of a command. */
static int64_t
backoff_ms(int sends, int64_t max)
{
        int64_t ms = ORCH_BACKOFF_MIN_MS;

        for (int i = 1; i < sends && ms < max; i++) {
                ms *= 2;
        }
        return ms < max ? ms : max;
}

/* order_orch_step_set of step i (0-based), and on OK the same change in g, the log as this
 * driver holds it. */
static rpc_status
set_step(db_conn *db, order_orch_saga *g, int i, order_orch_step_state state, bool sent,
    const char *last_error)
{
        order_orch_step *s = &g->steps[i];
        rpc_status st = order_orch_step_set(db, g->order_id, i + 1, state, sent, last_error);

        if (st != RPC_OK) {
                return st;
        }
        s->state = state;
        if (sent && (state == ORDER_ORCH_COMPENSATING || state == ORDER_ORCH_CONFIRMING)) {
                s->compensations++;
        } else if (sent) {
                s->attempts++;
        }
        if (last_error != NULL) {
                snprintf(s->last_error, sizeof(s->last_error), "%s", last_error);
        }
        return RPC_OK;
}

/* What a command does: a step forward, its compensation (a cancel, in tcc), or a confirm. */
typedef enum cmd_kind {
        CMD_STEP = 0,
        CMD_UNDO = 1,
        CMD_CONFIRM = 2,
} cmd_kind;

/* The action of kind for step (1-based), as the participant names it: the saga's step
 * and compensation names, or tcc's phases. */
static const char *
action_of(bool tcc, cmd_kind kind, int step)
{
        static const char *const tcc_actions[] = { "try", "cancel", "confirm" };

        if (tcc) {
                return tcc_actions[kind];
        }
        return kind == CMD_STEP ? step_names[step - 1] : undo_names[step - 1];
}

/* Sends the command of kind for step of order: the SagaOrder is the order with the
 * discount the user step gave. */
static order_orch_cmd
command(const order_orch_driver *d, int step, cmd_kind kind, const order_rec *order,
    int64_t discount, int64_t timeout_ms, order_orch_answer *a)
{
        Mercato__Event__V1__SagaOrder so = MERCATO__EVENT__V1__SAGA_ORDER__INIT;
        Mercato__Event__V1__SagaOrder__Line lines[ORDER_ITEMS_MAX];
        Mercato__Event__V1__SagaOrder__Line *ptrs[ORDER_ITEMS_MAX];
        order_orch_cmd res;

        for (size_t i = 0; i < order->n_items && i < ORDER_ITEMS_MAX; i++) {
                mercato__event__v1__saga_order__line__init(&lines[i]);
                lines[i].product_id = order->items[i].product_id;
                lines[i].quantity = order->items[i].quantity;
                lines[i].unit_price = order->items[i].unit_price;
                ptrs[i] = &lines[i];
        }
        so.order_id = order->order_id;
        so.user_id = order->user_id;
        so.coupon_id = order->coupon_id;
        so.total = order->total;
        so.discount = discount;
        so.amount = order->total - discount;
        so.items = ptrs;
        so.n_items = order->n_items < ORDER_ITEMS_MAX ? order->n_items : ORDER_ITEMS_MAX;
        *a = (order_orch_answer) { 0 };
        res = d->command(d->arg, step, action_of(order->mode == ORDER_MODE_TCC, kind, step), &so,
            timeout_ms > 0 ? timeout_ms : 1, a);
        if (kind == CMD_STEP) {
                point(d, "answered", step);
        }
        return res;
}

/* The index of the branch to confirm next (0-based), ORDER_ORCH_STEPS when all are. */
static int
next_confirm(const order_orch_saga *g)
{
        int i = 0;

        while (i < ORDER_ORCH_STEPS && g->steps[i].state == ORDER_ORCH_CONFIRMED) {
                i++;
        }
        return i;
}

/* Ends the saga (complete, from state `from`): *ret_terminal and *rec once it did;
 * *ret_stale when another driver ended it meanwhile. */
static rpc_status
end(db_conn *db, const order_orch_driver *d, const order_orch_saga *g, bool complete,
    order_orch_state from, bool *ret_terminal, bool *ret_stale, order_rec *rec)
{
        rpc_status st;

        point(d, "finish", 0);
        st = order_orch_finish(db, g->order_id, complete, from, rec);
        if (st == RPC_OK) {
                *ret_terminal = true;
                if (complete && d->completed != NULL) {
                        d->completed(d->arg);
                }
        }
        /* FAILED_PRECONDITION: another driver ended it; the next move reads how. */
        *ret_stale = st == RPC_FAILED_PRECONDITION;
        return st == RPC_FAILED_PRECONDITION ? RPC_OK : st;
}

/* A second-phase command (a compensation, a cancel, a confirm) of step i (0-based): recorded
 * sent in state `sending`, sent, and recorded `done` once answered; else sent again after
 * the backoff, for ever, with a report once it was sent stuck_after times. */
static rpc_status
second_phase(db_conn *db, const order_orch_driver *d, const order_rec *order, order_orch_saga *g,
    int i, cmd_kind kind, int64_t budget, int64_t *ret_wait)
{
        order_orch_step_state sending
            = kind == CMD_CONFIRM ? ORDER_ORCH_CONFIRMING : ORDER_ORCH_COMPENSATING;
        order_orch_step_state done
            = kind == CMD_CONFIRM ? ORDER_ORCH_CONFIRMED : ORDER_ORCH_COMPENSATED;
        order_orch_answer a;
        rpc_status st;

        if (budget <= 0) {
                *ret_wait = 1;
                return RPC_OK;
        }
        int sends = g->steps[i].compensations + 1;
        st = set_step(db, g, i, sending, true, NULL);
        if (st != RPC_OK) {
                return st;
        }
        point(d, kind == CMD_CONFIRM ? "confirm" : "undo", i + 1);
        if (command(d, i + 1, kind, order, g->discount,
                budget < d->call_timeout_ms ? budget : d->call_timeout_ms, &a)
            == ORDER_ORCH_CMD_DONE) {
                return set_step(db, g, i, done, false, "");
        }
        note_stuck(d, g, i, sends, action_of(order->mode == ORDER_MODE_TCC, kind, i + 1), a.error);
        *ret_wait = backoff_ms(sends, ORCH_BACKOFF_MAX_MS);
        return set_step(db, g, i, sending, false, a.error);
}

/* One move on g, the log as this driver holds it (order_orch_move). *ret_stale: the move
 * changed the log in a way g does not follow (a turn backward, an end); read it again. */
static rpc_status
move(db_conn *db, const order_orch_driver *d, const order_rec *order, int64_t budget,
    order_orch_saga *g, int64_t *ret_wait, bool *ret_terminal, bool *ret_stale, order_rec *rec)
{
        bool tcc = order->mode == ORDER_MODE_TCC;
        order_orch_answer a;
        rpc_status st;
        int i;

        if (g->state == ORDER_ORCH_COMPLETED || g->state == ORDER_ORCH_CANCELLED) {
                *ret_terminal = true;
                return order_store_get(db, order->order_id, rec);
        }
        if (g->state == ORDER_ORCH_DECIDED) {
                /* Decided: no deadline holds any more, every confirm is sent until done. */
                i = next_confirm(g);
                if (i == ORDER_ORCH_STEPS) {
                        return end(
                            db, d, g, true, ORDER_ORCH_DECIDED, ret_terminal, ret_stale, rec);
                }
                return second_phase(db, d, order, g, i, CMD_CONFIRM, budget, ret_wait);
        }
        if (g->state == ORDER_ORCH_FORWARD) {
                if (g->deadline_in_ms <= 0) {
                        *ret_stale = true;
                        return order_orch_backward(db, g->order_id, 0, "timeout", NULL, NULL);
                }
                i = next_forward(g);
                if (i == ORDER_ORCH_STEPS) {
                        svc_step_result sw = d->complete_sw;
                        order_failure f;

                        if (sw == SVC_STEP_FAIL) {
                                order_failure_set(&f, "order", RPC_INTERNAL,
                                    "order.complete failed (step switch)");
                                *ret_stale = true;
                                return order_orch_backward(
                                    db, g->order_id, 0, ORDER_REASON_PARTICIPANT_ERROR, &f, NULL);
                        }
                        if (sw == SVC_STEP_TIMEOUT) {
                                *ret_wait = g->deadline_in_ms + 1;
                                return RPC_OK;
                        }
                        if (!tcc) {
                                return end(db, d, g, true, ORDER_ORCH_FORWARD, ret_terminal,
                                    ret_stale, rec);
                        }
                        point(d, "decide", 0);
                        st = order_orch_confirm(db, g->order_id);
                        if (st == RPC_OK) {
                                g->state = ORDER_ORCH_DECIDED;
                        }
                        *ret_stale = st != RPC_OK;
                        return st == RPC_FAILED_PRECONDITION ? RPC_OK : st;
                }
                if (budget <= 0) {
                        *ret_wait = 1;
                        return RPC_OK;
                }
                int sends = g->steps[i].attempts + 1;
                st = set_step(db, g, i, ORDER_ORCH_SENT, true, NULL);
                if (st != RPC_OK) {
                        return st;
                }
                point(d, "sent", i + 1);
                int64_t t = g->deadline_in_ms < d->call_timeout_ms ? g->deadline_in_ms
                                                                   : d->call_timeout_ms;
                t = t < budget ? t : budget;
                switch (command(d, i + 1, CMD_STEP, order, g->discount, t, &a)) {
                case ORDER_ORCH_CMD_DONE:
                        if (i != 1) {
                                return set_step(db, g, i, ORDER_ORCH_DONE, false, "");
                        }
                        st = order_orch_step_done(db, g->order_id, i + 1, a.discount);
                        if (st == RPC_OK) {
                                g->steps[i].state = ORDER_ORCH_DONE;
                                g->steps[i].last_error[0] = '\0';
                                g->discount = a.discount;
                        }
                        return st;
                case ORDER_ORCH_CMD_REFUSED:
                        *ret_stale = true;
                        return order_orch_backward(db, g->order_id, i + 1, a.reason, NULL, a.error);
                case ORDER_ORCH_CMD_ERROR:
                        *ret_stale = true;
                        return order_orch_backward(db, g->order_id, i + 1,
                            ORDER_REASON_PARTICIPANT_ERROR, &a.failure, a.error);
                case ORDER_ORCH_CMD_RETRY:
                default:
                        *ret_wait = backoff_ms(sends, ORCH_BACKOFF_MAX_MS);
                        return set_step(db, g, i, ORDER_ORCH_SENT, false, a.error);
                }
        }
        i = next_backward(g);
        if (i < 0) {
                return end(db, d, g, false, ORDER_ORCH_BACKWARD, ret_terminal, ret_stale, rec);
        }
        return second_phase(db, d, order, g, i, CMD_UNDO, budget, ret_wait);
}

rpc_status
order_orch_move(db_conn *db, const order_orch_driver *d, const order_rec *order, int64_t budget_ms,
    order_orch_saga *g, int64_t *ret_wait, bool *ret_terminal, order_rec *rec)
{
        bool stale = false;
        rpc_status st;

        *ret_wait = 0;
        *ret_terminal = false;
        if (g->order_id != order->order_id) {
                st = order_orch_load(db, order->order_id, g);
                if (st != RPC_OK) {
                        g->order_id = 0;
                        return st;
                }
                g->deadline_mono_ms = rpc_now_mono_ms() + g->deadline_in_ms;
        } else {
                g->deadline_in_ms = g->deadline_mono_ms - rpc_now_mono_ms();
        }
        st = move(db, d, order, budget_ms, g, ret_wait, ret_terminal, &stale, rec);
        if (st != RPC_OK || stale || *ret_terminal) {
                g->order_id = 0; /* read it again next time */
        }
        return st;
}
