/* handlers.c: the UserService methods: balance, charge, coupon issue and the coupons held. */
#include <stdlib.h>
#include <string.h>

#include "svc.h"
#include "user.pb-c.h"
#include "user_priv.h"
#include "user_store.h"

/* The longest idempotency key a charge accepts, in bytes. */
#define USER_KEY_MAX 200

/* The reply for a failed statement: the mapped status with the database's message. */
static rpc_status
db_error(rpc_call *call, db_conn *db, rpc_status st)
{
        return rpc_call_error(call, st, "database: %s", db_errmsg(db));
}

/* A UserCoupon message in the call's arena. */
static Mercato__User__V1__UserCoupon *
user_coupon_msg(rpc_call *call, const user_coupon_rec *rec, Mercato__User__V1__UserCoupon *uc)
{
        Mercato__User__V1__Coupon *c = rpc_call_alloc(call, sizeof(*c));

        if (uc == NULL) {
                uc = rpc_call_alloc(call, sizeof(*uc));
                mercato__user__v1__user_coupon__init(uc);
        }
        mercato__user__v1__coupon__init(c);
        c->coupon_id = rec->coupon_id;
        c->name = rpc_call_strdup(call, rec->name);
        c->kind = rec->kind == USER_DISCOUNT_PERCENT
            ? MERCATO__USER__V1__DISCOUNT_KIND__DISCOUNT_KIND_PERCENT
            : MERCATO__USER__V1__DISCOUNT_KIND__DISCOUNT_KIND_FIXED;
        c->value = rec->value;
        c->quantity = rec->quantity;
        c->issued = rec->issued;
        uc->user_id = rec->user_id;
        uc->coupon = c;
        uc->used = rec->used_order_id != 0;
        uc->used_order_id = rec->used_order_id;
        uc->issued_at_ms = rec->issued_at_ms;
        return uc;
}

RPC_HANDLER(handle_get_balance, Mercato__User__V1__GetBalanceRequest, Mercato__User__V1__Balance)
{
        int64_t balance = 0;
        int64_t frozen = 0;
        rpc_status st;

        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = user_store_get_balance(db, req->user_id, &balance, &frozen);
        if (st == RPC_NOT_FOUND) {
                return rpc_call_error(call, st, "no user %lld", (long long) req->user_id);
        }
        if (st != RPC_OK) {
                return db_error(call, db, st);
        }
        resp->user_id = req->user_id;
        resp->balance = balance;
        resp->available = balance - frozen;
        return RPC_OK;
}

RPC_HANDLER(handle_charge_balance, Mercato__User__V1__ChargeBalanceRequest,
    Mercato__User__V1__ChargeBalanceResponse)
{
        const char *key = rpc_call_idempotency_key(call);
        int64_t balance = 0;
        int64_t ledger_id = 0;
        rpc_status st;

        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (req->amount <= 0 || req->amount > USER_AMOUNT_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "amount must be 1..1000000000000");
        }
        if (strlen(key) > USER_KEY_MAX) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT,
                    "idempotency key longer than %d bytes", USER_KEY_MAX);
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = user_store_charge_once(db, req->user_id, req->amount, key, &balance, &ledger_id);
        switch (st) {
        case RPC_OK:
                break;
        case RPC_NOT_FOUND:
                return rpc_call_error(call, st, "no user %lld", (long long) req->user_id);
        case RPC_OUT_OF_RANGE:
                return rpc_call_error(call, st, "balance would overflow");
        case RPC_ALREADY_EXISTS:
                return rpc_call_error(call, st, "idempotency key used by another charge");
        default:
                return db_error(call, db, st);
        }
        resp->user_id = req->user_id;
        resp->balance = balance;
        resp->ledger_id = ledger_id;
        return RPC_OK;
}

RPC_HANDLER(
    handle_issue_coupon, Mercato__User__V1__IssueCouponRequest, Mercato__User__V1__UserCoupon)
{
        const char *what = "user";
        user_coupon_rec rec;
        rpc_status st;

        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        if (req->coupon_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "coupon_id must be > 0");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = user_store_issue_coupon(db, req->user_id, req->coupon_id, &rec, &what);
        switch (st) {
        case RPC_OK:
                break;
        case RPC_NOT_FOUND:
                return rpc_call_error(call, st, "no %s %lld", what,
                    (long long) (strcmp(what, "coupon") == 0 ? req->coupon_id : req->user_id));
        case RPC_ALREADY_EXISTS:
                return rpc_call_error(call, st, "user %lld already holds coupon %lld",
                    (long long) req->user_id, (long long) req->coupon_id);
        case RPC_RESOURCE_EXHAUSTED:
                return rpc_call_error(
                    call, st, "coupon %lld is sold out", (long long) req->coupon_id);
        default:
                return db_error(call, db, st);
        }
        user_coupon_msg(call, &rec, resp);
        return RPC_OK;
}

RPC_HANDLER(handle_list_coupons, Mercato__User__V1__ListCouponsRequest,
    Mercato__User__V1__ListCouponsResponse)
{
        user_coupon_rec *recs = NULL;
        size_t n = 0;
        rpc_status st;

        if (req->user_id <= 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "user_id must be > 0");
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = user_store_list_coupons(db, req->user_id, &recs, &n);
        if (st == RPC_NOT_FOUND) {
                return rpc_call_error(call, st, "no user %lld", (long long) req->user_id);
        }
        if (st != RPC_OK) {
                return db_error(call, db, st);
        }
        resp->n_coupons = n;
        resp->coupons = rpc_call_alloc(call, (n > 0 ? n : 1) * sizeof(*resp->coupons));
        for (size_t i = 0; i < n; i++) {
                resp->coupons[i] = user_coupon_msg(call, &recs[i], NULL);
        }
        free(recs);
        return RPC_OK;
}

const rpc_method user_methods[USER_N_METHODS] = {
        RPC_METHOD_ENTRY("GetBalance", handle_get_balance,
            mercato__user__v1__get_balance_request__descriptor,
            mercato__user__v1__balance__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("ChargeBalance", handle_charge_balance,
            mercato__user__v1__charge_balance_request__descriptor,
            mercato__user__v1__charge_balance_response__descriptor, 0),
        RPC_METHOD_ENTRY("IssueCoupon", handle_issue_coupon,
            mercato__user__v1__issue_coupon_request__descriptor,
            mercato__user__v1__user_coupon__descriptor, 0),
        RPC_METHOD_ENTRY("ListCoupons", handle_list_coupons,
            mercato__user__v1__list_coupons_request__descriptor,
            mercato__user__v1__list_coupons_response__descriptor, RPC_METHOD_IDEMPOTENT),
};
