/* main.c: mercato-payment: wiring of the payment service; no business logic here. */
#include "payment.pb-c.h"
#include "payment_priv.h"
#include "payment_store.h"
#include "svc.h"
#include "txn.h"

static const svc_service payment_services[] = {
        { &mercato__payment__v1__payment_service__descriptor, payment_methods, PAYMENT_N_METHODS },
};

int
main(int argc, char **argv)
{
        /* The txn tables exist in every database of a service (seeding empties them). */
        const db_stmt_table tables[] = { payment_stmts };
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
