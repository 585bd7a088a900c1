/* check.c: `mercato check`: verifies every invariant across the databases once the system is quiet.
 *
 * NOTES
 *
 * The checker connects straight to the databases the topology names: for the split dataset
 * [product] db, [cart] db, [user] db, [payment] db, [order] db and [dataplatform] db (two
 * sections naming the same conninfo share one connection), for the monolith dataset
 * [monolith] db, which holds every table. Every table name is the same in both, so one set
 * of statements (named check_*) serves both datasets. Each database is read in one
 * REPEATABLE READ READ ONLY transaction, so each is a snapshot; across databases there is no
 * common snapshot, which is why the check is meant for a quiet system.
 *
 * Each database is read whole, once, sorted by the key the joins need (orders by id, and
 * every per-order table by order id), and the cross-database joins run here in C over the
 * sorted arrays: a binary search finds an order's rows in each table. A table read is
 * O(n); the joins are O(n log n). About 100k orders take a few hundred milliseconds.
 *
 * The invariants and their exact meaning are in docs/consistency.md. Each gets one line:
 *   stock                  per product: stock >= 0 and initial = stock + held/sold (a TCC
 *                          try's 'tried' reservation takes no stock: it is in products.held)
 *   balance                per user: balance >= 0 and initial + charges = balance + spent
 *   ledger                 per user: charges - debits + refunds = balance
 *   refunds                every refund has a debit of the same order, user and amount
 *   completed orders       payment (captured, not authorized), net debit, reservations
 *                          (none tried), coupon agree with the order
 *   cancelled orders       no net debit, no captured or authorized payment, nothing held or
 *                          tried, no frozen balance, no coupon used or held;
 *                          a known reason; participant_error names the branch that failed,
 *                          a business "no" names none (a 2pc timeout may name the late one)
 *   pending orders         none
 *   orphans                no effect (stock held, net debit, captured payment, used coupon)
 *                          of an order the order database does not know
 *   dataplatform           one record per completed order, none for a cancelled or unknown
 *   prepared transactions  none in any database of the dataset
 *   outbox                 every event delivered to every subscriber (or dead-lettered)
 *   dead letters           none (counted per database)
 *   2pc log                every global transaction of the coordinator's log done
 *   tcc holds              per product: held = its 'tried' reservations; per user: frozen =
 *                          its 'frozen' balance_holds; no tried reservation, frozen hold,
 *                          authorized payment or held coupon of a terminal or unknown order
 *   unfinished             no orch_saga (an orchestrated saga or a TCC transaction) still
 *                          forward, backward or confirming for a terminal order, none ended
 *                          for a PENDING order, none ended otherwise than its order
 * The lines are as independent as the arithmetic allows: the stock and balance lines count
 * what PENDING orders hold as spent, and the data platform line does not judge a PENDING
 * order's record, so that a pending order fails the pending line only. What a TCC try sets
 * aside (held stock, frozen balance, an authorized payment, a held coupon) changes no total,
 * so the stock and balance lines ignore it and the tcc holds line judges it; a cancelled
 * order that still sets something aside fails both its own line and that one.
 *
 * The baseline (--record-baseline FILE, right after seeding) keeps, per dataset, each
 * product's stock and held/sold quantity, each user's balance, charges and spent amount, and
 * the ledger's highest id; the balance check then counts only the charges added since (ledger
 * ids above it), so a changed old ledger row shows in the ledger line alone.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "db.h"

#define CK_MAX_IDS 10
#define CK_ID_LEN 80
#define CK_WHY_LEN 240
#define CK_NOTE_LEN 512
#define CK_BASELINE_FORMAT "mercato-check-baseline"
#define CK_BASELINE_VERSION 1

/*
 * Statements
 */

/* Every database: what it holds, and its prepared transactions. */
static const db_stmt ck_probe_list[] = {
        { "check_probe",
            "SELECT to_regclass('txn_outbox') IS NOT NULL, to_regclass('txn_tpc_log') IS NOT NULL",
            0 },
        { "check_prepared",
            "SELECT gid, (extract(epoch FROM clock_timestamp() - prepared))::bigint"
            " FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared, gid",
            0 },
};

/* The events not finished: not yet marked delivered, or with a delivery still pending. */
#define CK_STUCK_EVENTS                                                                            \
        "WITH stuck AS (SELECT event_id FROM txn_outbox WHERE delivered_at IS NULL"                \
        " UNION SELECT event_id FROM txn_delivery WHERE state = 'pending') "

/* A database with the txn tables. */
static const db_stmt ck_txn_list[] = {
        { "check_outbox_counts",
            CK_STUCK_EVENTS
            "SELECT (SELECT count(*) FROM txn_outbox), (SELECT count(*) FROM stuck),"
            " (SELECT count(*) FROM txn_dead_letters)",
            0 },
        { "check_outbox_stuck",
            CK_STUCK_EVENTS "SELECT o.event_id::text, o.source, o.topic, o.aggregate_id,"
                            " (SELECT count(*) FROM txn_delivery d"
                            "  WHERE d.event_id = o.event_id AND d.state = 'pending')"
                            " FROM txn_outbox o JOIN stuck s ON s.event_id = o.event_id"
                            " ORDER BY o.seq LIMIT 10",
            0 },
        { "check_dead_letters",
            "SELECT event_id::text, subscriber, topic, attempts, last_error FROM txn_dead_letters"
            " ORDER BY dead_lettered_at, event_id, subscriber LIMIT 10",
            0 },
};

/* A database with the 2pc coordinator's log. */
static const db_stmt ck_tpc_list[] = {
        { "check_tpc_counts",
            "SELECT count(*), count(*) FILTER (WHERE done_at IS NULL) FROM txn_tpc_log", 0 },
        { "check_tpc_open",
            "SELECT gid, coalesce(decision, 'undecided'), txid FROM txn_tpc_log"
            " WHERE done_at IS NULL ORDER BY created_at, gid LIMIT 10",
            0 },
};

static const db_stmt ck_product_list[] = {
        { "check_products", "SELECT id, stock, held FROM products ORDER BY id", 0 },
        { "check_reservations",
            "SELECT order_id, product_id, quantity, status FROM reservations"
            " ORDER BY order_id, product_id",
            0 },
};

static const db_stmt ck_user_list[] = {
        /* $1: the ledger id after which charges count as "since the baseline" (0: all). */
        { "check_users",
            "SELECT u.id, u.balance, coalesce(l.charges, 0), coalesce(l.charges_since, 0),"
            " coalesce(l.debits, 0), coalesce(l.refunds, 0), u.frozen FROM users u LEFT JOIN"
            " (SELECT user_id,"
            "   (sum(amount) FILTER (WHERE kind = 'charge'))::bigint AS charges,"
            "   (sum(amount) FILTER (WHERE kind = 'charge' AND id > $1))::bigint AS charges_since,"
            "   (sum(amount) FILTER (WHERE kind = 'debit'))::bigint AS debits,"
            "   (sum(amount) FILTER (WHERE kind = 'refund'))::bigint AS refunds"
            "  FROM ledger GROUP BY user_id) l ON l.user_id = u.id ORDER BY u.id",
            1 },
        { "check_ledger_max", "SELECT coalesce(max(id), 0) FROM ledger", 0 },
        { "check_ledger_orders",
            "SELECT order_id, user_id, kind, amount FROM ledger WHERE order_id IS NOT NULL"
            " ORDER BY order_id, kind, id",
            0 },
        { "check_coupon_uses",
            "SELECT used_order_id, user_id, coupon_id FROM user_coupons"
            " WHERE used_order_id IS NOT NULL ORDER BY used_order_id, user_id, coupon_id",
            0 },
        /* What TCC tries set aside and no confirm or cancel has settled yet. */
        { "check_coupon_holds",
            "SELECT held_order_id, user_id, coupon_id FROM user_coupons"
            " WHERE held_order_id IS NOT NULL ORDER BY held_order_id, user_id, coupon_id",
            0 },
        { "check_balance_holds",
            "SELECT order_id, user_id, amount FROM balance_holds WHERE status = 'frozen'"
            " ORDER BY order_id",
            0 },
};

static const db_stmt ck_payment_list[] = {
        { "check_payments",
            "SELECT order_id, user_id, amount, status FROM payments ORDER BY order_id, id", 0 },
};

static const db_stmt ck_order_list[] = {
        { "check_orders",
            "SELECT id, user_id, status, amount, coalesce(coupon_id, 0), reason,"
            " failure_branch <> '' FROM orders ORDER BY id",
            0 },
        /* The log of the orchestrated sagas and the TCC transactions. */
        { "check_orch_sagas", "SELECT order_id, state FROM orch_saga ORDER BY order_id", 0 },
        { "check_order_items",
            "SELECT order_id, product_id, quantity FROM order_items ORDER BY order_id, product_id",
            0 },
};

static const db_stmt ck_dp_list[] = {
        { "check_dp_records",
            "SELECT order_id, user_id, amount, event_id FROM received_orders"
            " ORDER BY order_id, event_id",
            0 },
};

#define CK_TABLE(list)                                                                             \
        {                                                                                          \
                .stmts = (list), .n = sizeof(list) / sizeof((list)[0])                             \
        }

static const db_stmt_table ck_probe_stmts = CK_TABLE(ck_probe_list);
static const db_stmt_table ck_txn_stmts = CK_TABLE(ck_txn_list);
static const db_stmt_table ck_tpc_stmts = CK_TABLE(ck_tpc_list);

/* The roles of a dataset's databases: the topology sections that name them. */
typedef enum ck_role {
        CK_PRODUCT = 0, /* products, reservations */
        CK_CART = 1,    /* nothing the invariants read but its txn tables */
        CK_USER = 2,    /* users, ledger, user_coupons, balance_holds */
        CK_PAYMENT = 3, /* payments */
        CK_ORDER = 4,   /* orders, order_items, orch_saga; the 2pc log */
        CK_DP = 5,      /* received_orders */
        CK_N_ROLES = 6,
} ck_role;

static const char *const ck_role_names[CK_N_ROLES]
    = { "product", "cart", "user", "payment", "order", "dataplatform" };

static const db_stmt_table ck_role_stmts[CK_N_ROLES] = {
        [CK_PRODUCT] = CK_TABLE(ck_product_list),
        [CK_CART] = { .stmts = NULL, .n = 0 },
        [CK_USER] = CK_TABLE(ck_user_list),
        [CK_PAYMENT] = CK_TABLE(ck_payment_list),
        [CK_ORDER] = CK_TABLE(ck_order_list),
        [CK_DP] = CK_TABLE(ck_dp_list),
};

/*
 * Invariants and their results
 */

typedef enum ck_inv {
        CK_INV_STOCK = 0,        /* ids: product ids */
        CK_INV_BALANCE = 1,      /* user ids */
        CK_INV_LEDGER = 2,       /* user ids */
        CK_INV_REFUNDS = 3,      /* order ids */
        CK_INV_COMPLETED = 4,    /* order ids */
        CK_INV_CANCELLED = 5,    /* order ids */
        CK_INV_PENDING = 6,      /* order ids */
        CK_INV_ORPHANS = 7,      /* order ids */
        CK_INV_DATAPLATFORM = 8, /* order ids */
        CK_INV_PREPARED = 9,     /* gids */
        CK_INV_OUTBOX = 10,      /* event ids */
        CK_INV_DEAD = 11,        /* event ids */
        CK_INV_TPC = 12,         /* gids */
        CK_INV_TCC = 13,         /* product, user and order ids (the detail says which) */
        CK_INV_UNFINISHED = 14,  /* order ids */
        CK_N_INV = 15,
} ck_inv;

static const char *const ck_inv_names[CK_N_INV] = { "stock", "balance", "ledger", "refunds",
        "completed orders", "cancelled orders", "pending orders", "orphans", "dataplatform",
        "prepared transactions", "outbox", "dead letters", "2pc log", "tcc holds", "unfinished" };

/* Whether an invariant's ids are numbers (else text: gids, event ids). */
static bool
ck_numeric_ids(ck_inv inv)
{
        return inv <= CK_INV_DATAPLATFORM || inv >= CK_INV_TCC;
}

typedef struct ck_result {
        int64_t checked;    /* rows examined */
        int64_t violations; /* offending rows */
        int n_ids;          /* the first CK_MAX_IDS of them */
        char ids[CK_MAX_IDS][CK_ID_LEN];
        char why[CK_MAX_IDS][CK_WHY_LEN];
        char note[CK_NOTE_LEN];
} ck_result;

static void ck_violation(ck_result *r, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Counts a violation, keeping its id and what is wrong while there is room. */
static void
ck_violation(ck_result *r, const char *id, const char *fmt, ...)
{
        va_list ap;

        r->violations++;
        if (r->n_ids >= CK_MAX_IDS) {
                return;
        }
        snprintf(r->ids[r->n_ids], CK_ID_LEN, "%s", id);
        va_start(ap, fmt);
        vsnprintf(r->why[r->n_ids], CK_WHY_LEN, fmt, ap);
        va_end(ap);
        r->n_ids++;
}

static void ck_violation_id(ck_result *r, int64_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
ck_violation_id(ck_result *r, int64_t id, const char *fmt, ...)
{
        char idbuf[32];
        va_list ap;

        r->violations++;
        if (r->n_ids >= CK_MAX_IDS) {
                return;
        }
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long) id);
        snprintf(r->ids[r->n_ids], CK_ID_LEN, "%s", idbuf);
        va_start(ap, fmt);
        vsnprintf(r->why[r->n_ids], CK_WHY_LEN, fmt, ap);
        va_end(ap);
        r->n_ids++;
}

static void ck_append(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends to a "; "-separated list in buf (truncating). */
static void
ck_append(char *buf, size_t len, const char *fmt, ...)
{
        size_t used = strlen(buf);
        va_list ap;

        if (used + 3 >= len) {
                return;
        }
        if (used > 0) {
                memcpy(buf + used, "; ", 3);
                used += 2;
        }
        va_start(ap, fmt);
        vsnprintf(buf + used, len - used, fmt, ap);
        va_end(ap);
}

/*
 * The data of a dataset. Every record type starts with the int64_t key its array is sorted
 * by, so that ck_lower_bound serves them all.
 */

typedef enum ck_status {
        CK_OTHER = 0,     /* a status the schema does not allow */
        CK_PENDING = 1,   /* in flight */
        CK_COMPLETED = 2, /* every step done */
        CK_CANCELLED = 3, /* undone */
} ck_status;

typedef struct ck_order {
        int64_t id;
        int64_t user_id;
        int64_t amount;
        int64_t coupon_id; /* 0 for none */
        ck_status status;
        char reason[32]; /* why it was cancelled (cut to fit) */
        bool failure;    /* it names the branch that failed */
} ck_order;

typedef struct ck_item {
        int64_t order_id;
        int64_t product_id;
        int64_t quantity;
} ck_item;

typedef enum ck_resv_status {
        CK_RESV_OTHER = 0,    /* a status the schema does not allow */
        CK_RESV_HELD = 1,     /* taken from stock, order in flight */
        CK_RESV_SOLD = 2,     /* taken from stock, order completed */
        CK_RESV_RELEASED = 3, /* given back to stock */
        CK_RESV_TRIED = 4,    /* set aside by a TCC try: in products.held, not taken */
} ck_resv_status;

typedef struct ck_resv {
        int64_t order_id;
        int64_t product_id;
        int64_t quantity;
        ck_resv_status status;
} ck_resv;

typedef struct ck_product {
        int64_t id;
        int64_t stock;
        int64_t held;     /* products.held: what TCC tries set aside */
        int64_t reserved; /* held + sold, computed */
        int64_t tried;    /* tried reservations, computed */
} ck_product;

/* A quantity held or sold of a product (for the per-product sums). */
typedef struct ck_pq {
        int64_t product_id;
        int64_t quantity;
} ck_pq;

typedef struct ck_user {
        int64_t id;
        int64_t balance;
        int64_t charges;       /* every charge in the ledger */
        int64_t charges_since; /* charges with a ledger id above the baseline's */
        int64_t debits;
        int64_t refunds;
        int64_t spent;  /* completed orders' amounts + pending orders' net debits, computed */
        int64_t frozen; /* users.frozen: what TCC tries set aside */
        int64_t holds;  /* frozen balance_holds, computed */
} ck_user;

/* A ledger row of an order. */
typedef struct ck_entry {
        int64_t order_id;
        int64_t user_id;
        int64_t amount;
        bool refund; /* else a debit */
} ck_entry;

typedef enum ck_pay_status {
        CK_PAY_OTHER = 0,      /* a status the schema does not allow */
        CK_PAY_CAPTURED = 1,   /* the money taken */
        CK_PAY_REFUNDED = 2,   /* taken, then given back */
        CK_PAY_AUTHORIZED = 3, /* promised by a TCC try, not taken */
        CK_PAY_VOIDED = 4,     /* a cancelled try: never taken */
} ck_pay_status;

typedef struct ck_payment {
        int64_t order_id;
        int64_t user_id;
        int64_t amount;
        ck_pay_status status;
} ck_payment;

/* A balance frozen by a TCC try, not yet confirmed or cancelled. */
typedef struct ck_hold {
        int64_t order_id;
        int64_t user_id;
        int64_t amount;
} ck_hold;

typedef enum ck_saga_state {
        CK_SAGA_OTHER = 0,      /* a state the schema does not allow */
        CK_SAGA_FORWARD = 1,    /* steps or tries going on */
        CK_SAGA_BACKWARD = 2,   /* compensations or cancels going on */
        CK_SAGA_CONFIRMING = 3, /* TCC: decided, confirms going on */
        CK_SAGA_COMPLETED = 4,  /* ended with the order COMPLETED */
        CK_SAGA_CANCELLED = 5,  /* ended with the order CANCELLED */
} ck_saga_state;

/* A row of the orchestrator's log (an orchestrated saga or a TCC transaction). */
typedef struct ck_saga {
        int64_t order_id;
        ck_saga_state state;
} ck_saga;

/* A coupon held by a user and used (or held by a TCC try) by an order. */
typedef struct ck_use {
        int64_t order_id;
        int64_t user_id;
        int64_t coupon_id;
} ck_use;

/* A record of the data platform. */
typedef struct ck_record {
        int64_t order_id;
        int64_t user_id;
        int64_t amount;
} ck_record;

/* A dataset's baseline. */
typedef struct ck_base_product {
        int64_t id;
        int64_t stock;
        int64_t reserved;
} ck_base_product;

typedef struct ck_base_user {
        int64_t id;
        int64_t balance;
        int64_t charges;
        int64_t spent;
} ck_base_user;

typedef struct ck_base {
        int64_t ledger_max_id;
        ck_base_product *products; /* sorted by id */
        size_t n_products;
        ck_base_user *users; /* sorted by id */
        size_t n_users;
} ck_base;

/* One database of a dataset. */
typedef struct ck_db {
        const char *conninfo; /* borrowed from the topology */
        char label[96];       /* the sections it serves: "order", "monolith", "user+payment" */
        unsigned roles;       /* bit per ck_role */
        bool has_txn;         /* the txn tables exist */
        bool has_tpc;         /* the 2pc log exists */
        db_conn *conn;
        int64_t stuck;    /* events not finished */
        int64_t dead;     /* dead letters */
        int64_t prepared; /* prepared transactions */
        int64_t tpc_open; /* 2pc log rows not done */
} ck_db;

/* One dataset: its databases, its data, its results. */
typedef struct ck_set {
        const char *name; /* "split", "monolith" */
        ck_db dbs[CK_N_ROLES];
        size_t n_dbs;
        ck_db *role_db[CK_N_ROLES];
        const ck_base *base; /* NULL without a baseline */

        ck_order *orders;
        size_t n_orders;
        ck_item *items;
        size_t n_items;
        ck_resv *resv;
        size_t n_resv;
        ck_product *products;
        size_t n_products;
        ck_pq *unknown_products; /* held/sold quantities of products that do not exist */
        size_t n_unknown_products;
        ck_user *users;
        size_t n_users;
        ck_entry *entries;
        size_t n_entries;
        ck_payment *payments;
        size_t n_payments;
        ck_use *uses;
        size_t n_uses;
        ck_use *coupon_holds;
        size_t n_coupon_holds;
        ck_hold *holds;
        size_t n_holds;
        ck_saga *sagas;
        size_t n_sagas;
        ck_record *records;
        size_t n_records;
        int64_t ledger_max_id;

        ck_result res[CK_N_INV];
} ck_set;

/* The options and state of one run. */
typedef struct ck_ctx {
        cli *c;
        bool has_initial_stock;
        int64_t initial_stock;
        bool has_initial_balance;
        int64_t initial_balance;
        const char *baseline_path; /* --baseline */
        const char *record_path;   /* --record-baseline */
        ck_base bases[2];          /* split, monolith */
        bool has_base[2];
        char err[1024];
} ck_ctx;

/*
 * Sorted arrays
 */

static int64_t
ck_key(const void *base, size_t size, size_t i)
{
        int64_t k;

        memcpy(&k, (const char *) base + i * size, sizeof(k));
        return k;
}

/* The first index whose key is >= key, in an array sorted by its leading int64_t key. */
static size_t
ck_lower_bound(const void *base, size_t n, size_t size, int64_t key)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (ck_key(base, size, mid) < key) {
                        lo = mid + 1;
                } else {
                        hi = mid;
                }
        }
        return lo;
}

/* The rows [*ret_b, *ret_e) whose key is key. */
static void
ck_range(const void *base, size_t n, size_t size, int64_t key, size_t *ret_b, size_t *ret_e)
{
        size_t b = ck_lower_bound(base, n, size, key);
        size_t e = b;

        while (e < n && ck_key(base, size, e) == key) {
                e++;
        }
        *ret_b = b;
        *ret_e = e;
}

/* The row whose key is key, or NULL. */
static const void *
ck_find(const void *base, size_t n, size_t size, int64_t key)
{
        size_t i = ck_lower_bound(base, n, size, key);

        return i < n && ck_key(base, size, i) == key ? (const char *) base + i * size : NULL;
}

static const ck_order *
ck_order_find(const ck_set *s, int64_t id)
{
        return ck_find(s->orders, s->n_orders, sizeof(ck_order), id);
}

static ck_user *
ck_user_find(ck_set *s, int64_t id)
{
        return (ck_user *) ck_find(s->users, s->n_users, sizeof(ck_user), id);
}

static int
ck_cmp_key(const void *a, const void *b)
{
        int64_t x, y;

        memcpy(&x, a, sizeof(x));
        memcpy(&y, b, sizeof(y));
        return x < y ? -1 : x > y;
}

/* Sorts an array by its leading int64_t key (stable enough: ties keep no order). */
static void
ck_sort(void *base, size_t n, size_t size)
{
        if (n > 1) {
                qsort(base, n, size, ck_cmp_key);
        }
}

/*
 * Databases
 */

static rpc_status ck_fail(ck_ctx *x, rpc_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records why the run cannot go on. */
static rpc_status
ck_fail(ck_ctx *x, rpc_status st, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(x->err, sizeof(x->err), fmt, ap);
        va_end(ap);
        return st;
}

/* Runs a statement on a database, saying which on failure. */
static rpc_status
ck_exec(
    ck_ctx *x, const ck_set *s, ck_db *d, const char *stmt, const db_params *p, PGresult **ret_res)
{
        rpc_status st = db_exec(d->conn, stmt, p, ret_res);

        if (st != RPC_OK) {
                return ck_fail(
                    x, st, "%s (%s): %s: %s", s->name, d->label, stmt, db_errmsg(d->conn));
        }
        return RPC_OK;
}

/* Lays out a dataset's databases: each role's conninfo, one database per distinct one. */
static void
ck_set_init(ck_set *s, const char *name, const char *const conninfo[CK_N_ROLES])
{
        memset(s, 0, sizeof(*s));
        s->name = name;
        for (int r = 0; r < CK_N_ROLES; r++) {
                ck_db *d = NULL;
                for (size_t i = 0; i < s->n_dbs; i++) {
                        if (strcmp(s->dbs[i].conninfo, conninfo[r]) == 0) {
                                d = &s->dbs[i];
                        }
                }
                if (d == NULL) {
                        d = &s->dbs[s->n_dbs++];
                        d->conninfo = conninfo[r];
                } else {
                        size_t used = strlen(d->label);
                        snprintf(d->label + used, sizeof(d->label) - used, "+");
                }
                size_t used = strlen(d->label);
                snprintf(d->label + used, sizeof(d->label) - used, "%s", ck_role_names[r]);
                d->roles |= 1u << r;
                s->role_db[r] = d;
        }
        if (strcmp(name, "monolith") == 0 && s->n_dbs == 1) {
                snprintf(s->dbs[0].label, sizeof(s->dbs[0].label), "monolith");
        }
}

/* Connects to a database: finds which txn tables it has, then connects again with the
 * statements its roles need, and opens the read-only snapshot. */
static rpc_status
ck_connect(ck_ctx *x, const ck_set *s, ck_db *d)
{
        db_stmt_table tables[CK_N_ROLES + 3];
        DB_RES_CLEANUP PGresult *res = NULL;
        db_conn *probe = NULL;
        char err[512];
        size_t n = 0;
        rpc_status st;

        st = db_connect(d->conninfo, &ck_probe_stmts, 1, &probe, err, sizeof(err));
        if (st != RPC_OK) {
                return ck_fail(x, st, "%s (%s): cannot connect: %s", s->name, d->label, err);
        }
        st = db_exec(probe, "check_probe", NULL, &res);
        if (st != RPC_OK) {
                st = ck_fail(x, st, "%s (%s): %s", s->name, d->label, db_errmsg(probe));
                db_close(probe);
                return st;
        }
        d->has_txn = db_get_bool(res, 0, 0);
        d->has_tpc = db_get_bool(res, 0, 1);
        db_close(probe);

        tables[n++] = ck_probe_stmts;
        for (int r = 0; r < CK_N_ROLES; r++) {
                if ((d->roles & (1u << r)) != 0 && ck_role_stmts[r].n > 0) {
                        tables[n++] = ck_role_stmts[r];
                }
        }
        if (d->has_txn) {
                tables[n++] = ck_txn_stmts;
        }
        if (d->has_tpc) {
                tables[n++] = ck_tpc_stmts;
        }
        st = db_connect(d->conninfo, tables, n, &d->conn, err, sizeof(err));
        if (st != RPC_OK) {
                return ck_fail(x, st, "%s (%s): %s: %s", s->name, d->label,
                    st == RPC_UNAVAILABLE ? "cannot connect"
                                          : "cannot prepare the checks (tables missing?)",
                    err);
        }
        st = db_command(d->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        if (st != RPC_OK) {
                return ck_fail(x, st, "%s (%s): begin: %s", s->name, d->label, db_errmsg(d->conn));
        }
        return RPC_OK;
}

static void
ck_set_fini(ck_set *s)
{
        for (size_t i = 0; i < s->n_dbs; i++) {
                if (s->dbs[i].conn != NULL) {
                        db_rollback(s->dbs[i].conn);
                        db_close(s->dbs[i].conn);
                        s->dbs[i].conn = NULL;
                }
        }
        free(s->orders);
        free(s->items);
        free(s->resv);
        free(s->products);
        free(s->unknown_products);
        free(s->users);
        free(s->entries);
        free(s->payments);
        free(s->uses);
        free(s->coupon_holds);
        free(s->holds);
        free(s->sagas);
        free(s->records);
}

/*
 * Loading
 */

/* calloc for n rows (at least one, so that an empty table is not NULL). */
static void *
ck_rows(int n, size_t size)
{
        return rpc_xcalloc(n > 0 ? (size_t) n : 1, size);
}

static ck_status
ck_status_of(const char *s)
{
        if (strcmp(s, "PENDING") == 0) {
                return CK_PENDING;
        }
        if (strcmp(s, "COMPLETED") == 0) {
                return CK_COMPLETED;
        }
        if (strcmp(s, "CANCELLED") == 0) {
                return CK_CANCELLED;
        }
        return CK_OTHER;
}

static ck_resv_status
ck_resv_status_of(const char *s)
{
        if (strcmp(s, "held") == 0) {
                return CK_RESV_HELD;
        }
        if (strcmp(s, "sold") == 0) {
                return CK_RESV_SOLD;
        }
        if (strcmp(s, "released") == 0) {
                return CK_RESV_RELEASED;
        }
        if (strcmp(s, "tried") == 0) {
                return CK_RESV_TRIED;
        }
        return CK_RESV_OTHER;
}

static ck_pay_status
ck_pay_status_of(const char *s)
{
        static const char *const names[] = { "captured", "refunded", "authorized", "voided" };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strcmp(s, names[i]) == 0) {
                        return (ck_pay_status) (i + 1);
                }
        }
        return CK_PAY_OTHER;
}

static const char *
ck_pay_status_name(ck_pay_status st)
{
        static const char *const names[]
            = { "in an unknown state", "captured", "refunded", "authorized", "voided" };

        return names[st];
}

static ck_saga_state
ck_saga_state_of(const char *s)
{
        static const char *const names[]
            = { "forward", "backward", "confirming", "completed", "cancelled" };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strcmp(s, names[i]) == 0) {
                        return (ck_saga_state) (i + 1);
                }
        }
        return CK_SAGA_OTHER;
}

static const char *
ck_resv_status_name(ck_resv_status st)
{
        static const char *const names[]
            = { "in an unknown state", "held", "sold", "released", "tried" };

        return names[st];
}

/* Whether a reservation has taken its quantity from stock. */
static bool
ck_holds(ck_resv_status st)
{
        return st == CK_RESV_HELD || st == CK_RESV_SOLD;
}

/* The orchestrator's log: one row per orchestrated saga or TCC transaction. */
static rpc_status
ck_load_sagas(ck_ctx *x, ck_set *s)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        rpc_status st;
        int n;

        st = ck_exec(x, s, s->role_db[CK_ORDER], "check_orch_sagas", NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        s->sagas = ck_rows(n, sizeof(ck_saga));
        for (int r = 0; r < n; r++) {
                s->sagas[r] = (ck_saga) { .order_id = db_get_i64(res, r, 0),
                        .state = ck_saga_state_of(db_get_str(res, r, 1)) };
        }
        s->n_sagas = (size_t) n;
        return RPC_OK;
}

static rpc_status
ck_load_orders(ck_ctx *x, ck_set *s)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        DB_RES_CLEANUP PGresult *items = NULL;
        ck_db *d = s->role_db[CK_ORDER];
        rpc_status st;
        int n;

        st = ck_exec(x, s, d, "check_orders", NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        s->orders = ck_rows(n, sizeof(ck_order));
        for (int r = 0; r < n; r++) {
                s->orders[r] = (ck_order) { .id = db_get_i64(res, r, 0),
                        .user_id = db_get_i64(res, r, 1),
                        .status = ck_status_of(db_get_str(res, r, 2)),
                        .amount = db_get_i64(res, r, 3),
                        .coupon_id = db_get_i64(res, r, 4),
                        .failure = db_get_bool(res, r, 6) };
                snprintf(
                    s->orders[r].reason, sizeof(s->orders[r].reason), "%s", db_get_str(res, r, 5));
        }
        s->n_orders = (size_t) n;

        st = ck_exec(x, s, d, "check_order_items", NULL, &items);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(items);
        s->items = ck_rows(n, sizeof(ck_item));
        for (int r = 0; r < n; r++) {
                s->items[r] = (ck_item) { .order_id = db_get_i64(items, r, 0),
                        .product_id = db_get_i64(items, r, 1),
                        .quantity = db_get_i64(items, r, 2) };
        }
        s->n_items = (size_t) n;
        return ck_load_sagas(x, s);
}

static rpc_status
ck_load_products(ck_ctx *x, ck_set *s)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        DB_RES_CLEANUP PGresult *resv = NULL;
        ck_db *d = s->role_db[CK_PRODUCT];
        rpc_status st;
        int n;

        st = ck_exec(x, s, d, "check_products", NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        s->products = ck_rows(n, sizeof(ck_product));
        for (int r = 0; r < n; r++) {
                s->products[r] = (ck_product) { .id = db_get_i64(res, r, 0),
                        .stock = db_get_i64(res, r, 1),
                        .held = db_get_i64(res, r, 2) };
        }
        s->n_products = (size_t) n;

        st = ck_exec(x, s, d, "check_reservations", NULL, &resv);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(resv);
        s->resv = ck_rows(n, sizeof(ck_resv));
        for (int r = 0; r < n; r++) {
                s->resv[r] = (ck_resv) { .order_id = db_get_i64(resv, r, 0),
                        .product_id = db_get_i64(resv, r, 1),
                        .quantity = db_get_i64(resv, r, 2),
                        .status = ck_resv_status_of(db_get_str(resv, r, 3)) };
        }
        s->n_resv = (size_t) n;
        return RPC_OK;
}

/* The coupons a statement lists, by order id (used, or held by a try). */
static rpc_status
ck_load_coupons(ck_ctx *x, ck_set *s, const char *stmt, ck_use **ret_rows, size_t *ret_n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        rpc_status st;
        ck_use *rows;
        int n;

        st = ck_exec(x, s, s->role_db[CK_USER], stmt, NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        rows = ck_rows(n, sizeof(ck_use));
        for (int r = 0; r < n; r++) {
                rows[r] = (ck_use) { .order_id = db_get_i64(res, r, 0),
                        .user_id = db_get_i64(res, r, 1),
                        .coupon_id = db_get_i64(res, r, 2) };
        }
        *ret_rows = rows;
        *ret_n = (size_t) n;
        return RPC_OK;
}

/* The balances frozen by TCC tries. */
static rpc_status
ck_load_holds(ck_ctx *x, ck_set *s)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        rpc_status st;
        int n;

        st = ck_exec(x, s, s->role_db[CK_USER], "check_balance_holds", NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        s->holds = ck_rows(n, sizeof(ck_hold));
        for (int r = 0; r < n; r++) {
                s->holds[r] = (ck_hold) { .order_id = db_get_i64(res, r, 0),
                        .user_id = db_get_i64(res, r, 1),
                        .amount = db_get_i64(res, r, 2) };
        }
        s->n_holds = (size_t) n;
        return RPC_OK;
}

static rpc_status
ck_load_users(ck_ctx *x, ck_set *s)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        DB_RES_CLEANUP PGresult *max = NULL;
        DB_RES_CLEANUP PGresult *entries = NULL;
        ck_db *d = s->role_db[CK_USER];
        db_params p;
        rpc_status st;
        int n;

        st = ck_exec(x, s, d, "check_ledger_max", NULL, &max);
        if (st != RPC_OK) {
                return st;
        }
        s->ledger_max_id = db_get_i64(max, 0, 0);

        db_params_init(&p);
        db_params_i64(&p, s->base != NULL ? s->base->ledger_max_id : 0);
        st = ck_exec(x, s, d, "check_users", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        s->users = ck_rows(n, sizeof(ck_user));
        for (int r = 0; r < n; r++) {
                s->users[r] = (ck_user) { .id = db_get_i64(res, r, 0),
                        .balance = db_get_i64(res, r, 1),
                        .charges = db_get_i64(res, r, 2),
                        .charges_since = db_get_i64(res, r, 3),
                        .debits = db_get_i64(res, r, 4),
                        .refunds = db_get_i64(res, r, 5),
                        .frozen = db_get_i64(res, r, 6) };
        }
        s->n_users = (size_t) n;

        st = ck_exec(x, s, d, "check_ledger_orders", NULL, &entries);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(entries);
        s->entries = ck_rows(n, sizeof(ck_entry));
        for (int r = 0; r < n; r++) {
                s->entries[r] = (ck_entry) { .order_id = db_get_i64(entries, r, 0),
                        .user_id = db_get_i64(entries, r, 1),
                        .refund = strcmp(db_get_str(entries, r, 2), "refund") == 0,
                        .amount = db_get_i64(entries, r, 3) };
        }
        s->n_entries = (size_t) n;

        st = ck_load_coupons(x, s, "check_coupon_uses", &s->uses, &s->n_uses);
        if (st != RPC_OK) {
                return st;
        }
        st = ck_load_coupons(x, s, "check_coupon_holds", &s->coupon_holds, &s->n_coupon_holds);
        if (st != RPC_OK) {
                return st;
        }
        return ck_load_holds(x, s);
}

static rpc_status
ck_load_payments(ck_ctx *x, ck_set *s)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        rpc_status st;
        int n;

        st = ck_exec(x, s, s->role_db[CK_PAYMENT], "check_payments", NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        s->payments = ck_rows(n, sizeof(ck_payment));
        for (int r = 0; r < n; r++) {
                s->payments[r] = (ck_payment) { .order_id = db_get_i64(res, r, 0),
                        .user_id = db_get_i64(res, r, 1),
                        .amount = db_get_i64(res, r, 2),
                        .status = ck_pay_status_of(db_get_str(res, r, 3)) };
        }
        s->n_payments = (size_t) n;
        return RPC_OK;
}

static rpc_status
ck_load_records(ck_ctx *x, ck_set *s)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        rpc_status st;
        int n;

        st = ck_exec(x, s, s->role_db[CK_DP], "check_dp_records", NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        s->records = ck_rows(n, sizeof(ck_record));
        for (int r = 0; r < n; r++) {
                s->records[r] = (ck_record) { .order_id = db_get_i64(res, r, 0),
                        .user_id = db_get_i64(res, r, 1),
                        .amount = db_get_i64(res, r, 2) };
        }
        s->n_records = (size_t) n;
        return RPC_OK;
}

/* Reads everything the invariants compare. */
static rpc_status
ck_load(ck_ctx *x, ck_set *s)
{
        rpc_status st;

        if ((st = ck_load_orders(x, s)) != RPC_OK || (st = ck_load_products(x, s)) != RPC_OK
            || (st = ck_load_users(x, s)) != RPC_OK || (st = ck_load_payments(x, s)) != RPC_OK
            || (st = ck_load_records(x, s)) != RPC_OK) {
                return st;
        }
        return RPC_OK;
}

/*
 * Derived sums
 */

/* Each product's held + sold quantity; the quantities of unknown products aside. */
static void
ck_compute_reserved(ck_set *s)
{
        ck_pq *pq = ck_rows((int) s->n_resv, sizeof(ck_pq));
        size_t n = 0, j = 0;

        for (size_t i = 0; i < s->n_resv; i++) {
                if (ck_holds(s->resv[i].status)) {
                        pq[n++] = (ck_pq) { s->resv[i].product_id, s->resv[i].quantity };
                }
        }
        ck_sort(pq, n, sizeof(ck_pq));
        s->unknown_products = ck_rows((int) n, sizeof(ck_pq));
        for (size_t i = 0; i < n; i++) {
                while (j < s->n_products && s->products[j].id < pq[i].product_id) {
                        j++;
                }
                if (j < s->n_products && s->products[j].id == pq[i].product_id) {
                        s->products[j].reserved += pq[i].quantity;
                } else if (s->n_unknown_products > 0
                    && s->unknown_products[s->n_unknown_products - 1].product_id
                        == pq[i].product_id) {
                        s->unknown_products[s->n_unknown_products - 1].quantity += pq[i].quantity;
                } else {
                        s->unknown_products[s->n_unknown_products++] = pq[i];
                }
        }
        free(pq);
}

/* The net debit (debits - refunds) of an order's ledger rows. */
static int64_t
ck_net_debit(const ck_set *s, int64_t order_id, int64_t *ret_debit_user)
{
        size_t b, e;
        int64_t net = 0;

        ck_range(s->entries, s->n_entries, sizeof(ck_entry), order_id, &b, &e);
        if (ret_debit_user != NULL) {
                *ret_debit_user = 0;
        }
        for (size_t i = b; i < e; i++) {
                if (s->entries[i].refund) {
                        net -= s->entries[i].amount;
                } else {
                        net += s->entries[i].amount;
                        if (ret_debit_user != NULL) {
                                *ret_debit_user = s->entries[i].user_id;
                        }
                }
        }
        return net;
}

/* Each user's spent amount: the amounts of the completed orders and the net debits of the
 * pending ones (in flight: their money is neither back nor settled). */
static void
ck_compute_spent(ck_set *s)
{
        for (size_t i = 0; i < s->n_orders; i++) {
                const ck_order *o = &s->orders[i];
                ck_user *u = ck_user_find(s, o->user_id);

                if (u == NULL) {
                        continue; /* the completed orders line names it */
                }
                if (o->status == CK_COMPLETED) {
                        u->spent += o->amount;
                } else if (o->status == CK_PENDING) {
                        u->spent += ck_net_debit(s, o->id, NULL);
                }
        }
}

/*
 * The invariants
 */

static void
ck_check_stock(const ck_ctx *x, ck_set *s)
{
        ck_result *r = &s->res[CK_INV_STOCK];
        const ck_base *b = s->base;

        r->checked = (int64_t) s->n_products;
        for (size_t i = 0; i < s->n_unknown_products; i++) {
                ck_violation_id(r, s->unknown_products[i].product_id,
                    "product %lld: %lld held/sold, but no such product",
                    (long long) s->unknown_products[i].product_id,
                    (long long) s->unknown_products[i].quantity);
        }
        for (size_t i = 0; i < s->n_products; i++) {
                const ck_product *p = &s->products[i];
                char why[CK_WHY_LEN] = "";
                bool known = true;
                int64_t initial = 0;

                if (p->stock < 0) {
                        ck_append(why, sizeof(why), "stock %lld < 0", (long long) p->stock);
                }
                if (b != NULL) {
                        const ck_base_product *bp
                            = ck_find(b->products, b->n_products, sizeof(*bp), p->id);
                        if (bp == NULL) {
                                ck_append(why, sizeof(why), "not in the baseline");
                                known = false;
                        } else {
                                initial = bp->stock + bp->reserved;
                        }
                } else if (x->has_initial_stock) {
                        initial = x->initial_stock;
                } else {
                        known = false;
                }
                if (known && initial != p->stock + p->reserved) {
                        ck_append(why, sizeof(why), "initial %lld != stock %lld + held/sold %lld",
                            (long long) initial, (long long) p->stock, (long long) p->reserved);
                }
                if (why[0] != '\0') {
                        ck_violation_id(r, p->id, "product %lld: %s", (long long) p->id, why);
                }
        }
        for (size_t i = 0; b != NULL && i < b->n_products; i++) {
                if (ck_find(s->products, s->n_products, sizeof(ck_product), b->products[i].id)
                    == NULL) {
                        ck_violation_id(r, b->products[i].id,
                            "product %lld: in the baseline, gone now",
                            (long long) b->products[i].id);
                }
        }
        if (b != NULL) {
                snprintf(r->note, sizeof(r->note), "initial stock from the baseline %s",
                    x->baseline_path);
        } else if (x->has_initial_stock) {
                snprintf(r->note, sizeof(r->note), "initial stock %lld each",
                    (long long) x->initial_stock);
        } else {
                snprintf(r->note, sizeof(r->note),
                    "no baseline: initial stock derived as stock + held/sold, only stock >= 0 "
                    "checked");
        }
}

static void
ck_check_money(const ck_ctx *x, ck_set *s)
{
        ck_result *bal = &s->res[CK_INV_BALANCE];
        ck_result *led = &s->res[CK_INV_LEDGER];
        const ck_base *b = s->base;

        bal->checked = (int64_t) s->n_users;
        led->checked = (int64_t) s->n_users;
        for (size_t i = 0; i < s->n_users; i++) {
                const ck_user *u = &s->users[i];
                char why[CK_WHY_LEN] = "";
                int64_t lhs, rhs;

                if (u->charges - u->debits + u->refunds != u->balance) {
                        ck_violation_id(led, u->id,
                            "user %lld: charges %lld - debits %lld + refunds %lld != balance %lld",
                            (long long) u->id, (long long) u->charges, (long long) u->debits,
                            (long long) u->refunds, (long long) u->balance);
                }
                if (u->balance < 0) {
                        ck_append(why, sizeof(why), "balance %lld < 0", (long long) u->balance);
                }
                rhs = u->balance + u->spent;
                if (b != NULL) {
                        const ck_base_user *bu = ck_find(b->users, b->n_users, sizeof(*bu), u->id);
                        if (bu == NULL) {
                                ck_append(why, sizeof(why), "not in the baseline");
                        } else {
                                lhs = bu->balance + bu->spent + u->charges_since;
                                if (lhs != rhs) {
                                        ck_append(why, sizeof(why),
                                            "baseline %lld + charges since %lld != balance %lld + "
                                            "spent %lld (baseline spent %lld)",
                                            (long long) bu->balance, (long long) u->charges_since,
                                            (long long) u->balance,
                                            (long long) (u->spent - bu->spent),
                                            (long long) bu->spent);
                                }
                        }
                } else {
                        lhs = u->charges;
                        if (lhs != rhs) {
                                ck_append(why, sizeof(why),
                                    "charges %lld != balance %lld + spent %lld", (long long) lhs,
                                    (long long) u->balance, (long long) u->spent);
                        }
                }
                if (why[0] != '\0') {
                        ck_violation_id(bal, u->id, "user %lld: %s", (long long) u->id, why);
                }
        }
        for (size_t i = 0; b != NULL && i < b->n_users; i++) {
                if (ck_find(s->users, s->n_users, sizeof(ck_user), b->users[i].id) == NULL) {
                        ck_violation_id(bal, b->users[i].id, "user %lld: in the baseline, gone now",
                            (long long) b->users[i].id);
                }
        }
        if (b != NULL) {
                snprintf(bal->note, sizeof(bal->note),
                    "initial balance from the baseline %s, charges since it from the ledger",
                    x->baseline_path);
        } else if (x->has_initial_balance) {
                snprintf(bal->note, sizeof(bal->note),
                    "initial balance %lld each, recorded by the seed as a charge: initial + "
                    "charges = the ledger's charges",
                    (long long) x->initial_balance);
        } else {
                snprintf(bal->note, sizeof(bal->note),
                    "no baseline: initial balance + charges = the ledger's charges (the seed "
                    "records the initial balance as a charge)");
        }
}

static void
ck_check_refunds(ck_set *s)
{
        ck_result *r = &s->res[CK_INV_REFUNDS];

        for (size_t i = 0; i < s->n_entries;) {
                size_t e = i;
                const ck_entry *debit = NULL;

                while (e < s->n_entries && s->entries[e].order_id == s->entries[i].order_id) {
                        if (!s->entries[e].refund) {
                                debit = &s->entries[e];
                        }
                        e++;
                }
                for (size_t k = i; k < e; k++) {
                        const ck_entry *rf = &s->entries[k];
                        if (!rf->refund) {
                                continue;
                        }
                        r->checked++;
                        if (debit == NULL) {
                                ck_violation_id(r, rf->order_id,
                                    "order %lld: refund of %lld to user %lld without a debit",
                                    (long long) rf->order_id, (long long) rf->amount,
                                    (long long) rf->user_id);
                        } else if (debit->amount != rf->amount || debit->user_id != rf->user_id) {
                                ck_violation_id(r, rf->order_id,
                                    "order %lld: refund of %lld to user %lld, debit of %lld to "
                                    "user %lld",
                                    (long long) rf->order_id, (long long) rf->amount,
                                    (long long) rf->user_id, (long long) debit->amount,
                                    (long long) debit->user_id);
                        }
                }
                i = e;
        }
}

/* Compares a completed order's held/sold reservations with its items (both sorted by
 * product id). */
static void
ck_compare_reservations(const ck_set *s, const ck_order *o, char *why, size_t len)
{
        size_t ib, ie, rb, re, k;

        ck_range(s->items, s->n_items, sizeof(ck_item), o->id, &ib, &ie);
        ck_range(s->resv, s->n_resv, sizeof(ck_resv), o->id, &rb, &re);
        if (ib == ie) {
                ck_append(why, len, "no items");
        }
        k = ib;
        for (size_t i = rb; i < re; i++) {
                const ck_resv *rv = &s->resv[i];
                if (!ck_holds(rv->status)) {
                        ck_append(why, len, "product %lld: reservation %s",
                            (long long) rv->product_id, ck_resv_status_name(rv->status));
                        continue;
                }
                while (k < ie && s->items[k].product_id < rv->product_id) {
                        ck_append(why, len, "product %lld: ordered, not reserved",
                            (long long) s->items[k].product_id);
                        k++;
                }
                if (k < ie && s->items[k].product_id == rv->product_id) {
                        if (s->items[k].quantity != rv->quantity) {
                                ck_append(why, len, "product %lld: %lld held/sold, %lld ordered",
                                    (long long) rv->product_id, (long long) rv->quantity,
                                    (long long) s->items[k].quantity);
                        }
                        k++;
                } else {
                        ck_append(why, len, "product %lld: reserved, not ordered",
                            (long long) rv->product_id);
                }
        }
        for (; k < ie; k++) {
                ck_append(why, len, "product %lld: ordered, not reserved",
                    (long long) s->items[k].product_id);
        }
}

static void
ck_check_completed(ck_set *s, const ck_order *o)
{
        ck_result *r = &s->res[CK_INV_COMPLETED];
        char why[CK_WHY_LEN] = "";
        int64_t debit_user;
        int64_t net = ck_net_debit(s, o->id, &debit_user);
        size_t pb, pe, ub, ue;

        r->checked++;
        if (ck_user_find(s, o->user_id) == NULL) {
                ck_append(why, sizeof(why), "unknown user %lld", (long long) o->user_id);
        }
        ck_range(s->payments, s->n_payments, sizeof(ck_payment), o->id, &pb, &pe);
        if (pe == pb) {
                ck_append(why, sizeof(why), "no payment");
        } else if (pe - pb > 1) {
                ck_append(why, sizeof(why), "%zu payments", pe - pb);
        } else {
                const ck_payment *p = &s->payments[pb];
                if (p->status != CK_PAY_CAPTURED) {
                        ck_append(why, sizeof(why), "payment %s", ck_pay_status_name(p->status));
                }
                if (p->amount != o->amount) {
                        ck_append(why, sizeof(why), "payment of %lld, amount %lld",
                            (long long) p->amount, (long long) o->amount);
                }
                if (p->user_id != o->user_id) {
                        ck_append(why, sizeof(why), "payment of user %lld", (long long) p->user_id);
                }
        }
        if (net != o->amount) {
                ck_append(why, sizeof(why), "net debit %lld, amount %lld", (long long) net,
                    (long long) o->amount);
        }
        if (debit_user != 0 && debit_user != o->user_id) {
                ck_append(why, sizeof(why), "debit of user %lld", (long long) debit_user);
        }
        ck_compare_reservations(s, o, why, sizeof(why));
        ck_range(s->uses, s->n_uses, sizeof(ck_use), o->id, &ub, &ue);
        if (o->coupon_id > 0) {
                if (ue == ub) {
                        ck_append(
                            why, sizeof(why), "coupon %lld not used", (long long) o->coupon_id);
                } else if (ue - ub > 1) {
                        ck_append(why, sizeof(why), "%zu coupons used", ue - ub);
                } else if (s->uses[ub].coupon_id != o->coupon_id
                    || s->uses[ub].user_id != o->user_id) {
                        ck_append(why, sizeof(why), "used coupon %lld of user %lld, order has %lld",
                            (long long) s->uses[ub].coupon_id, (long long) s->uses[ub].user_id,
                            (long long) o->coupon_id);
                }
        } else if (ue > ub) {
                ck_append(why, sizeof(why), "coupon %lld used, the order has none",
                    (long long) s->uses[ub].coupon_id);
        }
        if (why[0] != '\0') {
                ck_violation_id(r, o->id, "order %lld: %s", (long long) o->id, why);
        }
}

/* The reasons an order may be cancelled with (docs/modes.md). */
static bool
ck_known_reason(const char *reason)
{
        static const char *const reasons[]
            = { "out_of_stock", "coupon_invalid", "insufficient_balance", "payment_declined",
                      "timeout", "participant_error", "resolved" };

        for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
                if (strcmp(reason, reasons[i]) == 0) {
                        return true;
                }
        }
        return false;
}

static void
ck_check_cancelled(ck_set *s, const ck_order *o)
{
        ck_result *r = &s->res[CK_INV_CANCELLED];
        char why[CK_WHY_LEN] = "";
        int64_t net = ck_net_debit(s, o->id, NULL);
        bool participant_error = strcmp(o->reason, "participant_error") == 0;
        size_t b, e;

        r->checked++;
        if (!ck_known_reason(o->reason)) {
                ck_append(why, sizeof(why), "unknown reason '%s'", o->reason);
        }
        if (participant_error && !o->failure) {
                ck_append(why, sizeof(why), "participant_error without the branch that failed");
        }
        if (o->failure && !participant_error && strcmp(o->reason, "timeout") != 0) {
                /* Only an error or a missing vote names a branch; a "no" is an answer. */
                ck_append(why, sizeof(why), "a failed branch, but reason '%s'", o->reason);
        }
        if (net != 0) {
                ck_append(why, sizeof(why), "net debit %lld", (long long) net);
        }
        ck_range(s->payments, s->n_payments, sizeof(ck_payment), o->id, &b, &e);
        for (size_t i = b; i < e; i++) {
                ck_pay_status ps = s->payments[i].status;
                if (ps == CK_PAY_CAPTURED || ps == CK_PAY_AUTHORIZED) {
                        ck_append(why, sizeof(why), "%s payment of %lld", ck_pay_status_name(ps),
                            (long long) s->payments[i].amount);
                }
        }
        ck_range(s->resv, s->n_resv, sizeof(ck_resv), o->id, &b, &e);
        for (size_t i = b; i < e; i++) {
                if (ck_holds(s->resv[i].status) || s->resv[i].status == CK_RESV_TRIED) {
                        ck_append(why, sizeof(why), "product %lld: %lld %s",
                            (long long) s->resv[i].product_id, (long long) s->resv[i].quantity,
                            ck_resv_status_name(s->resv[i].status));
                }
        }
        ck_range(s->uses, s->n_uses, sizeof(ck_use), o->id, &b, &e);
        for (size_t i = b; i < e; i++) {
                ck_append(why, sizeof(why), "coupon %lld of user %lld used",
                    (long long) s->uses[i].coupon_id, (long long) s->uses[i].user_id);
        }
        ck_range(s->coupon_holds, s->n_coupon_holds, sizeof(ck_use), o->id, &b, &e);
        for (size_t i = b; i < e; i++) {
                ck_append(why, sizeof(why), "coupon %lld of user %lld held",
                    (long long) s->coupon_holds[i].coupon_id,
                    (long long) s->coupon_holds[i].user_id);
        }
        ck_range(s->holds, s->n_holds, sizeof(ck_hold), o->id, &b, &e);
        for (size_t i = b; i < e; i++) {
                ck_append(why, sizeof(why), "%lld of user %lld frozen",
                    (long long) s->holds[i].amount, (long long) s->holds[i].user_id);
        }
        if (why[0] != '\0') {
                ck_violation_id(r, o->id, "order %lld: %s", (long long) o->id, why);
        }
}

static void
ck_check_orders(ck_set *s)
{
        ck_result *pending = &s->res[CK_INV_PENDING];

        pending->checked = (int64_t) s->n_orders;
        for (size_t i = 0; i < s->n_orders; i++) {
                const ck_order *o = &s->orders[i];

                switch (o->status) {
                case CK_COMPLETED:
                        ck_check_completed(s, o);
                        break;
                case CK_CANCELLED:
                        ck_check_cancelled(s, o);
                        break;
                case CK_PENDING:
                        ck_violation_id(pending, o->id, "order %lld: pending", (long long) o->id);
                        break;
                case CK_OTHER:
                default:
                        ck_violation_id(
                            pending, o->id, "order %lld: unknown status", (long long) o->id);
                        break;
                }
        }
}

/* The state of an order a violation names: "no such order", "completed" or "cancelled". */
static const char *
ck_order_state(const ck_set *s, int64_t order_id)
{
        const ck_order *o = ck_order_find(s, order_id);

        if (o == NULL) {
                return "no such order";
        }
        return o->status == CK_COMPLETED ? "completed" : "cancelled";
}

/* An effect row and the order it names: what an unknown order left behind (CK_ORPHAN_*),
 * or what a TCC try left set aside (CK_ASIDE_*). */
typedef struct ck_effect {
        int64_t order_id;
        unsigned what; /* one bit of the kind; several once merged */
} ck_effect;

/* Sorts list by order, and reports each order once, naming its kinds of effect (names[b]
 * for bit 1 << b, four of them) and its state: "no such order", "completed", ... */
static void
ck_report_effects(
    const ck_set *s, ck_result *r, ck_effect *list, size_t n, const char *const names[4])
{
        ck_sort(list, n, sizeof(ck_effect));
        for (size_t i = 0; i < n;) {
                unsigned what = 0;
                size_t e = i;
                char why[CK_WHY_LEN] = "";
                while (e < n && list[e].order_id == list[i].order_id) {
                        what |= list[e].what;
                        e++;
                }
                for (int b = 0; b < 4; b++) {
                        if (what & (1u << b)) {
                                ck_append(why, sizeof(why), "%s", names[b]);
                        }
                }
                ck_violation_id(r, list[i].order_id, "order %lld (%s): %s",
                    (long long) list[i].order_id, ck_order_state(s, list[i].order_id), why);
                i = e;
        }
}

enum {
        CK_ORPHAN_STOCK = 1u,   /* held/sold reservations */
        CK_ORPHAN_DEBIT = 2u,   /* a net debit */
        CK_ORPHAN_PAYMENT = 4u, /* a captured payment */
        CK_ORPHAN_COUPON = 8u,  /* a used coupon */
};

static const char *const orphan_names[4]
    = { "stock held/sold", "net debit", "captured payment", "used coupon" };

static void
ck_check_orphans(ck_set *s)
{
        ck_result *r = &s->res[CK_INV_ORPHANS];
        size_t cap = s->n_resv + s->n_entries + s->n_payments + s->n_uses;
        ck_effect *list = ck_rows((int) cap, sizeof(ck_effect));
        size_t n = 0;

        r->checked = (int64_t) cap;
        for (size_t i = 0; i < s->n_resv; i++) {
                if (ck_holds(s->resv[i].status) && ck_order_find(s, s->resv[i].order_id) == NULL) {
                        list[n++] = (ck_effect) { s->resv[i].order_id, CK_ORPHAN_STOCK };
                }
        }
        for (size_t i = 0; i < s->n_entries;) {
                int64_t id = s->entries[i].order_id;
                size_t e = i;
                while (e < s->n_entries && s->entries[e].order_id == id) {
                        e++;
                }
                if (ck_net_debit(s, id, NULL) != 0 && ck_order_find(s, id) == NULL) {
                        list[n++] = (ck_effect) { id, CK_ORPHAN_DEBIT };
                }
                i = e;
        }
        for (size_t i = 0; i < s->n_payments; i++) {
                if (s->payments[i].status == CK_PAY_CAPTURED
                    && ck_order_find(s, s->payments[i].order_id) == NULL) {
                        list[n++] = (ck_effect) { s->payments[i].order_id, CK_ORPHAN_PAYMENT };
                }
        }
        for (size_t i = 0; i < s->n_uses; i++) {
                if (ck_order_find(s, s->uses[i].order_id) == NULL) {
                        list[n++] = (ck_effect) { s->uses[i].order_id, CK_ORPHAN_COUPON };
                }
        }
        ck_report_effects(s, r, list, n, orphan_names);
        free(list);
}

static void
ck_check_dataplatform(ck_set *s)
{
        ck_result *r = &s->res[CK_INV_DATAPLATFORM];

        for (size_t i = 0; i < s->n_orders; i++) {
                const ck_order *o = &s->orders[i];
                size_t b, e;

                if (o->status != CK_COMPLETED) {
                        continue;
                }
                r->checked++;
                ck_range(s->records, s->n_records, sizeof(ck_record), o->id, &b, &e);
                if (e == b) {
                        ck_violation_id(
                            r, o->id, "order %lld: completed, no record", (long long) o->id);
                } else if (e - b > 1) {
                        ck_violation_id(
                            r, o->id, "order %lld: %zu records", (long long) o->id, e - b);
                } else if (s->records[b].user_id != o->user_id
                    || s->records[b].amount != o->amount) {
                        ck_violation_id(r, o->id,
                            "order %lld: recorded user %lld amount %lld, order user %lld amount "
                            "%lld",
                            (long long) o->id, (long long) s->records[b].user_id,
                            (long long) s->records[b].amount, (long long) o->user_id,
                            (long long) o->amount);
                }
        }
        for (size_t i = 0; i < s->n_records;) {
                int64_t id = s->records[i].order_id;
                const ck_order *o = ck_order_find(s, id);
                size_t e = i;

                while (e < s->n_records && s->records[e].order_id == id) {
                        e++;
                }
                if (o == NULL) {
                        r->checked++;
                        ck_violation_id(
                            r, id, "order %lld: recorded, no such order", (long long) id);
                } else if (o->status == CK_CANCELLED) {
                        r->checked++;
                        ck_violation_id(
                            r, id, "order %lld: recorded, but cancelled", (long long) id);
                }
                i = e;
        }
}

/* Whether nothing may stay set aside for an order any more: it ended, or it is unknown. */
static bool
ck_settled(const ck_set *s, int64_t order_id)
{
        const ck_order *o = ck_order_find(s, order_id);

        return o == NULL || o->status == CK_COMPLETED || o->status == CK_CANCELLED;
}

enum {
        CK_ASIDE_STOCK = 1u,   /* a tried reservation */
        CK_ASIDE_BALANCE = 2u, /* a frozen balance hold */
        CK_ASIDE_PAYMENT = 4u, /* an authorized payment */
        CK_ASIDE_COUPON = 8u,  /* a held coupon */
};

static const char *const aside_names[4]
    = { "stock tried", "balance frozen", "payment authorized", "coupon held" };

/* Per product, held = its tried reservations; stock tried for an unknown product fails. */
static void
ck_check_held(ck_set *s, ck_result *r)
{
        for (size_t i = 0; i < s->n_resv; i++) {
                const ck_resv *rv = &s->resv[i];
                ck_product *p;

                if (rv->status != CK_RESV_TRIED) {
                        continue;
                }
                p = (ck_product *) ck_find(
                    s->products, s->n_products, sizeof(ck_product), rv->product_id);
                if (p == NULL) {
                        ck_violation_id(r, rv->product_id,
                            "product %lld: %lld tried by order %lld, but no such product",
                            (long long) rv->product_id, (long long) rv->quantity,
                            (long long) rv->order_id);
                } else {
                        p->tried += rv->quantity;
                }
        }
        for (size_t i = 0; i < s->n_products; i++) {
                const ck_product *p = &s->products[i];
                if (p->held != p->tried) {
                        ck_violation_id(r, p->id,
                            "product %lld: held %lld, tried reservations %lld", (long long) p->id,
                            (long long) p->held, (long long) p->tried);
                }
        }
}

/* Per user, frozen = its frozen balance holds. */
static void
ck_check_frozen(ck_set *s, ck_result *r)
{
        for (size_t i = 0; i < s->n_holds; i++) {
                const ck_hold *h = &s->holds[i];
                ck_user *u = ck_user_find(s, h->user_id);

                if (u == NULL) {
                        ck_violation_id(r, h->user_id,
                            "user %lld: %lld frozen for order %lld, but no such user",
                            (long long) h->user_id, (long long) h->amount, (long long) h->order_id);
                } else {
                        u->holds += h->amount;
                }
        }
        for (size_t i = 0; i < s->n_users; i++) {
                const ck_user *u = &s->users[i];
                if (u->frozen != u->holds) {
                        ck_violation_id(r, u->id, "user %lld: frozen %lld, frozen holds %lld",
                            (long long) u->id, (long long) u->frozen, (long long) u->holds);
                }
        }
}

/* Nothing set aside for an order that ended or that the order database does not know. */
static void
ck_check_aside(const ck_set *s, ck_result *r)
{
        size_t cap = s->n_resv + s->n_holds + s->n_payments + s->n_coupon_holds;
        ck_effect *list = ck_rows((int) cap, sizeof(ck_effect));
        size_t n = 0;

        for (size_t i = 0; i < s->n_resv; i++) {
                if (s->resv[i].status == CK_RESV_TRIED && ck_settled(s, s->resv[i].order_id)) {
                        list[n++] = (ck_effect) { s->resv[i].order_id, CK_ASIDE_STOCK };
                }
        }
        for (size_t i = 0; i < s->n_holds; i++) {
                if (ck_settled(s, s->holds[i].order_id)) {
                        list[n++] = (ck_effect) { s->holds[i].order_id, CK_ASIDE_BALANCE };
                }
        }
        for (size_t i = 0; i < s->n_payments; i++) {
                if (s->payments[i].status == CK_PAY_AUTHORIZED
                    && ck_settled(s, s->payments[i].order_id)) {
                        list[n++] = (ck_effect) { s->payments[i].order_id, CK_ASIDE_PAYMENT };
                }
        }
        for (size_t i = 0; i < s->n_coupon_holds; i++) {
                if (ck_settled(s, s->coupon_holds[i].order_id)) {
                        list[n++] = (ck_effect) { s->coupon_holds[i].order_id, CK_ASIDE_COUPON };
                }
        }
        ck_report_effects(s, r, list, n, aside_names);
        free(list);
}

/* What TCC tries set aside returns to zero once every order has ended. */
static void
ck_check_tcc(ck_set *s)
{
        ck_result *r = &s->res[CK_INV_TCC];
        int64_t tried = 0, authorized = 0;

        for (size_t i = 0; i < s->n_resv; i++) {
                tried += s->resv[i].status == CK_RESV_TRIED;
        }
        for (size_t i = 0; i < s->n_payments; i++) {
                authorized += s->payments[i].status == CK_PAY_AUTHORIZED;
        }
        r->checked = (int64_t) (s->n_products + s->n_users + s->n_holds + s->n_coupon_holds) + tried
            + authorized;
        ck_check_held(s, r);
        ck_check_frozen(s, r);
        ck_check_aside(s, r);
}

static const char *
ck_saga_state_name(ck_saga_state st)
{
        static const char *const names[] = { "in an unknown state", "forward", "backward",
                "confirming", "completed", "cancelled" };

        return names[st];
}

/* No orchestrated saga or TCC transaction in flight for an ended order, and none ended
 * otherwise than its order (the two end in one transaction, orch_tx.c). */
static void
ck_check_unfinished(ck_set *s)
{
        ck_result *r = &s->res[CK_INV_UNFINISHED];

        r->checked = (int64_t) s->n_sagas;
        for (size_t i = 0; i < s->n_sagas; i++) {
                const ck_saga *g = &s->sagas[i];
                const ck_order *o = ck_order_find(s, g->order_id);
                const char *state = ck_saga_state_name(g->state);
                bool ended = g->state == CK_SAGA_COMPLETED || g->state == CK_SAGA_CANCELLED;

                if (o == NULL) {
                        ck_violation_id(r, g->order_id, "order %lld: no such order, saga %s",
                            (long long) g->order_id, state);
                } else if (g->state == CK_SAGA_OTHER) {
                        ck_violation_id(r, o->id, "order %lld: saga %s", (long long) o->id, state);
                } else if (o->status == CK_PENDING) {
                        if (ended) {
                                ck_violation_id(r, o->id, "order %lld: pending, saga %s",
                                    (long long) o->id, state);
                        }
                } else if (o->status == CK_OTHER) {
                        continue; /* the pending orders line names it */
                } else if (!ended) {
                        ck_violation_id(r, o->id, "order %lld: %s, saga still %s",
                            (long long) o->id, ck_order_state(s, o->id), state);
                } else if ((o->status == CK_COMPLETED) != (g->state == CK_SAGA_COMPLETED)) {
                        ck_violation_id(r, o->id, "order %lld: %s, saga %s", (long long) o->id,
                            ck_order_state(s, o->id), state);
                }
        }
}

/* Appends "label N" to a per-database note. */
static void
ck_note_db(char *note, size_t len, const char *label, int64_t n)
{
        size_t used = strlen(note);

        snprintf(note + used, len - used, "%s%s %lld", used > 0 ? ", " : "", label, (long long) n);
}

/* Everything ends: prepared transactions, the outbox, dead letters, the 2pc log. */
static rpc_status
ck_check_txn(ck_ctx *x, ck_set *s)
{
        ck_result *prep = &s->res[CK_INV_PREPARED];
        ck_result *outbox = &s->res[CK_INV_OUTBOX];
        ck_result *dead = &s->res[CK_INV_DEAD];
        ck_result *tpc = &s->res[CK_INV_TPC];
        char no_txn[CK_NOTE_LEN] = "";
        char stuck_note[CK_NOTE_LEN] = "";
        char prep_note[CK_NOTE_LEN] = "";
        bool any_tpc = false;
        rpc_status st;

        for (size_t k = 0; k < s->n_dbs; k++) {
                ck_db *d = &s->dbs[k];
                DB_RES_CLEANUP PGresult *res = NULL;

                st = ck_exec(x, s, d, "check_prepared", NULL, &res);
                if (st != RPC_OK) {
                        return st;
                }
                d->prepared = db_rows(res);
                prep->checked += d->prepared;
                for (int i = 0; i < db_rows(res); i++) {
                        ck_violation(prep, db_get_str(res, i, 0),
                            "%s: prepared transaction '%s', %lld s old", d->label,
                            db_get_str(res, i, 0), (long long) db_get_i64(res, i, 1));
                }
                if (d->prepared > 0) {
                        ck_note_db(prep_note, sizeof(prep_note), d->label, d->prepared);
                }
                if (!d->has_txn) {
                        size_t used = strlen(no_txn);
                        snprintf(no_txn + used, sizeof(no_txn) - used, "%s%s", used > 0 ? ", " : "",
                            d->label);
                } else {
                        DB_RES_CLEANUP PGresult *counts = NULL;
                        DB_RES_CLEANUP PGresult *stuck = NULL;
                        DB_RES_CLEANUP PGresult *letters = NULL;

                        st = ck_exec(x, s, d, "check_outbox_counts", NULL, &counts);
                        if (st != RPC_OK) {
                                return st;
                        }
                        outbox->checked += db_get_i64(counts, 0, 0);
                        d->stuck = db_get_i64(counts, 0, 1);
                        d->dead = db_get_i64(counts, 0, 2);
                        dead->checked += d->dead;
                        if (d->stuck > 0) {
                                st = ck_exec(x, s, d, "check_outbox_stuck", NULL, &stuck);
                                if (st != RPC_OK) {
                                        return st;
                                }
                                for (int i = 0; i < db_rows(stuck); i++) {
                                        ck_violation(outbox, db_get_str(stuck, i, 0),
                                            "%s: event %s (%s from %s, aggregate %lld): %lld "
                                            "deliveries pending",
                                            d->label, db_get_str(stuck, i, 0),
                                            db_get_str(stuck, i, 2), db_get_str(stuck, i, 1),
                                            (long long) db_get_i64(stuck, i, 3),
                                            (long long) db_get_i64(stuck, i, 4));
                                }
                                /* Only the first CK_MAX_IDS were listed; count the rest. */
                                outbox->violations += d->stuck - db_rows(stuck);
                                ck_note_db(stuck_note, sizeof(stuck_note), d->label, d->stuck);
                        }
                        if (d->dead > 0) {
                                st = ck_exec(x, s, d, "check_dead_letters", NULL, &letters);
                                if (st != RPC_OK) {
                                        return st;
                                }
                                for (int i = 0; i < db_rows(letters); i++) {
                                        ck_violation(dead, db_get_str(letters, i, 0),
                                            "%s: event %s (%s) to %s, %lld attempts: %s", d->label,
                                            db_get_str(letters, i, 0), db_get_str(letters, i, 2),
                                            db_get_str(letters, i, 1),
                                            (long long) db_get_i64(letters, i, 3),
                                            db_get_str(letters, i, 4));
                                }
                                dead->violations += d->dead - db_rows(letters);
                        }
                        ck_note_db(dead->note, sizeof(dead->note), d->label, d->dead);
                }
                if (d->has_tpc) {
                        DB_RES_CLEANUP PGresult *counts = NULL;
                        DB_RES_CLEANUP PGresult *open = NULL;

                        any_tpc = true;
                        st = ck_exec(x, s, d, "check_tpc_counts", NULL, &counts);
                        if (st != RPC_OK) {
                                return st;
                        }
                        tpc->checked += db_get_i64(counts, 0, 0);
                        d->tpc_open = db_get_i64(counts, 0, 1);
                        if (d->tpc_open > 0) {
                                st = ck_exec(x, s, d, "check_tpc_open", NULL, &open);
                                if (st != RPC_OK) {
                                        return st;
                                }
                                for (int i = 0; i < db_rows(open); i++) {
                                        ck_violation(tpc, db_get_str(open, i, 0),
                                            "%s: global transaction '%s' (order %lld) %s, not done",
                                            d->label, db_get_str(open, i, 0),
                                            (long long) db_get_i64(open, i, 2),
                                            db_get_str(open, i, 1));
                                }
                                tpc->violations += d->tpc_open - db_rows(open);
                        }
                }
        }
        if (prep_note[0] != '\0') {
                snprintf(prep->note, sizeof(prep->note), "%s", prep_note);
        } else {
                snprintf(prep->note, sizeof(prep->note), "none in %zu database%s", s->n_dbs,
                    s->n_dbs == 1 ? "" : "s");
        }
        if (stuck_note[0] != '\0') {
                snprintf(outbox->note, sizeof(outbox->note), "%s", stuck_note);
        }
        if (no_txn[0] != '\0') {
                size_t used = strlen(outbox->note);
                snprintf(outbox->note + used, sizeof(outbox->note) - used, "%sno txn tables: %s",
                    used > 0 ? "; " : "", no_txn);
        }
        if (!any_tpc) {
                snprintf(tpc->note, sizeof(tpc->note), "no 2pc log in this dataset");
        }
        return RPC_OK;
}

/* Connects to every database of a dataset. */
static rpc_status
ck_open(ck_ctx *x, ck_set *s)
{
        for (size_t i = 0; i < s->n_dbs; i++) {
                rpc_status st = ck_connect(x, s, &s->dbs[i]);
                if (st != RPC_OK) {
                        return st;
                }
        }
        return RPC_OK;
}

/* Loads a dataset and checks every invariant. */
static rpc_status
ck_run_set(ck_ctx *x, ck_set *s)
{
        rpc_status st;

        st = ck_load(x, s);
        if (st != RPC_OK) {
                return st;
        }
        ck_compute_reserved(s);
        ck_compute_spent(s);
        ck_check_stock(x, s);
        ck_check_money(x, s);
        ck_check_refunds(s);
        ck_check_orders(s);
        ck_check_orphans(s);
        ck_check_dataplatform(s);
        ck_check_tcc(s);
        ck_check_unfinished(s);
        return ck_check_txn(x, s);
}

/*
 * The baseline
 */

static json_t *
ck_baseline_json(const ck_set *s)
{
        json_t *products = json_array();
        json_t *users = json_array();

        for (size_t i = 0; i < s->n_products; i++) {
                const ck_product *p = &s->products[i];
                json_array_append_new(products,
                    json_pack("[I, I, I]", (json_int_t) p->id, (json_int_t) p->stock,
                        (json_int_t) p->reserved));
        }
        for (size_t i = 0; i < s->n_users; i++) {
                const ck_user *u = &s->users[i];
                json_array_append_new(users,
                    json_pack("[I, I, I, I]", (json_int_t) u->id, (json_int_t) u->balance,
                        (json_int_t) u->charges, (json_int_t) u->spent));
        }
        return json_pack("{s:I, s:s, s:s, s:o, s:o}", "ledger_max_id",
            (json_int_t) s->ledger_max_id, "products_columns", "id stock reserved", "users_columns",
            "id balance charges spent", "products", products, "users", users);
}

/* Reads row i of a baseline array: n integers. */
static bool
ck_json_row(const json_t *arr, size_t i, size_t n, int64_t *ret)
{
        const json_t *row = json_array_get(arr, i);

        if (!json_is_array(row) || json_array_size(row) != n) {
                return false;
        }
        for (size_t k = 0; k < n; k++) {
                const json_t *v = json_array_get(row, k);
                if (!json_is_integer(v)) {
                        return false;
                }
                ret[k] = (int64_t) json_integer_value(v);
        }
        return true;
}

/* Parses one dataset of a baseline file into *b. */
static bool
ck_baseline_parse(const json_t *ds, ck_base *b)
{
        const json_t *max = json_object_get(ds, "ledger_max_id");
        const json_t *products = json_object_get(ds, "products");
        const json_t *users = json_object_get(ds, "users");
        int64_t row[4];

        if (!json_is_integer(max) || !json_is_array(products) || !json_is_array(users)) {
                return false;
        }
        b->ledger_max_id = (int64_t) json_integer_value(max);
        b->n_products = json_array_size(products);
        b->products = ck_rows((int) b->n_products, sizeof(ck_base_product));
        for (size_t i = 0; i < b->n_products; i++) {
                if (!ck_json_row(products, i, 3, row)) {
                        return false;
                }
                b->products[i] = (ck_base_product) { row[0], row[1], row[2] };
        }
        b->n_users = json_array_size(users);
        b->users = ck_rows((int) b->n_users, sizeof(ck_base_user));
        for (size_t i = 0; i < b->n_users; i++) {
                if (!ck_json_row(users, i, 4, row)) {
                        return false;
                }
                b->users[i] = (ck_base_user) { row[0], row[1], row[2], row[3] };
        }
        ck_sort(b->products, b->n_products, sizeof(ck_base_product));
        ck_sort(b->users, b->n_users, sizeof(ck_base_user));
        return true;
}

/* Loads --baseline FILE for the datasets checked. Returns an exit code. */
static int
ck_baseline_load(ck_ctx *x, const bool want[2])
{
        static const char *const names[2] = { "split", "monolith" };
        json_error_t jerr;
        json_t *root = json_load_file(x->baseline_path, 0, &jerr);
        const json_t *datasets;
        int rc = CLI_EXIT_OK;

        if (root == NULL) {
                return cli_usage_error(
                    "cannot read the baseline %s: %s", x->baseline_path, jerr.text);
        }
        datasets = json_object_get(root, "datasets");
        if (!json_is_string(json_object_get(root, "format"))
            || strcmp(json_string_value(json_object_get(root, "format")), CK_BASELINE_FORMAT) != 0
            || json_integer_value(json_object_get(root, "version")) != CK_BASELINE_VERSION
            || !json_is_object(datasets)) {
                json_decref(root);
                return cli_usage_error(
                    "%s is not a baseline of `mercato check --record-baseline`", x->baseline_path);
        }
        for (int i = 0; i < 2 && rc == CLI_EXIT_OK; i++) {
                const json_t *ds;
                if (!want[i]) {
                        continue;
                }
                ds = json_object_get(datasets, names[i]);
                if (ds == NULL) {
                        rc = cli_usage_error("the baseline %s has no %s dataset (record it with "
                                             "--dataset %s or all)",
                            x->baseline_path, names[i], names[i]);
                } else if (!ck_baseline_parse(ds, &x->bases[i])) {
                        rc = cli_usage_error(
                            "the baseline %s: bad %s dataset", x->baseline_path, names[i]);
                } else {
                        x->has_base[i] = true;
                }
        }
        json_decref(root);
        return rc;
}

/* Writes the baseline of the loaded datasets to FILE (through FILE.tmp and a rename). */
static int
ck_baseline_write(ck_ctx *x, ck_set *sets, size_t n)
{
        json_t *datasets = json_object();
        json_t *root;
        char tmp[4096];
        char when[64];
        time_t now = time(NULL);
        struct tm tm;

        for (size_t i = 0; i < n; i++) {
                json_object_set_new(datasets, sets[i].name, ck_baseline_json(&sets[i]));
        }
        gmtime_r(&now, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        root = json_pack("{s:s, s:i, s:s, s:o}", "format", CK_BASELINE_FORMAT, "version",
            CK_BASELINE_VERSION, "recorded_at", when, "datasets", datasets);
        snprintf(tmp, sizeof(tmp), "%s.tmp", x->record_path);
        if (json_dump_file(root, tmp, JSON_COMPACT) != 0 || rename(tmp, x->record_path) != 0) {
                cli_error(RPC_INTERNAL, "cannot write the baseline %s: %s", x->record_path,
                    strerror(errno));
                remove(tmp);
                json_decref(root);
                return CLI_EXIT_SERVER;
        }
        if (x->c->json) {
                json_t *out = json_object();
                json_object_set_new(out, "baseline", json_string(x->record_path));
                json_object_set_new(out, "recorded_at", json_string(when));
                for (size_t i = 0; i < n; i++) {
                        json_object_set_new(out, sets[i].name,
                            json_pack("{s:I, s:I, s:I}", "products",
                                (json_int_t) sets[i].n_products, "users",
                                (json_int_t) sets[i].n_users, "ledger_max_id",
                                (json_int_t) sets[i].ledger_max_id));
                }
                cli_print_json(out);
                json_decref(out);
        } else {
                for (size_t i = 0; i < n; i++) {
                        printf("baseline  %-8s  %zu products, %zu users, ledger up to id %lld\n",
                            sets[i].name, sets[i].n_products, sets[i].n_users,
                            (long long) sets[i].ledger_max_id);
                }
                printf("baseline written to %s\n", x->record_path);
        }
        json_decref(root);
        return CLI_EXIT_OK;
}

/*
 * Output
 */

static void
ck_print_text(const ck_set *s)
{
        for (int i = 0; i < CK_N_INV; i++) {
                const ck_result *r = &s->res[i];
                bool fail = r->violations > 0;

                printf("%s  %-8s  %-21s  %lld", fail ? "FAIL" : "PASS", s->name, ck_inv_names[i],
                    (long long) (fail ? r->violations : r->checked));
                if (r->n_ids > 0) {
                        printf("  ids:");
                        for (int k = 0; k < r->n_ids; k++) {
                                printf(" %s", r->ids[k]);
                        }
                        if (r->violations > r->n_ids) {
                                printf(" ...");
                        }
                }
                if (r->note[0] != '\0') {
                        printf("  (%s)", r->note);
                }
                putchar('\n');
                for (int k = 0; k < r->n_ids; k++) {
                        printf("      %s\n", r->why[k]);
                }
        }
}

static json_t *
ck_result_json(const ck_set *s, int inv)
{
        const ck_result *r = &s->res[inv];
        bool fail = r->violations > 0;
        json_t *ids = json_array();
        json_t *why = json_array();
        json_t *o;

        for (int k = 0; k < r->n_ids; k++) {
                if (ck_numeric_ids((ck_inv) inv)) {
                        json_array_append_new(ids, json_integer(strtoll(r->ids[k], NULL, 10)));
                } else {
                        json_array_append_new(ids, json_string(r->ids[k]));
                }
                json_array_append_new(why, json_string(r->why[k]));
        }
        o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:o}", "dataset", s->name, "name",
            ck_inv_names[inv], "status", fail ? "FAIL" : "PASS", "count",
            (json_int_t) (fail ? r->violations : r->checked), "checked", (json_int_t) r->checked,
            "violations", (json_int_t) r->violations, "ids", ids, "details", why);
        if (r->note[0] != '\0') {
                json_object_set_new(o, "note", json_string(r->note));
        }
        return o;
}

static void
ck_print_json(const ck_ctx *x, const ck_set *sets, size_t n, bool ok)
{
        json_t *invariants = json_array();
        json_t *dead = json_object();
        json_t *names = json_array();
        json_t *out;

        for (size_t i = 0; i < n; i++) {
                json_t *per_db = json_object();
                json_array_append_new(names, json_string(sets[i].name));
                for (int k = 0; k < CK_N_INV; k++) {
                        json_array_append_new(invariants, ck_result_json(&sets[i], k));
                }
                for (size_t k = 0; k < sets[i].n_dbs; k++) {
                        if (sets[i].dbs[k].has_txn) {
                                json_object_set_new(per_db, sets[i].dbs[k].label,
                                    json_integer(sets[i].dbs[k].dead));
                        }
                }
                json_object_set_new(dead, sets[i].name, per_db);
        }
        out = json_pack("{s:b, s:o, s:o, s:o}", "ok", ok, "datasets", names, "invariants",
            invariants, "dead_letters", dead);
        json_object_set_new(out, "baseline",
            x->baseline_path != NULL ? json_string(x->baseline_path) : json_null());
        cli_print_json(out);
        json_decref(out);
}

/*
 * The command
 */

const cli_opt cli_check_opts[] = {
        { "dataset", "WHICH", "split (each service's database), monolith, or all (default)" },
        { "initial-stock", "N", "every product started with N in stock" },
        { "initial-balance", "N", "every user started with a balance of N" },
        { "baseline", "FILE", "check against a baseline from --record-baseline" },
        { "record-baseline", "FILE",
            "record each product's stock and each user's balance and\n"
            "                         charges into FILE (right after seeding); checks nothing" },
        { NULL, NULL, NULL },
};

const char cli_check_help[]
    = "Connects directly to every database named in the topology file ([product] db, ...,\n"
      "[monolith] db), reads them in read-only snapshots and checks, once the system is\n"
      "quiet, every invariant of docs/consistency.md. One line per invariant:\n"
      "  PASS|FAIL  DATASET  NAME  COUNT  [ids: up to 10 offending ids]  [(note)]\n"
      "COUNT is the number of rows checked on a PASS, of violations on a FAIL; each FAIL line\n"
      "is followed by what is wrong with each id listed. The invariants: stock, balance,\n"
      "ledger, refunds, completed orders, cancelled orders, pending orders, orphans,\n"
      "dataplatform, prepared transactions, outbox, dead letters, 2pc log, tcc holds,\n"
      "unfinished.\n"
      "\n"
      "The initial stock comes from --baseline, else --initial-stock; without either it is\n"
      "derived (stock + held/sold) and only stock >= 0 is checked, as the line says. Record a\n"
      "baseline right after `mercato seed` with --record-baseline FILE.\n"
      "\n"
      "Exit status: 0 every invariant holds, 1 one fails (or a database error), 2 usage\n"
      "error, 3 a database cannot be reached.\n";

/* The exit code of a failed connection or query. */
static int
ck_error_exit(const ck_ctx *x, rpc_status st)
{
        cli_error(st, "%s", x->err);
        return st == RPC_UNAVAILABLE ? CLI_EXIT_UNREACHABLE : CLI_EXIT_SERVER;
}

int
cli_check_run(cli *c, const cli_args *a)
{
        static const char *const names[2] = { "split", "monolith" };
        ck_ctx *x = rpc_xcalloc(1, sizeof(*x));
        ck_set *sets = rpc_xcalloc(2, sizeof(*sets));
        bool want[2] = { true, true };
        size_t n_sets = 0;
        bool ok = true;
        int rc = CLI_EXIT_OK;

        x->c = c;
        if (cli_opt_i64(a, 1, "initial-stock", 0, INT64_MAX / 4, &x->initial_stock) != CLI_EXIT_OK
            || cli_opt_i64(a, 2, "initial-balance", 0, INT64_MAX / 4, &x->initial_balance)
                != CLI_EXIT_OK) {
                rc = CLI_EXIT_USAGE;
                goto out;
        }
        x->has_initial_stock = a->opt[1] != NULL;
        x->has_initial_balance = a->opt[2] != NULL;
        x->baseline_path = a->opt[3];
        x->record_path = a->opt[4];
        if (x->baseline_path != NULL && (x->has_initial_stock || x->has_initial_balance)) {
                rc = cli_usage_error("--baseline excludes --initial-stock and --initial-balance");
                goto out;
        }
        if (x->record_path != NULL
            && (x->baseline_path != NULL || x->has_initial_stock || x->has_initial_balance)) {
                rc = cli_usage_error("--record-baseline checks nothing: it takes no --baseline, "
                                     "--initial-stock or --initial-balance");
                goto out;
        }
        /* `mercato --dataset monolith check` means `mercato check --dataset monolith`. */
        const char *dataset = a->opt[0] != NULL ? a->opt[0] : c->dataset;
        if (dataset != NULL) {
                want[0] = strcmp(dataset, "split") == 0 || strcmp(dataset, "all") == 0;
                want[1] = strcmp(dataset, "monolith") == 0 || strcmp(dataset, "all") == 0;
                if (!want[0] && !want[1]) {
                        rc = cli_usage_error(
                            "--dataset must be split, monolith or all, not '%s'", dataset);
                        goto out;
                }
        }
        /* Every database named before anything is touched. */
        for (int r = 0; r < CK_N_ROLES && want[0]; r++) {
                if (rpc_conf_get(c->conf, ck_role_names[r], "db") == NULL) {
                        char why[512];
                        cli_conf_missing(c, ck_role_names[r], "db", why, sizeof(why));
                        rc = cli_usage_error("%s", why);
                        goto out;
                }
        }
        if (want[1] && rpc_conf_get(c->conf, "monolith", "db") == NULL) {
                char why[512];
                cli_conf_missing(c, "monolith", "db", why, sizeof(why));
                rc = cli_usage_error("%s", why);
                goto out;
        }
        if (x->baseline_path != NULL) {
                rc = ck_baseline_load(x, want);
                if (rc != CLI_EXIT_OK) {
                        goto out;
                }
        }
        for (int i = 0; i < 2; i++) {
                const char *conninfo[CK_N_ROLES];
                if (!want[i]) {
                        continue;
                }
                for (int r = 0; r < CK_N_ROLES; r++) {
                        conninfo[r] = i == 0 ? rpc_conf_get(c->conf, ck_role_names[r], "db")
                                             : rpc_conf_get(c->conf, "monolith", "db");
                }
                ck_set_init(&sets[n_sets], names[i], conninfo);
                sets[n_sets].base = x->has_base[i] ? &x->bases[i] : NULL;
                n_sets++;
        }
        /* Every database reachable before anything is judged. */
        for (size_t i = 0; i < n_sets; i++) {
                rpc_status st = ck_open(x, &sets[i]);
                if (st != RPC_OK) {
                        rc = ck_error_exit(x, st);
                        goto out;
                }
        }
        if (x->record_path != NULL) {
                for (size_t i = 0; i < n_sets; i++) {
                        rpc_status st = ck_load(x, &sets[i]);
                        if (st != RPC_OK) {
                                rc = ck_error_exit(x, st);
                                goto out;
                        }
                        ck_compute_reserved(&sets[i]);
                        ck_compute_spent(&sets[i]);
                }
                rc = ck_baseline_write(x, sets, n_sets);
                goto out;
        }
        for (size_t i = 0; i < n_sets; i++) {
                rpc_status st = ck_run_set(x, &sets[i]);
                if (st != RPC_OK) {
                        rc = ck_error_exit(x, st);
                        goto out;
                }
                for (int k = 0; k < CK_N_INV; k++) {
                        if (sets[i].res[k].violations > 0) {
                                ok = false;
                        }
                }
        }
        if (c->json) {
                ck_print_json(x, sets, n_sets, ok);
        } else {
                for (size_t i = 0; i < n_sets; i++) {
                        ck_print_text(&sets[i]);
                }
        }
        rc = ok ? CLI_EXIT_OK : CLI_EXIT_SERVER;
out:
        for (size_t i = 0; i < n_sets; i++) {
                ck_set_fini(&sets[i]);
        }
        for (int i = 0; i < 2; i++) {
                free(x->bases[i].products);
                free(x->bases[i].users);
        }
        free(sets);
        free(x);
        return rc;
}
