/* modes_util.h: the cross-mode tests' helpers: a seeded cluster, orders per mode, totals, quiet. */
#ifndef MERCATO_MODES_UTIL_H
#define MERCATO_MODES_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "harness.h"
#include "order.pb-c.h"
#include "rpc.h"
#include "seed.h"

#define MU_ORDER "/mercato.order.v1.OrderService/"
#define MU_USER "/mercato.user.v1.UserService/"

/* The services of a full cluster, in start order. */
#define MU_SERVICES "product cart user payment dataplatform order"

#define MU_SAGA MERCATO__ORDER__V1__MODE__MODE_SAGA
#define MU_TPC MERCATO__ORDER__V1__MODE__MODE_TWO_PC
#define MU_MONO MERCATO__ORDER__V1__MODE__MODE_MONOLITH
#define MU_ORCH MERCATO__ORDER__V1__MODE__MODE_ORCHESTRATION
#define MU_TCC MERCATO__ORDER__V1__MODE__MODE_TCC

#define MU_PENDING MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_PENDING
#define MU_COMPLETED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED
#define MU_CANCELLED MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED

/* The modes, in the order the tests run them. */
#define MU_N_MODES 5
extern const Mercato__Order__V1__Mode mu_modes[MU_N_MODES];

/* Whether a mode is to be tested: all are, unless $MERCATO_TEST_MODES (for debugging) lists
 * some, comma-separated ("monolith,2pc"). */
bool mu_mode_selected(Mercato__Order__V1__Mode mode);

/* "saga", "2pc", "monolith", "orchestration", "tcc". */
const char *mu_mode_name(Mercato__Order__V1__Mode mode);

/* Where a mode's data lives: the services' own databases (saga, 2pc, orchestration and tcc
 * share them) or the monolith database. */
typedef enum mu_dataset {
        MU_SPLIT = 0,
        MU_MONOLITH = 1,
} mu_dataset;

mu_dataset mu_dataset_of(Mercato__Order__V1__Mode mode);
const char *mu_dataset_name(mu_dataset ds);

/* The metadata of a call on a dataset: NULL, or {"dataset", "monolith", NULL}. */
const char *const *mu_metadata(mu_dataset ds);

/* A started cluster with its clients. The clients never open their breaker and never retry
 * on their own: a test sees every failure. */
typedef struct mu_cluster {
        harness_cluster *hc;
        rpc_client *order;
        rpc_client *user;
        svc_seed seed;
} mu_cluster;

/* Writes the topology of a full cluster (MU_SERVICES, fresh databases, free ports) with
 * `extra` appended (may be NULL: e.g. "[user]\nstep.debit = fail\n"), seeds identical data
 * into every service's database and into the monolith database with the code `mercato
 * seed` runs (mu_seed), then starts every service and opens the clients. Aborts the test
 * program on failure. */
mu_cluster *mu_cluster_start(const char *extra, const svc_seed *s);

/* Stops the services (the order service first) and frees. Accepts NULL. */
void mu_cluster_free(mu_cluster *mc);

/* Seeds a cluster's databases: each store in its own service's database (the split
 * dataset), and every store in the monolith database, through seed_database (migrate, then
 * each store's seed function). Every outbox, barrier and delivery is emptied too, so call
 * it only before the services start or while they are quiet. Aborts on failure. */
void mu_seed(const harness_cluster *hc, const svc_seed *s);

/* A client for a service of the cluster that never opens its breaker. */
rpc_client *mu_client(const harness_cluster *hc, const char *name);

/* One line of an order. */
typedef struct mu_item {
        int64_t product_id;
        int64_t quantity;
} mu_item;

/* What a PlaceOrder or GetOrder answered. */
typedef struct mu_result {
        rpc_status st; /* the call's status */
        char msg[256]; /* its message when not OK */
        int64_t order_id;
        int status; /* MU_PENDING, MU_COMPLETED, MU_CANCELLED */
        char reason[64];
        int64_t total;
        int64_t discount;
        int64_t amount;
        int mode; /* the order's mode, as stored */
} mu_result;

/* Places an order in a mode (the monolith one on the monolith dataset), one attempt, with a
 * call timeout of timeout_ms (0: 30 s). A saga order may come back PENDING (its deadline):
 * follow with mu_wait_terminal. */
void mu_place(rpc_client *order, Mercato__Order__V1__Mode mode, int64_t user_id,
    const mu_item *items, size_t n, int64_t coupon_id, int64_t timeout_ms, mu_result *ret);

/* Reads an order back through GetOrder on its mode's dataset. */
void mu_get(rpc_client *order, Mercato__Order__V1__Mode mode, int64_t order_id, mu_result *ret);

/* Polls GetOrder until the order is COMPLETED or CANCELLED, up to timeout_ms. Returns
 * whether it is terminal; *ret holds the last answer. */
bool mu_wait_terminal(rpc_client *order, Mercato__Order__V1__Mode mode, int64_t order_id,
    int64_t timeout_ms, mu_result *ret);

/* ChargeBalance and IssueCoupon on a dataset. */
rpc_status mu_charge(rpc_client *user, mu_dataset ds, int64_t user_id, int64_t amount);
rpc_status mu_issue_coupon(rpc_client *user, mu_dataset ds, int64_t user_id, int64_t coupon_id);

/* The database of a service ("product") for a dataset: the service's own, or the monolith. */
const char *mu_db(const harness_cluster *hc, mu_dataset ds, const char *service);

/* The totals of a dataset, read with SQL. */
typedef struct mu_totals {
        int64_t stock;          /* sum of products.stock */
        int64_t stock_negative; /* products with stock < 0 */
        int64_t held;           /* reservations' quantities, by status */
        int64_t sold;
        int64_t released;
        int64_t tried;            /* ... 'tried' (a TCC try's hold) */
        int64_t stock_held;       /* sum of products.held (TCC tries) */
        int64_t frozen;           /* sum of users.frozen (TCC tries) */
        int64_t coupons_held;     /* user_coupons held by a TCC try */
        int64_t authorized;       /* payments authorised by a TCC try: count */
        int64_t balance;          /* sum of users.balance */
        int64_t balance_negative; /* users with balance < 0 */
        int64_t charges;          /* ledger sums, by kind */
        int64_t debits;
        int64_t refunds;
        int64_t captured; /* payments captured: count and sum */
        int64_t captured_amount;
        int64_t refunded; /* payments refunded: count */
        int64_t pending;  /* orders by status */
        int64_t completed;
        int64_t cancelled;
        int64_t completed_amount;   /* sum of the completed orders' amounts */
        int64_t completed_quantity; /* sum of the completed orders' item quantities */
        int64_t coupons_used;       /* user_coupons with a used_order_id */
        int64_t coupons_issued;     /* sum of coupons.issued */
        int64_t dp_records;         /* the data platform's received orders */
        int64_t dp_orders;          /* ... distinct order ids among them */
        int64_t prepared;           /* pg_prepared_xacts of the dataset's databases */
        int64_t outbox_pending;     /* outbox events not finished, every database */
        int64_t dead_letters;       /* dead letters, every database */
} mu_totals;

/* Nothing is set aside: no reservation held or tried, nothing held, frozen or authorised. */
bool mu_totals_settled(const mu_totals *t);

void mu_totals_read(const harness_cluster *hc, mu_dataset ds, mu_totals *ret);
void mu_totals_print(FILE *f, const char *label, const mu_totals *t);
/* The dead letters of every database of the dataset, grouped by subscriber, topic and
 * error: what a failed "dead 0" assertion needs to be understood. */
void mu_dead_letters_print(FILE *f, const harness_cluster *hc, mu_dataset ds);

/* Waits (up to timeout_ms) until a dataset is quiet: no PENDING order, every outbox of its
 * databases drained (each event acked or dead-lettered by every subscriber), and no
 * prepared transaction on its databases. On timeout prints what is left and returns false. */
bool mu_wait_quiet(const harness_cluster *hc, mu_dataset ds, int64_t timeout_ms);

/* The state an order must leave alone when it fails, as one malloc'd string to compare
 * with strcmp: every product's stock, every user's balance, every coupon's issued count and
 * every user coupon's use, the captured payments, and the data platform's records. */
char *mu_snapshot(const harness_cluster *hc, mu_dataset ds);

/* Sorted, comma-separated "order_id:amount" lists (malloc'd), to compare the completed
 * orders (of a mode, or of every mode when mode is 0) with the captured payments and with
 * the data platform's records. */
char *mu_completed_list(const harness_cluster *hc, mu_dataset ds, Mercato__Order__V1__Mode mode);
char *mu_captured_list(const harness_cluster *hc, mu_dataset ds);
char *mu_dp_list(const harness_cluster *hc, mu_dataset ds);

/* The first column of the first row of a printf-built query, as a malloc'd string ("" if no
 * row or NULL) or an int64 (0 if none). Test code only: the SQL is a literal. */
char *mu_strf(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int64_t mu_i64f(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Milliseconds of a monotonic clock. */
int64_t mu_now_ms(void);

#endif
