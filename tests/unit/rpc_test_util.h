/* rpc_test_util.h: helpers the RPC runtime's tests share: servers, clients and raw frames. */
#ifndef MERCATO_RPC_TEST_UTIL_H
#define MERCATO_RPC_TEST_UTIL_H

#include <stdint.h>

#include "rpc.h"

/* Starts a server with EchoService on url; asserts on failure. faults is borrowed. */
rpc_server *rpc_test_echo_server(const char *url, int workers, size_t recv_max, rpc_faults *faults);

/* Stops and frees a server from rpc_test_echo_server, waiting for deferred replies. */
void rpc_test_server_free(rpc_server *srv);

/* Opens a client; asserts on failure. opts may be NULL. */
rpc_client *rpc_test_client(const char *url, const rpc_client_opts *opts);

/* Packs a request envelope around payload (may be NULL for an empty one). */
uint8_t *rpc_test_request_frame(const char *method, const ProtobufCMessage *payload,
    int64_t deadline_unix_ms, const char *request_id, size_t *ret_len);

/* Sends a raw frame and decodes the reply envelope; asserts that both work, and returns the
 * reply's status. *ret_reply (may be NULL) gets the reply to free. */
rpc_status rpc_test_send_frame(rpc_client *c, const uint8_t *frame, size_t len, int64_t timeout_ms,
    Mercato__Rpc__V1__Reply **ret_reply);

/* Calls Echo with text and asserts that the reply echoes it. */
void rpc_test_echo_ok(rpc_client *c, const char *text);

/* A fresh unique name for inproc/ipc URLs: prefix, pid and a counter. */
void rpc_test_unique(char *buf, size_t len, const char *prefix);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int rpc_test_free_port(void);

#endif
