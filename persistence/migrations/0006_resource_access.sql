-- Who may reach a resource. The resource's own `auth` column (jsonb, there from the start)
-- holds its settings: blockAccess, single sign-on with cluster accounts (optionally limited
-- to org roles or users) and basic auth. Secrets, rules, share links and sessions have
-- tables of their own; only hashes of secrets and tokens are stored.

-- The resource's password and PIN (scrypt); at most one of each.
CREATE TABLE resource_secrets (
  resource_id  uuid NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
  kind         text NOT NULL CHECK (kind IN ('password', 'pin')),
  hash         text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (resource_id, kind)
);

-- Rules run before the methods, lowest priority number first; the first that matches decides.
CREATE TABLE resource_rules (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  resource_id  uuid NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
  priority     integer NOT NULL CHECK (priority BETWEEN 0 AND 1000000),
  match        text NOT NULL CHECK (match IN ('ip', 'cidr', 'path', 'country')),
  value        text NOT NULL CHECK (length(value) BETWEEN 1 AND 500),
  action       text NOT NULL CHECK (action IN ('allow', 'deny', 'pass')),
  enabled      boolean NOT NULL DEFAULT true,
  created_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT resource_rules_priority_key UNIQUE (resource_id, priority)
);

-- Shareable links: the token is shown once; its SHA-256 is published with the route so every
-- node checks it from memory.
CREATE TABLE resource_share_links (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  resource_id  uuid NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
  title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  token_hash   bytea NOT NULL UNIQUE,
  path_prefix  text CHECK (path_prefix IS NULL OR path_prefix ~ '^/'),
  expires_at   timestamptz,
  makes_session boolean NOT NULL DEFAULT false,
  created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resource_share_links_resource_idx ON resource_share_links (resource_id);

-- Resource sessions. The cookie is signed and checked from memory; this row is what a
-- revocation marks, and every node learns the revoked ids from here. A deleted user's
-- sessions are revoked before the user goes, so the row stays (user_id set to NULL).
CREATE TABLE resource_sessions (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  resource_id  uuid NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
  org_id       uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  method       text NOT NULL CHECK (method IN ('sso', 'password', 'pin', 'link')),
  user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
  link_id      uuid,
  client       text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  revoked_at   timestamptz,
  CHECK (expires_at > created_at)
);
CREATE INDEX resource_sessions_resource_idx ON resource_sessions (resource_id);
CREATE INDEX resource_sessions_user_idx ON resource_sessions (user_id);
CREATE INDEX resource_sessions_revoked_idx ON resource_sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Access decisions. Each node sums identical decisions over a second into one row (`count`),
-- so a busy resource costs a row per second and client, not one per request.
CREATE TABLE access_log (
  id           bigserial PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT now(),
  org_id       uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  resource_id  uuid NOT NULL,
  decision     text NOT NULL CHECK (decision IN ('allowed', 'denied')),
  method       text,
  rule_id      uuid,
  reason       text NOT NULL,
  client       text NOT NULL,
  user_id      uuid,
  node_id      text NOT NULL,
  count        integer NOT NULL DEFAULT 1 CHECK (count > 0)
);
CREATE INDEX access_log_org_at_idx ON access_log (org_id, at DESC);
CREATE INDEX access_log_at_idx ON access_log (at);
