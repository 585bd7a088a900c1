-- 001_txn.sql: the transactional outbox, per-subscriber deliveries, dead letters, and the barrier.
--
-- Every name starts with txn_: the monolith database holds the tables of every service and
-- the outbox of every service, and these must never clash with a service's own tables.
-- gen_random_uuid() is built into PostgreSQL 13 and later.

-- The outbox: one row per event, written in the same local transaction as the change it
-- announces. Rows are kept after delivery, for auditing; the partial indexes keep the
-- relay's and the checker's queries on the few rows that are still moving.
CREATE TABLE txn_outbox (
        event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq bigint GENERATED ALWAYS AS IDENTITY,  -- orders a batch; never a high-water mark
        source text NOT NULL,                     -- the service whose outbox holds it
        topic text NOT NULL,
        aggregate_id bigint NOT NULL,
        payload bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        fanned_out boolean NOT NULL DEFAULT false, -- its txn_delivery rows exist
        pending integer NOT NULL DEFAULT 0 CHECK (pending >= 0), -- deliveries not finished
        delivered_at timestamptz                  -- set when every subscriber has acked or
                                                  -- been dead-lettered (pending reached 0)
);

-- Events whose subscribers are not known yet: what the relay's fan-out step picks up.
CREATE INDEX txn_outbox_unfanned ON txn_outbox (source, seq) WHERE NOT fanned_out;

-- Events not finished: txn_outbox_counts and the consistency check.
CREATE INDEX txn_outbox_undelivered ON txn_outbox (source, created_at) WHERE delivered_at IS NULL;

-- One row per (event, subscriber). An event with three subscribers is finished when all
-- three rows are done or dead; one row that keeps failing blocks nothing but itself.
CREATE TABLE txn_delivery (
        event_id uuid NOT NULL REFERENCES txn_outbox (event_id) ON DELETE CASCADE,
        subscriber text NOT NULL,
        source text NOT NULL,                     -- copied from the event, for the claim
        seq bigint NOT NULL,                      -- copied from the event, for the order
        state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
        attempts integer NOT NULL DEFAULT 0,      -- claims so far, the current one included
        next_attempt_at timestamptz NOT NULL DEFAULT now(), -- due time, or a claim's lease end
        lease uuid,                               -- the current claim's token; NULL if none
        last_error text,
        finished_at timestamptz,                  -- acked (done) or dead-lettered (dead)
        PRIMARY KEY (event_id, subscriber)
);

-- The claim: the pending rows of one subscriber that are due.
CREATE INDEX txn_delivery_due ON txn_delivery (source, subscriber, next_attempt_at)
        WHERE state = 'pending';

-- The deliveries that gave up after the relay's max_attempts.
CREATE TABLE txn_dead_letters (
        event_id uuid NOT NULL REFERENCES txn_outbox (event_id) ON DELETE CASCADE,
        subscriber text NOT NULL,
        source text NOT NULL,
        topic text NOT NULL,
        attempts integer NOT NULL,
        last_error text NOT NULL,
        dead_lettered_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (event_id, subscriber)
);

-- The consumers' insert-first barrier (inbox): a (consumer, key) pair is inserted in the
-- consumer's local transaction; a second insert of the same pair affects no row.
CREATE TABLE txn_barrier (
        consumer text NOT NULL,
        key text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, key)
);
