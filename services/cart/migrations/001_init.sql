-- 001_init: what each user means to buy, one row per (user, product).
CREATE TABLE cart_items (
        user_id bigint NOT NULL CHECK (user_id > 0),
        product_id bigint NOT NULL CHECK (product_id > 0),
        quantity bigint NOT NULL CHECK (quantity BETWEEN 1 AND 1000000000000),
        added_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, product_id)
);
