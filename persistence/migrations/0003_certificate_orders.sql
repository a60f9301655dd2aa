-- ACME orders in flight, kept beside the certificate being served (a renewal must not stop
-- the current certificate from being served), so a new owner of the cert-issuer actor takes
-- an order up instead of placing a second one; and retry bookkeeping for failures.
ALTER TABLE certificates
  ADD COLUMN pending_order_url  text,
  ADD COLUMN pending_key_sealed bytea,
  ADD COLUMN failures           integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
  ADD COLUMN next_attempt_at    timestamptz;
