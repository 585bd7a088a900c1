/* store.c: the product service's SQL: catalogue reads, stock reservations, sales, seeding. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "product_store.h"

/* An item list is at most this long; the order flow allows 100. */
#define PRODUCT_MAX_ITEMS 1000
#define PRODUCT_QUANTITY_MAX INT64_C(1000000000000)

static const db_stmt product_stmt_list[] = {
        { "product_get", "SELECT id, name, price, stock, held FROM products WHERE id = $1", 1 },
        { "product_exists", "SELECT 1 FROM products WHERE id = $1", 1 },
        { "product_list",
            "SELECT id, name, price, stock, held FROM products WHERE id > $1 ORDER BY id LIMIT $2",
            2 },
        /* $1 is a bigint[] literal "{1,2,3}": one round trip for a whole order. */
        { "product_price_many",
            "SELECT id, name, price FROM products WHERE id = ANY ($1::bigint[])", 1 },
        /* One item: take the stock if enough is available (not held by a TCC try), and
         * record the reservation. */
        { "product_reserve_one",
            "WITH taken AS (UPDATE products SET stock = stock - $3, updated_at = now()"
            " WHERE id = $2 AND stock - held >= $3 RETURNING id)"
            " INSERT INTO reservations (order_id, product_id, quantity, status)"
            " SELECT $1, id, $3, 'held' FROM taken",
            3 },
        /* A TCC try of one item: hold the stock if enough is available, without taking it. */
        { "product_try_one",
            "WITH held AS (UPDATE products SET held = held + $3, updated_at = now()"
            " WHERE id = $2 AND stock - held >= $3 RETURNING id)"
            " INSERT INTO reservations (order_id, product_id, quantity, status)"
            " SELECT $1, id, $3, 'tried' FROM held",
            3 },
        /* Locks the products an order's TCC try holds, in id order, before its confirm or
         * cancel. */
        { "product_tried_lock",
            "SELECT id FROM products WHERE id IN (SELECT product_id FROM reservations"
            " WHERE order_id = $1 AND status = 'tried') ORDER BY id FOR UPDATE",
            1 },
        /* The confirm: what the try held is taken from stock and sold. */
        { "product_confirm",
            "WITH sold AS (UPDATE reservations SET status = 'sold', updated_at = now()"
            " WHERE order_id = $1 AND status = 'tried' RETURNING product_id, quantity)"
            " UPDATE products p SET stock = p.stock - r.quantity, held = p.held - r.quantity,"
            " updated_at = now() FROM sold r WHERE p.id = r.product_id",
            1 },
        /* The cancel: what the try held is available again. */
        { "product_cancel",
            "WITH released AS (UPDATE reservations SET status = 'released', updated_at = now()"
            " WHERE order_id = $1 AND status = 'tried' RETURNING product_id, quantity)"
            " UPDATE products p SET held = p.held - r.quantity, updated_at = now()"
            " FROM released r WHERE p.id = r.product_id",
            1 },
        /* Locks the products an order holds, in id order, before they are given back. */
        { "product_release_lock",
            "SELECT id FROM products WHERE id IN (SELECT product_id FROM reservations"
            " WHERE order_id = $1 AND status = 'held') ORDER BY id FOR UPDATE",
            1 },
        { "product_release",
            "WITH released AS (UPDATE reservations SET status = 'released', updated_at = now()"
            " WHERE order_id = $1 AND status = 'held' RETURNING product_id, quantity)"
            " UPDATE products p SET stock = p.stock + r.quantity, updated_at = now()"
            " FROM released r WHERE p.id = r.product_id",
            1 },
        { "product_commit_reservation",
            "UPDATE reservations SET status = 'sold', updated_at = now()"
            " WHERE order_id = $1 AND status = 'held'",
            1 },
        /* Top sellers over the days since today (UTC) minus $1 + 1. */
        { "product_top",
            "SELECT p.id, p.name, p.price, p.stock, p.held, s.sold FROM"
            " (SELECT product_id, sum(quantity)::bigint AS sold FROM sales_daily"
            "  WHERE day > (now() AT TIME ZONE 'UTC')::date - $1::int GROUP BY product_id) s"
            " JOIN products p ON p.id = s.product_id ORDER BY s.sold DESC, p.id LIMIT $2",
            2 },
        { "product_add_sales",
            "INSERT INTO sales_daily (product_id, day, quantity)"
            " VALUES ($1, (to_timestamp($3::bigint / 1000.0) AT TIME ZONE 'UTC')::date, $2)"
            " ON CONFLICT (product_id, day)"
            " DO UPDATE SET quantity = sales_daily.quantity + excluded.quantity",
            3 },
        /* Seeding empties the txn tables too (txn.h names them): the admin path only. */
        { "product_seed_truncate",
            "TRUNCATE products, reservations, sales_daily RESTART IDENTITY CASCADE", 0 },
        /* $2 is the seed as numeric text: it is a uint64. */
        { "product_seed_insert",
            "INSERT INTO products (id, name, price, stock)"
            " SELECT g, 'product-' || g, 100 + ((g::numeric * 7919 + $2::numeric) % 9901)::bigint,"
            " $3 FROM generate_series(1, $1::bigint) g",
            3 },
};

const db_stmt_table product_stmts = {
        .stmts = product_stmt_list,
        .n = sizeof(product_stmt_list) / sizeof(product_stmt_list[0]),
};

static int
item_cmp(const void *a, const void *b)
{
        const product_item *x = a;
        const product_item *y = b;

        return (x->product_id > y->product_id) - (x->product_id < y->product_id);
}

static void
copy_name(char *dst, size_t len, const char *src)
{
        snprintf(dst, len, "%s", src);
}

rpc_status
product_store_get(db_conn *db, int64_t id, product_row *ret_row)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, id);
        st = db_exec(db, "product_get", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_NOT_FOUND;
        }
        ret_row->id = db_get_i64(res, 0, 0);
        copy_name(ret_row->name, sizeof(ret_row->name), db_get_str(res, 0, 1));
        ret_row->price = db_get_i64(res, 0, 2);
        ret_row->stock = db_get_i64(res, 0, 3);
        ret_row->held = db_get_i64(res, 0, 4);
        return RPC_OK;
}

/* Writes "{id,id,...}" for the items into a fresh buffer the caller frees. */
static char *
id_array_literal(const product_item *items, size_t n)
{
        size_t cap = 2 + n * 21 + 1;
        char *buf = rpc_xmalloc(cap);
        size_t len = 0;

        buf[len++] = '{';
        for (size_t i = 0; i < n; i++) {
                len += (size_t) snprintf(
                    buf + len, cap - len, "%s%" PRId64, i > 0 ? "," : "", items[i].product_id);
        }
        buf[len++] = '}';
        buf[len] = '\0';
        return buf;
}

rpc_status
product_store_price_named(
    db_conn *db, product_item *items, size_t n, char (*names)[128], char *errbuf, size_t errlen)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        RPC_CLEANUP(rpc_freep) char *ids = NULL;
        db_params p;
        rpc_status st;
        int rows;

        if (n == 0) {
                return RPC_OK;
        }
        if (n > PRODUCT_MAX_ITEMS) {
                snprintf(errbuf, errlen, "too many items");
                return RPC_INVALID_ARGUMENT;
        }
        ids = id_array_literal(items, n);
        db_params_init(&p);
        db_params_str(&p, ids);
        st = db_exec(db, "product_price_many", &p, &res);
        if (st != RPC_OK) {
                snprintf(errbuf, errlen, "%s", db_errmsg(db));
                return st;
        }
        rows = db_rows(res);
        for (size_t i = 0; i < n; i++) {
                bool found = false;
                for (int r = 0; r < rows; r++) {
                        if (db_get_i64(res, r, 0) == items[i].product_id) {
                                items[i].unit_price = db_get_i64(res, r, 2);
                                if (names != NULL) {
                                        copy_name(
                                            names[i], sizeof(names[i]), db_get_str(res, r, 1));
                                }
                                found = true;
                                break;
                        }
                }
                if (!found) {
                        snprintf(errbuf, errlen, "no product %" PRId64, items[i].product_id);
                        return RPC_NOT_FOUND;
                }
        }
        return RPC_OK;
}

rpc_status
product_store_price(db_conn *db, product_item *items, size_t n, char *errbuf, size_t errlen)
{
        return product_store_price_named(db, items, n, NULL, errbuf, errlen);
}

/* Reserves (stmt product_reserve_one) or tries (product_try_one) every item or none. */
static rpc_status
reserve_with(db_conn *db, const char *stmt, int64_t order_id, const product_item *items, size_t n,
    char *errbuf, size_t errlen)
{
        RPC_CLEANUP(rpc_freep) product_item *sorted = NULL;
        rpc_status st;

        if (n > PRODUCT_MAX_ITEMS) {
                snprintf(errbuf, errlen, "too many items");
                return RPC_INVALID_ARGUMENT;
        }
        if (n == 0) {
                return RPC_OK;
        }
        if (order_id <= 0) {
                snprintf(errbuf, errlen, "order_id must be > 0");
                return RPC_INVALID_ARGUMENT;
        }
        for (size_t i = 0; i < n; i++) {
                if (items[i].product_id <= 0) {
                        snprintf(errbuf, errlen, "product_id must be > 0");
                        return RPC_INVALID_ARGUMENT;
                }
                if (items[i].quantity <= 0 || items[i].quantity > PRODUCT_QUANTITY_MAX) {
                        snprintf(errbuf, errlen, "quantity must be 1..1000000000000");
                        return RPC_INVALID_ARGUMENT;
                }
        }
        sorted = rpc_xmalloc(n * sizeof(*sorted));
        memcpy(sorted, items, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), item_cmp);
        for (size_t i = 1; i < n; i++) {
                if (sorted[i].product_id == sorted[i - 1].product_id) {
                        snprintf(errbuf, errlen, "product %" PRId64 " listed twice",
                            sorted[i].product_id);
                        return RPC_INVALID_ARGUMENT;
                }
        }
        for (size_t i = 0; i < n; i++) {
                db_params p;
                int64_t rows = 0;

                db_params_init(&p);
                db_params_i64(&p, order_id);
                db_params_i64(&p, sorted[i].product_id);
                db_params_i64(&p, sorted[i].quantity);
                st = db_exec_count(db, stmt, &p, &rows);
                if (st != RPC_OK) {
                        snprintf(errbuf, errlen, "%s", db_errmsg(db));
                        return st;
                }
                if (rows == 1) {
                        continue;
                }
                /* Nothing taken: an unknown product, or not enough stock. */
                db_params_init(&p);
                db_params_i64(&p, sorted[i].product_id);
                st = db_exec_count(db, "product_exists", &p, &rows);
                if (st != RPC_OK) {
                        snprintf(errbuf, errlen, "%s", db_errmsg(db));
                        return st;
                }
                if (rows == 0) {
                        snprintf(errbuf, errlen, "no product %" PRId64, sorted[i].product_id);
                        return RPC_NOT_FOUND;
                }
                snprintf(errbuf, errlen, "out of stock: product %" PRId64, sorted[i].product_id);
                return RPC_FAILED_PRECONDITION;
        }
        return RPC_OK;
}

rpc_status
product_store_reserve(
    db_conn *db, int64_t order_id, const product_item *items, size_t n, char *errbuf, size_t errlen)
{
        return reserve_with(db, "product_reserve_one", order_id, items, n, errbuf, errlen);
}

rpc_status
product_store_try(
    db_conn *db, int64_t order_id, const product_item *items, size_t n, char *errbuf, size_t errlen)
{
        return reserve_with(db, "product_try_one", order_id, items, n, errbuf, errlen);
}

/* Locks the products of the order's reservations (stmt lock, in id order), then runs stmt
 * on them: *ret_rows, the products it changed. */
static rpc_status
lock_then(db_conn *db, int64_t order_id, const char *lock, const char *stmt, int64_t *ret_rows)
{
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        st = db_exec(db, lock, &p, NULL);
        if (st != RPC_OK) {
                return st;
        }
        return db_exec_count(db, stmt, &p, ret_rows);
}

rpc_status
product_store_settle(db_conn *db, int64_t order_id, bool confirm, int64_t *ret_rows)
{
        return lock_then(db, order_id, "product_tried_lock",
            confirm ? "product_confirm" : "product_cancel", ret_rows);
}

rpc_status
product_store_release(db_conn *db, int64_t order_id)
{
        int64_t rows = 0;

        return lock_then(db, order_id, "product_release_lock", "product_release", &rows);
}

rpc_status
product_store_commit_reservation(db_conn *db, int64_t order_id)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        return db_exec(db, "product_commit_reservation", &p, NULL);
}

rpc_status
product_store_add_sales(db_conn *db, int64_t product_id, int64_t quantity, int64_t day_unix_ms)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, product_id);
        db_params_i64(&p, quantity);
        db_params_i64(&p, day_unix_ms);
        return db_exec(db, "product_add_sales", &p, NULL);
}

/* The seed's transaction (db_transaction runs it again when it aborts). */
static rpc_status
seed_run(db_conn *db, void *arg)
{
        const svc_seed *s = arg;
        char seed[24];
        db_params p;
        rpc_status st;

        snprintf(seed, sizeof(seed), "%" PRIu64, s->seed);
        st = db_exec(db, "product_seed_truncate", NULL, NULL);
        if (st == RPC_OK) {
                db_params_init(&p);
                db_params_i64(&p, s->products);
                db_params_str(&p, seed);
                db_params_i64(&p, s->stock);
                st = db_exec(db, "product_seed_insert", &p, NULL);
        }
        return st;
}

rpc_status
product_store_seed(db_conn *db, const svc_seed *s)
{
        svc_seed copy = *s;

        if (s->products < 0 || s->stock < 0) {
                return RPC_INVALID_ARGUMENT;
        }
        return db_transaction(db, SVC_SEED_ATTEMPTS, seed_run, &copy);
}
