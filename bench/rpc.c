/* rpc.c: `mercato-bench rpc`: Health round trips over tcp, ipc and inproc vs raw TCP and bare nng. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "bench.h"
#include "rpc.h"
#include "workload.h"

#define MAX_LIST 16
#define PING_SIZE 64
#define HEALTH "/mercato.rpc.v1.StandardService/Health"

typedef struct bench_opts {
        const char *transports[MAX_LIST];
        int n_transports;
        int clients[MAX_LIST];
        int n_clients;
        double duration_s;
        double warmup_s;
        int workers;
        const char *json_path;
} bench_opts;

/* Latencies in microseconds, growing as needed. */
typedef struct lat_vec {
        int64_t *v;
        size_t n;
        size_t cap;
} lat_vec;

static void
lat_push(lat_vec *l, int64_t us)
{
        if (l->n == l->cap) {
                l->cap = l->cap == 0 ? 4096 : l->cap * 2;
                l->v = rpc_xrealloc(l->v, l->cap * sizeof(int64_t));
        }
        l->v[l->n++] = us;
}

static int
cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

        return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted vector. */
static double
percentile(const lat_vec *l, double p)
{
        size_t rank;

        if (l->n == 0) {
                return 0.0;
        }
        rank = (size_t) (p * (double) l->n + 0.999999);
        rank = rank == 0 ? 1 : rank;
        return (double) l->v[(rank > l->n ? l->n : rank) - 1];
}

typedef struct result {
        char transport[16];
        int clients;
        uint64_t calls;
        uint64_t errors;
        double calls_per_s;
        double p50_us;
        double p99_us;
} result;

/* The measured window, shared by every thread of one run. */
typedef struct window {
        int64_t warm_end_us; /* monotonic: calls that start before this are warm-up */
        int64_t end_us;      /* calls that start after this are not made */
        pthread_barrier_t start;
} window;

/* --- the raw TCP baseline --- */

typedef struct echo_srv {
        int listen_fd;
        int port;
} echo_srv;

static bool
read_full(int fd, uint8_t *buf, size_t n)
{
        size_t got = 0;

        while (got < n) {
                ssize_t r = read(fd, buf + got, n - got);
                if (r < 0 && errno == EINTR) {
                        continue;
                }
                if (r <= 0) {
                        return false;
                }
                got += (size_t) r;
        }
        return true;
}

static bool
write_full(int fd, const uint8_t *buf, size_t n)
{
        size_t put = 0;

        while (put < n) {
                ssize_t w = write(fd, buf + put, n - put);
                if (w < 0 && errno == EINTR) {
                        continue;
                }
                if (w <= 0) {
                        return false;
                }
                put += (size_t) w;
        }
        return true;
}

static void
set_nodelay(int fd)
{
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void *
echo_thread(void *arg)
{
        echo_srv *es = arg;
        uint8_t buf[PING_SIZE];
        int fd = accept(es->listen_fd, NULL, NULL);

        if (fd < 0) {
                return NULL;
        }
        set_nodelay(fd);
        while (read_full(fd, buf, sizeof(buf)) && write_full(fd, buf, sizeof(buf))) { }
        close(fd);
        return NULL;
}

/* Listens on 127.0.0.1 at a port the kernel picks; returns the fd and sets *ret_port. */
static int
listen_loopback(int *ret_port)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t sl = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        if (fd < 0) {
                return -1;
        }
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 || listen(fd, 16) != 0
            || getsockname(fd, (struct sockaddr *) &sa, &sl) != 0) {
                close(fd);
                return -1;
        }
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static bool
bench_raw_tcp(const bench_opts *o, result *r)
{
        echo_srv es;
        pthread_t t;
        struct sockaddr_in sa = { .sin_family = AF_INET };
        uint8_t out[PING_SIZE], in[PING_SIZE];
        lat_vec lat = { 0 };
        int fd;

        es.listen_fd = listen_loopback(&es.port);
        if (es.listen_fd < 0) {
                return false;
        }
        if (pthread_create(&t, NULL, echo_thread, &es) != 0) {
                close(es.listen_fd);
                return false;
        }
        fd = socket(AF_INET, SOCK_STREAM, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) es.port);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
                fprintf(stderr, "mercato-bench: raw tcp connect: %s\n", strerror(errno));
                shutdown(es.listen_fd, SHUT_RDWR);
                close(es.listen_fd);
                pthread_join(t, NULL);
                return false;
        }
        set_nodelay(fd);
        memset(out, 'x', sizeof(out));

        int64_t warm_end = rpc_now_mono_us() + (int64_t) (o->warmup_s * 1e6);
        int64_t end = warm_end + (int64_t) (o->duration_s * 1e6);
        bool ok = true;
        for (;;) {
                int64_t t0 = rpc_now_mono_us();

                if (t0 >= end) {
                        break;
                }
                if (!write_full(fd, out, sizeof(out)) || !read_full(fd, in, sizeof(in))) {
                        ok = false;
                        break;
                }
                if (t0 >= warm_end) {
                        lat_push(&lat, rpc_now_mono_us() - t0);
                }
        }
        close(fd);
        pthread_join(t, NULL);
        close(es.listen_fd);

        qsort(lat.v, lat.n, sizeof(int64_t), cmp_i64);
        *r = (result) { .transport = "raw-tcp", .clients = 1, .calls = lat.n };
        r->calls_per_s = (double) lat.n / o->duration_s;
        r->p50_us = percentile(&lat, 0.50);
        r->p99_us = percentile(&lat, 0.99);
        free(lat.v);
        return ok;
}

/* --- the bare nng baseline: REQ/REP over tcp with no envelope, no dispatch, no worker --- */

typedef struct nng_echo {
        nng_socket sock;
} nng_echo;

static void *
nng_echo_thread(void *arg)
{
        nng_echo *e = arg;

        for (;;) {
                nng_msg *m = NULL;
                if (nng_recvmsg(e->sock, &m, 0) != 0) {
                        break;
                }
                if (nng_sendmsg(e->sock, m, 0) != 0) {
                        nng_msg_free(m);
                }
        }
        return NULL;
}

/* What nng itself costs on this machine: the floor under any runtime built on it. */
static bool
bench_raw_nng(const bench_opts *o, result *r)
{
        nng_echo e;
        nng_socket req;
        pthread_t t;
        lat_vec lat = { 0 };
        char url[64];
        int port = 0;
        int fd = listen_loopback(&port);
        bool ok = true;

        if (fd < 0) {
                return false;
        }
        close(fd);
        snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
        if (nng_rep0_open(&e.sock) != 0 || nng_listen(e.sock, url, NULL, 0) != 0) {
                return false;
        }
        if (pthread_create(&t, NULL, nng_echo_thread, &e) != 0) {
                nng_close(e.sock);
                return false;
        }
        if (nng_req0_open(&req) != 0 || nng_dial(req, url, NULL, 0) != 0) {
                nng_close(e.sock);
                pthread_join(t, NULL);
                return false;
        }
        int64_t warm_end = rpc_now_mono_us() + (int64_t) (o->warmup_s * 1e6);
        int64_t end = warm_end + (int64_t) (o->duration_s * 1e6);
        for (;;) {
                int64_t t0 = rpc_now_mono_us();
                nng_msg *m = NULL;

                if (t0 >= end) {
                        break;
                }
                if (nng_msg_alloc(&m, PING_SIZE) != 0 || nng_sendmsg(req, m, 0) != 0
                    || nng_recvmsg(req, &m, 0) != 0) {
                        ok = false;
                        break;
                }
                nng_msg_free(m);
                if (t0 >= warm_end) {
                        lat_push(&lat, rpc_now_mono_us() - t0);
                }
        }
        nng_close(req);
        nng_close(e.sock);
        pthread_join(t, NULL);

        qsort(lat.v, lat.n, sizeof(int64_t), cmp_i64);
        *r = (result) { .transport = "raw-nng", .clients = 1, .calls = lat.n };
        r->calls_per_s = (double) lat.n / o->duration_s;
        r->p50_us = percentile(&lat, 0.50);
        r->p99_us = percentile(&lat, 0.99);
        free(lat.v);
        return ok;
}

/* --- RPC round trips --- */

typedef struct client_arg {
        const char *url;
        window *w;
        lat_vec lat;
        uint64_t errors;
        rpc_client *client;
} client_arg;

static rpc_status
health_call(rpc_client *c)
{
        Mercato__Rpc__V1__HealthRequest req = MERCATO__RPC__V1__HEALTH_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        rpc_call_opts opts = { .timeout_ms = 5000, .no_retry = true };
        rpc_status st;

        st = rpc_client_call(c, HEALTH, &req.base, &mercato__rpc__v1__health_response__descriptor,
            &resp, &opts, NULL);
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return st;
}

static void *
client_thread(void *p)
{
        client_arg *a = p;

        pthread_barrier_wait(&a->w->start);
        for (;;) {
                int64_t t0 = rpc_now_mono_us();

                if (t0 >= a->w->end_us) {
                        break;
                }
                rpc_status st = health_call(a->client);
                if (t0 < a->w->warm_end_us) {
                        continue;
                }
                if (st != RPC_OK) {
                        a->errors++;
                        continue;
                }
                lat_push(&a->lat, rpc_now_mono_us() - t0);
        }
        return NULL;
}

static bool
bench_rpc_run(const bench_opts *o, const char *transport, const char *url, int n_clients, result *r)
{
        client_arg *args = rpc_xcalloc((size_t) n_clients, sizeof(*args));
        pthread_t *threads = rpc_xcalloc((size_t) n_clients, sizeof(*threads));
        rpc_client_opts copts = { .timeout_ms = 5000 };
        window w;
        lat_vec all = { 0 };
        bool ok = true;
        int started = 0;

        /* Connect every client before the clock starts. */
        for (int i = 0; i < n_clients; i++) {
                args[i].url = url;
                args[i].w = &w;
                if (rpc_client_open(url, &copts, &args[i].client) != RPC_OK
                    || health_call(args[i].client) != RPC_OK) {
                        fprintf(stderr, "mercato-bench: cannot call Health at %s\n", url);
                        ok = false;
                        break;
                }
        }
        if (ok) {
                pthread_barrier_init(&w.start, NULL, (unsigned) n_clients + 1);
                w.warm_end_us = INT64_MAX;
                w.end_us = INT64_MAX;
                for (int i = 0; i < n_clients; i++) {
                        if (pthread_create(&threads[i], NULL, client_thread, &args[i]) != 0) {
                                fprintf(stderr, "mercato-bench: cannot start a thread\n");
                                abort();
                        }
                        started++;
                }
                w.warm_end_us = rpc_now_mono_us() + (int64_t) (o->warmup_s * 1e6);
                w.end_us = w.warm_end_us + (int64_t) (o->duration_s * 1e6);
                pthread_barrier_wait(&w.start);
                for (int i = 0; i < started; i++) {
                        pthread_join(threads[i], NULL);
                }
                pthread_barrier_destroy(&w.start);
        }

        *r = (result) { .clients = n_clients };
        snprintf(r->transport, sizeof(r->transport), "%s", transport);
        for (int i = 0; i < n_clients; i++) {
                for (size_t k = 0; k < args[i].lat.n; k++) {
                        lat_push(&all, args[i].lat.v[k]);
                }
                r->errors += args[i].errors;
                free(args[i].lat.v);
                rpc_client_free(args[i].client);
        }
        qsort(all.v, all.n, sizeof(int64_t), cmp_i64);
        r->calls = all.n;
        r->calls_per_s = (double) all.n / o->duration_s;
        r->p50_us = percentile(&all, 0.50);
        r->p99_us = percentile(&all, 0.99);
        free(all.v);
        free(args);
        free(threads);
        return ok;
}

/* --- options and output --- */

static void
usage(FILE *out)
{
        fprintf(out,
            "usage: mercato-bench rpc [--transports tcp,ipc,inproc] [--clients 1,16]\n"
            "                         [--duration SECONDS] [--warmup SECONDS] [--workers N]\n"
            "                         [--json FILE]\n"
            "Calls Health on an in-process server over each transport with each number of\n"
            "closed-loop clients, and compares the median with a raw TCP ping-pong of %d-byte\n"
            "messages (TCP_NODELAY, one client) measured in the same run.\n",
            PING_SIZE);
}

/* Splits a comma list in place into items; returns the count or -1 if there are too many. */
static int
split_list(char *s, const char **items)
{
        int n = 0;
        char *save = NULL;

        for (char *t = strtok_r(s, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
                if (n == MAX_LIST) {
                        return -1;
                }
                items[n++] = t;
        }
        return n;
}

static bool
parse_opts(int argc, char **argv, bench_opts *o, char **ret_lists)
{
        static const struct option longopts[] = {
                { "transports", required_argument, NULL, 't' },
                { "clients", required_argument, NULL, 'c' },
                { "duration", required_argument, NULL, 'd' },
                { "warmup", required_argument, NULL, 'W' },
                { "workers", required_argument, NULL, 'w' },
                { "json", required_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        char *transports = rpc_xstrdup("tcp,ipc,inproc");
        char *clients = rpc_xstrdup("1,16");
        const char *items[MAX_LIST];
        double v;
        int opt, n;

        *o = (bench_opts) { .duration_s = 3, .warmup_s = 1, .workers = 2 };
        ret_lists[0] = transports;
        ret_lists[1] = clients;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (opt) {
                case 't':
                        free(transports);
                        transports = ret_lists[0] = rpc_xstrdup(optarg);
                        break;
                case 'c':
                        free(clients);
                        clients = ret_lists[1] = rpc_xstrdup(optarg);
                        break;
                case 'd':
                        if (!bench_parse_double(optarg, 0, HUGE_VAL, &o->duration_s)
                            || o->duration_s <= 0) {
                                fprintf(stderr, "mercato-bench rpc: bad --duration\n");
                                return false;
                        }
                        break;
                case 'W':
                        if (!bench_parse_double(optarg, 0, HUGE_VAL, &o->warmup_s)) {
                                fprintf(stderr, "mercato-bench rpc: bad --warmup\n");
                                return false;
                        }
                        break;
                case 'w':
                        if (!bench_parse_double(optarg, 1, 256, &v)) {
                                fprintf(stderr, "mercato-bench rpc: bad --workers\n");
                                return false;
                        }
                        o->workers = (int) v;
                        break;
                case 'j':
                        o->json_path = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        usage(stderr);
                        return false;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return false;
        }
        o->n_transports = split_list(transports, o->transports);
        for (int i = 0; i < o->n_transports; i++) {
                if (strcmp(o->transports[i], "tcp") != 0 && strcmp(o->transports[i], "ipc") != 0
                    && strcmp(o->transports[i], "inproc") != 0) {
                        fprintf(stderr, "mercato-bench rpc: unknown transport '%s'\n",
                            o->transports[i]);
                        return false;
                }
        }
        n = split_list(clients, items);
        for (int i = 0; i < n; i++) {
                if (!bench_parse_double(items[i], 1, 1024, &v)) {
                        fprintf(stderr, "mercato-bench rpc: bad client count '%s'\n", items[i]);
                        return false;
                }
                o->clients[i] = (int) v;
        }
        o->n_clients = n;
        if (o->n_transports <= 0 || o->n_clients <= 0) {
                fprintf(stderr, "mercato-bench rpc: empty --transports or --clients\n");
                return false;
        }
        return true;
}

static void
print_row(const result *r, double raw_p50, double nng_p50)
{
        printf("%-9s %7d %11.0f %9.1f %9.1f %8.2fx %8.2fx%s\n", r->transport, r->clients,
            r->calls_per_s, r->p50_us, r->p99_us, raw_p50 > 0 ? r->p50_us / raw_p50 : 0.0,
            nng_p50 > 0 ? r->p50_us / nng_p50 : 0.0, r->errors > 0 ? "  (errors)" : "");
}

static bool
write_json(const char *path, const bench_opts *o, const result *raw, const result *nng,
    const result *rs, int n)
{
        FILE *f = fopen(path, "w");

        if (f == NULL) {
                fprintf(stderr, "mercato-bench rpc: cannot write %s: %s\n", path, strerror(errno));
                return false;
        }
        fprintf(f, "{\n  \"benchmark\": \"rpc\",\n");
        fprintf(f,
            "  \"config\": {\"duration_s\": %g, \"warmup_s\": %g, \"workers\": %d, "
            "\"method\": \"%s\"},\n",
            o->duration_s, o->warmup_s, o->workers, HEALTH);
        fprintf(f,
            "  \"raw_tcp\": {\"clients\": 1, \"message_bytes\": %d, \"calls\": %llu, "
            "\"calls_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f},\n",
            PING_SIZE, (unsigned long long) raw->calls, raw->calls_per_s, raw->p50_us, raw->p99_us);
        fprintf(f,
            "  \"raw_nng_tcp\": {\"clients\": 1, \"message_bytes\": %d, \"calls\": %llu, "
            "\"calls_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f},\n",
            PING_SIZE, (unsigned long long) nng->calls, nng->calls_per_s, nng->p50_us, nng->p99_us);
        fprintf(f, "  \"results\": [\n");
        for (int i = 0; i < n; i++) {
                fprintf(f,
                    "    {\"transport\": \"%s\", \"clients\": %d, \"calls\": %llu, "
                    "\"errors\": %llu, \"calls_per_s\": %.1f, \"p50_us\": %.1f, "
                    "\"p99_us\": %.1f, \"p50_ratio_vs_raw_tcp\": %.3f, "
                    "\"p50_ratio_vs_raw_nng\": %.3f}%s\n",
                    rs[i].transport, rs[i].clients, (unsigned long long) rs[i].calls,
                    (unsigned long long) rs[i].errors, rs[i].calls_per_s, rs[i].p50_us,
                    rs[i].p99_us, raw->p50_us > 0 ? rs[i].p50_us / raw->p50_us : 0.0,
                    nng->p50_us > 0 ? rs[i].p50_us / nng->p50_us : 0.0, i + 1 < n ? "," : "");
        }
        fprintf(f, "  ]\n}\n");
        return fclose(f) == 0;
}

int
bench_rpc_main(int argc, char **argv)
{
        bench_opts o;
        char *lists[2] = { NULL, NULL };
        rpc_server *srv = NULL;
        result raw, nngr, *rs = NULL;
        char urls[3][128], err[256];
        int n = 0, rc = 1;
        int port = 0;

        if (!parse_opts(argc, argv, &o, lists)) {
                goto out;
        }

        /* One server listens on every transport asked for. */
        rpc_server_opts sopts = { .name = "bench", .workers = o.workers };
        if (rpc_server_new(&sopts, &srv) != RPC_OK) {
                fprintf(stderr, "mercato-bench rpc: cannot create the server\n");
                goto out;
        }
        int fd = listen_loopback(&port);
        if (fd < 0) {
                fprintf(stderr, "mercato-bench rpc: no free tcp port\n");
                goto out;
        }
        close(fd);
        snprintf(urls[0], sizeof(urls[0]), "tcp://127.0.0.1:%d", port);
        snprintf(urls[1], sizeof(urls[1]), "ipc:///tmp/mercato-bench-%ld.sock", (long) getpid());
        snprintf(urls[2], sizeof(urls[2]), "inproc://mercato-bench-%ld", (long) getpid());
        for (int i = 0; i < 3; i++) {
                if (rpc_server_listen(srv, urls[i], err, sizeof(err)) != RPC_OK) {
                        fprintf(stderr, "mercato-bench rpc: %s\n", err);
                        goto out;
                }
        }
        if (rpc_server_start(srv) != RPC_OK) {
                fprintf(stderr, "mercato-bench rpc: cannot start the server\n");
                goto out;
        }

        if (!bench_raw_tcp(&o, &raw)) {
                fprintf(stderr, "mercato-bench rpc: the raw tcp baseline failed\n");
                goto out;
        }
        printf("mercato-bench rpc: Health round trips, %d server workers, %.1f s each after "
               "%.1f s warm-up\n\n",
            o.workers, o.duration_s, o.warmup_s);
        if (!bench_raw_nng(&o, &nngr)) {
                fprintf(stderr, "mercato-bench rpc: the bare nng baseline failed\n");
                goto out;
        }
        printf("%-9s %7s %11s %9s %9s %9s %9s\n", "transport", "clients", "calls/s", "p50 us",
            "p99 us", "p50/raw", "p50/nng");
        print_row(&raw, raw.p50_us, nngr.p50_us);
        print_row(&nngr, raw.p50_us, nngr.p50_us);
        fflush(stdout);

        rs = rpc_xcalloc((size_t) (o.n_transports * o.n_clients), sizeof(*rs));
        rc = 0;
        for (int t = 0; t < o.n_transports; t++) {
                const char *url = strcmp(o.transports[t], "tcp") == 0 ? urls[0]
                    : strcmp(o.transports[t], "ipc") == 0             ? urls[1]
                                                                      : urls[2];

                for (int c = 0; c < o.n_clients; c++) {
                        if (!bench_rpc_run(&o, o.transports[t], url, o.clients[c], &rs[n])) {
                                rc = 1;
                        }
                        print_row(&rs[n], raw.p50_us, nngr.p50_us);
                        fflush(stdout);
                        rc = rs[n].errors > 0 ? 1 : rc;
                        n++;
                }
        }
        if (o.json_path != NULL && !write_json(o.json_path, &o, &raw, &nngr, rs, n)) {
                rc = 1;
        }

out:
        rpc_server_free(srv);
        if (port != 0) {
                char path[128];

                snprintf(path, sizeof(path), "/tmp/mercato-bench-%ld.sock", (long) getpid());
                unlink(path);
        }
        free(rs);
        free(lists[0]);
        free(lists[1]);
        return rc;
}
