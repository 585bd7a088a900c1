-- 001_init.sql: users with their balance, the balance ledger, coupons and the coupons users hold.

CREATE TABLE users (
        id bigint PRIMARY KEY CHECK (id > 0),
        name text NOT NULL,
        balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
        created_at timestamptz NOT NULL DEFAULT now()
);

-- Every change of a balance: charges (no order), debits of orders and their refunds. A
-- charge may carry the caller's idempotency key, so that a resent charge applies once; an
-- order is debited at most once and refunded at most once.
CREATE TABLE ledger (
        id bigserial PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES users (id),
        kind text NOT NULL CHECK (kind IN ('charge', 'debit', 'refund')),
        amount bigint NOT NULL CHECK (amount > 0),
        order_id bigint,
        idempotency_key text,
        created_at timestamptz NOT NULL DEFAULT now(),
        CHECK ((kind = 'charge') = (order_id IS NULL)),
        CHECK (kind = 'charge' OR idempotency_key IS NULL)
);
CREATE UNIQUE INDEX ledger_order_kind ON ledger (order_id, kind) WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_idempotency_key ON ledger (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
CREATE INDEX ledger_user_id ON ledger (user_id);

CREATE TABLE coupons (
        id bigint PRIMARY KEY CHECK (id > 0),
        name text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('FIXED', 'PERCENT')),
        value bigint NOT NULL CHECK (value > 0),
        quantity bigint NOT NULL CHECK (quantity >= 0),
        issued bigint NOT NULL DEFAULT 0 CHECK (issued >= 0 AND issued <= quantity),
        CHECK (kind = 'FIXED' OR value <= 100)
);

-- A coupon a user holds; used_order_id is the order that used it, NULL while unused.
CREATE TABLE user_coupons (
        user_id bigint NOT NULL REFERENCES users (id),
        coupon_id bigint NOT NULL REFERENCES coupons (id),
        used_order_id bigint,
        issued_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, coupon_id)
);
CREATE INDEX user_coupons_used_order_id ON user_coupons (used_order_id)
        WHERE used_order_id IS NOT NULL;
