/* main.c: mercato-user: wiring of the user service; no business logic here. */
#include "event.pb-c.h"
#include "svc.h"
#include "tpc.h"
#include "txn.h"
#include "txn.pb-c.h"
#include "user.pb-c.h"
#include "user_priv.h"
#include "user_store.h"

static const svc_service user_services[] = {
        { &mercato__user__v1__user_service__descriptor, user_methods, USER_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, user_event_methods, USER_N_EVENT_METHODS },
        { &mercato__txn__v1__participant__descriptor, user_tpc_methods, TXN_TPC_N_METHODS },
        { &mercato__txn__v1__saga_participant__descriptor, user_command_methods,
            EVENTS_N_COMMAND_METHODS },
};

int
main(int argc, char **argv)
{
        /* The txn tables exist in every database of a service (seeding empties them). */
        const db_stmt_table tables[] = { txn_stmts, txn_tpc_stmts, user_stmts };
        const db_migration_set sets[] = { txn_migrations, user_migrations };
        const svc_def def = {
                .name = "user",
                .services = user_services,
                .n_services = sizeof(user_services) / sizeof(user_services[0]),
                .stmts = tables,
                .n_stmts = sizeof(tables) / sizeof(tables[0]),
                .migrations = sets,
                .n_migrations = sizeof(sets) / sizeof(sets[0]),
                .needs_db = true,
                .relay_source = "user",
        };

        return svc_main(&def, argc, argv);
}
