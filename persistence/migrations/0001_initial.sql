-- Initial schema. Durable state of the cluster: tenants, identities, sites, published
-- resources, DNS domains, certificates, fencing epochs and the audit log.
-- Conventions: uuid keys, timestamptz, a `version` column on rows the API updates
-- (optimistic concurrency), CHECK constraints for kinds, lowercase DNS names.

CREATE TABLE orgs (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  version     integer NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email            text NOT NULL CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+$'),
  display_name     text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
  password_hash    text NOT NULL,
  is_server_admin  boolean NOT NULL DEFAULT false,
  disabled_at      timestamptz,
  version          integer NOT NULL DEFAULT 1,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE org_members (
  org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role        text NOT NULL CHECK (role IN ('admin', 'member')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user_idx ON org_members (user_id);

-- Browser sessions. Only a hash of the token is stored.
CREATE TABLE sessions (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  token_hash    bytea NOT NULL UNIQUE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  revoked_at    timestamptz,
  last_seen_at  timestamptz,
  CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- API keys are scoped to one org and a set of allowed actions; shown once, stored hashed.
CREATE TABLE api_keys (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id        uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  key_prefix    text NOT NULL UNIQUE,
  key_hash      bytea NOT NULL,
  actions       text[] NOT NULL DEFAULT '{}',
  created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  revoked_at    timestamptz,
  last_used_at  timestamptz
);
CREATE INDEX api_keys_org_idx ON api_keys (org_id);

CREATE TABLE sites (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id        uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  transport     text NOT NULL DEFAULT 'websocket' CHECK (transport IN ('websocket', 'wireguard')),
  -- The connector's WireGuard public key (base64), when it uses the wireguard transport.
  wg_public_key text CHECK (wg_public_key IS NULL OR wg_public_key ~ '^[A-Za-z0-9+/]{43}=$'),
  last_seen_at  timestamptz,
  version       integer NOT NULL DEFAULT 1,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT sites_org_name_key UNIQUE (org_id, name)
);

-- Connector credentials. Rotation adds a row and revokes the old one (optionally later,
-- so a connector can be updated without downtime).
CREATE TABLE site_secrets (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  site_id      uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
  secret_hash  bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz
);
CREATE INDEX site_secrets_site_idx ON site_secrets (site_id) WHERE revoked_at IS NULL;

-- Zones the cluster is authoritative for, owned by an org.
CREATE TABLE domains (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  name        text NOT NULL UNIQUE CHECK (name = lower(name) AND name ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  soa_serial  bigint NOT NULL DEFAULT 1 CHECK (soa_serial > 0),
  version     integer NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_org_idx ON domains (org_id);

-- Published services: HTTP by hostname (under one of the org's domains) or TCP/UDP by port.
CREATE TABLE resources (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  protocol    text NOT NULL CHECK (protocol IN ('http', 'tcp', 'udp')),
  -- A domain with resources cannot be deleted until they are moved or removed.
  domain_id   uuid REFERENCES domains (id) ON DELETE RESTRICT,
  hostname    text CHECK (hostname = lower(hostname)),
  proxy_port  integer CHECK (proxy_port BETWEEN 1 AND 65535),
  tls         boolean NOT NULL DEFAULT true,
  enabled     boolean NOT NULL DEFAULT true,
  auth        jsonb NOT NULL DEFAULT '{}'::jsonb,
  version     integer NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT resources_http_shape CHECK (
    (protocol = 'http' AND hostname IS NOT NULL AND domain_id IS NOT NULL AND proxy_port IS NULL)
    OR (protocol IN ('tcp', 'udp') AND proxy_port IS NOT NULL AND hostname IS NULL)
  ),
  CONSTRAINT resources_hostname_key UNIQUE (hostname),
  CONSTRAINT resources_port_key UNIQUE (protocol, proxy_port)
);
CREATE INDEX resources_org_idx ON resources (org_id);
CREATE INDEX resources_domain_idx ON resources (domain_id);

-- Where a resource's traffic goes: a host:port reachable from one site's connector.
CREATE TABLE targets (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  resource_id              uuid NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
  site_id                  uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
  host                     text NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
  port                     integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
  scheme                   text NOT NULL CHECK (scheme IN ('http', 'https', 'tcp', 'udp')),
  enabled                  boolean NOT NULL DEFAULT true,
  weight                   integer NOT NULL DEFAULT 100 CHECK (weight BETWEEN 1 AND 1000),
  health_check             jsonb NOT NULL DEFAULT '{}'::jsonb,
  version                  integer NOT NULL DEFAULT 1,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT targets_unique_endpoint UNIQUE (resource_id, site_id, host, port)
);
CREATE INDEX targets_site_idx ON targets (site_id);

-- ACME accounts, one per directory. The account key is sealed with the cluster key.
CREATE TABLE acme_accounts (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  directory_url  text NOT NULL UNIQUE,
  account_url    text,
  key_sealed     bytea NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);

-- Certificates by hostname. The certificate chain is public; the private key is sealed
-- (AES-256-GCM under the cluster key) and never stored in plaintext.
CREATE TABLE certificates (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  hostname      text NOT NULL UNIQUE CHECK (hostname = lower(hostname)),
  domain_id     uuid REFERENCES domains (id) ON DELETE CASCADE,
  status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'valid', 'failed', 'expired')),
  cert_pem      text,
  key_sealed    bytea,
  not_before    timestamptz,
  not_after     timestamptz,
  order_url     text,
  last_error    text,
  renew_after   timestamptz,
  version       integer NOT NULL DEFAULT 1,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT certificates_valid_shape CHECK (status <> 'valid' OR (cert_pem IS NOT NULL AND key_sealed IS NOT NULL AND not_after IS NOT NULL))
);

-- Fencing tokens: each claim of an actor takes the next epoch here; durable writes carry it
-- and are refused when a newer owner exists.
CREATE TABLE actor_epochs (
  kind               text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9-]*$'),
  actor_id           text NOT NULL CHECK (length(actor_id) BETWEEN 1 AND 255),
  epoch              bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  owner_node         text,
  owner_incarnation  bigint,
  claimed_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, actor_id)
);

-- Append-only record of every change and notable event.
CREATE TABLE audit_log (
  id           bigserial PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT now(),
  actor_type   text NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system', 'node', 'connector')),
  actor_id     text,
  org_id       uuid REFERENCES orgs (id) ON DELETE SET NULL,
  action       text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_.]+$'),
  target_type  text,
  target_id    text,
  node_id      text,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_org_at_idx ON audit_log (org_id, at DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);
