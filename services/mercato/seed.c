/* seed.c: `mercato seed`: loads deterministic data straight into each service's database. */
#include <string.h>

#include "cli.h"
#include "seed.h"
#include "seed_db.h"

const cli_opt cli_seed_opts[] = {
        { "products", "N", "products 1..N (default 1000)" },
        { "stock", "N", "initial stock of every product (default 100)" },
        { "users", "N", "users 1..N (default 1000)" },
        { "balance", "N", "initial balance of every user (default 1000000)" },
        { "coupons", "N", "coupons 1..N (default 10)" },
        { "coupon-quantity", "N", "how many of each coupon can be issued (default 100)" },
        { "declining-users", "N", "the last N users' payments decline (default 0)" },
        { "seed", "N", "prices and discounts derive from it (default 42)" },
        { "dataset", "WHICH", "split (each service's database), monolith, or all (default)" },
        { "poor-users", "N",
            "the N users before the declining ones start with balance 0 (default 0)" },
        { NULL, NULL, NULL },
};

const char cli_seed_help[]
    = "Connects directly to the databases named in the topology file ([product] db, ...,\n"
      "[monolith] db), applies each store's migrations (and the txn tables'), then runs each\n"
      "store's seed function: it empties the store's tables and the txn tables and loads\n"
      "the data in one transaction. The same options give the same data. The monolith\n"
      "dataset gets every store, in the monolith database. The services need not run.\n";

/* What one dataset's seeding did, for the report. */
typedef struct seed_report {
        json_t *json; /* array of {store, db, loaded} */
} seed_report;

/* The "dbname=..." part of a conninfo, for a short report; the whole string otherwise. */
static void
db_label(const char *conninfo, char *buf, size_t len)
{
        const char *p = strstr(conninfo, "dbname=");

        if (p == NULL) {
                snprintf(buf, len, "%s", conninfo);
                return;
        }
        p += strlen("dbname=");
        size_t n = strcspn(p, " ");
        snprintf(buf, len, "%.*s", (int) n, p);
}

static void
describe(const seed_store *st, const svc_seed *s, char *buf, size_t len)
{
        if (strcmp(st->name, "product") == 0) {
                snprintf(buf, len, "%lld products, stock %lld each", (long long) s->products,
                    (long long) s->stock);
        } else if (strcmp(st->name, "user") == 0) {
                snprintf(buf, len,
                    "%lld users, balance %lld each (%lld with 0); %lld coupons, %lld of each",
                    (long long) s->users, (long long) s->balance, (long long) s->poor_users,
                    (long long) s->coupons, (long long) s->coupon_quantity);
        } else if (strcmp(st->name, "payment") == 0) {
                snprintf(
                    buf, len, "no payments; %lld declining users", (long long) s->declining_users);
        } else {
                snprintf(buf, len, "emptied");
        }
}

/* What seed_database's progress callback needs to report a store. */
typedef struct seed_progress {
        cli *c;
        const char *dataset;
        const char *label;
        const svc_seed *s;
        json_t *report;
} seed_progress;

static void
seeded(const seed_store *store, void *arg)
{
        seed_progress *p = arg;
        char what[160];

        describe(store, p->s, what, sizeof(what));
        if (!p->c->json) {
                printf("%-9s %-13s %-48s (%s)\n", p->dataset, store->name, what, p->label);
                fflush(stdout);
        }
        json_array_append_new(p->report,
            json_pack("{s:s, s:s, s:s, s:s}", "dataset", p->dataset, "store", store->name, "db",
                p->label, "loaded", what));
}

/* Seeds conninfo with the given stores (seed_database). Returns an exit code, having
 * printed any error. */
static int
seed_db(cli *c, const char *dataset, const char *conninfo, const seed_store *const *list, size_t n,
    const svc_seed *s, json_t *report)
{
        char label[128];
        seed_failure f;
        rpc_status st;

        db_label(conninfo, label, sizeof(label));
        seed_progress p = { .c = c, .dataset = dataset, .label = label, .s = s, .report = report };
        st = seed_database(conninfo, list, n, s, seeded, &p, &f);
        if (st == RPC_OK) {
                return CLI_EXIT_OK;
        }
        switch (f.phase) {
        case SEED_PHASE_CONNECT:
                cli_error(st, "%s (%s): cannot connect: %s", dataset, label, f.msg);
                return st == RPC_UNAVAILABLE ? CLI_EXIT_UNREACHABLE : CLI_EXIT_SERVER;
        case SEED_PHASE_MIGRATE:
                cli_error(st, "%s (%s): migration failed: %s", dataset, label, f.msg);
                return CLI_EXIT_SERVER;
        case SEED_PHASE_SEED:
        default:
                cli_error(st, "%s (%s): seeding %s failed: %s", dataset, label,
                    f.store != NULL ? f.store->name : "txn", f.msg);
                return st == RPC_UNAVAILABLE ? CLI_EXIT_UNREACHABLE : CLI_EXIT_SERVER;
        }
}

int
cli_seed_run(cli *c, const cli_args *a)
{
        static const int64_t max_rows = 100 * 1000 * 1000;
        static const int64_t max_amount = 1000000000000LL;
        svc_seed s = {
                .products = 1000,
                .stock = 100,
                .users = 1000,
                .balance = 1000000,
                .coupons = 10,
                .coupon_quantity = 100,
                .declining_users = 0,
                .poor_users = 0,
                .seed = 42,
        };
        int64_t seed = 42;
        bool split = true, mono = true;
        const seed_store *list[SEED_N_STORES];
        json_t *report;
        int rc = CLI_EXIT_OK;

        if (cli_opt_i64(a, 0, "products", 0, max_rows, &s.products) != CLI_EXIT_OK
            || cli_opt_i64(a, 1, "stock", 0, max_amount, &s.stock) != CLI_EXIT_OK
            || cli_opt_i64(a, 2, "users", 0, max_rows, &s.users) != CLI_EXIT_OK
            || cli_opt_i64(a, 3, "balance", 0, max_amount, &s.balance) != CLI_EXIT_OK
            || cli_opt_i64(a, 4, "coupons", 0, max_rows, &s.coupons) != CLI_EXIT_OK
            || cli_opt_i64(a, 5, "coupon-quantity", 0, max_amount, &s.coupon_quantity)
                != CLI_EXIT_OK
            || cli_opt_i64(a, 6, "declining-users", 0, max_rows, &s.declining_users) != CLI_EXIT_OK
            || cli_opt_i64(a, 7, "seed", 0, INT64_MAX, &seed) != CLI_EXIT_OK
            || cli_opt_i64(a, 9, "poor-users", 0, max_rows, &s.poor_users) != CLI_EXIT_OK) {
                return CLI_EXIT_USAGE;
        }
        s.seed = (uint64_t) seed;
        if (s.declining_users > s.users) {
                return cli_usage_error("--declining-users (%lld) exceeds --users (%lld)",
                    (long long) s.declining_users, (long long) s.users);
        }
        if (s.poor_users > s.users - s.declining_users) {
                return cli_usage_error(
                    "--poor-users (%lld) exceeds --users minus --declining-users (%lld)",
                    (long long) s.poor_users, (long long) (s.users - s.declining_users));
        }
        /* `mercato --dataset monolith seed` means the same as `mercato seed --dataset monolith`. */
        const char *dataset = a->opt[8] != NULL ? a->opt[8] : c->dataset;
        if (dataset != NULL) {
                split = strcmp(dataset, "split") == 0 || strcmp(dataset, "all") == 0;
                mono = strcmp(dataset, "monolith") == 0 || strcmp(dataset, "all") == 0;
                if (!split && !mono) {
                        return cli_usage_error(
                            "--dataset must be split, monolith or all, not '%s'", dataset);
                }
        }
        /* Every database named before anything is touched. */
        for (size_t i = 0; i < SEED_N_STORES && split; i++) {
                if (rpc_conf_get(c->conf, seed_stores[i].name, "db") == NULL) {
                        char why[512];
                        cli_conf_missing(c, seed_stores[i].name, "db", why, sizeof(why));
                        return cli_usage_error("%s", why);
                }
        }
        if (mono && rpc_conf_get(c->conf, "monolith", "db") == NULL) {
                char why[512];
                cli_conf_missing(c, "monolith", "db", why, sizeof(why));
                return cli_usage_error("%s", why);
        }
        report = json_array();
        for (size_t i = 0; i < SEED_N_STORES && split && rc == CLI_EXIT_OK; i++) {
                list[0] = &seed_stores[i];
                rc = seed_db(c, "split", rpc_conf_get(c->conf, seed_stores[i].name, "db"), list, 1,
                    &s, report);
        }
        if (mono && rc == CLI_EXIT_OK) {
                for (size_t i = 0; i < SEED_N_STORES; i++) {
                        list[i] = &seed_stores[i];
                }
                rc = seed_db(c, "monolith", rpc_conf_get(c->conf, "monolith", "db"), list,
                    SEED_N_STORES, &s, report);
        }
        if (rc == CLI_EXIT_OK && c->json) {
                json_t *out = json_pack("{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o}",
                    "seed", "products", (json_int_t) s.products, "stock", (json_int_t) s.stock,
                    "users", (json_int_t) s.users, "balance", (json_int_t) s.balance, "coupons",
                    (json_int_t) s.coupons, "coupon_quantity", (json_int_t) s.coupon_quantity,
                    "declining_users", (json_int_t) s.declining_users, "poor_users",
                    (json_int_t) s.poor_users, "seed", (json_int_t) seed, "stores", report);
                cli_print_json(out);
                json_decref(out);
        } else {
                json_decref(report);
        }
        return rc;
}
