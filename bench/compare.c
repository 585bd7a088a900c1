/* compare.c: `mercato-bench compare` and `sweep`: the five modes on identical data.
 *
 * For each mode: seed identical data, record the check's baseline, drive PlaceOrder from N
 * closed-loop clients with observers reading alongside, wait for quiescence, run `mercato
 * check`, then replay the same orders' SQL straight through libpq for the mode's ceiling. */
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "compare.h"
#include "load.h"
#include "order.pb-c.h"
#include "replay.h"
#include "seed_db.h"
#include "util.h"

const char *const bench_mode_names[BENCH_N_MODES]
    = { "saga", "2pc", "monolith", "orchestration", "tcc" };

static const int mode_values[BENCH_N_MODES] = {
        MERCATO__ORDER__V1__MODE__MODE_SAGA,
        MERCATO__ORDER__V1__MODE__MODE_TWO_PC,
        MERCATO__ORDER__V1__MODE__MODE_MONOLITH,
        MERCATO__ORDER__V1__MODE__MODE_ORCHESTRATION,
        MERCATO__ORDER__V1__MODE__MODE_TCC,
};

/* compare's pgbench warm-up before its measured seconds: the clients' random starts (at
 * most 1 s, pgscript.c) and their first runs. Shorter than `replay --pglimit`'s
 * PGLIMIT_WARMUP_S, so that five modes fit in compare's time (ctx_defaults). */
#define COMPARE_PGLIMIT_WARMUP_S 1

/* What one command was asked. */
typedef struct bench_ctx {
        const char *conf_path;
        rpc_conf *conf;
        bench_workload w;
        bool modes[BENCH_N_MODES];
        int clients;
        int clients_list[32];
        int n_clients;
        double duration_s, warmup_s;
        int observers;
        int64_t observe_us;
        bool replay;
        bool pglimit;     /* with the replay: pgbench on the mode's statements */
        double pglimit_s; /* measured seconds per database script */
        int64_t quiet_timeout_ms;
        const char *out;
} bench_ctx;

void
mode_result_free(mode_result *r)
{
        free(r->latency_ms);
        r->latency_ms = NULL;
}

static int
mode_index(const char *name)
{
        for (int i = 0; i < BENCH_N_MODES; i++) {
                if (strcmp(name, bench_mode_names[i]) == 0) {
                        return i;
                }
        }
        return -1;
}

/* Seeds the mode's dataset with the workload's data. */
static bool
seed_mode(const bench_ctx *x, bool monolith, char *err, size_t errlen)
{
        const seed_store *list[SEED_N_STORES];
        seed_failure fail;
        svc_seed s;

        bench_workload_seed(&x->w, &s);
        if (monolith) {
                for (size_t i = 0; i < SEED_N_STORES; i++) {
                        list[i] = &seed_stores[i];
                }
                if (seed_database(rpc_conf_get(x->conf, "monolith", "db"), list, SEED_N_STORES, &s,
                        NULL, NULL, &fail)
                    != RPC_OK) {
                        snprintf(err, errlen, "seeding the monolith database: %.400s", fail.msg);
                        return false;
                }
                return true;
        }
        for (size_t i = 0; i < SEED_N_STORES; i++) {
                list[0] = &seed_stores[i];
                if (seed_database(rpc_conf_get(x->conf, seed_stores[i].name, "db"), list, 1, &s,
                        NULL, NULL, &fail)
                    != RPC_OK) {
                        snprintf(
                            err, errlen, "seeding [%s] db: %.400s", seed_stores[i].name, fail.msg);
                        return false;
                }
        }
        return true;
}

/* `mercato check` over the mode's dataset with --record-baseline or --baseline FILE. With
 * ret_json, the parsed --json report goes there. Returns the exit status. */
static int
mercato_check(
    const bench_ctx *x, bool monolith, const char *flag, const char *file, json_t **ret_json)
{
        char *out = NULL;
        int rc = bench_mercato_check(x->conf_path, monolith ? "monolith" : "split",
            ret_json != NULL, flag, file, ret_json != NULL ? &out : NULL, ret_json == NULL);

        if (ret_json != NULL) {
                *ret_json = out != NULL ? json_loads(out, 0, NULL) : NULL;
        }
        free(out);
        return rc;
}

/* Counts the violations of a check report and names the invariants that failed. */
static void
read_check(const json_t *report, mode_result *r)
{
        const json_t *inv = json_object_get(report, "invariants");
        size_t i, off = 0;
        json_t *line;

        r->check_ok = json_is_true(json_object_get(report, "ok"));
        json_array_foreach(inv, i, line)
        {
                const char *status = json_string_value(json_object_get(line, "status"));
                if (status == NULL || strcmp(status, "FAIL") != 0) {
                        continue;
                }
                r->violations += json_integer_value(json_object_get(line, "violations"));
                const char *name = json_string_value(json_object_get(line, "name"));
                if (off < sizeof(r->check_failures)) {
                        off += (size_t) snprintf(r->check_failures + off,
                            sizeof(r->check_failures) - off, "%s%s", off > 0 ? ", " : "",
                            name != NULL ? name : "?");
                }
        }
}

static int
i64_cmp(const void *a, const void *b)
{
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

        return x < y ? -1 : x > y;
}

/* Orders of the window whose stock went back after being reserved: compensated. Only the
 * sagas (a release) and tcc (a cancel of a try that held) leave such rows; 2pc and the
 * monolith roll back instead. */
static uint64_t
count_compensated(const char *product_db, const load_result *run, char *err, size_t errlen)
{
        PGconn *c = PQconnectdb(product_db);
        uint64_t n = 0;

        if (PQstatus(c) != CONNECTION_OK) {
                snprintf(err, errlen, "%s", PQerrorMessage(c));
                PQfinish(c);
                return 0;
        }
        PGresult *res = PQexec(c,
            "SELECT DISTINCT order_id FROM reservations"
            " WHERE status = 'released' ORDER BY order_id");
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                int rows = PQntuples(res);
                int64_t *ids = rpc_xcalloc((size_t) rows + 1, sizeof(*ids));
                for (int i = 0; i < rows; i++) {
                        ids[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
                }
                for (size_t i = 0; i < run->n_orders; i++) {
                        const load_order *o = &run->orders[i];
                        if (o->counted && o->order_id > 0
                            && bsearch(&o->order_id, ids, (size_t) rows, sizeof(*ids), i64_cmp)
                                != NULL) {
                                n++;
                        }
                }
                free(ids);
        } else {
                snprintf(err, errlen, "%s", PQerrorMessage(c));
        }
        PQclear(res);
        PQfinish(c);
        return n;
}

/* Latencies, outcomes and errors of the orders in the window. */
static void
summarise(const load_result *run, mode_result *r)
{
        r->latency_ms = rpc_xcalloc(run->n_orders + 1, sizeof(double));
        for (size_t i = 0; i < run->n_orders; i++) {
                const load_order *o = &run->orders[i];
                if (!o->counted) {
                        continue;
                }
                r->orders++;
                if (o->rpc != RPC_OK || o->end_ns == 0) {
                        r->errors++;
                        continue;
                }
                r->latency_ms[r->n_latency++] = (double) (o->end_ns - o->start_ns) / 1e6;
                bool done = o->status == MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED;
                if (done) {
                        r->completed++;
                } else {
                        r->cancelled++;
                        r->by_reason[o->want.kind]++;
                        r->timeouts += strcmp(o->reason, "timeout") == 0;
                        r->participant_errors += strcmp(o->reason, "participant_error") == 0;
                }
                if (done != (o->want.kind == BENCH_KIND_OK)
                    || (!done && strcmp(o->reason, bench_kind_reason(o->want.kind)) != 0)) {
                        r->unexpected++;
                }
        }
        bench_sort(r->latency_ms, r->n_latency);
        r->p50_ms = bench_percentile(r->latency_ms, r->n_latency, 50);
        r->p99_ms = bench_percentile(r->latency_ms, r->n_latency, 99);
        r->p999_ms = bench_percentile(r->latency_ms, r->n_latency, 99.9);
        r->seconds = run->seconds;
        r->orders_per_s = run->seconds > 0 ? (double) r->orders / run->seconds : 0;
}

typedef struct progress_arg {
        const char *mode;
        int clients;
        double warmup_s;
} progress_arg;

static void
on_progress(void *arg, double elapsed_s, uint64_t orders, uint64_t errors)
{
        const progress_arg *p = arg;

        bench_progress("%-13s %2d clients  %5.1fs%s  orders %llu  %.0f/s  errors %llu", p->mode,
            p->clients, elapsed_s, elapsed_s < p->warmup_s ? " (warm-up)" : "",
            (unsigned long long) orders, elapsed_s > 0 ? (double) orders / elapsed_s : 0.0,
            (unsigned long long) errors);
}

/* Runs one mode at one client count and fills *r. Returns false (with err) only when the
 * run could not be made; a failed check is a result, not an error. */
static bool
run_mode(bench_ctx *x, int mi, int clients, bool observe, bool replay, mode_result *r, char *err,
    size_t errlen)
{
        bool monolith = mi == 2;
        const char *mode = bench_mode_names[mi];
        char baseline[4096];
        dbstat_dbs dbs;
        dbstat_sampler *sampler = NULL;
        observer *ob = NULL;
        load_result run;
        json_t *report = NULL;
        progress_arg parg = { mode, clients, x->warmup_s };

        memset(r, 0, sizeof(*r));
        r->mode = mode;
        r->clients = clients;
        if (!dbstat_dataset(x->conf, monolith, &dbs, err, errlen)) {
                return false;
        }
        bench_progress("%-13s seeding", mode);
        if (!seed_mode(x, monolith, err, errlen)) {
                return false;
        }
        snprintf(baseline, sizeof(baseline), "%s/baseline-%s.json", x->out, mode);
        if (mercato_check(x, monolith, "--record-baseline", baseline, NULL) != 0) {
                snprintf(err, errlen, "%s check --record-baseline failed", bench_mercato_path());
                return false;
        }
        if (dbstat_sampler_start(&dbs, 10, &sampler, err, errlen) != RPC_OK) {
                return false;
        }
        if (observe && x->observers > 0) {
                observe_opts oo = {
                        .user_address = rpc_conf_get(x->conf, "user", "address"),
                        .product_address = rpc_conf_get(x->conf, "product", "address"),
                        .order_address = rpc_conf_get(x->conf, "order", "address"),
                        .monolith = monolith,
                        .observers = x->observers,
                        .pause_us = x->observe_us,
                        .clients = clients,
                        .w = &x->w,
                };
                if (oo.user_address == NULL || oo.product_address == NULL) {
                        snprintf(err, errlen, "the topology names no [user] or [product] address");
                        dbstat_sampler_stop(sampler, NULL);
                        return false;
                }
                if (observe_start(&oo, &ob) != RPC_OK) {
                        snprintf(err, errlen, "cannot start the observers");
                        dbstat_sampler_stop(sampler, NULL);
                        return false;
                }
        }
        load_opts lo = {
                .order_address = rpc_conf_get(x->conf, "order", "address"),
                .mode = mode_values[mi],
                .w = &x->w,
                .clients = clients,
                .warmup_s = x->warmup_s,
                .duration_s = x->duration_s,
                .progress = on_progress,
                .progress_arg = &parg,
                .on_start = ob != NULL ? observe_on_start : NULL,
                .on_end = ob != NULL ? observe_on_end : NULL,
                .hook_arg = ob,
        };
        if (lo.order_address == NULL) {
                snprintf(err, errlen, "the topology names no [order] address");
                observe_stop(ob);
                dbstat_sampler_stop(sampler, NULL);
                return false;
        }
        proccost_sampler *pc = proccost_start(x->conf, dbs.conninfo[0]);
        if (load_run(&lo, &run, err, errlen) != RPC_OK) {
                proccost_stop(pc, 0, &r->cost);
                observe_stop(ob);
                dbstat_sampler_stop(sampler, NULL);
                return false;
        }
        observe_stop(ob);
        bench_progress("%-13s waiting for quiescence", mode);
        double waited_ms = 0;
        char qerr[256] = "";
        r->quiet = dbstat_wait_quiet(&dbs, x->quiet_timeout_ms, &waited_ms, qerr, sizeof(qerr));
        r->convergence_s = (double) (bench_now_ns() - run.t_end_ns) / 1e9;
        proccost_stop(pc, run.n_orders, &r->cost);
        if (!r->quiet) {
                fprintf(stderr, "mercato-bench: %s: %s\n", mode, qerr);
        }
        r->lock_wait_s = dbstat_sampler_stop(sampler, &r->lock_samples);
        summarise(&run, r);
        r->sustained_orders_per_s = r->seconds + r->convergence_s > 0
            ? (double) r->orders / (r->seconds + r->convergence_s)
            : 0;
        char cerr[256] = "";
        /* The product database: the second of the split dataset's, or the monolith's. */
        r->compensated
            = count_compensated(dbs.conninfo[monolith ? 0 : 1], &run, cerr, sizeof(cerr));
        if (mi == 1) {
                char terr[256];
                r->has_tpc
                    = dbstat_tpc_times(dbs.conninfo[0], &r->tpc, terr, sizeof(terr)) == RPC_OK;
        }
        bench_progress("%-13s mercato check", mode);
        r->check_exit = mercato_check(x, monolith, "--baseline", baseline, &report);
        if (report != NULL) {
                read_check(report, r);
                json_decref(report);
        }
        r->check_ok = r->check_ok && r->check_exit == 0;
        if (ob != NULL) {
                r->observed = true;
                observe_analyse(ob, &run, &r->obs);
        }
        load_result_free(&run);
        if (replay) {
                replay_opts ro = {
                        .conf = x->conf,
                        .mode = mode,
                        .w = &x->w,
                        .clients = clients,
                        .warmup_s = x->warmup_s,
                        .duration_s = x->duration_s,
                };
                replay_result rr;
                bench_progress("%-13s SQL replay", mode);
                if (bench_replay_run(&ro, &rr, err, errlen) != RPC_OK) {
                        bench_progress_end();
                        return false;
                }
                r->has_replay = true;
                r->replay_orders = rr.orders;
                r->replay_orders_per_s = rr.orders_per_s;
                r->replay_p50_ms = rr.p50_ms;
                r->replay_ratio = rr.orders_per_s > 0 ? r->orders_per_s / rr.orders_per_s : 0;
                r->replay_drain_s = rr.drain_s;
                r->replay_sustained_orders_per_s = rr.seconds + rr.drain_s > 0
                    ? (double) rr.orders / (rr.seconds + rr.drain_s)
                    : 0;
                r->sustained_ratio = r->replay_sustained_orders_per_s > 0
                    ? r->sustained_orders_per_s / r->replay_sustained_orders_per_s
                    : 0;
        }
        if (replay && x->pglimit) {
                replay_opts ro = {
                        .conf = x->conf,
                        .mode = mode,
                        .w = &x->w,
                        .clients = clients,
                };
                char dir[4096];
                snprintf(dir, sizeof(dir), "%s/pgbench", x->out);
                bench_progress("%-13s pgbench on its statements", mode);
                if (!bench_mkdirs(dir)
                    || bench_pglimit(&ro, dir, COMPARE_PGLIMIT_WARMUP_S, x->pglimit_s, &r->pglimit,
                           err, errlen)
                        != RPC_OK) {
                        bench_progress_end();
                        return false;
                }
                r->has_pglimit = true;
                r->pglimit_orders_per_s = r->pglimit.orders_per_s;
                r->pglimit_ratio = r->pglimit_orders_per_s > 0
                    ? r->replay_orders_per_s / r->pglimit_orders_per_s
                    : 0;
        }
        bench_progress_end();
        return true;
}

enum {
        OPT_CONF = 1000,
        OPT_MODES,
        OPT_CLIENTS,
        OPT_DURATION,
        OPT_WARMUP,
        OPT_OUT,
        OPT_OBSERVERS,
        OPT_OBSERVE_US,
        OPT_NO_REPLAY,
        OPT_NO_PGLIMIT,
        OPT_PGLIMIT_DURATION,
        OPT_REPLAY,
        OPT_QUIET_TIMEOUT,
        OPT_WORKLOAD,
};

static const struct option long_opts[] = {
        { "conf", required_argument, NULL, OPT_CONF },
        { "modes", required_argument, NULL, OPT_MODES },
        { "clients", required_argument, NULL, OPT_CLIENTS },
        { "duration", required_argument, NULL, OPT_DURATION },
        { "warmup", required_argument, NULL, OPT_WARMUP },
        { "out", required_argument, NULL, OPT_OUT },
        { "observers", required_argument, NULL, OPT_OBSERVERS },
        { "observe-us", required_argument, NULL, OPT_OBSERVE_US },
        { "no-replay", no_argument, NULL, OPT_NO_REPLAY },
        { "no-pglimit", no_argument, NULL, OPT_NO_PGLIMIT },
        { "pglimit-duration", required_argument, NULL, OPT_PGLIMIT_DURATION },
        { "replay", no_argument, NULL, OPT_REPLAY },
        { "quiet-timeout", required_argument, NULL, OPT_QUIET_TIMEOUT },
        { "products", required_argument, NULL, OPT_WORKLOAD },
        { "users", required_argument, NULL, OPT_WORKLOAD },
        { "hot-fraction", required_argument, NULL, OPT_WORKLOAD },
        { "fail-fraction", required_argument, NULL, OPT_WORKLOAD },
        { "seed", required_argument, NULL, OPT_WORKLOAD },
        { "stock", required_argument, NULL, OPT_WORKLOAD },
        { "balance", required_argument, NULL, OPT_WORKLOAD },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
};

static const char compare_help[]
    = "usage: mercato-bench compare [--modes LIST] [--clients N] [--duration S]\n"
      "         [--warmup S] [--products P] [--users U] [--hot-fraction F]\n"
      "         [--fail-fraction F] [--seed N] [--out DIR] [--conf FILE]\n"
      "         [--observers N] [--observe-us US] [--no-replay] [--no-pglimit]\n"
      "         [--pglimit-duration S]\n"
      "\n"
      "Runs each mode on identical data against the running cluster the topology names\n"
      "(--conf, default $MERCATO_CONF or deploy/local.conf). For each mode: seed its\n"
      "dataset, drive PlaceOrder from N closed-loop clients (a warm-up not counted), with\n"
      "observers reading balances, stock and orders through the public API; wait until the\n"
      "system is quiet; run `mercato check`; then replay the same orders' SQL straight\n"
      "through libpq (the ceiling), on databases of its own named <db>_replay; then record\n"
      "the mode's statements for a few orders as pgbench scripts, one per database, and\n"
      "run pgbench on each at the same client count: PostgreSQL's own limit (pglimit).\n"
      "\n"
      "  --modes LIST        which modes, in order (default\n"
      "                      saga,2pc,monolith,orchestration,tcc)\n"
      "  --clients N         closed-loop clients (default 16)\n"
      "  --duration S        measured seconds per mode (default 5)\n"
      "  --warmup S          seconds not counted first (default 1)\n"
      "  --products P        products 1..P (default 1000)\n"
      "  --users U           users 1..U (default 1000)\n"
      "  --hot-fraction F    share of items that go to the hottest 1% of products (0.1)\n"
      "  --fail-fraction F   share of orders built to fail: insufficient_balance,\n"
      "                      out_of_stock, payment_declined, evenly (default 0.1)\n"
      "  --seed N            data and order streams (default 42)\n"
      "  --out DIR           where compare.json, compare.csv and the plots go\n"
      "                      (default bench-out)\n"
      "  --observers N       observer threads (default 2; 0 turns them off)\n"
      "  --observe-us US     pause between an observer's read rounds (default 10000)\n"
      "  --no-replay         skip the SQL-replay ceiling (and pglimit)\n"
      "  --no-pglimit        skip pgbench on the mode's statements\n"
      "  --pglimit-duration S  measured seconds of pgbench per database script (default\n"
      "                      a third of --duration, at least 2), after a 1 s warm-up\n"
      "\n"
      "Prints one row per mode; a live progress line goes to stderr when it is a TTY.\n"
      "Exit status: 0 when every mode ran and its check passed, 1 when a check failed or a\n"
      "mode did not go quiet, 2 on a usage error, 3 when the cluster cannot be reached.\n";

static const char sweep_help[]
    = "usage: mercato-bench sweep [--clients 1,2,4,8,16,32] [--modes ...] [--duration S]\n"
      "         [--warmup S] [--replay] [workload options as compare] [--out DIR]\n"
      "\n"
      "Throughput against client count: each mode at each client count (seeded afresh,\n"
      "checked afterwards), without observers. --replay also measures the SQL-replay\n"
      "ceiling at each point. Writes sweep.json, sweep.csv and throughput-clients.png.\n"
      "Defaults: --clients 1,2,4,8,16,32 --duration 5 --warmup 1.\n";

static bool
parse_modes(bench_ctx *x, const char *list, char *err, size_t errlen)
{
        char buf[128];
        char *save = NULL;

        snprintf(buf, sizeof(buf), "%s", list);
        memset(x->modes, 0, sizeof(x->modes));
        for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
                int i = mode_index(t);
                if (i < 0) {
                        snprintf(err, errlen,
                            "--modes: unknown mode '%s' (saga, 2pc, monolith, orchestration, tcc)",
                            t);
                        return false;
                }
                x->modes[i] = true;
        }
        return true;
}

static bool
parse_clients(bench_ctx *x, const char *list, char *err, size_t errlen)
{
        char buf[256];
        char *save = NULL;

        snprintf(buf, sizeof(buf), "%s", list);
        x->n_clients = 0;
        for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
                char *end;
                long v = strtol(t, &end, 10);
                if (*end != '\0' || v < 1 || v > 256 || x->n_clients == 32) {
                        snprintf(
                            err, errlen, "--clients: '%s' is not 1..256 (at most 32 values)", t);
                        return false;
                }
                x->clients_list[x->n_clients++] = (int) v;
        }
        if (x->n_clients == 0) {
                snprintf(err, errlen, "--clients needs a value");
                return false;
        }
        x->clients = x->clients_list[0];
        return true;
}

static bool
parse_seconds(const char *name, const char *v, double lo, double *ret, char *err, size_t errlen)
{
        if (!bench_parse_double(v, lo, 3600, ret)) {
                snprintf(err, errlen, "--%s must be seconds in %g..3600, not '%s'", name, lo, v);
                return false;
        }
        return true;
}

/* Parses the options shared by compare and sweep. Returns -1 to go on, else an exit code. */
static int
parse(bench_ctx *x, int argc, char **argv, const char *help)
{
        char err[256] = "";
        int c, idx;
        bool ok = true;

        optind = 1;
        while (ok && (c = getopt_long(argc, argv, "h", long_opts, &idx)) != -1) {
                char *end;
                switch (c) {
                case OPT_CONF:
                        x->conf_path = optarg;
                        break;
                case OPT_MODES:
                        ok = parse_modes(x, optarg, err, sizeof(err));
                        break;
                case OPT_CLIENTS:
                        ok = parse_clients(x, optarg, err, sizeof(err));
                        break;
                case OPT_DURATION:
                        ok = parse_seconds(
                            "duration", optarg, 0.5, &x->duration_s, err, sizeof(err));
                        break;
                case OPT_WARMUP:
                        ok = parse_seconds("warmup", optarg, 0, &x->warmup_s, err, sizeof(err));
                        break;
                case OPT_OUT:
                        x->out = optarg;
                        break;
                case OPT_OBSERVERS:
                        x->observers = (int) strtol(optarg, &end, 10);
                        ok = *end == '\0' && x->observers >= 0 && x->observers <= 16;
                        if (!ok) {
                                snprintf(err, sizeof(err), "--observers must be 0..16");
                        }
                        break;
                case OPT_OBSERVE_US:
                        x->observe_us = strtoll(optarg, &end, 10);
                        ok = *end == '\0' && x->observe_us >= 100 && x->observe_us <= 1000000;
                        if (!ok) {
                                snprintf(err, sizeof(err), "--observe-us must be 100..1000000");
                        }
                        break;
                case OPT_NO_REPLAY:
                        x->replay = false;
                        break;
                case OPT_NO_PGLIMIT:
                        x->pglimit = false;
                        break;
                case OPT_PGLIMIT_DURATION:
                        ok = parse_seconds(
                            "pglimit-duration", optarg, 1, &x->pglimit_s, err, sizeof(err));
                        break;
                case OPT_REPLAY:
                        x->replay = true;
                        break;
                case OPT_QUIET_TIMEOUT:
                        x->quiet_timeout_ms = strtoll(optarg, &end, 10) * 1000;
                        ok = *end == '\0' && x->quiet_timeout_ms > 0;
                        if (!ok) {
                                snprintf(err, sizeof(err), "--quiet-timeout must be seconds > 0");
                        }
                        break;
                case OPT_WORKLOAD:
                        ok = bench_workload_option(
                                 &x->w, long_opts[idx].name, optarg, err, sizeof(err))
                            == 1;
                        break;
                case 'h':
                        fputs(help, stdout);
                        return 0;
                default:
                        fputs(help, stderr);
                        return 2;
                }
        }
        if (ok && optind < argc) {
                snprintf(err, sizeof(err), "unexpected argument '%s'", argv[optind]);
                ok = false;
        }
        if (ok) {
                ok = bench_workload_finish(&x->w, err, sizeof(err));
        }
        if (!ok) {
                fprintf(stderr, "mercato-bench %s: %s\n", argv[0], err);
                return 2;
        }
        if (x->conf_path == NULL) {
                x->conf_path = rpc_conf_default_path();
        }
        if (rpc_conf_load(x->conf_path, &x->conf, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "mercato-bench %s: %s\n", argv[0], err);
                return 2;
        }
        if (!bench_mkdirs(x->out)) {
                fprintf(stderr, "mercato-bench %s: cannot create %s\n", argv[0], x->out);
                return 2;
        }
        if (x->pglimit_s == 0) {
                x->pglimit_s = x->duration_s / 3 > 2 ? x->duration_s / 3 : 2;
        }
        return -1;
}

/* compare's defaults are sized to run the five modes in about 3 minutes on an idle 2-core
 * machine: a split mode spends 2 x (1 + 5) s on its load and its replay and 6 x (1 + 2) s
 * on pgbench, one database after another (the monolith 2 x 6 s and 1 x 3 s), 135 s of fixed
 * runs in all; the rest is seeding, checks and convergence, which grow with other load. */
static void
ctx_defaults(bench_ctx *x)
{
        *x = (bench_ctx) {
                .clients = 16,
                .duration_s = 5,
                .warmup_s = 1,
                .observers = 2,
                .observe_us = 10000,
                .replay = true,
                .pglimit = true,
                .quiet_timeout_ms = 120000,
                .out = "bench-out",
        };
        for (int i = 0; i < BENCH_N_MODES; i++) {
                x->modes[i] = true; /* every mode, unless --modes names some */
        }
        x->clients_list[0] = 16;
        x->n_clients = 1;
        bench_workload_defaults(&x->w);
}

/* The exit status of a set of results: 1 if any check failed or a mode never went quiet. */
static int
results_exit(const mode_result *r, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (!r[i].check_ok || !r[i].quiet) {
                        return 1;
                }
        }
        return 0;
}

int
bench_compare_main(int argc, char **argv)
{
        bench_ctx x;
        mode_result results[BENCH_N_MODES];
        size_t n = 0;
        char err[512] = "";
        int rc;

        ctx_defaults(&x);
        rc = parse(&x, argc, argv, compare_help);
        if (rc >= 0) {
                return rc;
        }
        printf("mercato-bench compare: %d clients, %.0f s (+%.0f s warm-up) per mode, %lld "
               "products, %lld users, hot %.2f, fail %.2f, seed %llu\n",
            x.clients, x.duration_s, x.warmup_s, (long long) x.w.products, (long long) x.w.users,
            x.w.hot_fraction, x.w.fail_fraction, (unsigned long long) x.w.seed);
        fflush(stdout);
        rc = 0;
        for (int mi = 0; mi < BENCH_N_MODES; mi++) {
                if (!x.modes[mi]) {
                        continue;
                }
                if (!run_mode(&x, mi, x.clients, true, x.replay, &results[n], err, sizeof(err))) {
                        bench_progress_end();
                        fprintf(
                            stderr, "mercato-bench compare: %s: %s\n", bench_mode_names[mi], err);
                        rc = strstr(err, "cannot") != NULL || strstr(err, "connect") != NULL ? 3
                                                                                             : 1;
                        mode_result_free(&results[n]);
                        break;
                }
                n++;
        }
        if (n > 0) {
                report_table(results, n);
                if (!report_compare(x.out, &x.w, results, n, err, sizeof(err))) {
                        fprintf(stderr, "mercato-bench compare: %s\n", err);
                        rc = rc != 0 ? rc : 1;
                } else {
                        printf("\nwritten: %s/compare.json, compare.csv, latency-cdf.png\n", x.out);
                }
        }
        if (rc == 0) {
                rc = results_exit(results, n);
        }
        for (size_t i = 0; i < n; i++) {
                mode_result_free(&results[i]);
        }
        rpc_conf_free(x.conf);
        return rc;
}

int
bench_sweep_main(int argc, char **argv)
{
        bench_ctx x;
        mode_result *results;
        size_t n = 0;
        char err[512] = "";
        int rc;

        ctx_defaults(&x);
        x.duration_s = 5;
        x.warmup_s = 1;
        x.replay = false;
        x.pglimit = false;
        x.n_clients = 6;
        memcpy(x.clients_list, (int[]) { 1, 2, 4, 8, 16, 32 }, 6 * sizeof(int));
        rc = parse(&x, argc, argv, sweep_help);
        if (rc >= 0) {
                return rc;
        }
        results = rpc_xcalloc((size_t) (x.n_clients * BENCH_N_MODES), sizeof(*results));
        rc = 0;
        for (int mi = 0; mi < BENCH_N_MODES && rc == 0; mi++) {
                for (int ci = 0; ci < x.n_clients && x.modes[mi]; ci++) {
                        if (!run_mode(&x, mi, x.clients_list[ci], false, x.replay, &results[n], err,
                                sizeof(err))) {
                                bench_progress_end();
                                fprintf(stderr, "mercato-bench sweep: %s at %d clients: %s\n",
                                    bench_mode_names[mi], x.clients_list[ci], err);
                                mode_result_free(&results[n]);
                                rc = 1;
                                break;
                        }
                        const mode_result *r = &results[n++];
                        printf(
                            "%-13s %3d clients  %8.1f orders/s  p50 %7.2f ms  p99 %7.2f ms  %s\n",
                            r->mode, r->clients, r->orders_per_s, r->p50_ms, r->p99_ms,
                            r->check_ok ? "check PASS" : "check FAIL");
                        fflush(stdout);
                }
        }
        if (n > 0) {
                if (!report_sweep(x.out, &x.w, results, n, err, sizeof(err))) {
                        fprintf(stderr, "mercato-bench sweep: %s\n", err);
                        rc = rc != 0 ? rc : 1;
                } else {
                        printf(
                            "\nwritten: %s/sweep.json, sweep.csv, throughput-clients.png\n", x.out);
                }
        }
        if (rc == 0) {
                rc = results_exit(results, n);
        }
        for (size_t i = 0; i < n; i++) {
                mode_result_free(&results[i]);
        }
        free(results);
        rpc_conf_free(x.conf);
        return rc;
}
