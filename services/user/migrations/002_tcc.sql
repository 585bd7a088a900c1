-- 002_tcc: the balance and coupons a TCC try sets aside (mode tcc, services/user/steps.c).
--
-- A try freezes the amount (users.frozen grows, one balance_holds row per order, 'frozen')
-- and holds the coupon (user_coupons.held_order_id), so that available = balance - frozen.
-- The confirm spends them: the balance and frozen shrink, the ledger gets the debit, the
-- coupon is used ('confirmed'). The cancel gives them up ('cancelled'). Every debit also
-- leaves what is frozen alone: balance - frozen >= amount.
ALTER TABLE users ADD COLUMN frozen bigint NOT NULL DEFAULT 0,
        ADD CONSTRAINT users_frozen_check CHECK (frozen >= 0 AND frozen <= balance);

ALTER TABLE user_coupons ADD COLUMN held_order_id bigint,
        ADD CONSTRAINT user_coupons_held_check CHECK (held_order_id IS NULL OR used_order_id IS NULL);
CREATE INDEX user_coupons_held_order_id ON user_coupons (held_order_id)
        WHERE held_order_id IS NOT NULL;

CREATE TABLE balance_holds (
        order_id bigint PRIMARY KEY CHECK (order_id > 0),
        user_id bigint NOT NULL REFERENCES users (id),
        amount bigint NOT NULL CHECK (amount >= 0),  -- total - discount
        discount bigint NOT NULL CHECK (discount >= 0),
        status text NOT NULL CHECK (status IN ('frozen', 'confirmed', 'cancelled')),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX balance_holds_frozen ON balance_holds (user_id) WHERE status = 'frozen';
