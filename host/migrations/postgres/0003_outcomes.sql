-- Outcomes not known yet. `unknown` joins the statuses: a started PSP call whose answer was
-- lost (the host's deadline, a transport failure after sending, a crash). Pending and
-- unknown rows each carry their own next check, so none can starve the others.
ALTER TABLE transactions ADD COLUMN next_check_at BIGINT;             -- unix ms; NULL: nothing to check
ALTER TABLE transactions ADD COLUMN checks BIGINT NOT NULL DEFAULT 0;  -- recovery checks made so far
ALTER TABLE transactions ADD COLUMN escalated_at BIGINT;              -- unresolved too long: an operator's
-- The plugin call as sent (JSON), kept until the outcome is final so that an unknown one can
-- be re-sent with the same idempotency key. Card numbers never get this far (refused first).
ALTER TABLE transactions ADD COLUMN replay TEXT;
DROP INDEX transactions_pending;
CREATE INDEX transactions_due ON transactions (next_check_at) WHERE next_check_at IS NOT NULL;
