/* events_tx.c: what the event consumers' transactions share: saga keys and events. */
#include <inttypes.h>
#include <stdio.h>

#include "events_tx.h"
#include "txn.h"

void
events_saga_key(char *buf, size_t len, const char *action, int64_t order_id)
{
        snprintf(buf, len, "%s:%" PRId64, action, order_id);
}

rpc_status
events_saga_consume(db_conn *db, const char *consumer, const char *action, int64_t order_id,
    rpc_status (*apply)(db_conn *db, void *arg), void *arg, bool *ret_duplicate)
{
        char key[64];

        events_saga_key(key, sizeof(key), action, order_id);
        return txn_consume(db, consumer, key, apply, arg, ret_duplicate);
}

rpc_status
events_saga_fence(db_conn *db, const char *consumer, const char *action, int64_t order_id)
{
        char key[64];
        rpc_status st;

        events_saga_key(key, sizeof(key), action, order_id);
        st = txn_barrier_enter(db, consumer, key);
        return st == RPC_ALREADY_EXISTS ? RPC_OK : st;
}

rpc_status
events_saga_emit(db_conn *db, const char *source, const char *topic,
    const Mercato__Event__V1__SagaOrder *so, const char *reason)
{
        Mercato__Event__V1__SagaOrder ev = MERCATO__EVENT__V1__SAGA_ORDER__INIT;

        if (reason == NULL) {
                return txn_outbox_add(db, source, topic, so->order_id, &so->base, NULL);
        }
        ev.order_id = so->order_id;
        ev.user_id = so->user_id;
        ev.coupon_id = so->coupon_id;
        ev.total = so->total;
        ev.reason = (char *) reason;
        return txn_outbox_add(db, source, topic, so->order_id, &ev.base, NULL);
}

rpc_status
events_saga_step_end(db_conn *db, const char *source, const char *consumer, const char *action,
    const Mercato__Event__V1__SagaOrder *so, const char *topic, const char *reason,
    int64_t discount, txn_outcome *orch)
{
        char key[64];
        rpc_status st;

        if (orch == NULL) {
                return events_saga_emit(db, source, topic, so, reason);
        }
        events_saga_key(key, sizeof(key), action, so->order_id);
        st = txn_outcome_record(db, consumer, key, reason != NULL ? reason : "", discount);
        if (st == RPC_OK) {
                *orch = (txn_outcome) { .found = true, .discount = discount };
                snprintf(orch->reason, sizeof(orch->reason), "%s", reason != NULL ? reason : "");
        }
        return st;
}

rpc_status
events_orch_consume(db_conn *db, const char *consumer, const char *action, int64_t order_id,
    rpc_status (*apply)(db_conn *db, void *arg), void *arg, bool compensation, txn_outcome *out,
    bool *ret_duplicate)
{
        char key[64];
        rpc_status st;

        *out = (txn_outcome) { .found = true };
        st = events_saga_consume(db, consumer, action, order_id, apply, arg, ret_duplicate);
        if (st != RPC_OK || !*ret_duplicate || compensation) {
                return st;
        }
        events_saga_key(key, sizeof(key), action, order_id);
        st = txn_outcome_get(db, consumer, key, out);
        if (st == RPC_OK && !out->found) {
                snprintf(out->reason, sizeof(out->reason), "%s", EVENTS_REASON_COMPENSATED);
        }
        return st;
}

static const char *const tcc_phase_names[] = {
        [EVENTS_TCC_TRY] = "try",
        [EVENTS_TCC_CONFIRM] = "confirm",
        [EVENTS_TCC_CANCEL] = "cancel",
};

const char *
events_tcc_phase_name(events_tcc_phase phase)
{
        return phase >= EVENTS_TCC_TRY && phase <= EVENTS_TCC_CANCEL ? tcc_phase_names[phase] : "";
}

/* What tcc_apply runs behind the barrier. */
typedef struct tcc_arg {
        const char *consumer;
        events_tcc_phase phase;
        int64_t order_id;
        events_tcc_fn apply;
        void *arg;
        txn_outcome *out;
} tcc_arg;

static rpc_status
tcc_apply(db_conn *db, void *arg)
{
        const tcc_arg *a = arg;
        const char *reason = NULL;
        int64_t discount = 0;
        char key[64];
        rpc_status st;

        if (a->phase == EVENTS_TCC_CANCEL) {
                st = events_saga_fence(db, a->consumer, "try", a->order_id);
                return st == RPC_OK ? a->apply(db, a->arg, a->phase, &reason, &discount) : st;
        }
        if (a->phase == EVENTS_TCC_CONFIRM) {
                return a->apply(db, a->arg, a->phase, &reason, &discount);
        }
        st = db_command(db, "SAVEPOINT tcc_try");
        if (st == RPC_OK) {
                st = a->apply(db, a->arg, a->phase, &reason, &discount);
        }
        if (st == RPC_OK && reason != NULL) {
                discount = 0;
                st = db_command(db, "ROLLBACK TO SAVEPOINT tcc_try");
        }
        if (st != RPC_OK) {
                return st;
        }
        events_saga_key(key, sizeof(key), "try", a->order_id);
        st = txn_outcome_record(db, a->consumer, key, reason != NULL ? reason : "", discount);
        if (st == RPC_OK) {
                *a->out = (txn_outcome) { .found = true, .discount = discount };
                snprintf(
                    a->out->reason, sizeof(a->out->reason), "%s", reason != NULL ? reason : "");
        }
        return st;
}

rpc_status
events_tcc_consume(db_conn *db, const char *consumer, events_tcc_phase phase, int64_t order_id,
    events_tcc_fn apply, void *arg, txn_outcome *out, bool *ret_duplicate)
{
        tcc_arg a = { .consumer = consumer,
                .phase = phase,
                .order_id = order_id,
                .apply = apply,
                .arg = arg,
                .out = out };

        return events_orch_consume(db, consumer, events_tcc_phase_name(phase), order_id, tcc_apply,
            &a, phase != EVENTS_TCC_TRY, out, ret_duplicate);
}
