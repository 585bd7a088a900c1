/* fuzz_server.c: the RPC server's call path run in-process, for the fuzz targets (fuzz_host.h).
 *
 * rpc/server.c is compiled into this file, so that a frame goes through the very functions
 * a request read off the socket goes through, statics included (call_new, call_inline,
 * call_run, apply_fault, call_finish), with no socket and no thread. The reply frame that
 * call_finish builds is kept by routing rpc_envelope_encode_reply through capture_reply.
 * Every symbol of server.c is defined here, so the fuzz targets never pull server.o out of
 * the mercato_rpc archive.
 */
#include "rpc.h"

#include "fuzz_host.h"

static uint8_t *capture_reply(rpc_status st, const char *message, const uint8_t *payload,
    size_t payload_len, size_t *ret_len);

#define rpc_envelope_encode_reply capture_reply
#include "server.c"
#undef rpc_envelope_encode_reply

/* The first reply of the dispatch in progress: the original call's. */
static struct {
        bool armed;
        uint8_t *frame;
        size_t len;
} captured;

static uint8_t *
capture_reply(
    rpc_status st, const char *message, const uint8_t *payload, size_t payload_len, size_t *ret_len)
{
        uint8_t *frame = rpc_envelope_encode_reply(st, message, payload, payload_len, ret_len);

        if (captured.armed) {
                captured.armed = false;
                captured.frame = rpc_xmalloc(*ret_len > 0 ? *ret_len : 1);
                memcpy(captured.frame, frame, *ret_len);
                captured.len = *ret_len;
        }
        return frame;
}

void
fuzz_server_ready(rpc_server *srv)
{
        qsort(srv->methods, srv->n_methods, sizeof(method_entry), method_cmp);
        for (size_t i = 0; i < srv->n_methods; i++) {
                pthread_mutex_init(&srv->methods[i].stats.mu, NULL);
        }
        /* No worker waits on the queue: closed, queue_pop returns NULL when it is empty
         * instead of waiting. */
        srv->queue_closed = true;
}

uint8_t *
fuzz_server_dispatch(
    rpc_server *srv, const uint8_t *frame, size_t len, void *worker, size_t *ret_len)
{
        rpc_call *call = call_new(srv, NULL, frame, len);
        uint8_t *reply;

        captured.armed = true;
        captured.frame = NULL;
        captured.len = 0;
        /* As ctx_cb: an inline method runs right away, anything else on a worker. */
        if (call_inline(call)) {
                call_run(call, NULL);
        } else {
                call_run(call, worker);
        }
        captured.armed = false;
        reply = captured.frame;
        *ret_len = captured.len;
        /* The copies of a duplicate fault, as the workers would pop them. */
        for (rpc_call *copy = queue_pop(srv, false); copy != NULL; copy = queue_pop(srv, false)) {
                call_run(copy, worker);
        }
        return reply;
}

size_t
fuzz_server_n_methods(const rpc_server *srv)
{
        return srv->n_methods;
}

const char *
fuzz_server_method(const rpc_server *srv, size_t i, const ProtobufCMessageDescriptor **ret_input,
    const ProtobufCMessageDescriptor **ret_output)
{
        *ret_input = srv->methods[i].input;
        *ret_output = srv->methods[i].output;
        return srv->methods[i].fullname;
}
