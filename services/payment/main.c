/* main.c: mercato-payment: wiring of the payment service; no business logic here. */
#include "event.pb-c.h"
#include "payment.pb-c.h"
#include "payment_priv.h"
#include "payment_store.h"
#include "svc.h"
#include "tpc.h"
#include "txn.h"
#include "txn.pb-c.h"

static const svc_service payment_services[] = {
        { &mercato__payment__v1__payment_service__descriptor, payment_methods, PAYMENT_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, payment_event_methods,
            PAYMENT_N_EVENT_METHODS },
        { &mercato__txn__v1__participant__descriptor, payment_tpc_methods, TXN_TPC_N_METHODS },
        { &mercato__txn__v1__saga_participant__descriptor, payment_command_methods,
            EVENTS_N_COMMAND_METHODS },
};

int
main(int argc, char **argv)
{
        /* The txn tables exist in every database of a service (seeding empties them). */
        const db_stmt_table tables[] = { txn_stmts, txn_tpc_stmts, payment_stmts };
        const db_migration_set sets[] = { txn_migrations, payment_migrations };
        const svc_def def = {
                .name = "payment",
                .services = payment_services,
                .n_services = sizeof(payment_services) / sizeof(payment_services[0]),
                .stmts = tables,
                .n_stmts = sizeof(tables) / sizeof(tables[0]),
                .migrations = sets,
                .n_migrations = sizeof(sets) / sizeof(sets[0]),
                .needs_db = true,
                .relay_source = "payment",
        };

        return svc_main(&def, argc, argv);
}
