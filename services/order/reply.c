/* reply.c: an Order message from a stored order, and the reply to a repeated idempotency key. */
#include "reply.h"

Mercato__Order__V1__Order *
order_msg(rpc_call *call, const order_rec *rec, Mercato__Order__V1__Order *msg)
{
        if (msg == NULL) {
                msg = rpc_call_alloc(call, sizeof(*msg));
                mercato__order__v1__order__init(msg);
        }
        msg->order_id = rec->order_id;
        msg->user_id = rec->user_id;
        msg->status = (Mercato__Order__V1__OrderStatus) rec->status;
        msg->reason = rpc_call_strdup(call, rec->reason != NULL ? rec->reason : "");
        msg->total = rec->total;
        msg->discount = rec->discount;
        msg->amount = rec->amount;
        msg->coupon_id = rec->coupon_id;
        msg->mode = (Mercato__Order__V1__Mode) rec->mode;
        msg->created_at_ms = rec->created_at_ms;
        msg->updated_at_ms = rec->updated_at_ms;
        if (rec->failure.branch[0] != '\0') {
                Mercato__Order__V1__OrderFailure *f = rpc_call_alloc(call, sizeof(*f));
                mercato__order__v1__order_failure__init(f);
                f->branch = rpc_call_strdup(call, rec->failure.branch);
                f->status = rpc_call_strdup(call, rec->failure.status);
                f->message = rpc_call_strdup(call, rec->failure.message);
                msg->failure = f;
        }
        msg->n_items = rec->n_items;
        msg->items
            = rpc_call_alloc(call, (rec->n_items > 0 ? rec->n_items : 1) * sizeof(*msg->items));
        for (size_t i = 0; i < rec->n_items; i++) {
                Mercato__Order__V1__OrderItem *it = rpc_call_alloc(call, sizeof(*it));
                mercato__order__v1__order_item__init(it);
                it->product_id = rec->items[i].product_id;
                it->quantity = rec->items[i].quantity;
                it->unit_price = rec->items[i].unit_price;
                msg->items[i] = it;
        }
        return msg;
}

rpc_status
order_reply_key(
    rpc_call *call, db_conn *db, const char *key, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        order_rec rec;
        rpc_status st = order_store_find_key(db, key, &rec);

        if (st == RPC_OK) {
                resp->order = order_msg(call, &rec, NULL);
                order_rec_fini(&rec);
        }
        return st;
}
