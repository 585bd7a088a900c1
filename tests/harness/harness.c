/* harness.c: integration-test helpers: throwaway databases, service processes, topology files. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"

#define MAX_DBS 64
#define MAX_PIDS 64

static char *created_dbs[MAX_DBS];
static int n_created_dbs;
static pid_t started[MAX_PIDS];
static int n_started;
static bool registered;

static void
ensure_registered(void)
{
        if (!registered) {
                registered = true;
                atexit(harness_cleanup);
        }
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void
die(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fprintf(stderr, "harness: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        exit(1); /* atexit cleans up */
}

const char *
harness_pg(void)
{
        const char *pg = getenv("MERCATO_TEST_PG");

        if (pg == NULL || *pg == '\0') {
                die("MERCATO_TEST_PG is not set: run the suite with ./tests/run, which starts "
                    "its own PostgreSQL");
        }
        return pg;
}

static char *
conninfo_for(const char *dbname)
{
        char buf[1024];

        snprintf(buf, sizeof(buf), "%s dbname=%s", harness_pg(), dbname);
        return rpc_xstrdup(buf);
}

void
harness_sql(const char *conninfo, const char *sql)
{
        PGconn *conn = PQconnectdb(conninfo);
        PGresult *res;

        if (PQstatus(conn) != CONNECTION_OK) {
                die("cannot connect (%s): %s", conninfo, PQerrorMessage(conn));
        }
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
                die("SQL failed: %s\n  %s", sql, PQerrorMessage(conn));
        }
        PQclear(res);
        PQfinish(conn);
}

int64_t
harness_sql_i64(const char *conninfo, const char *sql)
{
        PGconn *conn = PQconnectdb(conninfo);
        PGresult *res;
        int64_t v = 0;

        if (PQstatus(conn) != CONNECTION_OK) {
                die("cannot connect (%s): %s", conninfo, PQerrorMessage(conn));
        }
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                die("SQL failed: %s\n  %s", sql, PQerrorMessage(conn));
        }
        if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
                v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        }
        PQclear(res);
        PQfinish(conn);
        return v;
}

char *
harness_db_create(const char *prefix)
{
        static int counter;
        char name[128];
        char sql[256];
        char *admin;

        ensure_registered();
        if (n_created_dbs >= MAX_DBS) {
                die("too many databases");
        }
        snprintf(name, sizeof(name), "t_%s_%d_%d", prefix, (int) getpid(), counter++);
        admin = conninfo_for("postgres");
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name);
        harness_sql(admin, sql);
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
        harness_sql(admin, sql);
        free(admin);
        created_dbs[n_created_dbs++] = rpc_xstrdup(name);
        return conninfo_for(name);
}

/* Where the test processes of this machine hold their ports: one file per port, locked
 * by the process that drew it for as long as it lives. */
#define PORT_LOCK_DIR "/tmp/mercato-test-ports"

/* Takes the port's lock for the rest of the process, or returns false if another test
 * process holds it. The lock goes with the process: no file is ever cleaned up by hand. */
static bool
port_lock(int port)
{
        char path[128];
        int fd;

        if (mkdir(PORT_LOCK_DIR, 0777) != 0 && errno != EEXIST) {
                die("mkdir %s: %s", PORT_LOCK_DIR, strerror(errno));
        }
        snprintf(path, sizeof(path), "%s/%d", PORT_LOCK_DIR, port);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) {
                die("open %s: %s", path, strerror(errno));
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
                close(fd);
                return false;
        }
        return true; /* fd stays open: the lock lasts until this process exits */
}

/* Ports are drawn below Linux's ephemeral range (32768-60999): a port the kernel handed
 * out for bind(0) could be taken again by any outgoing connection (to PostgreSQL, say)
 * between this check and the service's own bind.
 *
 * Tests run side by side (meson runs two at once), and a free port is only free until its
 * service binds it. Two test processes that drew the same port each saw it free; the
 * second one's service then failed to bind, while its Health probe was answered by the
 * first one's service, so its calls went to another test's cluster (UNIMPLEMENTED from the
 * wrong service, deliveries refused for a minute). So a port is also locked, across
 * processes, by the test that drew it (port_lock), and never drawn twice in one process. */
int
harness_free_port(void)
{
        static uint64_t state;
        static bool drawn[12000];

        if (state == 0) {
                state = ((uint64_t) getpid() << 32) ^ (uint64_t) rpc_now_mono_us();
        }
        for (int tries = 0; tries < 1000; tries++) {
                int k = (int) (rpc_rand_next(&state) % 12000);
                int port = 20000 + k;
                int fd;
                struct sockaddr_in sa = { .sin_family = AF_INET };
                int ok;

                if (drawn[k] || !port_lock(port)) {
                        continue;
                }
                drawn[k] = true;
                fd = socket(AF_INET, SOCK_STREAM, 0);
                if (fd < 0) {
                        die("socket: %s", strerror(errno));
                }
                sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                sa.sin_port = htons((uint16_t) port);
                ok = bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
                close(fd);
                if (ok) {
                        return port;
                }
        }
        die("cannot find a free port in 20000-31999");
        return -1;
}

char *
harness_build_path(const char *relpath)
{
        const char *root = getenv("MERCATO_BUILD_ROOT");
        char buf[1024];

        snprintf(buf, sizeof(buf), "%s/%s", root != NULL ? root : ".", relpath);
        return rpc_xstrdup(buf);
}

harness_cluster *
harness_cluster_new(const char *services, const char *extra)
{
        harness_cluster *c = rpc_xcalloc(1, sizeof(*c));
        char *list = rpc_xstrdup(services);
        char *save = NULL;
        char path[] = "/tmp/mercato-conf-XXXXXX";
        int fd;
        FILE *f;

        ensure_registered();
        for (char *t = strtok_r(list, " ", &save); t != NULL && c->n < 8;
             t = strtok_r(NULL, " ", &save)) {
                char addr[64];
                snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", harness_free_port());
                c->names[c->n] = rpc_xstrdup(t);
                c->addresses[c->n] = rpc_xstrdup(addr);
                c->dbs[c->n] = harness_db_create(t);
                c->n++;
        }
        free(list);
        c->monolith_db = harness_db_create("monolith");
        fd = mkstemp(path);
        if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
                die("cannot write a topology file");
        }
        fprintf(f, "# written by the test harness\n[defaults]\nworkers = 2\n");
        fprintf(f, "[monolith]\ndb = %s\n", c->monolith_db);
        for (int i = 0; i < c->n; i++) {
                fprintf(
                    f, "[%s]\naddress = %s\ndb = %s\n", c->names[i], c->addresses[i], c->dbs[i]);
        }
        if (extra != NULL) {
                fprintf(f, "%s\n", extra);
        }
        fclose(f);
        c->conf_path = rpc_xstrdup(path);
        return c;
}

static int
index_of(const harness_cluster *c, const char *name)
{
        for (int i = 0; i < c->n; i++) {
                if (strcmp(c->names[i], name) == 0) {
                        return i;
                }
        }
        return -1;
}

const char *
harness_cluster_address(const harness_cluster *c, const char *name)
{
        int i = index_of(c, name);
        return i >= 0 ? c->addresses[i] : NULL;
}

const char *
harness_cluster_db(const harness_cluster *c, const char *name)
{
        int i;

        if (strcmp(name, "monolith") == 0) {
                return c->monolith_db;
        }
        i = index_of(c, name);
        return i >= 0 ? c->dbs[i] : NULL;
}

static void
forget_pid(pid_t pid)
{
        for (int i = 0; i < n_started; i++) {
                if (started[i] == pid) {
                        started[i] = started[--n_started];
                        return;
                }
        }
}

static void
spawn(harness_cluster *c, int i)
{
        char rel[256];
        char log[512];
        char *bin;
        pid_t pid;

        snprintf(rel, sizeof(rel), "services/%s/mercato-%s", c->names[i], c->names[i]);
        bin = harness_build_path(rel);
        snprintf(log, sizeof(log), "%s.%s.log", c->conf_path, c->names[i]);
        pid = fork();
        if (pid < 0) {
                die("fork: %s", strerror(errno));
        }
        if (pid == 0) {
                FILE *out = freopen(log, "a", stderr);
                (void) out;
                execl(bin, bin, "--conf", c->conf_path, (char *) NULL);
                fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
                _exit(127);
        }
        free(bin);
        c->pids[i] = pid;
        if (n_started < MAX_PIDS) {
                started[n_started++] = pid;
        }
}

static void
print_log(const harness_cluster *c, int i)
{
        char log[512];
        char line[1024];
        FILE *f;

        snprintf(log, sizeof(log), "%s.%s.log", c->conf_path, c->names[i]);
        f = fopen(log, "r");
        if (f == NULL) {
                return;
        }
        fprintf(stderr, "--- log of %s ---\n", c->names[i]);
        while (fgets(line, sizeof(line), f) != NULL) {
                fputs(line, stderr);
        }
        fclose(f);
}

/* True when something accepts TCP connections at a "tcp://127.0.0.1:PORT" address. */
static bool
port_accepts(const char *address)
{
        const char *colon = strrchr(address, ':');
        struct sockaddr_in sa = { .sin_family = AF_INET };
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        bool ok;

        if (fd < 0 || colon == NULL) {
                die("cannot probe %s", address);
        }
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) atoi(colon + 1));
        ok = connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
        close(fd);
        return ok;
}

/* Opens the probe's client only once the port accepts, so that it never dials a refused
 * port, and keeps that one client until Health answers. LeakSanitizer charged tests with
 * nng 1.5.2's own dialer and pipe objects (4.3 kB, allocated by nng_dial and nng's
 * threads) from a client per try: a try that timed out while the service was still
 * starting closed its socket in the middle of the connection's negotiation. */
static void
wait_healthy(harness_cluster *c, int i)
{
        rpc_client *probe = NULL;

        for (int tries = 0; tries < 150; tries++) {
                int status;
                if (waitpid(c->pids[i], &status, WNOHANG) == c->pids[i]) {
                        forget_pid(c->pids[i]);
                        c->pids[i] = 0;
                        print_log(c, i);
                        die("%s exited during start-up", c->names[i]);
                }
                if (probe == NULL && port_accepts(c->addresses[i])
                    && rpc_client_open(c->addresses[i], NULL, &probe) != RPC_OK) {
                        probe = NULL;
                }
                if (probe != NULL && rpc_health_call(probe, 300) == RPC_OK) {
                        rpc_client_free(probe);
                        return;
                }
                usleep(200 * 1000);
        }
        print_log(c, i);
        die("%s did not answer Health within 30 s", c->names[i]);
}

void
harness_cluster_start(harness_cluster *c)
{
        for (int i = 0; i < c->n; i++) {
                spawn(c, i);
        }
        for (int i = 0; i < c->n; i++) {
                wait_healthy(c, i);
        }
}

void
harness_cluster_signal(harness_cluster *c, const char *name, int sig)
{
        int i = index_of(c, name);

        if (i < 0 || c->pids[i] == 0) {
                return;
        }
        kill(c->pids[i], sig);
        if (sig == SIGKILL || sig == SIGTERM) {
                waitpid(c->pids[i], NULL, 0);
                forget_pid(c->pids[i]);
                c->pids[i] = 0;
        }
}

void
harness_cluster_restart(harness_cluster *c, const char *name)
{
        int i = index_of(c, name);

        if (i < 0) {
                return;
        }
        if (c->pids[i] != 0) {
                harness_cluster_signal(c, name, SIGTERM);
        }
        spawn(c, i);
        wait_healthy(c, i);
}

bool
harness_cluster_alive(harness_cluster *c, const char *name)
{
        int i = index_of(c, name);
        int status;

        if (i < 0 || c->pids[i] == 0) {
                return false;
        }
        if (waitpid(c->pids[i], &status, WNOHANG) == c->pids[i]) {
                forget_pid(c->pids[i]);
                c->pids[i] = 0;
                return false;
        }
        return true;
}

rpc_client *
harness_client(const harness_cluster *c, const char *name)
{
        const char *addr = harness_cluster_address(c, name);
        rpc_client *cl = NULL;

        if (addr == NULL || rpc_client_open(addr, NULL, &cl) != RPC_OK) {
                die("no client for %s", name);
        }
        return cl;
}

static int
stop_pid(pid_t pid)
{
        int status = -1;

        kill(pid, SIGCONT);
        kill(pid, SIGTERM);
        for (int i = 0; i < 100; i++) {
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        return status;
                }
                usleep(100 * 1000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return status;
}

int
harness_cluster_stop(harness_cluster *c, const char *name)
{
        int i = index_of(c, name);
        int status;

        if (i < 0 || c->pids[i] == 0) {
                return -1;
        }
        status = stop_pid(c->pids[i]);
        forget_pid(c->pids[i]);
        c->pids[i] = 0;
        return status;
}

void
harness_cluster_print_log(const harness_cluster *c, const char *name)
{
        int i = index_of(c, name);

        if (i >= 0) {
                print_log(c, i);
        }
}

void
harness_cluster_free(harness_cluster *c)
{
        char log[512];

        if (c == NULL) {
                return;
        }
        for (int i = 0; i < c->n; i++) {
                if (c->pids[i] != 0) {
                        int status;
                        /* A service that died during the test, or failed its own exit (a
                         * sanitizer's report), leaves its log: a test's failure that
                         * follows from it would say nothing otherwise. */
                        bool died = waitpid(c->pids[i], &status, WNOHANG) == c->pids[i];
                        if (!died) {
                                status = stop_pid(c->pids[i]);
                        }
                        forget_pid(c->pids[i]);
                        if (died || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                                fprintf(stderr, "harness: %s %s (status 0x%x)\n", c->names[i],
                                    died ? "had died during the test" : "did not exit cleanly",
                                    (unsigned) status);
                                print_log(c, i);
                        }
                }
                snprintf(log, sizeof(log), "%s.%s.log", c->conf_path, c->names[i]);
                unlink(log);
                free(c->names[i]);
                free(c->addresses[i]);
                free(c->dbs[i]);
        }
        unlink(c->conf_path);
        free(c->conf_path);
        free(c->monolith_db);
        free(c);
}

void
harness_cleanup(void)
{
        char *admin;

        while (n_started > 0) {
                stop_pid(started[--n_started]);
        }
        if (n_created_dbs == 0) {
                return;
        }
        admin = conninfo_for("postgres");
        for (int i = 0; i < n_created_dbs; i++) {
                char sql[256];
                PGconn *conn = PQconnectdb(admin);
                if (PQstatus(conn) == CONNECTION_OK) {
                        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
                            created_dbs[i]);
                        PQclear(PQexec(conn, sql));
                }
                PQfinish(conn);
                free(created_dbs[i]);
        }
        n_created_dbs = 0;
        free(admin);
}

void
harness_fixture_start(
    harness_fixture *f, const char *services, const char *service, const char *extra)
{
        f->cluster = harness_cluster_new(services, extra);
        harness_cluster_start(f->cluster);
        f->client = harness_client(f->cluster, service);
        f->db = harness_cluster_db(f->cluster, service);
        f->mono = harness_cluster_db(f->cluster, "monolith");
}

void
harness_fixture_stop(harness_fixture *f)
{
        rpc_client_free(f->client);
        harness_cluster_free(f->cluster);
        harness_cleanup();
}

int
harness_cli(const harness_cluster *c, char *out, size_t len, const char *fmt, ...)
{
        char args[1024];
        char cmd[2048];
        char *bin = harness_build_path("services/mercato/mercato");
        size_t n = 0;
        va_list ap;
        FILE *p;
        int status;

        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        snprintf(cmd, sizeof(cmd), "%s --conf %s %s", bin, c->conf_path, args);
        free(bin);
        if ((p = popen(cmd, "r")) == NULL) {
                die("cannot run %s", cmd);
        }
        while (n + 1 < len && fgets(out + n, (int) (len - n), p) != NULL) {
                n += strlen(out + n);
        }
        out[n] = '\0';
        status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
