-- 001_init.sql: orders with their items. The transaction layer's state lives in txn/'s tables.

CREATE TABLE orders (
        id bigserial PRIMARY KEY,
        user_id bigint NOT NULL CHECK (user_id > 0),
        status text NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'CANCELLED')),
        reason text NOT NULL DEFAULT '',
        total bigint NOT NULL CHECK (total >= 0),
        discount bigint NOT NULL DEFAULT 0 CHECK (discount >= 0 AND discount <= total),
        amount bigint NOT NULL CHECK (amount >= 0),
        coupon_id bigint CHECK (coupon_id > 0),
        mode text NOT NULL CHECK (mode IN ('saga', '2pc', 'monolith')),
        -- the caller's idempotency key: a resent PlaceOrder finds its order
        idempotency_key text UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK (amount = total - discount)
);
CREATE INDEX orders_user_id ON orders (user_id, id);
CREATE INDEX orders_pending ON orders (id) WHERE status = 'PENDING';

CREATE TABLE order_items (
        order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        product_id bigint NOT NULL CHECK (product_id > 0),
        quantity bigint NOT NULL CHECK (quantity > 0),
        unit_price bigint NOT NULL CHECK (unit_price >= 0),
        PRIMARY KEY (order_id, product_id)
);
