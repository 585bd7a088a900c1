/* seed_db.h: seeds one database with the stores' seed functions, for `mercato seed` and tests. */
#ifndef MERCATO_SEED_DB_H
#define MERCATO_SEED_DB_H

#include <stddef.h>

#include "db.h"
#include "seed.h"

/* One store: its topology section, its statements, its migrations and its seed function. */
typedef struct seed_store {
        const char *name;
        const db_stmt_table *stmts;
        const db_migration_set *migrations;
        rpc_status (*seed)(db_conn *db, const svc_seed *s);
} seed_store;

/* Every store, in the order `mercato seed` loads them: product, cart, user, payment,
 * order, dataplatform. */
#define SEED_N_STORES 6
extern const seed_store seed_stores[SEED_N_STORES];

/* The store of a topology section ("user"), or NULL. */
const seed_store *seed_store_named(const char *name);

/* Where seed_database stopped. */
typedef enum seed_phase {
        SEED_PHASE_CONNECT = 0, /* the database could not be reached */
        SEED_PHASE_MIGRATE = 1, /* a migration failed */
        SEED_PHASE_SEED = 2,    /* a store's seed function failed (store says which) */
} seed_phase;

typedef struct seed_failure {
        seed_phase phase;
        const seed_store *store; /* SEED_PHASE_SEED: the store that failed; else NULL */
        char msg[512];
} seed_failure;

/* Seeds the database at conninfo with the n stores of list: applies the txn migrations and
 * each store's (on a bare connection, since statements are prepared when a connection
 * opens), connects with their statements (and txn's), then runs each store's seed function
 * in order; each empties its tables and loads its data in one
 * transaction; then it empties the txn tables (txn_reset). done (may be NULL) is called
 * after each store, with arg. Returns RPC_OK, or
 * the failing status with *ret_fail (may be NULL) saying where and why. */
rpc_status seed_database(const char *conninfo, const seed_store *const *list, size_t n,
    const svc_seed *s, void (*done)(const seed_store *store, void *arg), void *arg,
    seed_failure *ret_fail) RPC_WARN_UNUSED;

#endif
