/* test_hostile.c: hostile input against a whole running cluster.
 *
 * A full cluster (product cart user payment dataplatform order) on fresh databases, seeded
 * with the code `mercato seed` runs and its check baseline recorded, is sent, in ROUNDS
 * identical rounds (the first ones warm the allocators up):
 *   - raw TCP connections writing random bytes, a wrong SP header, and an SP length header
 *     promising a huge frame then closing;
 *   - REQ frames of random bytes, valid envelopes cut at every length, frames at and above
 *     the receive limit, lengths that overflow, huge repeated and nested fields;
 *   - every method each service lists (ListMethods) with random bytes, a payload of another
 *     type and valid-looking payloads with negative, overflowing and unknown ids and
 *     amounts;
 * the requests of the last kind interleaved with good calls (GetProduct, GetBalance,
 * Health, PlaceOrder in each mode) from several threads. Then every good call must have
 * succeeded, every malformed one must have had a clear error (never OK where a payload
 * cannot be decoded or a mutating call is invalid, never a hang, never INTERNAL), every
 * service must be alive and answer Health, its memory must not have grown in the last
 * round beyond a bound, `mercato check --baseline` must pass once the cluster is quiet,
 * and the databases must hold exactly the good orders' effects.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cart.pb-c.h"
#include "dataplatform.pb-c.h"
#include "event.pb-c.h"
#include "modes_util.h"
#include "order.pb-c.h"
#include "payment.pb-c.h"
#include "product.pb-c.h"
#include "txn.pb-c.h"
#include "user.pb-c.h"

#define PRODUCTS 20
#define USERS 20
#define STOCK 1000000
#define BALANCE INT64_C(1000000000)
#define SEED 7

#define N_SVC 6
#define THREADS 4
#define MALFORMED_MIN 1000
#define GOOD_EVERY 8                /* a good call after every this many malformed requests */
#define ORDERS_PER_ROUND MU_N_MODES /* good orders per thread per round: one per mode */
#define CALL_MS 15000               /* a malformed request unanswered after this is a hang */
#define DROP_MS 1500                /* a frame nng drops: how long the client waits for nothing */
#define QUIET_MS 90000

/* The receive limits of the test's topology. cart, user, payment and dataplatform take
 * 64 KiB, so that frames of twice and a hundred times the limit stay cheap; product and
 * order take 4 MiB, so that a PlaceOrder of 100000 items and a payload of millions of
 * varints reach the decoder and the handlers instead of the transport's limit. */
#define SMALL_MAX 65536
#define BIG_MAX (4 * 1024 * 1024)

#define TOPOLOGY                                                                                   \
        "[defaults]\nrecv_max = 65536\n"                                                           \
        "[product]\nrecv_max = 4194304\n"                                                          \
        "[order]\nrecv_max = 4194304\n"

/* The rounds of identical abuse, and the bound on a service's heap growth over the last one.
 * Every request of a round is answered and freed before the round ends, and the cluster is
 * let go quiet before the heap is read, so a service that frees what it allocates ends a
 * round with the heap the round before left: the bytes malloc has handed out and not taken
 * back (Stats' heap_in_use_bytes). glibc counts its per-thread caches (tcache) as in use,
 * so the services run without them (GLIBC_TUNABLES, set before they start); ASan's count
 * is exact as it is. What still differs between readings is what is in flight (a relay
 * batch, a connection's buffers): seen at most 2 KiB. Each service takes 500-odd requests a
 * round, so 32 KiB catches state kept per request of more than about 64 bytes; smaller
 * leaks are LeakSanitizer's: under ASan every service must exit cleanly at the end. The
 * RSS is printed beside it, for the record only: glibc's arenas and ASan's never-unmapped
 * size-class caches grow it by tens to hundreds of MiB with no leak. */
#define HEAP_GROWTH_MAX (32 * 1024)
#define ROUNDS 3

static const char *const svc_names[N_SVC]
    = { "product", "cart", "user", "payment", "dataplatform", "order" };

static const svc_seed seed = {
        .products = PRODUCTS,
        .stock = STOCK,
        .users = USERS,
        .balance = BALANCE,
        .coupons = 2,
        .coupon_quantity = 10,
        .seed = SEED,
};

/* The service descriptors whose input types the test can encode, to turn the methods that
 * ListMethods names into typed payloads. A method whose input type is none of these fails
 * the test: add its service here. */
static const ProtobufCServiceDescriptor *const known_services[] = {
        &mercato__rpc__v1__standard_service__descriptor,
        &mercato__product__v1__product_service__descriptor,
        &mercato__cart__v1__cart_service__descriptor,
        &mercato__user__v1__user_service__descriptor,
        &mercato__order__v1__order_service__descriptor,
        &mercato__payment__v1__payment_service__descriptor,
        &mercato__dataplatform__v1__data_platform_service__descriptor,
        &mercato__event__v1__event_sink__descriptor,
        &mercato__txn__v1__participant__descriptor,
        &mercato__txn__v1__saga_participant__descriptor,
};

/*
 * Bytes
 */

typedef struct buf {
        uint8_t *p;
        size_t n, cap;
} buf;

static void
buf_put(buf *b, const void *data, size_t n)
{
        if (b->n + n > b->cap) {
                b->cap = (b->n + n) * 2 + 64;
                b->p = rpc_xrealloc(b->p, b->cap);
        }
        if (n > 0) {
                memcpy(b->p + b->n, data, n);
        }
        b->n += n;
}

static void
buf_byte(buf *b, uint8_t c)
{
        buf_put(b, &c, 1);
}

static void
buf_varint(buf *b, uint64_t v)
{
        while (v >= 0x80) {
                buf_byte(b, (uint8_t) (v | 0x80));
                v >>= 7;
        }
        buf_byte(b, (uint8_t) v);
}

static void
buf_tag(buf *b, uint32_t field, unsigned wire)
{
        buf_varint(b, ((uint64_t) field << 3) | wire);
}

/* A length-delimited field. */
static void
buf_ld(buf *b, uint32_t field, const void *data, size_t n)
{
        buf_tag(b, field, 2);
        buf_varint(b, n);
        buf_put(b, data, n);
}

static void
buf_str(buf *b, uint32_t field, const char *s)
{
        buf_ld(b, field, s, strlen(s));
}

static uint64_t rng_state = SEED;

static uint64_t
rnd(void)
{
        return rpc_rand_next(&rng_state);
}

static void
buf_random(buf *b, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                buf_byte(b, (uint8_t) rnd());
        }
}

/* Random bytes that no message decodes: the first tag has wire type 7, which does not
 * exist. */
static void
buf_random_invalid(buf *b, size_t n)
{
        buf_byte(b, (uint8_t) ((rnd() & 0x78) | 7));
        buf_random(b, n > 0 ? n - 1 : 0);
}

/* A request envelope: trace (may be NULL) first, then the payload, then the method, so that
 * no prefix of it is a whole request. */
static void
buf_envelope(buf *b, const char *method, const uint8_t *payload, size_t len, const char *trace)
{
        if (trace != NULL) {
                buf_str(b, 5, trace);
        }
        buf_ld(b, 2, payload, len);
        buf_str(b, 1, method);
}

/*
 * Valid-looking payloads of any type, from its descriptor
 */

static bool
is_id(const ProtobufCFieldDescriptor *f)
{
        size_t n = strlen(f->name);
        return strcmp(f->name, "id") == 0 || (n > 3 && strcmp(f->name + n - 3, "_id") == 0);
}

static bool
is_int(const ProtobufCFieldDescriptor *f)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_FIXED64:
                return true;
        default:
                return false;
        }
}

/* Whether a message (or one it holds) has an integer field that is not an id: an amount, a
 * quantity, a page size. Only then may a variant name real ids, since that field's bad
 * value makes the call invalid; a message of ids alone with real ids is a valid call. */
static bool
has_amount(const ProtobufCMessageDescriptor *d, int depth)
{
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                if (is_int(f) && !is_id(f)) {
                        return true;
                }
                if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth < 3
                    && has_amount(f->descriptor, depth + 1)) {
                        return true;
                }
        }
        return false;
}

#define N_VARIANTS 6

/* Variant v of a valid-looking message: ids unknown, negative, the most negative, zero or
 * (when an amount is bad too) real; amounts the extremes of int64; enums out of range;
 * strings empty, long, not UTF-8 or plain. */
static void
encode_variant(buf *b, const ProtobufCMessageDescriptor *d, int v, bool real_ids, int depth)
{
        static const int64_t ids[N_VARIANTS] = { INT64_C(1000000000007), -1, INT64_MIN, 0, 1, 1 };
        static const int64_t amounts[N_VARIANTS]
            = { INT64_MAX, -1, INT64_MIN, INT64_MAX, INT64_MIN, INT64_MAX };
        static const int64_t enums[N_VARIANTS] = { 99, -1, INT32_MIN, 0, 99, 2 };
        static const char *const strs[N_VARIANTS] = { "",
                ("hostile-hostile-hostile-hostile-hostile-hostile-hostile-hostile-hostile-"
                 "hostile-hostile-hostile-hostile-hostile-hostile-hostile-hostile-hostile-"),
                "\xc3\x28\xff\xfe", "hostile", "order.completed", "\x01\x02" };

        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                int copies = f->label == PROTOBUF_C_LABEL_REPEATED ? (v == 3 ? 0 : 1) : 1;

                for (int k = 0; k < copies; k++) {
                        int64_t x;
                        buf sub = { 0 };

                        if (is_int(f)) {
                                x = is_id(f) ? ids[v] : amounts[v];
                                if (is_id(f) && x == 1 && !real_ids) {
                                        x = ids[0];
                                }
                                if (f->type == PROTOBUF_C_TYPE_SINT32
                                    || f->type == PROTOBUF_C_TYPE_SINT64) {
                                        buf_tag(b, f->id, 0);
                                        buf_varint(b, ((uint64_t) x << 1) ^ (uint64_t) (x >> 63));
                                } else if (f->type == PROTOBUF_C_TYPE_FIXED32
                                    || f->type == PROTOBUF_C_TYPE_SFIXED32) {
                                        uint32_t le = (uint32_t) x;
                                        buf_tag(b, f->id, 5);
                                        buf_put(b, &le, 4);
                                } else if (f->type == PROTOBUF_C_TYPE_FIXED64
                                    || f->type == PROTOBUF_C_TYPE_SFIXED64) {
                                        buf_tag(b, f->id, 1);
                                        buf_put(b, &x, 8);
                                } else {
                                        buf_tag(b, f->id, 0);
                                        buf_varint(b, (uint64_t) x);
                                }
                                continue;
                        }
                        switch (f->type) {
                        case PROTOBUF_C_TYPE_BOOL:
                                buf_tag(b, f->id, 0);
                                buf_varint(b, (uint64_t) (v & 1));
                                break;
                        case PROTOBUF_C_TYPE_ENUM:
                                buf_tag(b, f->id, 0);
                                buf_varint(b, (uint64_t) enums[v]);
                                break;
                        case PROTOBUF_C_TYPE_FLOAT: {
                                float fl = -1e30f;
                                buf_tag(b, f->id, 5);
                                buf_put(b, &fl, 4);
                                break;
                        }
                        case PROTOBUF_C_TYPE_DOUBLE: {
                                double db = -1e300;
                                buf_tag(b, f->id, 1);
                                buf_put(b, &db, 8);
                                break;
                        }
                        case PROTOBUF_C_TYPE_STRING:
                                buf_str(b, f->id, strs[v]);
                                break;
                        case PROTOBUF_C_TYPE_BYTES:
                                buf_random_invalid(&sub, 16 + (size_t) v);
                                buf_ld(b, f->id, sub.p, sub.n);
                                break;
                        case PROTOBUF_C_TYPE_MESSAGE:
                                if (depth < 3) {
                                        encode_variant(&sub, f->descriptor, v, real_ids, depth + 1);
                                }
                                buf_ld(b, f->id, sub.p, sub.n);
                                break;
                        default:
                                break;
                        }
                        free(sub.p);
                }
        }
}

/*
 * The cluster, its methods and the outcomes
 */

typedef struct method {
        char name[160];
        int svc;
        bool idempotent;
        const ProtobufCMessageDescriptor *in;
} method;

static mu_cluster *mc;
static rpc_client *clients[N_SVC];
static method methods[128];
static int n_methods;
static char baseline[512];
static char *mercato_bin;

/* What a malformed request may get back. */
typedef enum expect {
        X_INVALID, /* exactly INVALID_ARGUMENT: the bytes do not decode */
        X_TOO_BIG, /* exactly RESOURCE_EXHAUSTED: above recv_max, up to twice it */
        X_DROPPED, /* no reply: above twice recv_max, nng drops the connection */
        X_ERROR,   /* a clear error, never OK: an invalid call of a mutating method */
        X_ANY,     /* a clear error, or OK: an idempotent method given odd values */
        X_HEALTHY, /* OK: the whole frame of a truncation series, a control */
} expect;

typedef struct hostile {
        int svc;
        uint8_t *frame;
        size_t len;
        expect x;
        char what[96];
} hostile;

typedef struct pool {
        hostile *v;
        size_t n, cap;
} pool;

static pool light; /* sent by the threads, between the good calls */
static pool heavy; /* sent one at a time: large frames and drops */

/* Outcomes, counted under one lock. */
#define ST_TIMEOUT (RPC_STATUS_MAX + 1) /* no reply in CALL_MS */
#define ST_DROPPED (RPC_STATUS_MAX + 2) /* no reply, as expected */
#define N_ST (RPC_STATUS_MAX + 3)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t status_counts[N_ST];
static uint64_t malformed_sent, malformed_bad;
static uint64_t good_sent, good_ok;
static int64_t good_orders[MU_N_MODES];
static uint64_t raw_conns, raw_closed_by_peer;

static const char *
st_name(int st)
{
        if (st == ST_TIMEOUT) {
                return "NO_REPLY(hang)";
        }
        if (st == ST_DROPPED) {
                return "NO_REPLY(dropped)";
        }
        return rpc_status_name((rpc_status) st);
}

static void pool_add(pool *p, int svc, buf *b, expect x, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
pool_add(pool *p, int svc, buf *b, expect x, const char *fmt, ...)
{
        va_list ap;
        hostile *h;

        if (p->n == p->cap) {
                p->cap = p->cap * 2 + 64;
                p->v = rpc_xrealloc(p->v, p->cap * sizeof(*p->v));
        }
        h = &p->v[p->n++];
        h->svc = svc;
        h->frame = b->p;
        h->len = b->n;
        h->x = x;
        va_start(ap, fmt);
        vsnprintf(h->what, sizeof(h->what), fmt, ap);
        va_end(ap);
        b->p = NULL;
        b->n = b->cap = 0;
}

static bool
acceptable_error(int st)
{
        switch (st) {
        case RPC_INVALID_ARGUMENT:
        case RPC_NOT_FOUND:
        case RPC_ALREADY_EXISTS:
        case RPC_RESOURCE_EXHAUSTED:
        case RPC_FAILED_PRECONDITION:
        case RPC_OUT_OF_RANGE:
        case RPC_UNIMPLEMENTED:
                return true;
        default:
                return false;
        }
}

static bool
as_expected(expect x, int st)
{
        switch (x) {
        case X_INVALID:
                return st == RPC_INVALID_ARGUMENT;
        case X_TOO_BIG:
                return st == RPC_RESOURCE_EXHAUSTED;
        case X_DROPPED:
                return st == ST_DROPPED;
        case X_ERROR:
                return acceptable_error(st);
        case X_ANY:
                return st == RPC_OK || acceptable_error(st);
        case X_HEALTHY:
                return st == RPC_OK;
        }
        return false;
}

static bool raw_frame(int svc, const uint8_t *frame, size_t len, int wait_ms);

/* Sends one hostile frame and records what came back. */
static void
send_hostile(const hostile *h)
{
        rpc_client *cl = clients[h->svc];
        uint8_t *reply = NULL;
        size_t rlen = 0;
        rpc_status st;
        int code;

        if (h->x == X_DROPPED) {
                /* Over a raw SP connection of its own, not an nng client: nng 1.5.2 can hang
                 * for good in nng_close on a REQ socket whose peer closed the pipe while its
                 * dialer reconnects (nanomsg/nng#1543, fixed after 1.5.2). What is tested is
                 * the service's side: it drops the frame and the connection. */
                st = raw_frame(h->svc, h->frame, h->len, DROP_MS) ? RPC_UNAVAILABLE : RPC_OK;
        } else {
                st = rpc_client_send_frame(cl, h->frame, h->len, CALL_MS, &reply, &rlen);
        }
        if (st != RPC_OK) {
                /* No reply: the transport gave up. */
                code = h->x == X_DROPPED ? ST_DROPPED : ST_TIMEOUT;
        } else {
                Mercato__Rpc__V1__Reply *rep = NULL;
                char err[256];
                if (rpc_envelope_decode_reply(reply, rlen, SIZE_MAX, &rep, err, sizeof(err))
                    != RPC_OK) {
                        fail_msg("%s: %s: the reply does not decode: %s", svc_names[h->svc],
                            h->what, err);
                }
                code = rep->status != NULL ? (int) rpc_status_from_wire(rep->status->code) : 0;
                if (!as_expected(h->x, code)) {
                        fprintf(stderr, "hostile: %s %s -> %s: %s\n", svc_names[h->svc], h->what,
                            st_name(code),
                            rep->status != NULL ? rep->status->message : "(no status)");
                }
                protobuf_c_message_free_unpacked(&rep->base, NULL);
        }
        free(reply);
        pthread_mutex_lock(&mu);
        status_counts[code]++;
        if (h->x != X_HEALTHY) {
                malformed_sent++;
        }
        if (!as_expected(h->x, code)) {
                malformed_bad++;
                if (code == ST_TIMEOUT) {
                        fprintf(stderr, "hostile: %s %s -> no reply (hang)\n", svc_names[h->svc],
                            h->what);
                }
        }
        pthread_mutex_unlock(&mu);
}

/*
 * Building the hostile requests
 */

static const char *
svc_of(int svc)
{
        return svc_names[svc];
}

static size_t
recv_max_of(int svc)
{
        return strcmp(svc_of(svc), "product") == 0 || strcmp(svc_of(svc), "order") == 0 ? BIG_MAX
                                                                                        : SMALL_MAX;
}

static int
svc_index(const char *name)
{
        for (int i = 0; i < N_SVC; i++) {
                if (strcmp(svc_names[i], name) == 0) {
                        return i;
                }
        }
        fail_msg("no service %s", name);
        return -1;
}

/* A method's payload: INVALID_ARGUMENT if it does not decode as its input type, else a
 * clear error or, for an idempotent method, OK too. */
static expect
classify(const method *m, const uint8_t *p, size_t n)
{
        ProtobufCMessage *msg = NULL;
        char err[256];

        if (rpc_payload_unpack(m->in, p, n, &msg, err, sizeof(err)) != RPC_OK) {
                return X_INVALID;
        }
        protobuf_c_message_free_unpacked(msg, NULL);
        return m->idempotent ? X_ANY : X_ERROR;
}

static void
add_method_call(pool *p, const method *m, const uint8_t *payload, size_t n, const char *what)
{
        buf b = { 0 };

        buf_envelope(&b, m->name, payload, n, NULL);
        pool_add(p, m->svc, &b, classify(m, payload, n), "%s %s", strrchr(m->name, '/') + 1, what);
}

/* Every method listed: random bytes, another type's payload, valid-looking variants. */
static void
build_method_garbage(void)
{
        for (int i = 0; i < n_methods; i++) {
                const method *m = &methods[i];
                const method *other = &methods[(i + 1) % n_methods];
                buf b = { 0 };

                buf_random_invalid(&b, 24);
                add_method_call(&light, m, b.p, b.n, "random bytes (24)");
                b.n = 0;
                buf_random(&b, 512);
                add_method_call(&light, m, b.p, b.n, "random bytes (512)");
                for (int v = 0; v < N_VARIANTS; v++) {
                        char what[64];
                        b.n = 0;
                        encode_variant(&b, m->in, v, has_amount(m->in, 0), 0);
                        snprintf(what, sizeof(what), "valid-looking variant %d", v);
                        add_method_call(&light, m, b.p, b.n, what);
                        b.n = 0;
                        encode_variant(&b, other->in, v, false, 0);
                        snprintf(what, sizeof(what), "a %s, variant %d", other->in->short_name, v);
                        add_method_call(&light, m, b.p, b.n, what);
                }
                /* An unknown field of each wire type after a valid-looking message. */
                b.n = 0;
                encode_variant(&b, m->in, 0, false, 0);
                buf_tag(&b, 1999, 0);
                buf_varint(&b, 1);
                buf_tag(&b, 2000, 1);
                buf_put(&b, "\0\0\0\0\0\0\0\0", 8);
                buf_str(&b, 2001, "junk");
                buf_tag(&b, 2002, 5);
                buf_put(&b, "\0\0\0\0", 4);
                add_method_call(&light, m, b.p, b.n, "unknown fields");
                free(b.p);
        }
}

/* Envelope-level garbage to every service. */
static void
build_envelope_garbage(void)
{
        static const uint8_t overflow[][11] = {
                /* payload (field 2) whose length is 2^64 - 1, 2^35 - 1 and 2^32 + 3 */
                { 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 },
                { 0x12, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x61, 0x62, 0x63, 0x64, 0x65 },
                { 0x12, 0x83, 0x80, 0x80, 0x80, 0x10, 0x61, 0x62, 0x63, 0x64, 0x65 },
        };

        for (int s = 0; s < N_SVC; s++) {
                buf b = { 0 };
                buf_random_invalid(&b, 1);
                pool_add(&light, s, &b, X_INVALID, "envelope: 1 random byte");
                for (int k = 0; k < 4; k++) {
                        buf_random(&b, (size_t) 64 << (2 * k));
                        pool_add(
                            &light, s, &b, X_INVALID, "envelope: %d random bytes", 64 << (2 * k));
                }
                buf_str(&b, 1, "not a method");
                pool_add(&light, s, &b, X_INVALID, "envelope: a method name without slashes");
                buf_str(&b, 1, "/mercato.nothing.v1.Nothing/Nothing");
                pool_add(&light, s, &b, X_ERROR, "envelope: an unknown method");
                buf_str(&b, 1, "/mercato.rpc.v1.StandardService/Health");
                buf_tag(&b, 3, 0);
                buf_varint(&b, (uint64_t) -5);
                pool_add(&light, s, &b, X_INVALID, "envelope: a negative deadline");
                for (size_t k = 0; k < sizeof(overflow) / sizeof(overflow[0]); k++) {
                        buf_put(&b, overflow[k], sizeof(overflow[k]));
                        buf_str(&b, 1, "/mercato.rpc.v1.StandardService/Health");
                        pool_add(&light, s, &b, X_INVALID, "envelope: length overflow %zu", k);
                }
                /* Inside a valid envelope, a payload whose one field's length overflows. */
                buf_envelope(&b, "/mercato.rpc.v1.StandardService/Health", overflow[0] + 0,
                    sizeof(overflow[0]), NULL);
                pool_add(&light, s, &b, X_INVALID, "payload: length overflow");
                free(b.p);
        }
}

/* A valid Health envelope (the trace first, the method last) cut at every length: every cut
 * is INVALID_ARGUMENT, the whole frame is OK. Traces of 10, 200 and 20000 bytes give length
 * prefixes of one, two and three bytes; the longest is cut around its boundaries only. */
static void
build_truncations(void)
{
        static const size_t trace_lens[] = { 10, 200, 20000 };

        for (int s = 0; s < N_SVC; s++) {
                for (size_t t = 0; t < sizeof(trace_lens) / sizeof(trace_lens[0]); t++) {
                        char *trace = rpc_xcalloc(1, trace_lens[t] + 1);
                        buf whole = { 0 };

                        memset(trace, 't', trace_lens[t]);
                        buf_envelope(&whole, "/mercato.rpc.v1.StandardService/Health",
                            (const uint8_t *) "", 0, trace);
                        for (size_t cut = 0; cut < whole.n; cut++) {
                                buf b = { 0 };
                                if (whole.n > 1000 && cut > 8 && cut < whole.n - 64
                                    && cut % 4999 != 0) {
                                        continue;
                                }
                                buf_put(&b, whole.p, cut);
                                pool_add(&light, s, &b, X_INVALID,
                                    "Health envelope (%zu) cut at %zu", whole.n, cut);
                        }
                        pool_add(&light, s, &whole, X_HEALTHY, "Health envelope (trace %zu), whole",
                            trace_lens[t]);
                        free(trace);
                }
        }
        /* GetProduct with a product id of six varint bytes, its payload cut inside. */
        for (size_t cut = 1; cut < 7; cut++) {
                buf p = { 0 }, b = { 0 };
                buf_tag(&p, 1, 0);
                buf_varint(&p, INT64_C(1000000000007));
                buf_envelope(&b, "/mercato.product.v1.ProductService/GetProduct", p.p, cut, NULL);
                pool_add(&light, svc_index("product"), &b, X_INVALID,
                    "GetProduct payload cut at %zu", cut);
                free(p.p);
        }
}

/* Frames at and above the receive limits, and huge repeated or nested fields. */
static void
build_heavy(void)
{
        for (int s = 0; s < N_SVC; s++) {
                size_t max = recv_max_of(s);
                buf b = { 0 };

                if (max != SMALL_MAX) {
                        continue;
                }
                /* Exactly the limit: decodes, and the padding is an unknown field. */
                buf_str(&b, 1, "/mercato.rpc.v1.StandardService/Health");
                buf_tag(&b, 1000, 2);
                buf_varint(&b, max - b.n - 3); /* a three-byte length */
                buf_random(&b, max - b.n);
                pool_add(&heavy, s, &b, X_INVALID, "envelope of exactly recv_max, unknown field");
                buf_random(&b, max + 1);
                pool_add(&heavy, s, &b, X_TOO_BIG, "recv_max + 1 bytes");
                /* nng's limit is twice recv_max on the wire, where REQ adds a 4-byte id. */
                buf_random(&b, 2 * max - 4);
                pool_add(&heavy, s, &b, X_TOO_BIG, "2 x recv_max - 4 bytes");
                buf_random(&b, 2 * max);
                pool_add(&heavy, s, &b, X_DROPPED, "2 x recv_max bytes");
                buf_random(&b, 100 * max);
                pool_add(&heavy, s, &b, X_DROPPED, "100 x recv_max bytes");
        }

        int order = svc_index("order"), product = svc_index("product");
        buf p = { 0 }, b = { 0 }, line = { 0 };

        /* PlaceOrder with 100000 items (1..100 allowed). */
        buf_tag(&p, 1, 0);
        buf_varint(&p, 1);
        for (int i = 0; i < 100000; i++) {
                buf item = { 0 };
                buf_tag(&item, 1, 0);
                buf_varint(&item, (uint64_t) (1 + i % PRODUCTS));
                buf_tag(&item, 2, 0);
                buf_varint(&item, 1);
                buf_ld(&p, 2, item.p, item.n);
                free(item.p);
        }
        buf_envelope(&b, MU_ORDER "PlaceOrder", p.p, p.n, NULL);
        pool_add(&heavy, order, &b, X_INVALID, "PlaceOrder with 100000 items");

        /* PlaceOrder with a million empty items: two bytes each, just under the limit. */
        p.n = 0;
        buf_tag(&p, 1, 0);
        buf_varint(&p, 1);
        while (p.n < BIG_MAX - 256) {
                buf_byte(&p, 0x12);
                buf_byte(&p, 0);
        }
        buf_envelope(&b, MU_ORDER "PlaceOrder", p.p, p.n, NULL);
        pool_add(&heavy, order, &b, X_INVALID, "PlaceOrder with %zu empty items", p.n / 2);

        /* ListProducts with millions of unknown varint fields, just under the limit. */
        p.n = 0;
        while (p.n < BIG_MAX - 256) {
                buf_byte(&p, 0x78); /* field 15, varint */
                buf_byte(&p, (uint8_t) (rnd() & 0x7f));
        }
        buf_envelope(&b, "/mercato.product.v1.ProductService/ListProducts", p.p, p.n, NULL);
        pool_add(&heavy, product, &b, X_INVALID, "ListProducts with %zu unknown varints", p.n / 2);

        /* PriceItems with millions of items, just under the limit. */
        p.n = 0;
        while (p.n < BIG_MAX - 256) {
                buf_byte(&p, 0x0a);
                buf_byte(&p, 0);
        }
        buf_envelope(&b, "/mercato.product.v1.ProductService/PriceItems", p.p, p.n, NULL);
        pool_add(&heavy, product, &b, X_INVALID, "PriceItems with %zu empty items", p.n / 2);

        /* ListProducts with junk unknown fields of every wire type. */
        p.n = 0;
        for (uint32_t f = 100; f < 2100; f++) {
                switch (f % 4) {
                case 0:
                        buf_tag(&p, f, 0);
                        buf_varint(&p, rnd());
                        break;
                case 1:
                        buf_tag(&p, f, 1);
                        buf_random(&p, 8);
                        break;
                case 2:
                        buf_tag(&p, f, 2);
                        buf_varint(&p, 8);
                        buf_random(&p, 8);
                        break;
                default:
                        buf_tag(&p, f, 5);
                        buf_random(&p, 4);
                        break;
                }
        }
        buf_envelope(&b, "/mercato.product.v1.ProductService/ListProducts", p.p, p.n, NULL);
        pool_add(&light, product, &b, X_INVALID, "ListProducts with 2000 junk unknown fields");

        /* The whole envelope made of millions of unknown varints. */
        p.n = 0;
        buf_str(&p, 1, MU_ORDER "GetOrder");
        while (p.n < BIG_MAX - 16) {
                buf_byte(&p, 0x78);
                buf_byte(&p, 1);
        }
        pool_add(&heavy, order, &p, X_INVALID, "envelope of millions of unknown varints");

        /* Events whose payload nests: a line holding a line holding a line ... 2000 deep
         * (unknown field 4 of Line); a payload of 5000 lines; an Event inside the Event. */
        for (int depth = 0; depth < 2000; depth++) {
                buf outer = { 0 };
                buf_ld(&outer, 4, line.p, line.n);
                free(line.p);
                line = outer;
        }
        for (int s = 0; s < N_SVC; s++) {
                static const char *const topics[] = { "order.completed", "order.created",
                        "stock.reserved", "payment.captured", "order.cancelled" };
                for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++) {
                        buf ev = { 0 };
                        /* Nested payload. */
                        p.n = 0;
                        buf_tag(&p, 1, 0);
                        buf_varint(&p, (uint64_t) -7);
                        buf_tag(&p, 2, 0);
                        buf_varint(&p, (uint64_t) -1);
                        buf_ld(&p, 4, line.p, line.n);
                        buf_str(&ev, 1, "hostile-nested");
                        buf_str(&ev, 2, topics[t]);
                        buf_tag(&ev, 3, 0);
                        buf_varint(&ev, 7);
                        buf_ld(&ev, 4, p.p, p.n);
                        buf_envelope(&b, "/mercato.event.v1.EventSink/Deliver", ev.p, ev.n, NULL);
                        pool_add(&light, s, &b, X_ERROR, "Deliver %s, payload nested 2000 deep",
                            topics[t]);
                        /* 5000 lines of a valid-looking product. */
                        p.n = 0;
                        buf_tag(&p, 1, 0);
                        buf_varint(&p, (uint64_t) -7);
                        buf_tag(&p, 2, 0);
                        buf_varint(&p, (uint64_t) -1);
                        for (int i = 0; i < 5000; i++) {
                                buf_byte(&p, 0x3a); /* SagaOrder.items; OrderCompleted's is 4 */
                                buf_byte(&p, 4);
                                buf_byte(&p, 0x08);
                                buf_byte(&p, 1);
                                buf_byte(&p, 0x10);
                                buf_byte(&p, 1);
                        }
                        ev.n = 0;
                        buf_str(&ev, 1, "hostile-lines");
                        buf_str(&ev, 2, topics[t]);
                        buf_ld(&ev, 4, p.p, p.n);
                        buf_envelope(&b, "/mercato.event.v1.EventSink/Deliver", ev.p, ev.n, NULL);
                        pool_add(&light, s, &b, X_ERROR, "Deliver %s, 5000 lines", topics[t]);
                        /* An Event as the payload of an Event. */
                        buf inner = { 0 };
                        buf_put(&inner, ev.p, ev.n < 200 ? ev.n : 200);
                        ev.n = 0;
                        buf_str(&ev, 1, "hostile-event-in-event");
                        buf_str(&ev, 2, topics[t]);
                        buf_ld(&ev, 4, inner.p, inner.n);
                        buf_envelope(&b, "/mercato.event.v1.EventSink/Deliver", ev.p, ev.n, NULL);
                        pool_add(&light, s, &b, X_ERROR, "Deliver %s, an event inside", topics[t]);
                        free(inner.p);
                        free(ev.p);
                }
        }
        free(line.p);
        free(p.p);
        free(b.p);
}

/*
 * Raw TCP
 */

static int
port_of(const char *address)
{
        const char *colon = strrchr(address, ':');
        return colon != NULL ? atoi(colon + 1) : -1;
}

/* Connects to a service's port, writes bytes, waits up to wait_ms for the peer to close,
 * and closes. */
static void
raw_send(int svc, const uint8_t *bytes, size_t len, int wait_ms)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        bool closed = false;
        struct pollfd pfd;
        int64_t end;

        assert_true(fd >= 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) port_of(harness_cluster_address(mc->hc, svc_of(svc))));
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        for (size_t off = 0; off < len;) {
                ssize_t n = send(fd, bytes + off, len - off, MSG_NOSIGNAL);
                if (n <= 0) {
                        closed = true; /* the peer closed while we wrote */
                        break;
                }
                off += (size_t) n;
        }
        end = mu_now_ms() + wait_ms;
        while (!closed && mu_now_ms() < end) {
                uint8_t sink[256];
                pfd.fd = fd;
                pfd.events = POLLIN;
                if (poll(&pfd, 1, (int) (end - mu_now_ms())) <= 0) {
                        break;
                }
                ssize_t n = recv(fd, sink, sizeof(sink), 0);
                if (n <= 0) {
                        closed = true;
                }
        }
        close(fd);
        pthread_mutex_lock(&mu);
        raw_conns++;
        raw_closed_by_peer += closed ? 1 : 0;
        pthread_mutex_unlock(&mu);
}

/* Sends one REQ frame (an SP header, the length, a request id, the frame) over a raw TCP
 * connection and waits up to wait_ms. True if the service closed the connection without
 * a reply: it dropped the frame. */
static bool
raw_frame(int svc, const uint8_t *frame, size_t len, int wait_ms)
{
        static const uint8_t req_hdr[8] = { 0, 'S', 'P', 0, 0, 48, 0, 0 };
        struct sockaddr_in sa = { .sin_family = AF_INET };
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        uint8_t head[8 + 8 + 4];
        uint64_t body = (uint64_t) len + 4;
        size_t got = 0;
        bool closed = false;
        int64_t end;

        assert_true(fd >= 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) port_of(harness_cluster_address(mc->hc, svc_of(svc))));
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        memcpy(head, req_hdr, 8);
        for (int i = 0; i < 8; i++) {
                head[8 + i] = (uint8_t) (body >> (56 - 8 * i));
        }
        head[16] = 0x80, head[17] = 0, head[18] = 0, head[19] = 1; /* request id 1 */
        const struct {
                const uint8_t *p;
                size_t n;
        } parts[2] = { { head, sizeof(head) }, { frame, len } };
        for (int k = 0; k < 2 && !closed; k++) {
                for (size_t off = 0; off < parts[k].n;) {
                        ssize_t n = send(fd, parts[k].p + off, parts[k].n - off, MSG_NOSIGNAL);
                        if (n <= 0) {
                                closed = true; /* the peer closed while we wrote */
                                break;
                        }
                        off += (size_t) n;
                }
        }
        /* The peer's own SP header (8 bytes) comes first; anything after it is a reply. */
        end = mu_now_ms() + wait_ms;
        while (!closed && mu_now_ms() < end) {
                uint8_t sink[256];
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                if (poll(&pfd, 1, (int) (end - mu_now_ms())) <= 0) {
                        break;
                }
                ssize_t n = recv(fd, sink, sizeof(sink), 0);
                if (n <= 0) {
                        closed = true;
                } else {
                        got += (size_t) n;
                }
        }
        close(fd);
        return got <= 8;
}

static void *
raw_thread(void *arg)
{
        int svc = (int) (intptr_t) arg;
        uint64_t st = (uint64_t) svc * 7919 + 1;
        /* The SP header of a REQ peer (protocol 48), and of a PUB peer (protocol 32). */
        static const uint8_t req_hdr[8] = { 0, 'S', 'P', 0, 0, 48, 0, 0 };
        static const uint8_t pub_hdr[8] = { 0, 'S', 'P', 0, 0, 32, 0, 0 };
        uint8_t junk[8 + 8 + 4096];
        size_t n;

        for (size_t i = 0; i < sizeof(junk); i++) {
                junk[i] = (uint8_t) rpc_rand_next(&st);
        }
        /* Random bytes, short and long. */
        raw_send(svc, junk, 7, 200);
        raw_send(svc, junk, sizeof(junk), 200);
        /* A wrong protocol. */
        raw_send(svc, pub_hdr, sizeof(pub_hdr), 200);
        /* A valid header, then random bytes. */
        memcpy(junk, req_hdr, 8);
        raw_send(svc, junk, sizeof(junk), 200);
        /* A valid header, then a length of 2^62 and nothing. */
        memset(junk + 8, 0, 8);
        junk[8] = 0x40;
        raw_send(svc, junk, 16, 200);
        /* A valid header, then a length above recv_max but below twice it, part of the
         * body, and a close. */
        n = recv_max_of(svc) + 1000;
        for (int i = 0; i < 8; i++) {
                junk[8 + i] = (uint8_t) (n >> (56 - 8 * i));
        }
        raw_send(svc, junk, sizeof(junk), 0);
        /* A valid header, a small frame without the REQ id header. */
        memset(junk + 8, 0, 8);
        junk[15] = 3;
        junk[16] = 'a';
        junk[17] = 'b';
        junk[18] = 'c';
        raw_send(svc, junk, 19, 200);
        return NULL;
}

/*
 * Good calls
 */

/* One good call; true when it succeeded, else its status goes to stderr. */
static bool
good_read(rpc_client *cl, const char *name, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *out, int64_t id)
{
        rpc_call_opts opts = { .timeout_ms = 30000, .no_retry = true };
        ProtobufCMessage *resp = NULL;
        rpc_error err = { 0 };
        rpc_status st;

        st = rpc_client_call(cl, name, req, out, &resp, &opts, &err);
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        if (st != RPC_OK) {
                fprintf(stderr, "good %s %lld: %s %s\n", name, (long long) id, rpc_status_name(st),
                    err.message);
        }
        return st == RPC_OK;
}

static bool
good_get_product(rpc_client *cl, int64_t id)
{
        Mercato__Product__V1__GetProductRequest req
            = MERCATO__PRODUCT__V1__GET_PRODUCT_REQUEST__INIT;

        req.product_id = id;
        return good_read(cl, "/mercato.product.v1.ProductService/GetProduct", &req.base,
            &mercato__product__v1__get_product_response__descriptor, id);
}

static bool
good_get_balance(rpc_client *cl, int64_t id)
{
        Mercato__User__V1__GetBalanceRequest req = MERCATO__USER__V1__GET_BALANCE_REQUEST__INIT;

        req.user_id = id;
        return good_read(
            cl, MU_USER "GetBalance", &req.base, &mercato__user__v1__balance__descriptor, id);
}

static bool
good_health(rpc_client *cl)
{
        Mercato__Rpc__V1__HealthRequest req = MERCATO__RPC__V1__HEALTH_REQUEST__INIT;
        rpc_call_opts opts = { .timeout_ms = 30000, .no_retry = true };
        Mercato__Rpc__V1__HealthResponse *resp = NULL;
        rpc_status st;
        bool ok;

        st = rpc_client_call(cl, "/mercato.rpc.v1.StandardService/Health", &req.base,
            &mercato__rpc__v1__health_response__descriptor, (ProtobufCMessage **) &resp, &opts,
            NULL);
        ok = st == RPC_OK && strcmp(resp->status, "SERVING") == 0;
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        return ok;
}

static bool
good_order(Mercato__Order__V1__Mode mode, int64_t user, int64_t product)
{
        mu_item item = { product, 1 };
        mu_result r;

        mu_place(mc->order, mode, user, &item, 1, 0, 60000, &r);
        if (r.st == RPC_OK && r.status == MU_PENDING) {
                mu_wait_terminal(mc->order, mode, r.order_id, 60000, &r);
        }
        if (r.st != RPC_OK || r.status != MU_COMPLETED) {
                fprintf(stderr, "good PlaceOrder (%s) user %lld: %s %s status %d %s\n",
                    mu_mode_name(mode), (long long) user, rpc_status_name(r.st), r.msg, r.status,
                    r.reason);
                return false;
        }
        return true;
}

static void
count_good(bool ok)
{
        pthread_mutex_lock(&mu);
        good_sent++;
        good_ok += ok ? 1 : 0;
        pthread_mutex_unlock(&mu);
}

/* One good call of each kind, by turn; an order of the next mode every few turns. */
static void
good_call(int thread, int turn, int *orders_left)
{
        int64_t id = 1 + (thread * 7 + turn) % PRODUCTS;
        rpc_client *product = clients[svc_index("product")];
        rpc_client *user = clients[svc_index("user")];

        switch (turn % 4) {
        case 0:
                count_good(good_get_product(product, id));
                break;
        case 1:
                count_good(good_get_balance(user, 1 + (thread + turn) % USERS));
                break;
        case 2:
                count_good(good_health(clients[turn % N_SVC]));
                break;
        default:
                if (*orders_left > 0) {
                        int k = ORDERS_PER_ROUND - *orders_left;
                        Mercato__Order__V1__Mode mode = mu_modes[k % MU_N_MODES];
                        bool ok = good_order(mode, 1 + thread, id);
                        count_good(ok);
                        pthread_mutex_lock(&mu);
                        good_orders[k % MU_N_MODES] += ok ? 1 : 0;
                        pthread_mutex_unlock(&mu);
                        (*orders_left)--;
                } else {
                        count_good(good_get_product(product, id));
                }
                break;
        }
}

static void *
mixed_thread(void *arg)
{
        int t = (int) (intptr_t) arg;
        int sent = 0, turn = 0, orders_left = ORDERS_PER_ROUND;

        for (size_t i = (size_t) t; i < light.n; i += THREADS) {
                send_hostile(&light.v[i]);
                if (++sent % GOOD_EVERY == 0) {
                        good_call(t, turn++, &orders_left);
                }
        }
        /* The orders not placed yet (a short share of the pool). */
        while (orders_left > 0) {
                turn += (3 - turn % 4 + 4) % 4;
                good_call(t, turn++, &orders_left);
        }
        return NULL;
}

/*
 * Memory and processes
 */

static long
rss_kb(pid_t pid)
{
        char path[64], line[256];
        long kb = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "r");
        if (f == NULL) {
                return -1;
        }
        while (fgets(line, sizeof(line), f) != NULL) {
                if (strncmp(line, "VmRSS:", 6) == 0) {
                        kb = strtol(line + 6, NULL, 10);
                }
        }
        fclose(f);
        return kb;
}

/* The service's heap in use, from its Stats. */
static uint64_t
heap_in_use(int svc)
{
        Mercato__Rpc__V1__StatsRequest req = MERCATO__RPC__V1__STATS_REQUEST__INIT;
        Mercato__Rpc__V1__StatsResponse *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = 10000 };
        uint64_t bytes;

        assert_int_equal(rpc_client_call(clients[svc], "/mercato.rpc.v1.StandardService/Stats",
                             &req.base, &mercato__rpc__v1__stats_response__descriptor,
                             (ProtobufCMessage **) &resp, &opts, NULL),
            RPC_OK);
        bytes = resp->heap_in_use_bytes;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        assert_true(bytes > 0);
        return bytes;
}

static void
assert_all_alive(const char *when)
{
        for (int s = 0; s < N_SVC; s++) {
                if (!harness_cluster_alive(mc->hc, svc_names[s])) {
                        fail_msg("%s: %s is not running (see its log %s.%s.log)", when,
                            svc_names[s], mc->hc->conf_path, svc_names[s]);
                }
                if (!good_health(clients[s])) {
                        fail_msg("%s: %s does not answer Health", when, svc_names[s]);
                }
        }
}

/* Sends the large frames; the second sender leaves out the dropped ones, whose clients of
 * their own are opened and closed one at a time. */
static void *
heavy_thread(void *arg)
{
        bool second = arg != NULL;

        for (size_t i = 0; i < heavy.n; i++) {
                if (!second || heavy.v[i].x != X_DROPPED) {
                        send_hostile(&heavy.v[i]);
                }
        }
        return NULL;
}

/* One round: raw TCP, the heavy frames one by one, then the light pool from THREADS
 * threads with good calls in between. */
static void
run_round(int round)
{
        pthread_t th[N_SVC > THREADS ? N_SVC : THREADS];
        int64_t start = mu_now_ms();

        for (int s = 0; s < N_SVC; s++) {
                assert_int_equal(
                    pthread_create(&th[s], NULL, raw_thread, (void *) (intptr_t) s), 0);
        }
        for (int s = 0; s < N_SVC; s++) {
                pthread_join(th[s], NULL);
        }
        assert_all_alive("after raw TCP");
        /* Two senders, as the topology gives each service two workers: both workers see
         * every large frame in the warm-up round, so their allocator caches are grown. */
        for (int t = 0; t < 2; t++) {
                assert_int_equal(
                    pthread_create(&th[t], NULL, heavy_thread, (void *) (intptr_t) t), 0);
        }
        for (int t = 0; t < 2; t++) {
                pthread_join(th[t], NULL);
        }
        assert_all_alive("after the large frames");
        for (int t = 0; t < THREADS; t++) {
                assert_int_equal(
                    pthread_create(&th[t], NULL, mixed_thread, (void *) (intptr_t) t), 0);
        }
        for (int t = 0; t < THREADS; t++) {
                pthread_join(th[t], NULL);
        }
        assert_all_alive("after the mixed requests");
        fprintf(
            stderr, "hostile: round %d took %lld ms\n", round, (long long) (mu_now_ms() - start));
}

/*
 * The test
 */

static int run_mercato(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs `mercato --conf CONF ARGS`, its output on stderr; returns its exit status. */
static int
run_mercato(const char *fmt, ...)
{
        char args[1024], cmd[2048];
        va_list ap;
        int status;

        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        snprintf(cmd, sizeof(cmd), "%s --conf %s %s 1>&2", mercato_bin, mc->hc->conf_path, args);
        status = system(cmd);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
discover_methods(void)
{
        for (int s = 0; s < N_SVC; s++) {
                Mercato__Rpc__V1__ListMethodsRequest req
                    = MERCATO__RPC__V1__LIST_METHODS_REQUEST__INIT;
                Mercato__Rpc__V1__ListMethodsResponse *resp = NULL;
                rpc_call_opts opts = { .timeout_ms = 10000 };

                assert_int_equal(
                    rpc_client_call(clients[s], "/mercato.rpc.v1.StandardService/ListMethods",
                        &req.base, &mercato__rpc__v1__list_methods_response__descriptor,
                        (ProtobufCMessage **) &resp, &opts, NULL),
                    RPC_OK);
                for (size_t i = 0; i < resp->n_methods; i++) {
                        const Mercato__Rpc__V1__MethodInfo *mi = resp->methods[i];
                        method *m = &methods[n_methods];
                        assert_true(n_methods < (int) (sizeof(methods) / sizeof(methods[0])));
                        snprintf(m->name, sizeof(m->name), "%s", mi->name);
                        m->svc = s;
                        m->idempotent = mi->idempotent;
                        for (size_t k = 0; k < sizeof(known_services) / sizeof(known_services[0]);
                             k++) {
                                const ProtobufCServiceDescriptor *d = known_services[k];
                                for (unsigned j = 0; j < d->n_methods; j++) {
                                        if (strcmp(d->methods[j].input->name, mi->input_type)
                                            == 0) {
                                                m->in = d->methods[j].input;
                                        }
                                }
                        }
                        if (m->in == NULL) {
                                fail_msg("%s %s: input type %s is not one this test can encode",
                                    svc_names[s], mi->name, mi->input_type);
                        }
                        n_methods++;
                }
                fprintf(stderr, "hostile: %s lists %zu methods\n", svc_names[s], resp->n_methods);
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
}

static int
setup(void **state)
{
        char opts[512];
        const char *asan = getenv("ASAN_OPTIONS");

        /* Keeps the services' RSS under ASan within reach of the machine: they inherit it. */
        snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=8", asan != NULL ? asan : "",
            asan != NULL && asan[0] != '\0' ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
        /* See HEAP_GROWTH_MAX: glibc's per-thread caches count as in use; without them the
         * heap figure is exact. */
        setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
        mercato_bin = harness_build_path("services/mercato/mercato");
        mc = mu_cluster_start(TOPOLOGY, &seed);
        for (int s = 0; s < N_SVC; s++) {
                clients[s] = mu_client(mc->hc, svc_names[s]);
        }
        snprintf(baseline, sizeof(baseline), "%s.baseline.json", mc->hc->conf_path);
        if (run_mercato("check --record-baseline %s", baseline) != 0) {
                fprintf(stderr, "mercato check --record-baseline failed\n");
                return -1;
        }
        return 0;
}

static int
teardown(void **state)
{
        for (int s = 0; s < N_SVC; s++) {
                rpc_client_free(clients[s]);
        }
        remove(baseline);
        mu_cluster_free(mc);
        for (size_t i = 0; i < light.n; i++) {
                free(light.v[i].frame);
        }
        for (size_t i = 0; i < heavy.n; i++) {
                free(heavy.v[i].frame);
        }
        free(light.v);
        free(heavy.v);
        free(mercato_bin);
        return 0;
}

static int64_t
count_rows(const char *service, mu_dataset ds, const char *sql)
{
        return mu_i64f(mu_db(mc->hc, ds, service), "%s", sql);
}

static void
test_hostile_input(void **state)
{
        long rss[ROUNDS][N_SVC];
        uint64_t heap[ROUNDS][N_SVC];
        int64_t charges[2], coupons[2];
        int64_t split_orders, mono_orders;

        for (int d = 0; d < 2; d++) {
                charges[d] = count_rows(
                    "user", (mu_dataset) d, "SELECT count(*) FROM ledger WHERE kind = 'charge'");
                coupons[d] = count_rows("user", (mu_dataset) d, "SELECT sum(issued) FROM coupons");
        }
        discover_methods();
        build_method_garbage();
        build_envelope_garbage();
        build_truncations();
        build_heavy();
        fprintf(stderr, "hostile: %d methods, %zu light and %zu heavy requests a round\n",
            n_methods, light.n, heavy.n);

        for (int round = 0; round < ROUNDS; round++) {
                run_round(round + 1);
                assert_true(mu_wait_quiet(mc->hc, MU_SPLIT, QUIET_MS));
                assert_true(mu_wait_quiet(mc->hc, MU_MONOLITH, QUIET_MS));
                for (int s = 0; s < N_SVC; s++) {
                        rss[round][s] = rss_kb(mc->hc->pids[s]);
                        assert_true(rss[round][s] > 0);
                        heap[round][s] = heap_in_use(s);
                }
        }

        /* The outcomes. */
        fprintf(stderr, "hostile: statuses of %llu malformed requests (and %d whole frames):\n",
            (unsigned long long) malformed_sent, ROUNDS * N_SVC * 3);
        for (int st = 0; st < N_ST; st++) {
                if (status_counts[st] > 0) {
                        fprintf(stderr, "  %-22s %llu\n", st_name(st),
                            (unsigned long long) status_counts[st]);
                }
        }
        fprintf(stderr, "hostile: raw TCP connections %llu, %llu closed by the service\n",
            (unsigned long long) raw_conns, (unsigned long long) raw_closed_by_peer);
        fprintf(stderr,
            "hostile: good calls %llu of %llu succeeded; orders saga %lld 2pc %lld"
            " monolith %lld orchestration %lld\n",
            (unsigned long long) good_ok, (unsigned long long) good_sent,
            (long long) good_orders[0], (long long) good_orders[1], (long long) good_orders[2],
            (long long) good_orders[3]);
        assert_true(light.n >= MALFORMED_MIN);
        assert_true(malformed_sent >= ROUNDS * MALFORMED_MIN);
        assert_int_equal(malformed_bad, 0);
        assert_int_equal(status_counts[ST_TIMEOUT], 0);
        assert_int_equal(good_ok, good_sent);
        assert_true(good_sent >= ROUNDS * (light.n / GOOD_EVERY - THREADS));
        for (int k = 0; k < MU_N_MODES; k++) {
                assert_int_equal(good_orders[k], ROUNDS * THREADS * ORDERS_PER_ROUND / MU_N_MODES);
        }

        /* Alive, answering, and not growing. */
        assert_all_alive("at the end");
        for (int s = 0; s < N_SVC; s++) {
                fprintf(stderr, "hostile: %-12s after each round: heap in use (kB)", svc_names[s]);
                for (int round = 0; round < ROUNDS; round++) {
                        fprintf(stderr, " %llu", (unsigned long long) heap[round][s] / 1024);
                }
                fprintf(stderr, "; VmRSS (kB)");
                for (int round = 0; round < ROUNDS; round++) {
                        fprintf(stderr, " %ld", rss[round][s]);
                }
                fprintf(stderr, "\n");
        }
        for (int s = 0; s < N_SVC; s++) {
                int64_t growth = (int64_t) heap[ROUNDS - 1][s] - (int64_t) heap[ROUNDS - 2][s];
                if (growth > HEAP_GROWTH_MAX) {
                        fail_msg("%s's heap grew by %lld bytes in the last round (bound %d)",
                            svc_names[s], (long long) growth, HEAP_GROWTH_MAX);
                }
        }

        /* Quiet, consistent, and holding the good orders' effects alone. */
        assert_true(mu_wait_quiet(mc->hc, MU_SPLIT, QUIET_MS));
        assert_true(mu_wait_quiet(mc->hc, MU_MONOLITH, QUIET_MS));
        assert_int_equal(run_mercato("check --baseline %s", baseline), 0);
        split_orders = 0;
        mono_orders = 0;
        for (int k = 0; k < MU_N_MODES; k++) {
                if (mu_dataset_of(mu_modes[k]) == MU_MONOLITH) {
                        mono_orders += good_orders[k];
                } else {
                        split_orders += good_orders[k];
                }
        }
        for (int d = 0; d < 2; d++) {
                mu_dataset ds = (mu_dataset) d;
                int64_t want = ds == MU_SPLIT ? split_orders : mono_orders;
                assert_int_equal(count_rows("order", ds, "SELECT count(*) FROM orders"), want);
                assert_int_equal(count_rows("order", ds,
                                     "SELECT count(*) FROM orders WHERE status = 'COMPLETED'"),
                    want);
                assert_int_equal(count_rows("payment", ds, "SELECT count(*) FROM payments"), want);
                assert_int_equal(
                    count_rows("dataplatform", ds, "SELECT count(*) FROM received_orders"), want);
                assert_int_equal(count_rows("product", ds,
                                     "SELECT count(*) FROM reservations"
                                     " WHERE status <> 'sold'"),
                    0);
                assert_int_equal(count_rows("cart", ds, "SELECT count(*) FROM cart_items"), 0);
                assert_int_equal(count_rows("user", ds, "SELECT count(*) FROM user_coupons"), 0);
                assert_int_equal(
                    count_rows("user", ds, "SELECT sum(issued) FROM coupons"), coupons[d]);
                assert_int_equal(
                    count_rows("user", ds, "SELECT count(*) FROM ledger WHERE kind = 'charge'"),
                    charges[d]);
                assert_int_equal(
                    count_rows("user", ds, "SELECT count(*) FROM ledger WHERE kind = 'debit'"),
                    want);
        }

        /* Every service stops cleanly: under ASan, a leak or an error shows in its status. */
        for (int s = N_SVC - 1; s >= 0; s--) {
                int status = harness_cluster_stop(mc->hc, svc_names[s]);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fail_msg("%s did not exit cleanly: status %#x (see %s.%s.log)",
                            svc_names[s], status, mc->hc->conf_path, svc_names[s]);
                }
        }
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hostile_input),
        };

        return cmocka_run_group_tests_name("hostile", tests, setup, teardown);
}
