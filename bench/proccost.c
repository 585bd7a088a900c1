/* proccost.c: CPU time and context switches per order, per process (see proccost.h). */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "proccost.h"
#include "rpc.pb-c.h"

#define N_SERVICES 6
#define PG_MAX_PIDS 1024

static const char *const services[N_SERVICES]
    = { "product", "cart", "user", "payment", "dataplatform", "order" };

/* One process's counters at one sample. */
typedef struct counters {
        bool ok;
        int pid;
        uint64_t cpu_us;
        uint64_t voluntary, involuntary;
} counters;

typedef struct sample {
        counters svc[N_SERVICES];
        counters pg[PG_MAX_PIDS];
        size_t n_pg;
        bool pg_ok;
        counters self;
} sample;

struct proccost_sampler {
        const rpc_conf *conf;
        char *pg_conninfo;
        sample first;
};

static counters
service_counters(const rpc_conf *conf, const char *name)
{
        const char *address = rpc_conf_get(conf, name, "address");
        rpc_client_opts co = { .timeout_ms = 2000, .max_attempts = 1 };
        Mercato__Rpc__V1__StatsRequest req = MERCATO__RPC__V1__STATS_REQUEST__INIT;
        rpc_call_opts opts = { .timeout_ms = 2000, .no_retry = true };
        ProtobufCMessage *resp = NULL;
        counters c = { 0 };
        rpc_client *cl = NULL;

        if (address == NULL || rpc_client_open(address, &co, &cl) != RPC_OK) {
                return c;
        }
        if (rpc_client_call(cl, "/mercato.rpc.v1.StandardService/Stats", &req.base,
                &mercato__rpc__v1__stats_response__descriptor, &resp, &opts, NULL)
            == RPC_OK) {
                const Mercato__Rpc__V1__StatsResponse *s = (const void *) resp;
                c = (counters) {
                        .ok = s->pid > 0,
                        .pid = s->pid,
                        .cpu_us = s->cpu_user_us + s->cpu_system_us,
                        .voluntary = s->voluntary_switches,
                        .involuntary = s->involuntary_switches,
                };
        }
        if (resp != NULL) {
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        rpc_client_free(cl);
        return c;
}

/* A PostgreSQL process's counters from /proc; not ok unless it is a postgres process here
 * (the server may be on another host, where the same pid is someone else). */
static counters
proc_counters(int pid)
{
        counters c = { .pid = pid };
        char path[64], buf[1024];
        unsigned long long utime, stime;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/comm", pid);
        if ((f = fopen(path, "r")) == NULL) {
                return c;
        }
        bool postgres = fgets(buf, sizeof(buf), f) != NULL && strcmp(buf, "postgres\n") == 0;
        fclose(f);
        if (!postgres) {
                return c;
        }
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        if ((f = fopen(path, "r")) == NULL) {
                return c;
        }
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* After the command's closing parenthesis: state (field 3) ... utime (14) stime (15). */
        const char *p = strrchr(buf, ')');
        if (p == NULL
            || sscanf(
                   p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime)
                != 2) {
                return c;
        }
        long hz = sysconf(_SC_CLK_TCK);
        c.cpu_us = (utime + stime) * 1000000ull / (unsigned long long) (hz > 0 ? hz : 100);
        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        if ((f = fopen(path, "r")) == NULL) {
                return c;
        }
        while (fgets(buf, sizeof(buf), f) != NULL) {
                unsigned long long v;
                if (sscanf(buf, "voluntary_ctxt_switches: %llu", &v) == 1) {
                        c.voluntary = v;
                } else if (sscanf(buf, "nonvoluntary_ctxt_switches: %llu", &v) == 1) {
                        c.involuntary = v;
                }
        }
        fclose(f);
        c.ok = true;
        return c;
}

static void
pg_sample(const char *conninfo, sample *s)
{
        PGconn *conn = conninfo != NULL ? PQconnectdb(conninfo) : NULL;
        PGresult *res = NULL;

        s->n_pg = 0;
        s->pg_ok = false;
        if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
                PQfinish(conn);
                return;
        }
        res = PQexec(conn, "SELECT pid FROM pg_stat_activity ORDER BY pid");
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                for (int r = 0; r < PQntuples(res) && s->n_pg < PG_MAX_PIDS; r++) {
                        counters c = proc_counters(atoi(PQgetvalue(res, r, 0)));
                        if (c.ok) {
                                s->pg[s->n_pg++] = c;
                        }
                }
        }
        s->pg_ok = s->n_pg > 0;
        PQclear(res);
        PQfinish(conn);
}

static counters
self_counters(void)
{
        struct rusage ru;
        counters c = { 0 };

        if (getrusage(RUSAGE_SELF, &ru) == 0) {
                c = (counters) {
                        .ok = true,
                        .pid = (int) getpid(),
                        .cpu_us = (uint64_t) ru.ru_utime.tv_sec * 1000000u
                            + (uint64_t) ru.ru_utime.tv_usec
                            + (uint64_t) ru.ru_stime.tv_sec * 1000000u
                            + (uint64_t) ru.ru_stime.tv_usec,
                        .voluntary = (uint64_t) ru.ru_nvcsw,
                        .involuntary = (uint64_t) ru.ru_nivcsw,
                };
        }
        return c;
}

static void
take(const proccost_sampler *ps, sample *s)
{
        for (int i = 0; i < N_SERVICES; i++) {
                s->svc[i] = service_counters(ps->conf, services[i]);
        }
        pg_sample(ps->pg_conninfo, s);
        s->self = self_counters();
}

/* b - a into p, per order; not measured unless both are, of the same process. */
static void
per_order(proccost_proc *p, const counters *a, const counters *b, uint64_t orders)
{
        p->ok = a->ok && b->ok && a->pid == b->pid && b->cpu_us >= a->cpu_us && orders > 0;
        if (p->ok) {
                double n = (double) orders;
                p->cpu_ms = (double) (b->cpu_us - a->cpu_us) / 1000.0 / n;
                p->voluntary = (double) (b->voluntary - a->voluntary) / n;
                p->switches = p->voluntary + (double) (b->involuntary - a->involuntary) / n;
        }
}

proccost_sampler *
proccost_start(const rpc_conf *conf, const char *pg_conninfo)
{
        proccost_sampler *ps = rpc_xcalloc(1, sizeof(*ps));

        ps->conf = conf;
        ps->pg_conninfo = pg_conninfo != NULL ? rpc_xstrdup(pg_conninfo) : NULL;
        take(ps, &ps->first);
        return ps;
}

void
proccost_stop(proccost_sampler *ps, uint64_t orders, proccost *ret)
{
        sample *last = rpc_xcalloc(1, sizeof(*last));

        memset(ret, 0, sizeof(*ret));
        ret->orders = orders;
        take(ps, last);
        for (int i = 0; i < N_SERVICES; i++) {
                ret->p[i].name = services[i];
                per_order(&ret->p[i], &ps->first.svc[i], &last->svc[i], orders);
        }

        /* PostgreSQL: every process at the end, from its first sample or from zero. */
        proccost_proc *pg = &ret->p[N_SERVICES];
        counters a = { .ok = true }, b = { .ok = true };
        pg->name = "postgres";
        for (size_t k = 0; k < last->n_pg; k++) {
                const counters *end = &last->pg[k];
                const counters *begin = NULL;
                for (size_t j = 0; j < ps->first.n_pg && begin == NULL; j++) {
                        if (ps->first.pg[j].pid == end->pid) {
                                begin = &ps->first.pg[j];
                        }
                }
                if (begin != NULL && begin->cpu_us <= end->cpu_us) {
                        a.cpu_us += begin->cpu_us;
                        a.voluntary += begin->voluntary;
                        a.involuntary += begin->involuntary;
                }
                b.cpu_us += end->cpu_us;
                b.voluntary += end->voluntary;
                b.involuntary += end->involuntary;
        }
        a.ok = ps->first.pg_ok;
        b.ok = last->pg_ok;
        per_order(pg, &a, &b, orders);

        ret->p[N_SERVICES + 1].name = "bench";
        per_order(&ret->p[N_SERVICES + 1], &ps->first.self, &last->self, orders);
        free(last);
        free(ps->pg_conninfo);
        free(ps);
}

double
proccost_total_cpu_ms(const proccost *c)
{
        double t = 0;

        for (int i = 0; i < PROCCOST_N; i++) {
                t += c->p[i].ok ? c->p[i].cpu_ms : 0;
        }
        return t;
}

double
proccost_total_switches(const proccost *c)
{
        double t = 0;

        for (int i = 0; i < PROCCOST_N; i++) {
                t += c->p[i].ok ? c->p[i].switches : 0;
        }
        return t;
}
