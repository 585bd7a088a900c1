/* dataplatform_store.h: the data platform's SQL: completed orders received, once each. */
#ifndef MERCATO_DATAPLATFORM_STORE_H
#define MERCATO_DATAPLATFORM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "seed.h"

/* Every statement of the store, names prefixed "dataplatform_". */
extern const db_stmt_table dataplatform_stmts;

/* Tables received_orders and dp_counters (component "dataplatform"). */
extern const db_migration_set dataplatform_migrations;

/* A completed order as the platform recorded it. */
typedef struct dp_record {
        char event_id[72];
        int64_t order_id;
        int64_t user_id;
        int64_t amount;
        int64_t received_at_ms;
} dp_record;

/* Inside the caller's open transaction: records an event. ALREADY_EXISTS when the event
 * id was recorded before (the caller rolls back and counts a duplicate). */
rpc_status dataplatform_store_record(db_conn *db, const char *event_id, int64_t order_id,
    int64_t user_id, int64_t amount) RPC_WARN_UNUSED;

/* Counts one delivery refused as a duplicate (a statement of its own, outside any
 * transaction). */
rpc_status dataplatform_store_count_duplicate(db_conn *db) RPC_WARN_UNUSED;

/* A page of records by order id, after after_order_id: the records of the first page_size
 * orders (all records of an order together, so a page may hold more than page_size when an
 * order was recorded twice). *ret_recs is malloc'd (NULL when empty); *ret_more tells
 * whether records follow the page. */
rpc_status dataplatform_store_list(db_conn *db, int64_t after_order_id, int page_size,
    dp_record **ret_recs, size_t *ret_n, bool *ret_more) RPC_WARN_UNUSED;

/* The records of one order (normally one, none if it was never received). */
rpc_status dataplatform_store_get_order(
    db_conn *db, int64_t order_id, dp_record **ret_recs, size_t *ret_n) RPC_WARN_UNUSED;

/* The number of distinct events recorded and of duplicate deliveries refused. */
rpc_status dataplatform_store_stats(
    db_conn *db, int64_t *ret_received, int64_t *ret_duplicates) RPC_WARN_UNUSED;

/* In one transaction of its own: empties received_orders, the counters and the txn
 * tables. */
rpc_status dataplatform_store_seed(db_conn *db, const svc_seed *s) RPC_WARN_UNUSED;

#endif
