-- OpenID Connect identity providers: for the whole cluster (org_id NULL, server admins) or for
-- one org (its admins). The client secret is sealed with the cluster key. Users who sign in
-- through one are cluster users linked by the provider's subject.
CREATE TABLE identity_providers (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id                uuid REFERENCES orgs (id) ON DELETE CASCADE,
  name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  issuer_url            text NOT NULL CHECK (issuer_url ~ '^https://'),
  client_id             text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 500),
  client_secret_sealed  bytea NOT NULL,
  scopes                text NOT NULL DEFAULT 'openid email profile',
  -- The claim whose value (an e-mail address) names the user.
  user_claim            text NOT NULL DEFAULT 'email',
  -- Org providers: the claim holding group or role names, and which of them mean which org role.
  role_claim            text,
  role_map              jsonb NOT NULL DEFAULT '{}'::jsonb,
  auto_provision        boolean NOT NULL DEFAULT false,
  enabled               boolean NOT NULL DEFAULT true,
  version               integer NOT NULL DEFAULT 1,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_providers_org_idx ON identity_providers (org_id);

CREATE TABLE user_identities (
  provider_id    uuid NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE,
  subject        text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at     timestamptz NOT NULL DEFAULT now(),
  last_login_at  timestamptz,
  PRIMARY KEY (provider_id, subject)
);
CREATE INDEX user_identities_user_idx ON user_identities (user_id);
