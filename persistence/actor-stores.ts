// The Valkey state actors keep beside their snapshots, one adapter per concern: where a
// site's connector is connected (for the API's site status), the ACME challenge TXT values a
// zone serves, and the target health connectors report. Ephemeral by design: a lost entry
// is rebuilt by the actor that owns it (a reconnect, a re-set challenge, the next report).
import type { Valkey } from './valkey.ts';

export interface SiteSession {
  node: string;
  since: number;
  /** The data plane in use; unset until the connector chose one (WireGuard-capable connectors say which). */
  transport?: 'websocket' | 'wireguard';
}

export type TargetHealth = Array<{ id: string; healthy: boolean }>;

/** Connected sessions: written by the site actor, read by the status API. */
export function siteSessions(valkey: Valkey) {
  return {
    /** Records (or, with null, clears) the site's session and announces where its tunnel is. */
    async publish(siteId: string, session: SiteSession | null): Promise<void> {
      const key = valkey.keys.siteSession(siteId);
      if (session) await valkey.call((c) => c.set(key, JSON.stringify(session)));
      else await valkey.call((c) => c.del(key));
      await valkey.publish('sites', { siteId, node: session?.node ?? null });
    },
  };
}

/** Standby tunnels: written by the node holding one, read by the resource actors for their routes. */
export function siteStandbys(valkey: Valkey) {
  // Deleted only if still this session's: a newer standby elsewhere is not undone by an old one closing.
  const CLEAR = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
  return {
    async set(siteId: string, node: string, session: string): Promise<void> {
      await valkey.call((c) => c.set(valkey.keys.siteStandby(siteId), JSON.stringify({ node, session })));
      await valkey.publish('sites', { siteId, node: null });
    },
    /** `announce: false` where no route can change (the standby's own node took the site). */
    async clear(siteId: string, node: string, session: string, opts?: { announce?: boolean }): Promise<void> {
      await valkey.call((c) => c.eval(CLEAR, 1, valkey.keys.siteStandby(siteId), JSON.stringify({ node, session })));
      if (opts?.announce !== false) await valkey.publish('sites', { siteId, node: null });
    },
    /** Site id -> node holding its standby tunnel. */
    async read(siteIds: string[]): Promise<Map<string, string>> {
      if (siteIds.length === 0) return new Map();
      const values = await valkey.call((c) => c.mget(...siteIds.map((id) => valkey.keys.siteStandby(id))));
      return new Map(siteIds.flatMap((id, i) => (values[i] ? [[id, (JSON.parse(values[i]!) as { node: string }).node] as [string, string]] : [])));
    },
  };
}

/** ACME challenge TXT values by zone: the dns-zone actor's durable-enough memory of them. */
export function acmeTxtStore(valkey: Valkey) {
  return {
    async all(zone: string): Promise<Record<string, string[]>> {
      const raw = await valkey.call((c) => c.hgetall(valkey.keys.acmeTxt(zone)));
      return Object.fromEntries(Object.entries(raw).map(([name, v]) => [name, JSON.parse(v) as string[]]));
    },
    async set(zone: string, name: string, values: string[]): Promise<void> {
      if (values.length) await valkey.call((c) => c.hset(valkey.keys.acmeTxt(zone), name, JSON.stringify(values)));
      else await valkey.call((c) => c.hdel(valkey.keys.acmeTxt(zone), name));
    },
  };
}

/**
 * Target health as the connectors report it: the site actor records it (one hash per site)
 * and announces it when a value changed; the resource actors read it into their routes.
 * Unknown health counts as healthy (a target without checks is always used).
 */
export function targetHealth(valkey: Valkey) {
  // Writes only the values that differ and says how many did (KEYS[1]=hash; ARGV: id, value, ...).
  const SET_CHANGED = `local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) n = n + 1 end
end
return n`;
  return {
    /**
     * Records a report; announces it only when a value changed. A connector reports every
     * target on each (re)connect: in a reconnect storm unchanged reports woke every route of
     * every moved site once more, each reading owners, standbys and health again.
     */
    async publish(siteId: string, targets: TargetHealth): Promise<void> {
      if (targets.length === 0) return;
      const key = valkey.keys.targetHealth(siteId);
      const changed = (await valkey.call((c) => c.eval(SET_CHANGED, 1, key, ...targets.flatMap((t) => [t.id, t.healthy ? '1' : '0'])))) as number;
      if (changed > 0) await valkey.publish('health', { siteId, targets });
    },
    /** Reported health by target id, for the given sites' targets. */
    async read(siteIds: string[]): Promise<Map<string, boolean>> {
      const out = new Map<string, boolean>();
      if (siteIds.length === 0) return out;
      const res = await valkey.call((c) => siteIds.reduce((p, id) => p.hgetall(valkey.keys.targetHealth(id)), c.pipeline()).exec());
      for (const [err, hash] of res ?? []) {
        if (err) throw err;
        for (const [id, v] of Object.entries((hash ?? {}) as Record<string, string>)) out.set(id, v === '1');
      }
      return out;
    },
  };
}

/** Each site's recorded session and reported health, in one round trip (the status API). */
export async function readSiteStates(valkey: Valkey, siteIds: string[]): Promise<Map<string, { session: SiteSession | null; health: TargetHealth }>> {
  if (siteIds.length === 0) return new Map();
  const res = await valkey.call((c) => siteIds.reduce((p, id) => p.get(valkey.keys.siteSession(id)).hgetall(valkey.keys.targetHealth(id)), c.pipeline()).exec());
  return new Map(siteIds.map((id, i) => {
    const session = JSON.parse((res?.[2 * i]?.[1] as string | null) ?? 'null') as SiteSession | null;
    const health = Object.entries((res?.[2 * i + 1]?.[1] ?? {}) as Record<string, string>).map(([targetId, h]) => ({ id: targetId, healthy: h === '1' }));
    return [id, { session, health }];
  }));
}

/** Milliseconds left on each node's lease (-2: gone), in one round trip. */
export async function leaseRemaining(valkey: Valkey, nodeIds: string[]): Promise<Array<number | undefined>> {
  if (nodeIds.length === 0) return [];
  const res = await valkey.call((c) => nodeIds.reduce((p, id) => p.pttl(valkey.keys.lease(id)), c.pipeline()).exec());
  return nodeIds.map((_, i) => res?.[i]?.[1] as number | undefined);
}

/**
 * Resource ports a node could not listen on, and why: written by each node's ingress,
 * shown in the resource's status (one node's failure never stops it, or another node).
 */
export function listenProblems(valkey: Valkey, nodeId: string) {
  return {
    async report(resourceId: string, problem: string | null): Promise<void> {
      const key = valkey.keys.listenProblems(resourceId);
      if (problem) await valkey.call((c) => c.hset(key, nodeId, problem));
      else await valkey.call((c) => c.hdel(key, nodeId));
    },
  };
}

export async function readListenProblems(valkey: Valkey, resourceIds: string[]): Promise<Map<string, Record<string, string>>> {
  if (resourceIds.length === 0) return new Map();
  const res = await valkey.call((c) => resourceIds.reduce((p, id) => p.hgetall(valkey.keys.listenProblems(id)), c.pipeline()).exec());
  return new Map(resourceIds.map((id, i) => [id, (res?.[i]?.[1] ?? {}) as Record<string, string>]));
}
