/* seeds.c: fuzz-seeds, writes the seed corpora of fuzz-methods and fuzz-envelope.
 *
 * Usage: fuzz-seeds DIR   (DIR/fuzz-methods and DIR/fuzz-envelope must exist)
 *
 * The seeds follow the method table of fuzz_methods_all, so that they name the methods
 * they were made for. Each request is filled from its descriptor: every field set, ids and
 * counts to small positive values, amounts consistent (amount = total - discount), a gid
 * of the coordinator's form, a known cancel reason; each EventSink gets one event per
 * topic. The fuzz-conf seeds are plain text files, written by hand.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "event.pb-c.h"
#include "fuzz_host.h"
#include "product.pb-c.h"

/* Everything the filler allocates, freed at the end. */
static void **allocs;
static size_t n_allocs;

static void *
alloc(size_t n)
{
        void *p = rpc_xcalloc(1, n > 0 ? n : 1);

        allocs = rpc_xrealloc(allocs, (n_allocs + 1) * sizeof(*allocs));
        allocs[n_allocs++] = p;
        return p;
}

static const char *const topics[] = {
        "order.created",
        "order.cancelled",
        "order.completed",
        "stock.reserved",
        "stock.rejected",
        "stock.released",
        "balance.debited",
        "balance.rejected",
        "balance.refunded",
        "payment.captured",
        "payment.declined",
};

/* Variant 1: the smallest valid values; variant 2: others, a coupon, the last enum value. */
static int64_t
int_for(const char *name, int v)
{
        if (strcmp(name, "discount") == 0) {
                return 0;
        }
        if (strcmp(name, "coupon_id") == 0) {
                return v == 1 ? 0 : 3;
        }
        if (strcmp(name, "before_id") == 0 || strcmp(name, "after_id") == 0
            || strcmp(name, "page_size") == 0 || strcmp(name, "days") == 0
            || strcmp(name, "limit") == 0) {
                return v == 1 ? 0 : 5;
        }
        if (strcmp(name, "total") == 0 || strcmp(name, "amount") == 0
            || strcmp(name, "unit_price") == 0) {
                return v == 1 ? 10 : 70;
        }
        return v == 1 ? 1 : 7;
}

static const char *
string_for(const char *name)
{
        if (strcmp(name, "gid") == 0) {
                return "order:1:1";
        }
        if (strcmp(name, "reason") == 0) {
                return "out_of_stock";
        }
        if (strcmp(name, "prefix") == 0) {
                return "";
        }
        if (strcmp(name, "source") == 0) {
                return "order";
        }
        if (strcmp(name, "event_id") == 0) {
                return "e-1";
        }
        return "fuzz";
}

static void fill(ProtobufCMessage *msg, int v, int depth);

/* Sets one value of field f at p (a field or an element of a repeated one). */
static void
fill_value(const ProtobufCFieldDescriptor *f, void *p, int v, int depth)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                *(int32_t *) p = (int32_t) int_for(f->name, v);
                break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                *(uint32_t *) p = (uint32_t) int_for(f->name, v);
                break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                *(int64_t *) p = int_for(f->name, v);
                break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                *(uint64_t *) p = (uint64_t) int_for(f->name, v);
                break;
        case PROTOBUF_C_TYPE_BOOL:
                *(protobuf_c_boolean *) p = 1;
                break;
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumDescriptor *e = f->descriptor;
                unsigned idx = v == 1 ? 1 : e->n_values - 1;
                *(int *) p = e->values[idx < e->n_values ? idx : 0].value;
                break;
        }
        case PROTOBUF_C_TYPE_STRING:
                *(const char **) p = string_for(f->name);
                break;
        case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessageDescriptor *d = f->descriptor;
                ProtobufCMessage *sub = alloc(d->sizeof_message);
                protobuf_c_message_init(d, sub);
                fill(sub, v, depth + 1);
                *(ProtobufCMessage **) p = sub;
                break;
        }
        case PROTOBUF_C_TYPE_BYTES:
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_DOUBLE:
        default:
                break;
        }
}

static size_t
value_size(const ProtobufCFieldDescriptor *f)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
                return 8;
        case PROTOBUF_C_TYPE_STRING:
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(void *);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_BOOL:
                return sizeof(protobuf_c_boolean);
        default:
                return 4;
        }
}

static void
fill(ProtobufCMessage *msg, int v, int depth)
{
        const ProtobufCMessageDescriptor *d = msg->descriptor;
        char *base = (char *) msg;

        if (depth > 3) {
                return;
        }
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];

                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        void *arr = alloc(value_size(f));
                        fill_value(f, arr, v, depth);
                        *(size_t *) (base + f->quantifier_offset) = 1;
                        *(void **) (base + f->offset) = arr;
                } else {
                        fill_value(f, base + f->offset, v, depth);
                }
        }
}

static uint8_t *
filled(const ProtobufCMessageDescriptor *d, int v, size_t *ret_len)
{
        ProtobufCMessage *msg = alloc(d->sizeof_message);

        protobuf_c_message_init(d, msg);
        if (v > 0) {
                fill(msg, v, 0);
        }
        return rpc_pack(msg, ret_len);
}

static void
write_file(const char *dir, const char *name, const uint8_t *data, size_t len)
{
        char path[1024];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "wb");
        if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
                fprintf(stderr, "fuzz-seeds: cannot write %s: %s\n", path, strerror(errno));
                exit(1);
        }
}

/* A fuzz-methods input: method index, flags, payload, key, script (fuzz_methods.c). */
static void
write_method_seed(const char *dir, const char *name, size_t index, uint8_t flags,
    const uint8_t *payload, size_t payload_len, const char *key, const uint8_t *script,
    size_t script_len)
{
        size_t klen = key != NULL ? strlen(key) : 0;
        size_t len = 4 + payload_len + (key != NULL ? 1 + klen : 0) + script_len;
        uint8_t *buf = rpc_xmalloc(len);
        size_t pos = 0;

        buf[pos++] = (uint8_t) index;
        buf[pos++] = (uint8_t) (flags | (key != NULL ? 0x02 : 0));
        buf[pos++] = (uint8_t) (payload_len & 0xff);
        buf[pos++] = (uint8_t) (payload_len >> 8);
        if (payload_len > 0) {
                memcpy(buf + pos, payload, payload_len);
        }
        pos += payload_len;
        if (key != NULL) {
                buf[pos++] = (uint8_t) klen;
                memcpy(buf + pos, key, klen);
                pos += klen;
        }
        if (script_len > 0) {
                memcpy(buf + pos, script, script_len);
        }
        write_file(dir, name, buf, len);
        free(buf);
}

static const char *
short_name(const char *fullname)
{
        const char *slash = strrchr(fullname, '/');
        return slash != NULL ? slash + 1 : fullname;
}

static bool
is_standard(const char *fullname)
{
        return strncmp(fullname, "/mercato.rpc.v1.StandardService/", 32) == 0;
}

static void
methods_seeds(const char *dir)
{
        const fuzz_method *methods;
        size_t n = fuzz_methods_all(&methods);
        /* Every statement OK with no rows: the NOT_FOUND paths. */
        static const uint8_t no_rows[] = { 0, 0, 0, 0, 0, 0 };

        if (n > 256) {
                fprintf(stderr, "fuzz-seeds: %zu methods: more than one byte selects\n", n);
                exit(1);
        }
        for (size_t i = 0; i < n; i++) {
                const fuzz_method *m = &methods[i];
                const char *service = m->host->def->name;
                char name[256];
                size_t len;
                uint8_t *p;

                if (is_standard(m->name)) {
                        if (strcmp(service, "product") == 0) {
                                snprintf(name, sizeof(name), "%s-%s", service, short_name(m->name));
                                write_method_seed(dir, name, i, 0, NULL, 0, NULL, NULL, 0);
                        }
                        continue;
                }
                if (m->input == &mercato__event__v1__event__descriptor) {
                        for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++) {
                                Mercato__Event__V1__Event ev = MERCATO__EVENT__V1__EVENT__INIT;
                                bool completed = strcmp(topics[t], "order.completed") == 0;
                                size_t plen;
                                uint8_t *pl = filled(completed
                                        ? &mercato__event__v1__order_completed__descriptor
                                        : &mercato__event__v1__saga_order__descriptor,
                                    1, &plen);
                                ev.event_id = "e-1";
                                ev.topic = (char *) topics[t];
                                ev.aggregate_id = 1;
                                ev.payload.data = pl;
                                ev.payload.len = plen;
                                ev.created_at_ms = 1;
                                ev.source = "order";
                                p = rpc_pack(&ev.base, &len);
                                snprintf(name, sizeof(name), "%s-Deliver-%s", service, topics[t]);
                                write_method_seed(dir, name, i, 0, p, len, NULL, NULL, 0);
                                free(p);
                                free(pl);
                        }
                        continue;
                }
                p = filled(m->input, 1, &len);
                snprintf(name, sizeof(name), "%s-%s-1", service, short_name(m->name));
                write_method_seed(dir, name, i, 0, p, len, NULL, NULL, 0);
                free(p);
                /* Variant 2 keyed, on the monolith dataset, with statements finding nothing. */
                p = filled(m->input, 2, &len);
                snprintf(name, sizeof(name), "%s-%s-2", service, short_name(m->name));
                write_method_seed(dir, name, i, 0x01, p, len, "key-1", no_rows, sizeof(no_rows));
                free(p);
        }
}

static void
write_request(const char *dir, const char *name, const char *method, const uint8_t *payload,
    size_t payload_len, int64_t deadline, const char *key, bool monolith)
{
        Mercato__Rpc__V1__Request req = MERCATO__RPC__V1__REQUEST__INIT;
        Mercato__Rpc__V1__Request__MetadataEntry ds
            = MERCATO__RPC__V1__REQUEST__METADATA_ENTRY__INIT;
        Mercato__Rpc__V1__Request__MetadataEntry *md[] = { &ds };
        size_t len;
        uint8_t *frame;

        req.method = (char *) method;
        req.payload.data = (uint8_t *) payload;
        req.payload.len = payload_len;
        req.deadline_unix_ms = deadline;
        req.request_id = "r-1";
        req.trace_id = "t-1";
        req.idempotency_key = (char *) (key != NULL ? key : "");
        if (monolith) {
                ds.key = "dataset";
                ds.value = "monolith";
                req.metadata = md;
                req.n_metadata = 1;
        }
        frame = rpc_pack(&req.base, &len);
        write_file(dir, name, frame, len);
        free(frame);
}

static void
envelope_seeds(const char *dir)
{
        const fuzz_method *methods;
        size_t n = fuzz_methods_all(&methods);
        char name[256];
        size_t len;
        uint8_t *p;

        /* The product host's methods, the standard ones included. */
        for (size_t i = 0; i < n && strcmp(methods[i].host->def->name, "product") == 0; i++) {
                const fuzz_method *m = &methods[i];
                if (m->input == &mercato__event__v1__event__descriptor) {
                        continue;
                }
                p = filled(m->input, 1, &len);
                snprintf(name, sizeof(name), "request-%s", short_name(m->name));
                write_request(dir, name, m->name, p, len, 0, NULL, false);
                free(p);
        }
        p = filled(&mercato__product__v1__get_product_request__descriptor, 2, &len);
        write_request(dir, "request-GetProduct-metadata",
            "/mercato.product.v1.ProductService/GetProduct", p, len, INT64_C(4102444800000),
            "key-1", true);
        write_request(dir, "request-GetProduct-expired",
            "/mercato.product.v1.ProductService/GetProduct", p, len, 1, NULL, false);
        write_request(dir, "request-GetProduct-wrong-payload",
            "/mercato.product.v1.ProductService/ListProducts", (const uint8_t *) "\x52\x01x", 3, 0,
            NULL, false);
        free(p);
        write_request(dir, "request-unknown-method", "/mercato.none.v1.None/Nothing", NULL, 0, 0,
            NULL, false);
        write_request(dir, "request-bad-method", "Health", NULL, 0, 0, NULL, false);
        write_request(dir, "request-negative-deadline", "/mercato.rpc.v1.StandardService/Health",
            NULL, 0, -5, NULL, false);
        write_file(dir, "frame-empty", (const uint8_t *) "", 0);
        write_file(dir, "frame-truncated", (const uint8_t *) "\x0a\x30/mercato", 9);
        p = rpc_envelope_encode_reply(RPC_NOT_FOUND, "no product 7", NULL, 0, &len);
        write_file(dir, "reply-not-found", p, len);
        free(p);
}

int
main(int argc, char **argv)
{
        char dir[1024];

        if (argc != 2) {
                fprintf(stderr, "usage: fuzz-seeds DIR\n");
                return 2;
        }
        snprintf(dir, sizeof(dir), "%s/fuzz-methods", argv[1]);
        methods_seeds(dir);
        snprintf(dir, sizeof(dir), "%s/fuzz-envelope", argv[1]);
        envelope_seeds(dir);
        for (size_t i = 0; i < n_allocs; i++) {
                free(allocs[i]);
        }
        free(allocs);
        return 0;
}
