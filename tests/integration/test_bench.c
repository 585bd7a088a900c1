/* test_bench.c: `mercato-bench compare` and `sweep`, short runs against a real cluster. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

#define SERVICES "product cart user payment dataplatform order"

static harness_cluster *hc;
static char out_dir[256];

/* Runs mercato-bench with the cluster's topology; returns its exit status. */
static int bench(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
bench(const char *fmt, ...)
{
        char args[1024], cmd[2048];
        char *exe = harness_build_path("bench/mercato-bench");
        va_list ap;
        int status;

        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        snprintf(cmd, sizeof(cmd),
            "MERCATO_BIN=%s/services/mercato/mercato %s %s --conf %s --out %s",
            getenv("MERCATO_BUILD_ROOT"), exe, args, hc->conf_path, out_dir);
        fprintf(stderr, "$ %s\n", cmd);
        status = system(cmd);
        free(exe);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool
nonempty_file(const char *name)
{
        char path[512];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", out_dir, name);
        return stat(path, &st) == 0 && st.st_size > 0;
}

static int
setup(void **state)
{
        hc = harness_cluster_new(SERVICES, NULL);
        harness_cluster_start(hc);
        snprintf(out_dir, sizeof(out_dir), "/tmp/mercato-bench-test-%d", (int) getpid());
        return 0;
}

static int
teardown(void **state)
{
        char cmd[300];

        harness_cluster_free(hc);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", out_dir);
        (void) system(cmd);
        return 0;
}

/* Every field a reader of compare.json relies on, per mode. */
static const char *const mode_fields[] = { "mode", "clients", "seconds", "orders", "orders_per_s",
        "latency_ms", "completed", "cancelled", "compensated", "completed_pct", "cancelled_pct",
        "compensated_pct", "errors", "unexpected", "cancelled_by_reason", "quiet", "convergence_s",
        "lock_wait_s", "lock_wait_ms_per_order", "observers", "dirty_reads", "tpc", "check",
        "invariant_violations", "replay", "sustained_orders_per_s", "cancelled_timeout",
        "cancelled_participant_error", "cost_per_order", NULL };

/* Every process a cost line names, services first. */
static const char *const cost_procs[]
    = { "product", "cart", "user", "payment", "dataplatform", "order", "postgres", "bench", NULL };

/* The cost per order: every process measured, the busy ones above zero, the total their
 * sum. In the monolith only the order service and PostgreSQL do an order's work. */
/* pgbench ran on every database the mode writes (the monolith one, a split mode at least
 * order, product, user and the consumers'), each at a positive rate; the limit is 1 / the
 * sum of 1 / those rates, and the replay's ratio to it is replay / limit. */
static void
assert_pglimit(const char *mode, const json_t *m, double replay_rate)
{
        const json_t *pl = json_object_get(m, "pglimit");
        const json_t *dbs = json_object_get(pl, "databases");
        double inv = 0;
        size_t i;
        const json_t *d;

        if (!json_is_object(pl) || !json_is_array(dbs)) {
                fail_msg("%s: compare.json has no pglimit", mode);
        }
        assert_int_equal(json_array_size(dbs), strcmp(mode, "monolith") == 0 ? 1 : 6);
        json_array_foreach(dbs, i, d)
        {
                double rate = json_real_value(json_object_get(d, "orders_per_s"));
                assert_true(rate > 0);
                assert_true(json_integer_value(json_object_get(d, "statements")) > 0);
                inv += 1.0 / rate;
        }
        double limit = json_real_value(json_object_get(pl, "orders_per_s"));
        assert_true(limit > 0);
        assert_true(fabs(limit - 1.0 / inv) <= 1e-6 * limit + 0.01);
        double ratio = json_real_value(json_object_get(m, "replay_over_pglimit"));
        assert_true(fabs(ratio - replay_rate / limit) <= 1e-3 * ratio + 0.001);
}

static void
assert_cost(const char *mode, const json_t *cost)
{
        const json_t *procs = json_object_get(cost, "processes");
        double cpu = 0, switches = 0;

        assert_true(json_is_object(procs));
        assert_true(json_integer_value(json_object_get(cost, "orders")) > 0);
        for (const char *const *p = cost_procs; *p != NULL; p++) {
                const json_t *e = json_object_get(procs, *p);
                if (!json_is_object(e)) {
                        fail_msg("%s: %s's cost per order was not measured", mode, *p);
                }
                double c = json_real_value(json_object_get(e, "cpu_ms"));
                double s = json_real_value(json_object_get(e, "switches"));
                assert_true(c >= 0 && s >= 0);
                assert_true(json_real_value(json_object_get(e, "voluntary_switches")) <= s);
                bool busy = strcmp(*p, "order") == 0 || strcmp(*p, "postgres") == 0
                    || strcmp(*p, "bench") == 0
                    || (strcmp(mode, "monolith") != 0
                        && (strcmp(*p, "product") == 0 || strcmp(*p, "user") == 0
                            || strcmp(*p, "payment") == 0));
                if (busy && !(c > 0 && s > 0)) {
                        fail_msg(
                            "%s: %s costs %.3f ms and %.2f switches per order", mode, *p, c, s);
                }
                cpu += c;
                switches += s;
        }
        assert_true(
            fabs(json_real_value(json_object_get(cost, "cpu_ms")) - cpu) < 1e-6 * (1 + cpu));
        assert_true(fabs(json_real_value(json_object_get(cost, "switches")) - switches)
            < 1e-6 * (1 + switches));
}

static void
test_compare_short_run(void **state)
{
        json_error_t jerr;
        json_t *doc, *modes, *m;
        size_t i;

        assert_int_equal(bench("compare --clients 4 --duration 2 --warmup 0.5 --products 200 "
                               "--users 200 --fail-fraction 0.2 --hot-fraction 0.2"),
            0);
        char path[512];
        snprintf(path, sizeof(path), "%s/compare.json", out_dir);
        doc = json_load_file(path, 0, &jerr);
        assert_non_null(doc);
        assert_non_null(json_object_get(doc, "workload"));
        modes = json_object_get(doc, "modes");
        assert_int_equal(json_array_size(modes), 5);
        json_array_foreach(modes, i, m)
        {
                const char *mode = json_string_value(json_object_get(m, "mode"));
                assert_non_null(mode);
                for (const char *const *f = mode_fields; *f != NULL; f++) {
                        if (json_object_get(m, *f) == NULL) {
                                fail_msg("%s: compare.json lacks %s", mode, *f);
                        }
                }
                json_t *lat = json_object_get(m, "latency_ms");
                assert_non_null(json_object_get(lat, "p50"));
                assert_non_null(json_object_get(lat, "p99"));
                assert_non_null(json_object_get(lat, "p999"));
                /* Each mode completed orders, and cancelled the ones built to fail. */
                assert_true(json_integer_value(json_object_get(m, "completed")) > 0);
                assert_true(json_integer_value(json_object_get(m, "cancelled")) > 0);
                assert_int_equal(json_integer_value(json_object_get(m, "unexpected")), 0);
                assert_int_equal(json_integer_value(json_object_get(m, "errors")), 0);
                /* Nothing but the built failures: no deadline passed, no branch erred. */
                assert_int_equal(json_integer_value(json_object_get(m, "cancelled_timeout")), 0);
                assert_int_equal(
                    json_integer_value(json_object_get(m, "cancelled_participant_error")), 0);
                /* The check passed, after the system went quiet. */
                assert_true(json_is_true(json_object_get(m, "quiet")));
                assert_true(json_is_true(json_object_get(json_object_get(m, "check"), "ok")));
                assert_int_equal(json_integer_value(json_object_get(m, "invariant_violations")), 0);
                /* The observers read something. Only a saga (choreographed or orchestrated)
                 * and tcc may show a dirty read: tcc in the available amounts only (a try's
                 * hold), never in the totals, which only a confirm changes. */
                json_t *obs = json_object_get(m, "observers");
                assert_true(json_is_object(obs));
                assert_true(json_integer_value(json_object_get(obs, "reads")) > 0);
                assert_true(json_integer_value(json_object_get(obs, "total_reads")) > 0);
                bool saga = strcmp(mode, "saga") == 0 || strcmp(mode, "orchestration") == 0;
                if (!saga) {
                        assert_int_equal(
                            json_integer_value(json_object_get(obs, "dirty_total")), 0);
                }
                if (!saga && strcmp(mode, "tcc") != 0) {
                        assert_int_equal(json_integer_value(json_object_get(m, "dirty_reads")), 0);
                }
                /* 2pc reports its prepare-to-commit times; the others have none. */
                if (strcmp(mode, "2pc") == 0) {
                        json_t *tpc = json_object_get(m, "tpc");
                        assert_true(json_is_object(tpc));
                        assert_true(json_integer_value(json_object_get(tpc, "commits")) > 0);
                        assert_true(
                            json_real_value(json_object_get(tpc, "prepare_to_commit_p50_ms")) > 0);
                } else {
                        assert_true(json_is_null(json_object_get(m, "tpc")));
                }
                /* The ceiling was measured, and a mode's ratio to it is a number. */
                json_t *replay = json_object_get(m, "replay");
                assert_true(json_is_object(replay));
                assert_true(json_real_value(json_object_get(replay, "orders_per_s")) > 0);
                assert_true(json_real_value(json_object_get(replay, "ratio")) > 0);
                /* Charging the backlog can only lower a rate: the window grows by the time
                 * the mode took to converge, or the replay to drain. */
                double rate = json_real_value(json_object_get(m, "orders_per_s"));
                double sustained = json_real_value(json_object_get(m, "sustained_orders_per_s"));
                assert_true(sustained > 0 && sustained <= rate * 1.0001);
                double replay_rate = json_real_value(json_object_get(replay, "orders_per_s"));
                double replay_sustained
                    = json_real_value(json_object_get(replay, "sustained_orders_per_s"));
                assert_true(json_real_value(json_object_get(replay, "drain_s")) >= 0);
                assert_true(replay_sustained > 0 && replay_sustained <= replay_rate * 1.0001);
                assert_true(json_real_value(json_object_get(replay, "sustained_ratio")) > 0);
                assert_cost(mode, json_object_get(m, "cost_per_order"));
                assert_pglimit(mode, m, replay_rate);
        }
        json_decref(doc);
        assert_true(nonempty_file("compare.csv"));
        assert_true(nonempty_file("latency-saga.dat"));
        assert_true(nonempty_file("latency-cdf.png"));
}

static void
test_sweep_short_run(void **state)
{
        json_error_t jerr;
        char path[512];

        assert_int_equal(bench("sweep --clients 1,2 --duration 1 --warmup 0.2 --products 200 "
                               "--users 200 --modes saga,monolith"),
            0);
        snprintf(path, sizeof(path), "%s/sweep.json", out_dir);
        json_t *doc = json_load_file(path, 0, &jerr);
        assert_non_null(doc);
        /* Two modes at two client counts. */
        assert_int_equal(json_array_size(json_object_get(doc, "points")), 4);
        json_decref(doc);
        assert_true(nonempty_file("sweep.csv"));
        assert_true(nonempty_file("throughput-clients.png"));
}

static void
test_bad_options_are_usage_errors(void **state)
{
        assert_int_equal(bench("compare --modes saga,xa"), 2);
        assert_int_equal(bench("compare --fail-fraction 1.5"), 2);
        assert_int_equal(bench("compare --clients 0"), 2);
        assert_int_equal(bench("sweep --clients 1,x"), 2);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bad_options_are_usage_errors),
                cmocka_unit_test(test_compare_short_run),
                cmocka_unit_test(test_sweep_short_run),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
