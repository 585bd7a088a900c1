-- 003_tpc_failure.sql: what failed, for a transaction aborted because a branch erred.
--
-- A branch that answered its Prepare with an error (a transport error, UNAVAILABLE,
-- INTERNAL, a lock timeout) instead of a vote: which branch, its status and message,
-- written before the decision so that recovery finishes the transaction with them and
-- `mercato txn show` tells them. Empty otherwise.
ALTER TABLE txn_tpc_log
        ADD COLUMN failed_branch text NOT NULL DEFAULT '',
        ADD COLUMN failed_status text NOT NULL DEFAULT '',
        ADD COLUMN failed_message text NOT NULL DEFAULT '';
