-- 004_tcc.sql: mode tcc (tcc.c's NOTES) keeps its coordinator log in the orchestrator's
-- tables: one orch_saga row per transaction and one orch_step row per branch.
--
-- A TCC transaction is forward while its branches try, confirming once every try held (the
-- decision, committed before the first confirm), then completed; or backward (cancelling)
-- and cancelled. A branch is pending, sent (trying), done (tried) or refused; then
-- confirming and confirmed, or compensating (cancelling) and compensated (cancelled).

ALTER TABLE orders DROP CONSTRAINT orders_mode_check,
        ADD CONSTRAINT orders_mode_check
        CHECK (mode IN ('saga', '2pc', 'monolith', 'orchestration', 'tcc'));

ALTER TABLE orch_saga DROP CONSTRAINT orch_saga_state_check,
        ADD CONSTRAINT orch_saga_state_check
        CHECK (state IN ('forward', 'backward', 'completed', 'cancelled', 'confirming'));

DROP INDEX orch_saga_open;
CREATE INDEX orch_saga_open ON orch_saga (next_attempt_at)
        WHERE state IN ('forward', 'backward', 'confirming');

ALTER TABLE orch_step DROP CONSTRAINT orch_step_state_check,
        ADD CONSTRAINT orch_step_state_check CHECK (state IN ('pending', 'sent', 'done', 'refused',
                'compensating', 'compensated', 'confirming', 'confirmed'));
