/* pglimit.c: pgbench on each database's script of a mode; see pglimit.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pglimit.h"
#include "pgscript.h"
#include "util.h"

/* The mean of pgbench's per-second progress lines ("progress: 3.0 s, 41.0 tps, ...") after
 * warmup_s; -1 if there is none. */
static double
progress_tps(const char *out, double warmup_s)
{
        double sum = 0;
        int n = 0;

        for (const char *p = strstr(out, "progress: "); p != NULL;
             p = strstr(p + 1, "progress: ")) {
                double t, tps;
                if (sscanf(p, "progress: %lf s, %lf tps", &t, &tps) == 2 && t > warmup_s + 0.5) {
                        sum += tps;
                        n++;
                }
        }
        return n > 0 ? sum / n : -1;
}

/* The first line of pgbench's output that says what went wrong. */
static void
pgbench_error(const char *out, char *err, size_t errlen)
{
        const char *p = strstr(out, "error: ");
        size_t n;

        if (p == NULL) {
                p = out;
        }
        n = strcspn(p, "\n");
        snprintf(err, errlen, "pgbench: %.*s", (int) (n < 300 ? n : 300), p);
}

static rpc_status
run_script(const replay_script *sc, int clients, double warmup_s, double duration_s,
    double *ret_tps, char *err, size_t errlen)
{
        char c[16], t[16];
        char *args = rpc_xstrdup(PGSCRIPT_PGBENCH_ARGS);
        char *argv[32];
        int n = 0;
        char *out = NULL;
        int rc;

        snprintf(c, sizeof(c), "%d", clients);
        snprintf(t, sizeof(t), "%d", (int) (warmup_s + duration_s + 0.999));
        argv[n++] = "pgbench";
        for (char *tok = strtok(args, " "); tok != NULL && n < 20; tok = strtok(NULL, " ")) {
                argv[n++] = tok;
        }
        argv[n++] = "-c";
        argv[n++] = c;
        argv[n++] = "-j";
        argv[n++] = clients > 1 ? "2" : "1";
        argv[n++] = "-T";
        argv[n++] = t;
        argv[n++] = "-P";
        argv[n++] = "1";
        argv[n++] = "-f";
        argv[n++] = (char *) sc->path;
        argv[n++] = (char *) sc->conninfo;
        argv[n] = NULL;
        rc = bench_run_merged(argv, &out);
        free(args);
        if (out == NULL) {
                snprintf(err, errlen, "cannot run pgbench");
                return RPC_UNAVAILABLE;
        }
        *ret_tps = progress_tps(out, warmup_s);
        if (rc != 0 || *ret_tps <= 0 || strstr(out, "aborted") != NULL) {
                pgbench_error(out, err, errlen);
                free(out);
                return RPC_INTERNAL;
        }
        free(out);
        return RPC_OK;
}

rpc_status
bench_pglimit(const replay_opts *o, const char *dir, double warmup_s, double duration_s,
    pglimit_result *ret, char *err, size_t errlen)
{
        char prefix[4096];
        replay_scripts sc;
        double per_order_s = 0;
        rpc_status st;

        memset(ret, 0, sizeof(*ret));
        snprintf(prefix, sizeof(prefix), "%s/pgbench-%s", dir, o->mode);
        st = bench_replay_emit(o, prefix, PGLIMIT_ORDERS, &sc, err, errlen);
        if (st != RPC_OK) {
                return st;
        }
        ret->orders = sc.orders;
        for (size_t i = 0; i < sc.n; i++) {
                pglimit_db *d = &ret->db[ret->n++];
                char e[512];

                snprintf(d->dbname, sizeof(d->dbname), "%s", sc.s[i].dbname);
                d->statements = sc.s[i].statements;
                d->transactions = sc.s[i].transactions;
                if (sc.s[i].conninfo[0] == '\0') {
                        snprintf(err, errlen, "%s: not a database of the topology", d->dbname);
                        return RPC_INTERNAL;
                }
                st = run_script(
                    &sc.s[i], o->clients, warmup_s, duration_s, &d->runs_per_s, e, sizeof(e));
                if (st != RPC_OK) {
                        snprintf(err, errlen, "%s: %s", d->dbname, e);
                        return st;
                }
                d->orders_per_s = d->runs_per_s * (double) sc.orders;
                per_order_s += 1.0 / d->orders_per_s;
        }
        ret->orders_per_s = per_order_s > 0 ? 1.0 / per_order_s : 0;
        return RPC_OK;
}
