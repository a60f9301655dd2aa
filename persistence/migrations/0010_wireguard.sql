-- WireGuard: each node's key pair (the private key sealed under the cluster key, so a
-- restarted node keeps its identity), and one tunnel address per node and per site from the
-- configured range. The address is the primary key, so two allocations racing for the same
-- free address cannot both win; a site's address goes with the site.
CREATE TABLE wireguard_nodes (
  node_id            text PRIMARY KEY,
  private_key_sealed bytea NOT NULL,
  public_key         text NOT NULL UNIQUE,
  created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE wireguard_addresses (
  address      inet PRIMARY KEY CHECK (family(address) = 4 AND masklen(address) = 32),
  node_id      text UNIQUE,
  site_id      uuid UNIQUE REFERENCES sites (id) ON DELETE CASCADE,
  allocated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT wireguard_addresses_one_owner CHECK ((node_id IS NULL) <> (site_id IS NULL))
);

-- A connector's public key belongs to one site.
ALTER TABLE sites ADD CONSTRAINT sites_wg_public_key_key UNIQUE (wg_public_key);
