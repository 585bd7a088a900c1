-- 002_failure.sql: what failed, for an order cancelled with reason participant_error.
--
-- A branch or step that answered with an error (a transport error, UNAVAILABLE, INTERNAL,
-- a lock timeout) rather than a business "no" cancels its order with reason
-- participant_error; these say which branch, with which status and message. Empty
-- otherwise.
ALTER TABLE orders
        ADD COLUMN failure_branch text NOT NULL DEFAULT '',
        ADD COLUMN failure_status text NOT NULL DEFAULT '',
        ADD COLUMN failure_message text NOT NULL DEFAULT '';
