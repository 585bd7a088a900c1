/* handlers.c: the PaymentService methods: the payment of an order. */
#include "payment.pb-c.h"
#include "payment_priv.h"
#include "payment_store.h"
#include "svc.h"

RPC_HANDLER(
    handle_get_payment, Mercato__Payment__V1__GetPaymentRequest, Mercato__Payment__V1__Payment)
{
        payment_rec rec;
        rpc_status st;

        if (req->order_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be > 0");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = payment_store_get(db, req->order_id, &rec);
        if (st == RPC_NOT_FOUND) {
                return rpc_call_error(
                    call, st, "no payment for order %lld", (long long) req->order_id);
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        resp->payment_id = rec.payment_id;
        resp->order_id = rec.order_id;
        resp->user_id = rec.user_id;
        resp->amount = rec.amount;
        resp->status = (Mercato__Payment__V1__PaymentStatus) rec.status;
        resp->created_at_ms = rec.created_at_ms;
        resp->updated_at_ms = rec.updated_at_ms;
        return RPC_OK;
}

const rpc_method payment_methods[PAYMENT_N_METHODS] = {
        RPC_METHOD_ENTRY("GetPayment", handle_get_payment,
            mercato__payment__v1__get_payment_request__descriptor,
            mercato__payment__v1__payment__descriptor, RPC_METHOD_IDEMPOTENT),
};
