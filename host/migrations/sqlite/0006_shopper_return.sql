-- Where the platform asked the shopper to be sent back after acting at the PSP (JSON:
-- return_url, cancel_url), kept when the host routes that return through itself
-- (`[server] public_url`) so it can send the shopper on once the payment is completed.
ALTER TABLE transactions ADD COLUMN shopper_return TEXT;
