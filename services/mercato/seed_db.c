/* seed_db.c: seeds one database with the stores' seed functions, for `mercato seed` and tests. */
#include <stdio.h>
#include <string.h>

#include "cart_store.h"
#include "dataplatform_store.h"
#include "order_store.h"
#include "payment_store.h"
#include "product_store.h"
#include "seed_db.h"
#include "txn.h"
#include "user_store.h"

const seed_store seed_stores[SEED_N_STORES] = {
        { "product", &product_stmts, &product_migrations, product_store_seed },
        { "cart", &cart_stmts, &cart_migrations, cart_store_seed },
        { "user", &user_stmts, &user_migrations, user_store_seed },
        { "payment", &payment_stmts, &payment_migrations, payment_store_seed },
        { "order", &order_stmts, &order_migrations, order_store_seed },
        { "dataplatform", &dataplatform_stmts, &dataplatform_migrations, dataplatform_store_seed },
};

const seed_store *
seed_store_named(const char *name)
{
        for (size_t i = 0; i < SEED_N_STORES; i++) {
                if (strcmp(seed_stores[i].name, name) == 0) {
                        return &seed_stores[i];
                }
        }
        return NULL;
}

static rpc_status
failed(seed_failure *f, seed_phase phase, const seed_store *store, rpc_status st, const char *msg)
{
        if (f != NULL) {
                f->phase = phase;
                f->store = store;
                snprintf(f->msg, sizeof(f->msg), "%s", msg);
        }
        return st;
}

rpc_status
seed_database(const char *conninfo, const seed_store *const *list, size_t n, const svc_seed *s,
    void (*done)(const seed_store *store, void *arg), void *arg, seed_failure *ret_fail)
{
        db_stmt_table tables[SEED_N_STORES + 1];
        db_migration_set sets[SEED_N_STORES + 1];
        db_conn *db = NULL;
        char err[512];
        rpc_status st;

        if (n > SEED_N_STORES) {
                return failed(
                    ret_fail, SEED_PHASE_CONNECT, NULL, RPC_INVALID_ARGUMENT, "too many stores");
        }
        tables[0] = txn_stmts;
        sets[0] = txn_migrations;
        for (size_t i = 0; i < n; i++) {
                tables[i + 1] = *list[i]->stmts;
                sets[i + 1] = *list[i]->migrations;
        }
        /* Statements are prepared when a connection opens, so their tables must exist
         * first: migrate on a bare connection, then open the one that seeds. */
        st = db_connect(conninfo, NULL, 0, &db, err, sizeof(err));
        if (st != RPC_OK) {
                return failed(ret_fail, SEED_PHASE_CONNECT, NULL, st, err);
        }
        st = db_migrate(db, sets, n + 1, err, sizeof(err));
        db_close(db);
        db = NULL;
        if (st != RPC_OK) {
                return failed(ret_fail, SEED_PHASE_MIGRATE, NULL, st, err);
        }
        st = db_connect(conninfo, tables, n + 1, &db, err, sizeof(err));
        if (st != RPC_OK) {
                return failed(ret_fail, SEED_PHASE_CONNECT, NULL, st, err);
        }
        for (size_t i = 0; i < n; i++) {
                st = list[i]->seed(db, s);
                if (st != RPC_OK) {
                        st = failed(ret_fail, SEED_PHASE_SEED, list[i], st, db_errmsg(db));
                        db_close(db);
                        return st;
                }
                if (done != NULL) {
                        done(list[i], arg);
                }
        }
        /* The events, deliveries, barrier keys and 2pc records of the old data go too. */
        st = txn_reset(db);
        if (st != RPC_OK) {
                st = failed(ret_fail, SEED_PHASE_SEED, NULL, st, db_errmsg(db));
        }
        db_close(db);
        return st;
}
