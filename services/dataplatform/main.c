/* main.c: mercato-dataplatform: wiring of the mock data platform; no business logic here. */
#include "dataplatform.pb-c.h"
#include "dataplatform_priv.h"
#include "dataplatform_store.h"
#include "event.pb-c.h"
#include "svc.h"
#include "txn.h"

static const svc_service dp_services[] = {
        { &mercato__dataplatform__v1__data_platform_service__descriptor, dp_methods, DP_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, dp_event_methods, DP_N_EVENT_METHODS },
};

int
main(int argc, char **argv)
{
        const db_stmt_table tables[] = { txn_stmts, dataplatform_stmts };
        const db_migration_set sets[] = { txn_migrations, dataplatform_migrations };
        const svc_def def = {
                .name = "dataplatform",
                .services = dp_services,
                .n_services = sizeof(dp_services) / sizeof(dp_services[0]),
                .stmts = tables,
                .n_stmts = sizeof(tables) / sizeof(tables[0]),
                .migrations = sets,
                .n_migrations = sizeof(sets) / sizeof(sets[0]),
                .needs_db = true,
        };

        return svc_main(&def, argc, argv);
}
