/* echo_service.h: the EchoService of test.proto, served by the RPC runtime's tests and tools. */
#ifndef MERCATO_TEST_ECHO_SERVICE_H
#define MERCATO_TEST_ECHO_SERVICE_H

#include <stdint.h>

#include "rpc.h"
#include "test.pb-c.h"

#define ECHO_METHOD_ECHO "/mercato.test.v1.EchoService/Echo"
#define ECHO_METHOD_DEFER "/mercato.test.v1.EchoService/Defer"
#define ECHO_METHOD_COUNT "/mercato.test.v1.EchoService/Count"

/* Registers EchoService on srv (before rpc_server_start). Echo is marked idempotent. The
 * counts behind Count live in the process, shared by every server in it. Returns what
 * rpc_server_add_service returns. */
rpc_status echo_service_add(rpc_server *srv, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* How many times Echo has run for text, in this process. */
int64_t echo_service_count(const char *text);

/* Forgets every count. */
void echo_service_reset(void);

/* Waits until every deferred call has been finished: call it after rpc_server_stop and before
 * rpc_server_free, so that no deferred reply outlives its server. */
void echo_service_wait_idle(void);

#endif
