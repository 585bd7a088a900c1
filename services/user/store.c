/* store.c: the user service's SQL: balances and their ledger, coupons, seeding. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user_store.h"

/* How many times a function that owns its transaction runs it when it aborts. */
#define USER_TX_ATTEMPTS 3

static const db_stmt user_stmt_list[] = {
        { "user_get_balance", "SELECT balance, frozen FROM users WHERE id = $1", 1 },
        { "user_check",
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1),"
            " $2::bigint = 0 OR EXISTS (SELECT 1 FROM coupons WHERE id = $2)",
            2 },
        /* One statement: the balance and its ledger row change together, also outside a
         * transaction. No row: no such user. An overflow fails with 22003. */
        { "user_charge",
            "WITH u AS (UPDATE users SET balance = balance + $2 WHERE id = $1 RETURNING id, "
            "balance)"
            " INSERT INTO ledger (user_id, kind, amount, idempotency_key)"
            " SELECT id, 'charge', $2, $3 FROM u RETURNING id, (SELECT balance FROM u)",
            3 },
        /* The charge a key already made, and the balance now. */
        { "user_charge_by_key",
            "SELECT l.id, l.user_id, l.amount, u.balance FROM ledger l JOIN users u ON u.id = "
            "l.user_id"
            " WHERE l.idempotency_key = $1",
            1 },
        { "user_coupon_exists", "SELECT 1 FROM coupons WHERE id = $1", 1 },
        /* Issuing: the holding first (the primary key decides who holds it), then one of
         * the quantity. */
        { "user_coupon_hold",
            "INSERT INTO user_coupons (user_id, coupon_id) VALUES ($1, $2)"
            " ON CONFLICT (user_id, coupon_id) DO NOTHING",
            2 },
        { "user_coupon_take",
            "UPDATE coupons SET issued = issued + 1 WHERE id = $1 AND issued < quantity", 1 },
        { "user_coupon_get",
            "SELECT uc.user_id, c.id, c.name, c.kind, c.value, c.quantity, c.issued,"
            " coalesce(uc.used_order_id, 0),"
            " (extract(epoch FROM uc.issued_at) * 1000)::bigint"
            " FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id"
            " WHERE uc.user_id = $1 AND uc.coupon_id = $2",
            2 },
        { "user_coupon_list",
            "SELECT uc.user_id, c.id, c.name, c.kind, c.value, c.quantity, c.issued,"
            " coalesce(uc.used_order_id, 0),"
            " (extract(epoch FROM uc.issued_at) * 1000)::bigint"
            " FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id"
            " WHERE uc.user_id = $1 ORDER BY c.id",
            1 },
        { "user_exists", "SELECT 1 FROM users WHERE id = $1", 1 },
        /* Using a coupon: unused, or already used by this very order (a repeated step). */
        { "user_coupon_use",
            "UPDATE user_coupons uc SET used_order_id = $3 FROM coupons c"
            " WHERE uc.user_id = $1 AND uc.coupon_id = $2 AND c.id = uc.coupon_id"
            " AND (uc.used_order_id IS NULL OR uc.used_order_id = $3) AND uc.held_order_id IS NULL"
            " RETURNING c.kind, c.value",
            3 },
        /* A TCC try: the coupon held by the order, if it is unused and not held by another. */
        { "user_coupon_try",
            "UPDATE user_coupons uc SET held_order_id = $3 FROM coupons c"
            " WHERE uc.user_id = $1 AND uc.coupon_id = $2 AND c.id = uc.coupon_id"
            " AND uc.used_order_id IS NULL AND (uc.held_order_id IS NULL OR uc.held_order_id = $3)"
            " RETURNING c.kind, c.value",
            3 },
        /* The confirm uses the coupon the try held; the cancel lets it go. */
        { "user_coupon_confirm",
            "UPDATE user_coupons SET used_order_id = held_order_id, held_order_id = NULL"
            " WHERE held_order_id = $1",
            1 },
        { "user_coupon_cancel",
            "UPDATE user_coupons SET held_order_id = NULL WHERE held_order_id = $1", 1 },
        /* A TCC try: the hold row first (its key makes a repeat wait, then do nothing), then
         * the freeze if enough is available. $1 user, $2 amount, $3 order, $4 discount. */
        { "user_freeze_hold",
            "INSERT INTO balance_holds (order_id, user_id, amount, discount, status)"
            " VALUES ($3, $1, $2, $4, 'frozen') ON CONFLICT (order_id) DO NOTHING",
            4 },
        { "user_freeze",
            "UPDATE users SET frozen = frozen + $2 WHERE id = $1 AND balance - frozen >= $2", 2 },
        /* The confirm: the frozen amount spent (the ledger's debit follows); the cancel: it
         * is available again. Each returns the user and amount, no row when nothing is
         * frozen for the order. */
        { "user_freeze_confirm",
            "WITH h AS (UPDATE balance_holds SET status = 'confirmed', updated_at = now()"
            " WHERE order_id = $1 AND status = 'frozen' RETURNING user_id, amount)"
            " UPDATE users u SET balance = u.balance - h.amount, frozen = u.frozen - h.amount"
            " FROM h WHERE u.id = h.user_id RETURNING u.id, h.amount",
            1 },
        { "user_freeze_cancel",
            "WITH h AS (UPDATE balance_holds SET status = 'cancelled', updated_at = now()"
            " WHERE order_id = $1 AND status = 'frozen' RETURNING user_id, amount)"
            " UPDATE users u SET frozen = u.frozen - h.amount"
            " FROM h WHERE u.id = h.user_id RETURNING u.id, h.amount",
            1 },
        { "user_coupon_restore",
            "UPDATE user_coupons SET used_order_id = NULL WHERE used_order_id = $1", 1 },
        /* Debiting: the ledger row first (its unique key makes a repeated debit a no-op,
         * and a concurrent one wait for the first), then the conditional update. */
        { "user_debit_ledger",
            "INSERT INTO ledger (user_id, kind, amount, order_id) VALUES ($1, 'debit', $2, $3)"
            " ON CONFLICT (order_id, kind) WHERE order_id IS NOT NULL DO NOTHING",
            3 },
        { "user_debit",
            "UPDATE users SET balance = balance - $2 WHERE id = $1 AND balance - frozen >= $2", 2 },
        /* One statement: the refund row exists once per order, and only its insert moves
         * money. */
        { "user_refund",
            "WITH d AS (SELECT user_id, amount FROM ledger WHERE order_id = $1 AND kind = 'debit'),"
            " r AS (INSERT INTO ledger (user_id, kind, amount, order_id)"
            "  SELECT user_id, 'refund', amount, $1 FROM d"
            "  ON CONFLICT (order_id, kind) WHERE order_id IS NOT NULL DO NOTHING"
            "  RETURNING user_id, amount)"
            " UPDATE users u SET balance = u.balance + r.amount FROM r WHERE u.id = r.user_id",
            1 },
        /* Seeding empties the txn tables too (txn.h names them): the admin path only. */
        { "user_seed_truncate",
            "TRUNCATE users, ledger, coupons, user_coupons, balance_holds RESTART IDENTITY CASCADE",
            0 },
        /* $3 poor users, just below the $4 declining ones at the top, start with nothing. */
        { "user_seed_users",
            "INSERT INTO users (id, name, balance)"
            " SELECT g, 'user-' || g, CASE WHEN g > $1::bigint - $4::bigint - $3::bigint"
            " AND g <= $1::bigint - $4::bigint THEN 0 ELSE $2::bigint END"
            " FROM generate_series(1, $1::bigint) g",
            4 },
        /* The initial balance is the first charge of the ledger. */
        { "user_seed_ledger",
            "INSERT INTO ledger (user_id, kind, amount)"
            " SELECT id, 'charge', balance FROM users WHERE balance > 0 ORDER BY id",
            0 },
        /* $2 is the seed as numeric text: it is a uint64. */
        { "user_seed_coupons",
            "INSERT INTO coupons (id, name, kind, value, quantity, issued)"
            " SELECT g, 'coupon-' || g,"
            " CASE WHEN g % 2 = 1 THEN 'FIXED' ELSE 'PERCENT' END,"
            " CASE WHEN g % 2 = 1 THEN 500 + ((g::numeric * 131 + $2::numeric) % 1500)::bigint"
            " ELSE 5 + ((g::numeric + $2::numeric) % 26)::bigint END,"
            " $3, 0 FROM generate_series(1, $1::bigint) g",
            3 },
};

const db_stmt_table user_stmts = {
        .stmts = user_stmt_list,
        .n = sizeof(user_stmt_list) / sizeof(user_stmt_list[0]),
};

static user_discount_kind
kind_from_text(const char *s)
{
        return strcmp(s, "PERCENT") == 0 ? USER_DISCOUNT_PERCENT : USER_DISCOUNT_FIXED;
}

rpc_status
user_store_get_balance(db_conn *db, int64_t user_id, int64_t *ret_balance, int64_t *ret_frozen)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, user_id);
        st = db_exec(db, "user_get_balance", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_NOT_FOUND;
        }
        *ret_balance = db_get_i64(res, 0, 0);
        if (ret_frozen != NULL) {
                *ret_frozen = db_get_i64(res, 0, 1);
        }
        return RPC_OK;
}

rpc_status
user_store_check(db_conn *db, int64_t user_id, int64_t coupon_id, const char **ret_what)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, user_id);
        db_params_i64(&p, coupon_id);
        st = db_exec(db, "user_check", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (!db_get_bool(res, 0, 0)) {
                *ret_what = "user";
                return RPC_NOT_FOUND;
        }
        if (!db_get_bool(res, 0, 1)) {
                *ret_what = "coupon";
                return RPC_NOT_FOUND;
        }
        return RPC_OK;
}

/* One charge, with or without an idempotency key (NULL). */
static rpc_status
charge_exec(db_conn *db, int64_t user_id, int64_t amount, const char *key, int64_t *ret_balance,
    int64_t *ret_ledger_id)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, user_id);
        db_params_i64(&p, amount);
        if (key != NULL) {
                db_params_str(&p, key);
        } else {
                db_params_null(&p);
        }
        st = db_exec(db, "user_charge", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_NOT_FOUND;
        }
        *ret_ledger_id = db_get_i64(res, 0, 0);
        *ret_balance = db_get_i64(res, 0, 1);
        return RPC_OK;
}

rpc_status
user_store_charge(
    db_conn *db, int64_t user_id, int64_t amount, int64_t *ret_balance, int64_t *ret_ledger_id)
{
        return charge_exec(db, user_id, amount, NULL, ret_balance, ret_ledger_id);
}

/* The charge an idempotency key made: OK with its ledger row and the balance now,
 * NOT_FOUND if the key made none, ALREADY_EXISTS if it made another. */
static rpc_status
charge_replay(db_conn *db, int64_t user_id, int64_t amount, const char *key, int64_t *ret_balance,
    int64_t *ret_ledger_id)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_str(&p, key);
        st = db_exec(db, "user_charge_by_key", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_NOT_FOUND;
        }
        if (db_get_i64(res, 0, 1) != user_id || db_get_i64(res, 0, 2) != amount) {
                return RPC_ALREADY_EXISTS;
        }
        *ret_ledger_id = db_get_i64(res, 0, 0);
        *ret_balance = db_get_i64(res, 0, 3);
        return RPC_OK;
}

rpc_status
user_store_charge_once(db_conn *db, int64_t user_id, int64_t amount, const char *idempotency_key,
    int64_t *ret_balance, int64_t *ret_ledger_id)
{
        rpc_status st;

        if (idempotency_key == NULL || idempotency_key[0] == '\0') {
                return charge_exec(db, user_id, amount, NULL, ret_balance, ret_ledger_id);
        }
        st = charge_replay(db, user_id, amount, idempotency_key, ret_balance, ret_ledger_id);
        if (st != RPC_NOT_FOUND) {
                return st;
        }
        st = charge_exec(db, user_id, amount, idempotency_key, ret_balance, ret_ledger_id);
        if (st == RPC_ALREADY_EXISTS && !db_in_transaction(db)) {
                /* a concurrent charge with the key won: answer as it did */
                st = charge_replay(
                    db, user_id, amount, idempotency_key, ret_balance, ret_ledger_id);
        }
        return st;
}

/* Reads a user_coupons row joined with its coupon (the columns of user_coupon_get). */
static void
coupon_rec_read(const PGresult *res, int row, user_coupon_rec *rec)
{
        rec->user_id = db_get_i64(res, row, 0);
        rec->coupon_id = db_get_i64(res, row, 1);
        snprintf(rec->name, sizeof(rec->name), "%s", db_get_str(res, row, 2));
        rec->kind = kind_from_text(db_get_str(res, row, 3));
        rec->value = db_get_i64(res, row, 4);
        rec->quantity = db_get_i64(res, row, 5);
        rec->issued = db_get_i64(res, row, 6);
        rec->used_order_id = db_get_i64(res, row, 7);
        rec->issued_at_ms = db_get_i64(res, row, 8);
}

/* Returns RPC_OK if the statement stmt with one id finds a row, else NOT_FOUND. */
static rpc_status
exists(db_conn *db, const char *stmt, int64_t id)
{
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, id);
        st = db_exec_count(db, stmt, &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        return rows > 0 ? RPC_OK : RPC_NOT_FOUND;
}

typedef struct issue_args {
        int64_t user_id;
        int64_t coupon_id;
        user_coupon_rec *rec;
        const char *what;
} issue_args;

static rpc_status
issue_tx(db_conn *db, void *arg)
{
        issue_args *a = arg;
        DB_RES_CLEANUP PGresult *res = NULL;
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        st = user_store_check(db, a->user_id, a->coupon_id, &a->what);
        if (st != RPC_OK) {
                return st;
        }
        db_params_init(&p);
        db_params_i64(&p, a->user_id);
        db_params_i64(&p, a->coupon_id);
        st = db_exec_count(db, "user_coupon_hold", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        if (rows == 0) {
                return RPC_ALREADY_EXISTS;
        }
        db_params_init(&p);
        db_params_i64(&p, a->coupon_id);
        st = db_exec_count(db, "user_coupon_take", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        if (rows == 0) {
                return RPC_RESOURCE_EXHAUSTED;
        }
        db_params_init(&p);
        db_params_i64(&p, a->user_id);
        db_params_i64(&p, a->coupon_id);
        st = db_exec(db, "user_coupon_get", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                return RPC_INTERNAL;
        }
        coupon_rec_read(res, 0, a->rec);
        return RPC_OK;
}

rpc_status
user_store_issue_coupon(db_conn *db, int64_t user_id, int64_t coupon_id, user_coupon_rec *ret_rec,
    const char **ret_what)
{
        user_coupon_rec rec;
        issue_args a = { .user_id = user_id, .coupon_id = coupon_id, .rec = &rec };
        rpc_status st;

        st = db_transaction(db, USER_TX_ATTEMPTS, issue_tx, &a);
        /* a.what is unset when NOT_FOUND came from the database (SQLSTATE 42704). */
        if (st == RPC_NOT_FOUND && ret_what != NULL && a.what != NULL) {
                *ret_what = a.what;
        }
        if (st == RPC_OK) {
                *ret_rec = rec;
        }
        return st;
}

rpc_status
user_store_list_coupons(db_conn *db, int64_t user_id, user_coupon_rec **ret_recs, size_t *ret_n)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        user_coupon_rec *recs;
        db_params p;
        rpc_status st;
        int n;

        st = exists(db, "user_exists", user_id);
        if (st != RPC_OK) {
                return st;
        }
        db_params_init(&p);
        db_params_i64(&p, user_id);
        st = db_exec(db, "user_coupon_list", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        n = db_rows(res);
        recs = rpc_xcalloc(n > 0 ? (size_t) n : 1, sizeof(*recs));
        for (int i = 0; i < n; i++) {
                coupon_rec_read(res, i, &recs[i]);
        }
        *ret_recs = recs;
        *ret_n = (size_t) n;
        return RPC_OK;
}

int64_t
user_discount(user_discount_kind kind, int64_t value, int64_t total)
{
        int64_t d;

        if (total <= 0 || value <= 0) {
                return 0;
        }
        if (kind == USER_DISCOUNT_PERCENT) {
                /* total * value / 100 without the product: total = 100q + r, value <= 100 */
                if (value >= 100) {
                        return total;
                }
                d = (total / 100) * value + (total % 100) * value / 100;
        } else {
                d = value;
        }
        return d > total ? total : d;
}

typedef struct use_args {
        int64_t user_id;
        int64_t coupon_id;
        int64_t order_id;
        int64_t total;
        int64_t discount;
} use_args;

/* The user's coupon taken for order_id by stmt (user_coupon_use: used; user_coupon_try:
 * held by a TCC try), and *ret_discount on total. FAILED_PRECONDITION when the user does
 * not hold it in a state to take, NOT_FOUND for no such coupon. */
static rpc_status
coupon_take(db_conn *db, const char *stmt, int64_t user_id, int64_t coupon_id, int64_t order_id,
    int64_t total, int64_t *ret_discount)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, user_id);
        db_params_i64(&p, coupon_id);
        db_params_i64(&p, order_id);
        st = db_exec(db, stmt, &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 0) {
                st = exists(db, "user_coupon_exists", coupon_id);
                return st == RPC_OK ? RPC_FAILED_PRECONDITION : st;
        }
        *ret_discount
            = user_discount(kind_from_text(db_get_str(res, 0, 0)), db_get_i64(res, 0, 1), total);
        return RPC_OK;
}

static rpc_status
use_tx(db_conn *db, void *arg)
{
        use_args *a = arg;

        return coupon_take(
            db, "user_coupon_use", a->user_id, a->coupon_id, a->order_id, a->total, &a->discount);
}

rpc_status
user_store_use_coupon(db_conn *db, int64_t user_id, int64_t coupon_id, int64_t order_id,
    int64_t total, int64_t *ret_discount)
{
        use_args a = {
                .user_id = user_id,
                .coupon_id = coupon_id,
                .order_id = order_id,
                .total = total,
        };
        rpc_status st;

        st = db_transaction(db, USER_TX_ATTEMPTS, use_tx, &a);
        if (st == RPC_OK) {
                *ret_discount = a.discount;
        }
        return st;
}

rpc_status
user_store_restore_coupon(db_conn *db, int64_t order_id)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        return db_exec(db, "user_coupon_restore", &p, NULL);
}

typedef struct debit_args {
        int64_t user_id;
        int64_t amount;
        int64_t order_id;
} debit_args;

static rpc_status
debit_tx(db_conn *db, void *arg)
{
        debit_args *a = arg;
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        db_params_init(&p);
        db_params_i64(&p, a->user_id);
        db_params_i64(&p, a->amount);
        db_params_i64(&p, a->order_id);
        st = db_exec_count(db, "user_debit_ledger", &p, &rows);
        if (st == RPC_FAILED_PRECONDITION && strcmp(db_sqlstate(db), "23503") == 0) {
                return RPC_NOT_FOUND; /* the ledger's foreign key: no such user */
        }
        if (st != RPC_OK) {
                return st;
        }
        if (rows == 0) {
                return RPC_OK; /* debited before */
        }
        db_params_init(&p);
        db_params_i64(&p, a->user_id);
        db_params_i64(&p, a->amount);
        st = db_exec_count(db, "user_debit", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        return rows == 1 ? RPC_OK : RPC_FAILED_PRECONDITION;
}

rpc_status
user_store_debit(db_conn *db, int64_t user_id, int64_t amount, int64_t order_id)
{
        debit_args a = { .user_id = user_id, .amount = amount, .order_id = order_id };

        if (amount <= 0 || amount > USER_AMOUNT_MAX) {
                return RPC_INVALID_ARGUMENT;
        }
        return db_transaction(db, USER_TX_ATTEMPTS, debit_tx, &a);
}

rpc_status
user_store_refund(db_conn *db, int64_t order_id)
{
        db_params p;

        db_params_init(&p);
        db_params_i64(&p, order_id);
        return db_exec(db, "user_refund", &p, NULL);
}

rpc_status
user_store_try(db_conn *db, int64_t user_id, int64_t coupon_id, int64_t order_id, int64_t total,
    int64_t *ret_discount, const char **ret_what)
{
        int64_t discount = 0;
        int64_t rows = 0;
        db_params p;
        rpc_status st;

        *ret_what = "balance";
        if (total < 0 || total > USER_AMOUNT_MAX) {
                return RPC_INVALID_ARGUMENT;
        }
        if (coupon_id > 0) {
                *ret_what = "coupon";
                st = coupon_take(
                    db, "user_coupon_try", user_id, coupon_id, order_id, total, &discount);
                if (st != RPC_OK) {
                        return st;
                }
                *ret_what = "balance";
        }
        db_params_init(&p);
        db_params_i64(&p, user_id);
        db_params_i64(&p, total - discount);
        db_params_i64(&p, order_id);
        db_params_i64(&p, discount);
        st = db_exec_count(db, "user_freeze_hold", &p, &rows);
        if (st == RPC_FAILED_PRECONDITION && strcmp(db_sqlstate(db), "23503") == 0) {
                return RPC_NOT_FOUND; /* the hold's foreign key: no such user */
        }
        if (st != RPC_OK) {
                return st;
        }
        if (rows == 0) {
                return RPC_ALREADY_EXISTS; /* the order froze before */
        }
        db_params_init(&p);
        db_params_i64(&p, user_id);
        db_params_i64(&p, total - discount);
        st = db_exec_count(db, "user_freeze", &p, &rows);
        if (st != RPC_OK) {
                return st;
        }
        if (rows != 1) {
                return RPC_FAILED_PRECONDITION;
        }
        *ret_discount = discount;
        return RPC_OK;
}

rpc_status
user_store_settle(db_conn *db, int64_t order_id, bool confirm, bool *ret_settled)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;
        rpc_status st;

        *ret_settled = false;
        db_params_init(&p);
        db_params_i64(&p, order_id);
        st = db_exec(db, confirm ? "user_freeze_confirm" : "user_freeze_cancel", &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) == 1 && confirm && db_get_i64(res, 0, 1) > 0) {
                /* The spent amount's debit in the ledger, as every other mode records it. */
                db_params_init(&p);
                db_params_i64(&p, db_get_i64(res, 0, 0));
                db_params_i64(&p, db_get_i64(res, 0, 1));
                db_params_i64(&p, order_id);
                st = db_exec(db, "user_debit_ledger", &p, NULL);
        }
        if (st == RPC_OK) {
                *ret_settled = db_rows(res) == 1;
                db_params_init(&p);
                db_params_i64(&p, order_id);
                st = db_exec(db, confirm ? "user_coupon_confirm" : "user_coupon_cancel", &p, NULL);
        }
        return st;
}

/* The seed's transaction (db_transaction runs it again when it aborts). */
static rpc_status
seed_run(db_conn *db, void *arg)
{
        const svc_seed *s = arg;
        char seed[24];
        db_params p;
        rpc_status st;

        snprintf(seed, sizeof(seed), "%" PRIu64, s->seed);
        st = db_exec(db, "user_seed_truncate", NULL, NULL);
        if (st == RPC_OK) {
                db_params_init(&p);
                db_params_i64(&p, s->users);
                db_params_i64(&p, s->balance);
                db_params_i64(&p, s->poor_users);
                db_params_i64(&p, s->declining_users);
                st = db_exec(db, "user_seed_users", &p, NULL);
        }
        if (st == RPC_OK) {
                st = db_exec(db, "user_seed_ledger", NULL, NULL);
        }
        if (st == RPC_OK) {
                db_params_init(&p);
                db_params_i64(&p, s->coupons);
                db_params_str(&p, seed);
                db_params_i64(&p, s->coupon_quantity);
                st = db_exec(db, "user_seed_coupons", &p, NULL);
        }
        return st;
}

rpc_status
user_store_seed(db_conn *db, const svc_seed *s)
{
        svc_seed copy = *s;

        if (s->users < 0 || s->balance < 0 || s->coupons < 0 || s->coupon_quantity < 0
            || s->poor_users < 0 || s->declining_users < 0
            || s->poor_users > s->users - s->declining_users) {
                return RPC_INVALID_ARGUMENT;
        }
        return db_transaction(db, SVC_SEED_ATTEMPTS, seed_run, &copy);
}
