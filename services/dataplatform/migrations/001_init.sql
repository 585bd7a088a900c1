-- 001_init: the mock data platform: each completed order it was sent, once by event id.
CREATE TABLE received_orders (
        event_id text PRIMARY KEY CHECK (octet_length(event_id) BETWEEN 1 AND 64),
        order_id bigint NOT NULL CHECK (order_id > 0),
        user_id bigint NOT NULL CHECK (user_id > 0),
        amount bigint NOT NULL CHECK (amount >= 0),
        received_at timestamptz NOT NULL DEFAULT now()
);
-- Not unique: two events for one order are a fault the consistency check must see.
CREATE INDEX received_orders_order ON received_orders (order_id);

-- Counters the data platform keeps: 'duplicates', the deliveries refused as seen before.
CREATE TABLE dp_counters (
        name text PRIMARY KEY,
        value bigint NOT NULL CHECK (value >= 0)
);
INSERT INTO dp_counters (name, value) VALUES ('duplicates', 0);
