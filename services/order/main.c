/* main.c: mercato-order: wiring of the order service; no business logic here. */
#include <stdio.h>

#include "cart_store.h"
#include "dataplatform_store.h"
#include "event.pb-c.h"
#include "modes.h"
#include "order_tx.h"
#include "order_priv.h"
#include "payment_store.h"
#include "product_store.h"
#include "saga_priv.h"
#include "tpc.h"
#include "txn.h"
#include "user_store.h"

static const svc_service order_services[] = {
        { &mercato__order__v1__order_service__descriptor, order_methods, ORDER_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, order_event_methods, ORDER_N_EVENT_METHODS },
};

/* Refuses to start with a default mode that is not a mode; starts every mode (the saga's
 * clock, the 2pc coordinator's epoch and recovery). */
static rpc_status
order_start(svc *s)
{
        if (order_default_mode(svc_conf(s)) == 0) {
                fprintf(stderr, "mercato-order: unknown mode '%s' (",
                    rpc_conf_get(svc_conf(s), "order", "mode"));
                for (int m = 1; m < ORDER_MODE_END; m++) {
                        fprintf(stderr, "%s%s", m > 1 ? ", " : "", order_mode_name((order_mode) m));
                }
                fprintf(stderr, ")\n");
                return RPC_INVALID_ARGUMENT;
        }
        return order_modes_start(s);
}

static void
order_stop(svc *s)
{
        order_modes_stop(s);
}

int
main(int argc, char **argv)
{
        /* Its own database: orders and the outbox. */
        const db_stmt_table tables[] = { txn_stmts, txn_tpc_stmts, order_stmts, order_orch_stmts };
        const db_migration_set sets[] = { txn_migrations, order_migrations };
        /* The monolith database: every store, so that one local transaction runs the SQL
         * of every service. */
        const db_stmt_table mono_tables[] = {
                txn_stmts,
                product_stmts,
                cart_stmts,
                user_stmts,
                order_stmts,
                payment_stmts,
                dataplatform_stmts,
        };
        const db_migration_set mono_sets[] = {
                txn_migrations,
                product_migrations,
                cart_migrations,
                user_migrations,
                order_migrations,
                payment_migrations,
                dataplatform_migrations,
        };
        const svc_def def = {
                .name = "order",
                .services = order_services,
                .n_services = sizeof(order_services) / sizeof(order_services[0]),
                .stmts = tables,
                .n_stmts = sizeof(tables) / sizeof(tables[0]),
                .migrations = sets,
                .n_migrations = sizeof(sets) / sizeof(sets[0]),
                .monolith_stmts = mono_tables,
                .n_monolith_stmts = sizeof(mono_tables) / sizeof(mono_tables[0]),
                .monolith_migrations = mono_sets,
                .n_monolith_migrations = sizeof(mono_sets) / sizeof(mono_sets[0]),
                .needs_db = true,
                .relay_source = "order",
                .start = order_start,
                .stop = order_stop,
        };

        return svc_main(&def, argc, argv);
}
