/* handlers.c: the ProductService methods: catalogue pages, one product, best sellers, prices. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "product.pb-c.h"
#include "product_priv.h"
#include "product_store.h"
#include "svc.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define TOP_LIMIT_DEFAULT 5
#define TOP_LIMIT_MAX 100
#define TOP_DAYS_DEFAULT 3
#define TOP_DAYS_MAX 365
#define PRICE_ITEMS_MAX 100
#define QUANTITY_MAX INT64_C(1000000000000)

/* A Product message from the columns id, name, price, stock, held of row r, in the call's
 * arena: available is the stock less what TCC tries hold. */
static Mercato__Product__V1__Product *
product_from_row(rpc_call *call, const PGresult *res, int r)
{
        Mercato__Product__V1__Product *p = rpc_call_alloc(call, sizeof(*p));

        mercato__product__v1__product__init(p);
        p->id = db_get_i64(res, r, 0);
        p->name = rpc_call_strdup(call, db_get_str(res, r, 1));
        p->price = db_get_i64(res, r, 2);
        p->stock = db_get_i64(res, r, 3);
        p->available = p->stock - db_get_i64(res, r, 4);
        return p;
}

/* The reply for a failed statement: the mapped status with the database's message. */
static rpc_status
db_error(rpc_call *call, db_conn *db, rpc_status st)
{
        return rpc_call_error(call, st, "database: %s", db_errmsg(db));
}

RPC_HANDLER(handle_list_products, Mercato__Product__V1__ListProductsRequest,
    Mercato__Product__V1__ListProductsResponse)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        int32_t page_size = req->page_size;
        db_params p;
        rpc_status st;
        int rows;

        if (page_size < 0 || page_size > PAGE_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "page_size must be 0..%d", PAGE_MAX);
        }
        if (req->after_id < 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "after_id must be >= 0");
        }
        if (page_size == 0) {
                page_size = PAGE_DEFAULT;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        /* One row more than the page tells whether another page follows. */
        db_params_init(&p);
        db_params_i64(&p, req->after_id);
        db_params_i64(&p, (int64_t) page_size + 1);
        st = db_exec(db, "product_list", &p, &res);
        if (st != RPC_OK) {
                return db_error(call, db, st);
        }
        rows = db_rows(res);
        if (rows > page_size) {
                rows = page_size;
                resp->next_after_id = db_get_i64(res, rows - 1, 0);
        }
        resp->n_products = (size_t) rows;
        resp->products
            = rpc_call_alloc(call, (size_t) (rows > 0 ? rows : 1) * sizeof(*resp->products));
        for (int r = 0; r < rows; r++) {
                resp->products[r] = product_from_row(call, res, r);
        }
        return RPC_OK;
}

RPC_HANDLER(handle_get_product, Mercato__Product__V1__GetProductRequest,
    Mercato__Product__V1__GetProductResponse)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        if (req->product_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "product_id must be > 0");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        db_params_init(&p);
        db_params_i64(&p, req->product_id);
        st = db_exec(db, "product_get", &p, &res);
        if (st != RPC_OK) {
                return db_error(call, db, st);
        }
        if (db_rows(res) == 0) {
                return rpc_call_error(call, RPC_NOT_FOUND, "no product %" PRId64, req->product_id);
        }
        resp->product = product_from_row(call, res, 0);
        return RPC_OK;
}

RPC_HANDLER(handle_top_products, Mercato__Product__V1__TopProductsRequest,
    Mercato__Product__V1__TopProductsResponse)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        int32_t limit = req->limit;
        int32_t days = req->days;
        db_params p;
        rpc_status st;
        int rows;

        if (limit < 0 || limit > TOP_LIMIT_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "limit must be 0..%d", TOP_LIMIT_MAX);
        }
        if (days < 0 || days > TOP_DAYS_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "days must be 0..%d", TOP_DAYS_MAX);
        }
        if (limit == 0) {
                limit = TOP_LIMIT_DEFAULT;
        }
        if (days == 0) {
                days = TOP_DAYS_DEFAULT;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        db_params_init(&p);
        db_params_i64(&p, days);
        db_params_i64(&p, limit);
        st = db_exec(db, "product_top", &p, &res);
        if (st != RPC_OK) {
                return db_error(call, db, st);
        }
        rows = db_rows(res);
        resp->n_products = (size_t) rows;
        resp->products
            = rpc_call_alloc(call, (size_t) (rows > 0 ? rows : 1) * sizeof(*resp->products));
        for (int r = 0; r < rows; r++) {
                Mercato__Product__V1__TopProduct *t = rpc_call_alloc(call, sizeof(*t));

                mercato__product__v1__top_product__init(t);
                t->product = product_from_row(call, res, r);
                t->quantity_sold = db_get_i64(res, r, 5);
                resp->products[r] = t;
        }
        return RPC_OK;
}

RPC_HANDLER(handle_price_items, Mercato__Product__V1__PriceItemsRequest,
    Mercato__Product__V1__PriceItemsResponse)
{
        size_t n = req->n_items;
        product_item *items;
        char(*names)[128];
        char err[256] = "";
        int64_t total = 0;
        rpc_status st;

        if (n == 0 || n > PRICE_ITEMS_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "items must be 1..%d", PRICE_ITEMS_MAX);
        }
        items = rpc_call_alloc(call, n * sizeof(*items));
        names = rpc_call_alloc(call, n * sizeof(*names));
        for (size_t i = 0; i < n; i++) {
                const Mercato__Product__V1__ItemQuantity *it = req->items[i];

                if (it->product_id <= 0) {
                        return rpc_call_error(call, RPC_INVALID_ARGUMENT, "product_id must be > 0");
                }
                if (it->quantity <= 0 || it->quantity > QUANTITY_MAX) {
                        return rpc_call_error(
                            call, RPC_INVALID_ARGUMENT, "quantity must be 1..1000000000000");
                }
                for (size_t j = 0; j < i; j++) {
                        if (items[j].product_id == it->product_id) {
                                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                                    "product %" PRId64 " listed twice", it->product_id);
                        }
                }
                items[i]
                    = (product_item) { .product_id = it->product_id, .quantity = it->quantity };
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = product_store_price_named(db, items, n, names, err, sizeof(err));
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "%s", err);
        }
        resp->n_items = n;
        resp->items = rpc_call_alloc(call, n * sizeof(*resp->items));
        for (size_t i = 0; i < n; i++) {
                Mercato__Product__V1__PricedItem *pi = rpc_call_alloc(call, sizeof(*pi));
                int64_t line;

                if (__builtin_mul_overflow(items[i].quantity, items[i].unit_price, &line)
                    || __builtin_add_overflow(total, line, &total)) {
                        return rpc_call_error(call, RPC_OUT_OF_RANGE, "total out of range");
                }
                mercato__product__v1__priced_item__init(pi);
                pi->product_id = items[i].product_id;
                pi->quantity = items[i].quantity;
                pi->unit_price = items[i].unit_price;
                pi->name = rpc_call_strdup(call, names[i]);
                resp->items[i] = pi;
        }
        resp->total = total;
        return RPC_OK;
}

const rpc_method product_methods[PRODUCT_N_METHODS] = {
        RPC_METHOD_ENTRY("ListProducts", handle_list_products,
            mercato__product__v1__list_products_request__descriptor,
            mercato__product__v1__list_products_response__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("GetProduct", handle_get_product,
            mercato__product__v1__get_product_request__descriptor,
            mercato__product__v1__get_product_response__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("TopProducts", handle_top_products,
            mercato__product__v1__top_products_request__descriptor,
            mercato__product__v1__top_products_response__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("PriceItems", handle_price_items,
            mercato__product__v1__price_items_request__descriptor,
            mercato__product__v1__price_items_response__descriptor, RPC_METHOD_IDEMPOTENT),
};
