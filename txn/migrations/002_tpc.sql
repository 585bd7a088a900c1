-- 002_tpc.sql: two-phase commit: the participants' markers, the coordinator's epoch and log.
--
-- Every database that holds the txn tables holds these, so any service can be a participant
-- and the order service's database is also the coordinator's.

-- A participant's marker, one row per GID. A prepared branch inserts (gid, aborted false)
-- inside its prepared transaction, first thing: the row becomes visible exactly when
-- COMMIT PREPARED commits the branch, so after a COMMIT or ROLLBACK PREPARED that failed
-- with 42704 (no such prepared transaction) the row tells what happened: present and not
-- aborted, the branch committed. A rollback records (gid, aborted true) in a committed
-- transaction of its own: the aborted-GID record. It shares the primary key with the
-- marker, so a prepare that arrives after the abort fails on the key and is refused, and a
-- prepare still in flight and the rollback serialize on it rather than race.
CREATE TABLE txn_tpc_marker (
        gid text PRIMARY KEY,
        aborted boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
);

-- The coordinator's epoch per coordinator id, drawn anew durably at each start (a random
-- 1..2^53-1, never the previous one: txn/tpc.h says why), so a GID
-- <coordinator>:<epoch>:<txid> is never reused even when txids restart.
CREATE TABLE txn_tpc_epoch (
        coordinator text PRIMARY KEY,
        epoch bigint NOT NULL CHECK (epoch > 0),
        started_at timestamptz NOT NULL DEFAULT now()
);

-- The coordinator's log: one row per global transaction, written before the first prepare
-- (decision NULL: undecided). The decision is set once, conditionally (first writer wins:
-- the coordinator's commit or recovery's presumed abort), and made durable before the
-- first COMMIT PREPARED. done_at is set when every branch confirmed the outcome.
-- created_at -> decided_at -> done_at time the prepares and the commits.
CREATE TABLE txn_tpc_log (
        gid text PRIMARY KEY CHECK (octet_length(gid) < 200),
        coordinator text NOT NULL,
        txid bigint NOT NULL,                   -- the order id
        participants text NOT NULL,             -- branch names, space-separated
        decision text CHECK (decision IN ('commit', 'abort')),
        reason text NOT NULL DEFAULT '',        -- why it aborted
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(), -- the prepares begin
        decided_at timestamptz,
        done_at timestamptz
);

-- What recovery and `mercato txn list` look at: the transactions not finished.
CREATE INDEX txn_tpc_log_open ON txn_tpc_log (coordinator, created_at) WHERE done_at IS NULL;
CREATE INDEX txn_tpc_log_txid ON txn_tpc_log (txid);
