/* rpc.h: mercato's gRPC-style RPC runtime over nng req/rep, with protobuf-c envelopes. */
#ifndef MERCATO_RPC_H
#define MERCATO_RPC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <protobuf-c/protobuf-c.h>

#include "rpc.pb-c.h"

#define RPC_WARN_UNUSED __attribute__((warn_unused_result))

/*
 * Status
 *
 * The one status enum of the project. The values are gRPC's codes, so the mapping to and
 * from the wire is checked, not translated.
 */
typedef enum rpc_status {
        RPC_OK = 0,                  /* success */
        RPC_CANCELLED = 1,           /* the caller gave up */
        RPC_UNKNOWN = 2,             /* an error with no better code */
        RPC_INVALID_ARGUMENT = 3,    /* the request is malformed or a field is invalid */
        RPC_DEADLINE_EXCEEDED = 4,   /* the deadline passed before an answer */
        RPC_NOT_FOUND = 5,           /* an id names nothing */
        RPC_ALREADY_EXISTS = 6,      /* a unique key is taken */
        RPC_PERMISSION_DENIED = 7,   /* not allowed */
        RPC_RESOURCE_EXHAUSTED = 8,  /* too big, or out of a limited resource */
        RPC_FAILED_PRECONDITION = 9, /* the state does not allow it (stock, balance, ...) */
        RPC_ABORTED = 10,            /* a concurrency conflict; retrying may succeed */
        RPC_OUT_OF_RANGE = 11,       /* a value past its range, e.g. an int64 overflow */
        RPC_UNIMPLEMENTED = 12,      /* no such method */
        RPC_INTERNAL = 13,           /* a bug, or an invariant broke */
        RPC_UNAVAILABLE = 14,        /* the peer or its database cannot be reached now */
        RPC_DATA_LOSS = 15,          /* unrecoverable loss */
        RPC_UNAUTHENTICATED = 16,    /* no credentials */
        RPC_STATUS_MAX = 16,         /* the highest wire code */
        RPC_DEFERRED = 100,          /* handler only: the reply comes later, see rpc_call_finish */
} rpc_status;

/* Returns the code's upper-case gRPC name ("NOT_FOUND"), or "UNKNOWN" for a value outside
 * the enum. The string is static. */
const char *rpc_status_name(rpc_status st);

/* Parses a gRPC code name, case-insensitive. Returns false for an unknown name, and leaves
 * *ret_st unset. */
bool rpc_status_from_name(const char *name, rpc_status *ret_st);

/* Maps a code read off the wire to a status. A code outside gRPC's range is UNKNOWN. */
rpc_status rpc_status_from_wire(int32_t code);

/* True for the statuses that a retry may cure: UNAVAILABLE, DEADLINE_EXCEEDED (of one
 * attempt) and ABORTED. RESOURCE_EXHAUSTED is not: an oversized request stays oversized. */
bool rpc_status_retryable(rpc_status st);

/*
 * Memory
 *
 * These abort on out-of-memory: a service that cannot allocate cannot answer honestly.
 */
void *rpc_xmalloc(size_t n);
void *rpc_xcalloc(size_t count, size_t n);
void *rpc_xrealloc(void *p, size_t n);
char *rpc_xstrdup(const char *s);

/* Milliseconds since the Unix epoch, and monotonic milliseconds and microseconds. */
int64_t rpc_now_unix_ms(void);
int64_t rpc_now_mono_ms(void);
int64_t rpc_now_mono_us(void);

/* Cleanup helpers, in the style of systemd's _cleanup_. */
#define RPC_CLEANUP(fn) __attribute__((cleanup(fn)))
static inline void
rpc_freep(void *p)
{
        free(*(void **) p);
}
#define RPC_TAKE_PTR(p)                                                                            \
        ({                                                                                         \
                __typeof__(p) _p_ = (p);                                                           \
                (p) = NULL;                                                                        \
                _p_;                                                                               \
        })

/* Frees an unpacked protobuf-c message held in a ProtobufCMessage * variable. */
static inline void
rpc_pb_freep(void *p)
{
        ProtobufCMessage **m = p;
        if (*m != NULL) {
                protobuf_c_message_free_unpacked(*m, NULL);
        }
}
#define RPC_PB_CLEANUP RPC_CLEANUP(rpc_pb_freep)

/*
 * Envelope
 *
 * The request and reply as they cross the wire. Decoding is strict: a truncated or garbled
 * buffer, an unknown field, or a frame larger than max_size is refused with a status and a
 * message, never a crash.
 */

/* Decodes a request envelope. On success *ret_req owns the unpacked message (free it with
 * protobuf_c_message_free_unpacked). On failure returns INVALID_ARGUMENT or
 * RESOURCE_EXHAUSTED and writes the reason into errbuf. */
rpc_status rpc_envelope_decode_request(const uint8_t *buf, size_t len, size_t max_size,
    Mercato__Rpc__V1__Request **ret_req, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Decodes a reply envelope. The same rules as for a request. */
rpc_status rpc_envelope_decode_reply(const uint8_t *buf, size_t len, size_t max_size,
    Mercato__Rpc__V1__Reply **ret_reply, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Unpacks a payload as the message type desc, strictly: unknown fields are refused, since
 * they mean the payload is of another type. Returns INVALID_ARGUMENT with the reason. */
rpc_status rpc_payload_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
    size_t len, ProtobufCMessage **ret_msg, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Packs a message into a fresh buffer that the caller frees. */
uint8_t *rpc_pack(const ProtobufCMessage *msg, size_t *ret_len);

/* Packs a reply envelope with the given status, message (may be NULL) and payload. */
uint8_t *rpc_envelope_encode_reply(rpc_status st, const char *message, const uint8_t *payload,
    size_t payload_len, size_t *ret_len);

/*
 * Deadlines, backoff and the circuit breaker: small pure pieces the client is built from.
 */

/* True if an absolute deadline (Unix ms, 0 = none) has passed at now_unix_ms. */
bool rpc_deadline_expired(int64_t deadline_unix_ms, int64_t now_unix_ms);

/* Milliseconds left before the deadline, clamped at 0; INT64_MAX when there is none. */
int64_t rpc_deadline_remaining_ms(int64_t deadline_unix_ms, int64_t now_unix_ms);

/* The delay before retry number `attempt` (1 for the first retry): exponential from
 * initial_ms, capped at max_ms, with "full jitter" drawn from *rng_state. The result lies
 * in [0, min(max_ms, initial_ms * 2^(attempt-1))]. */
int64_t rpc_backoff_ms(int attempt, int64_t initial_ms, int64_t max_ms, uint64_t *rng_state);

/* A splitmix64 step: a fast, seedable generator for jitter and fault decisions. */
uint64_t rpc_rand_next(uint64_t *state);

typedef enum rpc_breaker_state {
        RPC_BREAKER_CLOSED = 0,    /* calls flow; failures are counted */
        RPC_BREAKER_OPEN = 1,      /* calls fail fast until the cool-down ends */
        RPC_BREAKER_HALF_OPEN = 2, /* one probe call is let through */
} rpc_breaker_state;

typedef struct rpc_breaker {
        rpc_breaker_state state;
        int failures;         /* consecutive failures while closed */
        int threshold;        /* failures that open the breaker */
        int64_t cooldown_ms;  /* how long it stays open */
        int64_t opened_at_ms; /* monotonic */
        bool probe_in_flight; /* half-open: the one probe is out */
        uint64_t rejected;    /* calls refused while open */
        uint64_t opens;       /* times it went from closed or half-open to open */
} rpc_breaker;

/* Initializes a closed breaker. Not thread-safe by itself; the client locks around it. */
void rpc_breaker_init(rpc_breaker *b, int threshold, int64_t cooldown_ms);

/* Returns true if a call may go out at now_ms. In the half-open state it lets exactly one
 * probe through until that probe is recorded. */
bool rpc_breaker_allow(rpc_breaker *b, int64_t now_ms);

/* Records the outcome of a call that was allowed. A failure is a transport-level failure
 * (UNAVAILABLE or DEADLINE_EXCEEDED), not an application error. */
void rpc_breaker_record(rpc_breaker *b, bool success, int64_t now_ms);

/*
 * Fault rules
 *
 * Rules injected at the server, per method, for tests and the chaos suite. A spec is a list
 * of rules separated by ';':
 *
 *     PATTERN ACTION PROBABILITY [ARG]      (fields separated by spaces or ':')
 *
 * PATTERN is an fnmatch(3) glob over the full method name. ACTION is one of
 *     drop        swallow the request; the caller sees a deadline
 *     delay       hold the request ARG milliseconds before handling it
 *     duplicate   handle the request ARG more times (default 1), as a resend would
 *     fail        reply with the status named by ARG (default UNAVAILABLE), unhandled
 * The first rule that matches and fires decides. A rule fires for the n-th request that it
 * matches if hash(seed, rule, n) < PROBABILITY, so a seed gives the same decisions for the
 * same sequence of requests, whatever the threads do.
 */
typedef enum rpc_fault_action {
        RPC_FAULT_NONE = 0,      /* no rule fired */
        RPC_FAULT_DROP = 1,      /* no reply */
        RPC_FAULT_DELAY = 2,     /* reply late */
        RPC_FAULT_DUPLICATE = 3, /* run the handler more than once */
        RPC_FAULT_FAIL = 4,      /* reply with an error status */
} rpc_fault_action;

typedef struct rpc_fault_decision {
        rpc_fault_action action;
        int64_t arg;       /* delay ms, or extra copies */
        rpc_status status; /* for FAIL */
        int rule;          /* index of the rule that fired, -1 for none */
} rpc_fault_decision;

typedef struct rpc_faults rpc_faults;

/* Parses a spec. An empty or NULL spec gives a valid set with no rules. On a syntax error
 * returns INVALID_ARGUMENT and explains it in errbuf. */
rpc_status rpc_faults_parse(const char *spec, uint64_t seed, rpc_faults **ret_faults, char *errbuf,
    size_t errlen) RPC_WARN_UNUSED;

/* Decides the fault for one request to method. Thread-safe. */
rpc_fault_decision rpc_faults_decide(rpc_faults *f, const char *method);

/* The number of rules, and how often each has fired. */
size_t rpc_faults_count(const rpc_faults *f);
uint64_t rpc_faults_fired(const rpc_faults *f);

void rpc_faults_free(rpc_faults *f);

/*
 * Server
 */
typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

/* A handler receives its unpacked request and a response message that the runtime has
 * allocated and initialized; it fills the response and returns a status. Anything it hangs
 * off the response must come from rpc_call_alloc/rpc_call_strdup, which is freed with the
 * call. To reply later, it returns RPC_DEFERRED and someone calls rpc_call_finish. */
typedef rpc_status (*rpc_handler_fn)(
    rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp);

enum {
        RPC_METHOD_IDEMPOTENT = 1 << 0, /* safe to retry without an idempotency key */
        RPC_METHOD_INLINE = 1 << 1,     /* never blocks: may run on nng's I/O callback
                                           instead of a worker (no worker state then) */
        RPC_METHOD_RELEASE = 1 << 2,    /* ends work that holds locks (COMMIT PREPARED):
                                           runs ahead of the queue, and on the reserved
                                           workers too, so that calls waiting on those
                                           locks can never take every worker from it */
};

typedef struct rpc_method {
        const char *name;                         /* the method's short name, "GetProduct" */
        rpc_handler_fn handler;                   /* never NULL */
        const ProtobufCMessageDescriptor *input;  /* checked against the service descriptor */
        const ProtobufCMessageDescriptor *output; /* checked against the service descriptor */
        unsigned flags;                           /* RPC_METHOD_* */
} rpc_method;

/* Declares a typed handler `static rpc_status fn(rpc_call *, const Req *, Resp *)` and the
 * untyped trampoline the method table holds. Use RPC_METHOD_ENTRY to list it. */
#define RPC_HANDLER(fn, Req, Resp)                                                                 \
        static rpc_status fn##_typed(rpc_call *call __attribute__((unused)),                       \
            const Req *req __attribute__((unused)), Resp *resp);                                   \
        static rpc_status fn(rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage *resp)  \
        {                                                                                          \
                return fn##_typed(call, (const Req *) req, (Resp *) resp);                         \
        }                                                                                          \
        static rpc_status fn##_typed(rpc_call *call __attribute__((unused)),                       \
            const Req *req __attribute__((unused)), Resp *resp)

#define RPC_METHOD_ENTRY(method, fn, in_desc, out_desc, fl)                                        \
        {                                                                                          \
                .name = (method), .handler = (fn), .input = &(in_desc), .output = &(out_desc),     \
                .flags = (fl),                                                                     \
        }

typedef struct rpc_server_opts {
        const char *name; /* the service's name, reported by Health */
        int workers;      /* threads that run handlers; 0 means 4 */
        int contexts;     /* nng REP contexts: requests in flight, deferred included;
                                    0 means 8 x workers */
        int reserved;     /* extra threads that run only RPC_METHOD_RELEASE calls; 0 means
                             2 when a registered method has the flag, -1 means none */
        size_t recv_max;  /* largest request accepted, bytes; 0 means 1 MiB */
        void *(*worker_init)(void *arg, int index); /* per-worker state, e.g. a connection */
        void (*worker_fini)(void *arg, void *state);
        void *arg;          /* passed to worker_init and worker_fini */
        rpc_faults *faults; /* borrowed; may be NULL */
        int64_t drain_ms;   /* how long stop waits for calls in flight; 0 means 10 s */
} rpc_server_opts;

/* Creates a server with the standard service (Health, ListMethods, Stats) registered. */
rpc_status rpc_server_new(const rpc_server_opts *opts, rpc_server **ret_srv) RPC_WARN_UNUSED;

/* Registers a service. Every method of the descriptor must have exactly one entry whose
 * input and output types match the descriptor's; otherwise returns INVALID_ARGUMENT and
 * says which method is wrong in errbuf. Call before rpc_server_start. */
rpc_status rpc_server_add_service(rpc_server *srv, const ProtobufCServiceDescriptor *desc,
    const rpc_method *methods, size_t n_methods, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Listens on an nng URL (tcp://, ipc://, inproc://). May be called more than once. */
rpc_status rpc_server_listen(
    rpc_server *srv, const char *url, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Starts the workers and the receiving contexts. */
rpc_status rpc_server_start(rpc_server *srv) RPC_WARN_UNUSED;

/* Stops gracefully: new requests get UNAVAILABLE, calls in flight finish (up to drain_ms),
 * then the socket closes and the workers end. Idempotent. */
void rpc_server_stop(rpc_server *srv);

/* Stops the server if needed and frees it. Accepts NULL. */
void rpc_server_free(rpc_server *srv);

/* The number of calls currently in flight, deferred ones included. */
int rpc_server_inflight(rpc_server *srv);

/* Per-call accessors. Strings are owned by the call and valid until it finishes. */
void *rpc_call_worker(rpc_call *call); /* the worker's state; NULL once deferred */
const char *rpc_call_method(const rpc_call *call);
const char *rpc_call_request_id(const rpc_call *call);
const char *rpc_call_trace_id(const rpc_call *call);
const char *rpc_call_idempotency_key(const rpc_call *call);           /* "" if none */
const char *rpc_call_metadata(const rpc_call *call, const char *key); /* NULL if absent */
int64_t rpc_call_deadline_unix_ms(const rpc_call *call);              /* 0 if none */
bool rpc_call_is_duplicate(const rpc_call *call); /* a copy made by a duplicate fault rule */

/* Memory that lives as long as the call. Aborts on out-of-memory. */
void *rpc_call_alloc(rpc_call *call, size_t n);
char *rpc_call_strdup(rpc_call *call, const char *s);

/* Sets the message that goes with a non-OK status. */
void rpc_call_set_message(rpc_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns the status after setting the message: `return rpc_call_error(call, RPC_NOT_FOUND,
 * "no product %lld", id);` */
rpc_status rpc_call_error(rpc_call *call, rpc_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The response message of a call, for a deferred reply to fill. */
ProtobufCMessage *rpc_call_response(rpc_call *call);

/* Finishes a call whose handler returned RPC_DEFERRED. Safe from any thread, exactly once
 * per deferred call. The call is freed. */
void rpc_call_finish(rpc_call *call, rpc_status st);

/*
 * Client
 */
typedef struct rpc_client rpc_client;

typedef struct rpc_client_opts {
        int64_t timeout_ms;          /* per call, when the call names none; 0 means 5000 */
        size_t recv_max;             /* largest reply accepted; 0 means 4 MiB */
        int max_attempts;            /* for retryable calls; 0 means 4 */
        int64_t backoff_initial_ms;  /* 0 means 20 */
        int64_t backoff_max_ms;      /* 0 means 1000 */
        int breaker_threshold;       /* consecutive failures that open it; 0 means 8 */
        int64_t breaker_cooldown_ms; /* 0 means 1000 */
        int64_t resend_ms;           /* nng's REQ resend time; 0 means never: retries are
                                        ours, so that only retryable calls are resent */
        uint64_t seed;               /* for jitter; 0 means from the clock */
} rpc_client_opts;

typedef struct rpc_call_opts {
        int64_t timeout_ms;          /* 0: the client's default */
        int64_t deadline_unix_ms;    /* if set, the absolute deadline (propagated); wins */
        bool idempotent;             /* may be retried */
        const char *idempotency_key; /* may be retried; handlers deduplicate on it */
        int64_t attempt_timeout_ms;  /* 0: an attempt may use all the time left; else each
                                        attempt gives up after this, so that a lost request
                                        is retried within the deadline */
        const char *trace_id;        /* NULL: a fresh one */
        const char *const *metadata; /* key, value, key, value, ..., NULL */
        bool no_retry;               /* one attempt, whatever else is set */
} rpc_call_opts;

typedef struct rpc_error {
        rpc_status code;
        int attempts;   /* how many times the request went out */
        bool transport; /* no reply came: the peer was not reached, did not answer in time,
                           or its breaker is open; false when the server answered */
        char message[256];
} rpc_error;

/* Opens a client for one peer. The connection is made in the background and kept; the
 * client is safe to use from many threads at once. */
rpc_status rpc_client_open(
    const char *url, const rpc_client_opts *opts, rpc_client **ret_client) RPC_WARN_UNUSED;

/* Closes and frees. Accepts NULL. */
void rpc_client_free(rpc_client *c);

/* Calls a method with raw payload bytes. On OK, *ret_payload (malloc'd, may be NULL for an
 * empty reply) and *ret_len hold the reply payload. On failure err (may be NULL) says why. */
rpc_status rpc_client_call_raw(rpc_client *c, const char *method, const uint8_t *payload,
    size_t len, const rpc_call_opts *opts, uint8_t **ret_payload, size_t *ret_len,
    rpc_error *err) RPC_WARN_UNUSED;

/* Calls a method with typed messages. On OK, *ret_resp owns the unpacked reply. */
rpc_status rpc_client_call(rpc_client *c, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp,
    const rpc_call_opts *opts, rpc_error *err) RPC_WARN_UNUSED;

/* Opens a client for url, calls Health once (no retry, timeout_ms), and closes it: RPC_OK
 * when the server answered. */
rpc_status rpc_health_once(const char *url, int64_t timeout_ms) RPC_WARN_UNUSED;

/* Calls Health once on an open client (no retry, timeout_ms): RPC_OK when it answered.
 * For start-up waits (the test harness, mercato-bench), which keep one client across
 * their tries and close it only once it answered: nng 1.5.2 leaks its dialer's and pipe's
 * objects when a socket closes while a connection is still being negotiated, which a
 * client per try does whenever a try times out during the server's start-up. */
rpc_status rpc_health_call(rpc_client *c, int64_t timeout_ms) RPC_WARN_UNUSED;

/* Sends raw bytes as a whole request frame and returns the raw reply frame: for tests of
 * hostile input. */
rpc_status rpc_client_send_frame(rpc_client *c, const uint8_t *frame, size_t len,
    int64_t timeout_ms, uint8_t **ret_frame, size_t *ret_len) RPC_WARN_UNUSED;

/* The breaker's state, for Stats and tests. */
rpc_breaker_state rpc_client_breaker_state(rpc_client *c);

/* What one open client of this process has seen of its peer, as Stats reports it. */
typedef struct rpc_peer_stats {
        char url[256];
        rpc_breaker_state breaker;
        int consecutive_failures; /* peer failures since the last success */
        uint64_t opens;           /* times the breaker opened */
        uint64_t rejected;        /* calls the open breaker refused */
        uint64_t attempts;        /* requests that went out, retries included */
        uint64_t peer_failures;   /* attempts that ended UNAVAILABLE or DEADLINE_EXCEEDED */
} rpc_peer_stats;

/* Fills out[0..max) with the clients that are open in this process, oldest first, and
 * returns how many there are (which may exceed max). Thread-safe. */
size_t rpc_client_peers(rpc_peer_stats *out, size_t max);

/* The breaker state's name as Stats prints it: "closed", "open" or "half_open". */
const char *rpc_breaker_state_name(rpc_breaker_state st);

/* The full method name "/pkg.Service/Method" for a service descriptor and method index,
 * in a static-lifetime buffer owned by the caller. */
void rpc_method_fullname(
    const ProtobufCServiceDescriptor *svc, unsigned index, char *buf, size_t len);

/*
 * Topology and configuration
 *
 * One INI-style file names each service's address and database, and settings:
 *
 *     # comment
 *     [defaults]
 *     workers = 4
 *     [product]
 *     address = tcp://127.0.0.1:7101
 *     db = host=127.0.0.1 port=54329 dbname=mercato_product user=mercato
 *
 * A key missing from a section is looked up in [defaults]. Flags override with
 * rpc_conf_set. Values may hold spaces; leading and trailing spaces are trimmed.
 */
typedef struct rpc_conf rpc_conf;

/* Parses text. On a syntax error returns INVALID_ARGUMENT with the line in errbuf. */
rpc_status rpc_conf_parse(
    const char *text, size_t len, rpc_conf **ret_conf, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Reads and parses a file. NOT_FOUND if it cannot be read. */
rpc_status rpc_conf_load(
    const char *path, rpc_conf **ret_conf, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* An empty configuration. */
rpc_conf *rpc_conf_new(void);

/* The value of section.key, else defaults.key, else NULL. Owned by the conf. */
const char *rpc_conf_get(const rpc_conf *conf, const char *section, const char *key);

/* The same, parsed as an integer; def when missing or not an integer. */
int64_t rpc_conf_get_int(const rpc_conf *conf, const char *section, const char *key, int64_t def);

/* Sets (or replaces) section.key. */
void rpc_conf_set(rpc_conf *conf, const char *section, const char *key, const char *value);

/* Applies an override written "section.key=value". INVALID_ARGUMENT if malformed. */
rpc_status rpc_conf_set_arg(rpc_conf *conf, const char *arg) RPC_WARN_UNUSED;

/* The section names, in file order; for tools that walk every service. */
size_t rpc_conf_sections(const rpc_conf *conf, const char ***ret_names);

void rpc_conf_free(rpc_conf *conf);

/* The topology file to read when none is given: $MERCATO_CONF, else deploy/local.conf. */
const char *rpc_conf_default_path(void);

#endif
