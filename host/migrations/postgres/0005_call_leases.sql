-- Calls under way are owned by one gateway process (its instance id) for a lease it
-- renews while the call runs: another replica takes a `processing` row over only once
-- its lease has run out (the owner died), never while the owner is alive.
ALTER TABLE transactions ADD COLUMN owner TEXT;
ALTER TABLE transactions ADD COLUMN lease_until BIGINT;
