-- Probe actors: a diagnostic actor kind placed across the cluster like any other. Operators
-- (and `cluster chaos`, tests, benchmarks) create probes to see failover happen: each start
-- of a probe and each message it handles is a fenced write recorded here.
CREATE TABLE probe_actors (
  id            text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
  heartbeat_ms  integer CHECK (heartbeat_ms IS NULL OR heartbeat_ms >= 50),
  starts        integer NOT NULL DEFAULT 0,
  owner_node    text,
  epoch         bigint,
  started_at    timestamptz,
  beats         bigint NOT NULL DEFAULT 0,
  beat_at       timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE probe_messages (
  id        bigserial PRIMARY KEY,
  probe_id  text NOT NULL REFERENCES probe_actors (id) ON DELETE CASCADE,
  msg_id    text NOT NULL,
  node      text NOT NULL,
  epoch     bigint NOT NULL,
  at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX probe_messages_probe_idx ON probe_messages (probe_id);
