-- 001_init: the catalogue, the stock held for orders, and the sales per day behind TopProducts.
CREATE TABLE products (
        id bigint PRIMARY KEY CHECK (id > 0),
        name text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 127),
        price bigint NOT NULL CHECK (price >= 0),
        stock bigint NOT NULL CHECK (stock >= 0),
        updated_at timestamptz NOT NULL DEFAULT now()
);

-- The stock an order holds: 'held' while the order runs, then 'sold' (it completed) or
-- 'released' (it was cancelled and the quantity went back to stock).
CREATE TABLE reservations (
        order_id bigint NOT NULL CHECK (order_id > 0),
        product_id bigint NOT NULL CHECK (product_id > 0),
        quantity bigint NOT NULL CHECK (quantity > 0),
        status text NOT NULL CHECK (status IN ('held', 'sold', 'released')),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (order_id, product_id)
);

-- Quantities sold per product and UTC day, fed by the order.completed event.
CREATE TABLE sales_daily (
        product_id bigint NOT NULL CHECK (product_id > 0),
        day date NOT NULL,
        quantity bigint NOT NULL CHECK (quantity >= 0),
        PRIMARY KEY (product_id, day)
);
CREATE INDEX sales_daily_day ON sales_daily (day);
