/* barrier.c: the consumers' insert-first barrier (inbox), inside the caller's transaction. */
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
