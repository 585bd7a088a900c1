/* workload.c: the order mix: user partitions, hot products, orders built to fail. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

static const char *const kind_reasons[BENCH_N_KINDS] = {
        [BENCH_KIND_OK] = "",
        [BENCH_KIND_NO_BALANCE] = "insufficient_balance",
        [BENCH_KIND_NO_STOCK] = "out_of_stock",
        [BENCH_KIND_DECLINED] = "payment_declined",
};

const char *
bench_kind_reason(bench_kind k)
{
        return k < BENCH_N_KINDS ? kind_reasons[k] : "";
}

void
bench_workload_defaults(bench_workload *w)
{
        *w = (bench_workload) {
                .products = 1000,
                .users = 1000,
                /* Enough that no order built to complete runs out of stock or money in a
                 * long run, and small enough that stock + 1 units stay far below the
                 * order service's amount limit. */
                .stock = 1000000,
                .balance = INT64_C(10000000000),
                .hot_fraction = 0.1,
                .fail_fraction = 0.1,
                .seed = 42,
        };
}

static bool
parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *ret)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
                return false;
        }
        *ret = v;
        return true;
}

bool
bench_parse_double(const char *s, double lo, double hi, double *ret)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
                return false;
        }
        *ret = v;
        return true;
}

int
bench_workload_option(
    bench_workload *w, const char *name, const char *value, char *err, size_t errlen)
{
        static const int64_t rows_max = 10 * 1000 * 1000;
        int64_t v;

        if (strcmp(name, "hot-fraction") == 0 || strcmp(name, "fail-fraction") == 0) {
                double *d = name[0] == 'h' ? &w->hot_fraction : &w->fail_fraction;
                if (!bench_parse_double(value, 0.0, 1.0, d)) {
                        snprintf(
                            err, errlen, "--%s must be a number in 0..1, not '%s'", name, value);
                        return -1;
                }
                return 1;
        }
        int64_t *field = NULL, lo = 1, hi = rows_max;
        if (strcmp(name, "products") == 0) {
                field = &w->products;
        } else if (strcmp(name, "users") == 0) {
                field = &w->users;
        } else if (strcmp(name, "stock") == 0) {
                field = &w->stock;
                hi = INT64_C(1000000000);
        } else if (strcmp(name, "balance") == 0) {
                field = &w->balance;
                hi = INT64_C(100000000000000);
        } else if (strcmp(name, "seed") == 0) {
                if (!parse_i64(value, 0, INT64_MAX, &v)) {
                        snprintf(err, errlen, "--seed must be a number >= 0, not '%s'", value);
                        return -1;
                }
                w->seed = (uint64_t) v;
                return 1;
        } else {
                return 0;
        }
        if (!parse_i64(value, lo, hi, field)) {
                snprintf(err, errlen, "--%s must be in %lld..%lld, not '%s'", name, (long long) lo,
                    (long long) hi, value);
                return -1;
        }
        return 1;
}

bool
bench_workload_finish(bench_workload *w, char *err, size_t errlen)
{
        if (w->products < BENCH_ITEMS_MAX) {
                snprintf(err, errlen, "--products must be at least %d", BENCH_ITEMS_MAX);
                return false;
        }
        w->hot_products = w->products / 100 > 0 ? w->products / 100 : 1;
        w->poor_users = 0;
        w->declining_users = 0;
        if (w->fail_fraction > 0) {
                /* A twentieth of the users for each failing kind that needs its own users. */
                w->poor_users = w->users / 20 > 0 ? w->users / 20 : 1;
                w->declining_users = w->poor_users;
        }
        w->normal_users = w->users - w->poor_users - w->declining_users;
        if (w->normal_users < 1) {
                snprintf(err, errlen,
                    "--users %lld is too few: orders built to fail need users of their own",
                    (long long) w->users);
                return false;
        }
        return true;
}

void
bench_workload_seed(const bench_workload *w, svc_seed *ret_seed)
{
        *ret_seed = (svc_seed) {
                .products = w->products,
                .stock = w->stock,
                .users = w->users,
                .balance = w->balance,
                .coupons = 0,
                .coupon_quantity = 0,
                .declining_users = w->declining_users,
                .poor_users = w->poor_users,
                .seed = w->seed,
        };
}

void
bench_rng_init(bench_rng *r, uint64_t seed, uint64_t stream)
{
        r->s = seed * UINT64_C(0x9E3779B97F4A7C15) ^ (stream + 1) * UINT64_C(0xD1B54A32D192ED03);
        (void) bench_rng_next(r);
}

/* splitmix64 */
uint64_t
bench_rng_next(bench_rng *r)
{
        uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));

        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

double
bench_rng_unit(bench_rng *r)
{
        return (double) (bench_rng_next(r) >> 11) * 0x1.0p-53;
}

int64_t
bench_rng_range(bench_rng *r, int64_t lo, int64_t hi)
{
        uint64_t span = (uint64_t) (hi - lo) + 1;

        return lo + (int64_t) (bench_rng_next(r) % span);
}

static bool
has_product(const bench_order *o, int64_t id)
{
        for (size_t i = 0; i < o->n_items; i++) {
                if (o->product_id[i] == id) {
                        return true;
                }
        }
        return false;
}

void
bench_order_next(const bench_workload *w, bench_rng *r, bench_order *ret_order)
{
        bench_order *o = ret_order;
        size_t want = (size_t) bench_rng_range(r, 1, BENCH_ITEMS_MAX);

        memset(o, 0, sizeof(*o));
        o->kind = BENCH_KIND_OK;
        if (w->fail_fraction > 0 && bench_rng_unit(r) < w->fail_fraction) {
                o->kind
                    = (bench_kind) bench_rng_range(r, BENCH_KIND_NO_BALANCE, BENCH_KIND_DECLINED);
        }
        switch (o->kind) {
        case BENCH_KIND_NO_BALANCE:
                o->user_id
                    = bench_rng_range(r, w->normal_users + 1, w->normal_users + w->poor_users);
                break;
        case BENCH_KIND_DECLINED:
                o->user_id = bench_rng_range(r, w->users - w->declining_users + 1, w->users);
                break;
        default:
                o->user_id = bench_rng_range(r, 1, w->normal_users);
                break;
        }
        while (o->n_items < want) {
                bool hot = w->hot_fraction > 0 && bench_rng_unit(r) < w->hot_fraction;
                int64_t id = hot ? bench_rng_range(r, 1, w->hot_products)
                                 : bench_rng_range(r, 1, w->products);
                /* Few hot products can run out of distinct ids: then pick from all. */
                for (int tries = 0; has_product(o, id) && tries < 16; tries++) {
                        id = bench_rng_range(r, 1, w->products);
                }
                if (has_product(o, id)) {
                        break;
                }
                o->product_id[o->n_items] = id;
                o->quantity[o->n_items] = bench_rng_range(r, 1, 3);
                o->n_items++;
        }
        if (o->kind == BENCH_KIND_NO_STOCK) {
                o->quantity[bench_rng_range(r, 0, (int64_t) o->n_items - 1)] = w->stock + 1;
        }
}
