/* echo_service.c: EchoService handlers: Echo echoes, Defer replies from another thread, Count counts. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "echo_service.h"

/* One text and how many times Echo has run for it. */
typedef struct echo_count {
        struct echo_count *next;
        char *text;
        int64_t calls;
} echo_count;

#define ECHO_BUCKETS 1024

static pthread_mutex_t echo_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t echo_idle = PTHREAD_COND_INITIALIZER;
static echo_count *echo_table[ECHO_BUCKETS];
static int echo_deferred; /* deferred calls not yet finished */

static size_t
echo_hash(const char *s)
{
        size_t h = 5381;

        for (; *s != '\0'; s++) {
                h = h * 33 + (unsigned char) *s;
        }
        return h % ECHO_BUCKETS;
}

/* Adds delta to the count of text and returns the new count. Called with echo_lock held. */
static int64_t
echo_count_add_locked(const char *text, int64_t delta)
{
        size_t b = echo_hash(text);
        echo_count *c;

        for (c = echo_table[b]; c != NULL; c = c->next) {
                if (strcmp(c->text, text) == 0) {
                        c->calls += delta;
                        return c->calls;
                }
        }
        if (delta == 0) {
                return 0;
        }
        c = rpc_xcalloc(1, sizeof(*c));
        c->text = rpc_xstrdup(text);
        c->calls = delta;
        c->next = echo_table[b];
        echo_table[b] = c;
        return c->calls;
}

int64_t
echo_service_count(const char *text)
{
        int64_t n;

        pthread_mutex_lock(&echo_lock);
        n = echo_count_add_locked(text, 0);
        pthread_mutex_unlock(&echo_lock);
        return n;
}

void
echo_service_reset(void)
{
        pthread_mutex_lock(&echo_lock);
        for (size_t b = 0; b < ECHO_BUCKETS; b++) {
                echo_count *c = echo_table[b];

                while (c != NULL) {
                        echo_count *next = c->next;

                        free(c->text);
                        free(c);
                        c = next;
                }
                echo_table[b] = NULL;
        }
        pthread_mutex_unlock(&echo_lock);
}

void
echo_service_wait_idle(void)
{
        pthread_mutex_lock(&echo_lock);
        while (echo_deferred > 0) {
                pthread_cond_wait(&echo_idle, &echo_lock);
        }
        pthread_mutex_unlock(&echo_lock);
}

static void
echo_sleep_ms(int64_t ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

        while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) { }
}

/* Fills a reply from what the call and its request carry. */
static void
echo_fill(
    rpc_call *call, const Mercato__Test__V1__EchoRequest *req, Mercato__Test__V1__EchoReply *resp)
{
        const char *meta = rpc_call_metadata(call, "echo");

        resp->text = rpc_call_strdup(call, req->text);
        resp->request_id = rpc_call_strdup(call, rpc_call_request_id(call));
        resp->idempotency_key = rpc_call_strdup(call, rpc_call_idempotency_key(call));
        resp->trace_id = rpc_call_strdup(call, rpc_call_trace_id(call));
        resp->deadline_unix_ms = rpc_call_deadline_unix_ms(call);
        resp->blob_len = (int64_t) req->blob.len;
        resp->method = rpc_call_strdup(call, rpc_call_method(call));
        resp->metadata_echo = rpc_call_strdup(call, meta != NULL ? meta : "");
}

RPC_HANDLER(echo_echo, Mercato__Test__V1__EchoRequest, Mercato__Test__V1__EchoReply)
{
        int64_t calls;

        pthread_mutex_lock(&echo_lock);
        calls = echo_count_add_locked(req->text, 1);
        pthread_mutex_unlock(&echo_lock);

        if (req->sleep_ms > 0) {
                echo_sleep_ms(req->sleep_ms);
        }
        if (req->fail_code != 0) {
                return rpc_call_error(call, rpc_status_from_wire(req->fail_code),
                    "echo asked to fail with %d", (int) req->fail_code);
        }
        echo_fill(call, req, resp);
        resp->calls = calls;
        return RPC_OK;
}

/* A deferred call waiting for its reply on its own thread. */
typedef struct echo_later {
        rpc_call *call;
        int64_t sleep_ms;
        rpc_status status;
} echo_later;

static void *
echo_later_run(void *arg)
{
        echo_later *later = arg;

        echo_sleep_ms(later->sleep_ms);
        rpc_call_finish(later->call, later->status);
        free(later);

        pthread_mutex_lock(&echo_lock);
        echo_deferred--;
        pthread_cond_broadcast(&echo_idle);
        pthread_mutex_unlock(&echo_lock);
        return NULL;
}

RPC_HANDLER(echo_defer, Mercato__Test__V1__EchoRequest, Mercato__Test__V1__EchoReply)
{
        echo_later *later = rpc_xcalloc(1, sizeof(*later));
        pthread_attr_t attr;
        pthread_t tid;

        echo_fill(call, req, resp);
        later->call = call;
        later->sleep_ms = req->sleep_ms;
        later->status = RPC_OK;
        if (req->fail_code != 0) {
                later->status = rpc_status_from_wire(req->fail_code);
                rpc_call_set_message(call, "defer asked to fail with %d", (int) req->fail_code);
        }

        pthread_mutex_lock(&echo_lock);
        echo_deferred++;
        pthread_mutex_unlock(&echo_lock);

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&tid, &attr, echo_later_run, later) != 0) {
                pthread_attr_destroy(&attr);
                free(later);
                pthread_mutex_lock(&echo_lock);
                echo_deferred--;
                pthread_cond_broadcast(&echo_idle);
                pthread_mutex_unlock(&echo_lock);
                return rpc_call_error(call, RPC_RESOURCE_EXHAUSTED, "cannot start a thread");
        }
        pthread_attr_destroy(&attr);
        return RPC_DEFERRED;
}

RPC_HANDLER(echo_count_handler, Mercato__Test__V1__CountRequest, Mercato__Test__V1__CountReply)
{
        resp->calls = echo_service_count(req->text);
        return RPC_OK;
}

static const rpc_method echo_methods[] = {
        RPC_METHOD_ENTRY("Echo", echo_echo, mercato__test__v1__echo_request__descriptor,
            mercato__test__v1__echo_reply__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("Defer", echo_defer, mercato__test__v1__echo_request__descriptor,
            mercato__test__v1__echo_reply__descriptor, 0),
        RPC_METHOD_ENTRY("Count", echo_count_handler, mercato__test__v1__count_request__descriptor,
            mercato__test__v1__count_reply__descriptor, RPC_METHOD_IDEMPOTENT),
};

rpc_status
echo_service_add(rpc_server *srv, char *errbuf, size_t errlen)
{
        return rpc_server_add_service(srv, &mercato__test__v1__echo_service__descriptor,
            echo_methods, sizeof(echo_methods) / sizeof(echo_methods[0]), errbuf, errlen);
}
