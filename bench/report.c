/* report.c: the side-by-side table, JSON, CSV and gnuplot plots of compare and sweep. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compare.h"
#include "util.h"

static double
pct(uint64_t part, uint64_t whole)
{
        return whole > 0 ? 100.0 * (double) part / (double) whole : 0;
}

/* The orders that reached a terminal state: the base of the percentages. */
static uint64_t
ended(const mode_result *r)
{
        return r->completed + r->cancelled;
}

/* The detail line of the cost per order: CPU ms and context switches of each process. */
static void
print_cost(const proccost *c)
{
        printf("  per order (CPU ms/switches):");
        for (int i = 0; i < PROCCOST_N; i++) {
                if (c->p[i].ok) {
                        printf(" %s %.2f/%.1f", c->p[i].name, c->p[i].cpu_ms, c->p[i].switches);
                } else {
                        printf(" %s -", c->p[i].name != NULL ? c->p[i].name : "?");
                }
        }
        printf("; total %.2f/%.1f over %llu orders\n", proccost_total_cpu_ms(c),
            proccost_total_switches(c), (unsigned long long) c->orders);
}

static json_t *
cost_json(const proccost *c)
{
        json_t *procs = json_object();

        for (int i = 0; i < PROCCOST_N; i++) {
                if (c->p[i].name == NULL) {
                        continue;
                }
                json_object_set_new(procs, c->p[i].name,
                    c->p[i].ok ? json_pack("{s:f, s:f, s:f}", "cpu_ms", c->p[i].cpu_ms, "switches",
                        c->p[i].switches, "voluntary_switches", c->p[i].voluntary)
                               : json_null());
        }
        return json_pack("{s:I, s:o, s:f, s:f}", "orders", (json_int_t) c->orders, "processes",
            procs, "cpu_ms", proccost_total_cpu_ms(c), "switches", proccost_total_switches(c));
}

/* pgbench per database: what the limit is made of. */
static void
print_pglimit(const pglimit_result *p)
{
        printf("  pglimit: %.1f orders/s = 1 / sum of 1 / each database's script alone "
               "(%llu orders per run):",
            p->orders_per_s, (unsigned long long) p->orders);
        for (size_t i = 0; i < p->n; i++) {
                printf("%s %s %.0f/s (%.1f stmts, %.1f tx per order)", i > 0 ? ";" : "",
                    p->db[i].dbname, p->db[i].orders_per_s,
                    (double) p->db[i].statements / (double) p->orders,
                    (double) p->db[i].transactions / (double) p->orders);
        }
        printf("\n");
}

static json_t *
pglimit_json(const pglimit_result *p)
{
        json_t *dbs = json_array();

        for (size_t i = 0; i < p->n; i++) {
                json_array_append_new(dbs,
                    json_pack("{s:s, s:f, s:f, s:I, s:I}", "db", p->db[i].dbname, "orders_per_s",
                        p->db[i].orders_per_s, "runs_per_s", p->db[i].runs_per_s, "statements",
                        (json_int_t) p->db[i].statements, "transactions",
                        (json_int_t) p->db[i].transactions));
        }
        return json_pack("{s:f, s:I, s:o}", "orders_per_s", p->orders_per_s, "orders_per_run",
            (json_int_t) p->orders, "databases", dbs);
}

void
report_table(const mode_result *r, size_t n)
{
        printf("\n%-13s %7s %9s %8s %8s %8s %6s %6s %6s %8s %6s %6s %9s %6s %9s %6s\n", "mode",
            "clients", "orders/s", "p50 ms", "p99 ms", "p99.9 ms", "done%", "canc%", "comp%",
            "converge", "dirty", "viol", "replay/s", "ratio", "pglimit/s", "r/pgl");
        for (size_t i = 0; i < n; i++) {
                const mode_result *m = &r[i];
                char replay[16] = "-", ratio[16] = "-", dirty[16] = "-";
                char pgl[16] = "-", pgl_ratio[16] = "-";
                if (m->has_pglimit) {
                        snprintf(pgl, sizeof(pgl), "%.1f", m->pglimit_orders_per_s);
                        snprintf(pgl_ratio, sizeof(pgl_ratio), "%.2f", m->pglimit_ratio);
                }
                if (m->has_replay) {
                        snprintf(replay, sizeof(replay), "%.1f", m->replay_orders_per_s);
                        snprintf(ratio, sizeof(ratio), "%.2f", m->replay_ratio);
                }
                if (m->observed) {
                        snprintf(
                            dirty, sizeof(dirty), "%llu", (unsigned long long) m->obs.dirty_reads);
                }
                printf("%-13s %7d %9.1f %8.2f %8.2f %8.2f %6.1f %6.1f %6.1f %7.2fs %6s %6lld %9s "
                       "%6s %9s "
                       "%6s\n",
                    m->mode, m->clients, m->orders_per_s, m->p50_ms, m->p99_ms, m->p999_ms,
                    pct(m->completed, ended(m)), pct(m->cancelled, ended(m)),
                    pct(m->compensated, ended(m)), m->convergence_s, dirty,
                    (long long) m->violations, replay, ratio, pgl, pgl_ratio);
        }
        printf("\n");
        for (size_t i = 0; i < n; i++) {
                const mode_result *m = &r[i];
                printf("%s: %llu orders in %.1f s, %llu completed, %llu cancelled "
                       "(built for: %llu insufficient_balance, %llu out_of_stock, %llu "
                       "payment_declined; ended as: %llu timeout, %llu participant_error), "
                       "%llu errors, %llu not as built\n",
                    m->mode, (unsigned long long) m->orders, m->seconds,
                    (unsigned long long) m->completed, (unsigned long long) m->cancelled,
                    (unsigned long long) m->by_reason[BENCH_KIND_NO_BALANCE],
                    (unsigned long long) m->by_reason[BENCH_KIND_NO_STOCK],
                    (unsigned long long) m->by_reason[BENCH_KIND_DECLINED],
                    (unsigned long long) m->timeouts, (unsigned long long) m->participant_errors,
                    (unsigned long long) m->errors, (unsigned long long) m->unexpected);
                if (m->observed) {
                        printf("  observers: %llu reads judged, %llu dirty (%llu balance, %llu "
                               "stock) from %llu cancelled orders, visible p50 %.2f ms max %.2f "
                               "ms; totals: %llu of %llu dirty; %llu of %llu order reads saw one "
                               "PENDING\n",
                            (unsigned long long) m->obs.reads,
                            (unsigned long long) m->obs.dirty_reads,
                            (unsigned long long) m->obs.dirty_balance,
                            (unsigned long long) m->obs.dirty_stock,
                            (unsigned long long) m->obs.dirty_orders, m->obs.visible_p50_ms,
                            m->obs.visible_max_ms, (unsigned long long) m->obs.dirty_total,
                            (unsigned long long) m->obs.total_reads,
                            (unsigned long long) m->obs.pending_seen,
                            (unsigned long long) m->obs.order_reads);
                }
                if (m->has_replay) {
                        printf("  sustained: %.1f orders/s counting the %.2f s convergence; replay "
                               "%.1f counting its %.2f s drain; ratio %.2f\n",
                            m->sustained_orders_per_s, m->convergence_s,
                            m->replay_sustained_orders_per_s, m->replay_drain_s,
                            m->sustained_ratio);
                } else {
                        printf("  sustained: %.1f orders/s counting the %.2f s convergence\n",
                            m->sustained_orders_per_s, m->convergence_s);
                }
                if (m->has_pglimit) {
                        print_pglimit(&m->pglimit);
                }
                print_cost(&m->cost);
                printf("  lock waits: %.3f backend-s (%.3f ms per order)\n", m->lock_wait_s,
                    m->orders > 0 ? m->lock_wait_s * 1000 / (double) m->orders : 0.0);
                if (m->has_tpc) {
                        printf("  2pc: %llu commits; prepare p50 %.2f p99 %.2f ms, decision to "
                               "last commit p50 %.2f p99 %.2f ms, prepare to commit p50 %.2f "
                               "p99 %.2f ms\n",
                            (unsigned long long) m->tpc.commits, m->tpc.prepare_p50_ms,
                            m->tpc.prepare_p99_ms, m->tpc.commit_p50_ms, m->tpc.commit_p99_ms,
                            m->tpc.in_doubt_p50_ms, m->tpc.in_doubt_p99_ms);
                }
                printf("  check: %s%s%s%s\n", m->check_ok ? "PASS" : "FAIL",
                    m->check_failures[0] != '\0' ? " (" : "", m->check_failures,
                    m->check_failures[0] != '\0' ? ")" : "");
                if (!m->quiet) {
                        printf("  did not go quiet within the bound\n");
                }
        }
        fflush(stdout);
}

static json_t *
mode_json(const mode_result *m)
{
        json_t *o = json_pack(
            "{s:s, s:i, s:f, s:I, s:f, s:{s:f, s:f, s:f}, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I,"
            " s:{s:I, s:I, s:I}, s:b, s:f, s:f, s:f}",
            "mode", m->mode, "clients", m->clients, "seconds", m->seconds, "orders",
            (json_int_t) m->orders, "orders_per_s", m->orders_per_s, "latency_ms", "p50", m->p50_ms,
            "p99", m->p99_ms, "p999", m->p999_ms, "completed", (json_int_t) m->completed,
            "cancelled", (json_int_t) m->cancelled, "compensated", (json_int_t) m->compensated,
            "completed_pct", pct(m->completed, ended(m)), "cancelled_pct",
            pct(m->cancelled, ended(m)), "compensated_pct", pct(m->compensated, ended(m)), "errors",
            (json_int_t) m->errors, "unexpected", (json_int_t) m->unexpected, "cancelled_by_reason",
            "insufficient_balance", (json_int_t) m->by_reason[BENCH_KIND_NO_BALANCE],
            "out_of_stock", (json_int_t) m->by_reason[BENCH_KIND_NO_STOCK], "payment_declined",
            (json_int_t) m->by_reason[BENCH_KIND_DECLINED], "quiet", m->quiet, "convergence_s",
            m->convergence_s, "lock_wait_s", m->lock_wait_s, "lock_wait_ms_per_order",
            m->orders > 0 ? m->lock_wait_s * 1000 / (double) m->orders : 0.0);

        json_object_set_new(o, "sustained_orders_per_s", json_real(m->sustained_orders_per_s));
        json_object_set_new(o, "cancelled_timeout", json_integer((json_int_t) m->timeouts));
        json_object_set_new(
            o, "cancelled_participant_error", json_integer((json_int_t) m->participant_errors));
        json_object_set_new(o, "observers",
            m->observed ? json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I}",
                "reads", (json_int_t) m->obs.reads, "unjudged", (json_int_t) m->obs.unjudged,
                "dirty_reads", (json_int_t) m->obs.dirty_reads, "dirty_balance",
                (json_int_t) m->obs.dirty_balance, "dirty_stock", (json_int_t) m->obs.dirty_stock,
                "total_reads", (json_int_t) m->obs.total_reads, "dirty_total",
                (json_int_t) m->obs.dirty_total, "dirty_orders", (json_int_t) m->obs.dirty_orders,
                "visible_p50_ms", m->obs.visible_p50_ms, "visible_max_ms", m->obs.visible_max_ms,
                "order_reads", (json_int_t) m->obs.order_reads, "pending_seen",
                (json_int_t) m->obs.pending_seen)
                        : json_null());
        json_object_set_new(o, "dirty_reads",
            m->observed ? json_integer((json_int_t) m->obs.dirty_reads) : json_null());
        json_object_set_new(o, "tpc",
            m->has_tpc ? json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "commits",
                (json_int_t) m->tpc.commits, "prepare_p50_ms", m->tpc.prepare_p50_ms,
                "prepare_p99_ms", m->tpc.prepare_p99_ms, "commit_p50_ms", m->tpc.commit_p50_ms,
                "commit_p99_ms", m->tpc.commit_p99_ms, "prepare_to_commit_p50_ms",
                m->tpc.in_doubt_p50_ms, "prepare_to_commit_p99_ms", m->tpc.in_doubt_p99_ms)
                       : json_null());
        json_object_set_new(o, "check",
            json_pack("{s:b, s:i, s:I, s:s}", "ok", m->check_ok, "exit", m->check_exit,
                "violations", (json_int_t) m->violations, "failed", m->check_failures));
        json_object_set_new(o, "invariant_violations", json_integer((json_int_t) m->violations));
        json_object_set_new(o, "cost_per_order", cost_json(&m->cost));
        json_object_set_new(o, "replay",
            m->has_replay ? json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "orders",
                (json_int_t) m->replay_orders, "orders_per_s", m->replay_orders_per_s, "p50_ms",
                m->replay_p50_ms, "ratio", m->replay_ratio, "drain_s", m->replay_drain_s,
                "sustained_orders_per_s", m->replay_sustained_orders_per_s, "sustained_ratio",
                m->sustained_ratio)
                          : json_null());
        json_object_set_new(o, "pglimit", m->has_pglimit ? pglimit_json(&m->pglimit) : json_null());
        json_object_set_new(
            o, "replay_over_pglimit", m->has_pglimit ? json_real(m->pglimit_ratio) : json_null());
        return o;
}

static json_t *
workload_json(const bench_workload *w)
{
        char when[32];
        time_t now = time(NULL);
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return json_pack("{s:s, s:i, s:{s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I}}", "at", when,
            "cpus", (int) sysconf(_SC_NPROCESSORS_ONLN), "workload", "products",
            (json_int_t) w->products, "users", (json_int_t) w->users, "stock",
            (json_int_t) w->stock, "balance", (json_int_t) w->balance, "hot_fraction",
            w->hot_fraction, "fail_fraction", w->fail_fraction, "seed", (json_int_t) w->seed,
            "poor_users", (json_int_t) w->poor_users, "declining_users",
            (json_int_t) w->declining_users);
}

static bool
write_json(const char *dir, const char *name, json_t *doc, char *err, size_t errlen)
{
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (json_dump_file(doc, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
                snprintf(err, errlen, "cannot write %s", path);
                return false;
        }
        return true;
}

static FILE *
open_out(const char *dir, const char *name, char *err, size_t errlen)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "w");
        if (f == NULL) {
                snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        }
        return f;
}

static void
csv_header(FILE *f)
{
        fprintf(f,
            "mode,clients,seconds,orders,orders_per_s,p50_ms,p99_ms,p999_ms,completed_pct,"
            "cancelled_pct,compensated_pct,errors,convergence_s,dirty_reads,"
            "invariant_violations,lock_wait_s,replay_orders_per_s,replay_ratio,"
            "sustained_orders_per_s,replay_sustained_orders_per_s,sustained_ratio,"
            "cpu_ms_per_order,switches_per_order,pglimit_orders_per_s,replay_over_pglimit,"
            "check\n");
}

static void
csv_row(FILE *f, const mode_result *m)
{
        fprintf(f, "%s,%d,%.3f,%llu,%.2f,%.3f,%.3f,%.3f,%.2f,%.2f,%.2f,%llu,%.3f,", m->mode,
            m->clients, m->seconds, (unsigned long long) m->orders, m->orders_per_s, m->p50_ms,
            m->p99_ms, m->p999_ms, pct(m->completed, ended(m)), pct(m->cancelled, ended(m)),
            pct(m->compensated, ended(m)), (unsigned long long) m->errors, m->convergence_s);
        if (m->observed) {
                fprintf(f, "%llu", (unsigned long long) m->obs.dirty_reads);
        }
        fprintf(f, ",%lld,%.3f,", (long long) m->violations, m->lock_wait_s);
        if (m->has_replay) {
                fprintf(f, "%.2f,%.3f", m->replay_orders_per_s, m->replay_ratio);
        } else {
                fprintf(f, ",");
        }
        fprintf(f, ",%.2f,", m->sustained_orders_per_s);
        if (m->has_replay) {
                fprintf(f, "%.2f,%.3f", m->replay_sustained_orders_per_s, m->sustained_ratio);
        } else {
                fprintf(f, ",");
        }
        fprintf(
            f, ",%.3f,%.2f,", proccost_total_cpu_ms(&m->cost), proccost_total_switches(&m->cost));
        if (m->has_pglimit) {
                fprintf(f, "%.2f,%.3f", m->pglimit_orders_per_s, m->pglimit_ratio);
        } else {
                fprintf(f, ",");
        }
        fprintf(f, ",%s\n", m->check_ok ? "PASS" : "FAIL");
}

/* Runs gnuplot on a script written into dir. */
static bool
gnuplot(const char *dir, const char *script_name, const char *script, char *err, size_t errlen)
{
        char path[4096];
        FILE *f = open_out(dir, script_name, err, errlen);

        if (f == NULL) {
                return false;
        }
        fputs(script, f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/%s", dir, script_name);
        char *argv[] = { "gnuplot", path, NULL };
        int rc = bench_run(argv, NULL, false);
        if (rc != 0) {
                snprintf(err, errlen, "gnuplot %s failed (exit %d): is gnuplot-nox installed?",
                    path, rc);
                return false;
        }
        return true;
}

/* Writes <name>.json (the workload and one object per result, under key) and <name>.csv
 * (one row per result) into dir. */
static bool
write_results(const char *dir, const char *name, const char *key, const bench_workload *w,
    const mode_result *r, size_t n, char *err, size_t errlen)
{
        json_t *doc = workload_json(w);
        json_t *list = json_array();
        char file[64];
        FILE *f;
        bool ok;

        for (size_t i = 0; i < n; i++) {
                json_array_append_new(list, mode_json(&r[i]));
        }
        json_object_set_new(doc, key, list);
        snprintf(file, sizeof(file), "%s.json", name);
        ok = write_json(dir, file, doc, err, errlen);
        json_decref(doc);
        snprintf(file, sizeof(file), "%s.csv", name);
        if (!ok || (f = open_out(dir, file, err, errlen)) == NULL) {
                return false;
        }
        csv_header(f);
        for (size_t i = 0; i < n; i++) {
                csv_row(f, &r[i]);
        }
        fclose(f);
        return true;
}

bool
report_compare(const char *dir, const bench_workload *w, const mode_result *r, size_t n, char *err,
    size_t errlen)
{
        char script[8192];
        size_t off = 0;
        FILE *f;

        if (!write_results(dir, "compare", "modes", w, r, n, err, errlen)) {
                return false;
        }
        /* One CDF file per mode, thinned to at most ~2000 points. */
        off += (size_t) snprintf(script + off, sizeof(script) - off,
            "set terminal png size 960,600\n"
            "set output '%s/latency-cdf.png'\n"
            "set title 'PlaceOrder latency to the terminal state (CDF)'\n"
            "set xlabel 'latency (ms, log scale)'\nset ylabel 'fraction of orders'\n"
            "set logscale x\nset grid\nset key bottom right\nset yrange [0:1]\nplot ",
            dir);
        for (size_t i = 0; i < n; i++) {
                char name[64];
                snprintf(name, sizeof(name), "latency-%s.dat", r[i].mode);
                if ((f = open_out(dir, name, err, errlen)) == NULL) {
                        return false;
                }
                fprintf(f, "# latency_ms fraction (%s, %d clients)\n", r[i].mode, r[i].clients);
                size_t step = r[i].n_latency / 2000 + 1;
                for (size_t k = 0; k < r[i].n_latency; k += step) {
                        fprintf(f, "%.4f %.6f\n", r[i].latency_ms[k],
                            (double) (k + 1) / (double) r[i].n_latency);
                }
                if (r[i].n_latency > 0) {
                        fprintf(f, "%.4f 1\n", r[i].latency_ms[r[i].n_latency - 1]);
                }
                fclose(f);
                off += (size_t) snprintf(script + off, sizeof(script) - off,
                    "%s'%s/%s' using 1:2 with lines linewidth 2 title '%s'", i > 0 ? ", " : "", dir,
                    name, r[i].mode);
        }
        snprintf(script + off, sizeof(script) - off, "\n");
        return gnuplot(dir, "latency-cdf.gp", script, err, errlen);
}

bool
report_sweep(const char *dir, const bench_workload *w, const mode_result *r, size_t n, char *err,
    size_t errlen)
{
        char script[8192];
        size_t off = 0;
        bool any_replay = false;

        for (size_t i = 0; i < n; i++) {
                any_replay = any_replay || r[i].has_replay;
        }
        if (!write_results(dir, "sweep", "points", w, r, n, err, errlen)) {
                return false;
        }
        off += (size_t) snprintf(script + off, sizeof(script) - off,
            "set terminal png size 960,600\n"
            "set output '%s/throughput-clients.png'\n"
            "set title 'Throughput against closed-loop clients'\n"
            "set xlabel 'clients (log scale)'\nset ylabel 'orders/s'\n"
            "set logscale x 2\nset grid\nset key top left\nset yrange [0:*]\n"
            "set datafile separator ','\nplot ",
            dir);
        int plotted = 0;
        for (int mi = 0; mi < BENCH_N_MODES; mi++) {
                bool has = false;
                for (size_t i = 0; i < n; i++) {
                        has = has || strcmp(r[i].mode, bench_mode_names[mi]) == 0;
                }
                if (!has) {
                        continue;
                }
                off += (size_t) snprintf(script + off, sizeof(script) - off,
                    "%s'%s/sweep.csv' using (strcol(1) eq '%s' ? $2 : 1/0):5 with linespoints "
                    "linewidth 2 title '%s'",
                    plotted++ > 0 ? ", " : "", dir, bench_mode_names[mi], bench_mode_names[mi]);
                if (any_replay) {
                        off += (size_t) snprintf(script + off, sizeof(script) - off,
                            ", '%s/sweep.csv' using (strcol(1) eq '%s' ? $2 : 1/0):17 with lines "
                            "dashtype 2 title '%s SQL replay'",
                            dir, bench_mode_names[mi], bench_mode_names[mi]);
                }
        }
        snprintf(script + off, sizeof(script) - off, "\n");
        return gnuplot(dir, "throughput-clients.gp", script, err, errlen);
}
