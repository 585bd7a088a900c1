/* load.c: the closed-loop PlaceOrder driver: N client threads, each its own order stream. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "load.h"
#include "util.h"
#include "order.pb-c.h"

#define POLL_MS 20

int64_t
bench_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* What the clients share. */
typedef struct load_run_state {
        const load_opts *o;
        rpc_client *client;
        const char *const *metadata; /* dataset: monolith in monolith mode */
        int64_t t_start, t_warm, t_stop;
        uint64_t run_id;
        atomic_uint_fast64_t finished;
        atomic_uint_fast64_t errors;
        atomic_int running;
} load_run_state;

/* One client thread's record. */
typedef struct load_client {
        load_run_state *run;
        int index;
        load_order *orders;
        size_t n, cap;
} load_client;

static bool
stopping(const load_run_state *run)
{
        return run->o->stop != NULL && atomic_load(run->o->stop);
}

static bool
terminal(int status)
{
        return status == MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED
            || status == MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED;
}

/* Copies what an Order reply says into the record. */
static void
note_order(load_order *rec, const Mercato__Order__V1__Order *ord)
{
        if (ord == NULL) {
                return;
        }
        rec->order_id = ord->order_id;
        rec->status = (int) ord->status;
        rec->amount = ord->amount;
        snprintf(rec->reason, sizeof(rec->reason), "%s", ord->reason != NULL ? ord->reason : "");
}

/* After a PENDING reply: GetOrder until the order is terminal or the wait ends. */
static void
await_terminal(load_run_state *run, load_order *rec)
{
        const load_opts *o = run->o;
        int64_t wait_ms = o->terminal_wait_ms > 0 ? o->terminal_wait_ms : 30000;
        int64_t until = bench_now_ns() + wait_ms * 1000000;
        Mercato__Order__V1__GetOrderRequest req = MERCATO__ORDER__V1__GET_ORDER_REQUEST__INIT;
        rpc_call_opts copts = { .timeout_ms = 2000, .idempotent = true, .metadata = run->metadata };

        req.order_id = rec->order_id;
        while (!terminal(rec->status) && bench_now_ns() < until) {
                ProtobufCMessage *resp = NULL;
                bench_sleep_ms(POLL_MS);
                if (rpc_client_call(run->client, "/mercato.order.v1.OrderService/GetOrder",
                        &req.base, &mercato__order__v1__order__descriptor, &resp, &copts, NULL)
                    == RPC_OK) {
                        note_order(rec, (const Mercato__Order__V1__Order *) resp);
                        protobuf_c_message_free_unpacked(resp, NULL);
                }
        }
}

static void
place_one(load_client *lc, load_order *rec, uint64_t seq)
{
        load_run_state *run = lc->run;
        const load_opts *o = run->o;
        Mercato__Order__V1__PlaceOrderRequest req = MERCATO__ORDER__V1__PLACE_ORDER_REQUEST__INIT;
        Mercato__Order__V1__PlaceOrderItem items[BENCH_ITEMS_MAX];
        Mercato__Order__V1__PlaceOrderItem *itemp[BENCH_ITEMS_MAX];
        ProtobufCMessage *resp = NULL;
        rpc_error err = { 0 };
        rpc_call_opts copts = {
                .timeout_ms = o->call_timeout_ms > 0 ? o->call_timeout_ms : 10000,
                .metadata = run->metadata,
        };

        req.user_id = rec->want.user_id;
        req.mode = (Mercato__Order__V1__Mode) o->mode;
        for (size_t i = 0; i < rec->want.n_items; i++) {
                mercato__order__v1__place_order_item__init(&items[i]);
                items[i].product_id = rec->want.product_id[i];
                items[i].quantity = rec->want.quantity[i];
                itemp[i] = &items[i];
        }
        req.n_items = rec->want.n_items;
        req.items = itemp;
        if (o->keyed) {
                snprintf(rec->key, sizeof(rec->key), "bench-%016llx-%d-%llu",
                    (unsigned long long) run->run_id, lc->index, (unsigned long long) seq);
                copts.idempotency_key = rec->key;
                /* A lost request is sent again well within the deadline. */
                copts.attempt_timeout_ms = copts.timeout_ms / 3;
        } else {
                copts.no_retry = true;
        }
        if (o->on_start != NULL) {
                o->on_start(o->hook_arg, rec);
        }
        rec->start_ns = bench_now_ns();
        rec->rpc = rpc_client_call(run->client, "/mercato.order.v1.OrderService/PlaceOrder",
            &req.base, &mercato__order__v1__place_order_response__descriptor, &resp, &copts, &err);
        rec->reply_ns = bench_now_ns();
        if (rec->rpc == RPC_OK) {
                const Mercato__Order__V1__PlaceOrderResponse *pr
                    = (const Mercato__Order__V1__PlaceOrderResponse *) resp;
                note_order(rec, pr->order);
                rec->acked
                    = rec->status == MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED;
                protobuf_c_message_free_unpacked(resp, NULL);
                if (!terminal(rec->status) && rec->order_id > 0) {
                        await_terminal(run, rec);
                }
        } else {
                rec->transport = err.transport;
                atomic_fetch_add(&run->errors, 1);
        }
        if (terminal(rec->status)) {
                rec->end_ns = bench_now_ns();
        }
        rec->counted = rec->start_ns >= run->t_warm && rec->start_ns < run->t_stop;
        if (o->on_end != NULL) {
                o->on_end(o->hook_arg, rec);
        }
        atomic_fetch_add(&run->finished, 1);
}

static void *
client_main(void *arg)
{
        load_client *lc = arg;
        load_run_state *run = lc->run;
        bench_rng rng;
        uint64_t seq = 0;

        bench_rng_init(&rng, run->o->w->seed, (uint64_t) lc->index);
        while (!stopping(run) && bench_now_ns() < run->t_stop) {
                if (lc->n == lc->cap) {
                        lc->cap = lc->cap > 0 ? lc->cap * 2 : 1024;
                        lc->orders = rpc_xrealloc(lc->orders, lc->cap * sizeof(*lc->orders));
                }
                load_order *rec = &lc->orders[lc->n++];
                memset(rec, 0, sizeof(*rec));
                rec->client = lc->index;
                bench_order_next(run->o->w, &rng, &rec->want);
                place_one(lc, rec, seq++);
                if (run->o->think_ms > 0) {
                        bench_sleep_ms(run->o->think_ms);
                }
        }
        atomic_fetch_sub(&run->running, 1);
        return NULL;
}

rpc_status
load_run(const load_opts *o, load_result *ret, char *err, size_t errlen)
{
        static const char *const mono_md[] = { "dataset", "monolith", NULL };
        load_run_state run = { .o = o };
        rpc_client_opts copts = { .breaker_threshold = 1000000 };
        load_client *clients;
        pthread_t *threads;
        rpc_status st;
        int started = 0;

        memset(ret, 0, sizeof(*ret));
        if (o->clients < 1 || o->clients > 1024 || o->duration_s <= 0 || o->warmup_s < 0
            || o->w == NULL || o->order_address == NULL) {
                snprintf(err, errlen, "load: bad options (clients 1..1024, duration > 0)");
                return RPC_INVALID_ARGUMENT;
        }
        /* The bench measures the service, not the client's breaker: it never opens. */
        st = rpc_client_open(o->order_address, &copts, &run.client);
        if (st != RPC_OK) {
                snprintf(err, errlen, "load: cannot open a client for %s: %s", o->order_address,
                    rpc_status_name(st));
                return st;
        }
        if (o->mode == MERCATO__ORDER__V1__MODE__MODE_MONOLITH) {
                run.metadata = mono_md;
        }
        run.t_start = bench_now_ns();
        run.run_id = (uint64_t) run.t_start ^ ((uint64_t) getpid() << 32);
        run.t_warm = run.t_start + (int64_t) (o->warmup_s * 1e9);
        run.t_stop = run.t_warm + (int64_t) (o->duration_s * 1e9);
        clients = rpc_xcalloc((size_t) o->clients, sizeof(*clients));
        threads = rpc_xcalloc((size_t) o->clients, sizeof(*threads));
        atomic_store(&run.running, o->clients);
        for (int i = 0; i < o->clients; i++) {
                clients[i] = (load_client) { .run = &run, .index = i };
                if (pthread_create(&threads[i], NULL, client_main, &clients[i]) != 0) {
                        atomic_fetch_sub(&run.running, o->clients - i);
                        break;
                }
                started++;
        }
        while (atomic_load(&run.running) > 0) {
                bench_sleep_ms(200);
                if (o->progress != NULL) {
                        o->progress(o->progress_arg, (double) (bench_now_ns() - run.t_start) / 1e9,
                            atomic_load(&run.finished), atomic_load(&run.errors));
                }
        }
        for (int i = 0; i < started; i++) {
                pthread_join(threads[i], NULL);
        }
        ret->t_start_ns = run.t_start;
        ret->t_warm_ns = run.t_warm;
        ret->t_end_ns = bench_now_ns();
        for (int i = 0; i < started; i++) {
                ret->n_orders += clients[i].n;
        }
        ret->orders = rpc_xcalloc(ret->n_orders > 0 ? ret->n_orders : 1, sizeof(*ret->orders));
        size_t k = 0;
        for (int i = 0; i < started; i++) {
                memcpy(&ret->orders[k], clients[i].orders, clients[i].n * sizeof(load_order));
                k += clients[i].n;
                free(clients[i].orders);
        }
        /* Stopped early: the window is what ran; else the duration asked for. */
        int64_t window_end = ret->t_end_ns < run.t_stop ? ret->t_end_ns : run.t_stop;
        ret->seconds = window_end > run.t_warm ? (double) (window_end - run.t_warm) / 1e9 : 0;
        free(clients);
        free(threads);
        rpc_client_free(run.client);
        if (started == 0) {
                snprintf(err, errlen, "load: could not start a client thread");
                return RPC_INTERNAL;
        }
        return RPC_OK;
}

void
load_result_free(load_result *r)
{
        free(r->orders);
        memset(r, 0, sizeof(*r));
}
