/* fuzz_envelope.c: libFuzzer target: a request frame as read off the socket, decoded and served.
 *
 * The input is one frame. It is decoded strictly as a request and as a reply (a request
 * that decodes must pack and decode again to the same bytes, and be refused once it is
 * over the size limit), then served by two in-process product servers (fuzz_host.h): one
 * plain, where Health and Stats run inline; and one with a 512-byte request limit and
 * fault rules that drop, delay, duplicate and fail. Each answer must decode strictly with
 * a known status, and for OK carry the method's output type; nothing may stay in flight
 * and no transaction open. The database answers every statement OK (an empty script).
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_host.h"
#include "pq_fake.h"

/* Every action, on the product methods and the standard ones. */
#define FAULTS                                                                                     \
        "*/Stats fail 0.5 RESOURCE_EXHAUSTED; */ListMethods drop 0.3; "                            \
        "*/GetProduct duplicate 0.5 2; */ListProducts delay 0.5 5; */PriceItems fail 0.3; "        \
        "*/Health dup 0.2"

static fuzz_host *plain;
static fuzz_host *faulty;
static rpc_faults *faults;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
        char err[256];

        (void) argc;
        (void) argv;
        if (rpc_faults_parse(FAULTS, 7, &faults, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "fuzz: fault rules: %s\n", err);
                abort();
        }
        plain = fuzz_host_new(fuzz_service(0), NULL, 0);
        faulty = fuzz_host_new(fuzz_service(0), faults, 512);
        return 0;
}

/* A request that decodes packs canonically: packing it, decoding and packing again gives
 * the same bytes. One byte over the limit is RESOURCE_EXHAUSTED. */
static void
check_request(const uint8_t *data, size_t size)
{
        Mercato__Rpc__V1__Request *req = NULL;
        Mercato__Rpc__V1__Request *again = NULL;
        char err[512];
        size_t n1;
        size_t n2;

        if (size > 0
            && rpc_envelope_decode_request(data, size, size - 1, &req, err, sizeof(err))
                != RPC_RESOURCE_EXHAUSTED) {
                fprintf(stderr, "fuzz: a request over the limit was not refused\n");
                abort();
        }
        if (rpc_envelope_decode_request(data, size, SIZE_MAX, &req, err, sizeof(err)) != RPC_OK) {
                return;
        }
        uint8_t *b1 = rpc_pack(&req->base, &n1);
        if (rpc_envelope_decode_request(b1, n1, SIZE_MAX, &again, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "fuzz: a repacked request does not decode: %s\n", err);
                abort();
        }
        uint8_t *b2 = rpc_pack(&again->base, &n2);
        if (n1 != n2 || memcmp(b1, b2, n1) != 0) {
                fprintf(stderr, "fuzz: a request does not repack to the same bytes\n");
                abort();
        }
        free(b1);
        free(b2);
        protobuf_c_message_free_unpacked(&again->base, NULL);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* A reply that decodes repacks to one that decodes. */
static void
check_reply(const uint8_t *data, size_t size)
{
        Mercato__Rpc__V1__Reply *reply = NULL;
        char err[512];

        if (rpc_envelope_decode_reply(data, size, SIZE_MAX, &reply, err, sizeof(err)) != RPC_OK) {
                return;
        }
        size_t n;
        uint8_t *b = rpc_pack(&reply->base, &n);
        Mercato__Rpc__V1__Reply *again = NULL;
        if (rpc_envelope_decode_reply(b, n, SIZE_MAX, &again, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "fuzz: a repacked reply does not decode: %s\n", err);
                abort();
        }
        protobuf_c_message_free_unpacked(&again->base, NULL);
        free(b);
        protobuf_c_message_free_unpacked(&reply->base, NULL);
}

/* The output type of the method the frame names, when it names one the server has. */
static const ProtobufCMessageDescriptor *
output_of(const fuzz_host *h, const uint8_t *data, size_t size)
{
        Mercato__Rpc__V1__Request *req = NULL;
        const ProtobufCMessageDescriptor *out = NULL;
        char err[512];

        if (rpc_envelope_decode_request(data, size, SIZE_MAX, &req, err, sizeof(err)) != RPC_OK) {
                return NULL;
        }
        for (size_t i = 0; i < fuzz_server_n_methods(h->srv); i++) {
                const ProtobufCMessageDescriptor *in;
                const ProtobufCMessageDescriptor *o;
                if (strcmp(fuzz_server_method(h->srv, i, &in, &o), req->method) == 0) {
                        out = o;
                }
        }
        protobuf_c_message_free_unpacked(&req->base, NULL);
        return out;
}

static void
serve(fuzz_host *h, const uint8_t *data, size_t size, bool may_drop)
{
        size_t len = 0;
        uint8_t *reply = fuzz_host_call(h, data, size, &len);

        if (reply == NULL && !may_drop) {
                fprintf(stderr, "fuzz: no reply\n");
                abort();
        }
        if (reply != NULL) {
                fuzz_check_reply("(frame)", output_of(h, data, size), reply, len);
        }
        if (rpc_server_inflight(h->srv) != 0 || pq_fake_open_transactions() != 0) {
                fprintf(stderr, "fuzz: a call stayed in flight or left a transaction open\n");
                abort();
        }
        free(reply);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        check_request(data, size);
        check_reply(data, size);
        pq_fake_script(NULL, 0);
        serve(plain, data, size, false);
        serve(faulty, data, size, true);
        return 0;
}
