/* handlers.c: the OrderService methods: place an order (by mode), one order, a user's orders. */
#include <stdlib.h>
#include <string.h>

#include "modes.h"
#include "order_priv.h"
#include "reply.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define QUANTITY_MAX INT64_C(1000000000000)

order_mode
order_default_mode(const rpc_conf *conf)
{
        const char *name = conf != NULL ? rpc_conf_get(conf, "order", "mode") : NULL;

        return name != NULL ? order_mode_from_name(name) : ORDER_MODE_SAGA;
}

static int
line_cmp(const void *a, const void *b)
{
        const order_line *x = a;
        const order_line *y = b;

        return (x->product_id > y->product_id) - (x->product_id < y->product_id);
}

/* The mode a request runs in: its own, or the configured default. */
static order_mode
resolve_mode(rpc_call *call, Mercato__Order__V1__Mode m)
{
        svc *s = svc_of_call(call);

        if (m != MERCATO__ORDER__V1__MODE__MODE_UNSPECIFIED) {
                return (order_mode) m;
        }
        return order_default_mode(s != NULL ? svc_conf(s) : NULL);
}

RPC_HANDLER(handle_place_order, Mercato__Order__V1__PlaceOrderRequest,
    Mercato__Order__V1__PlaceOrderResponse)
{
        const order_mode_ops *ops;
        order_request *r;

        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (req->n_items == 0 || req->n_items > ORDER_ITEMS_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "an order holds 1..%d items", ORDER_ITEMS_MAX);
        }
        if (req->coupon_id < 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "coupon_id must be >= 0");
        }
        if (req->mode != MERCATO__ORDER__V1__MODE__MODE_UNSPECIFIED
            && order_mode_ops_of((order_mode) req->mode) == NULL) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "unknown mode %d", (int) req->mode);
        }
        if (strlen(rpc_call_idempotency_key(call)) > ORDER_KEY_MAX) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                    "idempotency key longer than %d bytes", ORDER_KEY_MAX);
        }
        r = rpc_call_alloc(call, sizeof(*r));
        memset(r, 0, sizeof(*r));
        r->user_id = req->user_id;
        r->coupon_id = req->coupon_id;
        r->idempotency_key = rpc_call_idempotency_key(call);
        for (size_t i = 0; i < req->n_items; i++) {
                const Mercato__Order__V1__PlaceOrderItem *it = req->items[i];
                if (it->product_id <= 0) {
                        return rpc_call_error(
                            call, RPC_INVALID_ARGUMENT, "item %zu: product_id must be > 0", i);
                }
                if (it->quantity <= 0 || it->quantity > QUANTITY_MAX) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                            "item %zu: quantity must be 1..1000000000000", i);
                }
                r->lines[i]
                    = (order_line) { .product_id = it->product_id, .quantity = it->quantity };
        }
        r->n_lines = req->n_items;
        /* By product id, as the order reads back; a product listed twice ends up adjacent. */
        qsort(r->lines, r->n_lines, sizeof(r->lines[0]), line_cmp);
        for (size_t i = 1; i < r->n_lines; i++) {
                if (r->lines[i].product_id == r->lines[i - 1].product_id) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                            "product %lld listed twice", (long long) r->lines[i].product_id);
                }
        }

        ops = order_mode_ops_of(resolve_mode(call, req->mode));
        if (ops == NULL) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown mode");
        }
        return ops->place(call, r, resp);
}

RPC_HANDLER(handle_get_order, Mercato__Order__V1__GetOrderRequest, Mercato__Order__V1__Order)
{
        order_rec rec;
        rpc_status st;

        if (req->order_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be > 0");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = order_store_get(db, req->order_id, &rec);
        if (st == RPC_NOT_FOUND) {
                return rpc_call_error(call, st, "no order %lld", (long long) req->order_id);
        }
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        order_msg(call, &rec, resp);
        order_rec_fini(&rec);
        return RPC_OK;
}

RPC_HANDLER(handle_list_orders, Mercato__Order__V1__ListOrdersRequest,
    Mercato__Order__V1__ListOrdersResponse)
{
        order_rec *recs = NULL;
        int64_t next = 0;
        int page_size = req->page_size;
        size_t n = 0;
        rpc_status st;

        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (page_size < 0 || page_size > PAGE_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "page_size must be 0..%d", PAGE_MAX);
        }
        if (req->before_id < 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "before_id must be >= 0");
        }
        if (page_size == 0) {
                page_size = PAGE_DEFAULT;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = order_store_list(db, req->user_id, req->before_id, page_size, &recs, &n, &next);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        resp->n_orders = n;
        resp->orders = rpc_call_alloc(call, (n > 0 ? n : 1) * sizeof(*resp->orders));
        for (size_t i = 0; i < n; i++) {
                resp->orders[i] = order_msg(call, &recs[i], NULL);
        }
        resp->next_before_id = next;
        order_recs_free(recs, n);
        return RPC_OK;
}

const rpc_method order_methods[ORDER_N_METHODS] = {
        RPC_METHOD_ENTRY("PlaceOrder", handle_place_order,
            mercato__order__v1__place_order_request__descriptor,
            mercato__order__v1__place_order_response__descriptor, 0),
        RPC_METHOD_ENTRY("GetOrder", handle_get_order,
            mercato__order__v1__get_order_request__descriptor,
            mercato__order__v1__order__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("ListOrders", handle_list_orders,
            mercato__order__v1__list_orders_request__descriptor,
            mercato__order__v1__list_orders_response__descriptor, RPC_METHOD_IDEMPOTENT),
};
