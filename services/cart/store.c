/* store.c: the cart service's SQL: list, add, remove, the removal of ordered lines, seeding. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart_store.h"

static const db_stmt cart_stmt_list[] = {
        { "cart_list",
            "SELECT product_id, quantity, (extract(epoch FROM added_at) * 1000)::bigint"
            " FROM cart_items WHERE user_id = $1 ORDER BY product_id",
            1 },
        /* Adds to an existing line while it stays within the limit. */
        { "cart_add_existing",
            "UPDATE cart_items SET quantity = quantity + $3, updated_at = now()"
            " WHERE user_id = $1 AND product_id = $2 AND quantity <= 1000000000000 - $3",
            3 },
        { "cart_line_exists", "SELECT 1 FROM cart_items WHERE user_id = $1 AND product_id = $2",
            2 },
        { "cart_count", "SELECT count(*) FROM cart_items WHERE user_id = $1", 1 },
        /* A new line; a concurrent insert of the same line is added to, within the limit. */
        { "cart_insert",
            "INSERT INTO cart_items (user_id, product_id, quantity) VALUES ($1, $2, $3)"
            " ON CONFLICT (user_id, product_id) DO UPDATE"
            " SET quantity = cart_items.quantity + excluded.quantity, updated_at = now()"
            " WHERE cart_items.quantity <= 1000000000000 - excluded.quantity",
            3 },
        { "cart_remove", "DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2", 2 },
        /* $2 is a bigint[] literal "{1,2,3}". */
        { "cart_remove_ordered",
            "DELETE FROM cart_items WHERE user_id = $1 AND product_id = ANY ($2::bigint[])", 2 },
        /* Seeding empties the txn tables too (txn.h names them): the admin path only. */
        { "cart_seed_truncate", "TRUNCATE cart_items RESTART IDENTITY CASCADE", 0 },
};

const db_stmt_table cart_stmts = {
        .stmts = cart_stmt_list,
        .n = sizeof(cart_stmt_list) / sizeof(cart_stmt_list[0]),
};

rpc_status
cart_store_list(db_conn *db, int64_t user_id, cart_line **ret_lines, size_t *ret_n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        cart_line *lines = NULL;
        db_params p;
        rpc_status st;
        int rows;

        db_params_init(&p);
        db_params_i64(&p, user_id);
        st = db_exec(db, "cart_list", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        rows = db_rows(res);
        if (rows > 0) {
                lines = rpc_xcalloc((size_t) rows, sizeof(*lines));
        }
        for (int r = 0; r < rows; r++) {
                lines[r] = (cart_line) {
                        .product_id = db_get_i64(res, r, 0),
                        .quantity = db_get_i64(res, r, 1),
                        .added_at_ms = db_get_i64(res, r, 2),
                };
        }
        *ret_lines = lines;
        *ret_n = (size_t) rows;
        return RPC_OK;
}

static void
line_params(db_params *p, int64_t user_id, int64_t product_id)
{
        db_params_init(p);
        db_params_i64(p, user_id);
        db_params_i64(p, product_id);
}

rpc_status
cart_store_add(db_conn *db, int64_t user_id, int64_t product_id, int64_t quantity)
{
        db_params p;
        int64_t rows = 0;
        rpc_status st;

        if (quantity <= 0 || quantity > CART_QUANTITY_MAX) {
                return RPC_INVALID_ARGUMENT;
        }
        line_params(&p, user_id, product_id);
        db_params_i64(&p, quantity);
        st = db_exec_count(db, "cart_add_existing", &p, &rows);
        if (st != RPC_OK || rows == 1) {
                return st;
        }
        line_params(&p, user_id, product_id);
        st = db_exec_count(db, "cart_line_exists", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        if (rows > 0) {
                return RPC_OUT_OF_RANGE;
        }
        db_params_init(&p);
        db_params_i64(&p, user_id);
        {
                DB_RES_CLEANUP PGresult *res = NULL;

                st = db_exec(db, "cart_count", &p, &res);
                if (st != RPC_OK) {
                        return st;
                }
                if (db_get_i64(res, 0, 0) >= CART_PRODUCTS_MAX) {
                        return RPC_FAILED_PRECONDITION;
                }
        }
        line_params(&p, user_id, product_id);
        db_params_i64(&p, quantity);
        st = db_exec_count(db, "cart_insert", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        return rows == 1 ? RPC_OK : RPC_OUT_OF_RANGE;
}

rpc_status
cart_store_remove(db_conn *db, int64_t user_id, int64_t product_id)
{
        db_params p;
        int64_t rows = 0;
        rpc_status st;

        line_params(&p, user_id, product_id);
        st = db_exec_count(db, "cart_remove", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        return rows > 0 ? RPC_OK : RPC_NOT_FOUND;
}

rpc_status
cart_store_remove_ordered(db_conn *db, int64_t user_id, const int64_t *product_ids, size_t n)
{
        RPC_CLEANUP(rpc_freep) char *ids = NULL;
        size_t cap = 3 + n * 21;
        size_t len = 0;
        db_params p;

        if (n == 0) {
                return RPC_OK;
        }
        ids = rpc_xmalloc(cap);
        ids[len++] = '{';
        for (size_t i = 0; i < n; i++) {
                len += (size_t) snprintf(
                    ids + len, cap - len, "%s%" PRId64, i > 0 ? "," : "", product_ids[i]);
        }
        ids[len++] = '}';
        ids[len] = '\0';
        db_params_init(&p);
        db_params_i64(&p, user_id);
        db_params_str(&p, ids);
        return db_exec(db, "cart_remove_ordered", &p, NULL);
}

/* The seed's transaction (db_transaction runs it again when it aborts). */
static rpc_status
seed_run(db_conn *db, void *arg)
{
        (void) arg;
        return db_exec(db, "cart_seed_truncate", NULL, NULL);
}

rpc_status
cart_store_seed(db_conn *db, const svc_seed *s)
{
        svc_seed copy = *s;

        return db_transaction(db, SVC_SEED_ATTEMPTS, seed_run, &copy);
}
