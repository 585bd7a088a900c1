/* handlers.c: the CartService methods: list, add (checked against the catalogue), remove. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cart.pb-c.h"
#include "cart_priv.h"
#include "cart_store.h"
#include "product.pb-c.h"
#include "svc.h"
#include "txn.h"

#define TXN_ATTEMPTS 3
#define PRODUCT_TIMEOUT_MS 2000
#define PRODUCT_DEADLINE_MARGIN_MS 250
#define PRODUCT_GET_METHOD "/mercato.product.v1.ProductService/GetProduct"

/* The client to the product service, opened on first use and kept for the process. */
static pthread_mutex_t product_client_lock = PTHREAD_MUTEX_INITIALIZER;
static rpc_client *product_client;

void
cart_product_client_close(void)
{
        pthread_mutex_lock(&product_client_lock);
        rpc_client_free(product_client);
        product_client = NULL;
        pthread_mutex_unlock(&product_client_lock);
}

/* The product client, opened from the topology's [product] address on first use. Returns
 * NULL, with the call's message set, when there is no address or it cannot open. */
static rpc_client *
product_client_get(rpc_call *call)
{
        rpc_client *c;

        pthread_mutex_lock(&product_client_lock);
        if (product_client == NULL) {
                svc *s = svc_of_call(call);
                const char *address
                    = s != NULL ? rpc_conf_get(svc_conf(s), "product", "address") : NULL;
                rpc_client_opts opts = { .timeout_ms = PRODUCT_TIMEOUT_MS };

                if (address == NULL) {
                        rpc_call_set_message(call, "no product service: set [product] address");
                } else if (rpc_client_open(address, &opts, &product_client) != RPC_OK) {
                        product_client = NULL;
                        rpc_call_set_message(call, "cannot open the product client");
                }
        }
        c = product_client;
        pthread_mutex_unlock(&product_client_lock);
        return c;
}

/* Asks the product service, on the call's dataset, whether the product exists. OK,
 * NOT_FOUND, or UNAVAILABLE when it cannot say; the call's message is set on failure. */
static rpc_status
product_check(rpc_call *call, int64_t product_id)
{
        RPC_PB_CLEANUP ProtobufCMessage *out = NULL;
        Mercato__Product__V1__GetProductRequest req
            = MERCATO__PRODUCT__V1__GET_PRODUCT_REQUEST__INIT;
        const char *dataset = rpc_call_metadata(call, SVC_DATASET_KEY);
        const char *metadata[] = { SVC_DATASET_KEY, dataset, NULL };
        /* Answer before the caller gives up: the product call ends a margin before the
         * caller's deadline, so that the caller hears UNAVAILABLE rather than nothing. */
        int64_t deadline = rpc_now_unix_ms() + PRODUCT_TIMEOUT_MS;
        int64_t caller = rpc_call_deadline_unix_ms(call);
        if (caller > 0 && caller - PRODUCT_DEADLINE_MARGIN_MS < deadline) {
                deadline = caller - PRODUCT_DEADLINE_MARGIN_MS;
        }
        rpc_call_opts opts = {
                .deadline_unix_ms = deadline,
                .attempt_timeout_ms = PRODUCT_TIMEOUT_MS / 2,
                .idempotent = true,
                .trace_id = rpc_call_trace_id(call),
                .metadata = dataset != NULL ? metadata : NULL,
        };
        rpc_error err = { 0 };
        rpc_client *c = product_client_get(call);
        rpc_status st;

        if (c == NULL) {
                return RPC_UNAVAILABLE;
        }
        req.product_id = product_id;
        st = rpc_client_call(c, PRODUCT_GET_METHOD, &req.base,
            &mercato__product__v1__get_product_response__descriptor, &out, &opts, &err);
        switch (st) {
        case RPC_OK:
                return RPC_OK;
        case RPC_NOT_FOUND:
                return rpc_call_error(call, RPC_NOT_FOUND, "no product %" PRId64, product_id);
        default:
                return rpc_call_error(call, RPC_UNAVAILABLE, "product service: %s: %s",
                    rpc_status_name(st), err.message);
        }
}

/* Fills a Cart message with the user's lines, read on db. */
static rpc_status
cart_fill(rpc_call *call, db_conn *db, int64_t user_id, Mercato__Cart__V1__Cart *cart)
{
        RPC_CLEANUP(rpc_freep) cart_line *lines = NULL;
        size_t n = 0;
        rpc_status st;

        st = cart_store_list(db, user_id, &lines, &n);
        if (st != RPC_OK) {
                return st;
        }
        cart->user_id = user_id;
        cart->n_items = n;
        cart->items = rpc_call_alloc(call, (n > 0 ? n : 1) * sizeof(*cart->items));
        for (size_t i = 0; i < n; i++) {
                Mercato__Cart__V1__CartItem *it = rpc_call_alloc(call, sizeof(*it));

                mercato__cart__v1__cart_item__init(it);
                it->product_id = lines[i].product_id;
                it->quantity = lines[i].quantity;
                it->added_at_ms = lines[i].added_at_ms;
                cart->items[i] = it;
        }
        return RPC_OK;
}

RPC_HANDLER(handle_list_cart, Mercato__Cart__V1__ListCartRequest, Mercato__Cart__V1__Cart)
{
        rpc_status st;

        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = cart_fill(call, db, req->user_id, resp);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        return RPC_OK;
}

/* The kinds of change AddToCart and RemoveFromCart make, in one transaction each. */
typedef enum cart_change {
        CART_ADD = 0,    /* add quantity to the line */
        CART_REMOVE = 1, /* remove the line */
} cart_change;

/* One attempt: the change, then the cart as it stands, in one transaction. */
static rpc_status
change_once(rpc_call *call, db_conn *db, cart_change kind, int64_t user_id, int64_t product_id,
    int64_t quantity, Mercato__Cart__V1__Cart *cart)
{
        const char *key = rpc_call_idempotency_key(call);
        rpc_status st;

        st = db_begin(db);
        if (st != RPC_OK) {
                return st;
        }
        /* A call that carries an idempotency key changes the cart once: a resend finds its
         * key in the barrier and just reads the cart. */
        st = key[0] != '\0' ? txn_barrier_enter(
                 db, kind == CART_ADD ? "cart:AddToCart" : "cart:RemoveFromCart", key)
                            : RPC_OK;
        if (st == RPC_OK) {
                st = kind == CART_ADD ? cart_store_add(db, user_id, product_id, quantity)
                                      : cart_store_remove(db, user_id, product_id);
        } else if (st == RPC_ALREADY_EXISTS) {
                db_rollback(db);
                return cart_fill(call, db, user_id, cart);
        }
        if (st == RPC_OK) {
                st = cart_fill(call, db, user_id, cart);
        }
        if (st == RPC_OK) {
                st = db_commit(db);
        }
        if (st != RPC_OK) {
                db_rollback(db);
        }
        return st;
}

/* Runs a change, retrying it on a concurrency abort, and words the failure. */
static rpc_status
change(rpc_call *call, db_conn *db, cart_change kind, int64_t user_id, int64_t product_id,
    int64_t quantity, Mercato__Cart__V1__Cart *cart)
{
        rpc_status st;

        for (int attempt = 1;; attempt++) {
                st = change_once(call, db, kind, user_id, product_id, quantity, cart);
                if (st == RPC_OK || !db_retryable(st) || attempt == TXN_ATTEMPTS) {
                        break;
                }
        }
        switch (st) {
        case RPC_OK:
                return RPC_OK;
        case RPC_NOT_FOUND:
                return rpc_call_error(call, st,
                    "no product %" PRId64 " in the cart of user %" PRId64, product_id, user_id);
        case RPC_OUT_OF_RANGE:
                return rpc_call_error(call, st, "cart quantity would exceed 1000000000000");
        case RPC_FAILED_PRECONDITION:
                return rpc_call_error(
                    call, st, "cart is full: at most %d products", CART_PRODUCTS_MAX);
        default:
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
}

RPC_HANDLER(handle_add_to_cart, Mercato__Cart__V1__AddToCartRequest, Mercato__Cart__V1__Cart)
{
        rpc_status st;

        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (req->product_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "product_id must be > 0");
        }
        if (req->quantity <= 0 || req->quantity > CART_QUANTITY_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "quantity must be 1..1000000000000");
        }
        if (strlen(rpc_call_idempotency_key(call)) > TXN_KEY_MAX) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                    "idempotency key longer than %d bytes", TXN_KEY_MAX);
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        /* Before any write: the product must exist in the catalogue of the same dataset. */
        st = product_check(call, req->product_id);
        if (st != RPC_OK) {
                return st;
        }
        return change(call, db, CART_ADD, req->user_id, req->product_id, req->quantity, resp);
}

RPC_HANDLER(
    handle_remove_from_cart, Mercato__Cart__V1__RemoveFromCartRequest, Mercato__Cart__V1__Cart)
{
        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (req->product_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "product_id must be > 0");
        }
        if (strlen(rpc_call_idempotency_key(call)) > TXN_KEY_MAX) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                    "idempotency key longer than %d bytes", TXN_KEY_MAX);
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        return change(call, db, CART_REMOVE, req->user_id, req->product_id, 0, resp);
}

const rpc_method cart_methods[CART_N_METHODS] = {
        RPC_METHOD_ENTRY("ListCart", handle_list_cart,
            mercato__cart__v1__list_cart_request__descriptor, mercato__cart__v1__cart__descriptor,
            RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("AddToCart", handle_add_to_cart,
            mercato__cart__v1__add_to_cart_request__descriptor, mercato__cart__v1__cart__descriptor,
            0),
        RPC_METHOD_ENTRY("RemoveFromCart", handle_remove_from_cart,
            mercato__cart__v1__remove_from_cart_request__descriptor,
            mercato__cart__v1__cart__descriptor, 0),
};
