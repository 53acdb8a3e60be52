-- Manual subscriptions (Mia-Platform PGM): a payment source saved at the PSP, charged on
-- the merchant's request.
CREATE TABLE subscriptions (
    token                TEXT PRIMARY KEY,
    gateway              TEXT NOT NULL,
    shop_transaction_id  TEXT NOT NULL,
    customer_token       TEXT,
    payment_source_token TEXT NOT NULL,
    currency             TEXT NOT NULL,
    interval_unit        TEXT,
    interval_count       BIGINT,
    status               TEXT NOT NULL,   -- PENDING | ACTIVE | EXPIRED
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (gateway, shop_transaction_id)
);
