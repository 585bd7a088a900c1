/* user_store.h: the user service's SQL: balances with their ledger, coupons and their holders. */
#ifndef MERCATO_USER_STORE_H
#define MERCATO_USER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "seed.h"

/*
 * Every function works on its own or inside the caller's open transaction. Outside one, it
 * runs in a transaction of its own (retried up to 3 times on ABORTED). Inside one, it adds
 * its statements to the caller's transaction, and the caller rolls back when it returns an
 * error: a failed function may have done part of its work. So the order service runs them
 * all in one monolith transaction, and the saga or 2pc participants in separate ones.
 *
 * Errors other than the ones listed map the SQLSTATE (db_status_from_sqlstate); the
 * connection's db_errmsg says more.
 */

/* Every statement of the store, names prefixed "user_"; prepare on each connection that
 * calls the functions below (the monolith connection of the order service included). */
extern const db_stmt_table user_stmts;

/* Tables users, ledger, coupons, user_coupons (component "user"). */
extern const db_migration_set user_migrations;

/* The largest amount one charge or debit may move: 10^12. */
#define USER_AMOUNT_MAX INT64_C(1000000000000)

typedef enum user_discount_kind {
        USER_DISCOUNT_FIXED = 1,   /* value is an amount off; same number as the proto's */
        USER_DISCOUNT_PERCENT = 2, /* value is a percentage off, 1..100 */
} user_discount_kind;

typedef struct user_coupon_rec {
        int64_t user_id;
        int64_t coupon_id;
        char name[128]; /* truncated to fit */
        user_discount_kind kind;
        int64_t value;
        int64_t quantity;      /* how many can be issued in all */
        int64_t issued;        /* how many are issued now */
        int64_t used_order_id; /* 0 while unused */
        int64_t issued_at_ms;
} user_coupon_rec;

/* The balance of a user, and (ret_frozen may be NULL) what TCC tries froze of it: the
 * available amount is balance - frozen. NOT_FOUND if there is no such user. */
rpc_status user_store_get_balance(
    db_conn *db, int64_t user_id, int64_t *ret_balance, int64_t *ret_frozen) RPC_WARN_UNUSED;

/* A TCC try (mode tcc), inside the caller's open transaction: holds the coupon (unless
 * coupon_id is 0) and freezes total less its discount (*ret_discount), so that neither can
 * be spent by another order. FAILED_PRECONDITION when the coupon is not held unused and free
 * (*ret_what "coupon") or too little is available (*ret_what "balance"); NOT_FOUND for no
 * such coupon or user; ALREADY_EXISTS when the order froze before. The caller rolls back
 * on failure. */
rpc_status user_store_try(db_conn *db, int64_t user_id, int64_t coupon_id, int64_t order_id,
    int64_t total, int64_t *ret_discount, const char **ret_what) RPC_WARN_UNUSED;

/* Inside the caller's open transaction: settles the order's try. With confirm the frozen
 * amount is spent (a 'debit' ledger row) and the coupon used; else both are free again.
 * *ret_settled says there was a frozen try to settle. */
rpc_status user_store_settle(
    db_conn *db, int64_t order_id, bool confirm, bool *ret_settled) RPC_WARN_UNUSED;

/* Checks that the user exists and, unless coupon_id is 0, that the coupon exists: the
 * first thing an order checks, so that bad input records nothing. NOT_FOUND, with
 * *ret_what set to "user" or "coupon", when one does not. */
rpc_status user_store_check(
    db_conn *db, int64_t user_id, int64_t coupon_id, const char **ret_what) RPC_WARN_UNUSED;

/* Adds amount (1..USER_AMOUNT_MAX, not checked here) to the balance and records a 'charge'
 * ledger row, in one statement. *ret_balance is the balance after it, *ret_ledger_id the
 * ledger row. NOT_FOUND for an unknown user; OUT_OF_RANGE if the balance would overflow. */
rpc_status user_store_charge(db_conn *db, int64_t user_id, int64_t amount, int64_t *ret_balance,
    int64_t *ret_ledger_id) RPC_WARN_UNUSED;

/* Like user_store_charge, but once per idempotency key (non-empty): a second charge with
 * the same key changes nothing and returns the first one's ledger row and the current
 * balance. ALREADY_EXISTS if the key was used for another user or amount (and, inside the
 * caller's transaction, when a concurrent charge with the key committed first). */
rpc_status user_store_charge_once(db_conn *db, int64_t user_id, int64_t amount,
    const char *idempotency_key, int64_t *ret_balance, int64_t *ret_ledger_id) RPC_WARN_UNUSED;

/* Issues a coupon to a user, first come first served: in one transaction, inserts the
 * user's holding (the primary key keeps one per user, under any concurrency), then takes
 * one of the coupon's quantity with a conditional update. NOT_FOUND for an unknown user or
 * coupon (*ret_what "user" or "coupon"), ALREADY_EXISTS if the user holds it already,
 * RESOURCE_EXHAUSTED when none is left. *ret_rec is the holding after the issue. */
rpc_status user_store_issue_coupon(db_conn *db, int64_t user_id, int64_t coupon_id,
    user_coupon_rec *ret_rec, const char **ret_what) RPC_WARN_UNUSED;

/* The coupons a user holds, by coupon id, in a malloc'd array (free it) of *ret_n items.
 * NOT_FOUND for an unknown user. */
rpc_status user_store_list_coupons(
    db_conn *db, int64_t user_id, user_coupon_rec **ret_recs, size_t *ret_n) RPC_WARN_UNUSED;

/* The discount a coupon gives on total: FIXED min(value, total), PERCENT total*value/100
 * (rounded down). Never more than total. */
int64_t user_discount(user_discount_kind kind, int64_t value, int64_t total);

/* Marks the user's coupon used by order_id and sets *ret_discount for total (>= 0).
 * Idempotent: a coupon already used by this order gives the same discount again.
 * FAILED_PRECONDITION "coupon_invalid" when the user does not hold it unused; NOT_FOUND
 * when there is no such coupon. */
rpc_status user_store_use_coupon(db_conn *db, int64_t user_id, int64_t coupon_id, int64_t order_id,
    int64_t total, int64_t *ret_discount) RPC_WARN_UNUSED;

/* Makes the coupon used by order_id unused again. OK when there is none. */
rpc_status user_store_restore_coupon(db_conn *db, int64_t order_id) RPC_WARN_UNUSED;

/* Debits amount (1..USER_AMOUNT_MAX) for order_id with a conditional update
 * (balance >= amount) and a 'debit' ledger row. Idempotent: an order already debited is
 * not debited again (OK). FAILED_PRECONDITION "insufficient_balance"; NOT_FOUND for an
 * unknown user. */
rpc_status user_store_debit(
    db_conn *db, int64_t user_id, int64_t amount, int64_t order_id) RPC_WARN_UNUSED;

/* Refunds the order's debit, once: a 'refund' ledger row and the amount back on the
 * balance. OK when the order has no debit or was refunded already. */
rpc_status user_store_refund(db_conn *db, int64_t order_id) RPC_WARN_UNUSED;

/* In one transaction of its own: empties users, ledger, coupons, user_coupons (and the txn
 * tables when the database has them), then inserts users 1..s->users named 'user-N' with
 * s->balance each and one 'charge' ledger row of it (so the ledger sums to the balance),
 * and coupons 1..s->coupons named 'coupon-N': FIXED with value 500 + (N*131 + seed) % 1500
 * for odd N, PERCENT with value 5 + (N + seed) % 26 for even N, quantity
 * s->coupon_quantity, none issued. */
rpc_status user_store_seed(db_conn *db, const svc_seed *s) RPC_WARN_UNUSED;

#endif
