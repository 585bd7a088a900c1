/* The seed parameters shared by every store's seed function and `mercato seed`. */
#pragma once

#include <stdint.h>

/* What to load. Each store that owns seedable data exports
 * `rpc_status <name>_store_seed(db_conn *db, const svc_seed *s);` which, in one transaction,
 * empties its domain tables, then inserts the data deterministically; the caller empties
 * the txn tables with txn_reset. The transaction runs again (db_transaction, up to
 * SVC_SEED_ATTEMPTS runs) when it aborts: its TRUNCATE can deadlock with a service
 * preparing its statements at start-up, which locks the same tables in another order. */
#define SVC_SEED_ATTEMPTS 4

typedef struct svc_seed {
        int64_t products;        /* ids 1..products */
        int64_t stock;           /* initial stock of every product */
        int64_t users;           /* ids 1..users */
        int64_t balance;         /* initial balance of every user */
        int64_t coupons;         /* ids 1..coupons */
        int64_t coupon_quantity; /* how many of each coupon can be issued */
        int64_t declining_users; /* the last N user ids have payments that decline */
        int64_t poor_users;      /* the N user ids before those start with balance 0 */
        uint64_t seed;           /* prices and discounts derive from it */
} svc_seed;
