/* store.c: the payment service's SQL: capture, refund, lookup, seeding. */
#include <string.h>

#include "payment_store.h"

static const db_stmt payment_stmt_list[] = {
        /* One statement for the usual case; no row means declined or there already. */
        { "payment_capture",
            "INSERT INTO payments (order_id, user_id, amount, status)"
            " SELECT $1, $2, $3, 'captured'"
            " WHERE NOT EXISTS (SELECT 1 FROM declined_users WHERE user_id = $2)"
            " ON CONFLICT (order_id) DO NOTHING",
            3 },
        { "payment_authorize",
            "INSERT INTO payments (order_id, user_id, amount, status)"
            " SELECT $1, $2, $3, 'authorized'"
            " WHERE NOT EXISTS (SELECT 1 FROM declined_users WHERE user_id = $2)"
            " ON CONFLICT (order_id) DO NOTHING",
            3 },
        /* $2 true: captured, else voided. */
        { "payment_settle",
            "UPDATE payments SET status = CASE WHEN $2 THEN 'captured' ELSE 'voided' END,"
            " updated_at = now() WHERE order_id = $1 AND status = 'authorized'",
            2 },
        { "payment_capture_why",
            "SELECT (SELECT status FROM payments WHERE order_id = $1),"
            " EXISTS (SELECT 1 FROM declined_users WHERE user_id = $2)",
            2 },
        { "payment_refund",
            "UPDATE payments SET status = 'refunded', updated_at = now()"
            " WHERE order_id = $1 AND status = 'captured'",
            1 },
        { "payment_get",
            "SELECT id, order_id, user_id, amount, status,"
            " (extract(epoch FROM created_at) * 1000)::bigint,"
            " (extract(epoch FROM updated_at) * 1000)::bigint"
            " FROM payments WHERE order_id = $1",
            1 },
        /* Seeding empties the txn tables too (txn.h names them): the admin path only. */
        { "payment_seed_truncate", "TRUNCATE payments, declined_users RESTART IDENTITY CASCADE",
            0 },
        /* The last $2 of the user ids 1..$1. */
        { "payment_seed_declined",
            "INSERT INTO declined_users (user_id)"
            " SELECT g FROM generate_series(greatest($1::bigint - $2::bigint + 1, 1), $1::bigint) "
            "g",
            2 },
};

const db_stmt_table payment_stmts = {
        .stmts = payment_stmt_list,
        .n = sizeof(payment_stmt_list) / sizeof(payment_stmt_list[0]),
};

/* Inserts the order's payment with stmt (payment_capture or payment_authorize), which
 * leaves it in status `want`. */
static rpc_status
insert_payment(db_conn *db, const char *stmt, const char *want, int64_t order_id, int64_t user_id,
    int64_t amount)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        db_params_i64(&p, user_id);
        db_params_i64(&p, amount);
        st = db_exec_count(db, stmt, &p, &rows);
        if (st != RPC_OK || rows == 1) {
                return st;
        }
        db_params_init(&p);
        db_params_i64(&p, order_id);
        db_params_i64(&p, user_id);
        st = db_exec(db, "payment_capture_why", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (strcmp(db_get_str(res, 0, 0), want) == 0) {
                return RPC_OK; /* there before */
        }
        return RPC_FAILED_PRECONDITION; /* declined, or undone before */
}

rpc_status
payment_store_capture(db_conn *db, int64_t order_id, int64_t user_id, int64_t amount)
{
        return insert_payment(db, "payment_capture", "captured", order_id, user_id, amount);
}

rpc_status
payment_store_authorize(db_conn *db, int64_t order_id, int64_t user_id, int64_t amount)
{
        return insert_payment(db, "payment_authorize", "authorized", order_id, user_id, amount);
}

rpc_status
payment_store_settle(db_conn *db, int64_t order_id, bool confirm, int64_t *ret_rows)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        db_params_bool(&p, confirm);
        return db_exec_count(db, "payment_settle", &p, ret_rows);
}

rpc_status
payment_store_refund(db_conn *db, int64_t order_id)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        return db_exec(db, "payment_refund", &p, NULL);
}

rpc_status
payment_store_get(db_conn *db, int64_t order_id, payment_rec *ret_rec)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        st = db_exec(db, "payment_get", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_NOT_FOUND;
        }
        ret_rec->payment_id = db_get_i64(res, 0, 0);
        ret_rec->order_id = db_get_i64(res, 0, 1);
        ret_rec->user_id = db_get_i64(res, 0, 2);
        ret_rec->amount = db_get_i64(res, 0, 3);
        const char *status = db_get_str(res, 0, 4);
        ret_rec->status = strcmp(status, "refunded") == 0 ? PAYMENT_REFUNDED
            : strcmp(status, "authorized") == 0           ? PAYMENT_AUTHORIZED
            : strcmp(status, "voided") == 0               ? PAYMENT_VOIDED
                                                          : PAYMENT_CAPTURED;
        ret_rec->created_at_ms = db_get_i64(res, 0, 5);
        ret_rec->updated_at_ms = db_get_i64(res, 0, 6);
        return RPC_OK;
}

/* The seed's transaction (db_transaction runs it again when it aborts). */
static rpc_status
seed_run(db_conn *db, void *arg)
{
        const svc_seed *s = arg;
        db_params p;
        rpc_status st;

        st = db_exec(db, "payment_seed_truncate", NULL, NULL);
        if (st == RPC_OK && s->declining_users > 0) {
                db_params_init(&p);
                db_params_i64(&p, s->users);
                db_params_i64(&p, s->declining_users);
                st = db_exec(db, "payment_seed_declined", &p, NULL);
        }
        return st;
}

rpc_status
payment_store_seed(db_conn *db, const svc_seed *s)
{
        svc_seed copy = *s;

        if (s->users < 0 || s->declining_users < 0) {
                return RPC_INVALID_ARGUMENT;
        }
        return db_transaction(db, SVC_SEED_ATTEMPTS, seed_run, &copy);
}
