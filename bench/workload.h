/* workload.h: the order mix every mercato-bench command drives: who orders what, and which
 * orders are built to fail. The same seed gives every mode the same sequence of orders. */
#ifndef MERCATO_BENCH_WORKLOAD_H
#define MERCATO_BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "seed.h"

/* What an order is built to end as. The failing kinds are split evenly. */
typedef enum bench_kind {
        BENCH_KIND_OK = 0,     /* a normal user, normal quantities: completes */
        BENCH_KIND_NO_BALANCE, /* a poor user (balance 0): insufficient_balance */
        BENCH_KIND_NO_STOCK,   /* one item asks for more than the initial stock: out_of_stock */
        BENCH_KIND_DECLINED,   /* a declining user: payment_declined */
        BENCH_N_KINDS,
} bench_kind;

/* The reason a cancelled order of each failing kind carries ("" for BENCH_KIND_OK). */
const char *bench_kind_reason(bench_kind k);

/* The data and the mix. bench_workload_defaults fills it; options change it;
 * bench_workload_finish validates it and derives the user partitions. */
typedef struct bench_workload {
        int64_t products;     /* product ids 1..products */
        int64_t users;        /* user ids 1..users */
        int64_t stock;        /* initial stock of every product */
        int64_t balance;      /* initial balance of every normal and declining user */
        double hot_fraction;  /* share of items that go to the hottest 1% of products */
        double fail_fraction; /* share of orders built to fail */
        uint64_t seed;        /* prices (through the seed) and every client's sequence */

        /* Derived by bench_workload_finish: users 1..normal_users order normally, then
         * poor_users with balance 0, then declining_users whose payments decline. */
        int64_t normal_users;
        int64_t poor_users;
        int64_t declining_users;
        int64_t hot_products; /* ids 1..hot_products are the hottest 1% (at least 1) */
} bench_workload;

void bench_workload_defaults(bench_workload *w);

/* Parses a whole decimal number in lo..hi (a command-line value) into *ret. False on
 * anything else: empty, trailing characters, out of range or NaN. */
bool bench_parse_double(const char *s, double lo, double hi, double *ret);

/* Sets one shared option by its long name ("products", "users", "hot-fraction",
 * "fail-fraction", "seed", "stock", "balance"). Returns 1 if it was one and valid, 0 if
 * the name is not a workload option, -1 (with err) if the value is bad. */
int bench_workload_option(
    bench_workload *w, const char *name, const char *value, char *err, size_t errlen);

/* Checks the combination and derives the partitions. Returns false (with err) if bad. */
bool bench_workload_finish(bench_workload *w, char *err, size_t errlen);

/* The `mercato seed` parameters that load this workload's data. */
void bench_workload_seed(const bench_workload *w, svc_seed *ret_seed);

/* One order. Items name distinct products. */
#define BENCH_ITEMS_MAX 3
typedef struct bench_order {
        int64_t user_id;
        size_t n_items;
        int64_t product_id[BENCH_ITEMS_MAX];
        int64_t quantity[BENCH_ITEMS_MAX];
        bench_kind kind;
} bench_order;

/* A client's private random sequence: bench_rng_init(seed, client) gives each client its
 * own reproducible stream (splitmix64). */
typedef struct bench_rng {
        uint64_t s;
} bench_rng;

void bench_rng_init(bench_rng *r, uint64_t seed, uint64_t stream);
uint64_t bench_rng_next(bench_rng *r);
/* Uniform in [0, 1). */
double bench_rng_unit(bench_rng *r);
/* Uniform in [lo, hi]. */
int64_t bench_rng_range(bench_rng *r, int64_t lo, int64_t hi);

/* The next order of a client's stream: 1..3 items, each from the hot set with probability
 * hot_fraction, else uniform over every product; with probability fail_fraction it is built
 * to fail, the three reasons equally likely. */
void bench_order_next(const bench_workload *w, bench_rng *r, bench_order *ret_order);

#endif
