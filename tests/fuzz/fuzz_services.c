/* fuzz_services.c: every service wired as its main.c wires it, hosted for the fuzz targets. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cart.pb-c.h"
#include "cart_priv.h"
#include "cart_store.h"
#include "dataplatform.pb-c.h"
#include "dataplatform_priv.h"
#include "dataplatform_store.h"
#include "event.pb-c.h"
#include "fuzz_host.h"
#include "modes.h"
#include "order_priv.h"
#include "payment.pb-c.h"
#include "payment_priv.h"
#include "payment_store.h"
#include "product.pb-c.h"
#include "product_priv.h"
#include "product_store.h"
#include "saga_priv.h"
#include "tpc.h"
#include "txn.h"
#include "txn.pb-c.h"
#include "user.pb-c.h"
#include "user_priv.h"
#include "user_store.h"

int __wrap_usleep(useconds_t usec);

/* The 2pc participant sleeps past the prepare timeout for a step switched to `timeout`,
 * and between retries: in the fuzz targets these return at once (-Wl,--wrap=usleep). */
int
__wrap_usleep(useconds_t usec)
{
        (void) usec;
        return 0;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const svc_service product_services[] = {
        { &mercato__product__v1__product_service__descriptor, product_methods, PRODUCT_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, product_event_methods,
            PRODUCT_N_EVENT_METHODS },
        { &mercato__txn__v1__participant__descriptor, product_tpc_methods, TXN_TPC_N_METHODS },
};
static const svc_service cart_services[] = {
        { &mercato__cart__v1__cart_service__descriptor, cart_methods, CART_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, cart_event_methods, CART_N_EVENT_METHODS },
};
static const svc_service user_services[] = {
        { &mercato__user__v1__user_service__descriptor, user_methods, USER_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, user_event_methods, USER_N_EVENT_METHODS },
        { &mercato__txn__v1__participant__descriptor, user_tpc_methods, TXN_TPC_N_METHODS },
};
static const svc_service payment_services[] = {
        { &mercato__payment__v1__payment_service__descriptor, payment_methods, PAYMENT_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, payment_event_methods,
            PAYMENT_N_EVENT_METHODS },
        { &mercato__txn__v1__participant__descriptor, payment_tpc_methods, TXN_TPC_N_METHODS },
};
static const svc_service dp_services[] = {
        { &mercato__dataplatform__v1__data_platform_service__descriptor, dp_methods, DP_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, dp_event_methods, DP_N_EVENT_METHODS },
};
static const svc_service order_services[] = {
        { &mercato__order__v1__order_service__descriptor, order_methods, ORDER_N_METHODS },
        { &mercato__event__v1__event_sink__descriptor, order_event_methods, ORDER_N_EVENT_METHODS },
};

/* The statement tables are extern objects, so they are copied in at run time. */
static db_stmt_table product_tables[3];
static db_stmt_table cart_tables[2];
static db_stmt_table user_tables[3];
static db_stmt_table payment_tables[3];
static db_stmt_table dp_tables[2];
static db_stmt_table order_tables[3];
static db_stmt_table mono_tables[7];
static svc_def defs[FUZZ_N_SERVICES];

static void
defs_init(void)
{
        memcpy(product_tables, (db_stmt_table[]) { txn_stmts, txn_tpc_stmts, product_stmts },
            sizeof(product_tables));
        memcpy(cart_tables, (db_stmt_table[]) { txn_stmts, cart_stmts }, sizeof(cart_tables));
        memcpy(user_tables, (db_stmt_table[]) { txn_stmts, txn_tpc_stmts, user_stmts },
            sizeof(user_tables));
        memcpy(payment_tables, (db_stmt_table[]) { txn_stmts, txn_tpc_stmts, payment_stmts },
            sizeof(payment_tables));
        memcpy(dp_tables, (db_stmt_table[]) { txn_stmts, dataplatform_stmts }, sizeof(dp_tables));
        memcpy(order_tables, (db_stmt_table[]) { txn_stmts, txn_tpc_stmts, order_stmts },
            sizeof(order_tables));
        memcpy(mono_tables,
            (db_stmt_table[]) { txn_stmts, product_stmts, cart_stmts, user_stmts, order_stmts,
                payment_stmts, dataplatform_stmts },
            sizeof(mono_tables));
        defs[0] = (svc_def) { .name = "product",
                .services = product_services,
                .n_services = N(product_services),
                .stmts = product_tables,
                .n_stmts = N(product_tables),
                .needs_db = true,
                .relay_source = "product" };
        defs[1] = (svc_def) { .name = "cart",
                .services = cart_services,
                .n_services = N(cart_services),
                .stmts = cart_tables,
                .n_stmts = N(cart_tables),
                .needs_db = true };
        defs[2] = (svc_def) { .name = "user",
                .services = user_services,
                .n_services = N(user_services),
                .stmts = user_tables,
                .n_stmts = N(user_tables),
                .needs_db = true,
                .relay_source = "user" };
        defs[3] = (svc_def) { .name = "payment",
                .services = payment_services,
                .n_services = N(payment_services),
                .stmts = payment_tables,
                .n_stmts = N(payment_tables),
                .needs_db = true,
                .relay_source = "payment" };
        defs[4] = (svc_def) { .name = "dataplatform",
                .services = dp_services,
                .n_services = N(dp_services),
                .stmts = dp_tables,
                .n_stmts = N(dp_tables),
                .needs_db = true };
        defs[5] = (svc_def) { .name = "order",
                .services = order_services,
                .n_services = N(order_services),
                .stmts = order_tables,
                .n_stmts = N(order_tables),
                .monolith_stmts = mono_tables,
                .n_monolith_stmts = N(mono_tables),
                .needs_db = true,
                .relay_source = "order" };
}

const svc_def *
fuzz_service(size_t i)
{
        if (defs[0].name == NULL) {
                defs_init();
        }
        return i < FUZZ_N_SERVICES ? &defs[i] : NULL;
}

fuzz_host *
fuzz_host_new(const svc_def *def, rpc_faults *faults, size_t recv_max)
{
        fuzz_host *h = rpc_xcalloc(1, sizeof(*h));
        rpc_server_opts opts = {
                .name = def->name,
                .workers = 1,
                .recv_max = recv_max,
                .faults = faults,
        };
        char err[512];

        h->def = def;
        h->svc = fuzz_svc_new(def, rpc_conf_new());
        if (rpc_server_new(&opts, &h->srv) != RPC_OK
            || fuzz_svc_add_services(h->svc, h->srv, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "fuzz: cannot host %s: %s\n", def->name, err);
                abort();
        }
        fuzz_server_ready(h->srv);
        h->worker = fuzz_svc_worker(h->svc);
        if (strcmp(def->name, "order") == 0) {
                /* No coordinator: a 2pc PlaceOrder is refused at once, after validation,
                 * rather than waiting for one to start. The saga, never started, refuses
                 * its orders likewise. */
                order_mode_ops_of(ORDER_MODE_TWO_PC)->stop(h->svc);
        }
        return h;
}

void
fuzz_host_free(fuzz_host *h)
{
        if (h == NULL) {
                return;
        }
        rpc_server_free(h->srv);
        fuzz_svc_free(h->svc, h->worker);
        free(h);
}

uint8_t *
fuzz_host_call(fuzz_host *h, const uint8_t *frame, size_t len, size_t *ret_len)
{
        return fuzz_server_dispatch(h->srv, frame, len, h->worker, ret_len);
}

size_t
fuzz_methods_all(const fuzz_method **ret_methods)
{
        static fuzz_method *methods;
        static size_t n;

        if (methods == NULL) {
                for (size_t i = 0; i < FUZZ_N_SERVICES; i++) {
                        fuzz_host *h = fuzz_host_new(fuzz_service(i), NULL, 0);
                        size_t k = fuzz_server_n_methods(h->srv);

                        methods = rpc_xrealloc(methods, (n + k) * sizeof(*methods));
                        for (size_t m = 0; m < k; m++) {
                                fuzz_method *fm = &methods[n++];
                                fm->host = h;
                                fm->name = fuzz_server_method(h->srv, m, &fm->input, &fm->output);
                        }
                }
        }
        *ret_methods = methods;
        return n;
}

void
fuzz_check_reply(
    const char *method, const ProtobufCMessageDescriptor *output, const uint8_t *frame, size_t len)
{
        Mercato__Rpc__V1__Reply *reply = NULL;
        ProtobufCMessage *out = NULL;
        char err[256];

        if (rpc_envelope_decode_reply(frame, len, SIZE_MAX, &reply, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "fuzz: %s: the reply does not decode: %s\n", method, err);
                abort();
        }
        rpc_status st = reply->status != NULL ? (rpc_status) reply->status->code : RPC_OK;
        if ((int) st < 0 || st > RPC_STATUS_MAX) {
                fprintf(stderr, "fuzz: %s: reply status %d\n", method, (int) st);
                abort();
        }
        if (st == RPC_OK && output != NULL
            && rpc_payload_unpack(
                   output, reply->payload.data, reply->payload.len, &out, err, sizeof(err))
                != RPC_OK) {
                fprintf(stderr, "fuzz: %s: the OK payload does not unpack: %s\n", method, err);
                abort();
        }
        if (st != RPC_OK && reply->payload.len != 0) {
                fprintf(
                    stderr, "fuzz: %s: a %s reply with a payload\n", method, rpc_status_name(st));
                abort();
        }
        if (out != NULL) {
                protobuf_c_message_free_unpacked(out, NULL);
        }
        protobuf_c_message_free_unpacked(&reply->base, NULL);
}
