-- The outbox as a delivery state machine (waiting -> delivered | dead, dead -> waiting by
-- replay). Callbacks are signed when sent: `front` names who signs them, so `headers` of
-- new rows hold no signature. Rows queued before this version keep their stored
-- signature (front NULL) and are sent as they are.
ALTER TABLE outbox ADD COLUMN front TEXT;
-- Callbacks of one key (the transaction id) are delivered in the order they were queued.
ALTER TABLE outbox ADD COLUMN ordering_key TEXT;
-- Age for the give-up rule counts from the last replay, not from the first queueing.
ALTER TABLE outbox ADD COLUMN replayed_at BIGINT;
CREATE INDEX outbox_waiting_by_key ON outbox (ordering_key, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_dead ON outbox (dead_at) WHERE dead_at IS NOT NULL;
