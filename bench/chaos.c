/* chaos.c: `mercato-bench chaos`: the fault scenarios, each run under load in each mode.
 *
 * NOTES
 *
 * One run is one scenario in one mode, on a cluster that this process owns (cluster.h):
 *
 *   CONFIGURE  every service stopped; the topology gets the run's settings (faults, short
 *              timeouts, the scenario's own), the mode's dataset is seeded and its baseline
 *              recorded (`mercato check --record-baseline`)
 *   START      every service started and answering Health
 *   LOAD       the order load (load.h) runs on a thread of its own; this thread injects the
 *              scenario's fault on its schedule (every process is forked from here, so the
 *              services' parent-death signal is tied to a thread that lives)
 *   HEAL       every paused service continued, every cut link restored, PostgreSQL
 *              started, every dead service started again, test crash points removed
 *   CONVERGE   until the dataset is quiet (no PENDING order, outbox drained or dead-lettered,
 *              no prepared transaction) and `mercato check` passes, or the bound runs out
 *   JUDGE      every acknowledged order (PlaceOrder answered COMPLETED) must be COMPLETED
 *              in the database; no order built to fail may complete; every invariant holds
 *
 * A run passes when no acknowledged order is lost, nothing is violated, and it converged.
 * Every wait is bounded; an interrupt (SIGINT, SIGTERM) ends the load and the injection at
 * once, and the cluster is torn down on every exit path (cluster_cleanup_all at exit).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cluster.h"
#include "dbstat.h"
#include "load.h"
#include "order.pb-c.h"
#include "seed_db.h"
#include "util.h"
#include "workload.h"

#define HOT_ORDERS 200
#define HOT_STOCK 10
#define CUT_MS 2500
#define PAUSE_MS 2500
#define POISON_TOPIC "order.completed"
#define LOAD_MAX_S 60

typedef enum chaos_mode {
        CHAOS_SAGA = 0,
        CHAOS_2PC = 1,
        CHAOS_MONOLITH = 2,
        CHAOS_ORCH = 3, /* the orchestrated saga, on the order service's orchestrator */
        CHAOS_TCC = 4,  /* try-confirm/cancel, on the same orchestrator */
        CHAOS_N_MODES = 5,
} chaos_mode;

static const char *const mode_names[CHAOS_N_MODES]
    = { "saga", "2pc", "monolith", "orchestration", "tcc" };
static const int mode_wire[CHAOS_N_MODES] = {
        MERCATO__ORDER__V1__MODE__MODE_SAGA,
        MERCATO__ORDER__V1__MODE__MODE_TWO_PC,
        MERCATO__ORDER__V1__MODE__MODE_MONOLITH,
        MERCATO__ORDER__V1__MODE__MODE_ORCHESTRATION,
        MERCATO__ORDER__V1__MODE__MODE_TCC,
};

/* The orchestrator's crash points ([order] orch_crash_at), in the order an order meets
 * them: forward, then backward (undo:*, met by orders that fail at debit or capture), then
 * the end. TCC adds its decision and each confirm. */
static const char *const orch_points[]
    = { "sent:reserve", "answered:reserve", "sent:debit", "answered:debit", "sent:capture",
              "answered:capture", "undo:debit", "undo:reserve", "finish" };
static const char *const tcc_points[] = { "sent:reserve", "answered:reserve", "sent:debit",
        "answered:debit", "sent:capture", "answered:capture", "decide", "confirm:reserve",
        "confirm:debit", "confirm:capture", "undo:debit", "undo:reserve", "finish" };

/* The share of failing orders in kill-coordinator on the orchestrator, at least: the undo
 * points fire only for an order that goes backward. */
#define ORCH_KILL_FAIL_FRACTION 0.3

/* How long a crash point may take to fire, and the orders it left to be re-driven. */
#define ORCH_CRASH_WAIT_MS 10000
#define ORCH_REDRIVE_WAIT_MS 10000

/* Set by SIGINT and SIGTERM: the load and the injection end, then the cluster goes. */
static atomic_bool interrupted;

typedef struct chaos_opts {
        double duration_s;
        double converge_s;
        uint64_t seed;
        int clients;
        bool json;
        bool keep;
        const char *build_root;
        const char *pg_script;
        const char *dir;
        char **sets; /* SECTION.KEY=VALUE, added to every run's topology */
        int n_sets;
        bench_workload w;
} chaos_opts;

/* What one run found. */
typedef struct chaos_result {
        const char *scenario;
        const char *mode;
        bool skipped;
        uint64_t attempted, acked, completed, cancelled, unknown;
        uint64_t lost;       /* acknowledged, then CANCELLED or missing */
        uint64_t violations; /* check violations plus orders that ended wrong */
        uint64_t faults;     /* faults injected */
        double converge_s;   /* heal to quiet and checked; < 0: did not converge */
        bool pass;
        char note[1024];
} chaos_result;

/* One run in progress. */
typedef struct chaos_run {
        const chaos_opts *o;
        cluster *c;
        chaos_mode mode;
        chaos_result *res;
        uint64_t rng;
        bench_workload w;
        int64_t t_end_ns; /* the load's planned end */
        atomic_bool load_done;
        atomic_bool stop; /* ends the load */
        atomic_uint_fast64_t orders_started;
        long log_at[CLUSTER_N_SERVICES]; /* each service's log size when the run began */
        char poison_id[64];              /* the poison event, once inserted */
        int64_t poison_ns;
} chaos_run;

typedef struct scenario {
        const char *name;
        const char *summary;
        /* Before the services start: settings; may skip the run (with the reason). */
        bool (*configure)(chaos_run *r, char *why, size_t len);
        /* While the load runs, on this thread; returns when the load is done. */
        void (*inject)(chaos_run *r);
        /* After the run, every service stopped: undoes what configure did. May be NULL. */
        void (*finish)(chaos_run *r);
        bool own_load;   /* hot-spot: its own burst instead of the load */
        bool until_done; /* the load lasts until inject returns (at most LOAD_MAX_S) */
} scenario;

static void note(chaos_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
note(chaos_result *res, const char *fmt, ...)
{
        size_t used = strlen(res->note);
        va_list ap;

        if (used + 3 >= sizeof(res->note)) {
                return;
        }
        if (used > 0) {
                used += (size_t) snprintf(res->note + used, sizeof(res->note) - used, "; ");
        }
        va_start(ap, fmt);
        vsnprintf(res->note + used, sizeof(res->note) - used, fmt, ap);
        va_end(ap);
}

static int64_t
rand_range(chaos_run *r, int64_t lo, int64_t hi)
{
        return lo + (int64_t) (rpc_rand_next(&r->rng) % (uint64_t) (hi - lo + 1));
}

/* Sleeps up to ms while the load goes on; false once it is over (or interrupted). */
static bool
nap(chaos_run *r, int64_t ms)
{
        int64_t until = bench_now_ns() + ms * 1000000;

        while (bench_now_ns() < until) {
                if (atomic_load(&r->load_done) || atomic_load(&interrupted)) {
                        return false;
                }
                bench_sleep_ms(20);
        }
        return !atomic_load(&r->load_done) && !atomic_load(&interrupted);
}

/* Whether a scenario goes on injecting: the load runs, and its planned time is not over or
 * fewer than min faults were injected (a short run still gets its faults). */
static bool
more(const chaos_run *r, uint64_t min)
{
        if (atomic_load(&r->load_done) || atomic_load(&interrupted)) {
                return false;
        }
        return bench_now_ns() < r->t_end_ns || r->res->faults < min;
}

/* The share of the planned load time that is left, in ms. */
static int64_t
left_ms(const chaos_run *r)
{
        int64_t left = (r->t_end_ns - bench_now_ns()) / 1000000;
        return left > 0 ? left : 0;
}

static const char *
random_service(chaos_run *r)
{
        return cluster_services[rand_range(r, 0, CLUSTER_N_SERVICES - 1)];
}

/* Starts a service again after a fault; notes a failure (the heal tries again). */
static void
restart(chaos_run *r, const char *service)
{
        char err[2048];

        if (cluster_start(r->c, service, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "chaos: restart of %s failed: %s\n", service, err);
        }
}

static void
set_all(chaos_run *r, const char *key, const char *value)
{
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                cluster_set(r->c, cluster_services[i], key, value);
        }
}

/*
 * The scenarios
 */

/* 1. kill-services: SIGKILL a random service every second or two, then start it again. */
static void
inject_kill_services(chaos_run *r)
{
        while (more(r, 3) && nap(r, rand_range(r, 700, 1800))) {
                const char *victim = random_service(r);
                if (cluster_signal(r->c, victim, SIGKILL)) {
                        r->res->faults++;
                }
                bench_sleep_ms(rand_range(r, 100, 600));
                restart(r, victim);
        }
}

static void
on_order_start(void *arg, const load_order *o)
{
        chaos_run *r = arg;

        (void) o;
        atomic_fetch_add(&r->orders_started, 1);
}

/* Waits (up to ms) until the order service has exited; true if it did. */
static bool
await_exit(chaos_run *r, const char *service, int64_t ms)
{
        int64_t until = bench_now_ns() + ms * 1000000;

        while (bench_now_ns() < until && !atomic_load(&interrupted)) {
                if (!cluster_alive(r->c, service)) {
                        return true;
                }
                bench_sleep_ms(10);
        }
        return !cluster_alive(r->c, service);
}

/* Kills the order service a few milliseconds after an order starts (k: how many so far). */
static void
kill_after_start(chaos_run *r, int k)
{
        uint64_t seen = atomic_load(&r->orders_started);

        for (int w = 0; w < 100 && atomic_load(&r->orders_started) == seen; w++) {
                bench_sleep_ms(2);
        }
        bench_sleep_ms(rand_range(r, 0, 8 * (k + 1)));
        if (cluster_signal(r->c, "order", SIGKILL)) {
                r->res->faults++;
        }
        bench_sleep_ms(rand_range(r, 100, 400));
        restart(r, "order");
}

/* Restarts a service so that it reads the topology again. */
static void
reload(chaos_run *r, const char *service)
{
        cluster_signal(r->c, service, SIGKILL);
        restart(r, service);
}

static const char *orders_db(const chaos_run *r);

/* The orders PENDING now, or -1 when the order database cannot say. */
static int64_t
count_pending(chaos_run *r)
{
        PGconn *conn = PQconnectdb(orders_db(r));
        int64_t n = -1;

        if (PQstatus(conn) == CONNECTION_OK) {
                PGresult *res
                    = PQexec(conn, "SELECT count(*) FROM orders WHERE status = 'PENDING'");
                if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
                }
                PQclear(res);
        }
        PQfinish(conn);
        return n;
}

/* Whether the mode runs on the order service's orchestrator (orch.c, tcc.c). */
static bool
on_orchestrator(chaos_mode mode)
{
        return mode == CHAOS_ORCH || mode == CHAOS_TCC;
}

/* The orchestrator's unfinished transactions (orch_saga forward, backward or confirming):
 * all of them, or (ids not NULL, a bigint[] literal) those among ids. Returns the count, or
 * -1 when the order database cannot say; *ret_ids (if not NULL) gets their ids as a bigint[]
 * literal, owned by the caller. */
static int64_t
unfinished_sagas(chaos_run *r, const char *ids, char **ret_ids)
{
        const char *params[1] = { ids };
        PGconn *conn = PQconnectdb(orders_db(r));
        int64_t n = -1;

        if (PQstatus(conn) == CONNECTION_OK) {
                PGresult *res = PQexecParams(conn,
                    "SELECT count(*), '{' || coalesce(string_agg(order_id::text, ','), '') || '}'"
                    " FROM orch_saga WHERE state IN ('forward', 'backward', 'confirming')"
                    " AND ($1::bigint[] IS NULL OR order_id = ANY ($1::bigint[]))",
                    1, NULL, params, NULL, NULL, 0);
                if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
                        if (ret_ids != NULL) {
                                *ret_ids = rpc_xstrdup(PQgetvalue(res, 0, 1));
                        }
                }
                PQclear(res);
        }
        PQfinish(conn);
        return n;
}

/* kill-coordinator on the orchestrator: for each crash point in turn, the order service is
 * started with [order] orch_crash_at at that point and exits there when the first order
 * reaches it; the orders it left unfinished (met: the one at the point and every other in
 * flight) are counted, the service started again without the point, and recovery must
 * drive each of them to its end (driven). The line's note gives met/driven per point. */
static void
kill_orchestrator(chaos_run *r)
{
        const char *const *points = r->mode == CHAOS_TCC ? tcc_points : orch_points;
        size_t n = r->mode == CHAOS_TCC ? sizeof(tcc_points) / sizeof(tcc_points[0])
                                        : sizeof(orch_points) / sizeof(orch_points[0]);
        char buf[640] = "";
        size_t used = 0;
        uint64_t missed = 0;

        for (size_t i = 0; i < n; i++) {
                int64_t met = -1, driven = -1;
                char *ids = NULL;
                char mark[64], err[2048];
                bool started, fired = false;
                long at;

                if (!nap(r, rand_range(r, 200, 500))) {
                        break;
                }
                cluster_signal(r->c, "order", SIGKILL);
                cluster_set(r->c, "order", "orch_crash_at", points[i]);
                at = cluster_log_size(r->c, "order");
                /* The start may fail because the point fires in the recovery at start-up:
                 * the service's own log says whether it did. */
                started = cluster_start(r->c, "order", err, sizeof(err)) == RPC_OK;
                if (await_exit(r, "order", ORCH_CRASH_WAIT_MS)) {
                        char *log = cluster_log_since(r->c, "order", at, 1 << 20);
                        snprintf(mark, sizeof(mark), "orch_crash_at %s reached", points[i]);
                        fired = strstr(log, mark) != NULL;
                        free(log);
                }
                if (fired) {
                        r->res->faults++;
                        met = unfinished_sagas(r, NULL, &ids);
                } else {
                        if (!started) {
                                fprintf(stderr, "chaos: restart of order failed: %s\n", err);
                        }
                        missed++;
                }
                cluster_signal(r->c, "order", SIGKILL);
                cluster_set(r->c, "order", "orch_crash_at", NULL);
                restart(r, "order");
                /* Recovery at start-up re-drives them: each must end (bounded). */
                if (ids != NULL) {
                        int64_t left = -1;
                        int64_t until = bench_now_ns() + ORCH_REDRIVE_WAIT_MS * 1000000LL;
                        while (!atomic_load(&interrupted)) {
                                left = unfinished_sagas(r, ids, NULL);
                                if (left == 0 || bench_now_ns() >= until) {
                                        break;
                                }
                                bench_sleep_ms(100);
                        }
                        driven = left >= 0 ? met - left : -1;
                        free(ids);
                }
                fprintf(stderr, "chaos:   crash at %s: %lld in flight, %lld driven to the end\n",
                    points[i], (long long) met, (long long) driven);
                if (used < sizeof(buf)) {
                        if (met < 0) {
                                used += (size_t) snprintf(buf + used, sizeof(buf) - used,
                                    "%s%s none", used > 0 ? ", " : "", points[i]);
                        } else {
                                used += (size_t) snprintf(buf + used, sizeof(buf) - used,
                                    "%s%s %lld/%lld", used > 0 ? ", " : "", points[i],
                                    (long long) met, (long long) driven);
                        }
                }
        }
        note(r->res, "met/driven: %s", buf);
        if (missed > 0) {
                note(r->res, "%llu points never reached", (unsigned long long) missed);
        }
        (void) nap(r, 1000); /* orders after the last restart */
}

/* Before kill-coordinator on the orchestrator: enough orders that go backward. */
static bool
configure_kill_coordinator(chaos_run *r, char *why, size_t len)
{
        (void) why;
        (void) len;
        if (on_orchestrator(r->mode) && r->w.fail_fraction > 0
            && r->w.fail_fraction < ORCH_KILL_FAIL_FRACTION) {
                r->w.fail_fraction = ORCH_KILL_FAIL_FRACTION;
        }
        return true;
}

/* 2. kill-coordinator. In 2pc, the order service dies at each crash point in turn ([order]
 * crash_at makes it exit right there). In saga, it dies while orders wait at each step in
 * turn: the step's switch (step.X = timeout) holds them there, the order service is killed
 * and started again, then the switch is lifted; and a few times right after an order
 * starts (its creation). In monolith, where an order is one transaction, it is killed a
 * few milliseconds after orders start. In orchestration and tcc, the orchestrator dies at
 * each of its crash points in turn (kill_orchestrator). */
static void
inject_kill_coordinator(chaos_run *r)
{
        static const char *const points[]
            = { "after_prepare", "after_decision", "after_first_commit" };
        static const char *const steps[][2]
            = { { "product", "step.reserve" }, { "user", "step.debit" },
                      { "payment", "step.capture" }, { "order", "step.complete" } };

        if (r->mode == CHAOS_SAGA) {
                for (int k = 0; k < 2 && nap(r, rand_range(r, 300, 700)); k++) {
                        kill_after_start(r, k);
                }
                for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                        if (!nap(r, 300)) {
                                break;
                        }
                        cluster_set(r->c, steps[i][0], steps[i][1], "timeout");
                        reload(r, steps[i][0]);
                        (void) nap(r, rand_range(r, 400, 800)); /* orders pile up there */
                        int64_t held = count_pending(r);
                        if (cluster_signal(r->c, "order", SIGKILL)) {
                                r->res->faults++;
                        }
                        /* The proof that the kill met orders at that step. */
                        note(r->res, "%lld pending at %s.%s", (long long) held, steps[i][0],
                            steps[i][1] + strlen("step."));
                        cluster_set(r->c, steps[i][0], steps[i][1], NULL);
                        if (strcmp(steps[i][0], "order") != 0) {
                                reload(r, steps[i][0]);
                        }
                        bench_sleep_ms(rand_range(r, 100, 300));
                        restart(r, "order");
                }
                (void) nap(r, 1000);
                return;
        }
        if (on_orchestrator(r->mode)) {
                kill_orchestrator(r);
                return;
        }
        if (r->mode == CHAOS_MONOLITH) {
                for (int k = 0; k < 6 && nap(r, rand_range(r, 400, 1000)); k++) {
                        kill_after_start(r, k);
                }
                (void) nap(r, 1000);
                return;
        }
        for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
                if (!nap(r, rand_range(r, 300, 700))) {
                        break;
                }
                cluster_signal(r->c, "order", SIGKILL);
                cluster_set(r->c, "order", "crash_at", points[i]);
                restart(r, "order");
                if (await_exit(r, "order", 10000)) {
                        r->res->faults++;
                } else {
                        note(r->res, "no crash at %s", points[i]);
                }
                cluster_signal(r->c, "order", SIGKILL);
                cluster_set(r->c, "order", "crash_at", NULL);
                restart(r, "order");
        }
        (void) nap(r, 1000); /* orders after the last restart */
}

/* 3. db-crash: PostgreSQL stopped with -m immediate in the middle of the load, then
 * started again; twice if the load lasts long enough. */
static void
inject_db_crash(chaos_run *r)
{
        char err[512];

        for (int k = 0; k < 2; k++) {
                if (k > 0 && left_ms(r) < 3000) {
                        break;
                }
                if (!nap(r, k == 0 ? 300 + left_ms(r) / 3 : left_ms(r) / 2)) {
                        break;
                }
                if (cluster_pg_stop(r->c, true, err, sizeof(err)) != RPC_OK) {
                        note(r->res, "%s", err);
                        break;
                }
                r->res->faults++;
                bench_sleep_ms(rand_range(r, 1000, 2000));
                if (cluster_pg_start(r->c, err, sizeof(err)) != RPC_OK) {
                        note(r->res, "%s", err);
                        break;
                }
        }
        (void) nap(r, 1000 + left_ms(r)); /* orders after the last restart */
}

/* 4. pause: SIGSTOP a service for longer than the RPC deadlines (set short for the run),
 * then SIGCONT. */
static bool
configure_pause(chaos_run *r, char *why, size_t len)
{
        (void) why;
        (void) len;
        cluster_set(r->c, "defaults", "deadline_ms", "1000");
        cluster_set(r->c, "order", "prepare_timeout_ms", "1000");
        return true;
}

static void
inject_pause(chaos_run *r)
{
        while (more(r, 2) && nap(r, rand_range(r, 300, 900))) {
                const char *victim = random_service(r);
                if (cluster_signal(r->c, victim, SIGSTOP)) {
                        r->res->faults++;
                        bench_sleep_ms(PAUSE_MS);
                        cluster_signal(r->c, victim, SIGCONT);
                }
        }
}

static void
inject_none(chaos_run *r)
{
        while (nap(r, 200)) { }
}

/* 5. duplicates: every request and event runs twice or three times, through the fault
 * rules of every service. */
static bool
configure_duplicates(chaos_run *r, char *why, size_t len)
{
        char seed[32];

        (void) why;
        (void) len;
        snprintf(seed, sizeof(seed), "%llu", (unsigned long long) r->o->seed);
        set_all(r, "faults", "* duplicate 0.5 2; * duplicate 1.0 1");
        set_all(r, "fault_seed", seed);
        r->res->faults = CLUSTER_N_SERVICES; /* rules on every service */
        return true;
}

/* 6. drop-delay: 5 to 20% of requests dropped or delayed, through the fault rules. */
static bool
configure_drop_delay(chaos_run *r, char *why, size_t len)
{
        char rules[128], seed[32];
        double drop = 0.03 + (double) rand_range(r, 0, 50) / 1000.0;
        double delay = 0.02 + (double) rand_range(r, 0, 100) / 1000.0;

        (void) why;
        (void) len;
        snprintf(rules, sizeof(rules), "* drop %.3f; * delay %.3f %d", drop, delay,
            (int) rand_range(r, 100, 400));
        snprintf(seed, sizeof(seed), "%llu", (unsigned long long) r->o->seed);
        set_all(r, "faults", rules);
        set_all(r, "fault_seed", seed);
        r->res->faults = CLUSTER_N_SERVICES;
        note(r->res, "faults: %s", rules);
        return true;
}

/* 7. partition: the services in network namespaces; order<->payment cut for a while, then
 * one service<->PostgreSQL link. */
static bool
configure_partition(chaos_run *r, char *why, size_t len)
{
        if (cluster_netns_enable(r->c, why, len) != RPC_OK) {
                return false;
        }
        cluster_set(r->c, "defaults", "deadline_ms", "2000");
        return true;
}

static void
cut_for(chaos_run *r, const char *a, const char *b)
{
        char err[512];

        if (cluster_cut(r->c, a, b, err, sizeof(err)) != RPC_OK) {
                note(r->res, "%s", err);
                return;
        }
        r->res->faults++;
        bench_sleep_ms(CUT_MS);
        if (cluster_heal(r->c, err, sizeof(err)) != RPC_OK) {
                note(r->res, "%s", err);
        }
}

static void
inject_partition(chaos_run *r)
{
        /* The monolith never calls payment: its link to PostgreSQL is what matters. */
        const char *db_victim = r->mode == CHAOS_MONOLITH ? "order" : "user";

        if (nap(r, 300 + left_ms(r) / 5)) {
                cut_for(r, "order", "payment");
        }
        if (nap(r, 300 + left_ms(r) / 4)) {
                cut_for(r, db_victim, "postgres");
        }
        (void) nap(r, 1000 + left_ms(r));
}

static void
finish_partition(chaos_run *r)
{
        cluster_netns_disable(r->c);
}

/* 9. poison: an event no consumer can decode goes to the dead letters; the rest flows. */
static bool
configure_poison(chaos_run *r, char *why, size_t len)
{
        (void) why;
        (void) len;
        cluster_set(r->c, "defaults", "relay_max_attempts", "3");
        return true;
}

static const char *
orders_db(const chaos_run *r)
{
        return cluster_db(r->c, r->mode == CHAOS_MONOLITH ? "monolith" : "order");
}

static void
inject_poison(chaos_run *r)
{
        const char *params[2] = { "order", POISON_TOPIC };
        PGconn *conn;
        PGresult *res;

        if (!nap(r, 300 + left_ms(r) / 3)) {
                note(r->res, "the load ended before the poison");
                return;
        }
        conn = PQconnectdb(orders_db(r));
        if (PQstatus(conn) == CONNECTION_OK) {
                /* Bytes that are no protobuf: every consumer refuses them. */
                res = PQexecParams(conn,
                    "INSERT INTO txn_outbox (source, topic, aggregate_id, payload) "
                    "VALUES ($1, $2, 0, '\\xffffffffff'::bytea) RETURNING event_id::text",
                    2, NULL, params, NULL, NULL, 0);
                if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                        snprintf(r->poison_id, sizeof(r->poison_id), "%s", PQgetvalue(res, 0, 0));
                        r->poison_ns = bench_now_ns();
                        r->res->faults++;
                } else {
                        note(r->res, "poison insert failed: %s", PQerrorMessage(conn));
                }
                PQclear(res);
        } else {
                note(r->res, "poison: %s", PQerrorMessage(conn));
        }
        PQfinish(conn);
        (void) nap(r, left_ms(r) > 2000 ? left_ms(r) : 2000); /* the rest must flow */
}

static bool
configure_none(chaos_run *r, char *why, size_t len)
{
        (void) r;
        (void) why;
        (void) len;
        return true;
}

static const scenario scenarios[] = {
        { "kill-services", "SIGKILL a random service every second or two, then restart it",
            configure_none, inject_kill_services, NULL, false, true },
        { "kill-coordinator",
            "kill the order service at each 2pc point, saga step, orchestrator point",
            configure_kill_coordinator, inject_kill_coordinator, NULL, false, true },
        { "db-crash", "pg_ctl stop -m immediate mid-load, then start", configure_none,
            inject_db_crash, NULL, false, true },
        { "pause", "SIGSTOP a service past the RPC deadlines, then SIGCONT", configure_pause,
            inject_pause, NULL, false, true },
        { "duplicates", "every request and event delivered two or three times",
            configure_duplicates, inject_none, NULL, false, false },
        { "drop-delay", "5-20% of requests dropped or delayed", configure_drop_delay, inject_none,
            NULL, false, false },
        { "partition", "nftables cuts order<->payment, then a service<->PostgreSQL",
            configure_partition, inject_partition, finish_partition, false, true },
        { "hot-spot", "200 concurrent orders for one product with stock 10", configure_none,
            inject_none, NULL, true, false },
        { "poison", "an undecodable event is dead-lettered, the rest flows", configure_poison,
            inject_poison, NULL, false, true },
};
#define N_SCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

/*
 * Seeding and checking
 */
static rpc_status
seed(chaos_run *r, char *err, size_t errlen)
{
        svc_seed s;
        seed_failure f;
        rpc_status st;

        bench_workload_seed(&r->w, &s);
        if (r->mode == CHAOS_MONOLITH) {
                const seed_store *list[SEED_N_STORES];
                for (size_t i = 0; i < SEED_N_STORES; i++) {
                        list[i] = &seed_stores[i];
                }
                st = seed_database(
                    cluster_db(r->c, "monolith"), list, SEED_N_STORES, &s, NULL, NULL, &f);
                if (st != RPC_OK) {
                        snprintf(err, errlen, "seeding the monolith: %s", f.msg);
                }
                return st;
        }
        for (size_t i = 0; i < SEED_N_STORES; i++) {
                const seed_store *one = &seed_stores[i];
                st = seed_database(cluster_db(r->c, one->name), &one, 1, &s, NULL, NULL, &f);
                if (st != RPC_OK) {
                        snprintf(err, errlen, "seeding %s: %s", one->name, f.msg);
                        return st;
                }
        }
        return RPC_OK;
}

static const char *
dataset(const chaos_run *r)
{
        return r->mode == CHAOS_MONOLITH ? "monolith" : "split";
}

static void
baseline_path(const chaos_run *r, char *buf, size_t len)
{
        snprintf(
            buf, len, "%s/baseline-%s-%s.json", cluster_dir(r->c), r->res->scenario, r->res->mode);
}

static rpc_status
record_baseline(chaos_run *r, char *err, size_t errlen)
{
        char path[4096];
        int rc;

        baseline_path(r, path, sizeof(path));
        rc = bench_mercato_check(
            cluster_conf_path(r->c), dataset(r), false, "--record-baseline", path, NULL, false);
        if (rc != 0) {
                snprintf(err, errlen, "mercato check --record-baseline failed (exit %d)", rc);
                return RPC_INTERNAL;
        }
        return RPC_OK;
}

/* What one `mercato check --json` said, judged for this run. */
typedef struct check_verdict {
        bool ran;
        bool ok;
        uint64_t violations;
        bool poison_dead; /* the poison event is among the dead letters */
        char failed[256]; /* names of the failing lines */
} check_verdict;

/* A dead-letter line that lists nothing but the poison event is expected. */
static bool
only_poison(const chaos_run *r, json_t *inv)
{
        json_t *ids = json_object_get(inv, "ids");
        size_t i;
        json_t *id;

        if (r->poison_id[0] == '\0' || !json_is_array(ids) || json_array_size(ids) == 0) {
                return false;
        }
        json_array_foreach(ids, i, id)
        {
                if (!json_is_string(id) || strcmp(json_string_value(id), r->poison_id) != 0) {
                        return false;
                }
        }
        return true;
}

static check_verdict
run_check(chaos_run *r)
{
        char path[4096];
        check_verdict v = { 0 };
        char *out = NULL;
        json_error_t jerr;
        json_t *doc, *invs, *inv;
        size_t i;

        baseline_path(r, path, sizeof(path));
        (void) bench_mercato_check(
            cluster_conf_path(r->c), dataset(r), true, "--baseline", path, &out, true);
        doc = out != NULL ? json_loads(out, 0, &jerr) : NULL;
        free(out);
        invs = json_object_get(doc, "invariants");
        if (!json_is_array(invs)) {
                json_decref(doc);
                snprintf(v.failed, sizeof(v.failed), "check did not run");
                return v;
        }
        v.ran = true;
        json_array_foreach(invs, i, inv)
        {
                const char *status = json_string_value(json_object_get(inv, "status"));
                const char *name = json_string_value(json_object_get(inv, "name"));
                json_int_t n = json_integer_value(json_object_get(inv, "violations"));
                if (status == NULL || strcmp(status, "PASS") == 0) {
                        continue;
                }
                if (name != NULL && strcmp(name, "dead letters") == 0 && only_poison(r, inv)) {
                        v.poison_dead = true;
                        continue;
                }
                v.violations += n > 0 ? (uint64_t) n : 1;
                size_t used = strlen(v.failed);
                snprintf(v.failed + used, sizeof(v.failed) - used, "%s%s", used > 0 ? "," : "",
                    name != NULL ? name : "?");
        }
        /* The poison must have reached the dead letters for the poison run to pass. */
        if (r->poison_id[0] != '\0' && !v.poison_dead) {
                v.violations++;
                size_t used = strlen(v.failed);
                snprintf(v.failed + used, sizeof(v.failed) - used, "%spoison not dead-lettered",
                    used > 0 ? "," : "");
        }
        v.ok = v.violations == 0;
        json_decref(doc);
        return v;
}

/* Until the dataset is quiet (on the orchestrator, also no orch_saga unfinished) and the
 * check passes, bounded by --converge-timeout. Returns the last verdict; *ret_s is the time
 * it took, or -1. */
static check_verdict
converge(chaos_run *r, int64_t t_heal_ns, double *ret_s)
{
        int64_t until = t_heal_ns + (int64_t) (r->o->converge_s * 1e9);
        check_verdict v = { 0 };
        rpc_conf *conf = NULL;
        dbstat_dbs dbs;
        char err[512];

        *ret_s = -1;
        if (rpc_conf_load(cluster_conf_path(r->c), &conf, err, sizeof(err)) != RPC_OK
            || !dbstat_dataset(conf, r->mode == CHAOS_MONOLITH, &dbs, err, sizeof(err))) {
                note(r->res, "%s", err);
                rpc_conf_free(conf);
                return run_check(r);
        }
        for (int pass = 0; pass < 1000; pass++) {
                int64_t left = (until - bench_now_ns()) / 1000000;
                double quiet_ms;
                bool quiet = left > 0 && dbstat_wait_quiet(&dbs, left, &quiet_ms, err, sizeof(err));
                /* On the orchestrator, quiet also means every transaction of its log ended. */
                if (quiet && on_orchestrator(r->mode)) {
                        quiet = unfinished_sagas(r, NULL, NULL) == 0;
                }
                v = run_check(r);
                fprintf(stderr, "chaos:   %.1f s after the heal: %s, check %s%s\n",
                    (double) (bench_now_ns() - t_heal_ns) / 1e9, quiet ? "quiet" : "not quiet",
                    v.ok ? "passed" : "failed: ", v.failed);
                if (quiet && v.ok) {
                        *ret_s = (double) (bench_now_ns() - t_heal_ns) / 1e9;
                        break;
                }
                if (bench_now_ns() >= until || atomic_load(&interrupted)) {
                        break;
                }
                bench_sleep_ms(500);
        }
        rpc_conf_free(conf);
        return v;
}

/* The final state of the orders of the run: by id and by idempotency key. */
typedef struct final_order {
        int64_t id;
        char status; /* 'C' completed, 'X' cancelled, 'P' pending */
        char key[40];
        char reason[24];
} final_order;

static int
cmp_id(const void *a, const void *b)
{
        const final_order *x = a, *y = b;
        return x->id < y->id ? -1 : x->id > y->id;
}

static int
cmp_key(const void *a, const void *b)
{
        return strcmp(((const final_order *) a)->key, ((const final_order *) b)->key);
}

static final_order *
read_orders(chaos_run *r, size_t *ret_n)
{
        PGconn *conn = PQconnectdb(orders_db(r));
        PGresult *res;
        final_order *v = NULL;
        size_t n = 0;

        *ret_n = 0;
        if (PQstatus(conn) != CONNECTION_OK) {
                note(r->res, "orders: %s", PQerrorMessage(conn));
                PQfinish(conn);
                return NULL;
        }
        res = PQexec(conn, "SELECT id, status, coalesce(idempotency_key, ''), reason FROM orders");
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                n = (size_t) PQntuples(res);
                v = rpc_xcalloc(n > 0 ? n : 1, sizeof(*v));
                for (size_t i = 0; i < n; i++) {
                        const char *st = PQgetvalue(res, (int) i, 1);
                        v[i].id = strtoll(PQgetvalue(res, (int) i, 0), NULL, 10);
                        v[i].status = strcmp(st, "COMPLETED") == 0 ? 'C'
                            : strcmp(st, "CANCELLED") == 0         ? 'X'
                                                                   : 'P';
                        snprintf(v[i].key, sizeof(v[i].key), "%s", PQgetvalue(res, (int) i, 2));
                        snprintf(
                            v[i].reason, sizeof(v[i].reason), "%s", PQgetvalue(res, (int) i, 3));
                }
        } else {
                note(r->res, "orders: %s", PQerrorMessage(conn));
        }
        PQclear(res);
        PQfinish(conn);
        *ret_n = n;
        return v;
}

/* Counts the outcomes of the orders attempted, and the acknowledged ones lost. */
static void
judge_orders(chaos_run *r, const load_order *orders, size_t n)
{
        size_t n_final;
        final_order *by_id = read_orders(r, &n_final);
        final_order *by_key = rpc_xcalloc(n_final > 0 ? n_final : 1, sizeof(*by_key));
        uint64_t wrong = 0;
        struct {
                const char *reason;
                uint64_t n;
        } why[8] = { { 0 } };

        memcpy(by_key, by_id, n_final * sizeof(*by_key));
        qsort(by_id, n_final, sizeof(*by_id), cmp_id);
        qsort(by_key, n_final, sizeof(*by_key), cmp_key);
        for (size_t i = 0; i < n; i++) {
                const load_order *o = &orders[i];
                final_order probe = { .id = o->order_id };
                final_order *f = NULL;

                r->res->attempted++;
                r->res->acked += o->acked;
                if (o->order_id > 0) {
                        f = bsearch(&probe, by_id, n_final, sizeof(*by_id), cmp_id);
                }
                if (f == NULL && o->key[0] != '\0') {
                        snprintf(probe.key, sizeof(probe.key), "%s", o->key);
                        f = bsearch(&probe, by_key, n_final, sizeof(*by_key), cmp_key);
                }
                if (f == NULL) {
                        r->res->unknown++;
                } else if (f->status == 'C') {
                        r->res->completed++;
                } else if (f->status == 'X') {
                        r->res->cancelled++;
                        for (size_t k = 0; k < 8; k++) {
                                if (why[k].reason == NULL
                                    || strcmp(why[k].reason, f->reason) == 0) {
                                        why[k].reason = f->reason;
                                        why[k].n++;
                                        break;
                                }
                        }
                } else {
                        r->res->unknown++;
                }
                if (o->acked && (f == NULL || f->status != 'C')) {
                        r->res->lost++;
                }
                /* An order built to fail (no balance, no stock, a declining user) that
                 * completed is a wrong outcome. */
                if (f != NULL && f->status == 'C' && o->want.kind != BENCH_KIND_OK) {
                        wrong++;
                }
        }
        if (r->res->cancelled > 0) {
                char buf[160] = "";
                size_t used = 0;
                for (size_t k = 0; k < 8 && why[k].reason != NULL && used < sizeof(buf); k++) {
                        used += (size_t) snprintf(buf + used, sizeof(buf) - used, "%s%s %llu",
                            k > 0 ? ", " : "", why[k].reason, (unsigned long long) why[k].n);
                }
                fprintf(stderr, "chaos:   cancelled: %s\n", buf);
        }
        if (wrong > 0) {
                note(r->res, "%llu orders built to fail completed", (unsigned long long) wrong);
                r->res->violations += wrong;
        }
        free(by_id);
        free(by_key);
}

/* A sanitizer report (ASan, UBSan, LSan) in a service's log during the run is a violation:
 * the suite runs in the sanitizer build too. */
static void
judge_logs(chaos_run *r)
{
        static const char *const marks[]
            = { "ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer" };

        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                char *log = cluster_log_since(r->c, cluster_services[i], r->log_at[i], 1 << 22);
                for (size_t k = 0; k < sizeof(marks) / sizeof(marks[0]); k++) {
                        if (strstr(log, marks[k]) != NULL) {
                                note(r->res, "%s in %s.log", marks[k], cluster_services[i]);
                                r->res->violations++;
                                break;
                        }
                }
                free(log);
        }
}

/*
 * The load and the hot spot
 */
typedef struct load_thread {
        chaos_run *r;
        load_opts opts;
        load_result res;
        rpc_status st;
        char err[512];
} load_thread;

static void *
load_main(void *arg)
{
        load_thread *lt = arg;

        lt->st = load_run(&lt->opts, &lt->res, lt->err, sizeof(lt->err));
        atomic_store(&lt->r->load_done, true);
        return NULL;
}

typedef struct hot_client {
        chaos_run *r;
        rpc_client *cl;
        atomic_bool *go;
        load_order rec;
} hot_client;

static void *
hot_main(void *arg)
{
        static const char *const mono_md[] = { "dataset", "monolith", NULL };
        hot_client *h = arg;
        Mercato__Order__V1__PlaceOrderRequest req = MERCATO__ORDER__V1__PLACE_ORDER_REQUEST__INIT;
        Mercato__Order__V1__PlaceOrderItem item = MERCATO__ORDER__V1__PLACE_ORDER_ITEM__INIT;
        Mercato__Order__V1__PlaceOrderItem *items[1] = { &item };
        ProtobufCMessage *resp = NULL;
        rpc_error e = { 0 };
        rpc_call_opts copts = {
                .timeout_ms = 30000,
                .attempt_timeout_ms = 10000,
                .idempotency_key = h->rec.key,
                .metadata = h->r->mode == CHAOS_MONOLITH ? mono_md : NULL,
        };

        req.user_id = h->rec.want.user_id;
        req.mode = (Mercato__Order__V1__Mode) mode_wire[h->r->mode];
        item.product_id = h->rec.want.product_id[0];
        item.quantity = h->rec.want.quantity[0];
        req.n_items = 1;
        req.items = items;
        /* All at once: wait for the gate (bounded). */
        for (int i = 0; i < 10000 && !atomic_load(h->go); i++) {
                bench_sleep_ms(1);
        }
        h->rec.start_ns = bench_now_ns();
        h->rec.rpc = rpc_client_call(h->cl, "/mercato.order.v1.OrderService/PlaceOrder", &req.base,
            &mercato__order__v1__place_order_response__descriptor, &resp, &copts, &e);
        h->rec.reply_ns = bench_now_ns();
        if (h->rec.rpc == RPC_OK) {
                const Mercato__Order__V1__PlaceOrderResponse *pr
                    = (const Mercato__Order__V1__PlaceOrderResponse *) resp;
                if (pr->order != NULL) {
                        h->rec.order_id = pr->order->order_id;
                        h->rec.status = (int) pr->order->status;
                }
                h->rec.acked
                    = h->rec.status == MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED;
                protobuf_c_message_free_unpacked(resp, NULL);
        } else {
                h->rec.transport = e.transport;
        }
        return NULL;
}

/* HOT_ORDERS orders of one unit of product 1, which has HOT_STOCK, all at once. */
static void
run_hot_spot(chaos_run *r, load_result *ret)
{
        hot_client *hc = rpc_xcalloc(HOT_ORDERS, sizeof(*hc));
        pthread_t *th = rpc_xcalloc(HOT_ORDERS, sizeof(*th));
        rpc_client_opts co = { .breaker_threshold = 1000000 };
        atomic_bool go = false;
        rpc_client *cl = NULL;
        int started = 0;

        memset(ret, 0, sizeof(*ret));
        if (rpc_client_open(cluster_address(r->c, "order"), &co, &cl) != RPC_OK) {
                note(r->res, "no client for the order service");
                free(hc);
                free(th);
                return;
        }
        for (int i = 0; i < HOT_ORDERS; i++) {
                hc[i] = (hot_client) { .r = r, .cl = cl, .go = &go };
                hc[i].rec.client = i;
                hc[i].rec.want = (bench_order) {
                        .user_id = 1 + (i % r->w.normal_users),
                        .n_items = 1,
                        .product_id = { 1 },
                        .quantity = { 1 },
                        .kind = BENCH_KIND_OK,
                };
                snprintf(hc[i].rec.key, sizeof(hc[i].rec.key), "hot-%d-%llx-%d", (int) getpid(),
                    (unsigned long long) r->rng, i);
        }
        for (int i = 0; i < HOT_ORDERS; i++) {
                if (pthread_create(&th[i], NULL, hot_main, &hc[i]) != 0) {
                        break;
                }
                started++;
        }
        if (started < HOT_ORDERS) {
                note(r->res, "only %d of %d threads started", started, HOT_ORDERS);
        }
        bench_sleep_ms(50);
        atomic_store(&go, true);
        for (int i = 0; i < started; i++) {
                pthread_join(th[i], NULL);
        }
        rpc_client_free(cl);
        ret->n_orders = (size_t) started;
        ret->orders = rpc_xcalloc(HOT_ORDERS, sizeof(*ret->orders));
        for (int i = 0; i < started; i++) {
                ret->orders[i] = hc[i].rec;
        }
        free(hc);
        free(th);
        atomic_store(&r->load_done, true);
}

/* Exactly HOT_STOCK completed, and product 1 has no stock left (and not less). */
static void
judge_hot_spot(chaos_run *r)
{
        const char *db = cluster_db(r->c, r->mode == CHAOS_MONOLITH ? "monolith" : "product");
        PGconn *conn = PQconnectdb(db);
        PGresult *res;

        if (r->res->completed != HOT_STOCK) {
                note(r->res, "%llu completed, want exactly %d",
                    (unsigned long long) r->res->completed, HOT_STOCK);
                r->res->violations++;
        }
        if (PQstatus(conn) != CONNECTION_OK) {
                note(r->res, "stock: %s", PQerrorMessage(conn));
                r->res->violations++;
                PQfinish(conn);
                return;
        }
        res = PQexec(conn, "SELECT stock FROM products WHERE id = 1");
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                note(r->res, "stock: %s", PQerrorMessage(conn));
                r->res->violations++;
        } else if (strtoll(PQgetvalue(res, 0, 0), NULL, 10) != 0) {
                note(r->res, "product 1 stock %s, want 0", PQgetvalue(res, 0, 0));
                r->res->violations++;
        }
        PQclear(res);
        PQfinish(conn);
}

/*
 * One run
 */

/* Everything back to normal: continued, reconnected, restarted. */
static void
heal(chaos_run *r)
{
        char err[2048];

        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                cluster_signal(r->c, cluster_services[i], SIGCONT);
        }
        if (cluster_heal(r->c, err, sizeof(err)) != RPC_OK) {
                note(r->res, "%s", err);
        }
        if (cluster_pg_start(r->c, err, sizeof(err)) != RPC_OK) {
                note(r->res, "%s", err);
        }
        cluster_set(r->c, "order", "crash_at", NULL);
        cluster_set(r->c, "order", "orch_crash_at", NULL);
        cluster_set(r->c, "product", "step.reserve", NULL);
        cluster_set(r->c, "user", "step.debit", NULL);
        cluster_set(r->c, "payment", "step.capture", NULL);
        cluster_set(r->c, "order", "step.complete", NULL);
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                if (!cluster_alive(r->c, cluster_services[i])
                    && cluster_start(r->c, cluster_services[i], err, sizeof(err)) != RPC_OK) {
                        note(r->res, "%s", err);
                }
        }
}

/* Settings of every run: short timeouts so that abandoned work ends within the bound. */
static void
base_settings(chaos_run *r)
{
        cluster_reset_settings(r->c);
        cluster_set(r->c, "order", "saga_timeout_ms", "5000");
        cluster_set(r->c, "order", "saga_scan_ms", "500");
        cluster_set(r->c, "order", "tpc_grace_ms", "3000");
        cluster_set(r->c, "order", "tpc_recovery_ms", "500");
        cluster_set(r->c, "defaults", "relay_poll_ms", "200");
        cluster_set(r->c, "defaults", "relay_lease_ms", "5000");
        for (int i = 0; i < r->o->n_sets; i++) {
                char buf[512];
                char *dot, *eq;
                snprintf(buf, sizeof(buf), "%s", r->o->sets[i]);
                dot = strchr(buf, '.');
                eq = strchr(buf, '=');
                if (dot != NULL && eq != NULL && dot < eq) {
                        *dot = '\0';
                        *eq = '\0';
                        cluster_set(r->c, buf, dot + 1, eq + 1);
                }
        }
}

static void
run_one(const chaos_opts *o, cluster *c, const scenario *sc, chaos_mode mode, chaos_result *res)
{
        chaos_run r = { .o = o, .c = c, .mode = mode, .res = res, .w = o->w };
        load_thread lt = { .r = &r };
        pthread_t th;
        char err[2048];
        check_verdict v;
        int64_t t_heal;

        memset(res, 0, sizeof(*res));
        res->scenario = sc->name;
        res->mode = mode_names[mode];
        res->converge_s = -1;
        r.rng = o->seed * 0x9e3779b97f4a7c15ULL + (uint64_t) (sc - scenarios) * 131 + mode + 1;
        if (sc->own_load) {
                r.w.stock = HOT_STOCK;
        }
        cluster_stop_all(c);
        base_settings(&r);
        if (!sc->configure(&r, err, sizeof(err))) {
                res->skipped = true;
                res->pass = true;
                note(res, "skipped: %s", err);
                return;
        }
        for (int i = 0; i < CLUSTER_N_SERVICES; i++) {
                r.log_at[i] = cluster_log_size(c, cluster_services[i]);
        }
        if (seed(&r, err, sizeof(err)) != RPC_OK || record_baseline(&r, err, sizeof(err)) != RPC_OK
            || cluster_start_all(c, err, sizeof(err)) != RPC_OK) {
                note(res, "%s", err);
                goto out;
        }
        r.t_end_ns = bench_now_ns() + (int64_t) (o->duration_s * 1e9);
        if (sc->own_load) {
                run_hot_spot(&r, &lt.res);
        } else {
                lt.opts = (load_opts) {
                        .order_address = cluster_address(c, "order"),
                        .mode = mode_wire[mode],
                        .w = &r.w,
                        .clients = o->clients,
                        .duration_s
                        = sc->until_done && o->duration_s < LOAD_MAX_S ? LOAD_MAX_S : o->duration_s,
                        .call_timeout_ms = 6000,
                        .terminal_wait_ms = 2000,
                        .keyed = true,
                        .stop = &r.stop,
                        .on_start = on_order_start,
                        .hook_arg = &r,
                };
                if (pthread_create(&th, NULL, load_main, &lt) != 0) {
                        note(res, "cannot start the load");
                        goto out;
                }
                sc->inject(&r);
                atomic_store(&r.stop, true);
                pthread_join(th, NULL);
                if (lt.st != RPC_OK) {
                        note(res, "%s", lt.err);
                }
        }
        heal(&r);
        t_heal = bench_now_ns();
        v = converge(&r, t_heal, &res->converge_s);
        judge_orders(&r, lt.res.orders, lt.res.n_orders);
        /* `mercato check` does not read the orchestrator's log: an unfinished transaction
         * there is a violation of its own. */
        if (on_orchestrator(mode)) {
                int64_t open = unfinished_sagas(&r, NULL, NULL);
                if (open != 0) {
                        note(res, "%lld unfinished orch_saga", (long long) open);
                        res->violations += open > 0 ? (uint64_t) open : 1;
                }
        }
        if (sc->own_load) {
                judge_hot_spot(&r);
        }
        if (r.poison_id[0] != '\0') {
                uint64_t after = 0;
                for (size_t i = 0; i < lt.res.n_orders; i++) {
                        after += lt.res.orders[i].acked && lt.res.orders[i].start_ns > r.poison_ns;
                }
                if (after == 0) {
                        note(res, "no order completed after the poison");
                        res->violations++;
                }
        }
        res->violations += v.violations;
        if (!v.ran) {
                res->violations++;
        }
        if (v.failed[0] != '\0') {
                note(res, "failed: %s", v.failed);
        }
        if (res->converge_s < 0) {
                note(res, "did not converge within %.0f s", o->converge_s);
        }
        res->pass
            = res->lost == 0 && res->violations == 0 && res->converge_s >= 0 && res->attempted > 0;
out:
        load_result_free(&lt.res);
        cluster_stop_all(c);
        /* After the stop: a leak report comes at exit. */
        judge_logs(&r);
        if (res->violations > 0) {
                res->pass = false;
        }
        if (sc->finish != NULL) {
                sc->finish(&r);
        }
}

/*
 * Output
 */
static void
print_header(void)
{
        printf("%-17s %-13s %9s %6s %9s %9s %5s %10s %6s %9s  %s\n", "SCENARIO", "MODE",
            "ATTEMPTED", "ACKED", "COMPLETED", "CANCELLED", "LOST", "VIOLATIONS", "FAULTS",
            "CONVERGE", "RESULT");
        fflush(stdout);
}

static void
print_line(const chaos_result *x)
{
        char conv[16];

        if (x->skipped) {
                printf("%-17s %-13s %9s %6s %9s %9s %5s %10s %6s %9s  SKIP  %s\n", x->scenario,
                    x->mode, "-", "-", "-", "-", "-", "-", "-", "-", x->note);
                fflush(stdout);
                return;
        }
        if (x->converge_s >= 0) {
                snprintf(conv, sizeof(conv), "%.1fs", x->converge_s);
        } else {
                snprintf(conv, sizeof(conv), "never");
        }
        printf("%-17s %-13s %9llu %6llu %9llu %9llu %5llu %10llu %6llu %9s  %s%s%s\n", x->scenario,
            x->mode, (unsigned long long) x->attempted, (unsigned long long) x->acked,
            (unsigned long long) x->completed, (unsigned long long) x->cancelled,
            (unsigned long long) x->lost, (unsigned long long) x->violations,
            (unsigned long long) x->faults, conv, x->pass ? "PASS" : "FAIL",
            x->note[0] != '\0' ? "  " : "", x->note);
        fflush(stdout);
}

static json_t *
result_json(const chaos_result *x)
{
        return json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:s}",
            "scenario", x->scenario, "mode", x->mode, "skipped", x->skipped, "attempted",
            (json_int_t) x->attempted, "acknowledged", (json_int_t) x->acked, "completed",
            (json_int_t) x->completed, "cancelled", (json_int_t) x->cancelled, "unknown",
            (json_int_t) x->unknown, "lost_acknowledged", (json_int_t) x->lost, "violations",
            (json_int_t) x->violations, "faults", (json_int_t) x->faults, "converge_s",
            x->converge_s, "pass", x->pass, "note", x->note);
}

/*
 * Options
 */
static void
usage(FILE *out)
{
        fprintf(out,
            "usage: mercato-bench chaos [--scenario NAME[,NAME...]|all]\n"
            "       [--mode MODE[,MODE...]|all] [--duration S] [--seed N] [--clients N]\n"
            "       [--converge-timeout S] [--json] [--set SECTION.KEY=VALUE]... [--build DIR]\n"
            "       [--pg-script PATH] [--dir DIR] [--keep] [--products N] [--users N]\n"
            "       [--hot-fraction F] [--fail-fraction F]\n"
            "\n"
            "Runs each fault scenario in each mode on a throwaway cluster of its own (its own\n"
            "PostgreSQL via deploy/pg, every service of the build), under the order load:\n"
            "inject the fault, heal, wait until quiet, then `mercato check`. One line per\n"
            "scenario and mode: orders attempted, acknowledged (PlaceOrder said COMPLETED),\n"
            "completed, cancelled; acknowledged orders lost (must be 0); violations (must\n"
            "be 0); seconds to converge; PASS or FAIL. Exit status 0 iff every line passed.\n"
            "\n"
            "modes: saga, 2pc, monolith, orchestration, tcc (all: every one)\n"
            "\n"
            "scenarios:\n");
        for (size_t i = 0; i < N_SCENARIOS; i++) {
                fprintf(out, "  %-17s %s\n", scenarios[i].name, scenarios[i].summary);
        }
        fprintf(out,
            "\n"
            "  --duration S          load per run (default 8)\n"
            "  --converge-timeout S  bound on healing to a passing check (default 60)\n"
            "  --set S.K=V           a topology setting for every run (test-only switches\n"
            "                        such as order.tpc_recovery=off break the system)\n"
            "  --build DIR           the build tree with services/ (default: next to this "
            "program)\n"
            "  --pg-script PATH      deploy/pg (default: the source tree's)\n"
            "  --dir DIR             state folder (default /tmp/mercato-chaos-PID); --keep "
            "keeps it\n");
}

/* Whether name is in list: "all", or names separated by commas. */
static bool
in_list(const char *list, const char *name)
{
        size_t len = strlen(name);

        if (strcmp(list, "all") == 0) {
                return true;
        }
        for (const char *p = list; *p != '\0';) {
                size_t n = strcspn(p, ",");
                if (n == len && strncmp(p, name, len) == 0) {
                        return true;
                }
                p += n;
                p += *p == ',';
        }
        return false;
}

/* Whether every name of list (as in_list) is one of name_at(0..n-1); if not, *ret_bad and
 * *ret_len give the first that is not. */
static bool
list_known(
    const char *list, const char *(*name_at)(size_t), size_t n, const char **ret_bad, int *ret_len)
{
        if (strcmp(list, "all") == 0) {
                return true;
        }
        for (const char *p = list;;) {
                size_t len = strcspn(p, ",");
                bool found = false;
                for (size_t i = 0; i < n && !found; i++) {
                        found = strlen(name_at(i)) == len && strncmp(p, name_at(i), len) == 0;
                }
                if (!found) {
                        *ret_bad = p;
                        *ret_len = (int) len;
                        return false;
                }
                if (p[len] == '\0') {
                        return true;
                }
                p += len + 1;
        }
}

static const char *
mode_name_at(size_t i)
{
        return mode_names[i];
}

static const char *
scenario_name_at(size_t i)
{
        return scenarios[i].name;
}

static void
on_signal(int sig)
{
        (void) sig;
        atomic_store(&interrupted, true);
}

/* The folder above this executable's: the build tree. */
static const char *
default_build_root(void)
{
        static char root[PATH_MAX];
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

        if (n <= 0) {
                return ".";
        }
        self[n] = '\0';
        snprintf(root, sizeof(root), "%s/..", dirname(self));
        return root;
}

int
bench_chaos_main(int argc, char **argv)
{
        enum {
                O_SCEN = 1000,
                O_MODE,
                O_DUR,
                O_SEED,
                O_CLIENTS,
                O_CONV,
                O_JSON,
                O_SET,
                O_BUILD,
                O_PG,
                O_DIR,
                O_KEEP,
                O_WL,
                O_HELP
        };
        static const struct option longopts[] = {
                { "scenario", required_argument, NULL, O_SCEN },
                { "mode", required_argument, NULL, O_MODE },
                { "duration", required_argument, NULL, O_DUR },
                { "seed", required_argument, NULL, O_SEED },
                { "clients", required_argument, NULL, O_CLIENTS },
                { "converge-timeout", required_argument, NULL, O_CONV },
                { "json", no_argument, NULL, O_JSON },
                { "set", required_argument, NULL, O_SET },
                { "build", required_argument, NULL, O_BUILD },
                { "pg-script", required_argument, NULL, O_PG },
                { "dir", required_argument, NULL, O_DIR },
                { "keep", no_argument, NULL, O_KEEP },
                { "products", required_argument, NULL, O_WL },
                { "users", required_argument, NULL, O_WL },
                { "hot-fraction", required_argument, NULL, O_WL },
                { "fail-fraction", required_argument, NULL, O_WL },
                { "help", no_argument, NULL, O_HELP },
                { 0 },
        };
        chaos_opts o = {
                .duration_s = 8,
                .converge_s = 60,
                .seed = 1,
                .clients = 4,
                .build_root = default_build_root(),
                .pg_script = MERCATO_SOURCE_ROOT "/deploy/pg",
        };
        const char *scen = "all", *mode = "all";
        char dir[256], err[2048];
        bool want_mode[CHAOS_N_MODES] = { false };
        bool want_scen[N_SCENARIOS] = { false };
        chaos_result *results;
        size_t n_results = 0;
        cluster *c = NULL;
        json_t *jruns = NULL;
        int opt, idx, code = 0;
        double d;

        o.sets = rpc_xcalloc((size_t) argc + 1, sizeof(char *));
        bench_workload_defaults(&o.w);
        o.w.seed = o.seed;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
                switch (opt) {
                case O_SCEN:
                        scen = optarg;
                        break;
                case O_MODE:
                        mode = optarg;
                        break;
                case O_DUR:
                        if (!bench_parse_double(optarg, 0.5, 3600, &o.duration_s)) {
                                fprintf(stderr, "chaos: --duration must be 0.5..3600\n");
                                code = 2;
                        }
                        break;
                case O_CONV:
                        if (!bench_parse_double(optarg, 1, 3600, &o.converge_s)) {
                                fprintf(stderr, "chaos: --converge-timeout must be 1..3600\n");
                                code = 2;
                        }
                        break;
                case O_SEED:
                        if (!bench_parse_double(optarg, 0, 1e15, &d)) {
                                fprintf(stderr, "chaos: bad --seed\n");
                                code = 2;
                        }
                        o.seed = (uint64_t) d;
                        o.w.seed = o.seed;
                        break;
                case O_CLIENTS:
                        if (!bench_parse_double(optarg, 1, 256, &d)) {
                                fprintf(stderr, "chaos: --clients must be 1..256\n");
                                code = 2;
                        }
                        o.clients = (int) d;
                        break;
                case O_JSON:
                        o.json = true;
                        break;
                case O_SET:
                        if (strchr(optarg, '.') == NULL || strchr(optarg, '=') == NULL) {
                                fprintf(stderr, "chaos: --set wants SECTION.KEY=VALUE\n");
                                code = 2;
                        }
                        o.sets[o.n_sets++] = optarg;
                        break;
                case O_BUILD:
                        o.build_root = optarg;
                        break;
                case O_PG:
                        o.pg_script = optarg;
                        break;
                case O_DIR:
                        o.dir = optarg;
                        break;
                case O_KEEP:
                        o.keep = true;
                        break;
                case O_WL:
                        if (bench_workload_option(
                                &o.w, longopts[idx].name, optarg, err, sizeof(err))
                            != 1) {
                                fprintf(stderr, "chaos: %s\n", err);
                                code = 2;
                        }
                        break;
                case O_HELP:
                        usage(stdout);
                        free(o.sets);
                        return 0;
                default:
                        usage(stderr);
                        free(o.sets);
                        return 2;
                }
        }
        if (code == 0 && optind < argc) {
                fprintf(stderr, "chaos: unexpected argument '%s'\n", argv[optind]);
                code = 2;
        }
        const char *bad = NULL;
        int bad_len = 0;
        if (code == 0 && !list_known(mode, mode_name_at, CHAOS_N_MODES, &bad, &bad_len)) {
                fprintf(stderr,
                    "chaos: unknown mode '%.*s': --mode wants all or a comma-separated list of "
                    "saga, 2pc, monolith, orchestration, tcc\n",
                    bad_len, bad);
                code = 2;
        }
        if (code == 0 && !list_known(scen, scenario_name_at, N_SCENARIOS, &bad, &bad_len)) {
                fprintf(
                    stderr, "chaos: unknown scenario '%.*s' (--help lists them)\n", bad_len, bad);
                code = 2;
        }
        for (int m = 0; m < CHAOS_N_MODES; m++) {
                want_mode[m] = in_list(mode, mode_names[m]);
        }
        for (size_t s = 0; s < N_SCENARIOS; s++) {
                want_scen[s] = in_list(scen, scenarios[s].name);
        }
        if (code == 0 && !bench_workload_finish(&o.w, err, sizeof(err))) {
                fprintf(stderr, "chaos: %s\n", err);
                code = 2;
        }
        if (code != 0) {
                free(o.sets);
                return code;
        }

        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGPIPE, SIG_IGN);
        if (o.dir == NULL) {
                snprintf(dir, sizeof(dir), "/tmp/mercato-chaos-%d", (int) getpid());
                o.dir = dir;
        }
        cluster_opts copts = {
                .build_root = o.build_root,
                .pg_script = o.pg_script,
                .dir = o.dir,
                .keep = o.keep,
        };
        fprintf(stderr, "chaos: starting PostgreSQL in %s\n", o.dir);
        if (cluster_new(&copts, &c, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "chaos: %s\n", err);
                free(o.sets);
                return 1;
        }
        results = rpc_xcalloc(N_SCENARIOS * CHAOS_N_MODES, sizeof(*results));
        if (o.json) {
                jruns = json_array();
        } else {
                print_header();
        }
        for (size_t s = 0; s < N_SCENARIOS && !atomic_load(&interrupted); s++) {
                for (int m = 0; m < CHAOS_N_MODES && !atomic_load(&interrupted); m++) {
                        chaos_result *x;
                        if (!want_scen[s] || !want_mode[m]) {
                                continue;
                        }
                        x = &results[n_results++];
                        fprintf(stderr, "chaos: %s in %s\n", scenarios[s].name, mode_names[m]);
                        run_one(&o, c, &scenarios[s], (chaos_mode) m, x);
                        if (atomic_load(&interrupted)) {
                                x->pass = false;
                                note(x, "interrupted");
                        }
                        if (!x->pass) {
                                code = 1;
                        }
                        if (o.json) {
                                json_array_append_new(jruns, result_json(x));
                        } else {
                                print_line(x);
                        }
                }
        }
        if (o.json) {
                json_t *doc = json_pack("{s:b, s:o}", "ok", code == 0, "runs", jruns);
                json_dumpf(doc, stdout, JSON_INDENT(2));
                printf("\n");
                json_decref(doc);
        }
        cluster_free(c);
        free(results);
        free(o.sets);
        if (atomic_load(&interrupted)) {
                return 130;
        }
        return code;
}
