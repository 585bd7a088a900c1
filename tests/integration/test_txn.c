/* test_txn.c: the outbox, the relay and the barrier, on a real PostgreSQL with in-process sinks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "event.pb-c.h"
#include "harness.h"
#include "txn.h"

/*
 * Each test works in a fresh database with the txn migrations. Subscribers are rpc_servers
 * in this process that serve EventSink/Deliver on tcp://127.0.0.1:<free port>, with a
 * behaviour the test sets: ack, fail the first N calls of each event, fail always, hold
 * calls behind a gate, or take some time; each records every call it gets.
 */

#define MAX_EVENTS 1024
#define MAX_CALLS_RECORDED 16

typedef struct sink_event {
        char id[TXN_EVENT_ID_LEN];
        int calls;                         /* Deliver calls received for it */
        int acks;                          /* of which answered OK */
        int in_flight;                     /* calls being handled right now */
        int max_in_flight;                 /* the most ever handled at once */
        int64_t at_ms[MAX_CALLS_RECORDED]; /* monotonic arrival of each call */
        char relay[16];                    /* the "relay" metadata of the first call */
} sink_event;

typedef struct sink {
        char name[32];
        char url[64];
        rpc_server *srv;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int fail_first; /* fail the first N calls of each event */
        bool fail_always;
        bool gate_closed; /* hold calls until the gate opens */
        int64_t delay_us; /* time each call takes */
        int calls;
        int acks;
        sink_event events[MAX_EVENTS];
        int n_events;
        /* the last call, as received */
        char last_topic[64];
        char last_source[64];
        char last_dataset[32];
        int64_t last_aggregate_id;
        int64_t last_created_at_ms;
        int64_t last_order_id;
        bool last_payload_ok;
} sink;

static sink_event *
sink_find(sink *k, const char *id, bool add)
{
        for (int i = 0; i < k->n_events; i++) {
                if (strcmp(k->events[i].id, id) == 0) {
                        return &k->events[i];
                }
        }
        if (!add || k->n_events == MAX_EVENTS) {
                return NULL;
        }
        sink_event *e = &k->events[k->n_events++];
        memset(e, 0, sizeof(*e));
        snprintf(e->id, sizeof(e->id), "%s", id);
        return e;
}

RPC_HANDLER(sink_deliver, Mercato__Event__V1__Event, Mercato__Event__V1__DeliverAck)
{
        sink *k = rpc_call_worker(call);
        const char *relay = rpc_call_metadata(call, "relay");
        const char *dataset = rpc_call_metadata(call, "dataset");
        ProtobufCMessage *oc = NULL;
        char err[128];
        sink_event *e;
        bool fail;

        (void) resp;
        pthread_mutex_lock(&k->mu);
        k->calls++;
        e = sink_find(k, req->event_id, true);
        if (e == NULL) {
                pthread_mutex_unlock(&k->mu);
                return rpc_call_error(call, RPC_RESOURCE_EXHAUSTED, "sink full");
        }
        if (e->calls < MAX_CALLS_RECORDED) {
                e->at_ms[e->calls] = rpc_now_mono_ms();
        }
        e->calls++;
        if (e->calls == 1 && relay != NULL) {
                snprintf(e->relay, sizeof(e->relay), "%s", relay);
        }
        e->in_flight++;
        if (e->in_flight > e->max_in_flight) {
                e->max_in_flight = e->in_flight;
        }
        snprintf(k->last_topic, sizeof(k->last_topic), "%s", req->topic);
        snprintf(k->last_source, sizeof(k->last_source), "%s", req->source);
        snprintf(k->last_dataset, sizeof(k->last_dataset), "%s", dataset != NULL ? dataset : "");
        k->last_aggregate_id = req->aggregate_id;
        k->last_created_at_ms = req->created_at_ms;
        k->last_payload_ok = rpc_payload_unpack(&mercato__event__v1__order_completed__descriptor,
                                 req->payload.data, req->payload.len, &oc, err, sizeof(err))
            == RPC_OK;
        k->last_order_id = oc != NULL ? ((Mercato__Event__V1__OrderCompleted *) oc)->order_id : -1;
        if (oc != NULL) {
                protobuf_c_message_free_unpacked(oc, NULL);
        }
        while (k->gate_closed) {
                pthread_cond_wait(&k->cv, &k->mu);
        }
        fail = k->fail_always || e->calls <= k->fail_first;
        pthread_mutex_unlock(&k->mu);

        if (k->delay_us > 0) {
                usleep((useconds_t) k->delay_us);
        }

        pthread_mutex_lock(&k->mu);
        e->in_flight--;
        if (!fail) {
                e->acks++;
                k->acks++;
        }
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
        if (fail) {
                return rpc_call_error(call, RPC_INTERNAL, "injected failure");
        }
        return RPC_OK;
}

static const rpc_method sink_methods[] = {
        RPC_METHOD_ENTRY("Deliver", sink_deliver, mercato__event__v1__event__descriptor,
            mercato__event__v1__deliver_ack__descriptor, 0),
};

static void *
sink_worker_init(void *arg, int index)
{
        (void) index;
        return arg;
}

static sink *
sink_start(const char *name)
{
        sink *k = calloc(1, sizeof(*k));
        char err[256] = "";

        assert_non_null(k);
        snprintf(k->name, sizeof(k->name), "%s", name);
        snprintf(k->url, sizeof(k->url), "tcp://127.0.0.1:%d", harness_free_port());
        pthread_mutex_init(&k->mu, NULL);
        pthread_cond_init(&k->cv, NULL);
        rpc_server_opts opts = {
                .name = k->name,
                .workers = 4,
                .worker_init = sink_worker_init,
                .arg = k,
                .drain_ms = 3000,
        };
        assert_int_equal(rpc_server_new(&opts, &k->srv), RPC_OK);
        if (rpc_server_add_service(k->srv, &mercato__event__v1__event_sink__descriptor,
                sink_methods, 1, err, sizeof(err))
            != RPC_OK) {
                fail_msg("add EventSink: %s", err);
        }
        if (rpc_server_listen(k->srv, k->url, err, sizeof(err)) != RPC_OK) {
                fail_msg("listen %s: %s", k->url, err);
        }
        assert_int_equal(rpc_server_start(k->srv), RPC_OK);
        return k;
}

static void
sink_gate(sink *k, bool closed)
{
        pthread_mutex_lock(&k->mu);
        k->gate_closed = closed;
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
}

static void
sink_free(sink *k)
{
        if (k == NULL) {
                return;
        }
        sink_gate(k, false);
        rpc_server_free(k->srv);
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        free(k);
}

/* A snapshot of a sink's counters, taken under its lock. */
static int
sink_calls(sink *k)
{
        pthread_mutex_lock(&k->mu);
        int n = k->calls;
        pthread_mutex_unlock(&k->mu);
        return n;
}

static int
sink_acked_events(sink *k)
{
        int n = 0;

        pthread_mutex_lock(&k->mu);
        for (int i = 0; i < k->n_events; i++) {
                n += k->events[i].acks > 0;
        }
        pthread_mutex_unlock(&k->mu);
        return n;
}

/*
 * Databases and relays
 */

static db_conn *
connect_db(const char *conninfo)
{
        db_conn *db = NULL;
        char err[512] = "";

        if (db_connect(conninfo, &txn_stmts, 1, &db, err, sizeof(err)) != RPC_OK) {
                fail_msg("connect: %s", err);
        }
        return db;
}

/* The test database: created and migrated once (creating and dropping a database per test
 * costs a checkpoint each), and emptied for every test, so each starts with empty txn
 * tables. Returns a copy of its conninfo for the test to free. */
static char *
fresh_db(void)
{
        static char *conninfo;
        db_conn *db = NULL;
        char err[512] = "";

        if (conninfo == NULL) {
                conninfo = harness_db_create("txn");
                if (db_connect(conninfo, NULL, 0, &db, err, sizeof(err)) != RPC_OK) {
                        fail_msg("connect: %s", err);
                }
                if (db_migrate(db, &txn_migrations, 1, err, sizeof(err)) != RPC_OK) {
                        fail_msg("migrate: %s", err);
                }
                db_close(db);
        }
        harness_sql(conninfo, "TRUNCATE txn_outbox, txn_delivery, txn_dead_letters, txn_barrier");
        return rpc_xstrdup(conninfo);
}

/* Adds one event in a transaction of its own and commits; returns its id in id. */
static void
add_event(db_conn *db, const char *source, const char *topic, int64_t order_id, char *id)
{
        Mercato__Event__V1__OrderCompleted oc = MERCATO__EVENT__V1__ORDER_COMPLETED__INIT;

        oc.order_id = order_id;
        oc.user_id = 3;
        oc.amount = 900;
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(txn_outbox_add(db, source, topic, order_id, &oc.base, id), RPC_OK);
        assert_int_equal(db_commit(db), RPC_OK);
}

static txn_relay_opts
relay_opts(const char *conninfo, const rpc_conf *conf)
{
        return (txn_relay_opts) {
                .conninfo = conninfo,
                .source = "order",
                .conf = conf,
                .poll_ms = 100,
                .backoff_initial_ms = 50,
                .backoff_max_ms = 2000,
        };
}

static txn_relay *
relay_start(const txn_relay_opts *o)
{
        txn_relay *r = NULL;

        assert_int_equal(txn_relay_start(o, &r), RPC_OK);
        assert_non_null(r);
        return r;
}

static int64_t query_i64(const char *conninfo, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int64_t
query_i64(const char *conninfo, const char *fmt, ...)
{
        char sql[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(sql, sizeof(sql), fmt, ap);
        va_end(ap);
        return harness_sql_i64(conninfo, sql);
}

/* Polls until the query returns want, or fails the test after timeout_ms. Returns the
 * milliseconds it took. */
static int64_t
wait_i64(const char *conninfo, int64_t want, int64_t timeout_ms, const char *sql)
{
        int64_t start = rpc_now_mono_ms();
        int64_t got;

        for (;;) {
                got = harness_sql_i64(conninfo, sql);
                if (got == want) {
                        return rpc_now_mono_ms() - start;
                }
                if (rpc_now_mono_ms() - start > timeout_ms) {
                        fail_msg("after %lld ms, %s gave %lld, not %lld", (long long) timeout_ms,
                            sql, (long long) got, (long long) want);
                }
                usleep(10 * 1000);
        }
}

/* Polls until fn(k) >= want, or fails the test after timeout_ms. */
static void
wait_sink(sink *k, int (*fn)(sink *), int want, int64_t timeout_ms)
{
        int64_t start = rpc_now_mono_ms();

        while (fn(k) < want) {
                if (rpc_now_mono_ms() - start > timeout_ms) {
                        fail_msg("sink %s: %d after %lld ms, wanted %d", k->name, fn(k),
                            (long long) timeout_ms, want);
                }
                usleep(5 * 1000);
        }
}

/*
 * Outbox
 */

static void
test_txn_outbox_add_rollback_leaves_nothing(void **state)
{
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        Mercato__Event__V1__OrderCompleted oc = MERCATO__EVENT__V1__ORDER_COMPLETED__INIT;
        char id[TXN_EVENT_ID_LEN] = "";
        int64_t pending = -1, dead = -1;

        (void) state;
        oc.order_id = 42;
        /* outside a transaction, and bad arguments */
        assert_int_equal(txn_outbox_add(db, "order", "order.completed", 42, &oc.base, id),
            RPC_FAILED_PRECONDITION);
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(txn_outbox_add(db, "order", "", 42, &oc.base, id), RPC_INVALID_ARGUMENT);
        assert_int_equal(
            txn_outbox_add(db, "", "order.completed", 42, &oc.base, id), RPC_INVALID_ARGUMENT);
        assert_string_equal(id, "");

        /* rolled back: nothing */
        assert_int_equal(txn_outbox_add(db, "order", "order.completed", 42, &oc.base, id), RPC_OK);
        assert_int_equal(strlen(id), 36);
        assert_int_equal(query_i64(conninfo, "SELECT count(*) FROM txn_outbox"), 0);
        db_rollback(db);
        assert_int_equal(query_i64(conninfo, "SELECT count(*) FROM txn_outbox"), 0);
        assert_int_equal(txn_outbox_counts(db, &pending, &dead), RPC_OK);
        assert_int_equal(pending, 0);
        assert_int_equal(dead, 0);

        /* committed: one row, pending, with its payload */
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(txn_outbox_add(db, "order", "order.completed", 42, &oc.base, id), RPC_OK);
        assert_int_equal(txn_outbox_add(db, "order", "order.completed", 43, NULL, NULL), RPC_OK);
        assert_int_equal(db_commit(db), RPC_OK);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_outbox WHERE event_id = '%s' AND "
                             "source = 'order' AND topic = 'order.completed' AND "
                             "aggregate_id = 42 AND NOT fanned_out AND pending = 0 AND "
                             "delivered_at IS NULL AND length(payload) > 0",
                             id),
            1);
        assert_int_equal(query_i64(conninfo,
                             "SELECT length(payload) FROM txn_outbox "
                             "WHERE aggregate_id = 43"),
            0);
        assert_int_equal(txn_outbox_counts(db, &pending, &dead), RPC_OK);
        assert_int_equal(pending, 2);
        assert_int_equal(dead, 0);
        db_close(db);
        free(conninfo);
}

/*
 * Relay
 */

static void
test_txn_relay_delivers_to_all_after_ack(void **state)
{
        static const char *const md[] = { "dataset", "monolith", NULL };
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        sink *dp = sink_start("dataplatform");
        sink *cart = sink_start("cart");
        sink *product = sink_start("product");
        rpc_conf *conf = rpc_conf_new();
        char id[TXN_EVENT_ID_LEN];
        int64_t pending = -1, dead = -1;
        char sql[512];

        (void) state;
        /* no [topics]: order.completed goes to the default subscribers */
        rpc_conf_set(conf, "dataplatform", "address", dp->url);
        rpc_conf_set(conf, "cart", "address", cart->url);
        rpc_conf_set(conf, "product", "address", product->url);
        sink_gate(cart, true);

        int64_t before_ms = rpc_now_unix_ms();
        add_event(db, "order", "order.completed", 7, id);
        txn_relay_opts o = relay_opts(conninfo, conf);
        o.metadata = md;
        o.call_timeout_ms = 10000;
        txn_relay *r = relay_start(&o);
        txn_relay_wake(r);

        /* dataplatform and product ack; cart holds the call */
        snprintf(sql, sizeof(sql),
            "SELECT count(*) FROM txn_delivery WHERE event_id = '%s' AND state = 'done' "
            "AND subscriber IN ('dataplatform', 'product')",
            id);
        wait_i64(conninfo, 2, 5000, sql);
        wait_sink(cart, sink_calls, 1, 5000);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_delivery WHERE event_id = '%s' "
                             "AND subscriber = 'cart' AND state = 'pending' "
                             "AND lease IS NOT NULL AND attempts = 1",
                             id),
            1);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_outbox WHERE event_id = '%s' "
                             "AND delivered_at IS NULL AND pending = 1",
                             id),
            1);
        assert_int_equal(txn_outbox_counts(db, &pending, &dead), RPC_OK);
        assert_int_equal(pending, 1);

        /* the ack finishes the event */
        sink_gate(cart, false);
        snprintf(sql, sizeof(sql),
            "SELECT count(*) FROM txn_outbox WHERE event_id = '%s' "
            "AND delivered_at IS NOT NULL AND pending = 0",
            id);
        wait_i64(conninfo, 1, 5000, sql);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_delivery WHERE event_id = '%s' "
                             "AND state = 'done' AND attempts = 1 AND lease IS NULL "
                             "AND finished_at IS NOT NULL",
                             id),
            3);
        assert_int_equal(txn_outbox_counts(db, &pending, &dead), RPC_OK);
        assert_int_equal(pending, 0);
        assert_int_equal(dead, 0);
        txn_relay_stop(r);

        /* each got it once, as written */
        assert_int_equal(sink_calls(dp), 1);
        assert_int_equal(sink_calls(cart), 1);
        assert_int_equal(sink_calls(product), 1);
        assert_string_equal(dp->events[0].id, id);
        assert_string_equal(dp->last_topic, "order.completed");
        assert_string_equal(dp->last_source, "order");
        assert_string_equal(dp->last_dataset, "monolith");
        assert_int_equal(dp->last_aggregate_id, 7);
        assert_true(dp->last_payload_ok);
        assert_int_equal(dp->last_order_id, 7);
        assert_true(dp->last_created_at_ms >= before_ms - 1000);
        assert_true(dp->last_created_at_ms <= rpc_now_unix_ms() + 1000);

        sink_free(dp);
        sink_free(cart);
        sink_free(product);
        rpc_conf_free(conf);
        db_close(db);
        free(conninfo);
}

static void
test_txn_relay_concurrent_acks_finish_every_event(void **state)
{
        enum { EVENTS = 200 };
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        sink *s[3] = { sink_start("s1"), sink_start("s2"), sink_start("s3") };
        rpc_conf *conf = rpc_conf_new();

        (void) state;
        for (int i = 0; i < 3; i++) {
                rpc_conf_set(conf, s[i]->name, "address", s[i]->url);
        }
        /* a repeated name counts once */
        rpc_conf_set(conf, "topics", "t.fan", "s1, s2 s3 s1");
        txn_relay_opts o = relay_opts(conninfo, conf);
        o.batch = 8;
        txn_relay *r = relay_start(&o);
        assert_int_equal(db_begin(db), RPC_OK);
        for (int i = 0; i < EVENTS; i++) {
                assert_int_equal(txn_outbox_add(db, "order", "t.fan", i + 1, NULL, NULL), RPC_OK);
        }
        assert_int_equal(db_commit(db), RPC_OK);
        txn_relay_wake(r);
        for (int i = 0; i < 3; i++) {
                wait_sink(s[i], sink_acked_events, EVENTS, 30000);
        }
        /* the three subscribers' acks raced on each event's row: none was lost */
        wait_i64(conninfo, EVENTS, 5000,
            "SELECT count(*) FROM txn_outbox WHERE delivered_at IS NOT NULL AND pending = 0");
        txn_relay_stop(r);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_delivery "
                             "WHERE state = 'done'"),
            3 * EVENTS);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(sink_calls(s[i]), EVENTS);
                sink_free(s[i]);
        }
        rpc_conf_free(conf);
        db_close(db);
        free(conninfo);
}

static void
test_txn_relay_retries_with_backoff_until_ack(void **state)
{
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        sink *flaky = sink_start("flaky");
        rpc_conf *conf = rpc_conf_new();
        char id[TXN_EVENT_ID_LEN];
        char sql[512];

        (void) state;
        rpc_conf_set(conf, "flaky", "address", flaky->url);
        rpc_conf_set(conf, "topics", "t.flaky", "flaky");
        flaky->fail_first = 3;
        add_event(db, "order", "t.flaky", 1, id);
        txn_relay_opts o = relay_opts(conninfo, conf);
        o.backoff_initial_ms = 100;
        txn_relay *r = relay_start(&o);
        txn_relay_wake(r);

        /* a failure is recorded, and the row stays pending */
        snprintf(sql, sizeof(sql),
            "SELECT count(*) FROM txn_delivery WHERE event_id = '%s' AND state = 'pending' "
            "AND last_error LIKE 'INTERNAL: injected failure%%'",
            id);
        wait_i64(conninfo, 1, 5000, sql);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_outbox WHERE event_id = '%s' "
                             "AND delivered_at IS NULL",
                             id),
            1);

        /* the fourth call is acked */
        snprintf(sql, sizeof(sql),
            "SELECT count(*) FROM txn_delivery WHERE event_id = '%s' AND state = 'done' "
            "AND attempts = 4 AND last_error IS NULL",
            id);
        wait_i64(conninfo, 1, 10000, sql);
        txn_relay_stop(r);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_outbox "
                             "WHERE delivered_at IS NOT NULL"),
            1);
        assert_int_equal(query_i64(conninfo, "SELECT count(*) FROM txn_dead_letters"), 0);
        assert_int_equal(flaky->n_events, 1);
        assert_int_equal(flaky->events[0].calls, 4);
        assert_int_equal(flaky->events[0].acks, 1);

        /* the waits grow: after the first failure 50..100 ms, after the third 200..400 ms */
        const int64_t *at = flaky->events[0].at_ms;
        int64_t gap1 = at[1] - at[0], gap3 = at[3] - at[2];
        print_message("retry gaps: %lld %lld %lld ms\n", (long long) gap1,
            (long long) (at[2] - at[1]), (long long) gap3);
        assert_true(gap1 >= 45);
        assert_true(gap3 >= 195);
        assert_true(gap3 > gap1);

        sink_free(flaky);
        rpc_conf_free(conf);
        db_close(db);
        free(conninfo);
}

static void
test_txn_relay_dead_letters_without_blocking_others(void **state)
{
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        sink *bad = sink_start("bad");
        sink *good = sink_start("good");
        rpc_conf *conf = rpc_conf_new();
        char bad_id[TXN_EVENT_ID_LEN], both_id[TXN_EVENT_ID_LEN], ghost_id[TXN_EVENT_ID_LEN];
        int64_t pending = -1, dead = -1;

        (void) state;
        rpc_conf_set(conf, "bad", "address", bad->url);
        rpc_conf_set(conf, "good", "address", good->url);
        rpc_conf_set(conf, "topics", "t.bad", "bad");
        rpc_conf_set(conf, "topics", "t.both", "bad good");
        rpc_conf_set(conf, "topics", "t.good", "good");
        rpc_conf_set(conf, "topics", "t.ghost", "ghost"); /* no address anywhere */
        bad->fail_always = true;

        add_event(db, "order", "t.bad", 1, bad_id);
        add_event(db, "order", "t.both", 2, both_id);
        add_event(db, "order", "t.ghost", 3, ghost_id);
        txn_relay_opts o = relay_opts(conninfo, conf);
        o.max_attempts = 3;
        o.backoff_initial_ms = 1000; /* dead letters come >= 1.5 s after the first call */
        txn_relay *r = relay_start(&o);
        txn_relay_wake(r);
        wait_sink(bad, sink_calls, 1, 5000);

        /* while the bad ones are retried, good events flow */
        assert_int_equal(db_begin(db), RPC_OK);
        for (int i = 0; i < 20; i++) {
                assert_int_equal(
                    txn_outbox_add(db, "order", "t.good", 100 + i, NULL, NULL), RPC_OK);
        }
        assert_int_equal(db_commit(db), RPC_OK);
        txn_relay_wake(r);
        wait_sink(good, sink_acked_events, 21, 5000);
        assert_int_equal(query_i64(conninfo, "SELECT count(*) FROM txn_dead_letters"), 0);
        /* the sink counts an ack before the relay has it: its mark comes a moment later */
        wait_i64(conninfo, 0, 5000,
            "SELECT count(*) FROM txn_outbox WHERE topic = 't.good' AND delivered_at IS NULL");

        /* then the bad ones are dead-lettered after 3 attempts each */
        wait_i64(conninfo, 3, 15000, "SELECT count(*) FROM txn_dead_letters");
        txn_relay_stop(r);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_dead_letters WHERE attempts = 3 AND "
                             "((event_id = '%s' AND subscriber = 'bad') OR "
                             " (event_id = '%s' AND subscriber = 'bad')) AND "
                             "last_error LIKE 'INTERNAL: injected failure%%' AND "
                             "source = 'order'",
                             bad_id, both_id),
            2);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_dead_letters WHERE attempts = 3 AND "
                             "event_id = '%s' AND subscriber = 'ghost' AND "
                             "topic = 't.ghost' AND last_error LIKE '%%no address%%'",
                             ghost_id),
            1);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_delivery "
                             "WHERE state = 'dead'"),
            3);
        /* the event with both subscribers reached the good one, and is finished */
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_delivery WHERE event_id = '%s' "
                             "AND subscriber = 'good' AND state = 'done'",
                             both_id),
            1);
        assert_int_equal(txn_outbox_counts(db, &pending, &dead), RPC_OK);
        assert_int_equal(pending, 0);
        assert_int_equal(dead, 3);
        assert_int_equal(sink_calls(bad), 6);
        assert_int_equal(sink_calls(good), 21);

        sink_free(bad);
        sink_free(good);
        rpc_conf_free(conf);
        db_close(db);
        free(conninfo);
}

static void
test_txn_relay_two_relays_deliver_each_event_once(void **state)
{
        static const char *const md_a[] = { "relay", "a", NULL };
        static const char *const md_b[] = { "relay", "b", NULL };
        enum { EVENTS = 400, PER_TXN = 25 };
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        sink *counter = sink_start("counter");
        rpc_conf *conf = rpc_conf_new();
        int by_a = 0, by_b = 0;

        (void) state;
        rpc_conf_set(conf, "counter", "address", counter->url);
        rpc_conf_set(conf, "topics", "t.count", "counter");
        counter->delay_us = 1000; /* so that both relays have batches out at once */

        txn_relay_opts oa = relay_opts(conninfo, conf);
        oa.batch = 16;
        oa.metadata = md_a;
        txn_relay_opts ob = oa;
        ob.metadata = md_b;
        txn_relay *a = relay_start(&oa);
        txn_relay *b = relay_start(&ob);

        for (int i = 0; i < EVENTS; i += PER_TXN) {
                assert_int_equal(db_begin(db), RPC_OK);
                for (int j = 0; j < PER_TXN; j++) {
                        assert_int_equal(
                            txn_outbox_add(db, "order", "t.count", i + j + 1, NULL, NULL), RPC_OK);
                }
                assert_int_equal(db_commit(db), RPC_OK);
                txn_relay_wake(a);
                txn_relay_wake(b);
        }
        wait_sink(counter, sink_acked_events, EVENTS, 60000);
        wait_i64(conninfo, 0, 10000, "SELECT count(*) FROM txn_outbox WHERE delivered_at IS NULL");
        usleep(300 * 1000); /* anything late would show now */
        txn_relay_stop(a);
        txn_relay_stop(b);

        assert_int_equal(counter->n_events, EVENTS);
        assert_int_equal(counter->calls, EVENTS);
        for (int i = 0; i < counter->n_events; i++) {
                const sink_event *e = &counter->events[i];
                if (e->calls != 1 || e->max_in_flight != 1) {
                        fail_msg(
                            "event %s: %d calls, %d at once", e->id, e->calls, e->max_in_flight);
                }
                by_a += strcmp(e->relay, "a") == 0;
                by_b += strcmp(e->relay, "b") == 0;
        }
        print_message("relay a delivered %d, relay b %d\n", by_a, by_b);
        assert_int_equal(by_a + by_b, EVENTS);
        assert_true(by_a > 0);
        assert_true(by_b > 0);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_delivery "
                             "WHERE state = 'done' AND attempts = 1"),
            EVENTS);

        sink_free(counter);
        rpc_conf_free(conf);
        db_close(db);
        free(conninfo);
}

static void
test_txn_relay_wake_delivers_before_poll(void **state)
{
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        sink *fast = sink_start("fast");
        rpc_conf *conf = rpc_conf_new();
        char id[TXN_EVENT_ID_LEN];
        int64_t took;

        (void) state;
        rpc_conf_set(conf, "fast", "address", fast->url);
        rpc_conf_set(conf, "topics", "t.wake", "fast");
        txn_relay_opts o = relay_opts(conninfo, conf);
        o.poll_ms = 10000;
        txn_relay *r = relay_start(&o);
        usleep(500 * 1000); /* its first pass is over: it sleeps for 10 s */

        /* without a wake, nothing moves for a second */
        add_event(db, "order", "t.wake", 1, id);
        usleep(1000 * 1000);
        assert_int_equal(sink_calls(fast), 0);

        /* the wake delivers at once: first through a new delivery thread */
        int64_t start = rpc_now_mono_ms();
        txn_relay_wake(r);
        wait_sink(fast, sink_acked_events, 1, 3000);
        took = rpc_now_mono_ms() - start;
        print_message("first wake delivered in %lld ms\n", (long long) took);
        assert_true(took < 3000);

        /* then through the delivery thread, asleep on its own 10 s poll */
        usleep(300 * 1000);
        add_event(db, "order", "t.wake", 2, id);
        start = rpc_now_mono_ms();
        txn_relay_wake(r);
        wait_sink(fast, sink_acked_events, 2, 3000);
        took = rpc_now_mono_ms() - start;
        print_message("second wake delivered in %lld ms\n", (long long) took);
        assert_true(took < 3000);
        txn_relay_stop(r);

        sink_free(fast);
        rpc_conf_free(conf);
        db_close(db);
        free(conninfo);
}

static void
test_txn_relay_polls_without_wake(void **state)
{
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        sink *k = sink_start("poller");
        rpc_conf *conf = rpc_conf_new();
        char id[TXN_EVENT_ID_LEN];

        (void) state;
        rpc_conf_set(conf, "poller", "address", k->url);
        rpc_conf_set(conf, "topics", "t.poll", "poller");

        /* committed while no relay ran, as before a crash */
        add_event(db, "order", "t.poll", 1, id);
        /* another source's event is not this relay's */
        add_event(db, "cart", "t.poll", 9, NULL);
        txn_relay_opts o = relay_opts(conninfo, conf);
        o.poll_ms = 200;
        txn_relay *r = relay_start(&o);
        wait_sink(k, sink_acked_events, 1, 3000);

        /* committed with nobody waking the relay */
        add_event(db, "order", "t.poll", 2, id);
        wait_sink(k, sink_acked_events, 2, 3000);
        usleep(400 * 1000);
        txn_relay_stop(r);
        assert_int_equal(sink_calls(k), 2);
        assert_int_equal(query_i64(conninfo,
                             "SELECT count(*) FROM txn_outbox WHERE "
                             "source = 'cart' AND NOT fanned_out"),
            1);

        sink_free(k);
        rpc_conf_free(conf);
        db_close(db);
        free(conninfo);
}

static void
test_txn_relay_retakes_claim_after_lease(void **state)
{
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);
        sink *k = sink_start("late");
        rpc_conf *conf = rpc_conf_new();
        char id[TXN_EVENT_ID_LEN];
        char sql[512];
        db_params p;
        int64_t rows = 0;

        (void) state;
        rpc_conf_set(conf, "late", "address", k->url);
        rpc_conf_set(conf, "topics", "t.late", "late");
        add_event(db, "order", "t.late", 1, id);

        /* a relay that fanned out, claimed with a 2 s lease, and crashed */
        db_params_init(&p);
        db_params_str(&p, "order");
        db_params_str(&p, "t.late");
        db_params_str(&p, "late");
        db_params_i64(&p, 10);
        assert_int_equal(db_exec_count(db, "txn_fanout", &p, &rows), RPC_OK);
        assert_int_equal(rows, 1);
        db_params_init(&p);
        db_params_str(&p, "order");
        db_params_str(&p, "late");
        db_params_i64(&p, 10);
        db_params_i64(&p, 2000);
        assert_int_equal(db_exec_count(db, "txn_claim", &p, &rows), RPC_OK);
        assert_int_equal(rows, 1);
        int64_t claimed = rpc_now_mono_ms();

        txn_relay_opts o = relay_opts(conninfo, conf);
        txn_relay *r = relay_start(&o);
        txn_relay_wake(r);
        usleep(1000 * 1000);
        assert_int_equal(sink_calls(k), 0); /* the lease holds */
        wait_sink(k, sink_acked_events, 1, 5000);
        int64_t took = rpc_now_mono_ms() - claimed;
        print_message("redelivered %lld ms after the claim\n", (long long) took);
        assert_true(took >= 1900);
        snprintf(sql, sizeof(sql),
            "SELECT count(*) FROM txn_delivery WHERE event_id = '%s' AND state = 'done' "
            "AND attempts = 2",
            id);
        wait_i64(conninfo, 1, 3000, sql);
        txn_relay_stop(r);

        sink_free(k);
        rpc_conf_free(conf);
        db_close(db);
        free(conninfo);
}

/*
 * Barrier
 */

static void
test_txn_barrier_ok_then_already_exists(void **state)
{
        char *conninfo = fresh_db();
        db_conn *db = connect_db(conninfo);

        (void) state;
        assert_int_equal(
            txn_barrier_enter(db, "cart:order.completed", "e1"), RPC_FAILED_PRECONDITION);
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(txn_barrier_enter(db, "", "e1"), RPC_INVALID_ARGUMENT);
        assert_int_equal(txn_barrier_enter(db, "cart:order.completed", ""), RPC_INVALID_ARGUMENT);
        assert_int_equal(txn_barrier_enter(db, "cart:order.completed", "e1"), RPC_OK);
        assert_int_equal(db_commit(db), RPC_OK);

        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(txn_barrier_enter(db, "cart:order.completed", "e1"), RPC_ALREADY_EXISTS);
        /* the same key for another consumer is new */
        assert_int_equal(txn_barrier_enter(db, "product:order.completed", "e1"), RPC_OK);
        db_rollback(db);

        /* a rolled-back entry leaves nothing */
        assert_int_equal(db_begin(db), RPC_OK);
        assert_int_equal(txn_barrier_enter(db, "product:order.completed", "e1"), RPC_OK);
        assert_int_equal(db_commit(db), RPC_OK);
        assert_int_equal(query_i64(conninfo, "SELECT count(*) FROM txn_barrier"), 2);
        db_close(db);
        free(conninfo);
}

enum { BARRIER_THREADS = 8 };

typedef struct barrier_arg {
        const char *conninfo;
        const char *key;
        pthread_barrier_t *start;
        rpc_status result;
} barrier_arg;

static void *
barrier_thread(void *p)
{
        barrier_arg *a = p;
        db_conn *db = NULL;
        char err[256];

        a->result = RPC_UNKNOWN;
        if (db_connect(a->conninfo, &txn_stmts, 1, &db, err, sizeof(err)) != RPC_OK) {
                pthread_barrier_wait(a->start);
                return NULL;
        }
        pthread_barrier_wait(a->start);
        if (db_begin(db) == RPC_OK) {
                a->result = txn_barrier_enter(db, "dataplatform:order.completed", a->key);
                if (a->result == RPC_OK) {
                        usleep(50 * 1000); /* the others queue up on the key */
                        if (db_commit(db) != RPC_OK) {
                                a->result = RPC_ABORTED;
                        }
                } else {
                        db_rollback(db);
                }
        }
        db_close(db);
        return NULL;
}

static void
test_txn_barrier_concurrent_entries_one_wins(void **state)
{
        char *conninfo = fresh_db();
        static const char *keys[] = { "k1", "k2", "k3" };

        (void) state;
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                pthread_t threads[BARRIER_THREADS];
                barrier_arg args[BARRIER_THREADS];
                pthread_barrier_t start;
                int ok = 0, exists = 0;

                pthread_barrier_init(&start, NULL, BARRIER_THREADS);
                for (int i = 0; i < BARRIER_THREADS; i++) {
                        args[i] = (barrier_arg) {
                                .conninfo = conninfo, .key = keys[k], .start = &start
                        };
                        assert_int_equal(
                            pthread_create(&threads[i], NULL, barrier_thread, &args[i]), 0);
                }
                for (int i = 0; i < BARRIER_THREADS; i++) {
                        pthread_join(threads[i], NULL);
                        ok += args[i].result == RPC_OK;
                        exists += args[i].result == RPC_ALREADY_EXISTS;
                }
                pthread_barrier_destroy(&start);
                assert_int_equal(ok, 1);
                assert_int_equal(exists, BARRIER_THREADS - 1);
        }
        assert_int_equal(query_i64(conninfo, "SELECT count(*) FROM txn_barrier"), 3);
        free(conninfo);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_txn_outbox_add_rollback_leaves_nothing),
                cmocka_unit_test(test_txn_relay_delivers_to_all_after_ack),
                cmocka_unit_test(test_txn_relay_concurrent_acks_finish_every_event),
                cmocka_unit_test(test_txn_relay_retries_with_backoff_until_ack),
                cmocka_unit_test(test_txn_relay_dead_letters_without_blocking_others),
                cmocka_unit_test(test_txn_relay_two_relays_deliver_each_event_once),
                cmocka_unit_test(test_txn_relay_wake_delivers_before_poll),
                cmocka_unit_test(test_txn_relay_polls_without_wake),
                cmocka_unit_test(test_txn_relay_retakes_claim_after_lease),
                cmocka_unit_test(test_txn_barrier_ok_then_already_exists),
                cmocka_unit_test(test_txn_barrier_concurrent_entries_one_wins),
        };

        harness_pg(); /* fails loudly without MERCATO_TEST_PG */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
