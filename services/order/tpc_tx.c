/* tpc_tx.c: the order's own transactions in a two-phase commit (the NOTES are in tpc.c). */
#include "order_tx.h"

/* Runs of a transaction that aborts. */
#define TPC_TX_ATTEMPTS 3

rpc_status
order_tpc_begin(db_conn *db, const order_new *on, const char *gid, const char *coordinator,
    const char *branches, int64_t *ret_created_at_ms)
{
        int64_t order_id = on->order_id;
        rpc_status st = RPC_INTERNAL;

        for (int attempt = 0; attempt < TPC_TX_ATTEMPTS; attempt++) {
                st = db_begin(db);
                if (st != RPC_OK) {
                        return st;
                }
                st = order_store_create(db, on, &order_id, ret_created_at_ms);
                if (st == RPC_OK) {
                        st = txn_tpc_log_begin(db, gid, coordinator, order_id, branches);
                }
                if (st == RPC_OK) {
                        st = db_commit(db);
                }
                if (st == RPC_OK) {
                        return RPC_OK;
                }
                db_rollback(db);
                if (!db_retryable(st)) {
                        return st;
                }
        }
        return st;
}

rpc_status
order_tpc_prepare_own(db_conn *db, const char *own_gid, int64_t order_id, int64_t user_id,
    int64_t total, int64_t discount, const order_line *lines, size_t n, int64_t *ret_updated_at_ms)
{
        rpc_status st = RPC_INTERNAL;

        for (int attempt = 0; attempt < TPC_TX_ATTEMPTS; attempt++) {
                st = txn_tpc_begin(db, own_gid, NULL);
                if (st == RPC_OK) {
                        st = order_store_complete(db, order_id, discount, ret_updated_at_ms);
                }
                if (st == RPC_OK) {
                        st = order_outbox_completed(
                            db, order_id, user_id, total - discount, lines, n, *ret_updated_at_ms);
                }
                if (st == RPC_OK) {
                        st = txn_tpc_prepare(db, own_gid);
                }
                if (st == RPC_OK) {
                        return RPC_OK;
                }
                db_rollback(db);
                if (!db_retryable(st)) {
                        break;
                }
        }
        return st;
}

rpc_status
order_tpc_finished(db_conn *db, int64_t txid, txn_tpc_decision decision, const char *reason)
{
        rpc_status st;

        if (decision != TXN_TPC_ABORT) {
                return RPC_OK;
        }
        st = order_store_cancel(db, txid, reason != NULL && reason[0] != '\0' ? reason : "timeout");
        /* No such order (a re-seed emptied it), or it completed: nothing to record. */
        return st == RPC_NOT_FOUND || st == RPC_FAILED_PRECONDITION ? RPC_OK : st;
}
