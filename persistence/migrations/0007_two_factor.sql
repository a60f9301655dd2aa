-- Two-factor sign-in for cluster accounts: a TOTP secret per user (sealed with the cluster
-- key), single-use recovery codes (hashed), and who must use it: a user, or every member of
-- an org.
ALTER TABLE users ADD COLUMN require_2fa boolean NOT NULL DEFAULT false;
ALTER TABLE orgs ADD COLUMN require_2fa boolean NOT NULL DEFAULT false;

CREATE TABLE user_totp (
  user_id        uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  secret_sealed  bytea NOT NULL,
  -- NULL until a code from the app confirmed the enrolment.
  enabled_at     timestamptz,
  -- The last time step a code was accepted for: a code works once.
  last_step      bigint NOT NULL DEFAULT 0,
  created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_recovery_codes (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash  bytea NOT NULL,
  used_at    timestamptz
);
CREATE INDEX user_recovery_codes_user_idx ON user_recovery_codes (user_id) WHERE used_at IS NULL;
