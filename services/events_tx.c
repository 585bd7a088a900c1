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
