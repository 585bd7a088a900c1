/* monolith.c: PlaceOrder in the monolith mode: the call around order_monolith_run (monolith_tx.c). */
#include <string.h>

#include "modes.h"
#include "order_priv.h"
#include "reply.h"

/* Answers with the order an idempotency key placed. */
static rpc_status
reply_existing(
    rpc_call *call, db_conn *db, const char *key, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        rpc_status st = order_reply_key(call, db, key, resp);

        if (st != RPC_OK) {
                return rpc_call_error(call, st == RPC_NOT_FOUND ? RPC_ABORTED : st,
                    "order of idempotency key: %s",
                    st == RPC_NOT_FOUND ? "not found, retry" : db_errmsg(db));
        }
        return RPC_OK;
}

/* Runs a whole order as one local transaction on the monolith database. */
static rpc_status
monolith_place(rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        order_mono *o = rpc_call_alloc(call, sizeof(*o));
        order_mono_outcome out;
        order_rec rec;

        memset(o, 0, sizeof(*o));
        o->r = r;
        o->conf = svc_of_call(call) != NULL ? svc_conf(svc_of_call(call)) : NULL;
        o->n = r->n_lines;
        /* Monolith orders live in the monolith database, whatever the call's metadata. */
        db_conn *db = svc_db_dataset(call, SVC_DATASET_MONO);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        if (r->idempotency_key[0] != '\0') {
                rpc_status st = order_reply_key(call, db, r->idempotency_key, resp);
                if (st == RPC_OK) {
                        return RPC_OK;
                }
                if (st != RPC_NOT_FOUND) {
                        return rpc_call_error(call, st, "database: %s", db_errmsg(db));
                }
        }
        out = order_monolith_run(db, o);
        switch (out) {
        case ORDER_MONO_COMPLETED:
                svc_relay_wake(svc_of_call(call), SVC_DATASET_MONO);
                break;
        case ORDER_MONO_CANCELLED:
                break;
        case ORDER_MONO_EXISTS:
                return reply_existing(call, db, r->idempotency_key, resp);
        case ORDER_MONO_ERROR:
        default:
                return rpc_call_error(call, o->st, "%s", o->msg);
        }

        rec = (order_rec) {
                .order_id = o->order_id,
                .user_id = r->user_id,
                .status = out == ORDER_MONO_COMPLETED ? ORDER_COMPLETED : ORDER_CANCELLED,
                .reason = (char *) (o->reason != NULL ? o->reason : ""),
                .total = o->total,
                .discount = o->discount,
                .amount = o->total - o->discount,
                .coupon_id = r->coupon_id,
                .mode = ORDER_MODE_MONOLITH,
                .created_at_ms = o->created_at_ms,
                .updated_at_ms = o->updated_at_ms,
                .items = o->lines,
                .n_items = o->n,
        };
        resp->order = order_msg(call, &rec, NULL);
        return RPC_OK;
}

const order_mode_ops order_monolith_ops = {
        .mode = ORDER_MODE_MONOLITH,
        .place = monolith_place,
};
