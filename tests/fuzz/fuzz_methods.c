/* fuzz_methods.c: libFuzzer target: every public method of every service, bytes to handler.
 *
 * Each service is hosted as fuzz_host.h describes: the real server call path, handlers,
 * stores, txn/ and db/conn.c, over a fake libpq whose results the input scripts. The input:
 *
 *     byte 0      the method: an index into every method of every service, the standard
 *                 Health, ListMethods and Stats and the EventSink and Participant ones
 *                 included (the order of fuzz_service, then of the sorted full names)
 *     byte 1      flags: 0x01 dataset monolith; 0x02 an idempotency key follows the
 *                 payload; 0x04 a deadline that has passed; bits 3-7 a step switch
 *                 (steps[] below, 0 for none) set in the called service's topology
 *     bytes 2-3   the payload's length, little-endian, then the payload (the method's
 *                 request message, packed)
 *     [1 byte n, n bytes]  the idempotency key, when flagged
 *     the rest    the database's script (pq_fake.h)
 *
 * Methods that call another service get as far as they can without it: the cart's AddItem
 * and the saga find no peer address and answer UNAVAILABLE, and a 2pc PlaceOrder finds no
 * coordinator running; each only after its whole request has been validated. A monolith
 * PlaceOrder runs entirely, on the fake monolith database.
 *
 * Beyond "no crash, no leak, no sanitizer report", each call must: answer (there are no
 * fault rules), with a reply that decodes strictly, a known status and, for OK, a payload
 * of the method's output type; leave no transaction open on any connection; and leave no
 * call in flight.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_host.h"
#include "pq_fake.h"

static const fuzz_method *methods;
static size_t n_methods;
static bool verbose; /* MERCATO_FUZZ_VERBOSE set: print each call's status */

/* The step switches (svc.h), each as fail and as timeout. */
static const struct {
        const char *service;
        const char *key;
} steps[] = {
        { "order", "step.create" },
        { "product", "step.reserve" },
        { "user", "step.coupon" },
        { "user", "step.debit" },
        { "payment", "step.capture" },
        { "order", "step.complete" },
};
#define N_SWITCHES (1 + 2 * sizeof(steps) / sizeof(steps[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void) argc;
        (void) argv;
        n_methods = fuzz_methods_all(&methods);
        verbose = getenv("MERCATO_FUZZ_VERBOSE") != NULL;
        return 0;
}

static void
print_reply(const char *method, const uint8_t *frame, size_t len)
{
        Mercato__Rpc__V1__Reply *reply = NULL;
        char err[256];

        if (rpc_envelope_decode_reply(frame, len, SIZE_MAX, &reply, err, sizeof(err)) == RPC_OK) {
                rpc_status st = reply->status != NULL ? (rpc_status) reply->status->code : RPC_OK;
                fprintf(stderr, "%s: %s %s\n", method, rpc_status_name(st),
                    reply->status != NULL ? reply->status->message : "");
                protobuf_c_message_free_unpacked(&reply->base, NULL);
        }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        Mercato__Rpc__V1__Request req = MERCATO__RPC__V1__REQUEST__INIT;
        Mercato__Rpc__V1__Request__MetadataEntry dataset
            = MERCATO__RPC__V1__REQUEST__METADATA_ENTRY__INIT;
        Mercato__Rpc__V1__Request__MetadataEntry *metadata[] = { &dataset };
        char key[256] = "";
        size_t pos = 4;
        size_t payload_len;
        uint8_t *frame;
        uint8_t *reply;
        size_t frame_len;
        size_t reply_len;

        if (size < 4) {
                return 0;
        }
        const fuzz_method *m = &methods[data[0] % n_methods];
        uint8_t flags = data[1];
        payload_len = (size_t) data[2] | (size_t) data[3] << 8;
        if (payload_len > size - pos) {
                payload_len = size - pos;
        }
        req.method = (char *) m->name;
        req.payload.data = (uint8_t *) data + pos;
        req.payload.len = payload_len;
        pos += payload_len;
        req.request_id = "fuzz";
        req.trace_id = "fuzz-trace";
        if ((flags & 0x01) != 0) {
                dataset.key = SVC_DATASET_KEY;
                dataset.value = SVC_DATASET_MONOLITH;
                req.metadata = metadata;
                req.n_metadata = 1;
        }
        if ((flags & 0x02) != 0 && pos < size) {
                size_t n = data[pos++];
                if (n > size - pos) {
                        n = size - pos;
                }
                memcpy(key, data + pos, n);
                key[n] = '\0';
                pos += n;
                req.idempotency_key = key;
        }
        if ((flags & 0x04) != 0) {
                req.deadline_unix_ms = 1;
        }
        size_t sw = (size_t) (flags >> 3) % N_SWITCHES;
        rpc_conf *conf = fuzz_svc_conf(m->host->svc);
        if (sw > 0) {
                rpc_conf_set(conf, steps[(sw - 1) / 2].service, steps[(sw - 1) / 2].key,
                    (sw - 1) % 2 == 0 ? "fail" : "timeout");
        }

        frame = rpc_pack(&req.base, &frame_len);
        pq_fake_script(data + pos, size - pos);
        reply = fuzz_host_call(m->host, frame, frame_len, &reply_len);
        pq_fake_script(NULL, 0);
        if (reply == NULL) {
                fprintf(stderr, "fuzz: %s: no reply\n", m->name);
                abort();
        }
        fuzz_check_reply(m->name, m->output, reply, reply_len);
        if (verbose) {
                print_reply(m->name, reply, reply_len);
        }
        if (pq_fake_open_transactions() != 0) {
                fprintf(stderr, "fuzz: %s: left a transaction open\n", m->name);
                abort();
        }
        if (rpc_server_inflight(m->host->srv) != 0) {
                fprintf(stderr, "fuzz: %s: left a call in flight\n", m->name);
                abort();
        }
        if (sw > 0) {
                rpc_conf_set(conf, steps[(sw - 1) / 2].service, steps[(sw - 1) / 2].key, "ok");
        }
        free(reply);
        free(frame);
        return 0;
}
