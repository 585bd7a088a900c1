/* product_store.h: the product service's SQL: catalogue, stock reservations, sales per day. */
#ifndef MERCATO_PRODUCT_STORE_H
#define MERCATO_PRODUCT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "seed.h"

/* Every statement of the store, names prefixed "product_"; prepare on each connection that
 * calls the functions below (the monolith connection of the order service included). */
extern const db_stmt_table product_stmts;

/* Tables products, reservations, sales_daily (component "product"). */
extern const db_migration_set product_migrations;

/* One line of an order, as the store prices and reserves it. */
typedef struct product_item {
        int64_t product_id;
        int64_t quantity;
        int64_t unit_price;
} product_item;

/* A product as the catalogue holds it. */
typedef struct product_row {
        int64_t id;
        int64_t price;
        int64_t stock;
        int64_t held; /* what TCC tries hold of the stock: available = stock - held */
        char name[128];
} product_row;

/* Fills unit_price of each item from the catalogue. NOT_FOUND naming the first unknown
 * product in errbuf. Reads only; needs no transaction. Other failures map the SQLSTATE. */
rpc_status product_store_price(
    db_conn *db, product_item *items, size_t n, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Like product_store_price, and also copies each item's name into names[i] (names hold
 * at most 127 bytes, a CHECK of the table, so nothing is cut). names may be NULL. */
rpc_status product_store_price_named(db_conn *db, product_item *items, size_t n, char (*names)[128],
    char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Inside the caller's open transaction: reserves the stock of every item, all or nothing
 * (the caller rolls back on failure), and records a reservation row (order_id, product_id,
 * quantity, status 'held'). Locks rows in product_id order (it sorts a copy) so concurrent
 * orders cannot deadlock. FAILED_PRECONDITION (errbuf "out of stock: product N") when a
 * product lacks stock; NOT_FOUND for an unknown product; INVALID_ARGUMENT for a product
 * listed twice, an id <= 0 or a quantity outside 1..1e12 (checked before any write);
 * ALREADY_EXISTS if the order already holds a reservation of a product. */
rpc_status product_store_reserve(db_conn *db, int64_t order_id, const product_item *items, size_t n,
    char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* A TCC try (mode tcc): product_store_reserve, but the quantities are held (products.held)
 * instead of taken from stock, and the reservations are 'tried'. Same statuses. */
rpc_status product_store_try(db_conn *db, int64_t order_id, const product_item *items, size_t n,
    char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Inside the caller's open transaction: settles every 'tried' reservation of the order, in
 * product id order: with confirm the held quantity is taken from stock ('sold'), else it is
 * no longer held ('released'). *ret_rows: the products settled (0 when there was none). */
rpc_status product_store_settle(
    db_conn *db, int64_t order_id, bool confirm, int64_t *ret_rows) RPC_WARN_UNUSED;

/* Inside the caller's open transaction: returns every 'held' reservation of the order to
 * stock and marks it 'released'; OK when there is none. */
rpc_status product_store_release(db_conn *db, int64_t order_id) RPC_WARN_UNUSED;

/* Inside the caller's open transaction: marks the order's held reservations 'sold' (the
 * order completed). OK when there is none. */
rpc_status product_store_commit_reservation(db_conn *db, int64_t order_id) RPC_WARN_UNUSED;

/* In one transaction of its own: empties products, reservations, sales_daily and the txn
 * tables, then inserts products 1..s->products named 'product-N' with price
 * 100 + ((N * 7919 + seed) % 9901) and stock s->stock. */
rpc_status product_store_seed(db_conn *db, const svc_seed *s) RPC_WARN_UNUSED;

/* One product by id into *ret_row. NOT_FOUND if there is none. */
rpc_status product_store_get(db_conn *db, int64_t id, product_row *ret_row) RPC_WARN_UNUSED;

/* Adds quantity to the sales of a product on the UTC day of day_unix_ms. Inside the
 * caller's transaction (the order.completed consumer). */
rpc_status product_store_add_sales(
    db_conn *db, int64_t product_id, int64_t quantity, int64_t day_unix_ms) RPC_WARN_UNUSED;

#endif
