/* rpc_test_util.c: helpers the RPC runtime's tests share: servers, clients and raw frames. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "echo_service.h"
#include "rpc_test_util.h"

rpc_server *
rpc_test_echo_server(const char *url, int workers, size_t recv_max, rpc_faults *faults)
{
        rpc_server_opts opts = {
                .name = "rpc-test",
                .workers = workers,
                .recv_max = recv_max,
                .faults = faults,
                .drain_ms = 5000,
        };
        rpc_server *srv = NULL;
        char err[256] = "";

        assert_int_equal(rpc_server_new(&opts, &srv), RPC_OK);
        if (echo_service_add(srv, err, sizeof(err)) != RPC_OK) {
                fail_msg("echo_service_add: %s", err);
        }
        if (rpc_server_listen(srv, url, err, sizeof(err)) != RPC_OK) {
                fail_msg("listen %s: %s", url, err);
        }
        assert_int_equal(rpc_server_start(srv), RPC_OK);
        return srv;
}

void
rpc_test_server_free(rpc_server *srv)
{
        if (srv == NULL) {
                return;
        }
        rpc_server_stop(srv);
        echo_service_wait_idle();
        rpc_server_free(srv);
}

rpc_client *
rpc_test_client(const char *url, const rpc_client_opts *opts)
{
        rpc_client *c = NULL;

        assert_int_equal(rpc_client_open(url, opts, &c), RPC_OK);
        assert_non_null(c);
        return c;
}

uint8_t *
rpc_test_request_frame(const char *method, const ProtobufCMessage *payload,
    int64_t deadline_unix_ms, const char *request_id, size_t *ret_len)
{
        Mercato__Rpc__V1__Request req = MERCATO__RPC__V1__REQUEST__INIT;
        uint8_t *pbuf = NULL;
        size_t plen = 0;
        uint8_t *frame;

        if (payload != NULL) {
                pbuf = rpc_pack(payload, &plen);
        }
        req.method = (char *) method;
        req.payload.data = pbuf;
        req.payload.len = plen;
        req.deadline_unix_ms = deadline_unix_ms;
        req.request_id = (char *) (request_id != NULL ? request_id : "");
        frame = rpc_pack(&req.base, ret_len);
        free(pbuf);
        return frame;
}

rpc_status
rpc_test_send_frame(rpc_client *c, const uint8_t *frame, size_t len, int64_t timeout_ms,
    Mercato__Rpc__V1__Reply **ret_reply)
{
        uint8_t *out = NULL;
        size_t out_len = 0;
        Mercato__Rpc__V1__Reply *reply = NULL;
        char err[256] = "";
        rpc_status st;

        st = rpc_client_send_frame(c, frame, len, timeout_ms, &out, &out_len);
        if (st != RPC_OK) {
                fail_msg("send_frame: %s", rpc_status_name(st));
        }
        st = rpc_envelope_decode_reply(out, out_len, 16 * 1024 * 1024, &reply, err, sizeof(err));
        free(out);
        if (st != RPC_OK) {
                fail_msg("the reply frame does not decode: %s", err);
        }
        st = reply->status != NULL ? rpc_status_from_wire((int32_t) reply->status->code) : RPC_OK;
        if (ret_reply != NULL) {
                *ret_reply = reply;
        } else {
                protobuf_c_message_free_unpacked(&reply->base, NULL);
        }
        return st;
}

void
rpc_test_echo_ok(rpc_client *c, const char *text)
{
        Mercato__Test__V1__EchoRequest req = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = 10000 };
        rpc_error err = { 0 };
        rpc_status st;

        req.text = (char *) text;
        st = rpc_client_call(c, ECHO_METHOD_ECHO, &req.base,
            &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &err);
        if (st != RPC_OK) {
                fail_msg("echo '%s': %s: %s", text, rpc_status_name(st), err.message);
        }
        assert_string_equal(((Mercato__Test__V1__EchoReply *) resp)->text, text);
        protobuf_c_message_free_unpacked(resp, NULL);
}

void
rpc_test_unique(char *buf, size_t len, const char *prefix)
{
        static int counter;

        snprintf(buf, len, "%s-%ld-%d", prefix, (long) getpid(),
            __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST));
}

int
rpc_test_free_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t sl = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int port;

        assert_true(fd >= 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = 0;
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
        port = ntohs(sa.sin_port);
        close(fd);
        return port;
}
