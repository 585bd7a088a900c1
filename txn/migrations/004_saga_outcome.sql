-- 004_saga_outcome.sql: what an orchestrated saga's action did, for the command repeated.
--
-- A participant that runs an orchestrator's command (SagaParticipant/Run) enters the same
-- barrier key as the choreographed step and, in the same transaction, records here how it
-- ended: reason '' for done, else the business "no" (out_of_stock, ...), and the discount
-- the user step gave. A repeated command finds the key taken and answers from this row; a
-- key taken with no row here was taken by the compensation first (the late action is
-- refused).
CREATE TABLE txn_saga_outcome (
        consumer text NOT NULL,
        key text NOT NULL,
        reason text NOT NULL DEFAULT '',
        discount bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, key)
);
