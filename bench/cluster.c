/* cluster.c: a private PostgreSQL, the six services as children, and faults done to them. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "util.h"

const char *const cluster_services[CLUSTER_N_SERVICES]
    = { "product", "cart", "user", "payment", "dataplatform", "order" };

#define MAX_SETTINGS 64
#define PORT_LO 32000
#define PORT_HI 32767 /* below the ephemeral range, as common ad-hoc clusters use */
#define HEALTH_TRIES 150
#define HEALTH_SLEEP_MS 200
#define STOP_WAIT_MS 5000
#define NFT_TABLE "mchaos"

typedef struct cluster_svc {
        const char *name;
        int port;
        pid_t pid;
        char address[64];
        char db[320];
        char netns[48]; /* "" until the namespaces exist */
        bool cut;       /* its namespace holds our nft table */
} cluster_svc;

typedef struct cluster_setting {
        char *section, *key, *value;
} cluster_setting;

struct cluster {
        char *build_root;
        char *pg_script;
        char *dir;
        char *pg_dir;
        char *conf_path;
        bool keep;
        int workers;
        int pg_port;
        bool pg_running;
        cluster_svc svcs[CLUSTER_N_SERVICES];
        char mono_db[320];
        cluster_setting settings[MAX_SETTINGS];
        int n_settings;
        /* namespaces */
        bool net_ready; /* bridge and namespaces exist */
        bool net_on;    /* services start inside them */
        char bridge[16];
        char subnet[16]; /* "10.A.B": the host is .1, service i is .(10 + i) */
        uint64_t rng;
        struct cluster *next; /* the live clusters, for cluster_cleanup_all */
};

static cluster *live;
static bool atexit_done;

static cluster_svc *
find_svc(cluster *c, const char *name)
{
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                if (strcmp(c->svcs[i].name, name) == 0) {
                        return &c->svcs[i];
                }
        }
        return NULL;
}

/* Runs a command quietly; returns its exit status (-1: could not run or killed). */
static int
run_quiet(char *const argv[], char **out)
{
        return bench_run(argv, out, true);
}

static bool
port_free(int port)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET };
        bool ok;

        if (fd < 0) {
                return false;
        }
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) port);
        ok = bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
        close(fd);
        return ok;
}

/* A port in PORT_LO..PORT_HI that is free now and not one of this cluster's. */
static int
draw_port(cluster *c)
{
        for (int tries = 0; tries < 2000; tries++) {
                int port = PORT_LO + (int) (rpc_rand_next(&c->rng) % (PORT_HI - PORT_LO + 1));
                bool ours = port == c->pg_port;
                for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                        ours = ours || c->svcs[i].port == port;
                }
                if (!ours && port_free(port)) {
                        return port;
                }
        }
        return -1;
}

static const char *
pg_host(const cluster *c)
{
        static __thread char buf[24];

        if (!c->net_on) {
                return "127.0.0.1";
        }
        snprintf(buf, sizeof(buf), "%s.1", c->subnet);
        return buf;
}

/* Fills in every address and conninfo for the current addressing (loopback or bridge). */
static void
compute_addresses(cluster *c)
{
        /* Keepalives and a user timeout, so that a connection across a cut link fails in
         * seconds rather than hanging for the kernel's retransmission time. */
        static const char tcp_opts[]
            = "connect_timeout=5 keepalives_idle=2 keepalives_interval=1 keepalives_count=3 "
              "tcp_user_timeout=8000";

        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                cluster_svc *s = &c->svcs[i];
                if (c->net_on) {
                        snprintf(s->address, sizeof(s->address), "tcp://%s.%d:%d", c->subnet,
                            10 + i, s->port);
                } else {
                        snprintf(s->address, sizeof(s->address), "tcp://127.0.0.1:%d", s->port);
                }
                snprintf(s->db, sizeof(s->db), "host=%s port=%d user=mercato dbname=mercato_%s %s",
                    pg_host(c), c->pg_port, s->name, tcp_opts);
        }
        snprintf(c->mono_db, sizeof(c->mono_db),
            "host=%s port=%d user=mercato dbname=mercato_monolith %s", pg_host(c), c->pg_port,
            tcp_opts);
}

static void
write_conf(cluster *c)
{
        char tmp[4096];
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.tmp", c->conf_path);
        f = fopen(tmp, "w");
        if (f == NULL) {
                return;
        }
        fprintf(f,
            "# A throwaway topology of mercato-bench; rewritten on every change.\n"
            "[defaults]\nworkers = %d\n",
            c->workers);
        for (int k = 0; k < c->n_settings; k++) {
                if (strcmp(c->settings[k].section, "defaults") == 0) {
                        fprintf(f, "%s = %s\n", c->settings[k].key, c->settings[k].value);
                }
        }
        fprintf(f, "[postgres]\nhost = %s\nport = %d\nuser = mercato\n", pg_host(c), c->pg_port);
        fprintf(f, "[monolith]\ndb = %s\n", c->mono_db);
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                const cluster_svc *s = &c->svcs[i];
                fprintf(f, "[%s]\naddress = %s\ndb = %s\n", s->name, s->address, s->db);
                for (int k = 0; k < c->n_settings; k++) {
                        if (strcmp(c->settings[k].section, s->name) == 0) {
                                fprintf(f, "%s = %s\n", c->settings[k].key, c->settings[k].value);
                        }
                }
        }
        fclose(f);
        rename(tmp, c->conf_path);
}

void
cluster_set(cluster *c, const char *section, const char *key, const char *value)
{
        for (int k = 0; k < c->n_settings; k++) {
                cluster_setting *st = &c->settings[k];
                if (strcmp(st->section, section) == 0 && strcmp(st->key, key) == 0) {
                        free(st->value);
                        if (value != NULL) {
                                st->value = rpc_xstrdup(value);
                        } else {
                                free(st->section);
                                free(st->key);
                                *st = c->settings[--c->n_settings];
                        }
                        write_conf(c);
                        return;
                }
        }
        if (value != NULL && c->n_settings < MAX_SETTINGS) {
                c->settings[c->n_settings++] = (cluster_setting) {
                        .section = rpc_xstrdup(section),
                        .key = rpc_xstrdup(key),
                        .value = rpc_xstrdup(value),
                };
        }
        write_conf(c);
}

void
cluster_reset_settings(cluster *c)
{
        for (int k = 0; k < c->n_settings; k++) {
                free(c->settings[k].section);
                free(c->settings[k].key);
                free(c->settings[k].value);
        }
        c->n_settings = 0;
        write_conf(c);
}

const char *
cluster_conf_path(const cluster *c)
{
        return c->conf_path;
}

const char *
cluster_dir(const cluster *c)
{
        return c->dir;
}

const char *
cluster_address(const cluster *c, const char *service)
{
        cluster_svc *s = find_svc((cluster *) c, service);
        return s != NULL ? s->address : NULL;
}

const char *
cluster_db(const cluster *c, const char *section)
{
        cluster_svc *s;

        if (strcmp(section, "monolith") == 0) {
                return c->mono_db;
        }
        s = find_svc((cluster *) c, section);
        return s != NULL ? s->db : NULL;
}

pid_t
cluster_pid(const cluster *c, const char *service)
{
        cluster_svc *s = find_svc((cluster *) c, service);
        return s != NULL ? s->pid : 0;
}

/*
 * PostgreSQL
 */
static rpc_status
pg_cmd(cluster *c, const char *cmd, const char *flag, char *err, size_t errlen)
{
        char port[16];
        char *out = NULL;
        int rc;

        snprintf(port, sizeof(port), "%d", c->pg_port);
        if (strcmp(cmd, "start") == 0) {
                char *argv[] = { c->pg_script, "start", "--dir", c->pg_dir, "--port", port, NULL };
                rc = run_quiet(argv, &out);
        } else {
                char *argv[]
                    = { c->pg_script, (char *) cmd, "--dir", c->pg_dir, (char *) flag, NULL };
                rc = run_quiet(argv, &out);
        }
        free(out);
        if (rc == 0) {
                return RPC_OK;
        }
        snprintf(err, errlen, "%s %s --dir %s failed (exit %d; log: %s/log/postgres.log)",
            c->pg_script, cmd, c->pg_dir, rc, c->pg_dir);
        return rc == 75 ? RPC_ALREADY_EXISTS : RPC_UNAVAILABLE;
}

rpc_status
cluster_pg_start(cluster *c, char *err, size_t errlen)
{
        rpc_status st = pg_cmd(c, "start", NULL, err, errlen);

        c->pg_running = c->pg_running || st == RPC_OK;
        return st;
}

rpc_status
cluster_pg_stop(cluster *c, bool immediate, char *err, size_t errlen)
{
        rpc_status st = pg_cmd(c, "stop", immediate ? "--immediate" : NULL, err, errlen);

        if (st == RPC_OK) {
                c->pg_running = false;
        }
        return st;
}

/* Runs one statement as user mercato on the postgres database. */
static rpc_status
pg_exec(cluster *c, const char *sql, char *err, size_t errlen)
{
        char conninfo[256];
        PGconn *conn;
        PGresult *res;
        rpc_status st = RPC_OK;

        snprintf(conninfo, sizeof(conninfo),
            "host=127.0.0.1 port=%d user=mercato dbname=postgres connect_timeout=5", c->pg_port);
        conn = PQconnectdb(conninfo);
        if (PQstatus(conn) != CONNECTION_OK) {
                snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
                PQfinish(conn);
                return RPC_UNAVAILABLE;
        }
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                snprintf(err, errlen, "%s: %s", sql, PQerrorMessage(conn));
                st = RPC_INTERNAL;
        }
        PQclear(res);
        PQfinish(conn);
        return st;
}

static rpc_status
create_databases(cluster *c, char *err, size_t errlen)
{
        char port[16];
        char *argv[4 + CLUSTER_N_SERVICES + 2];
        char names[CLUSTER_N_SERVICES + 1][48];
        int n = 0;
        int rc;

        snprintf(port, sizeof(port), "%d", c->pg_port);
        argv[n++] = c->pg_script;
        argv[n++] = "createdbs";
        argv[n++] = "--dir";
        argv[n++] = c->pg_dir;
        for (int i = 0; i <= CLUSTER_N_SERVICES; i++) {
                snprintf(names[i], sizeof(names[i]), "mercato_%s",
                    i < CLUSTER_N_SERVICES ? cluster_services[i] : "monolith");
                argv[n++] = names[i];
        }
        argv[n] = NULL;
        char *out = NULL;
        rc = run_quiet(argv, &out);
        free(out);
        if (rc != 0) {
                snprintf(err, errlen, "deploy/pg createdbs failed (exit %d)", rc);
                return RPC_UNAVAILABLE;
        }
        return RPC_OK;
}

rpc_status
cluster_new(const cluster_opts *o, cluster **ret, char *err, size_t errlen)
{
        cluster *c = rpc_xcalloc(1, sizeof(*c));
        char path[4096];
        rpc_status st = RPC_UNAVAILABLE;

        c->build_root = rpc_xstrdup(o->build_root);
        c->pg_script = rpc_xstrdup(o->pg_script);
        c->dir = rpc_xstrdup(o->dir);
        c->keep = o->keep;
        c->workers = o->workers > 0 ? o->workers : 2;
        c->rng = ((uint64_t) getpid() << 32) ^ (uint64_t) rpc_now_mono_us();
        snprintf(path, sizeof(path), "%s/pg", c->dir);
        c->pg_dir = rpc_xstrdup(path);
        snprintf(path, sizeof(path), "%s/topology.conf", c->dir);
        c->conf_path = rpc_xstrdup(path);
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                c->svcs[i].name = cluster_services[i];
        }
        c->next = live;
        live = c;
        if (!atexit_done) {
                atexit_done = true;
                atexit(cluster_cleanup_all);
        }
        if (!bench_mkdirs(c->dir)) {
                snprintf(err, errlen, "cannot create %s: %s", c->dir, strerror(errno));
                goto fail;
        }
        /* deploy/pg runs PostgreSQL as user mercato, which must enter DIR. */
        chmod(c->dir, 0755);
        for (int tries = 0; tries < 5; tries++) {
                c->pg_port = 0;
                c->pg_port = draw_port(c);
                if (c->pg_port < 0) {
                        snprintf(err, errlen, "no free port in %d-%d", PORT_LO, PORT_HI);
                        goto fail;
                }
                st = cluster_pg_start(c, err, errlen);
                if (st != RPC_ALREADY_EXISTS) {
                        break;
                }
        }
        if (st != RPC_OK) {
                goto fail;
        }
        st = create_databases(c, err, errlen);
        if (st != RPC_OK) {
                goto fail;
        }
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                c->svcs[i].port = draw_port(c);
                if (c->svcs[i].port < 0) {
                        snprintf(err, errlen, "no free port in %d-%d", PORT_LO, PORT_HI);
                        st = RPC_RESOURCE_EXHAUSTED;
                        goto fail;
                }
        }
        compute_addresses(c);
        write_conf(c);
        *ret = c;
        return RPC_OK;
fail:
        cluster_free(c);
        return st != RPC_OK ? st : RPC_INTERNAL;
}

/*
 * Services
 */
char *
cluster_log_tail(const cluster *c, const char *service, size_t max_bytes)
{
        char path[4096];
        char *buf;
        FILE *f;
        long size;
        size_t n;

        snprintf(path, sizeof(path), "%s/%s.log", c->dir, service);
        f = fopen(path, "r");
        if (f == NULL) {
                return rpc_xstrdup("");
        }
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        if (size > (long) max_bytes) {
                fseek(f, size - (long) max_bytes, SEEK_SET);
        } else {
                fseek(f, 0, SEEK_SET);
        }
        buf = rpc_xcalloc(1, max_bytes + 1);
        n = fread(buf, 1, max_bytes, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

long
cluster_log_size(const cluster *c, const char *service)
{
        char path[4096];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s.log", c->dir, service);
        return stat(path, &st) == 0 ? (long) st.st_size : 0;
}

char *
cluster_log_since(const cluster *c, const char *service, long offset, size_t max_bytes)
{
        char path[4096];
        char *buf = rpc_xcalloc(1, max_bytes + 1);
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "%s/%s.log", c->dir, service);
        f = fopen(path, "r");
        if (f == NULL) {
                return buf;
        }
        if (fseek(f, offset, SEEK_SET) == 0) {
                n = fread(buf, 1, max_bytes, f);
                buf[n] = '\0';
        }
        fclose(f);
        return buf;
}

/* Forks the service. In the child: its log as stdout and stderr, killed with its parent, in
 * its namespace when they are on. */
static rpc_status
spawn(cluster *c, cluster_svc *s, char *err, size_t errlen)
{
        char bin[4096];
        char log[4096];
        char ns_path[128];
        pid_t parent = getpid();
        pid_t pid;

        snprintf(bin, sizeof(bin), "%s/services/%s/mercato-%s", c->build_root, s->name, s->name);
        snprintf(log, sizeof(log), "%s/%s.log", c->dir, s->name);
        snprintf(ns_path, sizeof(ns_path), "/var/run/netns/%s", s->netns);
        if (access(bin, X_OK) != 0) {
                snprintf(err, errlen, "no executable %s", bin);
                return RPC_NOT_FOUND;
        }
        fflush(NULL);
        pid = fork();
        if (pid < 0) {
                snprintf(err, errlen, "fork: %s", strerror(errno));
                return RPC_INTERNAL;
        }
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
                sigset_t none;

                /* The parent's load threads may have blocked signals; the service sets its
                 * own mask. */
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent) {
                        _exit(1);
                }
                if (fd >= 0) {
                        dup2(fd, STDOUT_FILENO);
                        dup2(fd, STDERR_FILENO);
                }
                if (devnull >= 0) {
                        dup2(devnull, STDIN_FILENO);
                }
                if (c->net_on) {
                        int nsfd = open(ns_path, O_RDONLY | O_CLOEXEC);
                        if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
                                fprintf(stderr, "cannot enter %s: %s\n", ns_path, strerror(errno));
                                _exit(126);
                        }
                }
                execl(bin, bin, "--conf", c->conf_path, (char *) NULL);
                fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
                _exit(127);
        }
        s->pid = pid;
        return RPC_OK;
}

/* Reaps the service if it exited; true if it did (or was not running). */
static bool
reap(cluster_svc *s)
{
        int status;

        if (s->pid == 0) {
                return true;
        }
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                s->pid = 0;
                return true;
        }
        return false;
}

/* One probe client across the tries, closed once it answered (see rpc_health_call). */
static rpc_status
wait_healthy(cluster *c, cluster_svc *s, char *err, size_t errlen)
{
        rpc_client *probe = NULL;

        for (int tries = 0; tries < HEALTH_TRIES; tries++) {
                if (reap(s)) {
                        char *tail = cluster_log_tail(c, s->name, 1500);
                        snprintf(err, errlen, "%s exited during start-up; its log ends:\n%s",
                            s->name, tail);
                        free(tail);
                        rpc_client_free(probe);
                        return RPC_UNAVAILABLE;
                }
                if (probe == NULL && rpc_client_open(s->address, NULL, &probe) != RPC_OK) {
                        probe = NULL;
                }
                if (probe != NULL && rpc_health_call(probe, 300) == RPC_OK) {
                        rpc_client_free(probe);
                        return RPC_OK;
                }
                bench_sleep_ms(HEALTH_SLEEP_MS);
        }
        rpc_client_free(probe);
        char *tail = cluster_log_tail(c, s->name, 1500);
        snprintf(
            err, errlen, "%s did not answer Health within 30 s; its log ends:\n%s", s->name, tail);
        free(tail);
        return RPC_DEADLINE_EXCEEDED;
}

rpc_status
cluster_start(cluster *c, const char *service, char *err, size_t errlen)
{
        cluster_svc *s = find_svc(c, service);
        rpc_status st;

        if (s == NULL) {
                snprintf(err, errlen, "no service %s", service);
                return RPC_NOT_FOUND;
        }
        if (!reap(s)) {
                return RPC_OK;
        }
        st = spawn(c, s, err, errlen);
        return st == RPC_OK ? wait_healthy(c, s, err, errlen) : st;
}

rpc_status
cluster_start_all(cluster *c, char *err, size_t errlen)
{
        /* Spawn all, then wait for each: they migrate in parallel. */
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                cluster_svc *s = &c->svcs[i];
                if (reap(s)) {
                        rpc_status st = spawn(c, s, err, errlen);
                        if (st != RPC_OK) {
                                return st;
                        }
                }
        }
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                rpc_status st = wait_healthy(c, &c->svcs[i], err, errlen);
                if (st != RPC_OK) {
                        return st;
                }
        }
        return RPC_OK;
}

bool
cluster_signal(cluster *c, const char *service, int sig)
{
        cluster_svc *s = find_svc(c, service);

        if (s == NULL || reap(s)) {
                return false;
        }
        kill(s->pid, sig);
        if (sig == SIGKILL || sig == SIGTERM) {
                if (sig == SIGTERM) {
                        kill(s->pid, SIGCONT);
                }
                while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) { }
                s->pid = 0;
        }
        return true;
}

static void
stop_svc(cluster_svc *s)
{
        if (reap(s)) {
                return;
        }
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGTERM);
        for (int waited = 0; waited < STOP_WAIT_MS; waited += 50) {
                if (reap(s)) {
                        return;
                }
                bench_sleep_ms(50);
        }
        kill(s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) { }
        s->pid = 0;
}

void
cluster_stop(cluster *c, const char *service)
{
        cluster_svc *s = find_svc(c, service);

        if (s != NULL) {
                stop_svc(s);
        }
}

void
cluster_stop_all(cluster *c)
{
        /* Signal all first, so that they stop in parallel. */
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                if (!reap(&c->svcs[i])) {
                        kill(c->svcs[i].pid, SIGCONT);
                        kill(c->svcs[i].pid, SIGTERM);
                }
        }
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                stop_svc(&c->svcs[i]);
        }
}

bool
cluster_alive(cluster *c, const char *service)
{
        cluster_svc *s = find_svc(c, service);
        return s != NULL && !reap(s);
}

/*
 * Network namespaces
 */

/* Runs `ip ARGS...` (or another tool), quietly; true on success. */
static bool
tool(char *const argv[])
{
        char *out = NULL;
        int rc = run_quiet(argv, &out);

        free(out);
        return rc == 0;
}

/* Runs a tool inside a namespace: ip netns exec NS argv... */
static bool
tool_in(const char *ns, char *const argv[])
{
        char *full[24] = { "ip", "netns", "exec", (char *) ns };
        int n = 4;

        for (int i = 0; argv[i] != NULL && n < 23; i++) {
                full[n++] = argv[i];
        }
        full[n] = NULL;
        return tool(full);
}

static bool
pid_alive(long pid)
{
        return pid > 0 && (kill((pid_t) pid, 0) == 0 || errno == EPERM);
}

/* Removes the namespaces and bridges that a run killed outright left behind (their owner's
 * pid is dead). */
static void
remove_stale(void)
{
        DIR *d = opendir("/var/run/netns");
        struct dirent *e;

        while (d != NULL && (e = readdir(d)) != NULL) {
                long pid;
                if (sscanf(e->d_name, "mchaos-%ld-", &pid) == 1 && !pid_alive(pid)) {
                        char *argv[] = { "ip", "netns", "del", e->d_name, NULL };
                        (void) tool(argv);
                }
        }
        if (d != NULL) {
                closedir(d);
        }
        d = opendir("/sys/class/net");
        while (d != NULL && (e = readdir(d)) != NULL) {
                long pid;
                if (sscanf(e->d_name, "mcb%ld", &pid) == 1 && !pid_alive(pid)) {
                        char *argv[] = { "ip", "link", "del", e->d_name, NULL };
                        (void) tool(argv);
                }
        }
        if (d != NULL) {
                closedir(d);
        }
}

/* True if some interface has an address in 10.A.B.0/24. */
static bool
subnet_taken(int a, int b)
{
        struct ifaddrs *ifs = NULL;
        bool taken = false;

        if (getifaddrs(&ifs) != 0) {
                return true;
        }
        for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
                if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET) {
                        uint32_t v = ntohl(((struct sockaddr_in *) i->ifa_addr)->sin_addr.s_addr);
                        if ((v >> 8) == ((10u << 16) | ((uint32_t) a << 8) | (uint32_t) b)) {
                                taken = true;
                        }
                }
        }
        freeifaddrs(ifs);
        return taken;
}

static void
net_teardown(cluster *c)
{
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                if (c->svcs[i].netns[0] != '\0') {
                        char *argv[] = { "ip", "netns", "del", c->svcs[i].netns, NULL };
                        (void) tool(argv);
                        c->svcs[i].netns[0] = '\0';
                        c->svcs[i].cut = false;
                }
        }
        if (c->bridge[0] != '\0') {
                char *argv[] = { "ip", "link", "del", c->bridge, NULL };
                (void) tool(argv);
                c->bridge[0] = '\0';
        }
        c->net_ready = false;
        c->net_on = false;
}

static rpc_status
net_setup(cluster *c, char *err, size_t errlen)
{
        char host[32], cidr[40], prefix[24];
        long pid = (long) getpid();
        int a = -1, b = -1;

        if (geteuid() != 0) {
                snprintf(err, errlen, "network namespaces need root");
                return RPC_UNIMPLEMENTED;
        }
        {
                char *v1[] = { "ip", "-V", NULL };
                char *v2[] = { "nft", "--version", NULL };
                if (!tool(v1) || !tool(v2)) {
                        snprintf(err, errlen, "ip or nft is missing (deploy/deps installs them)");
                        return RPC_UNIMPLEMENTED;
                }
        }
        remove_stale();
        for (int k = 0; k < 500 && a < 0; k++) {
                int ta = 200 + (int) ((pid + k) % 50);
                int tb = (int) (((pid + k) / 50) % 250);
                if (!subnet_taken(ta, tb)) {
                        a = ta;
                        b = tb;
                }
        }
        if (a < 0) {
                snprintf(err, errlen, "no free 10.x.y.0/24 subnet");
                return RPC_RESOURCE_EXHAUSTED;
        }
        snprintf(c->subnet, sizeof(c->subnet), "10.%d.%d", a, b);
        snprintf(c->bridge, sizeof(c->bridge), "mcb%ld", pid);
        snprintf(host, sizeof(host), "%s.1", c->subnet);
        snprintf(cidr, sizeof(cidr), "%s/24", host);
        {
                char *add[] = { "ip", "link", "add", c->bridge, "type", "bridge", NULL };
                char *addr[] = { "ip", "addr", "add", cidr, "dev", c->bridge, NULL };
                char *up[] = { "ip", "link", "set", c->bridge, "up", NULL };
                if (!tool(add)) {
                        c->bridge[0] = '\0';
                        snprintf(err, errlen, "cannot create a bridge (ip link add type bridge)");
                        return RPC_UNIMPLEMENTED;
                }
                if (!tool(addr) || !tool(up)) {
                        snprintf(err, errlen, "cannot configure bridge %s", c->bridge);
                        return RPC_UNIMPLEMENTED;
                }
        }
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                cluster_svc *s = &c->svcs[i];
                char veth[16], ns[48], addr[40];
                snprintf(ns, sizeof(ns), "mchaos-%ld-%s", pid, s->name);
                snprintf(veth, sizeof(veth), "mcv%ldx%d", pid % 1000000, i);
                snprintf(addr, sizeof(addr), "%s.%d/24", c->subnet, 10 + i);
                char *nsadd[] = { "ip", "netns", "add", ns, NULL };
                char *vadd[] = { "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                        "netns", ns, NULL };
                char *master[] = { "ip", "link", "set", veth, "master", c->bridge, "up", NULL };
                char *ipaddr[] = { "ip", "-n", ns, "addr", "add", addr, "dev", "eth0", NULL };
                char *ethup[] = { "ip", "-n", ns, "link", "set", "eth0", "up", NULL };
                char *loup[] = { "ip", "-n", ns, "link", "set", "lo", "up", NULL };
                if (!tool(nsadd)) {
                        snprintf(err, errlen, "cannot create network namespace %s", ns);
                        return RPC_UNIMPLEMENTED;
                }
                snprintf(s->netns, sizeof(s->netns), "%s", ns);
                if (!tool(vadd) || !tool(master) || !tool(ipaddr) || !tool(ethup) || !tool(loup)) {
                        snprintf(
                            err, errlen, "cannot wire namespace %s to bridge %s", ns, c->bridge);
                        return RPC_UNIMPLEMENTED;
                }
        }
        /* PostgreSQL listens on the bridge too, and trusts the subnet like loopback. */
        snprintf(prefix, sizeof(prefix), "%s.0/24", c->subnet);
        {
                char sql[256], hba[4096];
                FILE *f;
                snprintf(
                    sql, sizeof(sql), "ALTER SYSTEM SET listen_addresses = '127.0.0.1,%s'", host);
                if (pg_exec(c, sql, err, errlen) != RPC_OK) {
                        return RPC_UNAVAILABLE;
                }
                snprintf(hba, sizeof(hba), "%s/data/pg_hba.conf", c->pg_dir);
                f = fopen(hba, "a");
                if (f == NULL) {
                        snprintf(err, errlen, "cannot append to %s: %s", hba, strerror(errno));
                        return RPC_UNAVAILABLE;
                }
                fprintf(f, "host all all %s trust\n", prefix);
                fclose(f);
        }
        if (cluster_pg_stop(c, false, err, errlen) != RPC_OK
            || cluster_pg_start(c, err, errlen) != RPC_OK) {
                return RPC_UNAVAILABLE;
        }
        c->net_ready = true;
        return RPC_OK;
}

rpc_status
cluster_netns_enable(cluster *c, char *err, size_t errlen)
{
        if (!c->net_ready) {
                rpc_status st = net_setup(c, err, errlen);
                if (st != RPC_OK) {
                        net_teardown(c);
                        return st;
                }
        }
        c->net_on = true;
        compute_addresses(c);
        write_conf(c);
        return RPC_OK;
}

void
cluster_netns_disable(cluster *c)
{
        c->net_on = false;
        compute_addresses(c);
        write_conf(c);
}

/* The IPv4 address of a party ("postgres" or a service). */
static void
party_ip(const cluster *c, const char *party, char *buf, size_t len)
{
        if (strcmp(party, "postgres") == 0) {
                snprintf(buf, len, "%s.1", c->subnet);
                return;
        }
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                if (strcmp(c->svcs[i].name, party) == 0) {
                        snprintf(buf, len, "%s.%d", c->subnet, 10 + i);
                        return;
                }
        }
        buf[0] = '\0';
}

/* In s's namespace: drop what goes to and comes from `peer` (only PostgreSQL's port for
 * "postgres", so that the load driver on the host keeps its path). */
static rpc_status
cut_from(cluster *c, cluster_svc *s, const char *peer, char *err, size_t errlen)
{
        char ip[24], port[16];
        bool pg = strcmp(peer, "postgres") == 0;

        party_ip(c, peer, ip, sizeof(ip));
        snprintf(port, sizeof(port), "%d", c->pg_port);
        if (!s->cut) {
                char *table[] = { "nft", "add", "table", "inet", NFT_TABLE, NULL };
                char *out[] = { "nft", "add", "chain", "inet", NFT_TABLE, "out",
                        "{ type filter hook output priority 0 ; policy accept ; }", NULL };
                char *in[] = { "nft", "add", "chain", "inet", NFT_TABLE, "in",
                        "{ type filter hook input priority 0 ; policy accept ; }", NULL };
                if (!tool_in(s->netns, table) || !tool_in(s->netns, out)
                    || !tool_in(s->netns, in)) {
                        snprintf(
                            err, errlen, "nft: cannot create table %s in %s", NFT_TABLE, s->netns);
                        return RPC_INTERNAL;
                }
                s->cut = true;
        }
        char *drop_out_pg[] = { "nft", "add", "rule", "inet", NFT_TABLE, "out", "ip", "daddr", ip,
                "tcp", "dport", port, "drop", NULL };
        char *drop_in_pg[] = { "nft", "add", "rule", "inet", NFT_TABLE, "in", "ip", "saddr", ip,
                "tcp", "sport", port, "drop", NULL };
        char *drop_out[]
            = { "nft", "add", "rule", "inet", NFT_TABLE, "out", "ip", "daddr", ip, "drop", NULL };
        char *drop_in[]
            = { "nft", "add", "rule", "inet", NFT_TABLE, "in", "ip", "saddr", ip, "drop", NULL };
        if (!tool_in(s->netns, pg ? drop_out_pg : drop_out)
            || !tool_in(s->netns, pg ? drop_in_pg : drop_in)) {
                snprintf(err, errlen, "nft: cannot add a rule in %s", s->netns);
                return RPC_INTERNAL;
        }
        return RPC_OK;
}

rpc_status
cluster_cut(cluster *c, const char *a, const char *b, char *err, size_t errlen)
{
        cluster_svc *sa = find_svc(c, a);
        cluster_svc *sb = find_svc(c, b);
        rpc_status st = RPC_OK;

        if (!c->net_on) {
                snprintf(err, errlen, "the services do not run in namespaces");
                return RPC_FAILED_PRECONDITION;
        }
        if ((sa == NULL && strcmp(a, "postgres") != 0) || (sb == NULL && strcmp(b, "postgres") != 0)
            || (sa == NULL && sb == NULL)) {
                snprintf(err, errlen, "cannot cut %s from %s", a, b);
                return RPC_INVALID_ARGUMENT;
        }
        if (sa != NULL) {
                st = cut_from(c, sa, b, err, errlen);
        }
        if (st == RPC_OK && sb != NULL) {
                st = cut_from(c, sb, a, err, errlen);
        }
        return st;
}

rpc_status
cluster_heal(cluster *c, char *err, size_t errlen)
{
        rpc_status st = RPC_OK;

        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                cluster_svc *s = &c->svcs[i];
                if (s->cut) {
                        char *del[] = { "nft", "delete", "table", "inet", NFT_TABLE, NULL };
                        if (!tool_in(s->netns, del)) {
                                snprintf(err, errlen, "nft: cannot delete table %s in %s",
                                    NFT_TABLE, s->netns);
                                st = RPC_INTERNAL;
                                continue;
                        }
                        s->cut = false;
                }
        }
        return st;
}

/*
 * Teardown
 */
static void
unlink_live(cluster *c)
{
        for (cluster **p = &live; *p != NULL; p = &(*p)->next) {
                if (*p == c) {
                        *p = c->next;
                        return;
                }
        }
}

/* Stops what runs and removes what was made; keeps the struct. */
static void
teardown(cluster *c)
{
        char err[256];

        cluster_stop_all(c);
        if (c->pg_running && cluster_pg_stop(c, false, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "mercato-bench: %s\n", err);
        }
        net_teardown(c);
        if (!c->keep && c->dir != NULL) {
                char *argv[] = { "rm", "-rf", "--", c->dir, NULL };
                (void) tool(argv);
        }
}

void
cluster_free(cluster *c)
{
        if (c == NULL) {
                return;
        }
        unlink_live(c);
        teardown(c);
        for (int k = 0; k < c->n_settings; k++) {
                free(c->settings[k].section);
                free(c->settings[k].key);
                free(c->settings[k].value);
        }
        free(c->build_root);
        free(c->pg_script);
        free(c->dir);
        free(c->pg_dir);
        free(c->conf_path);
        free(c);
}

void
cluster_cleanup_all(void)
{
        while (live != NULL) {
                cluster *c = live;
                live = c->next;
                teardown(c);
        }
}
