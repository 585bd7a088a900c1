/* test_rpc_server.c: the server's life cycle: worker state, duplicates, metadata, stats, graceful
 * stop, and the reserved workers of lock-releasing methods. */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "echo_service.h"
#include "rpc.h"
#include "rpc_test_util.h"
#include "test.pb-c.h"

#define TIMEOUT_MS 10000

/* What the handlers saw, for the tests to check. */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static void *seen_worker_in_handler;
static void *seen_worker_deferred = (void *) 0x1;
static int seen_copies;
static int seen_originals;

static void *
worker_init(void *arg, int index)
{
        return (void *) (intptr_t) (0x1000 + index);
}

static void
worker_fini(void *arg, void *state)
{
        int *finis = arg;

        __atomic_add_fetch(finis, 1, __ATOMIC_SEQ_CST);
}

RPC_HANDLER(s_echo, Mercato__Test__V1__EchoRequest, Mercato__Test__V1__EchoReply)
{
        const char *meta = rpc_call_metadata(call, "echo");

        pthread_mutex_lock(&seen_mu);
        seen_worker_in_handler = rpc_call_worker(call);
        if (rpc_call_is_duplicate(call)) {
                seen_copies++;
        } else {
                seen_originals++;
        }
        pthread_mutex_unlock(&seen_mu);
        resp->text = rpc_call_strdup(call, req->text);
        resp->metadata_echo = rpc_call_strdup(call, meta != NULL ? meta : "(none)");
        if (req->fail_code != 0) {
                return rpc_call_error(call, rpc_status_from_wire(req->fail_code), "asked to fail");
        }
        return RPC_OK;
}

static void *
s_defer_later(void *p)
{
        rpc_call *call = p;

        usleep(200000); /* the handler has long returned RPC_DEFERRED */
        pthread_mutex_lock(&seen_mu);
        seen_worker_deferred = rpc_call_worker(call);
        pthread_mutex_unlock(&seen_mu);
        rpc_call_finish(call, RPC_OK);
        return NULL;
}

RPC_HANDLER(s_defer, Mercato__Test__V1__EchoRequest, Mercato__Test__V1__EchoReply)
{
        pthread_t t;

        resp->text = rpc_call_strdup(call, req->text);
        if (pthread_create(&t, NULL, s_defer_later, call) != 0) {
                return rpc_call_error(call, RPC_INTERNAL, "no thread");
        }
        pthread_detach(t);
        return RPC_DEFERRED;
}

RPC_HANDLER(s_count, Mercato__Test__V1__CountRequest, Mercato__Test__V1__CountReply)
{
        resp->calls = 1;
        return RPC_OK;
}

static const rpc_method s_table[] = {
        RPC_METHOD_ENTRY("Echo", s_echo, mercato__test__v1__echo_request__descriptor,
            mercato__test__v1__echo_reply__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("Defer", s_defer, mercato__test__v1__echo_request__descriptor,
            mercato__test__v1__echo_reply__descriptor, 0),
        RPC_METHOD_ENTRY("Count", s_count, mercato__test__v1__count_request__descriptor,
            mercato__test__v1__count_reply__descriptor, RPC_METHOD_IDEMPOTENT),
};

static rpc_server *
start(char *url, size_t len, rpc_faults *faults, int *finis)
{
        rpc_server_opts opts = {
                .name = "lifecycle",
                .workers = 2,
                .worker_init = worker_init,
                .worker_fini = worker_fini,
                .arg = finis,
                .faults = faults,
        };
        rpc_server *srv = NULL;
        char err[256] = "";

        assert_int_equal(rpc_server_new(&opts, &srv), RPC_OK);
        assert_int_equal(rpc_server_add_service(srv, &mercato__test__v1__echo_service__descriptor,
                             s_table, 3, err, sizeof(err)),
            RPC_OK);
        rpc_test_unique(url, len, "inproc://lifecycle");
        assert_int_equal(rpc_server_listen(srv, url, err, sizeof(err)), RPC_OK);
        assert_int_equal(rpc_server_start(srv), RPC_OK);
        return srv;
}

static rpc_status
call_echo(rpc_client *c, const char *method, const char *text, int32_t fail_code,
    const rpc_call_opts *opts, Mercato__Test__V1__EchoReply **ret)
{
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts def = { .timeout_ms = TIMEOUT_MS, .no_retry = true };
        rpc_error e = { 0 };
        rpc_status st;

        er.text = (char *) text;
        er.fail_code = fail_code;
        st = rpc_client_call(c, method, &er.base, &mercato__test__v1__echo_reply__descriptor, &resp,
            opts != NULL ? opts : &def, &e);
        if (ret != NULL && st == RPC_OK) {
                *ret = (Mercato__Test__V1__EchoReply *) resp;
        } else if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return st;
}

/* A handler sees its worker's state; a deferred call, once its handler has returned, sees
 * none; every worker's state is finished when the server is freed. */
static void
test_rpc_server_worker_state(void **state)
{
        char url[128];
        int finis = 0;
        rpc_server *srv = start(url, sizeof(url), NULL, &finis);
        rpc_client *c = rpc_test_client(url, NULL);

        assert_int_equal(call_echo(c, ECHO_METHOD_ECHO, "w", 0, NULL, NULL), RPC_OK);
        pthread_mutex_lock(&seen_mu);
        void *in_handler = seen_worker_in_handler;
        pthread_mutex_unlock(&seen_mu);
        assert_true(in_handler == (void *) 0x1000 || in_handler == (void *) 0x1001);

        assert_int_equal(call_echo(c, ECHO_METHOD_DEFER, "d", 0, NULL, NULL), RPC_OK);
        pthread_mutex_lock(&seen_mu);
        void *deferred = seen_worker_deferred;
        pthread_mutex_unlock(&seen_mu);
        assert_null(deferred);

        rpc_client_free(c);
        rpc_server_free(srv);
        assert_int_equal(finis, 2);
}

/* Metadata from the call options reaches the handler by key. */
static void
test_rpc_server_metadata_reaches_handler(void **state)
{
        char url[128];
        int finis = 0;
        rpc_server *srv = start(url, sizeof(url), NULL, &finis);
        rpc_client *c = rpc_test_client(url, NULL);
        static const char *const meta[] = { "tenant", "acme", "echo", "hello metadata", NULL };
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS, .metadata = meta };
        Mercato__Test__V1__EchoReply *rep = NULL;

        assert_int_equal(call_echo(c, ECHO_METHOD_ECHO, "m", 0, &opts, &rep), RPC_OK);
        assert_string_equal(rep->metadata_echo, "hello metadata");
        protobuf_c_message_free_unpacked(&rep->base, NULL);

        rep = NULL;
        assert_int_equal(call_echo(c, ECHO_METHOD_ECHO, "m", 0, NULL, &rep), RPC_OK);
        assert_string_equal(rep->metadata_echo, "(none)");
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        rpc_client_free(c);
        rpc_server_free(srv);
}

/* A duplicate fault runs a copy that knows it is one, beside the original. */
static void
test_rpc_server_duplicate_copy_is_marked(void **state)
{
        char url[128], err[256];
        int finis = 0;
        rpc_faults *f = NULL;

        assert_int_equal(
            rpc_faults_parse("*Echo duplicate 1.0 2", 1, &f, err, sizeof(err)), RPC_OK);
        rpc_server *srv = start(url, sizeof(url), f, &finis);
        rpc_client *c = rpc_test_client(url, NULL);

        pthread_mutex_lock(&seen_mu);
        seen_copies = seen_originals = 0;
        pthread_mutex_unlock(&seen_mu);
        assert_int_equal(call_echo(c, ECHO_METHOD_ECHO, "dup", 0, NULL, NULL), RPC_OK);
        /* The copies may run after the reply: wait for them, then a little longer to see
         * that no more come. */
        int total = 0;
        for (int i = 0; i < 500 && total < 3; i++) {
                usleep(10000);
                pthread_mutex_lock(&seen_mu);
                total = seen_originals + seen_copies;
                pthread_mutex_unlock(&seen_mu);
        }
        usleep(100000);
        pthread_mutex_lock(&seen_mu);
        assert_int_equal(seen_originals, 1);
        assert_int_equal(seen_copies, 2);
        pthread_mutex_unlock(&seen_mu);
        rpc_client_free(c);
        rpc_server_free(srv);
        rpc_faults_free(f);
}

/* Stats' heap_in_use_bytes. */
static uint64_t
stats_heap(rpc_client *c)
{
        Mercato__Rpc__V1__StatsRequest req = MERCATO__RPC__V1__STATS_REQUEST__INIT;
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS, .no_retry = true };
        ProtobufCMessage *resp = NULL;
        uint64_t bytes;

        assert_int_equal(rpc_client_call(c, "/mercato.rpc.v1.StandardService/Stats", &req.base,
                             &mercato__rpc__v1__stats_response__descriptor, &resp, &opts, NULL),
            RPC_OK);
        bytes = ((Mercato__Rpc__V1__StatsResponse *) resp)->heap_in_use_bytes;
        protobuf_c_message_free_unpacked(resp, NULL);
        return bytes;
}

/* Stats counts calls and errors per method, bad requests and injected faults, and its heap
 * figure follows malloc and free. */
static void
test_rpc_server_stats_count(void **state)
{
        char url[128], err[256];
        int finis = 0;
        rpc_faults *f = NULL;

        assert_int_equal(
            rpc_faults_parse("*Count fail 1.0 ABORTED", 1, &f, err, sizeof(err)), RPC_OK);
        rpc_server *srv = start(url, sizeof(url), f, &finis);
        rpc_client *c = rpc_test_client(url, NULL);
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS, .no_retry = true };

        for (int i = 0; i < 5; i++) {
                assert_int_equal(call_echo(c, ECHO_METHOD_ECHO, "s", 0, NULL, NULL), RPC_OK);
        }
        for (int i = 0; i < 2; i++) {
                assert_int_equal(
                    call_echo(c, ECHO_METHOD_ECHO, "s", RPC_NOT_FOUND, NULL, NULL), RPC_NOT_FOUND);
        }
        Mercato__Test__V1__CountRequest cr = MERCATO__TEST__V1__COUNT_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_error e = { 0 };
        assert_int_equal(rpc_client_call(c, ECHO_METHOD_COUNT, &cr.base,
                             &mercato__test__v1__count_reply__descriptor, &resp, &opts, &e),
            RPC_ABORTED);
        static const uint8_t garbage[] = { 0xff, 0xff, 0xff };
        assert_int_equal(rpc_test_send_frame(c, garbage, sizeof(garbage), TIMEOUT_MS, NULL),
            RPC_INVALID_ARGUMENT);

        Mercato__Rpc__V1__StatsRequest sreq = MERCATO__RPC__V1__STATS_REQUEST__INIT;
        resp = NULL;
        assert_int_equal(rpc_client_call(c, "/mercato.rpc.v1.StandardService/Stats", &sreq.base,
                             &mercato__rpc__v1__stats_response__descriptor, &resp, &opts, &e),
            RPC_OK);
        Mercato__Rpc__V1__StatsResponse *sr = (Mercato__Rpc__V1__StatsResponse *) resp;
        bool found = false;
        for (size_t i = 0; i < sr->n_methods; i++) {
                if (strcmp(sr->methods[i]->name, ECHO_METHOD_ECHO) == 0) {
                        assert_int_equal(sr->methods[i]->calls, 7);
                        assert_int_equal(sr->methods[i]->errors, 2);
                        assert_true(sr->methods[i]->max_ms >= sr->methods[i]->p50_ms);
                        found = true;
                }
        }
        assert_true(found);
        assert_int_equal(sr->bad_requests, 1);
        assert_int_equal(sr->faults_injected, 1);
        protobuf_c_message_free_unpacked(resp, NULL);

        /* The heap figure follows malloc and free: the server shares this process's heap. */
        enum { BIG = 8 << 20 };
        uint64_t before = stats_heap(c);
        char *big = malloc(BIG);
        assert_non_null(big);
        memset(big, 1, BIG);
        uint64_t held = stats_heap(c);
        free(big);
        uint64_t after = stats_heap(c);
        assert_true(before > 0);
        assert_true(held >= before + BIG);
        assert_true(after <= held - BIG);
        rpc_client_free(c);
        rpc_server_free(srv);
        rpc_faults_free(f);
}

typedef struct bg_call {
        rpc_client *c;
        rpc_status st;
} bg_call;

static void *
bg_defer(void *p)
{
        bg_call *b = p;
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS, .no_retry = true };
        rpc_error e = { 0 };

        er.text = (char *) "draining";
        er.sleep_ms = 1500;
        b->st = rpc_client_call(b->c, ECHO_METHOD_DEFER, &er.base,
            &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e);
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return NULL;
}

static void *
bg_stop(void *p)
{
        rpc_server_stop(p);
        return NULL;
}

/* A graceful stop lets a deferred call in flight finish with its reply, and answers a new
 * request UNAVAILABLE meanwhile. */
static void
test_rpc_server_stop_drains_in_flight(void **state)
{
        char url[128];
        rpc_test_unique(url, sizeof(url), "inproc://drain");
        rpc_server *srv = rpc_test_echo_server(url, 2, 0, NULL);
        rpc_client *c = rpc_test_client(url, NULL);
        bg_call b = { .c = c, .st = RPC_UNKNOWN };
        pthread_t tdefer, tstop;

        assert_int_equal(pthread_create(&tdefer, NULL, bg_defer, &b), 0);
        for (int i = 0; i < 500 && rpc_server_inflight(srv) == 0; i++) {
                usleep(2000);
        }
        assert_int_equal(rpc_server_inflight(srv), 1);
        assert_int_equal(pthread_create(&tstop, NULL, bg_stop, srv), 0);
        usleep(200000);

        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS, .no_retry = true };
        rpc_error e = { 0 };
        er.text = (char *) "too late";
        assert_int_equal(rpc_client_call(c, ECHO_METHOD_ECHO, &er.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e),
            RPC_UNAVAILABLE);
        assert_int_equal(echo_service_count("too late"), 0);

        pthread_join(tdefer, NULL);
        assert_int_equal(b.st, RPC_OK);
        pthread_join(tstop, NULL);
        assert_int_equal(rpc_server_inflight(srv), 0);
        rpc_client_free(c);
        rpc_test_server_free(srv);
}

typedef struct bg_echo {
        rpc_client *c;
        const char *text;
        int64_t sleep_ms;
        rpc_status st;
} bg_echo;

static void *
bg_echo_run(void *p)
{
        bg_echo *b = p;
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS, .no_retry = true };
        rpc_error e = { 0 };

        er.text = (char *) b->text;
        er.sleep_ms = b->sleep_ms;
        b->st = rpc_client_call(b->c, ECHO_METHOD_ECHO, &er.base,
            &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e);
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return NULL;
}

/* A request the server received before the stop began is in flight, queued behind a busy
 * worker or not: it is handled and answered, not refused. */
static void
test_rpc_server_stop_finishes_queued_calls(void **state)
{
        char url[128];
        rpc_test_unique(url, sizeof(url), "inproc://drain");
        rpc_server *srv = rpc_test_echo_server(url, 1, 0, NULL);
        rpc_client *c = rpc_test_client(url, NULL);
        bg_echo busy = { .c = c, .text = "queued-busy", .sleep_ms = 1000, .st = RPC_UNKNOWN };
        bg_echo queued = { .c = c, .text = "queued-behind", .st = RPC_UNKNOWN };
        pthread_t t1, t2, tstop;

        assert_int_equal(pthread_create(&t1, NULL, bg_echo_run, &busy), 0);
        for (int i = 0; i < 500 && echo_service_count("queued-busy") == 0; i++) {
                usleep(2000);
        }
        assert_int_equal(pthread_create(&t2, NULL, bg_echo_run, &queued), 0);
        for (int i = 0; i < 500 && rpc_server_inflight(srv) < 2; i++) {
                usleep(2000);
        }
        assert_int_equal(rpc_server_inflight(srv), 2); /* the second waits for the worker */
        assert_int_equal(echo_service_count("queued-behind"), 0);
        assert_int_equal(pthread_create(&tstop, NULL, bg_stop, srv), 0);

        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        pthread_join(tstop, NULL);
        assert_int_equal(busy.st, RPC_OK);
        assert_int_equal(queued.st, RPC_OK);
        assert_int_equal(echo_service_count("queued-behind"), 1);
        rpc_client_free(c);
        rpc_test_server_free(srv);
}

/* The gate: Echo "gate" holds its worker until a Count opens the gate (as a Prepare waits on
 * a row that only a Commit frees), or gives up after GATE_MS (as lock_timeout would). */
#define GATE_MS 2000

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int gate_waiting;
static int gate_others; /* Echo calls other than the gate that ran */

RPC_HANDLER(g_echo, Mercato__Test__V1__EchoRequest, Mercato__Test__V1__EchoReply)
{
        bool opened;

        resp->text = rpc_call_strdup(call, req->text);
        pthread_mutex_lock(&gate_mu);
        if (strcmp(req->text, "gate") != 0) {
                gate_others++;
                pthread_mutex_unlock(&gate_mu);
                return RPC_OK;
        }
        gate_waiting++;
        int64_t until = rpc_now_mono_ms() + GATE_MS;
        while (!gate_open && rpc_now_mono_ms() < until) {
                pthread_mutex_unlock(&gate_mu);
                usleep(5000);
                pthread_mutex_lock(&gate_mu);
        }
        opened = gate_open;
        gate_waiting--;
        pthread_mutex_unlock(&gate_mu);
        return opened ? RPC_OK : rpc_call_error(call, RPC_ABORTED, "the gate stayed shut");
}

RPC_HANDLER(g_open, Mercato__Test__V1__CountRequest, Mercato__Test__V1__CountReply)
{
        pthread_mutex_lock(&gate_mu);
        gate_open = true;
        pthread_cond_broadcast(&gate_cv);
        pthread_mutex_unlock(&gate_mu);
        resp->calls = 1;
        return RPC_OK;
}

static const rpc_method g_table[] = {
        RPC_METHOD_ENTRY("Echo", g_echo, mercato__test__v1__echo_request__descriptor,
            mercato__test__v1__echo_reply__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("Defer", s_defer, mercato__test__v1__echo_request__descriptor,
            mercato__test__v1__echo_reply__descriptor, 0),
        RPC_METHOD_ENTRY("Count", g_open, mercato__test__v1__count_request__descriptor,
            mercato__test__v1__count_reply__descriptor, RPC_METHOD_IDEMPOTENT | RPC_METHOD_RELEASE),
};

static int
gate_read(int *counter)
{
        pthread_mutex_lock(&gate_mu);
        int v = *counter;
        pthread_mutex_unlock(&gate_mu);
        return v;
}

/* One worker, held by the gate; then Echo "behind" and Count (the release) arrive. Returns
 * the gate's status, Count's, and whether Echo "behind" had run when Count returned. */
static void
gate_run(int reserved, rpc_status *ret_gate, rpc_status *ret_open, int *ret_others_at_open,
    int32_t *ret_reserved)
{
        rpc_server_opts opts = { .name = "gate", .workers = 1, .reserved = reserved };
        rpc_server *srv = NULL;
        char url[128], err[256] = "";
        pthread_t tg, tb;

        gate_open = false;
        gate_others = 0;
        assert_int_equal(rpc_server_new(&opts, &srv), RPC_OK);
        assert_int_equal(rpc_server_add_service(srv, &mercato__test__v1__echo_service__descriptor,
                             g_table, 3, err, sizeof(err)),
            RPC_OK);
        rpc_test_unique(url, sizeof(url), "inproc://gate");
        assert_int_equal(rpc_server_listen(srv, url, err, sizeof(err)), RPC_OK);
        assert_int_equal(rpc_server_start(srv), RPC_OK);
        rpc_client *c = rpc_test_client(url, NULL);
        bg_echo gate = { .c = c, .text = "gate", .st = RPC_UNKNOWN };
        bg_echo behind = { .c = c, .text = "behind", .st = RPC_UNKNOWN };

        Mercato__Rpc__V1__HealthRequest hreq = MERCATO__RPC__V1__HEALTH_REQUEST__INIT;
        ProtobufCMessage *hresp = NULL;
        rpc_call_opts copts = { .timeout_ms = TIMEOUT_MS, .no_retry = true };
        rpc_error e = { 0 };
        assert_int_equal(rpc_client_call(c, "/mercato.rpc.v1.StandardService/Health", &hreq.base,
                             &mercato__rpc__v1__health_response__descriptor, &hresp, &copts, &e),
            RPC_OK);
        *ret_reserved = ((Mercato__Rpc__V1__HealthResponse *) hresp)->reserved_workers;
        protobuf_c_message_free_unpacked(hresp, NULL);

        assert_int_equal(pthread_create(&tg, NULL, bg_echo_run, &gate), 0);
        for (int i = 0; i < 500 && gate_read(&gate_waiting) == 0; i++) {
                usleep(2000);
        }
        assert_int_equal(gate_read(&gate_waiting), 1);
        assert_int_equal(pthread_create(&tb, NULL, bg_echo_run, &behind), 0);
        for (int i = 0; i < 500 && rpc_server_inflight(srv) < 2; i++) {
                usleep(2000);
        }
        assert_int_equal(rpc_server_inflight(srv), 2);

        Mercato__Test__V1__CountRequest creq = MERCATO__TEST__V1__COUNT_REQUEST__INIT;
        ProtobufCMessage *cresp = NULL;
        creq.text = (char *) "open";
        *ret_open = rpc_client_call(c, ECHO_METHOD_COUNT, &creq.base,
            &mercato__test__v1__count_reply__descriptor, &cresp, &copts, &e);
        *ret_others_at_open = gate_read(&gate_others);
        if (cresp != NULL) {
                protobuf_c_message_free_unpacked(cresp, NULL);
        }
        pthread_join(tg, NULL);
        pthread_join(tb, NULL);
        *ret_gate = gate.st;
        assert_int_equal(behind.st, RPC_OK);
        rpc_client_free(c);
        rpc_server_stop(srv);
        rpc_server_free(srv);
}

/* A lock-releasing call reaches a reserved worker while every worker is held by a call
 * waiting for it, and runs ahead of a plain call queued before it; the reserved worker
 * takes no plain call. With the reserve turned off, the same release waits behind the
 * held worker until the holder gives up: the deadlock the reserve exists to break. */
static void
test_rpc_server_release_runs_on_reserved_worker(void **state)
{
        rpc_status gate, open;
        int others;
        int32_t reserved;

        gate_run(0, &gate, &open, &others, &reserved);
        assert_int_equal(reserved, 2); /* the default, since Count releases */
        assert_int_equal(open, RPC_OK);
        assert_int_equal(gate, RPC_OK); /* opened, not given up */
        assert_int_equal(others, 0);    /* "behind" waited for the one worker */

        gate_run(-1, &gate, &open, &others, &reserved);
        assert_int_equal(reserved, 0);
        assert_int_equal(open, RPC_OK);
        assert_int_equal(gate, RPC_ABORTED); /* the gate gave up before Count could run */
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_server_worker_state),
                cmocka_unit_test(test_rpc_server_metadata_reaches_handler),
                cmocka_unit_test(test_rpc_server_duplicate_copy_is_marked),
                cmocka_unit_test(test_rpc_server_stats_count),
                cmocka_unit_test(test_rpc_server_stop_drains_in_flight),
                cmocka_unit_test(test_rpc_server_stop_finishes_queued_calls),
                cmocka_unit_test(test_rpc_server_release_runs_on_reserved_worker),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
