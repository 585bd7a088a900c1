-- 001_init.sql: payments, one per order, and the users whose payments decline (a test switch).

CREATE TABLE payments (
        id bigserial PRIMARY KEY,
        order_id bigint NOT NULL UNIQUE,
        user_id bigint NOT NULL,
        amount bigint NOT NULL CHECK (amount >= 0),
        status text NOT NULL CHECK (status IN ('captured', 'refunded')),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE declined_users (
        user_id bigint PRIMARY KEY
);
