/* main.c: mercato-cart: wiring of the cart service; no business logic here. */
#include "cart.pb-c.h"
#include "cart_priv.h"
#include "cart_store.h"
#include "event.pb-c.h"
#include "svc.h"
#include "txn.h"

static const svc_service cart_services[] = {
        { &mercato__cart__v1__cart_service__descriptor, cart_methods, CART_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, cart_event_methods, CART_N_EVENT_METHODS },
};

int
main(int argc, char **argv)
{
        const db_stmt_table tables[] = { txn_stmts, cart_stmts };
        const db_migration_set sets[] = { txn_migrations, cart_migrations };
        const svc_def def = {
                .name = "cart",
                .services = cart_services,
                .n_services = sizeof(cart_services) / sizeof(cart_services[0]),
                .stmts = tables,
                .n_stmts = sizeof(tables) / sizeof(tables[0]),
                .migrations = sets,
                .n_migrations = sizeof(sets) / sizeof(sets[0]),
                .needs_db = true,
        };
        int code = svc_main(&def, argc, argv);

        /* The server has stopped: no handler uses the product client any more. */
        cart_product_client_close();
        return code;
}
