/* main.c: mercato-product: wiring of the product service; no business logic here. */
#include "event.pb-c.h"
#include "product.pb-c.h"
#include "product_priv.h"
#include "product_store.h"
#include "svc.h"
#include "tpc.h"
#include "txn.h"
#include "txn.pb-c.h"

static const svc_service product_services[] = {
        { &mercato__product__v1__product_service__descriptor, product_methods, PRODUCT_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, product_event_methods,
            PRODUCT_N_EVENT_METHODS },
        { &mercato__txn__v1__participant__descriptor, product_tpc_methods, TXN_TPC_N_METHODS },
        { &mercato__txn__v1__saga_participant__descriptor, product_command_methods,
            EVENTS_N_COMMAND_METHODS },
};

int
main(int argc, char **argv)
{
        /* The barrier's statements beside the store's; the seed statement names txn tables. */
        const db_stmt_table tables[] = { txn_stmts, txn_tpc_stmts, product_stmts };
        const db_migration_set sets[] = { txn_migrations, product_migrations };
        const svc_def def = {
                .name = "product",
                .services = product_services,
                .n_services = sizeof(product_services) / sizeof(product_services[0]),
                .stmts = tables,
                .n_stmts = sizeof(tables) / sizeof(tables[0]),
                .migrations = sets,
                .n_migrations = sizeof(sets) / sizeof(sets[0]),
                .needs_db = true,
                .relay_source = "product",
        };

        return svc_main(&def, argc, argv);
}
