/* store.c: the order service's SQL: orders and their items, state changes, history, seeding. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_store.h"

/* How many times a function that owns its transaction runs it when it aborts. */
#define ORDER_TX_ATTEMPTS 3

/* The columns every read of orders returns, in this order. */
#define ORDER_COLUMNS                                                                              \
        "o.id, o.user_id, o.status, o.reason, o.total, o.discount, o.amount,"                      \
        " coalesce(o.coupon_id, 0), o.mode, (extract(epoch FROM o.created_at) * 1000)::bigint,"    \
        " (extract(epoch FROM o.updated_at) * 1000)::bigint, o.failure_branch,"                    \
        " o.failure_status, o.failure_message"

static const db_stmt order_stmt_list[] = {
        { "order_next_id", "SELECT nextval(pg_get_serial_sequence('orders', 'id'))", 0 },
        { "order_insert",
            "INSERT INTO orders (id, user_id, status, reason, total, discount, amount, coupon_id,"
            " mode, idempotency_key, failure_branch, failure_status, failure_message)"
            " VALUES (coalesce($1::bigint, nextval(pg_get_serial_sequence('orders', 'id'))),"
            " $2, $3, $4, $5, $6, $5::bigint - $6::bigint, $7, $8, $9, $10, $11, $12)"
            " RETURNING id, (extract(epoch FROM created_at) * 1000)::bigint",
            12 },
        /* $2, $3, $4 are bigint[] literals "{1,2,3}" of one length: one round trip. */
        { "order_insert_items",
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price)"
            " SELECT $1, t.p, t.q, t.u FROM unnest($2::bigint[], $3::bigint[], $4::bigint[])"
            " AS t (p, q, u)",
            4 },
        { "order_complete",
            "UPDATE orders SET status = 'COMPLETED', discount = $2, amount = total - $2,"
            " updated_at = now() WHERE id = $1 AND status = 'PENDING'"
            " RETURNING (extract(epoch FROM updated_at) * 1000)::bigint",
            2 },
        { "order_cancel",
            "UPDATE orders SET status = 'CANCELLED', reason = $2, updated_at = now()"
            " WHERE id = $1 AND status = 'PENDING'",
            2 },
        { "order_cancel_failed",
            "UPDATE orders SET status = 'CANCELLED', reason = $2, updated_at = now(),"
            " failure_branch = $3, failure_status = $4, failure_message = $5"
            " WHERE id = $1 AND status = 'PENDING'",
            5 },
        { "order_failure",
            "UPDATE orders SET failure_branch = $2, failure_status = $3, failure_message = $4"
            " WHERE id = $1 AND status = 'PENDING'",
            4 },
        { "order_state",
            "SELECT status, (extract(epoch FROM updated_at) * 1000)::bigint FROM orders"
            " WHERE id = $1",
            1 },
        { "order_get", "SELECT " ORDER_COLUMNS " FROM orders o WHERE o.id = $1", 1 },
        { "order_get_by_key", "SELECT " ORDER_COLUMNS " FROM orders o WHERE o.idempotency_key = $1",
            1 },
        { "order_list",
            "SELECT " ORDER_COLUMNS " FROM orders o"
            " WHERE o.user_id = $1 AND ($2::bigint = 0 OR o.id < $2::bigint)"
            " ORDER BY o.id DESC LIMIT $3",
            3 },
        /* $1 is a bigint[] literal of order ids. */
        { "order_items",
            "SELECT order_id, product_id, quantity, unit_price FROM order_items"
            " WHERE order_id = ANY ($1::bigint[]) ORDER BY order_id, product_id",
            1 },
        /* The oldest PENDING orders of a mode, each with the milliseconds until it is $2 ms
         * old (0 once it is): the saga deadline scan, on the partial index orders_pending. */
        { "order_pending_due",
            "SELECT id, greatest(0, ceil(extract(epoch FROM created_at"
            " + $2::double precision * interval '1 millisecond' - now()) * 1000))::bigint"
            " FROM orders WHERE status = 'PENDING' AND mode = $1 ORDER BY id LIMIT $3",
            3 },
        /* Seeding empties the txn tables too (txn.h names them): the admin path only. */
        { "order_seed_truncate", "TRUNCATE orders, order_items RESTART IDENTITY CASCADE", 0 },
};

const db_stmt_table order_stmts = {
        .stmts = order_stmt_list,
        .n = sizeof(order_stmt_list) / sizeof(order_stmt_list[0]),
};

static const char *const state_names[] = {
        [ORDER_PENDING] = "PENDING",
        [ORDER_COMPLETED] = "COMPLETED",
        [ORDER_CANCELLED] = "CANCELLED",
};

static const char *const mode_names[ORDER_MODE_END] = {
#define ORDER_MODE_NAME(e, n, name) [e] = name,
        ORDER_MODES(ORDER_MODE_NAME)
#undef ORDER_MODE_NAME
};

const char *
order_state_name(order_state state)
{
        if (state < ORDER_PENDING || state > ORDER_CANCELLED) {
                return "";
        }
        return state_names[state];
}

const char *
order_mode_name(order_mode mode)
{
        if (mode < 1 || mode >= ORDER_MODE_END) {
                return "";
        }
        return mode_names[mode];
}

order_mode
order_mode_from_name(const char *name)
{
        for (int m = 1; m < ORDER_MODE_END; m++) {
                if (name != NULL && strcmp(name, mode_names[m]) == 0) {
                        return (order_mode) m;
                }
        }
        return (order_mode) 0;
}

static order_state
state_from_name(const char *name)
{
        for (int s = ORDER_PENDING; s <= ORDER_CANCELLED; s++) {
                if (strcmp(name, state_names[s]) == 0) {
                        return (order_state) s;
                }
        }
        return (order_state) 0;
}

void
order_failure_set(order_failure *f, const char *branch, rpc_status st, const char *fmt, ...)
{
        va_list ap;

        snprintf(f->branch, sizeof(f->branch), "%s", branch);
        snprintf(f->status, sizeof(f->status), "%s", rpc_status_name(st));
        va_start(ap, fmt);
        vsnprintf(f->message, sizeof(f->message), fmt, ap);
        va_end(ap);
}

void
order_rec_fini(order_rec *r)
{
        if (r == NULL) {
                return;
        }
        free(r->reason);
        free(r->items);
        r->reason = NULL;
        r->items = NULL;
        r->n_items = 0;
}

void
order_recs_free(order_rec *recs, size_t n)
{
        if (recs == NULL) {
                return;
        }
        for (size_t i = 0; i < n; i++) {
                order_rec_fini(&recs[i]);
        }
        free(recs);
}

/* A bigint[] literal "{v,v,...}" of one field of each item (0 product, 1 quantity, 2 price),
 * or of n ids when lines is NULL; malloc'd. */
static char *
array_literal(const order_line *lines, const int64_t *ids, size_t n, int field)
{
        size_t cap = 3 + n * 21;
        char *buf = rpc_xmalloc(cap);
        size_t len = 0;

        buf[len++] = '{';
        for (size_t i = 0; i < n; i++) {
                int64_t v = ids != NULL ? ids[i]
                    : field == 0        ? lines[i].product_id
                    : field == 1        ? lines[i].quantity
                                        : lines[i].unit_price;
                len += (size_t) snprintf(
                    buf + len, cap - len, "%s%lld", i > 0 ? "," : "", (long long) v);
        }
        buf[len++] = '}';
        buf[len] = '\0';
        return buf;
}

rpc_status
order_store_next_id(db_conn *db, int64_t *ret_order_id)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        rpc_status st;

        st = db_exec(db, "order_next_id", NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        *ret_order_id = db_get_i64(res, 0, 0);
        return RPC_OK;
}

/* The two inserts of order_store_create, in the open transaction. */
static rpc_status
create_in_tx(db_conn *db, const order_new *o, int64_t *ret_order_id, int64_t *ret_created_at_ms)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        char *arrays[3];
        int64_t id;
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        if (o->order_id > 0) {
                db_params_i64(&p, o->order_id);
        } else {
                db_params_null(&p);
        }
        db_params_i64(&p, o->user_id);
        db_params_str(&p, state_names[o->status]);
        db_params_str(&p, o->reason != NULL ? o->reason : "");
        db_params_i64(&p, o->total);
        db_params_i64(&p, o->discount);
        if (o->coupon_id > 0) {
                db_params_i64(&p, o->coupon_id);
        } else {
                db_params_null(&p);
        }
        db_params_str(&p, order_mode_name(o->mode));
        if (o->idempotency_key != NULL && o->idempotency_key[0] != '\0') {
                db_params_str(&p, o->idempotency_key);
        } else {
                db_params_null(&p);
        }
        db_params_str(&p, o->failure != NULL ? o->failure->branch : "");
        db_params_str(&p, o->failure != NULL ? o->failure->status : "");
        db_params_str(&p, o->failure != NULL ? o->failure->message : "");
        st = db_exec(db, "order_insert", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        id = db_get_i64(res, 0, 0);
        for (int f = 0; f < 3; f++) {
                arrays[f] = array_literal(o->items, NULL, o->n_items, f);
        }
        db_params_init(&p);
        db_params_i64(&p, id);
        for (int f = 0; f < 3; f++) {
                db_params_str(&p, arrays[f]);
        }
        st = db_exec_count(db, "order_insert_items", &p, &rows);
        for (int f = 0; f < 3; f++) {
                free(arrays[f]);
        }
        if (st != RPC_OK) {
                return st;
        }
        if (rows != (int64_t) o->n_items) {
                return RPC_INTERNAL;
        }
        *ret_order_id = id;
        if (ret_created_at_ms != NULL) {
                *ret_created_at_ms = db_get_i64(res, 0, 1);
        }
        return RPC_OK;
}

typedef struct create_args {
        const order_new *o;
        int64_t *ret_order_id;
        int64_t *ret_created_at_ms;
} create_args;

static rpc_status
create_tx(db_conn *db, void *arg)
{
        create_args *a = arg;

        return create_in_tx(db, a->o, a->ret_order_id, a->ret_created_at_ms);
}

rpc_status
order_store_create(
    db_conn *db, const order_new *o, int64_t *ret_order_id, int64_t *ret_created_at_ms)
{
        if (o->n_items == 0 || o->n_items > ORDER_ITEMS_MAX || o->items == NULL
            || (o->status != ORDER_PENDING && o->status != ORDER_CANCELLED)
            || order_mode_name(o->mode)[0] == '\0') {
                return RPC_INVALID_ARGUMENT;
        }
        create_args a
            = { .o = o, .ret_order_id = ret_order_id, .ret_created_at_ms = ret_created_at_ms };

        return db_transaction(db, ORDER_TX_ATTEMPTS, create_tx, &a);
}

/* After an update that changed no row: OK if the order is in state want already (and its
 * update time into *ret_updated_at_ms, may be NULL), NOT_FOUND if there is no such order,
 * FAILED_PRECONDITION if it is in another state. */
static rpc_status
state_is(db_conn *db, int64_t order_id, order_state want, int64_t *ret_updated_at_ms)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        st = db_exec(db, "order_state", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_NOT_FOUND;
        }
        if (state_from_name(db_get_str(res, 0, 0)) != want) {
                return RPC_FAILED_PRECONDITION;
        }
        if (ret_updated_at_ms != NULL) {
                *ret_updated_at_ms = db_get_i64(res, 0, 1);
        }
        return RPC_OK;
}

rpc_status
order_store_complete(db_conn *db, int64_t order_id, int64_t discount, int64_t *ret_updated_at_ms)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        db_params_i64(&p, discount);
        st = db_exec(db, "order_complete", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return state_is(db, order_id, ORDER_COMPLETED, ret_updated_at_ms);
        }
        if (ret_updated_at_ms != NULL) {
                *ret_updated_at_ms = db_get_i64(res, 0, 0);
        }
        return RPC_OK;
}

rpc_status
order_store_cancel(db_conn *db, int64_t order_id, const char *reason)
{
        return order_store_cancel_failed(db, order_id, reason, NULL);
}

rpc_status
order_store_cancel_failed(db_conn *db, int64_t order_id, const char *reason, const order_failure *f)
{
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        db_params_str(&p, reason != NULL ? reason : "");
        if (f != NULL) {
                db_params_str(&p, f->branch);
                db_params_str(&p, f->status);
                db_params_str(&p, f->message);
        }
        st = db_exec_count(db, f != NULL ? "order_cancel_failed" : "order_cancel", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        return rows == 1 ? RPC_OK : state_is(db, order_id, ORDER_CANCELLED, NULL);
}

rpc_status
order_store_set_failure(db_conn *db, int64_t order_id, const order_failure *f)
{
        int64_t rows = 0;
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        db_params_str(&p, f->branch);
        db_params_str(&p, f->status);
        db_params_str(&p, f->message);
        return db_exec_count(db, "order_failure", &p, &rows);
}

/* Reads row r of an ORDER_COLUMNS result into rec (no items yet). */
static void
rec_read(const PGresult *res, int r, order_rec *rec)
{
        memset(rec, 0, sizeof(*rec));
        rec->order_id = db_get_i64(res, r, 0);
        rec->user_id = db_get_i64(res, r, 1);
        rec->status = state_from_name(db_get_str(res, r, 2));
        rec->reason = rpc_xstrdup(db_get_str(res, r, 3));
        rec->total = db_get_i64(res, r, 4);
        rec->discount = db_get_i64(res, r, 5);
        rec->amount = db_get_i64(res, r, 6);
        rec->coupon_id = db_get_i64(res, r, 7);
        rec->mode = order_mode_from_name(db_get_str(res, r, 8));
        rec->created_at_ms = db_get_i64(res, r, 9);
        rec->updated_at_ms = db_get_i64(res, r, 10);
        snprintf(rec->failure.branch, sizeof(rec->failure.branch), "%s", db_get_str(res, r, 11));
        snprintf(rec->failure.status, sizeof(rec->failure.status), "%s", db_get_str(res, r, 12));
        snprintf(rec->failure.message, sizeof(rec->failure.message), "%s", db_get_str(res, r, 13));
}

/* Reads the items of n orders (of any order) with one statement. */
static rpc_status
items_read(db_conn *db, order_rec *recs, size_t n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        int64_t *ids;
        char *arr;
        db_params p;
        rpc_status st;
        int rows;

        if (n == 0) {
                return RPC_OK;
        }
        ids = rpc_xcalloc(n, sizeof(*ids));
        for (size_t i = 0; i < n; i++) {
                ids[i] = recs[i].order_id;
        }
        arr = array_literal(NULL, ids, n, 0);
        free(ids);
        db_params_init(&p);
        db_params_str(&p, arr);
        st = db_exec(db, "order_items", &p, &res);
        free(arr);
        if (st != RPC_OK) {
                return st;
        }
        rows = db_rows(res);
        /* Rows come by order id: each order's run is contiguous. */
        for (int r = 0; r < rows;) {
                int64_t id = db_get_i64(res, r, 0);
                int end = r;
                order_rec *rec = NULL;

                while (end < rows && db_get_i64(res, end, 0) == id) {
                        end++;
                }
                for (size_t i = 0; i < n; i++) {
                        if (recs[i].order_id == id) {
                                rec = &recs[i];
                                break;
                        }
                }
                /* A second run of one order cannot come (ORDER BY order_id); if it did, the
                 * first one stands rather than leak. */
                if (rec != NULL && rec->items == NULL) {
                        rec->n_items = (size_t) (end - r);
                        rec->items = rpc_xcalloc(rec->n_items, sizeof(*rec->items));
                        for (int k = r; k < end; k++) {
                                rec->items[k - r] = (order_line) {
                                        .product_id = db_get_i64(res, k, 1),
                                        .quantity = db_get_i64(res, k, 2),
                                        .unit_price = db_get_i64(res, k, 3),
                                };
                        }
                }
                r = end;
        }
        return RPC_OK;
}

/* One order by a statement with one parameter. */
static rpc_status
get_one(db_conn *db, const char *stmt, db_params *p, order_rec *ret_rec)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        order_rec rec;
        rpc_status st;

        st = db_exec(db, stmt, p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_NOT_FOUND;
        }
        rec_read(res, 0, &rec);
        st = items_read(db, &rec, 1);
        if (st != RPC_OK) {
                order_rec_fini(&rec);
                return st;
        }
        *ret_rec = rec;
        return RPC_OK;
}

rpc_status
order_store_get(db_conn *db, int64_t order_id, order_rec *ret_rec)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        return get_one(db, "order_get", &p, ret_rec);
}

rpc_status
order_store_find_key(db_conn *db, const char *idempotency_key, order_rec *ret_rec)
{
        db_params p;

        db_params_init(&p);
        db_params_str(&p, idempotency_key);
        return get_one(db, "order_get_by_key", &p, ret_rec);
}

rpc_status
order_store_list(db_conn *db, int64_t user_id, int64_t before_id, int limit, order_rec **ret_recs,
    size_t *ret_n, int64_t *ret_next_before_id)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        order_rec *recs;
        db_params p;
        rpc_status st;
        int rows;

        if (limit < 1 || limit > ORDER_ITEMS_MAX) {
                return RPC_INVALID_ARGUMENT;
        }
        /* One row more than the page tells whether another page follows. */
        db_params_init(&p);
        db_params_i64(&p, user_id);
        db_params_i64(&p, before_id);
        db_params_i64(&p, (int64_t) limit + 1);
        st = db_exec(db, "order_list", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        rows = db_rows(res);
        *ret_next_before_id = 0;
        if (rows > limit) {
                rows = limit;
                *ret_next_before_id = db_get_i64(res, rows - 1, 0);
        }
        recs = rpc_xcalloc(rows > 0 ? (size_t) rows : 1, sizeof(*recs));
        for (int r = 0; r < rows; r++) {
                rec_read(res, r, &recs[r]);
        }
        st = items_read(db, recs, (size_t) rows);
        if (st != RPC_OK) {
                order_recs_free(recs, (size_t) rows);
                return st;
        }
        *ret_recs = recs;
        *ret_n = (size_t) rows;
        return RPC_OK;
}

rpc_status
order_store_pending_due(
    db_conn *db, order_mode mode, int64_t age_ms, int limit, order_due *ret_due, size_t *ret_n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;
        int rows;

        if (limit < 1 || limit > ORDER_ITEMS_MAX || age_ms < 0
            || order_mode_name(mode)[0] == '\0') {
                return RPC_INVALID_ARGUMENT;
        }
        db_params_init(&p);
        db_params_str(&p, order_mode_name(mode));
        db_params_i64(&p, age_ms);
        db_params_i64(&p, limit);
        st = db_exec(db, "order_pending_due", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        rows = db_rows(res);
        for (int r = 0; r < rows; r++) {
                ret_due[r] = (order_due) {
                        .order_id = db_get_i64(res, r, 0),
                        .due_in_ms = db_get_i64(res, r, 1),
                };
        }
        *ret_n = (size_t) rows;
        return RPC_OK;
}

/* The seed's transaction (db_transaction runs it again when it aborts). */
static rpc_status
seed_run(db_conn *db, void *arg)
{
        (void) arg;
        return db_exec(db, "order_seed_truncate", NULL, NULL);
}

rpc_status
order_store_seed(db_conn *db, const svc_seed *s)
{
        svc_seed copy = *s;

        return db_transaction(db, SVC_SEED_ATTEMPTS, seed_run, &copy);
}
