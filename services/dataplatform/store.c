/* store.c: the data platform's SQL: record an event once, count duplicates, list, seed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplatform_store.h"

#define DP_RECORD_COLUMNS                                                                          \
        "r.event_id, r.order_id, r.user_id, r.amount,"                                             \
        " (extract(epoch FROM r.received_at) * 1000)::bigint"

static const db_stmt dataplatform_stmt_list[] = {
        { "dataplatform_record",
            "INSERT INTO received_orders (event_id, order_id, user_id, amount)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
            4 },
        { "dataplatform_count_duplicate",
            "UPDATE dp_counters SET value = value + 1 WHERE name = 'duplicates'", 0 },
        /* The first $2 records after order $1, extended to the last order's every record, and
         * whether any record follows. */
        { "dataplatform_list",
            "WITH page AS (SELECT order_id FROM received_orders WHERE order_id > $1"
            "  ORDER BY order_id LIMIT $2),"
            " last AS (SELECT max(order_id) AS id FROM page)"
            " SELECT " DP_RECORD_COLUMNS ","
            " EXISTS (SELECT 1 FROM received_orders x WHERE x.order_id > (SELECT id FROM last))"
            " FROM received_orders r WHERE r.order_id > $1 AND r.order_id <= (SELECT id FROM last)"
            " ORDER BY r.order_id, r.event_id",
            2 },
        { "dataplatform_get_order",
            "SELECT " DP_RECORD_COLUMNS " FROM received_orders r WHERE r.order_id = $1"
            " ORDER BY r.event_id",
            1 },
        { "dataplatform_stats",
            "SELECT (SELECT count(*) FROM received_orders),"
            " (SELECT coalesce(sum(value), 0)::bigint FROM dp_counters WHERE name = 'duplicates')",
            0 },
        /* Seeding empties the txn tables too (txn.h names them): the admin path only. */
        { "dataplatform_seed_truncate", "TRUNCATE received_orders RESTART IDENTITY CASCADE", 0 },
        { "dataplatform_seed_counters", "UPDATE dp_counters SET value = 0", 0 },
};

const db_stmt_table dataplatform_stmts = {
        .stmts = dataplatform_stmt_list,
        .n = sizeof(dataplatform_stmt_list) / sizeof(dataplatform_stmt_list[0]),
};

rpc_status
dataplatform_store_record(
    db_conn *db, const char *event_id, int64_t order_id, int64_t user_id, int64_t amount)
{
        db_params p;
        int64_t rows = 0;
        rpc_status st;

        db_params_init(&p);
        db_params_str(&p, event_id);
        db_params_i64(&p, order_id);
        db_params_i64(&p, user_id);
        db_params_i64(&p, amount);
        st = db_exec_count(db, "dataplatform_record", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        return rows == 1 ? RPC_OK : RPC_ALREADY_EXISTS;
}

rpc_status
dataplatform_store_count_duplicate(db_conn *db)
{
        return db_exec(db, "dataplatform_count_duplicate", NULL, NULL);
}

/* Copies the records of a result (columns as DP_RECORD_COLUMNS) into a fresh array. */
static void
records_from(const PGresult *res, dp_record **ret_recs, size_t *ret_n)
{
        int rows = db_rows(res);
        dp_record *recs = NULL;

        if (rows > 0) {
                recs = rpc_xcalloc((size_t) rows, sizeof(*recs));
        }
        for (int r = 0; r < rows; r++) {
                snprintf(recs[r].event_id, sizeof(recs[r].event_id), "%s", db_get_str(res, r, 0));
                recs[r].order_id = db_get_i64(res, r, 1);
                recs[r].user_id = db_get_i64(res, r, 2);
                recs[r].amount = db_get_i64(res, r, 3);
                recs[r].received_at_ms = db_get_i64(res, r, 4);
        }
        *ret_recs = recs;
        *ret_n = (size_t) rows;
}

rpc_status
dataplatform_store_list(db_conn *db, int64_t after_order_id, int page_size, dp_record **ret_recs,
    size_t *ret_n, bool *ret_more)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, after_order_id);
        db_params_i64(&p, page_size);
        st = db_exec(db, "dataplatform_list", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        *ret_more = db_rows(res) > 0 && db_get_bool(res, 0, 5);
        records_from(res, ret_recs, ret_n);
        return RPC_OK;
}

rpc_status
dataplatform_store_get_order(db_conn *db, int64_t order_id, dp_record **ret_recs, size_t *ret_n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        st = db_exec(db, "dataplatform_get_order", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        records_from(res, ret_recs, ret_n);
        return RPC_OK;
}

rpc_status
dataplatform_store_stats(db_conn *db, int64_t *ret_received, int64_t *ret_duplicates)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        rpc_status st;

        st = db_exec(db, "dataplatform_stats", NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        *ret_received = db_get_i64(res, 0, 0);
        *ret_duplicates = db_get_i64(res, 0, 1);
        return RPC_OK;
}

/* The seed's transaction (db_transaction runs it again when it aborts). */
static rpc_status
seed_run(db_conn *db, void *arg)
{
        rpc_status st;

        (void) arg;
        st = db_exec(db, "dataplatform_seed_truncate", NULL, NULL);
        if (st == RPC_OK) {
                st = db_exec(db, "dataplatform_seed_counters", NULL, NULL);
        }
        return st;
}

rpc_status
dataplatform_store_seed(db_conn *db, const svc_seed *s)
{
        svc_seed copy = *s;

        return db_transaction(db, SVC_SEED_ATTEMPTS, seed_run, &copy);
}
