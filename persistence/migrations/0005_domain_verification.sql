-- A domain serves nothing (no records, no certificates) until the cluster has seen proof
-- that its org controls it: delegation to the cluster's name servers, or the token as a TXT
-- record at _cluster-challenge.<domain>. A server admin may also mark it verified by hand.
-- Domains that existed before this migration were already served: they count as verified.
ALTER TABLE domains
  ADD COLUMN status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verified')),
  ADD COLUMN verification_token text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', ''),
  ADD COLUMN verified_at timestamptz,
  ADD COLUMN verified_by text CHECK (verified_by IN ('delegation', 'txt', 'admin'));
UPDATE domains SET status = 'verified', verified_at = now(), verified_by = 'admin';
