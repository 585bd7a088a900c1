/* test_rpc_dispatch.c: method tables checked against service descriptors, and dispatch by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rpc.h"
#include "rpc_test_util.h"
#include "test.pb-c.h"

#define TIMEOUT_MS 10000

static int hits_echo;
static int hits_defer;
static int hits_count;

RPC_HANDLER(h_echo, Mercato__Test__V1__EchoRequest, Mercato__Test__V1__EchoReply)
{
        char buf[256];

        __atomic_add_fetch(&hits_echo, 1, __ATOMIC_SEQ_CST);
        snprintf(buf, sizeof(buf), "echo:%s", req->text);
        resp->text = rpc_call_strdup(call, buf);
        resp->method = rpc_call_strdup(call, rpc_call_method(call));
        return RPC_OK;
}

RPC_HANDLER(h_defer, Mercato__Test__V1__EchoRequest, Mercato__Test__V1__EchoReply)
{
        char buf[256];

        __atomic_add_fetch(&hits_defer, 1, __ATOMIC_SEQ_CST);
        snprintf(buf, sizeof(buf), "defer:%s", req->text);
        resp->text = rpc_call_strdup(call, buf);
        resp->method = rpc_call_strdup(call, rpc_call_method(call));
        return RPC_OK;
}

RPC_HANDLER(h_count, Mercato__Test__V1__CountRequest, Mercato__Test__V1__CountReply)
{
        __atomic_add_fetch(&hits_count, 1, __ATOMIC_SEQ_CST);
        resp->calls = 4242 + (int64_t) strlen(req->text);
        return RPC_OK;
}

#define E_ECHO                                                                                     \
        RPC_METHOD_ENTRY("Echo", h_echo, mercato__test__v1__echo_request__descriptor,              \
            mercato__test__v1__echo_reply__descriptor, RPC_METHOD_IDEMPOTENT)
#define E_DEFER                                                                                    \
        RPC_METHOD_ENTRY("Defer", h_defer, mercato__test__v1__echo_request__descriptor,            \
            mercato__test__v1__echo_reply__descriptor, 0)
#define E_COUNT                                                                                    \
        RPC_METHOD_ENTRY("Count", h_count, mercato__test__v1__count_request__descriptor,           \
            mercato__test__v1__count_reply__descriptor, RPC_METHOD_IDEMPOTENT)

static const rpc_method good_table[] = { E_DEFER, E_COUNT, E_ECHO }; /* order is free */

static const ProtobufCServiceDescriptor *const svc = &mercato__test__v1__echo_service__descriptor;

static rpc_server *
new_server(void)
{
        rpc_server_opts opts = { .name = "dispatch", .workers = 2 };
        rpc_server *srv = NULL;

        assert_int_equal(rpc_server_new(&opts, &srv), RPC_OK);
        return srv;
}

/* Asserts that a table is refused with INVALID_ARGUMENT and that the reason names `who`. */
static void
assert_refused(rpc_server *srv, const rpc_method *table, size_t n, const char *who)
{
        char err[256] = "";

        assert_int_equal(
            rpc_server_add_service(srv, svc, table, n, err, sizeof(err)), RPC_INVALID_ARGUMENT);
        if (strstr(err, who) == NULL) {
                fail_msg("the refusal does not name %s: '%s'", who, err);
        }
}

static void
test_rpc_dispatch_refuses_missing_method(void **state)
{
        rpc_server *srv = new_server();
        const rpc_method table[] = { E_ECHO, E_COUNT };

        assert_refused(srv, table, 2, "Defer");
        rpc_server_free(srv);
}

static void
test_rpc_dispatch_refuses_wrong_input_type(void **state)
{
        rpc_server *srv = new_server();
        const rpc_method table[] = {
                RPC_METHOD_ENTRY("Echo", h_echo, mercato__test__v1__count_request__descriptor,
                    mercato__test__v1__echo_reply__descriptor, 0),
                E_DEFER,
                E_COUNT,
        };

        assert_refused(srv, table, 3, "Echo");
        rpc_server_free(srv);
}

static void
test_rpc_dispatch_refuses_wrong_output_type(void **state)
{
        rpc_server *srv = new_server();
        const rpc_method table[] = {
                E_ECHO,
                E_DEFER,
                RPC_METHOD_ENTRY("Count", h_count, mercato__test__v1__count_request__descriptor,
                    mercato__test__v1__echo_reply__descriptor, 0),
        };

        assert_refused(srv, table, 3, "Count");
        rpc_server_free(srv);
}

static void
test_rpc_dispatch_refuses_duplicate_entry(void **state)
{
        rpc_server *srv = new_server();
        const rpc_method table[] = { E_ECHO, E_DEFER, E_COUNT, E_ECHO };

        assert_refused(srv, table, 4, "Echo");
        rpc_server_free(srv);
}

static void
test_rpc_dispatch_refuses_unknown_name(void **state)
{
        rpc_server *srv = new_server();
        const rpc_method table[] = {
                E_ECHO,
                E_DEFER,
                E_COUNT,
                RPC_METHOD_ENTRY("Shout", h_echo, mercato__test__v1__echo_request__descriptor,
                    mercato__test__v1__echo_reply__descriptor, 0),
        };

        assert_refused(srv, table, 4, "Shout");
        rpc_server_free(srv);
}

static void
test_rpc_dispatch_accepts_correct_table(void **state)
{
        rpc_server *srv = new_server();
        char err[256] = "";

        assert_int_equal(rpc_server_add_service(srv, svc, good_table, 3, err, sizeof(err)), RPC_OK);
        rpc_server_free(srv);
}

/* Refused tables leave nothing behind: the good table registers after them, and a real call
 * over inproc reaches each method's own typed handler. */
static void
test_rpc_dispatch_calls_reach_typed_handler(void **state)
{
        rpc_server *srv = new_server();
        const rpc_method missing[] = { E_ECHO, E_COUNT };
        const rpc_method dup[] = { E_ECHO, E_DEFER, E_COUNT, E_COUNT };
        char url[128], err[256] = "";

        assert_refused(srv, missing, 2, "Defer");
        assert_refused(srv, dup, 4, "Count");
        assert_int_equal(rpc_server_add_service(srv, svc, good_table, 3, err, sizeof(err)), RPC_OK);
        rpc_test_unique(url, sizeof(url), "inproc://dispatch");
        assert_int_equal(rpc_server_listen(srv, url, err, sizeof(err)), RPC_OK);
        assert_int_equal(rpc_server_start(srv), RPC_OK);

        rpc_client *c = rpc_test_client(url, NULL);
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS };
        rpc_error e = { 0 };
        ProtobufCMessage *resp = NULL;
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        Mercato__Test__V1__CountRequest cr = MERCATO__TEST__V1__COUNT_REQUEST__INIT;
        int e0 = hits_echo, d0 = hits_defer, c0 = hits_count;

        er.text = (char *) "abc";
        assert_int_equal(rpc_client_call(c, "/mercato.test.v1.EchoService/Echo", &er.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e),
            RPC_OK);
        assert_string_equal(((Mercato__Test__V1__EchoReply *) resp)->text, "echo:abc");
        assert_string_equal(
            ((Mercato__Test__V1__EchoReply *) resp)->method, "/mercato.test.v1.EchoService/Echo");
        protobuf_c_message_free_unpacked(resp, NULL);
        assert_int_equal(hits_echo, e0 + 1);

        resp = NULL;
        assert_int_equal(rpc_client_call(c, "/mercato.test.v1.EchoService/Defer", &er.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e),
            RPC_OK);
        assert_string_equal(((Mercato__Test__V1__EchoReply *) resp)->text, "defer:abc");
        assert_string_equal(
            ((Mercato__Test__V1__EchoReply *) resp)->method, "/mercato.test.v1.EchoService/Defer");
        protobuf_c_message_free_unpacked(resp, NULL);
        assert_int_equal(hits_defer, d0 + 1);

        resp = NULL;
        cr.text = (char *) "abcd";
        assert_int_equal(rpc_client_call(c, "/mercato.test.v1.EchoService/Count", &cr.base,
                             &mercato__test__v1__count_reply__descriptor, &resp, &opts, &e),
            RPC_OK);
        assert_int_equal(((Mercato__Test__V1__CountReply *) resp)->calls, 4246);
        protobuf_c_message_free_unpacked(resp, NULL);
        assert_int_equal(hits_count, c0 + 1);

        /* Nobody else ran. */
        assert_int_equal(hits_echo, e0 + 1);
        assert_int_equal(hits_defer, d0 + 1);

        rpc_client_free(c);
        rpc_server_free(srv);
}

/* Starts a server with the good table on a fresh inproc URL. */
static rpc_server *
start_good(char *url, size_t len)
{
        rpc_server *srv = new_server();
        char err[256] = "";

        assert_int_equal(rpc_server_add_service(srv, svc, good_table, 3, err, sizeof(err)), RPC_OK);
        rpc_test_unique(url, len, "inproc://dispatch");
        assert_int_equal(rpc_server_listen(srv, url, err, sizeof(err)), RPC_OK);
        assert_int_equal(rpc_server_start(srv), RPC_OK);
        return srv;
}

/* A method the server does not have is UNIMPLEMENTED, whether the service or the method is
 * unknown; no handler runs. */
static void
test_rpc_dispatch_unknown_method_unimplemented(void **state)
{
        char url[128];
        rpc_server *srv = start_good(url, sizeof(url));
        rpc_client *c = rpc_test_client(url, NULL);
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS };
        static const char *const names[] = {
                "/mercato.test.v1.EchoService/Shout",
                "/mercato.test.v1.NoSuchService/Echo",
                "/mercato.test.v1.EchoService/echo",
        };
        int before = hits_echo + hits_defer + hits_count;

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                rpc_error e = { 0 };
                uint8_t *out = NULL;
                size_t out_len = 0;

                assert_int_equal(
                    rpc_client_call_raw(c, names[i], NULL, 0, &opts, &out, &out_len, &e),
                    RPC_UNIMPLEMENTED);
                assert_int_equal(e.code, RPC_UNIMPLEMENTED);
                assert_null(out);
        }
        assert_int_equal(hits_echo + hits_defer + hits_count, before);
        /* And the server still dispatches a good call. */
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_error e = { 0 };
        er.text = (char *) "still here";
        assert_int_equal(rpc_client_call(c, "/mercato.test.v1.EchoService/Echo", &er.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e),
            RPC_OK);
        assert_string_equal(((Mercato__Test__V1__EchoReply *) resp)->text, "echo:still here");
        protobuf_c_message_free_unpacked(resp, NULL);
        rpc_client_free(c);
        rpc_server_free(srv);
}

/* A payload of another message type is INVALID_ARGUMENT, and the handler does not run. */
static void
test_rpc_dispatch_wrong_payload_type_invalid_argument(void **state)
{
        char url[128];
        rpc_server *srv = start_good(url, sizeof(url));
        rpc_client *c = rpc_test_client(url, NULL);
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS };
        Mercato__Test__V1__WrongRequest wr = MERCATO__TEST__V1__WRONG_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_error e = { 0 };
        int before = hits_echo;

        wr.note = (char *) "I am not an EchoRequest";
        wr.weight = 99;
        assert_int_equal(rpc_client_call(c, "/mercato.test.v1.EchoService/Echo", &wr.base,
                             &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e),
            RPC_INVALID_ARGUMENT);
        assert_int_equal(e.code, RPC_INVALID_ARGUMENT);
        assert_true(e.message[0] != '\0');
        assert_null(resp);
        assert_int_equal(hits_echo, before);
        rpc_client_free(c);
        rpc_server_free(srv);
}

/* The standard service answers beside ours: Health names the server, ListMethods lists our
 * three methods with their types and idempotency. */
static void
test_rpc_dispatch_standard_methods_answer(void **state)
{
        char url[128];
        rpc_server *srv = start_good(url, sizeof(url));
        rpc_client *c = rpc_test_client(url, NULL);
        rpc_call_opts opts = { .timeout_ms = TIMEOUT_MS };
        Mercato__Rpc__V1__HealthRequest hreq = MERCATO__RPC__V1__HEALTH_REQUEST__INIT;
        Mercato__Rpc__V1__ListMethodsRequest lreq = MERCATO__RPC__V1__LIST_METHODS_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_error e = { 0 };

        assert_int_equal(rpc_client_call(c, "/mercato.rpc.v1.StandardService/Health", &hreq.base,
                             &mercato__rpc__v1__health_response__descriptor, &resp, &opts, &e),
            RPC_OK);
        assert_string_equal(((Mercato__Rpc__V1__HealthResponse *) resp)->status, "SERVING");
        assert_string_equal(((Mercato__Rpc__V1__HealthResponse *) resp)->service, "dispatch");
        protobuf_c_message_free_unpacked(resp, NULL);

        resp = NULL;
        assert_int_equal(
            rpc_client_call(c, "/mercato.rpc.v1.StandardService/ListMethods", &lreq.base,
                &mercato__rpc__v1__list_methods_response__descriptor, &resp, &opts, &e),
            RPC_OK);
        Mercato__Rpc__V1__ListMethodsResponse *lm = (Mercato__Rpc__V1__ListMethodsResponse *) resp;
        int found = 0;
        for (size_t i = 0; i < lm->n_methods; i++) {
                const Mercato__Rpc__V1__MethodInfo *mi = lm->methods[i];

                if (strcmp(mi->name, "/mercato.test.v1.EchoService/Echo") == 0) {
                        assert_string_equal(mi->input_type, "mercato.test.v1.EchoRequest");
                        assert_string_equal(mi->output_type, "mercato.test.v1.EchoReply");
                        assert_true(mi->idempotent);
                        found++;
                } else if (strcmp(mi->name, "/mercato.test.v1.EchoService/Defer") == 0) {
                        assert_false(mi->idempotent);
                        found++;
                } else if (strcmp(mi->name, "/mercato.test.v1.EchoService/Count") == 0) {
                        assert_string_equal(mi->input_type, "mercato.test.v1.CountRequest");
                        assert_string_equal(mi->output_type, "mercato.test.v1.CountReply");
                        found++;
                }
        }
        assert_int_equal(found, 3);
        protobuf_c_message_free_unpacked(resp, NULL);
        rpc_client_free(c);
        rpc_server_free(srv);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_dispatch_refuses_missing_method),
                cmocka_unit_test(test_rpc_dispatch_refuses_wrong_input_type),
                cmocka_unit_test(test_rpc_dispatch_refuses_wrong_output_type),
                cmocka_unit_test(test_rpc_dispatch_refuses_duplicate_entry),
                cmocka_unit_test(test_rpc_dispatch_refuses_unknown_name),
                cmocka_unit_test(test_rpc_dispatch_accepts_correct_table),
                cmocka_unit_test(test_rpc_dispatch_calls_reach_typed_handler),
                cmocka_unit_test(test_rpc_dispatch_unknown_method_unimplemented),
                cmocka_unit_test(test_rpc_dispatch_wrong_payload_type_invalid_argument),
                cmocka_unit_test(test_rpc_dispatch_standard_methods_answer),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
