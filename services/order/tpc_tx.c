/* tpc_tx.c: the order's own transactions in a two-phase commit (the NOTES are in tpc.c). */
#include "order_tx.h"

/* Runs of a transaction that aborts. */
#define TPC_TX_ATTEMPTS 3

typedef struct begin_args {
        const order_new *on;
        const char *gid, *coordinator, *branches;
        int64_t *ret_created_at_ms;
} begin_args;

static rpc_status
begin_tx(db_conn *db, void *arg)
{
        begin_args *a = arg;
        int64_t order_id = a->on->order_id;
        rpc_status st = order_store_create(db, a->on, &order_id, a->ret_created_at_ms);

        if (st != RPC_OK) {
                return st;
        }
        return txn_tpc_log_begin(db, a->gid, a->coordinator, order_id, a->branches);
}

rpc_status
order_tpc_begin(db_conn *db, const order_new *on, const char *gid, const char *coordinator,
    const char *branches, int64_t *ret_created_at_ms)
{
        begin_args a = { .on = on,
                .gid = gid,
                .coordinator = coordinator,
                .branches = branches,
                .ret_created_at_ms = ret_created_at_ms };

        return db_transaction(db, TPC_TX_ATTEMPTS, begin_tx, &a);
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
order_tpc_finished(db_conn *db, const txn_tpc_log_rec *rec)
{
        order_failure f = { 0 };
        rpc_status st;

        if (rec->decision != TXN_TPC_ABORT) {
                return RPC_OK;
        }
        if (rec->failed_branch[0] != '\0') {
                snprintf(f.branch, sizeof(f.branch), "%s", rec->failed_branch);
                snprintf(f.status, sizeof(f.status), "%s", rec->failed_status);
                snprintf(f.message, sizeof(f.message), "%s", rec->failed_message);
        }
        st = order_store_cancel_failed(db, rec->txid,
            rec->reason[0] != '\0' ? rec->reason : "timeout", f.branch[0] != '\0' ? &f : NULL);
        /* No such order (a re-seed emptied it), or it completed: nothing to record. */
        return st == RPC_NOT_FOUND || st == RPC_FAILED_PRECONDITION ? RPC_OK : st;
}
