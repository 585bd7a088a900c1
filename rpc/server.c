/* server.c: the RPC server: nng REP contexts feeding a worker pool, dispatch, deferred replies.
 *
 * NOTES
 *
 * Each nng REP context is a small state machine, as in nng's demo/async/server.c:
 *
 *     RECV   waiting for a request (nng_ctx_recv in flight)
 *     WAIT   the request is queued for a worker, or a handler holds it, or it is deferred
 *     DELAY  a delay fault holds it (nng_sleep_aio in flight)
 *     SEND   the reply is going out (nng_ctx_send in flight)
 *
 * RECV -> WAIT when a request arrives; WAIT -> SEND when the call finishes; SEND -> RECV when
 * the send completes or fails; WAIT -> DELAY -> WAIT around a delay fault; WAIT -> RECV when a
 * drop fault swallows the request. The aio callbacks never block and never call a handler:
 * they only queue work for the worker threads, which may block on libpq.
 *
 * The number of contexts bounds the calls in flight, deferred ones included; the number of
 * workers bounds the handlers running at once. A deferred call holds a context, not a worker.
 *
 * Two queues: calls of RPC_METHOD_RELEASE methods (a participant's COMMIT PREPARED) go to the
 * release queue, which every worker serves first, and which a few reserved workers serve
 * alone. Without them, a 2pc participant deadlocks: every worker blocks in a Prepare on a row
 * that a prepared branch holds, and the Commit that would free the row waits in the queue
 * behind them until the server's lock_timeout breaks the wait.
 *
 * Stopping: new requests get UNAVAILABLE while calls in flight drain (bounded by drain_ms);
 * then the socket closes, every aio is stopped and the workers are joined.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#if defined(__SANITIZE_ADDRESS__)
#define RPC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RPC_ASAN 1
#endif
#endif
#ifndef RPC_ASAN
#define RPC_ASAN 0
#endif
#if RPC_ASAN
/* The sanitizer runtime's own count; declared here as gcc ships no allocator_interface.h. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "rpc.h"

#define HIST_BUCKETS 400

typedef struct method_stats {
        pthread_mutex_t mu;
        uint64_t calls;
        uint64_t errors;
        uint64_t sum_us;
        uint64_t max_us;
        uint32_t hist[HIST_BUCKETS];
} method_stats;

typedef struct method_entry {
        char *fullname;
        const ProtobufCMessageDescriptor *input;
        const ProtobufCMessageDescriptor *output;
        rpc_handler_fn handler;
        unsigned flags;
        method_stats stats;
} method_entry;

typedef enum ctx_state {
        CTX_RECV,  /* nng_ctx_recv in flight */
        CTX_WAIT,  /* a call owns the context */
        CTX_DELAY, /* a delay fault is sleeping */
        CTX_SEND,  /* nng_ctx_send in flight */
} ctx_state;

typedef struct srv_ctx {
        rpc_server *srv;
        nng_ctx ctx;
        nng_aio *aio;       /* receive and send */
        nng_aio *sleep_aio; /* delay faults */
        ctx_state state;
        rpc_call *delayed; /* the call a delay fault holds */
} srv_ctx;

typedef struct arena_block {
        struct arena_block *next;
        max_align_t data[];
} arena_block;

struct rpc_call {
        rpc_server *srv;
        srv_ctx *sctx;  /* NULL for a copy made by a duplicate fault */
        uint8_t *frame; /* the request envelope as received */
        size_t frame_len;
        Mercato__Rpc__V1__Request *req; /* decoded envelope */
        method_entry *method;
        ProtobufCMessage *in;
        ProtobufCMessage *out;
        _Atomic(void *) worker; /* set while a handler runs */
        _Atomic int refs;       /* the handler's and the finisher's */
        bool sent;              /* the reply went to nng; its send ends the count */
        arena_block *arena;
        char *message;
        int64_t start_us;
        bool faulted; /* the fault decision has been made */
        bool duplicate;
        bool after_stop; /* received once the stop had begun: refused */
        rpc_call *next;  /* queue link */
};

struct rpc_server {
        rpc_server_opts opts;
        nng_socket sock;
        bool sock_open;
        bool started;
        _Atomic bool stopping;
        bool stopped;
        method_entry *methods;
        size_t n_methods;
        srv_ctx *ctxs;
        int n_ctxs;
        pthread_t *threads;
        int n_threads;
        pthread_mutex_t mu;
        pthread_mutex_t io_mu;     /* recursive; orders context operations against the close */
        bool io_closed;            /* no context operation may start: the socket is closing */
        pthread_cond_t queue_cv;   /* wakes the workers */
        pthread_cond_t release_cv; /* wakes the reserved workers */
        pthread_cond_t drain_cv;
        rpc_call *head;
        rpc_call *tail;
        rpc_call *rhead; /* the release queue */
        rpc_call *rtail;
        int reserved; /* threads past opts.workers serve only the release queue */
        bool queue_closed;
        int inflight;
        _Atomic uint64_t bad_requests;
        int64_t start_ms;
};

static void ctx_recv(srv_ctx *c);
static void ctx_send(srv_ctx *c);
static void call_finish(rpc_call *call, rpc_status st);

/* --- statistics --- */

static int
hist_bucket(uint64_t us)
{
        int idx;

        if (us < 8) {
                return (int) us;
        }
        int e = 63 - __builtin_clzll(us);
        int sub = (int) ((us >> (e - 3)) & 7);
        idx = (e - 2) * 8 + sub;
        return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static uint64_t
hist_value(int idx)
{
        if (idx < 8) {
                return (uint64_t) idx;
        }
        int e = idx / 8 + 2;
        int sub = idx % 8;
        /* The middle of the bucket. */
        uint64_t lo = (8ULL | (uint64_t) sub) << (e - 3);
        uint64_t width = 1ULL << (e - 3);
        return lo + width / 2;
}

static double
hist_percentile(const method_stats *s, double p)
{
        uint64_t total = 0;
        uint64_t want;
        uint64_t seen = 0;

        for (int i = 0; i < HIST_BUCKETS; i++) {
                total += s->hist[i];
        }
        if (total == 0) {
                return 0.0;
        }
        want = (uint64_t) (p * (double) total);
        if (want >= total) {
                want = total - 1;
        }
        for (int i = 0; i < HIST_BUCKETS; i++) {
                seen += s->hist[i];
                if (seen > want) {
                        uint64_t v = hist_value(i);
                        return (double) (v < s->max_us ? v : s->max_us) / 1000.0;
                }
        }
        return (double) s->max_us / 1000.0;
}

static void
stats_record(method_stats *s, uint64_t us, bool error)
{
        pthread_mutex_lock(&s->mu);
        s->calls++;
        if (error) {
                s->errors++;
        }
        s->sum_us += us;
        if (us > s->max_us) {
                s->max_us = us;
        }
        s->hist[hist_bucket(us)]++;
        pthread_mutex_unlock(&s->mu);
}

/* --- the work queue --- */

static method_entry *find_method(rpc_server *srv, const char *name);

/* True when the call's method has flag (RPC_METHOD_*). Decoding the envelope here is plain
 * CPU work, done once per call: call_run uses the result, and decodes again (to report the
 * error) only when this failed. */
static bool
call_method_has(rpc_call *call, unsigned flag)
{
        rpc_server *srv = call->srv;
        char err[256];
        method_entry *m;

        if (call->req == NULL
            && rpc_envelope_decode_request(
                   call->frame, call->frame_len, srv->opts.recv_max, &call->req, err, sizeof(err))
                != RPC_OK) {
                call->req = NULL;
                return false;
        }
        m = find_method(srv, call->req->method);
        return m != NULL && (m->flags & flag) != 0;
}

static void
queue_push(rpc_server *srv, rpc_call *call)
{
        bool release = srv->reserved > 0 && call_method_has(call, RPC_METHOD_RELEASE);
        rpc_call **head = release ? &srv->rhead : &srv->head;
        rpc_call **tail = release ? &srv->rtail : &srv->tail;

        pthread_mutex_lock(&srv->mu);
        call->next = NULL;
        if (*tail != NULL) {
                (*tail)->next = call;
        } else {
                *head = call;
        }
        *tail = call;
        if (release) {
                pthread_cond_signal(&srv->release_cv);
        }
        pthread_cond_signal(&srv->queue_cv);
        pthread_mutex_unlock(&srv->mu);
}

/* Takes the next call, the release queue first; a reserved worker takes only those. NULL
 * once the queue is closed and empty. */
static rpc_call *
queue_pop(rpc_server *srv, bool reserved)
{
        pthread_cond_t *cv = reserved ? &srv->release_cv : &srv->queue_cv;
        rpc_call *call;

        pthread_mutex_lock(&srv->mu);
        while (srv->rhead == NULL && (reserved || srv->head == NULL) && !srv->queue_closed) {
                pthread_cond_wait(cv, &srv->mu);
        }
        if (srv->rhead != NULL) {
                call = srv->rhead;
                srv->rhead = call->next;
                if (srv->rhead == NULL) {
                        srv->rtail = NULL;
                }
        } else if (!reserved && srv->head != NULL) {
                call = srv->head;
                srv->head = call->next;
                if (srv->head == NULL) {
                        srv->tail = NULL;
                }
        } else {
                call = NULL;
        }
        pthread_mutex_unlock(&srv->mu);
        return call;
}

/* --- calls --- */

static rpc_call *
call_new(rpc_server *srv, srv_ctx *sctx, const uint8_t *frame, size_t len)
{
        rpc_call *call = rpc_xcalloc(1, sizeof(*call));

        call->srv = srv;
        call->sctx = sctx;
        call->frame = rpc_xmalloc(len);
        memcpy(call->frame, frame, len);
        call->frame_len = len;
        call->start_us = rpc_now_mono_us();
        call->after_stop = atomic_load(&srv->stopping);
        atomic_init(&call->refs, 1);
        atomic_init(&call->worker, NULL);
        pthread_mutex_lock(&srv->mu);
        srv->inflight++;
        pthread_mutex_unlock(&srv->mu);
        return call;
}

static void
inflight_done(rpc_server *srv)
{
        pthread_mutex_lock(&srv->mu);
        srv->inflight--;
        if (srv->inflight == 0) {
                pthread_cond_broadcast(&srv->drain_cv);
        }
        pthread_mutex_unlock(&srv->mu);
}

/* Frees a call. It stays counted in flight when its reply is still being sent (the send
 * callback ends the count), so that a graceful stop waits for the reply to leave. */
static void
call_release(rpc_call *call, bool counted)
{
        rpc_server *srv = call->srv;

        if (call->in != NULL) {
                protobuf_c_message_free_unpacked(call->in, NULL);
        }
        if (call->req != NULL) {
                protobuf_c_message_free_unpacked(&call->req->base, NULL);
        }
        for (arena_block *b = call->arena; b != NULL;) {
                arena_block *next = b->next;
                free(b);
                b = next;
        }
        free(call->message);
        free(call->frame);
        free(call);
        if (counted) {
                inflight_done(srv);
        }
}

static void
call_free(rpc_call *call)
{
        call_release(call, true);
}

/* Drops a reference. A handler that defers and the thread that finishes its call each hold
 * one, so neither frees the call under the other. */
static void
call_unref(rpc_call *call)
{
        if (atomic_fetch_sub(&call->refs, 1) == 1) {
                call_release(call, !call->sent);
        }
}

void *
rpc_call_alloc(rpc_call *call, size_t n)
{
        arena_block *b = rpc_xcalloc(1, sizeof(arena_block) + n);

        b->next = call->arena;
        call->arena = b;
        return b->data;
}

char *
rpc_call_strdup(rpc_call *call, const char *s)
{
        size_t n = strlen(s) + 1;
        char *p = rpc_call_alloc(call, n);

        memcpy(p, s, n);
        return p;
}

void
rpc_call_set_message(rpc_call *call, const char *fmt, ...)
{
        va_list ap;
        char buf[512];

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        free(call->message);
        call->message = rpc_xstrdup(buf);
}

rpc_status
rpc_call_error(rpc_call *call, rpc_status st, const char *fmt, ...)
{
        va_list ap;
        char buf[512];

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        free(call->message);
        call->message = rpc_xstrdup(buf);
        return st;
}

void *
rpc_call_worker(rpc_call *call)
{
        return atomic_load(&call->worker);
}

const char *
rpc_call_method(const rpc_call *call)
{
        return call->req != NULL ? call->req->method : "";
}

const char *
rpc_call_request_id(const rpc_call *call)
{
        return call->req != NULL ? call->req->request_id : "";
}

const char *
rpc_call_trace_id(const rpc_call *call)
{
        return call->req != NULL ? call->req->trace_id : "";
}

const char *
rpc_call_idempotency_key(const rpc_call *call)
{
        return call->req != NULL ? call->req->idempotency_key : "";
}

const char *
rpc_call_metadata(const rpc_call *call, const char *key)
{
        if (call->req == NULL) {
                return NULL;
        }
        for (size_t i = 0; i < call->req->n_metadata; i++) {
                if (strcmp(call->req->metadata[i]->key, key) == 0) {
                        return call->req->metadata[i]->value;
                }
        }
        return NULL;
}

int64_t
rpc_call_deadline_unix_ms(const rpc_call *call)
{
        return call->req != NULL ? call->req->deadline_unix_ms : 0;
}

bool
rpc_call_is_duplicate(const rpc_call *call)
{
        return call->duplicate;
}

ProtobufCMessage *
rpc_call_response(rpc_call *call)
{
        return call->out;
}

void
rpc_call_finish(rpc_call *call, rpc_status st)
{
        call_finish(call, st == RPC_DEFERRED ? RPC_INTERNAL : st);
}

/* Sends the reply for a call (unless it is a duplicate's copy), records it, frees it. */
static void
call_finish(rpc_call *call, rpc_status st)
{
        srv_ctx *c = call->sctx;
        uint8_t *payload = NULL;
        size_t payload_len = 0;
        uint8_t *frame;
        size_t frame_len;

        if ((int) st < 0 || st > RPC_STATUS_MAX) {
                st = RPC_INTERNAL;
        }
        if (st == RPC_OK && call->out != NULL) {
                payload = rpc_pack(call->out, &payload_len);
        }
        if (call->method != NULL) {
                uint64_t us = (uint64_t) (rpc_now_mono_us() - call->start_us);
                stats_record(&call->method->stats, us, st != RPC_OK);
        }
        frame = rpc_envelope_encode_reply(
            st, st == RPC_OK ? "" : call->message, payload, payload_len, &frame_len);
        free(payload);
        if (c != NULL) {
                nng_msg *msg = NULL;
                if (nng_msg_alloc(&msg, 0) == 0 && nng_msg_append(msg, frame, frame_len) == 0) {
                        nng_aio_set_msg(c->aio, msg);
                        call->sctx = NULL;
                        call->sent = true;
                        free(frame);
                        call_unref(call);
                        ctx_send(c);
                        return;
                }
                if (msg != NULL) {
                        nng_msg_free(msg);
                }
                /* Out of memory in nng: no reply; the context goes back to receiving. */
                free(frame);
                call->sctx = NULL;
                call_unref(call);
                ctx_recv(c);
                return;
        }
        free(frame);
        call_unref(call);
}

/* Ends a call with no reply at all: a drop fault. The context goes back to receiving. */
static void
call_drop(rpc_call *call)
{
        srv_ctx *c = call->sctx;

        if (call->method != NULL) {
                stats_record(&call->method->stats, 0, true);
        }
        call->sctx = NULL;
        call_unref(call);
        if (c != NULL) {
                ctx_recv(c);
        }
}

static method_entry *
find_method(rpc_server *srv, const char *name)
{
        size_t lo = 0;
        size_t hi = srv->n_methods;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int cmp = strcmp(name, srv->methods[mid].fullname);
                if (cmp == 0) {
                        return &srv->methods[mid];
                }
                if (cmp < 0) {
                        hi = mid;
                } else {
                        lo = mid + 1;
                }
        }
        return NULL;
}

/* Applies the fault rules to a call; returns true if the call is consumed. */
static bool
apply_fault(rpc_call *call)
{
        rpc_server *srv = call->srv;
        rpc_fault_decision d;

        call->faulted = true;
        if (call->duplicate || srv->opts.faults == NULL) {
                return false;
        }
        d = rpc_faults_decide(srv->opts.faults, call->req->method);
        switch (d.action) {
        case RPC_FAULT_NONE:
                return false;
        case RPC_FAULT_DROP:
                call_drop(call);
                return true;
        case RPC_FAULT_DELAY:
                if (call->sctx == NULL) {
                        return false;
                }
                call->sctx->state = CTX_DELAY;
                call->sctx->delayed = call;
                nng_sleep_aio((nng_duration) d.arg, call->sctx->sleep_aio);
                return true;
        case RPC_FAULT_DUPLICATE:
                for (int64_t i = 0; i < d.arg; i++) {
                        rpc_call *copy = call_new(srv, NULL, call->frame, call->frame_len);
                        copy->duplicate = true;
                        copy->faulted = true;
                        queue_push(srv, copy);
                }
                return false;
        case RPC_FAULT_FAIL:
                rpc_call_set_message(call, "injected fault: %s", rpc_status_name(d.status));
                call_finish(call, d.status);
                return true;
        }
        return false;
}

/* Runs one call on a worker thread, from the raw frame to the handler. */
static void
call_run(rpc_call *call, void *worker)
{
        rpc_server *srv = call->srv;
        char err[512];
        rpc_status st;

        if (call->req == NULL) {
                st = rpc_envelope_decode_request(
                    call->frame, call->frame_len, srv->opts.recv_max, &call->req, err, sizeof(err));
                if (st != RPC_OK) {
                        atomic_fetch_add(&srv->bad_requests, 1);
                        rpc_call_set_message(call, "%s", err);
                        call_finish(call, st);
                        return;
                }
        }
        if (call->after_stop) {
                rpc_call_set_message(call, "server is shutting down");
                call_finish(call, RPC_UNAVAILABLE);
                return;
        }
        call->method = find_method(srv, call->req->method);
        if (call->method == NULL) {
                atomic_fetch_add(&srv->bad_requests, 1);
                rpc_call_set_message(call, "unknown method %s", call->req->method);
                call_finish(call, RPC_UNIMPLEMENTED);
                return;
        }
        if (!call->faulted && apply_fault(call)) {
                return;
        }
        if (rpc_deadline_expired(call->req->deadline_unix_ms, rpc_now_unix_ms())) {
                rpc_call_set_message(call, "deadline passed before the call was handled");
                call_finish(call, RPC_DEADLINE_EXCEEDED);
                return;
        }
        st = rpc_payload_unpack(call->method->input, call->req->payload.data,
            call->req->payload.len, &call->in, err, sizeof(err));
        if (st != RPC_OK) {
                rpc_call_set_message(call, "%s", err);
                call_finish(call, st);
                return;
        }
        call->out = rpc_call_alloc(call, call->method->output->sizeof_message);
        protobuf_c_message_init(call->method->output, call->out);
        atomic_store(&call->refs, 2);
        atomic_store(&call->worker, worker);
        st = call->method->handler(call, call->in, call->out);
        atomic_store(&call->worker, NULL);
        if (st != RPC_DEFERRED) {
                call_finish(call, st);
        }
        /* A deferred call may be finished already; the last reference frees it. */
        call_unref(call);
}

/* True for a call that may run right here on the I/O callback: a method that never blocks
 * (RPC_METHOD_INLINE), on a server with no fault rules, which may sleep or copy. A call that
 * fails to decode goes to a worker as usual. */
static bool
call_inline(rpc_call *call)
{
        if (rpc_faults_count(call->srv->opts.faults) > 0 || call->after_stop) {
                return false;
        }
        return call_method_has(call, RPC_METHOD_INLINE);
}

static void *
worker_main(void *arg)
{
        rpc_server *srv = ((void **) arg)[0];
        int index = (int) (intptr_t) ((void **) arg)[1];
        void *state = NULL;

        free(arg);
        if (srv->opts.worker_init != NULL) {
                state = srv->opts.worker_init(srv->opts.arg, index);
        }
        for (;;) {
                rpc_call *call = queue_pop(srv, index >= srv->opts.workers);
                if (call == NULL) {
                        break;
                }
                call_run(call, state);
        }
        if (srv->opts.worker_fini != NULL) {
                srv->opts.worker_fini(srv->opts.arg, state);
        }
        return NULL;
}

/* --- contexts --- */

static void
ctx_recv(srv_ctx *c)
{
        pthread_mutex_lock(&c->srv->io_mu);
        if (!c->srv->io_closed) {
                c->state = CTX_RECV;
                nng_ctx_recv(c->ctx, c->aio);
        }
        pthread_mutex_unlock(&c->srv->io_mu);
}

/* Sends the reply held by the context's aio; after the close it is dropped instead, since
 * nng must not see a context of a closed socket. */
static void
ctx_send(srv_ctx *c)
{
        rpc_server *srv = c->srv;
        bool sent = false;

        pthread_mutex_lock(&srv->io_mu);
        if (!srv->io_closed) {
                c->state = CTX_SEND;
                nng_ctx_send(c->ctx, c->aio);
                sent = true;
        }
        pthread_mutex_unlock(&srv->io_mu);
        if (!sent) {
                nng_msg_free(nng_aio_get_msg(c->aio));
                nng_aio_set_msg(c->aio, NULL);
                inflight_done(srv);
        }
}

static void
ctx_cb(void *arg)
{
        srv_ctx *c = arg;
        int rv = nng_aio_result(c->aio);

        switch (c->state) {
        case CTX_RECV: {
                if (rv != 0) {
                        if (rv == NNG_ECLOSED || atomic_load(&c->srv->stopping)) {
                                return;
                        }
                        ctx_recv(c);
                        return;
                }
                nng_msg *msg = nng_aio_get_msg(c->aio);
                rpc_call *call = call_new(c->srv, c, nng_msg_body(msg), nng_msg_len(msg));
                nng_msg_free(msg);
                c->state = CTX_WAIT;
                if (call_inline(call)) {
                        call_run(call, NULL);
                        return;
                }
                queue_push(c->srv, call);
                return;
        }
        case CTX_SEND:
                if (rv != 0) {
                        nng_msg_free(nng_aio_get_msg(c->aio));
                }
                inflight_done(c->srv);
                if (rv == NNG_ECLOSED) {
                        return;
                }
                /* Keep receiving while the stop drains, so that late requests are refused
                 * with UNAVAILABLE rather than left to time out; ctx_recv does nothing once
                 * the socket closes. */
                ctx_recv(c);
                return;
        case CTX_WAIT:
        case CTX_DELAY:
                return;
        }
}

static void
ctx_sleep_cb(void *arg)
{
        srv_ctx *c = arg;
        rpc_call *call = c->delayed;
        int rv = nng_aio_result(c->sleep_aio);

        if (call == NULL) {
                return;
        }
        c->delayed = NULL;
        c->state = CTX_WAIT;
        if (rv != 0) {
                /* Cancelled by a stop: the call ends without a reply. */
                call->sctx = NULL;
                call_free(call);
                return;
        }
        queue_push(c->srv, call);
}

/* --- the standard service --- */

/* The bytes malloc has handed out and not taken back. Under ASan, malloc is the sanitizer's
 * and mallinfo2 knows nothing of it. */
static uint64_t
heap_in_use(void)
{
#if RPC_ASAN
        return (uint64_t) __sanitizer_get_current_allocated_bytes();
#else
        struct mallinfo2 mi = mallinfo2();
        return (uint64_t) (mi.uordblks + mi.hblkhd);
#endif
}

RPC_HANDLER(std_health, Mercato__Rpc__V1__HealthRequest, Mercato__Rpc__V1__HealthResponse)
{
        rpc_server *srv = call->srv;

        resp->status = atomic_load(&srv->stopping) ? "NOT_SERVING" : "SERVING";
        resp->service = (char *) (srv->opts.name != NULL ? srv->opts.name : "");
        resp->version = "0.1.0";
        resp->uptime_ms = rpc_now_mono_ms() - srv->start_ms;
        resp->workers = srv->opts.workers;
        resp->reserved_workers = srv->reserved;
        return RPC_OK;
}

RPC_HANDLER(
    std_list_methods, Mercato__Rpc__V1__ListMethodsRequest, Mercato__Rpc__V1__ListMethodsResponse)
{
        rpc_server *srv = call->srv;

        resp->n_methods = srv->n_methods;
        resp->methods = rpc_call_alloc(call, srv->n_methods * sizeof(*resp->methods));
        for (size_t i = 0; i < srv->n_methods; i++) {
                Mercato__Rpc__V1__MethodInfo *mi = rpc_call_alloc(call, sizeof(*mi));
                mercato__rpc__v1__method_info__init(mi);
                mi->name = srv->methods[i].fullname;
                mi->input_type = (char *) srv->methods[i].input->name;
                mi->output_type = (char *) srv->methods[i].output->name;
                mi->idempotent = (srv->methods[i].flags & RPC_METHOD_IDEMPOTENT) != 0;
                mi->release = (srv->methods[i].flags & RPC_METHOD_RELEASE) != 0;
                resp->methods[i] = mi;
        }
        return RPC_OK;
}

RPC_HANDLER(std_stats, Mercato__Rpc__V1__StatsRequest, Mercato__Rpc__V1__StatsResponse)
{
        rpc_server *srv = call->srv;

        resp->n_methods = srv->n_methods;
        resp->methods = rpc_call_alloc(call, srv->n_methods * sizeof(*resp->methods));
        for (size_t i = 0; i < srv->n_methods; i++) {
                method_stats *s = &srv->methods[i].stats;
                Mercato__Rpc__V1__MethodStats *ms = rpc_call_alloc(call, sizeof(*ms));
                mercato__rpc__v1__method_stats__init(ms);
                ms->name = srv->methods[i].fullname;
                pthread_mutex_lock(&s->mu);
                ms->calls = s->calls;
                ms->errors = s->errors;
                ms->p50_ms = hist_percentile(s, 0.50);
                ms->p99_ms = hist_percentile(s, 0.99);
                ms->max_ms = (double) s->max_us / 1000.0;
                ms->mean_ms = s->calls > 0 ? (double) s->sum_us / (double) s->calls / 1000.0 : 0.0;
                pthread_mutex_unlock(&s->mu);
                resp->methods[i] = ms;
        }
        resp->bad_requests = atomic_load(&srv->bad_requests);
        resp->faults_injected = rpc_faults_fired(srv->opts.faults);
        resp->uptime_ms = rpc_now_mono_ms() - srv->start_ms;
        resp->heap_in_use_bytes = heap_in_use();
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) {
                resp->cpu_user_us
                    = (uint64_t) ru.ru_utime.tv_sec * 1000000u + (uint64_t) ru.ru_utime.tv_usec;
                resp->cpu_system_us
                    = (uint64_t) ru.ru_stime.tv_sec * 1000000u + (uint64_t) ru.ru_stime.tv_usec;
                resp->voluntary_switches = (uint64_t) ru.ru_nvcsw;
                resp->involuntary_switches = (uint64_t) ru.ru_nivcsw;
        }
        resp->pid = (int32_t) getpid();

        size_t cap = rpc_client_peers(NULL, 0);
        rpc_peer_stats *peers = rpc_call_alloc(call, (cap + 1) * sizeof(*peers));
        size_t n_peers = rpc_client_peers(peers, cap);
        if (n_peers > cap) {
                n_peers = cap; /* a client opened between the two calls waits for the next Stats */
        }
        resp->peers = rpc_call_alloc(call, (n_peers + 1) * sizeof(*resp->peers));
        for (size_t i = 0; i < n_peers; i++) {
                Mercato__Rpc__V1__PeerStats *ps = rpc_call_alloc(call, sizeof(*ps));
                mercato__rpc__v1__peer_stats__init(ps);
                ps->url = peers[i].url;
                ps->breaker = (char *) rpc_breaker_state_name(peers[i].breaker);
                ps->consecutive_failures = (uint32_t) peers[i].consecutive_failures;
                ps->breaker_opens = peers[i].opens;
                ps->rejected = peers[i].rejected;
                ps->attempts = peers[i].attempts;
                ps->peer_failures = peers[i].peer_failures;
                resp->peers[resp->n_peers++] = ps;
        }
        return RPC_OK;
}

static const rpc_method std_methods[] = {
        RPC_METHOD_ENTRY("Health", std_health, mercato__rpc__v1__health_request__descriptor,
            mercato__rpc__v1__health_response__descriptor,
            RPC_METHOD_IDEMPOTENT | RPC_METHOD_INLINE),
        RPC_METHOD_ENTRY("ListMethods", std_list_methods,
            mercato__rpc__v1__list_methods_request__descriptor,
            mercato__rpc__v1__list_methods_response__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("Stats", std_stats, mercato__rpc__v1__stats_request__descriptor,
            mercato__rpc__v1__stats_response__descriptor,
            RPC_METHOD_IDEMPOTENT | RPC_METHOD_INLINE),
};

/* --- the server --- */

rpc_status
rpc_server_new(const rpc_server_opts *opts, rpc_server **ret_srv)
{
        rpc_server *srv = rpc_xcalloc(1, sizeof(*srv));
        char err[256];
        rpc_status st;

        srv->opts = *opts;
        if (srv->opts.workers <= 0) {
                srv->opts.workers = 4;
        }
        if (srv->opts.contexts <= 0) {
                srv->opts.contexts = 8 * srv->opts.workers;
        }
        if (srv->opts.recv_max == 0) {
                srv->opts.recv_max = 1024 * 1024;
        }
        if (srv->opts.drain_ms <= 0) {
                srv->opts.drain_ms = 10000;
        }
        pthread_mutexattr_t attr;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&srv->io_mu, &attr);
        pthread_mutexattr_destroy(&attr);
        pthread_mutex_init(&srv->mu, NULL);
        pthread_cond_init(&srv->queue_cv, NULL);
        pthread_cond_init(&srv->release_cv, NULL);
        pthread_cond_init(&srv->drain_cv, NULL);
        srv->start_ms = rpc_now_mono_ms();
        if (nng_rep0_open(&srv->sock) != 0) {
                rpc_server_free(srv);
                return RPC_UNAVAILABLE;
        }
        srv->sock_open = true;
        /* Frames up to twice the limit are read, so that they can be refused with
         * RESOURCE_EXHAUSTED; beyond that nng drops the connection. */
        nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ, srv->opts.recv_max * 2);
        st = rpc_server_add_service(srv, &mercato__rpc__v1__standard_service__descriptor,
            std_methods, sizeof(std_methods) / sizeof(std_methods[0]), err, sizeof(err));
        if (st != RPC_OK) {
                rpc_server_free(srv);
                return st;
        }
        *ret_srv = srv;
        return RPC_OK;
}

static int
method_cmp(const void *a, const void *b)
{
        return strcmp(((const method_entry *) a)->fullname, ((const method_entry *) b)->fullname);
}

rpc_status
rpc_server_add_service(rpc_server *srv, const ProtobufCServiceDescriptor *desc,
    const rpc_method *methods, size_t n_methods, char *errbuf, size_t errlen)
{
        if (srv->started) {
                snprintf(errbuf, errlen, "%s: services must be added before the server starts",
                    desc->name);
                return RPC_FAILED_PRECONDITION;
        }
        /* Every table entry names a method of the descriptor, once, with its types. */
        for (size_t i = 0; i < n_methods; i++) {
                const rpc_method *m = &methods[i];
                const ProtobufCMethodDescriptor *md = NULL;

                if (m->name == NULL || m->handler == NULL) {
                        snprintf(errbuf, errlen, "%s: entry %zu has no name or no handler",
                            desc->name, i);
                        return RPC_INVALID_ARGUMENT;
                }
                for (unsigned k = 0; k < desc->n_methods; k++) {
                        if (strcmp(desc->methods[k].name, m->name) == 0) {
                                md = &desc->methods[k];
                        }
                }
                if (md == NULL) {
                        snprintf(errbuf, errlen, "%s: no method named %s", desc->name, m->name);
                        return RPC_INVALID_ARGUMENT;
                }
                if (md->input != m->input || md->output != m->output) {
                        snprintf(errbuf, errlen, "%s/%s: handler types %s -> %s, want %s -> %s",
                            desc->name, m->name, m->input ? m->input->name : "?",
                            m->output ? m->output->name : "?", md->input->name, md->output->name);
                        return RPC_INVALID_ARGUMENT;
                }
                for (size_t j = 0; j < i; j++) {
                        if (strcmp(methods[j].name, m->name) == 0) {
                                snprintf(errbuf, errlen, "%s/%s: more than one handler", desc->name,
                                    m->name);
                                return RPC_INVALID_ARGUMENT;
                        }
                }
        }
        /* And every method of the descriptor has an entry. */
        for (unsigned k = 0; k < desc->n_methods; k++) {
                bool found = false;
                for (size_t i = 0; i < n_methods; i++) {
                        found = found || strcmp(desc->methods[k].name, methods[i].name) == 0;
                }
                if (!found) {
                        snprintf(
                            errbuf, errlen, "%s/%s: no handler", desc->name, desc->methods[k].name);
                        return RPC_INVALID_ARGUMENT;
                }
        }
        for (size_t i = 0; i < n_methods; i++) {
                char name[512];
                snprintf(name, sizeof(name), "/%s/%s", desc->name, methods[i].name);
                for (size_t j = 0; j < srv->n_methods; j++) {
                        if (strcmp(srv->methods[j].fullname, name) == 0) {
                                snprintf(errbuf, errlen, "%s: registered twice", name);
                                return RPC_ALREADY_EXISTS;
                        }
                }
        }
        srv->methods
            = rpc_xrealloc(srv->methods, (srv->n_methods + n_methods) * sizeof(method_entry));
        for (size_t i = 0; i < n_methods; i++) {
                method_entry *e = &srv->methods[srv->n_methods++];
                char name[512];
                memset(e, 0, sizeof(*e));
                snprintf(name, sizeof(name), "/%s/%s", desc->name, methods[i].name);
                e->fullname = rpc_xstrdup(name);
                e->input = methods[i].input;
                e->output = methods[i].output;
                e->handler = methods[i].handler;
                e->flags = methods[i].flags;
        }
        return RPC_OK;
}

rpc_status
rpc_server_listen(rpc_server *srv, const char *url, char *errbuf, size_t errlen)
{
        int rv = nng_listen(srv->sock, url, NULL, 0);

        if (rv != 0) {
                snprintf(errbuf, errlen, "cannot listen on %s: %s", url, nng_strerror(rv));
                return rv == NNG_EADDRINUSE ? RPC_ALREADY_EXISTS : RPC_UNAVAILABLE;
        }
        return RPC_OK;
}

rpc_status
rpc_server_start(rpc_server *srv)
{
        if (srv->started) {
                return RPC_FAILED_PRECONDITION;
        }
        qsort(srv->methods, srv->n_methods, sizeof(method_entry), method_cmp);
        for (size_t i = 0; i < srv->n_methods; i++) {
                pthread_mutex_init(&srv->methods[i].stats.mu, NULL);
        }
        srv->reserved = srv->opts.reserved;
        if (srv->reserved == 0) {
                for (size_t i = 0; i < srv->n_methods; i++) {
                        if ((srv->methods[i].flags & RPC_METHOD_RELEASE) != 0) {
                                srv->reserved = 2;
                        }
                }
        }
        srv->reserved = srv->reserved < 0 ? 0 : srv->reserved;
        srv->threads = rpc_xcalloc((size_t) (srv->opts.workers + srv->reserved), sizeof(pthread_t));
        for (int i = 0; i < srv->opts.workers + srv->reserved; i++) {
                void **arg = rpc_xmalloc(2 * sizeof(void *));
                arg[0] = srv;
                arg[1] = (void *) (intptr_t) i;
                if (pthread_create(&srv->threads[i], NULL, worker_main, arg) != 0) {
                        free(arg);
                        break;
                }
                srv->n_threads++;
        }
        if (srv->n_threads == 0) {
                return RPC_RESOURCE_EXHAUSTED;
        }
        srv->ctxs = rpc_xcalloc((size_t) srv->opts.contexts, sizeof(srv_ctx));
        for (int i = 0; i < srv->opts.contexts; i++) {
                srv_ctx *c = &srv->ctxs[i];
                c->srv = srv;
                if (nng_aio_alloc(&c->aio, ctx_cb, c) != 0
                    || nng_aio_alloc(&c->sleep_aio, ctx_sleep_cb, c) != 0
                    || nng_ctx_open(&c->ctx, srv->sock) != 0) {
                        nng_aio_free(c->aio);
                        nng_aio_free(c->sleep_aio);
                        c->aio = NULL;
                        c->sleep_aio = NULL;
                        break;
                }
                srv->n_ctxs++;
        }
        srv->started = true;
        for (int i = 0; i < srv->n_ctxs; i++) {
                ctx_recv(&srv->ctxs[i]);
        }
        return srv->n_ctxs > 0 ? RPC_OK : RPC_RESOURCE_EXHAUSTED;
}

int
rpc_server_inflight(rpc_server *srv)
{
        int n;

        pthread_mutex_lock(&srv->mu);
        n = srv->inflight;
        pthread_mutex_unlock(&srv->mu);
        return n;
}

static bool
wait_drained(rpc_server *srv, int64_t ms)
{
        struct timespec ts;
        bool drained;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&srv->mu);
        while (srv->inflight > 0) {
                if (pthread_cond_timedwait(&srv->drain_cv, &srv->mu, &ts) != 0) {
                        break;
                }
        }
        drained = srv->inflight == 0;
        pthread_mutex_unlock(&srv->mu);
        return drained;
}

void
rpc_server_stop(rpc_server *srv)
{
        if (srv == NULL || srv->stopped) {
                return;
        }
        srv->stopped = true;
        atomic_store(&srv->stopping, true);
        if (srv->started) {
                (void) wait_drained(srv, srv->opts.drain_ms);
        }
        /* From here no context operation starts (a late reply is dropped), so nng never
         * sees a context of the closed socket. The lock is not held across nng_close,
         * which waits for callbacks that may take it. */
        pthread_mutex_lock(&srv->io_mu);
        srv->io_closed = true;
        pthread_mutex_unlock(&srv->io_mu);
        if (srv->sock_open) {
                nng_close(srv->sock);
                srv->sock_open = false;
        }
        pthread_mutex_lock(&srv->mu);
        srv->queue_closed = true;
        pthread_cond_broadcast(&srv->queue_cv);
        pthread_cond_broadcast(&srv->release_cv);
        pthread_mutex_unlock(&srv->mu);
        for (int i = 0; i < srv->n_threads; i++) {
                pthread_join(srv->threads[i], NULL);
        }
        srv->n_threads = 0;
        for (int i = 0; i < srv->n_ctxs; i++) {
                nng_aio_stop(srv->ctxs[i].aio);
                nng_aio_stop(srv->ctxs[i].sleep_aio);
        }
        /* Calls that were queued but never ran end here without a reply. */
        for (rpc_call *call = queue_pop(srv, false); call != NULL; call = queue_pop(srv, false)) {
                call->sctx = NULL;
                call_free(call);
        }
}

void
rpc_server_free(rpc_server *srv)
{
        bool drained;

        if (srv == NULL) {
                return;
        }
        rpc_server_stop(srv);
        /* A deferred call still out refers to its context: leave the contexts alive rather
         * than free them under it. */
        drained = !srv->started || wait_drained(srv, srv->opts.drain_ms);
        if (!drained) {
                return;
        }
        for (int i = 0; i < srv->n_ctxs; i++) {
                nng_aio_free(srv->ctxs[i].aio);
                nng_aio_free(srv->ctxs[i].sleep_aio);
        }
        for (size_t i = 0; i < srv->n_methods; i++) {
                free(srv->methods[i].fullname);
                if (srv->started) {
                        pthread_mutex_destroy(&srv->methods[i].stats.mu);
                }
        }
        free(srv->methods);
        free(srv->ctxs);
        free(srv->threads);
        pthread_mutex_destroy(&srv->mu);
        pthread_mutex_destroy(&srv->io_mu);
        pthread_cond_destroy(&srv->queue_cv);
        pthread_cond_destroy(&srv->release_cv);
        pthread_cond_destroy(&srv->drain_cv);
        free(srv);
}
