/* barrier.c: the consumers' insert-first barrier (inbox), inside the caller's transaction. */
#include <stdio.h>
#include <string.h>

#include "txn_priv.h"

rpc_status
txn_barrier_enter(db_conn *db, const char *consumer, const char *key)
{
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        if (!txn_valid_name(consumer, TXN_NAME_MAX) || !txn_valid_name(key, TXN_KEY_MAX)) {
                return RPC_INVALID_ARGUMENT;
        }
        if (!db_in_transaction(db)) {
                return RPC_FAILED_PRECONDITION;
        }
        db_params_init(&p);
        db_params_str(&p, consumer);
        db_params_str(&p, key);
        /* ON CONFLICT DO NOTHING waits for a concurrent inserter of the same pair and then
         * affects no row if that one committed: exactly one transaction gets the 1. */
        st = db_exec_count(db, TXN_STMT_BARRIER_ENTER, &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        return rows == 1 ? RPC_OK : RPC_ALREADY_EXISTS;
}

rpc_status
txn_outcome_record(
    db_conn *db, const char *consumer, const char *key, const char *reason, int64_t discount)
{
        db_params p;

        if (strlen(reason) >= sizeof(((txn_outcome *) 0)->reason)) {
                return RPC_INVALID_ARGUMENT;
        }
        db_params_init(&p);
        db_params_str(&p, consumer);
        db_params_str(&p, key);
        db_params_str(&p, reason);
        db_params_i64(&p, discount);
        return db_exec(db, TXN_STMT_OUTCOME_RECORD, &p, NULL);
}

rpc_status
txn_outcome_get(db_conn *db, const char *consumer, const char *key, txn_outcome *ret)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        *ret = (txn_outcome) { 0 };
        db_params_init(&p);
        db_params_str(&p, consumer);
        db_params_str(&p, key);
        st = db_exec(db, TXN_STMT_OUTCOME_GET, &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (PQntuples(res) == 1) {
                ret->found = true;
                snprintf(ret->reason, sizeof(ret->reason), "%s", db_get_str(res, 0, 0));
                ret->discount = db_get_i64(res, 0, 1);
        }
        return RPC_OK;
}
