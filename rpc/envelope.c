/* envelope.c: strict packing and unpacking of the request and reply envelopes and payloads. */
#include <stdio.h>
#include <string.h>

#include "rpc.h"

/* Walks a message and its sub-messages; returns true if one holds an unknown field, and its
 * number in *ret_tag. The number may be 0: protobuf-c lets a field numbered 0 through when
 * its tag is written in more than one byte, so 0 cannot mean "none". */
static bool
find_unknown_field(const ProtobufCMessage *msg, uint32_t *ret_tag)
{
        const ProtobufCMessageDescriptor *d = msg->descriptor;

        if (msg->n_unknown_fields > 0) {
                *ret_tag = msg->unknown_fields[0].tag;
                return true;
        }
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                const char *base = (const char *) msg;

                if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
                        continue;
                }
                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *) (base + f->quantifier_offset);
                        ProtobufCMessage *const *arr
                            = *(ProtobufCMessage *const *const *) (base + f->offset);
                        for (size_t k = 0; k < n; k++) {
                                if (find_unknown_field(arr[k], ret_tag)) {
                                        return true;
                                }
                        }
                } else {
                        const ProtobufCMessage *sub
                            = *(ProtobufCMessage *const *) (base + f->offset);
                        if (sub != NULL && find_unknown_field(sub, ret_tag)) {
                                return true;
                        }
                }
        }
        return false;
}

rpc_status
rpc_payload_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
    ProtobufCMessage **ret_msg, char *errbuf, size_t errlen)
{
        ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, buf);
        uint32_t tag = 0;

        if (msg == NULL) {
                snprintf(errbuf, errlen, "malformed %s: not a valid protobuf encoding", desc->name);
                return RPC_INVALID_ARGUMENT;
        }
        if (find_unknown_field(msg, &tag)) {
                snprintf(errbuf, errlen, "malformed %s: unknown field %u (wrong message type?)",
                    desc->name, tag);
                protobuf_c_message_free_unpacked(msg, NULL);
                return RPC_INVALID_ARGUMENT;
        }
        *ret_msg = msg;
        return RPC_OK;
}

static bool
method_name_valid(const char *m)
{
        size_t n = strlen(m);

        if (n < 4 || n > 256 || m[0] != '/') {
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                if (m[i] <= ' ' || m[i] > '~') {
                        return false;
                }
        }
        return strchr(m + 1, '/') != NULL;
}

rpc_status
rpc_envelope_decode_request(const uint8_t *buf, size_t len, size_t max_size,
    Mercato__Rpc__V1__Request **ret_req, char *errbuf, size_t errlen)
{
        ProtobufCMessage *msg = NULL;
        rpc_status st;

        if (len > max_size) {
                snprintf(
                    errbuf, errlen, "request of %zu bytes exceeds the limit of %zu", len, max_size);
                return RPC_RESOURCE_EXHAUSTED;
        }
        if (len == 0) {
                snprintf(errbuf, errlen, "empty request: no method");
                return RPC_INVALID_ARGUMENT;
        }
        st = rpc_payload_unpack(
            &mercato__rpc__v1__request__descriptor, buf, len, &msg, errbuf, errlen);
        if (st != RPC_OK) {
                return st;
        }
        Mercato__Rpc__V1__Request *req = (Mercato__Rpc__V1__Request *) msg;
        if (!method_name_valid(req->method)) {
                snprintf(errbuf, errlen, "malformed method name: want /package.Service/Method");
                protobuf_c_message_free_unpacked(msg, NULL);
                return RPC_INVALID_ARGUMENT;
        }
        if (req->deadline_unix_ms < 0) {
                snprintf(errbuf, errlen, "negative deadline");
                protobuf_c_message_free_unpacked(msg, NULL);
                return RPC_INVALID_ARGUMENT;
        }
        *ret_req = req;
        return RPC_OK;
}

rpc_status
rpc_envelope_decode_reply(const uint8_t *buf, size_t len, size_t max_size,
    Mercato__Rpc__V1__Reply **ret_reply, char *errbuf, size_t errlen)
{
        ProtobufCMessage *msg = NULL;
        rpc_status st;

        if (len > max_size) {
                snprintf(
                    errbuf, errlen, "reply of %zu bytes exceeds the limit of %zu", len, max_size);
                return RPC_RESOURCE_EXHAUSTED;
        }
        st = rpc_payload_unpack(
            &mercato__rpc__v1__reply__descriptor, buf, len, &msg, errbuf, errlen);
        if (st != RPC_OK) {
                return st;
        }
        *ret_reply = (Mercato__Rpc__V1__Reply *) msg;
        return RPC_OK;
}

uint8_t *
rpc_pack(const ProtobufCMessage *msg, size_t *ret_len)
{
        size_t n = protobuf_c_message_get_packed_size(msg);
        uint8_t *buf = rpc_xmalloc(n);

        protobuf_c_message_pack(msg, buf);
        *ret_len = n;
        return buf;
}

uint8_t *
rpc_envelope_encode_reply(
    rpc_status st, const char *message, const uint8_t *payload, size_t payload_len, size_t *ret_len)
{
        Mercato__Rpc__V1__Reply reply = MERCATO__RPC__V1__REPLY__INIT;
        Mercato__Rpc__V1__Status status = MERCATO__RPC__V1__STATUS__INIT;

        status.code = (Mercato__Rpc__V1__Code) st;
        status.message = (char *) (message != NULL ? message : "");
        reply.status = &status;
        reply.payload.data = (uint8_t *) payload;
        reply.payload.len = payload_len;
        return rpc_pack(&reply.base, ret_len);
}
