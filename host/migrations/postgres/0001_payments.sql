-- Payment transactions, one row per operation the host was asked to perform.
-- The PostgreSQL translation of migrations/sqlite/0001: same tables, columns and meaning;
-- unix-ms timestamps and amounts are BIGINT, the outbox id a BIGSERIAL.
CREATE TABLE transactions (
    id                TEXT PRIMARY KEY,
    gateway           TEXT NOT NULL,
    front             TEXT NOT NULL,      -- the protocol that created it (commerce_layer, ...)
    action            TEXT NOT NULL,      -- authorize | capture | void | refund | token | sale
    idempotency_key   TEXT NOT NULL UNIQUE,
    resource_id       TEXT NOT NULL,      -- the merchant platform's id (CL resource id)
    parent_id         TEXT REFERENCES transactions(id),
    transaction_token TEXT NOT NULL,      -- what the merchant platform was answered
    psp_token         TEXT,               -- what the plugin answered (may differ when deferred)
    psp_reference     TEXT,
    action_id         TEXT UNIQUE,
    amount_cents      BIGINT NOT NULL,
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL,      -- processing | approved | pending | declined | failed
    error_code        TEXT,
    error_message     TEXT,
    response_status   BIGINT,             -- the answer given, replayed to duplicates
    response_body     TEXT,
    created_at        BIGINT NOT NULL,    -- unix ms
    updated_at        BIGINT NOT NULL
);
CREATE INDEX transactions_token ON transactions (gateway, transaction_token);
CREATE INDEX transactions_reference ON transactions (gateway, psp_reference);
CREATE INDEX transactions_parent ON transactions (parent_id);
CREATE INDEX transactions_pending ON transactions (status, updated_at);

-- Callbacks to the merchant platform, delivered at least once.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    gateway         TEXT NOT NULL,
    url             TEXT NOT NULL,
    action_id       TEXT,
    headers         TEXT NOT NULL,        -- JSON [[name, value], ...]
    body            BYTEA NOT NULL,       -- the exact bytes sent and signed
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    dead_at         BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (delivered_at, dead_at, next_attempt_at);
