/* consume.c: one consumer delivery as one transaction behind the barrier, retried on abort. */
#include "txn_priv.h"

/* Attempts per delivery: the first and two retries when the transaction aborts. */
#define TXN_CONSUME_ATTEMPTS 3

/* One attempt: begin, enter the barrier, apply, commit. Rolls back on a duplicate and on
 * any failure. Sets *ret_duplicate only on success. */
static rpc_status
consume_once(db_conn *db, const char *consumer, const char *key,
    rpc_status (*apply)(db_conn *db, void *arg), void *arg, bool *ret_duplicate)
{
        rpc_status st;

        st = db_begin(db);
        if (st != RPC_OK) {
                return st;
        }
        st = txn_barrier_enter(db, consumer, key);
        if (st == RPC_ALREADY_EXISTS) {
                db_rollback(db);
                *ret_duplicate = true;
                return RPC_OK;
        }
        if (st == RPC_OK) {
                st = apply(db, arg);
        }
        if (st == RPC_OK) {
                st = db_commit(db);
        }
        if (st != RPC_OK) {
                db_rollback(db);
                return st;
        }
        *ret_duplicate = false;
        return RPC_OK;
}

rpc_status
txn_consume(db_conn *db, const char *consumer, const char *key,
    rpc_status (*apply)(db_conn *db, void *arg), void *arg, bool *ret_duplicate)
{
        rpc_status st;

        for (int attempt = 1;; attempt++) {
                st = consume_once(db, consumer, key, apply, arg, ret_duplicate);
                if (st == RPC_OK || !db_retryable(st) || attempt == TXN_CONSUME_ATTEMPTS) {
                        return st;
                }
        }
}
