/* test_rpc_envelope.c: strict decoding of request and reply envelopes and of payloads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rpc.h"
#include "test.pb-c.h"

#define MAX_SIZE (1024 * 1024)

static const char method_echo[] = "/mercato.test.v1.EchoService/Echo";

/* Packs an EchoRequest with every field set. */
static uint8_t *
pack_echo_request(size_t *ret_len)
{
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        static uint8_t blob[32];

        for (size_t i = 0; i < sizeof(blob); i++) {
                blob[i] = (uint8_t) (i * 7 + 1);
        }
        er.text = (char *) "hello, envelope";
        er.sleep_ms = 5;
        er.blob.data = blob;
        er.blob.len = sizeof(blob);
        er.fail_code = 9;
        return rpc_pack(&er.base, ret_len);
}

/* Packs a request envelope with every field set, around an EchoRequest payload. */
static uint8_t *
pack_full_request(size_t *ret_len)
{
        Mercato__Rpc__V1__Request req = MERCATO__RPC__V1__REQUEST__INIT;
        Mercato__Rpc__V1__Request__MetadataEntry e1
            = MERCATO__RPC__V1__REQUEST__METADATA_ENTRY__INIT;
        Mercato__Rpc__V1__Request__MetadataEntry e2
            = MERCATO__RPC__V1__REQUEST__METADATA_ENTRY__INIT;
        Mercato__Rpc__V1__Request__MetadataEntry *meta[2] = { &e1, &e2 };
        size_t plen;
        uint8_t *payload = pack_echo_request(&plen);
        uint8_t *buf;

        req.method = (char *) method_echo;
        req.payload.data = payload;
        req.payload.len = plen;
        req.deadline_unix_ms = 1234567890123;
        req.request_id = (char *) "req-1";
        req.trace_id = (char *) "trace-1";
        req.idempotency_key = (char *) "idem-1";
        e1.key = (char *) "tenant";
        e1.value = (char *) "acme";
        e2.key = (char *) "echo";
        e2.value = (char *) "a value with spaces";
        req.n_metadata = 2;
        req.metadata = meta;
        buf = rpc_pack(&req.base, ret_len);
        free(payload);
        return buf;
}

/* Returns the offsets at which top-level fields of an encoding end (the field boundaries,
 * 0 included), marking them in is_boundary[0..len]. */
static void
mark_boundaries(const uint8_t *buf, size_t len, bool *is_boundary)
{
        size_t pos = 0;

        memset(is_boundary, 0, len + 1);
        is_boundary[0] = true;
        while (pos < len) {
                uint64_t tag = 0;
                int shift = 0;

                do {
                        tag |= (uint64_t) (buf[pos] & 0x7f) << shift;
                        shift += 7;
                } while (buf[pos++] & 0x80);
                switch (tag & 7) {
                case 0:
                        while (buf[pos++] & 0x80) { }
                        break;
                case 2: {
                        uint64_t n = 0;

                        shift = 0;
                        do {
                                n |= (uint64_t) (buf[pos] & 0x7f) << shift;
                                shift += 7;
                        } while (buf[pos++] & 0x80);
                        pos += n;
                        break;
                }
                case 1:
                        pos += 8;
                        break;
                case 5:
                        pos += 4;
                        break;
                default:
                        fail_msg("unexpected wire type in our own encoding");
                }
                assert_true(pos <= len);
                is_boundary[pos] = true;
        }
}

static const char *
meta_get(const Mercato__Rpc__V1__Request *req, const char *key)
{
        for (size_t i = 0; i < req->n_metadata; i++) {
                if (strcmp(req->metadata[i]->key, key) == 0) {
                        return req->metadata[i]->value;
                }
        }
        return NULL;
}

/* A request envelope decodes to exactly what was packed, payload included. */
static void
test_rpc_envelope_request_round_trip(void **state)
{
        size_t len, plen;
        uint8_t *buf = pack_full_request(&len);
        uint8_t *payload = pack_echo_request(&plen);
        Mercato__Rpc__V1__Request *req = NULL;
        ProtobufCMessage *msg = NULL;
        char err[256] = "";

        assert_int_equal(
            rpc_envelope_decode_request(buf, len, MAX_SIZE, &req, err, sizeof(err)), RPC_OK);
        assert_non_null(req);
        assert_string_equal(req->method, method_echo);
        assert_int_equal(req->deadline_unix_ms, 1234567890123);
        assert_string_equal(req->request_id, "req-1");
        assert_string_equal(req->trace_id, "trace-1");
        assert_string_equal(req->idempotency_key, "idem-1");
        assert_int_equal(req->n_metadata, 2);
        assert_string_equal(meta_get(req, "tenant"), "acme");
        assert_string_equal(meta_get(req, "echo"), "a value with spaces");
        assert_int_equal(req->payload.len, plen);
        assert_memory_equal(req->payload.data, payload, plen);

        assert_int_equal(rpc_payload_unpack(&mercato__test__v1__echo_request__descriptor,
                             req->payload.data, req->payload.len, &msg, err, sizeof(err)),
            RPC_OK);
        Mercato__Test__V1__EchoRequest *er = (Mercato__Test__V1__EchoRequest *) msg;
        assert_string_equal(er->text, "hello, envelope");
        assert_int_equal(er->sleep_ms, 5);
        assert_int_equal(er->blob.len, 32);
        assert_int_equal(er->blob.data[31], (uint8_t) (31 * 7 + 1));
        assert_int_equal(er->fail_code, 9);

        protobuf_c_message_free_unpacked(msg, NULL);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        free(payload);
        free(buf);
}

/* A reply envelope keeps its status, message and payload; an empty message stays empty. */
static void
test_rpc_envelope_reply_round_trip(void **state)
{
        static const uint8_t payload[] = { 0x0a, 0x03, 'a', 'b', 'c' };
        Mercato__Rpc__V1__Reply *reply = NULL;
        char err[256] = "";
        size_t len;
        uint8_t *buf;

        buf = rpc_envelope_encode_reply(
            RPC_FAILED_PRECONDITION, "out of stock", payload, sizeof(payload), &len);
        assert_int_equal(
            rpc_envelope_decode_reply(buf, len, MAX_SIZE, &reply, err, sizeof(err)), RPC_OK);
        assert_non_null(reply->status);
        assert_int_equal(reply->status->code, RPC_FAILED_PRECONDITION);
        assert_string_equal(reply->status->message, "out of stock");
        assert_int_equal(reply->payload.len, sizeof(payload));
        assert_memory_equal(reply->payload.data, payload, sizeof(payload));
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        free(buf);

        reply = NULL;
        buf = rpc_envelope_encode_reply(RPC_OK, NULL, NULL, 0, &len);
        assert_int_equal(
            rpc_envelope_decode_reply(buf, len, MAX_SIZE, &reply, err, sizeof(err)), RPC_OK);
        assert_int_equal(reply->status != NULL ? reply->status->code : 0, RPC_OK);
        assert_string_equal(reply->status != NULL ? reply->status->message : "", "");
        assert_int_equal(reply->payload.len, 0);
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        free(buf);
}

/* Garbage is refused with a reason; random bytes never crash the decoder. */
static void
test_rpc_envelope_garbage_refused(void **state)
{
        static const char text[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
        uint8_t ff[64];
        uint8_t zeros[16] = { 0 };
        Mercato__Rpc__V1__Request *req = NULL;
        Mercato__Rpc__V1__Reply *reply = NULL;
        char err[256];

        memset(ff, 0xff, sizeof(ff));
        const struct {
                const uint8_t *buf;
                size_t len;
        } cases[] = {
                { ff, sizeof(ff) },
                { zeros, sizeof(zeros) },
                { (const uint8_t *) text, sizeof(text) - 1 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                err[0] = '\0';
                assert_int_equal(rpc_envelope_decode_request(
                                     cases[i].buf, cases[i].len, MAX_SIZE, &req, err, sizeof(err)),
                    RPC_INVALID_ARGUMENT);
                assert_true(err[0] != '\0');
                err[0] = '\0';
                assert_int_equal(rpc_envelope_decode_reply(cases[i].buf, cases[i].len, MAX_SIZE,
                                     &reply, err, sizeof(err)),
                    RPC_INVALID_ARGUMENT);
                assert_true(err[0] != '\0');
        }

        /* Random buffers: whatever the verdict, it is a clean one. */
        uint64_t rng = 42;
        for (int round = 0; round < 2000; round++) {
                uint8_t buf[96];
                size_t len = (size_t) (rpc_rand_next(&rng) % sizeof(buf)) + 1;

                for (size_t k = 0; k < len; k++) {
                        buf[k] = (uint8_t) rpc_rand_next(&rng);
                }
                req = NULL;
                err[0] = '\0';
                rpc_status st
                    = rpc_envelope_decode_request(buf, len, MAX_SIZE, &req, err, sizeof(err));
                if (st == RPC_OK) {
                        assert_non_null(req);
                        assert_non_null(req->method);
                        protobuf_c_message_free_unpacked(&req->base, NULL);
                } else {
                        assert_int_equal(st, RPC_INVALID_ARGUMENT);
                        assert_true(err[0] != '\0');
                }
                reply = NULL;
                err[0] = '\0';
                st = rpc_envelope_decode_reply(buf, len, MAX_SIZE, &reply, err, sizeof(err));
                if (st == RPC_OK) {
                        assert_non_null(reply);
                        protobuf_c_message_free_unpacked(&reply->base, NULL);
                } else {
                        assert_int_equal(st, RPC_INVALID_ARGUMENT);
                        assert_true(err[0] != '\0');
                }
        }
}

/* Cut anywhere inside a field, a request is refused. Cut exactly between two fields it is a
 * shorter valid message (that is protobuf), which decodes once the method is in: the empty
 * prefix has no method and is refused too. */
static void
test_rpc_envelope_truncated_at_every_offset_refused(void **state)
{
        size_t len;
        uint8_t *buf = pack_full_request(&len);
        bool *boundary = rpc_xcalloc(len + 1, sizeof(bool));
        size_t refused = 0;

        mark_boundaries(buf, len, boundary);
        for (size_t cut = 0; cut < len; cut++) {
                Mercato__Rpc__V1__Request *req = NULL;
                char err[256] = "";
                /* Every cut gets its own exact-size copy, so ASan sees any read past it. */
                uint8_t *copy = rpc_xmalloc(cut);
                rpc_status st;

                memcpy(copy, buf, cut);
                st = rpc_envelope_decode_request(copy, cut, MAX_SIZE, &req, err, sizeof(err));
                if (!boundary[cut] || cut == 0) {
                        assert_int_equal(st, RPC_INVALID_ARGUMENT);
                        assert_null(req);
                        assert_true(err[0] != '\0');
                        refused++;
                } else {
                        assert_int_equal(st, RPC_OK);
                        assert_string_equal(req->method, method_echo);
                        protobuf_c_message_free_unpacked(&req->base, NULL);
                }
                free(copy);
        }
        /* Almost every offset is inside a field. */
        assert_true(refused > len - 12);
        free(boundary);
        free(buf);
}

/* A payload cut inside a field is refused by the strict unpacker, though its envelope is
 * whole. */
static void
test_rpc_envelope_truncated_payload_refused(void **state)
{
        size_t plen;
        uint8_t *payload = pack_echo_request(&plen);
        bool *boundary = rpc_xcalloc(plen + 1, sizeof(bool));
        int refused = 0;

        mark_boundaries(payload, plen, boundary);
        for (size_t cut = 1; cut < plen; cut++) {
                ProtobufCMessage *msg = NULL;
                char err[256] = "";
                uint8_t *copy = rpc_xmalloc(cut);

                if (boundary[cut]) {
                        free(copy);
                        continue;
                }
                memcpy(copy, payload, cut);

                /* The envelope around it is fine: payload is opaque bytes to it. */
                Mercato__Rpc__V1__Request req = MERCATO__RPC__V1__REQUEST__INIT;
                Mercato__Rpc__V1__Request *dec = NULL;
                size_t elen;
                req.method = (char *) method_echo;
                req.payload.data = copy;
                req.payload.len = cut;
                uint8_t *env = rpc_pack(&req.base, &elen);
                assert_int_equal(
                    rpc_envelope_decode_request(env, elen, MAX_SIZE, &dec, err, sizeof(err)),
                    RPC_OK);
                assert_int_equal(dec->payload.len, cut);

                assert_int_equal(rpc_payload_unpack(&mercato__test__v1__echo_request__descriptor,
                                     dec->payload.data, dec->payload.len, &msg, err, sizeof(err)),
                    RPC_INVALID_ARGUMENT);
                assert_null(msg);
                assert_true(err[0] != '\0');
                refused++;
                protobuf_c_message_free_unpacked(&dec->base, NULL);
                free(env);
                free(copy);
        }
        assert_true(refused > 30);
        free(boundary);
        free(payload);
}

/* A frame larger than max_size is RESOURCE_EXHAUSTED; one of exactly max_size passes. */
static void
test_rpc_envelope_oversized_refused(void **state)
{
        size_t len;
        uint8_t *buf = pack_full_request(&len);
        Mercato__Rpc__V1__Request *req = NULL;
        Mercato__Rpc__V1__Reply *reply = NULL;
        char err[256] = "";

        assert_int_equal(rpc_envelope_decode_request(buf, len, len - 1, &req, err, sizeof(err)),
            RPC_RESOURCE_EXHAUSTED);
        assert_null(req);
        assert_true(err[0] != '\0');
        assert_int_equal(
            rpc_envelope_decode_request(buf, len, len, &req, err, sizeof(err)), RPC_OK);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        free(buf);

        uint8_t big[4096];
        memset(big, 'x', sizeof(big));
        buf = rpc_envelope_encode_reply(RPC_OK, NULL, big, sizeof(big), &len);
        err[0] = '\0';
        assert_int_equal(rpc_envelope_decode_reply(buf, len, len - 1, &reply, err, sizeof(err)),
            RPC_RESOURCE_EXHAUSTED);
        assert_null(reply);
        assert_true(err[0] != '\0');
        assert_int_equal(
            rpc_envelope_decode_reply(buf, len, len, &reply, err, sizeof(err)), RPC_OK);
        assert_int_equal(reply->payload.len, sizeof(big));
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        free(buf);
}

/* An unknown field, at the top or inside a nested message, is refused; so is a payload of
 * another message type. */
static void
test_rpc_envelope_unknown_field_refused(void **state)
{
        size_t len;
        uint8_t *good = pack_full_request(&len);
        uint8_t *buf = rpc_xmalloc(len + 3);
        Mercato__Rpc__V1__Request *req = NULL;
        Mercato__Rpc__V1__Reply *reply = NULL;
        ProtobufCMessage *msg = NULL;
        char err[256] = "";

        /* Field 99, varint 1: tag (99 << 3 | 0) = 792 = 0x98 0x06. */
        memcpy(buf, good, len);
        buf[len] = 0x98;
        buf[len + 1] = 0x06;
        buf[len + 2] = 0x01;
        assert_int_equal(
            rpc_envelope_decode_request(buf, len + 3, MAX_SIZE, &req, err, sizeof(err)),
            RPC_INVALID_ARGUMENT);
        assert_null(req);
        assert_true(err[0] != '\0');

        /* Reply.status = { code: 5, field 9: 1 }. */
        static const uint8_t nested[] = { 0x0a, 0x04, 0x08, 0x05, 0x48, 0x01 };
        err[0] = '\0';
        assert_int_equal(
            rpc_envelope_decode_reply(nested, sizeof(nested), MAX_SIZE, &reply, err, sizeof(err)),
            RPC_INVALID_ARGUMENT);
        assert_null(reply);
        assert_true(err[0] != '\0');
        /* The same without the stray field is fine. */
        static const uint8_t plain[] = { 0x0a, 0x02, 0x08, 0x05 };
        assert_int_equal(
            rpc_envelope_decode_reply(plain, sizeof(plain), MAX_SIZE, &reply, err, sizeof(err)),
            RPC_OK);
        assert_int_equal(reply->status->code, RPC_NOT_FOUND);
        protobuf_c_message_free_unpacked(&reply->base, NULL);

        /* A WrongRequest is no EchoRequest. */
        Mercato__Test__V1__WrongRequest wr = MERCATO__TEST__V1__WRONG_REQUEST__INIT;
        size_t wlen;
        wr.note = (char *) "not an echo";
        wr.weight = 12;
        uint8_t *wbuf = rpc_pack(&wr.base, &wlen);
        err[0] = '\0';
        assert_int_equal(rpc_payload_unpack(&mercato__test__v1__echo_request__descriptor, wbuf,
                             wlen, &msg, err, sizeof(err)),
            RPC_INVALID_ARGUMENT);
        assert_null(msg);
        assert_true(err[0] != '\0');
        assert_int_equal(rpc_payload_unpack(&mercato__test__v1__wrong_request__descriptor, wbuf,
                             wlen, &msg, err, sizeof(err)),
            RPC_OK);
        protobuf_c_message_free_unpacked(msg, NULL);

        free(wbuf);
        free(buf);
        free(good);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_envelope_request_round_trip),
                cmocka_unit_test(test_rpc_envelope_reply_round_trip),
                cmocka_unit_test(test_rpc_envelope_garbage_refused),
                cmocka_unit_test(test_rpc_envelope_truncated_at_every_offset_refused),
                cmocka_unit_test(test_rpc_envelope_truncated_payload_refused),
                cmocka_unit_test(test_rpc_envelope_oversized_refused),
                cmocka_unit_test(test_rpc_envelope_unknown_field_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
