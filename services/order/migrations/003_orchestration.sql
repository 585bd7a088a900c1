-- 003_orchestration.sql: the orchestrated saga's log (mode orchestration, orch.c's NOTES).
--
-- One row per saga and one per step. The orchestrator commits every change of state
-- before it sends the next command, so that after a crash recovery re-drives the saga from
-- here: forward while no step has failed and the deadline holds, backward otherwise.

ALTER TABLE orders DROP CONSTRAINT orders_mode_check,
        ADD CONSTRAINT orders_mode_check
        CHECK (mode IN ('saga', '2pc', 'monolith', 'orchestration'));

CREATE TABLE orch_saga (
        order_id bigint PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
        state text NOT NULL DEFAULT 'forward'
                CHECK (state IN ('forward', 'backward', 'completed', 'cancelled')),
        reason text NOT NULL DEFAULT '',          -- why it went backward
        discount bigint NOT NULL DEFAULT 0 CHECK (discount >= 0), -- what the user step gave
        failed_branch text NOT NULL DEFAULT '',   -- reason participant_error: who failed,
        failed_status text NOT NULL DEFAULT '',   -- with which status
        failed_message text NOT NULL DEFAULT '',  -- and what it said
        deadline_at timestamptz NOT NULL,         -- forward no further after this
        next_attempt_at timestamptz NOT NULL DEFAULT now(), -- recovery's next look
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
);

-- What recovery drives: the sagas not finished, by their next attempt.
CREATE INDEX orch_saga_open ON orch_saga (next_attempt_at) WHERE state IN ('forward', 'backward');

CREATE TABLE orch_step (
        order_id bigint NOT NULL REFERENCES orch_saga (order_id) ON DELETE CASCADE,
        step smallint NOT NULL CHECK (step BETWEEN 1 AND 3),
        name text NOT NULL,                       -- the command: reserve, debit, capture
        state text NOT NULL DEFAULT 'pending' CHECK (state IN
                ('pending', 'sent', 'done', 'refused', 'compensating', 'compensated')),
        attempts integer NOT NULL DEFAULT 0,      -- commands sent
        compensations integer NOT NULL DEFAULT 0, -- compensations sent
        last_error text NOT NULL DEFAULT '',
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (order_id, step)
);
