/* cart_store.h: the cart service's SQL: cart lines per user, and their removal once ordered. */
#ifndef MERCATO_CART_STORE_H
#define MERCATO_CART_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "seed.h"

/* Every statement of the store, names prefixed "cart_". */
extern const db_stmt_table cart_stmts;

/* Table cart_items (component "cart"). */
extern const db_migration_set cart_migrations;

/* The most a cart line may hold, and the most distinct products a cart may hold. */
#define CART_QUANTITY_MAX INT64_C(1000000000000)
#define CART_PRODUCTS_MAX 100

/* One line of a cart. */
typedef struct cart_line {
        int64_t product_id;
        int64_t quantity;
        int64_t added_at_ms;
} cart_line;

/* The user's cart, by product id, into *ret_lines (malloc'd, the caller frees; NULL when
 * empty) and *ret_n. */
rpc_status cart_store_list(
    db_conn *db, int64_t user_id, cart_line **ret_lines, size_t *ret_n) RPC_WARN_UNUSED;

/* Inside the caller's open transaction: adds quantity (1..CART_QUANTITY_MAX) to the user's
 * line of the product, creating it. OUT_OF_RANGE if the line would exceed
 * CART_QUANTITY_MAX, FAILED_PRECONDITION if a new line would exceed CART_PRODUCTS_MAX; the
 * caller rolls back. */
rpc_status cart_store_add(
    db_conn *db, int64_t user_id, int64_t product_id, int64_t quantity) RPC_WARN_UNUSED;

/* Removes the user's line of the product (inside a transaction or not). NOT_FOUND if the
 * cart holds no such line. */
rpc_status cart_store_remove(db_conn *db, int64_t user_id, int64_t product_id) RPC_WARN_UNUSED;

/* Inside the caller's open transaction: removes the lines of the ordered products, those
 * absent included (OK). */
rpc_status cart_store_remove_ordered(
    db_conn *db, int64_t user_id, const int64_t *product_ids, size_t n) RPC_WARN_UNUSED;

/* In one transaction of its own: empties cart_items (txn_reset empties the txn tables). */
rpc_status cart_store_seed(db_conn *db, const svc_seed *s) RPC_WARN_UNUSED;

#endif
