/* test_rpc_integration.c: the RPC runtime across processes: rpc_test_server over tcp and ipc. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "echo_service.h"
#include "rpc.h"
#include "rpc_test_util.h"

#define RECV_MAX 65536
#define CALL_TIMEOUT_MS 20000

static const char *server_path;

/* How a test wants its server. */
typedef struct server_spec {
        int workers;
        const char *faults;
        uint64_t seed;
} server_spec;

/* A running rpc_test_server and the URLs it listens on. */
typedef struct server_proc {
        const server_spec *spec;
        pid_t pid;
        int out_fd;
        char tcp[64];
        char ipc_path[128];
        char ipc[160];
        const char *urls[2];
} server_proc;

/* --- the server process --- */

static bool
read_ready(int fd, int64_t timeout_ms)
{
        char buf[256];
        size_t len = 0;
        int64_t end = rpc_now_mono_ms() + timeout_ms;

        for (;;) {
                int64_t left = end - rpc_now_mono_ms();
                struct pollfd pfd = { .fd = fd, .events = POLLIN };

                if (left <= 0) {
                        return false;
                }
                int rv = poll(&pfd, 1, (int) left);
                if (rv < 0 && errno == EINTR) {
                        continue;
                }
                if (rv <= 0) {
                        return false;
                }
                ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (n <= 0) {
                        return false; /* the server died before it was ready */
                }
                len += (size_t) n;
                buf[len] = '\0';
                if (strstr(buf, "ready\n") != NULL) {
                        return true;
                }
                if (len == sizeof(buf) - 1) {
                        return false;
                }
        }
}

/* Waits up to timeout_ms for the process to end; returns its wait status, or -1. */
static int
wait_exit(pid_t pid, int64_t timeout_ms)
{
        int64_t end = rpc_now_mono_ms() + timeout_ms;
        int status;

        while (rpc_now_mono_ms() < end) {
                pid_t r = waitpid(pid, &status, WNOHANG);

                if (r == pid) {
                        return status;
                }
                if (r < 0 && errno != EINTR) {
                        return -1;
                }
                usleep(10000);
        }
        return -1;
}

static int
server_setup(void **state)
{
        const server_spec *spec = *state;
        server_proc *sp = rpc_xcalloc(1, sizeof(*sp));
        char workers[16], recv_max[16], seed[32];
        const char *argv[16];
        int argc = 0;
        int out[2];

        sp->spec = spec;
        sp->pid = -1;
        sp->out_fd = -1;
        snprintf(sp->tcp, sizeof(sp->tcp), "tcp://127.0.0.1:%d", rpc_test_free_port());
        rpc_test_unique(sp->ipc_path, sizeof(sp->ipc_path), "/tmp/mercato-rpc-it");
        snprintf(sp->ipc, sizeof(sp->ipc), "ipc://%s.sock", sp->ipc_path);
        sp->urls[0] = sp->tcp;
        sp->urls[1] = sp->ipc;
        snprintf(workers, sizeof(workers), "%d", spec->workers > 0 ? spec->workers : 4);
        snprintf(recv_max, sizeof(recv_max), "%d", RECV_MAX);
        snprintf(seed, sizeof(seed), "%llu", (unsigned long long) spec->seed);

        argv[argc++] = server_path;
        argv[argc++] = "--listen";
        argv[argc++] = sp->tcp;
        argv[argc++] = "--listen";
        argv[argc++] = sp->ipc;
        argv[argc++] = "--workers";
        argv[argc++] = workers;
        argv[argc++] = "--recv-max";
        argv[argc++] = recv_max;
        if (spec->faults != NULL) {
                argv[argc++] = "--faults";
                argv[argc++] = spec->faults;
                argv[argc++] = "--fault-seed";
                argv[argc++] = seed;
        }
        argv[argc] = NULL;

        if (pipe2(out, O_CLOEXEC) != 0) {
                free(sp);
                return -1;
        }
        pid_t parent = getpid();
        sp->pid = fork();
        if (sp->pid < 0) {
                close(out[0]);
                close(out[1]);
                free(sp);
                return -1;
        }
        if (sp->pid == 0) {
                /* The server dies with us, however we die. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent) {
                        _exit(127);
                }
                dup2(out[1], STDOUT_FILENO);
                execv(server_path, (char *const *) argv);
                _exit(127);
        }
        close(out[1]);
        sp->out_fd = out[0];
        if (!read_ready(sp->out_fd, 15000)) {
                /* cmocka runs no teardown after a failed setup: clean up here. */
                fprintf(stderr, "rpc_test_server (%s) did not become ready\n", server_path);
                kill(sp->pid, SIGKILL);
                waitpid(sp->pid, NULL, 0);
                close(sp->out_fd);
                free(sp);
                return -1;
        }
        *state = sp;
        return 0;
}

/* Stops the server with SIGTERM; returns its wait status (0 if it was already stopped), or
 * -1 if it had to be killed. */
static int
server_stop(server_proc *sp)
{
        int status = 0;

        if (sp->pid > 0) {
                kill(sp->pid, SIGTERM);
                status = wait_exit(sp->pid, 20000);
                if (status == -1) {
                        kill(sp->pid, SIGKILL);
                        waitpid(sp->pid, NULL, 0);
                }
                sp->pid = -1;
        }
        return status;
}

static int
server_teardown(void **state)
{
        server_proc *sp = *state;
        int status;
        int rc = 0;

        /* Runs after the test, passed or failed: the server never outlives it. */
        status = server_stop(sp);
        if (status == -1 || !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
                fprintf(stderr, "rpc_test_server ended with wait status %d\n", status);
                rc = -1;
        }
        if (sp->out_fd >= 0) {
                close(sp->out_fd);
        }
        char path[200];
        snprintf(path, sizeof(path), "%s.sock", sp->ipc_path);
        unlink(path);
        free(sp);
        return rc;
}

/* --- helpers --- */

static rpc_client *
client_for(const char *url)
{
        rpc_client_opts opts = { .timeout_ms = CALL_TIMEOUT_MS, .breaker_threshold = 1000 };

        return rpc_test_client(url, &opts);
}

/* Calls Echo and returns the status; on OK *ret (if not NULL) gets the reply. */
static rpc_status
echo(rpc_client *c, const char *method, const char *text, int64_t sleep_ms,
    const rpc_call_opts *opts, Mercato__Test__V1__EchoReply **ret, rpc_error *err)
{
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts def = { .timeout_ms = CALL_TIMEOUT_MS, .no_retry = true };
        rpc_status st;

        er.text = (char *) text;
        er.sleep_ms = sleep_ms;
        st = rpc_client_call(c, method, &er.base, &mercato__test__v1__echo_reply__descriptor, &resp,
            opts != NULL ? opts : &def, err);
        if (st == RPC_OK) {
                assert_string_equal(((Mercato__Test__V1__EchoReply *) resp)->text, text);
        }
        if (ret != NULL && st == RPC_OK) {
                *ret = (Mercato__Test__V1__EchoReply *) resp;
        } else if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return st;
}

static int64_t
count_of(rpc_client *c, const char *text)
{
        Mercato__Test__V1__CountRequest cr = MERCATO__TEST__V1__COUNT_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = CALL_TIMEOUT_MS };
        rpc_error e = { 0 };
        int64_t n;

        cr.text = (char *) text;
        if (rpc_client_call(c, ECHO_METHOD_COUNT, &cr.base,
                &mercato__test__v1__count_reply__descriptor, &resp, &opts, &e)
            != RPC_OK) {
                fail_msg("Count: %s: %s", rpc_status_name(e.code), e.message);
        }
        n = ((Mercato__Test__V1__CountReply *) resp)->calls;
        protobuf_c_message_free_unpacked(resp, NULL);
        return n;
}

/* The good call that follows every bad one: it must succeed. */
static void
good_call(rpc_client *c, const char *tag)
{
        char text[128];

        snprintf(text, sizeof(text), "good-after-%s", tag);
        rpc_test_echo_ok(c, text);
}

/* The good call after nng dropped the connection: the client must reconnect on its own, and
 * a reconnect may outlast the 2 s a call waits for a connection on a loaded machine. Only
 * UNAVAILABLE ("cannot reach") is waited out, for at most 10 s; any other status, or a
 * wrong text, fails. */
static void
good_call_after_drop(rpc_client *c, const char *tag)
{
        Mercato__Test__V1__EchoRequest req = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        rpc_call_opts opts = { .timeout_ms = 10000 };
        int64_t until = rpc_now_mono_ms() + 10000;
        char text[128];
        rpc_error err = { 0 };
        rpc_status st;

        snprintf(text, sizeof(text), "good-after-%s", tag);
        req.text = text;
        for (;;) {
                ProtobufCMessage *resp = NULL;

                st = rpc_client_call(c, ECHO_METHOD_ECHO, &req.base,
                    &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &err);
                if (st == RPC_OK) {
                        assert_string_equal(((Mercato__Test__V1__EchoReply *) resp)->text, text);
                        protobuf_c_message_free_unpacked(resp, NULL);
                        return;
                }
                if (st != RPC_UNAVAILABLE || rpc_now_mono_ms() >= until) {
                        fail_msg("echo '%s': %s: %s", text, rpc_status_name(st), err.message);
                }
                usleep(50 * 1000);
        }
}

/* Sends a raw frame and returns the reply's status, asserting that a reply came. */
static rpc_status
send_raw(rpc_client *c, const uint8_t *frame, size_t len, char *msg, size_t msglen)
{
        Mercato__Rpc__V1__Reply *reply = NULL;
        rpc_status st = rpc_test_send_frame(c, frame, len, CALL_TIMEOUT_MS, &reply);

        snprintf(msg, msglen, "%s",
            reply->status != NULL && reply->status->message != NULL ? reply->status->message : "");
        if (st != RPC_OK) {
                assert_int_equal(reply->payload.len, 0);
        }
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        return st;
}

/* --- concurrency --- */

#define N_THREADS 64
#define N_SHARED 32 /* threads that share one client; the rest open their own */
#define CALLS_PER_THREAD 20

typedef struct conc_shared {
        const char *url;
        rpc_client *shared;
        pthread_mutex_t mu;
        int errors;
        char first_error[512];
        char *ids[N_THREADS * CALLS_PER_THREAD];
        size_t n_ids;
        int ok;
} conc_shared;

typedef struct conc_arg {
        conc_shared *sh;
        int index;
} conc_arg;

static void conc_error(conc_shared *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
conc_error(conc_shared *sh, const char *fmt, ...)
{
        va_list ap;

        pthread_mutex_lock(&sh->mu);
        if (sh->errors++ == 0) {
                va_start(ap, fmt);
                vsnprintf(sh->first_error, sizeof(sh->first_error), fmt, ap);
                va_end(ap);
        }
        pthread_mutex_unlock(&sh->mu);
}

/* Even threads call through the client API with their own trace id and idempotency key; odd
 * ones send whole frames with their own request id. Each checks every field it chose. */
static void *
conc_thread(void *p)
{
        conc_arg *a = p;
        conc_shared *sh = a->sh;
        rpc_client *c = sh->shared;
        rpc_client_opts copts = { .timeout_ms = CALL_TIMEOUT_MS, .breaker_threshold = 1000 };

        if (a->index >= N_SHARED && rpc_client_open(sh->url, &copts, &c) != RPC_OK) {
                conc_error(sh, "thread %d: cannot open a client", a->index);
                return NULL;
        }
        for (int i = 0; i < CALLS_PER_THREAD; i++) {
                char text[96], tag[96];
                Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
                Mercato__Test__V1__EchoReply *rep = NULL;

                snprintf(text, sizeof(text), "conc-%s-%d-%d", sh->url, a->index, i);
                er.text = text;
                if (a->index % 2 == 0) {
                        char key[96];
                        rpc_call_opts opts = { .timeout_ms = CALL_TIMEOUT_MS,
                                .trace_id = tag,
                                .idempotency_key = key };
                        ProtobufCMessage *resp = NULL;
                        rpc_error e = { 0 };

                        snprintf(tag, sizeof(tag), "trace-%d-%d", a->index, i);
                        snprintf(key, sizeof(key), "key-%d-%d", a->index, i);
                        if (rpc_client_call(c, ECHO_METHOD_ECHO, &er.base,
                                &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e)
                            != RPC_OK) {
                                conc_error(
                                    sh, "%s: %s: %s", text, rpc_status_name(e.code), e.message);
                                continue;
                        }
                        rep = (Mercato__Test__V1__EchoReply *) resp;
                        if (strcmp(rep->trace_id, tag) != 0
                            || strcmp(rep->idempotency_key, key) != 0
                            || rep->request_id[0] == '\0') {
                                conc_error(sh, "%s: got trace %s key %s for %s %s", text,
                                    rep->trace_id, rep->idempotency_key, tag, key);
                        }
                        pthread_mutex_lock(&sh->mu);
                        sh->ids[sh->n_ids++] = rpc_xstrdup(rep->request_id);
                        pthread_mutex_unlock(&sh->mu);
                } else {
                        uint8_t *frame, *out = NULL;
                        size_t len, out_len = 0;
                        Mercato__Rpc__V1__Reply *reply = NULL;
                        ProtobufCMessage *msg = NULL;
                        char err[256];

                        snprintf(tag, sizeof(tag), "rid-%d-%d", a->index, i);
                        frame = rpc_test_request_frame(ECHO_METHOD_ECHO, &er.base, 0, tag, &len);
                        rpc_status st
                            = rpc_client_send_frame(c, frame, len, CALL_TIMEOUT_MS, &out, &out_len);
                        free(frame);
                        if (st != RPC_OK) {
                                conc_error(sh, "%s: send_frame: %s", text, rpc_status_name(st));
                                continue;
                        }
                        st = rpc_envelope_decode_reply(
                            out, out_len, 1 << 20, &reply, err, sizeof(err));
                        free(out);
                        if (st != RPC_OK || (reply->status != NULL && reply->status->code != 0)) {
                                conc_error(sh, "%s: bad reply", text);
                                if (reply != NULL) {
                                        protobuf_c_message_free_unpacked(&reply->base, NULL);
                                }
                                continue;
                        }
                        st = rpc_payload_unpack(&mercato__test__v1__echo_reply__descriptor,
                            reply->payload.data, reply->payload.len, &msg, err, sizeof(err));
                        protobuf_c_message_free_unpacked(&reply->base, NULL);
                        if (st != RPC_OK) {
                                conc_error(sh, "%s: payload: %s", text, err);
                                continue;
                        }
                        rep = (Mercato__Test__V1__EchoReply *) msg;
                        if (strcmp(rep->request_id, tag) != 0) {
                                conc_error(sh, "%s: got request id %s, sent %s", text,
                                    rep->request_id, tag);
                        }
                }
                if (strcmp(rep->text, text) != 0) {
                        conc_error(sh, "sent %s, got the reply for %s", text, rep->text);
                }
                if (rep->calls != 1) {
                        conc_error(sh, "%s ran %lld times", text, (long long) rep->calls);
                }
                protobuf_c_message_free_unpacked(&rep->base, NULL);
                pthread_mutex_lock(&sh->mu);
                sh->ok++;
                pthread_mutex_unlock(&sh->mu);
        }
        if (c != sh->shared) {
                rpc_client_free(c);
        }
        return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
run_concurrent(const char *url)
{
        conc_shared *sh = rpc_xcalloc(1, sizeof(*sh));
        pthread_t threads[N_THREADS];
        conc_arg args[N_THREADS];

        sh->url = url;
        sh->shared = client_for(url);
        pthread_mutex_init(&sh->mu, NULL);
        for (int i = 0; i < N_THREADS; i++) {
                args[i] = (conc_arg) { .sh = sh, .index = i };
                assert_int_equal(pthread_create(&threads[i], NULL, conc_thread, &args[i]), 0);
        }
        for (int i = 0; i < N_THREADS; i++) {
                pthread_join(threads[i], NULL);
        }
        if (sh->errors != 0) {
                fail_msg("%s: %d errors; the first: %s", url, sh->errors, sh->first_error);
        }
        assert_int_equal(sh->ok, N_THREADS * CALLS_PER_THREAD);
        /* The client gave every call its own request id. */
        assert_int_equal(sh->n_ids, N_THREADS / 2 * CALLS_PER_THREAD);
        qsort(sh->ids, sh->n_ids, sizeof(char *), cmp_str);
        for (size_t i = 1; i < sh->n_ids; i++) {
                assert_string_not_equal(sh->ids[i - 1], sh->ids[i]);
        }
        for (size_t i = 0; i < sh->n_ids; i++) {
                free(sh->ids[i]);
        }
        rpc_client_free(sh->shared);
        pthread_mutex_destroy(&sh->mu);
        free(sh);
}

/* 64 threads, half on one shared client and half on their own, each get exactly their own
 * replies over tcp. */
static void
test_rpc_integration_concurrent_replies_matched_tcp(void **state)
{
        server_proc *sp = *state;

        run_concurrent(sp->tcp);
}

/* The same over ipc. */
static void
test_rpc_integration_concurrent_replies_matched_ipc(void **state)
{
        server_proc *sp = *state;

        run_concurrent(sp->ipc);
}

/* --- deferred replies and deadlines --- */

typedef struct defer_arg {
        rpc_client *c;
        rpc_status st;
        int64_t elapsed_ms;
        _Atomic bool done;
} defer_arg;

static void *
defer_thread(void *p)
{
        defer_arg *a = p;
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = CALL_TIMEOUT_MS, .no_retry = true };
        rpc_error e = { 0 };
        int64_t t0 = rpc_now_mono_ms();

        er.text = (char *) "deferred-long";
        er.sleep_ms = 2000;
        a->st = rpc_client_call(a->c, ECHO_METHOD_DEFER, &er.base,
            &mercato__test__v1__echo_reply__descriptor, &resp, &opts, &e);
        if (a->st == RPC_OK
            && strcmp(((Mercato__Test__V1__EchoReply *) resp)->text, "deferred-long") != 0) {
                a->st = RPC_INTERNAL;
        }
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        a->elapsed_ms = rpc_now_mono_ms() - t0;
        atomic_store(&a->done, true);
        return NULL;
}

/* A deferred reply arrives after the handler's thread finishes it, carrying what the handler
 * filled in; while it waits it holds no worker: the server's only worker answers Echo. */
static void
test_rpc_integration_deferred_reply(void **state)
{
        server_proc *sp = *state;
        rpc_client *c = client_for(sp->tcp);
        Mercato__Test__V1__EchoReply *rep = NULL;
        rpc_error e = { 0 };
        int64_t t0 = rpc_now_mono_ms();

        assert_int_equal(echo(c, ECHO_METHOD_DEFER, "deferred-short", 300, NULL, &rep, &e), RPC_OK);
        assert_true(rpc_now_mono_ms() - t0 >= 300);
        assert_string_equal(rep->method, ECHO_METHOD_DEFER);
        assert_true(rep->request_id[0] != '\0');
        protobuf_c_message_free_unpacked(&rep->base, NULL);

        defer_arg da = { .c = c };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, defer_thread, &da), 0);
        usleep(200000); /* let the Defer request reach the worker first */
        for (int i = 0; i < 5; i++) {
                good_call(c, "defer");
        }
        bool finished_first = atomic_load(&da.done);
        pthread_join(t, NULL);
        assert_false(finished_first);
        assert_int_equal(da.st, RPC_OK);
        assert_true(da.elapsed_ms >= 2000);
        rpc_client_free(c);
}

/* A handler slower than the call's timeout gives DEADLINE_EXCEEDED, and the server answers the
 * next call. */
static void
test_rpc_integration_deadline_exceeded(void **state)
{
        server_proc *sp = *state;

        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);
                rpc_call_opts opts = { .timeout_ms = 300, .no_retry = true };
                rpc_error e = { 0 };
                int64_t t0 = rpc_now_mono_ms();

                assert_int_equal(echo(c, ECHO_METHOD_ECHO, "slow", 3000, &opts, NULL, &e),
                    RPC_DEADLINE_EXCEEDED);
                assert_int_equal(e.code, RPC_DEADLINE_EXCEEDED);
                assert_true(rpc_now_mono_ms() - t0 < 2500);
                good_call(c, "deadline");
                rpc_client_free(c);
        }
}

/* --- bad input: each answered with a clear status, then a good call succeeds --- */

static void
test_rpc_integration_garbage_invalid_argument(void **state)
{
        server_proc *sp = *state;
        static const char http[] = "GET / HTTP/1.1\r\nHost: mercato\r\n\r\n";
        uint8_t ff[256];
        char msg[256];

        memset(ff, 0xff, sizeof(ff));
        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);

                assert_int_equal(
                    send_raw(c, ff, sizeof(ff), msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
                assert_true(msg[0] != '\0');
                good_call(c, "garbage-ff");
                assert_int_equal(
                    send_raw(c, (const uint8_t *) http, sizeof(http) - 1, msg, sizeof(msg)),
                    RPC_INVALID_ARGUMENT);
                good_call(c, "garbage-http");
                /* An empty frame has no method. */
                assert_int_equal(
                    send_raw(c, (const uint8_t *) "", 0, msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
                good_call(c, "garbage-empty");
                rpc_client_free(c);
        }
}

static uint8_t *
echo_frame(const char *text, size_t blob_len, size_t *ret_len)
{
        Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
        uint8_t *blob = rpc_xcalloc(1, blob_len);
        uint8_t *frame;

        er.text = (char *) text;
        er.blob.data = blob;
        er.blob.len = blob_len;
        frame = rpc_test_request_frame(ECHO_METHOD_ECHO, &er.base, 0, "req-bad", ret_len);
        free(blob);
        return frame;
}

/* An envelope cut in the middle of its payload field is INVALID_ARGUMENT, and Echo never
 * runs for it. */
static void
test_rpc_integration_truncated_envelope_invalid_argument(void **state)
{
        server_proc *sp = *state;
        char msg[256];

        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);
                char text[64];
                size_t len;

                snprintf(text, sizeof(text), "truncated-envelope-%d", u);
                uint8_t *frame = echo_frame(text, 200, &len);
                /* Cut at several depths inside the frame. */
                static const double cuts[] = { 0.95, 0.5, 0.2 };
                for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
                        size_t cut = (size_t) ((double) len * cuts[k]);

                        assert_int_equal(
                            send_raw(c, frame, cut, msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
                        assert_true(msg[0] != '\0');
                        good_call(c, "truncated-envelope");
                }
                assert_int_equal(count_of(c, text), 0);
                free(frame);
                rpc_client_free(c);
        }
}

/* A whole envelope around a truncated payload is INVALID_ARGUMENT, and Echo never runs. */
static void
test_rpc_integration_truncated_payload_invalid_argument(void **state)
{
        server_proc *sp = *state;
        char msg[256];

        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);
                Mercato__Test__V1__EchoRequest er = MERCATO__TEST__V1__ECHO_REQUEST__INIT;
                Mercato__Rpc__V1__Request req = MERCATO__RPC__V1__REQUEST__INIT;
                char text[64];
                size_t plen, len;

                snprintf(text, sizeof(text), "truncated-payload-%d", u);
                er.text = text;
                er.sleep_ms = 1;
                uint8_t *payload = rpc_pack(&er.base, &plen);
                req.method = (char *) ECHO_METHOD_ECHO;
                req.payload.data = payload;
                req.payload.len = 6; /* inside the text field */
                uint8_t *frame = rpc_pack(&req.base, &len);

                assert_int_equal(send_raw(c, frame, len, msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
                assert_true(msg[0] != '\0');
                good_call(c, "truncated-payload");
                assert_int_equal(count_of(c, text), 0);
                free(frame);
                free(payload);
                rpc_client_free(c);
        }
}

static void
test_rpc_integration_unknown_method_unimplemented(void **state)
{
        server_proc *sp = *state;
        char msg[256];

        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);
                size_t len;
                uint8_t *frame = rpc_test_request_frame(
                    "/mercato.test.v1.EchoService/Shout", NULL, 0, "req-unknown", &len);

                assert_int_equal(send_raw(c, frame, len, msg, sizeof(msg)), RPC_UNIMPLEMENTED);
                good_call(c, "unknown-frame");
                free(frame);

                /* The same through the client. */
                rpc_call_opts opts = { .timeout_ms = CALL_TIMEOUT_MS };
                rpc_error e = { 0 };
                uint8_t *out = NULL;
                size_t out_len = 0;
                assert_int_equal(rpc_client_call_raw(c, "/mercato.nothing.v1.Nothing/Nothing", NULL,
                                     0, &opts, &out, &out_len, &e),
                    RPC_UNIMPLEMENTED);
                good_call(c, "unknown-call");
                rpc_client_free(c);
        }
}

/* A frame above recv_max but within twice it is answered RESOURCE_EXHAUSTED; Echo never runs. */
static void
test_rpc_integration_oversized_resource_exhausted(void **state)
{
        server_proc *sp = *state;
        char msg[256];

        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);
                char text[64];
                size_t len;

                snprintf(text, sizeof(text), "oversized-%d", u);
                uint8_t *frame = echo_frame(text, RECV_MAX + RECV_MAX / 2, &len);
                assert_true(len > RECV_MAX && len < 2 * RECV_MAX);
                assert_int_equal(send_raw(c, frame, len, msg, sizeof(msg)), RPC_RESOURCE_EXHAUSTED);
                assert_true(msg[0] != '\0');
                free(frame);
                good_call(c, "oversized");
                assert_int_equal(count_of(c, text), 0);

                /* Just under the limit is fine. */
                frame = echo_frame(text, RECV_MAX - 200, &len);
                assert_true(len <= RECV_MAX);
                assert_int_equal(send_raw(c, frame, len, msg, sizeof(msg)), RPC_OK);
                free(frame);
                assert_int_equal(count_of(c, text), 1);
                rpc_client_free(c);
        }
}

/* A frame beyond twice recv_max gets no answer (nng drops the connection), and the server
 * is still up and answering afterwards, on the same client and on a new one. */
static void
test_rpc_integration_far_oversized_server_survives(void **state)
{
        server_proc *sp = *state;

        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);
                char text[64];
                size_t len;
                uint8_t *out = NULL;
                size_t out_len = 0;

                snprintf(text, sizeof(text), "far-oversized-%d", u);
                uint8_t *frame = echo_frame(text, 4 * RECV_MAX, &len);
                rpc_status st = rpc_client_send_frame(c, frame, len, 1500, &out, &out_len);
                assert_int_not_equal(st, RPC_OK);
                free(out);
                free(frame);
                good_call_after_drop(c, "far-oversized");
                rpc_client_free(c);

                c = client_for(sp->urls[u]);
                good_call_after_drop(c, "far-oversized-new-client");
                assert_int_equal(count_of(c, text), 0);
                assert_int_equal(kill(sp->pid, 0), 0);
                rpc_client_free(c);
        }
}

/* A payload of another message type is INVALID_ARGUMENT; Echo never runs. */
static void
test_rpc_integration_wrong_payload_type_invalid_argument(void **state)
{
        server_proc *sp = *state;
        char msg[256];

        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);
                Mercato__Test__V1__WrongRequest wr = MERCATO__TEST__V1__WRONG_REQUEST__INIT;
                size_t len;

                wr.note = (char *) "wrong-type";
                wr.weight = 3;
                uint8_t *frame
                    = rpc_test_request_frame(ECHO_METHOD_ECHO, &wr.base, 0, "req-wrong", &len);
                assert_int_equal(send_raw(c, frame, len, msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
                assert_true(msg[0] != '\0');
                free(frame);
                good_call(c, "wrong-type");
                rpc_client_free(c);
        }
}

/* --- fault rules, each in its own server --- */

/* drop: the caller sees its deadline pass; the handler never ran; other methods answer. */
static void
test_rpc_integration_fault_drop(void **state)
{
        server_proc *sp = *state;
        rpc_client *c = client_for(sp->tcp);
        rpc_call_opts opts = { .timeout_ms = 500, .no_retry = true };
        rpc_error e = { 0 };

        for (int i = 0; i < 3; i++) {
                assert_int_equal(echo(c, ECHO_METHOD_ECHO, "dropped", 0, &opts, NULL, &e),
                    RPC_DEADLINE_EXCEEDED);
                assert_int_equal(e.code, RPC_DEADLINE_EXCEEDED);
        }
        assert_int_equal(count_of(c, "dropped"), 0);
        /* Defer does not match the rule. */
        assert_int_equal(echo(c, ECHO_METHOD_DEFER, "not-dropped", 0, NULL, NULL, &e), RPC_OK);
        rpc_client_free(c);
}

/* delay: the reply comes, later than the delay. */
static void
test_rpc_integration_fault_delay(void **state)
{
        server_proc *sp = *state;
        rpc_client *c = client_for(sp->tcp);
        rpc_error e = { 0 };

        for (int i = 0; i < 3; i++) {
                int64_t t0 = rpc_now_mono_ms();

                assert_int_equal(echo(c, ECHO_METHOD_ECHO, "delayed", 0, NULL, NULL, &e), RPC_OK);
                assert_true(rpc_now_mono_ms() - t0 >= 400);
        }
        assert_int_equal(count_of(c, "delayed"), 3);
        rpc_client_free(c);
}

/* duplicate: one call runs the handler twice (one extra copy); the caller gets one reply. */
static void
test_rpc_integration_fault_duplicate(void **state)
{
        server_proc *sp = *state;
        rpc_client *c = client_for(sp->tcp);
        rpc_error e = { 0 };
        int64_t n = 0;

        assert_int_equal(echo(c, ECHO_METHOD_ECHO, "duplicated", 0, NULL, NULL, &e), RPC_OK);
        assert_int_equal(e.attempts, 1);
        /* The copy may finish after the reply: wait for it. */
        for (int i = 0; i < 500 && (n = count_of(c, "duplicated")) < 2; i++) {
                usleep(10000);
        }
        assert_int_equal(n, 2);
        usleep(300000);
        assert_int_equal(count_of(c, "duplicated"), 2);
        rpc_client_free(c);
}

#define FAIL_SPEC "/mercato.test.v1.EchoService/Echo fail 0.5 PERMISSION_DENIED"
#define FAIL_SEED 4242

/* fail: the seeded rule fails exactly the calls a local copy of it predicts, with the named
 * status, and those never reach the handler. */
static void
test_rpc_integration_fault_fail(void **state)
{
        server_proc *sp = *state;
        rpc_client *c = client_for(sp->tcp);
        rpc_faults *twin = NULL;
        char err[256];
        int failed = 0, passed = 0;

        assert_int_equal(rpc_faults_parse(FAIL_SPEC, FAIL_SEED, &twin, err, sizeof(err)), RPC_OK);
        for (int i = 0; i < 24; i++) {
                rpc_fault_decision d = rpc_faults_decide(twin, ECHO_METHOD_ECHO);
                rpc_error e = { 0 };
                rpc_status st = echo(c, ECHO_METHOD_ECHO, "maybe-failed", 0, NULL, NULL, &e);

                if (d.action == RPC_FAULT_FAIL) {
                        assert_int_equal(st, RPC_PERMISSION_DENIED);
                        assert_int_equal(e.code, RPC_PERMISSION_DENIED);
                        assert_true(e.message[0] != '\0');
                        failed++;
                } else {
                        assert_int_equal(st, RPC_OK);
                        passed++;
                }
        }
        assert_true(failed > 0 && passed > 0);
        assert_int_equal(count_of(c, "maybe-failed"), passed);
        rpc_faults_free(twin);
        rpc_client_free(c);
}

/* --- life cycle --- */

/* Health answers SERVING on both transports, and SIGTERM ends the server with status 0. */
static void
test_rpc_integration_health_then_sigterm_exits_cleanly(void **state)
{
        server_proc *sp = *state;

        for (int u = 0; u < 2; u++) {
                rpc_client *c = client_for(sp->urls[u]);
                Mercato__Rpc__V1__HealthRequest hreq = MERCATO__RPC__V1__HEALTH_REQUEST__INIT;
                ProtobufCMessage *resp = NULL;
                rpc_call_opts opts = { .timeout_ms = CALL_TIMEOUT_MS };
                rpc_error e = { 0 };

                assert_int_equal(
                    rpc_client_call(c, "/mercato.rpc.v1.StandardService/Health", &hreq.base,
                        &mercato__rpc__v1__health_response__descriptor, &resp, &opts, &e),
                    RPC_OK);
                assert_string_equal(((Mercato__Rpc__V1__HealthResponse *) resp)->status, "SERVING");
                assert_string_equal(
                    ((Mercato__Rpc__V1__HealthResponse *) resp)->service, "rpc_test_server");
                protobuf_c_message_free_unpacked(resp, NULL);
                rpc_client_free(c);
        }
        int status = server_stop(sp);
        assert_int_not_equal(status, -1);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static const server_spec spec_plain = { .workers = 4 };
static const server_spec spec_one_worker = { .workers = 1 };
static const server_spec spec_drop
    = { .workers = 2, .faults = "/mercato.test.v1.EchoService/Echo drop 1.0", .seed = 7 };
static const server_spec spec_delay
    = { .workers = 2, .faults = "/mercato.test.v1.EchoService/Echo delay 1.0 400", .seed = 7 };
static const server_spec spec_dup
    = { .workers = 2, .faults = "/mercato.test.v1.EchoService/Echo duplicate 1.0", .seed = 7 };
static const server_spec spec_failing = { .workers = 2, .faults = FAIL_SPEC, .seed = FAIL_SEED };

#define T(fn, spec)                                                                                \
        cmocka_unit_test_prestate_setup_teardown(                                                  \
            fn, server_setup, server_teardown, (void *) &(spec))

int
main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                T(test_rpc_integration_concurrent_replies_matched_tcp, spec_plain),
                T(test_rpc_integration_concurrent_replies_matched_ipc, spec_plain),
                T(test_rpc_integration_deferred_reply, spec_one_worker),
                T(test_rpc_integration_deadline_exceeded, spec_plain),
                T(test_rpc_integration_garbage_invalid_argument, spec_plain),
                T(test_rpc_integration_truncated_envelope_invalid_argument, spec_plain),
                T(test_rpc_integration_truncated_payload_invalid_argument, spec_plain),
                T(test_rpc_integration_unknown_method_unimplemented, spec_plain),
                T(test_rpc_integration_oversized_resource_exhausted, spec_plain),
                T(test_rpc_integration_far_oversized_server_survives, spec_plain),
                T(test_rpc_integration_wrong_payload_type_invalid_argument, spec_plain),
                T(test_rpc_integration_fault_drop, spec_drop),
                T(test_rpc_integration_fault_delay, spec_delay),
                T(test_rpc_integration_fault_duplicate, spec_dup),
                T(test_rpc_integration_fault_fail, spec_failing),
                T(test_rpc_integration_health_then_sigterm_exits_cleanly, spec_plain),
        };

        server_path = argc > 1 ? argv[1] : getenv("RPC_TEST_SERVER");
        if (server_path == NULL || access(server_path, X_OK) != 0) {
                fprintf(
                    stderr, "usage: %s RPC_TEST_SERVER_PATH (or set RPC_TEST_SERVER)\n", argv[0]);
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
