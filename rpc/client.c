/* client.c: the RPC client: one kept-open REQ socket per peer, deadlines, retries, a breaker. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "rpc.h"

/* How long a call waits for a first connection before it calls the peer unreachable. */
#define CONNECT_WAIT_MS 2000

struct rpc_client {
        nng_socket sock;
        char *url;
        rpc_client_opts opts;
        pthread_mutex_t mu;
        pthread_cond_t pipes_cv;
        int pipes; /* connected pipes, kept by the pipe notifier */
        rpc_breaker breaker;
        uint64_t rng;
        _Atomic uint64_t seq;
        uint64_t attempts;       /* under mu */
        uint64_t peer_failures;  /* under mu */
        rpc_client *prev, *next; /* the process's list of open clients, under registry_mu */
};

/* Every open client of the process, oldest first, so that Stats can show each peer. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static rpc_client *registry_head, *registry_tail;

static void
registry_add(rpc_client *c)
{
        pthread_mutex_lock(&registry_mu);
        c->prev = registry_tail;
        c->next = NULL;
        if (registry_tail != NULL) {
                registry_tail->next = c;
        } else {
                registry_head = c;
        }
        registry_tail = c;
        pthread_mutex_unlock(&registry_mu);
}

static void
registry_remove(rpc_client *c)
{
        pthread_mutex_lock(&registry_mu);
        if (c->prev != NULL) {
                c->prev->next = c->next;
        } else {
                registry_head = c->next;
        }
        if (c->next != NULL) {
                c->next->prev = c->prev;
        } else {
                registry_tail = c->prev;
        }
        pthread_mutex_unlock(&registry_mu);
}

size_t
rpc_client_peers(rpc_peer_stats *out, size_t max)
{
        size_t n = 0;

        pthread_mutex_lock(&registry_mu);
        for (rpc_client *c = registry_head; c != NULL; c = c->next, n++) {
                if (n >= max) {
                        continue;
                }
                rpc_peer_stats *p = &out[n];
                snprintf(p->url, sizeof(p->url), "%s", c->url);
                pthread_mutex_lock(&c->mu);
                p->breaker = c->breaker.state;
                p->consecutive_failures = c->breaker.failures;
                p->opens = c->breaker.opens;
                p->rejected = c->breaker.rejected;
                p->attempts = c->attempts;
                p->peer_failures = c->peer_failures;
                pthread_mutex_unlock(&c->mu);
        }
        pthread_mutex_unlock(&registry_mu);
        return n;
}

static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
        rpc_client *c = arg;

        (void) p;
        pthread_mutex_lock(&c->mu);
        if (ev == NNG_PIPE_EV_ADD_POST) {
                c->pipes++;
        } else if (ev == NNG_PIPE_EV_REM_POST && c->pipes > 0) {
                c->pipes--;
        }
        pthread_cond_broadcast(&c->pipes_cv);
        pthread_mutex_unlock(&c->mu);
}

rpc_status
rpc_client_open(const char *url, const rpc_client_opts *opts, rpc_client **ret_client)
{
        rpc_client *c = rpc_xcalloc(1, sizeof(*c));
        int rv;

        if (opts != NULL) {
                c->opts = *opts;
        }
        if (c->opts.timeout_ms <= 0) {
                c->opts.timeout_ms = 5000;
        }
        if (c->opts.recv_max == 0) {
                c->opts.recv_max = 4 * 1024 * 1024;
        }
        if (c->opts.max_attempts <= 0) {
                c->opts.max_attempts = 4;
        }
        if (c->opts.backoff_initial_ms <= 0) {
                c->opts.backoff_initial_ms = 20;
        }
        if (c->opts.backoff_max_ms <= 0) {
                c->opts.backoff_max_ms = 1000;
        }
        if (c->opts.breaker_threshold <= 0) {
                c->opts.breaker_threshold = 8;
        }
        if (c->opts.breaker_cooldown_ms <= 0) {
                c->opts.breaker_cooldown_ms = 1000;
        }
        c->rng = c->opts.seed != 0 ? c->opts.seed
                                   : (uint64_t) rpc_now_mono_us() ^ ((uint64_t) getpid() << 32);
        c->url = rpc_xstrdup(url);
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->pipes_cv, NULL);
        rpc_breaker_init(&c->breaker, c->opts.breaker_threshold, c->opts.breaker_cooldown_ms);
        if (nng_req0_open(&c->sock) != 0) {
                free(c->url);
                free(c);
                return RPC_UNAVAILABLE;
        }
        nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, c->opts.recv_max);
        /* nng resends a request by itself after its resend time (60 s by default) and when
         * a pipe reconnects. Retries here are ours, made only for calls that may be retried,
         * so the timer is off unless asked for. */
        nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME,
            c->opts.resend_ms > 0 ? (nng_duration) c->opts.resend_ms : NNG_DURATION_INFINITE);
        nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 20);
        nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 500);
        nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, pipe_event, c);
        nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, pipe_event, c);
        rv = nng_dial(c->sock, url, NULL, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
                nng_close(c->sock);
                pthread_mutex_destroy(&c->mu);
                pthread_cond_destroy(&c->pipes_cv);
                free(c->url);
                free(c);
                return RPC_INVALID_ARGUMENT;
        }
        registry_add(c);
        *ret_client = c;
        return RPC_OK;
}

void
rpc_client_free(rpc_client *c)
{
        if (c == NULL) {
                return;
        }
        registry_remove(c);
        nng_close(c->sock);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->pipes_cv);
        free(c->url);
        free(c);
}

rpc_breaker_state
rpc_client_breaker_state(rpc_client *c)
{
        rpc_breaker_state st;

        pthread_mutex_lock(&c->mu);
        st = c->breaker.state;
        pthread_mutex_unlock(&c->mu);
        return st;
}

/* Waits up to ms for a connected pipe; returns true if there is one. */
static bool
wait_connected(rpc_client *c, int64_t ms)
{
        struct timespec ts;
        bool ok;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&c->mu);
        while (c->pipes == 0) {
                if (pthread_cond_timedwait(&c->pipes_cv, &c->mu, &ts) != 0) {
                        break;
                }
        }
        ok = c->pipes > 0;
        pthread_mutex_unlock(&c->mu);
        return ok;
}

/* One request/reply exchange of raw frames on a fresh context. */
static rpc_status
exchange(rpc_client *c, const uint8_t *frame, size_t len, int64_t timeout_ms, nng_msg **ret_reply,
    char *errbuf, size_t errlen)
{
        nng_ctx ctx;
        nng_msg *msg = NULL;
        nng_aio *aio = NULL;
        int rv;

        if (!wait_connected(c, timeout_ms < CONNECT_WAIT_MS ? timeout_ms : CONNECT_WAIT_MS)) {
                snprintf(errbuf, errlen, "cannot reach %s", c->url);
                return RPC_UNAVAILABLE;
        }
        if (nng_ctx_open(&ctx, c->sock) != 0) {
                snprintf(errbuf, errlen, "client for %s is closed", c->url);
                return RPC_CANCELLED;
        }
        if ((rv = nng_msg_alloc(&msg, 0)) != 0 || (rv = nng_msg_append(msg, frame, len)) != 0
            || (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
                nng_msg_free(msg);
                nng_ctx_close(ctx);
                snprintf(errbuf, errlen, "cannot build a request: %s", nng_strerror(rv));
                return RPC_RESOURCE_EXHAUSTED;
        }
        /* One timeout covers the send and the receive. */
        int64_t start = rpc_now_mono_ms();
        nng_aio_set_timeout(aio, (nng_duration) timeout_ms);
        nng_aio_set_msg(aio, msg);
        nng_ctx_send(ctx, aio);
        nng_aio_wait(aio);
        rv = nng_aio_result(aio);
        if (rv != 0) {
                nng_msg_free(nng_aio_get_msg(aio));
        } else {
                int64_t left = timeout_ms - (rpc_now_mono_ms() - start);
                nng_aio_set_timeout(aio, (nng_duration) (left > 0 ? left : 1));
                nng_ctx_recv(ctx, aio);
                nng_aio_wait(aio);
                rv = nng_aio_result(aio);
                if (rv == 0) {
                        *ret_reply = nng_aio_get_msg(aio);
                }
        }
        nng_aio_free(aio);
        nng_ctx_close(ctx);
        switch (rv) {
        case 0:
                return RPC_OK;
        case NNG_ETIMEDOUT:
                snprintf(errbuf, errlen, "no reply from %s within %lld ms", c->url,
                    (long long) timeout_ms);
                return RPC_DEADLINE_EXCEEDED;
        case NNG_ECLOSED:
                snprintf(errbuf, errlen, "client for %s is closed", c->url);
                return RPC_CANCELLED;
        default:
                snprintf(errbuf, errlen, "%s: %s", c->url, nng_strerror(rv));
                return RPC_UNAVAILABLE;
        }
}

rpc_status
rpc_client_send_frame(rpc_client *c, const uint8_t *frame, size_t len, int64_t timeout_ms,
    uint8_t **ret_frame, size_t *ret_len)
{
        nng_msg *reply = NULL;
        char err[256];
        rpc_status st;

        st = exchange(c, frame, len, timeout_ms > 0 ? timeout_ms : c->opts.timeout_ms, &reply, err,
            sizeof(err));
        if (st != RPC_OK) {
                return st;
        }
        *ret_len = nng_msg_len(reply);
        *ret_frame = rpc_xmalloc(*ret_len);
        memcpy(*ret_frame, nng_msg_body(reply), *ret_len);
        nng_msg_free(reply);
        return RPC_OK;
}

static void
set_error(rpc_error *err, rpc_status st, int attempts, bool transport, const char *msg)
{
        if (err != NULL) {
                err->code = st;
                err->attempts = attempts;
                err->transport = transport;
                snprintf(err->message, sizeof(err->message), "%s", msg);
        }
}

/* A failure that says the peer is unwell, as opposed to an answer about the request. */
static bool
peer_failure(rpc_status st)
{
        return st == RPC_UNAVAILABLE || st == RPC_DEADLINE_EXCEEDED;
}

rpc_status
rpc_client_call_raw(rpc_client *c, const char *method, const uint8_t *payload, size_t len,
    const rpc_call_opts *opts, uint8_t **ret_payload, size_t *ret_len, rpc_error *err)
{
        static const rpc_call_opts no_opts = { 0 };
        Mercato__Rpc__V1__Request req = MERCATO__RPC__V1__REQUEST__INIT;
        Mercato__Rpc__V1__Request__MetadataEntry *md = NULL;
        Mercato__Rpc__V1__Request__MetadataEntry **mdp = NULL;
        char request_id[64];
        char msg[512] = "";
        uint8_t *frame;
        size_t frame_len;
        int64_t deadline;
        bool retry;
        bool transport = false; /* the last attempt got no reply */
        int attempts = 0;
        rpc_status st = RPC_UNKNOWN;

        if (opts == NULL) {
                opts = &no_opts;
        }
        deadline = opts->deadline_unix_ms > 0
            ? opts->deadline_unix_ms
            : rpc_now_unix_ms() + (opts->timeout_ms > 0 ? opts->timeout_ms : c->opts.timeout_ms);
        retry = !opts->no_retry
            && (opts->idempotent
                || (opts->idempotency_key != NULL && opts->idempotency_key[0] != '\0'));
        snprintf(request_id, sizeof(request_id), "%d-%p-%llu", (int) getpid(), (void *) c,
            (unsigned long long) atomic_fetch_add(&c->seq, 1));
        req.method = (char *) method;
        req.payload.data = (uint8_t *) payload;
        req.payload.len = len;
        req.deadline_unix_ms = deadline;
        req.request_id = request_id;
        req.trace_id = (char *) (opts->trace_id != NULL ? opts->trace_id : request_id);
        req.idempotency_key = (char *) (opts->idempotency_key != NULL ? opts->idempotency_key : "");
        if (opts->metadata != NULL) {
                size_t n = 0;
                while (opts->metadata[2 * n] != NULL && opts->metadata[2 * n + 1] != NULL) {
                        n++;
                }
                md = rpc_xcalloc(n, sizeof(*md));
                mdp = rpc_xcalloc(n, sizeof(*mdp));
                for (size_t i = 0; i < n; i++) {
                        mercato__rpc__v1__request__metadata_entry__init(&md[i]);
                        md[i].key = (char *) opts->metadata[2 * i];
                        md[i].value = (char *) opts->metadata[2 * i + 1];
                        mdp[i] = &md[i];
                }
                req.n_metadata = n;
                req.metadata = mdp;
        }
        frame = rpc_pack(&req.base, &frame_len);
        free(md);
        free(mdp);

        for (;;) {
                int64_t now = rpc_now_unix_ms();
                int64_t remaining = rpc_deadline_remaining_ms(deadline, now);
                nng_msg *reply = NULL;
                bool allowed;

                if (remaining <= 0) {
                        if (attempts == 0 || st == RPC_UNKNOWN) {
                                transport = true;
                                st = RPC_DEADLINE_EXCEEDED;
                                snprintf(msg, sizeof(msg), "deadline passed before the call");
                        }
                        break;
                }
                pthread_mutex_lock(&c->mu);
                allowed = rpc_breaker_allow(&c->breaker, rpc_now_mono_ms());
                pthread_mutex_unlock(&c->mu);
                if (!allowed) {
                        transport = true;
                        st = RPC_UNAVAILABLE;
                        snprintf(msg, sizeof(msg), "circuit breaker for %s is open", c->url);
                        break;
                }
                attempts++;
                if (opts->attempt_timeout_ms > 0 && opts->attempt_timeout_ms < remaining) {
                        remaining = opts->attempt_timeout_ms;
                }
                st = exchange(c, frame, frame_len, remaining, &reply, msg, sizeof(msg));
                transport = st != RPC_OK;
                if (st == RPC_OK) {
                        Mercato__Rpc__V1__Reply *rep = NULL;
                        st = rpc_envelope_decode_reply(nng_msg_body(reply), nng_msg_len(reply),
                            c->opts.recv_max, &rep, msg, sizeof(msg));
                        nng_msg_free(reply);
                        if (st == RPC_OK) {
                                st = rep->status != NULL ? rpc_status_from_wire(rep->status->code)
                                                         : RPC_OK;
                                if (st == RPC_OK) {
                                        *ret_len = rep->payload.len;
                                        *ret_payload = NULL;
                                        if (rep->payload.len > 0) {
                                                *ret_payload = rpc_xmalloc(rep->payload.len);
                                                memcpy(*ret_payload, rep->payload.data,
                                                    rep->payload.len);
                                        }
                                } else {
                                        snprintf(msg, sizeof(msg), "%s",
                                            rep->status->message != NULL ? rep->status->message
                                                                         : "");
                                }
                                protobuf_c_message_free_unpacked(&rep->base, NULL);
                        } else {
                                st = RPC_INTERNAL;
                        }
                }
                pthread_mutex_lock(&c->mu);
                c->attempts++;
                c->peer_failures += peer_failure(st);
                rpc_breaker_record(&c->breaker, !peer_failure(st), rpc_now_mono_ms());
                pthread_mutex_unlock(&c->mu);
                if (st == RPC_OK) {
                        break;
                }
                if (!retry || attempts >= c->opts.max_attempts || !rpc_status_retryable(st)) {
                        break;
                }
                pthread_mutex_lock(&c->mu);
                int64_t delay = rpc_backoff_ms(
                    attempts, c->opts.backoff_initial_ms, c->opts.backoff_max_ms, &c->rng);
                pthread_mutex_unlock(&c->mu);
                if (delay >= rpc_deadline_remaining_ms(deadline, rpc_now_unix_ms())) {
                        break;
                }
                struct timespec ts
                    = { .tv_sec = delay / 1000, .tv_nsec = (long) (delay % 1000) * 1000000 };
                nanosleep(&ts, NULL);
        }
        free(frame);
        if (st != RPC_OK) {
                set_error(err, st, attempts, transport, msg);
        } else if (err != NULL) {
                set_error(err, RPC_OK, attempts, false, "");
        }
        return st;
}

rpc_status
rpc_client_call(rpc_client *c, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp,
    const rpc_call_opts *opts, rpc_error *err)
{
        uint8_t *payload;
        size_t len;
        uint8_t *reply = NULL;
        size_t reply_len = 0;
        char msg[256];
        rpc_status st;

        payload = rpc_pack(req, &len);
        st = rpc_client_call_raw(c, method, payload, len, opts, &reply, &reply_len, err);
        free(payload);
        if (st != RPC_OK) {
                return st;
        }
        st = rpc_payload_unpack(resp_desc, reply, reply_len, ret_resp, msg, sizeof(msg));
        free(reply);
        if (st != RPC_OK) {
                set_error(err, RPC_INTERNAL, err != NULL ? err->attempts : 1, false, msg);
                return RPC_INTERNAL;
        }
        return RPC_OK;
}

rpc_status
rpc_health_call(rpc_client *c, int64_t timeout_ms)
{
        Mercato__Rpc__V1__HealthRequest req = MERCATO__RPC__V1__HEALTH_REQUEST__INIT;
        rpc_call_opts opts = { .timeout_ms = timeout_ms, .no_retry = true };
        ProtobufCMessage *resp = NULL;
        rpc_status st;

        st = rpc_client_call(c, "/mercato.rpc.v1.StandardService/Health", &req.base,
            &mercato__rpc__v1__health_response__descriptor, &resp, &opts, NULL);
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return st;
}

rpc_status
rpc_health_once(const char *url, int64_t timeout_ms)
{
        rpc_client *cl = NULL;
        rpc_status st;

        st = rpc_client_open(url, NULL, &cl);
        if (st != RPC_OK) {
                return st;
        }
        st = rpc_health_call(cl, timeout_ms);
        rpc_client_free(cl);
        return st;
}
