// Target health as the connectors report it: the site actor records it in Valkey (one hash
// per site) and announces it on the `health` channel; the resource actors read it into the
// route snapshots. Unknown health counts as healthy (a target without checks is always used).
import type { Valkey } from '../../persistence/valkey.ts';

/** The site actor's side: record and announce. */
export async function publishHealth(valkey: Valkey, siteId: string, targets: Array<{ id: string; healthy: boolean }>): Promise<void> {
  const key = valkey.keys.targetHealth(siteId);
  await valkey.call((c) => c.hset(key, Object.fromEntries(targets.map((t) => [t.id, t.healthy ? '1' : '0']))));
  await valkey.publish('health', { siteId, targets });
}

/** Reported health of the given sites' targets. */
export async function readHealth(valkey: Valkey, siteIds: string[]): Promise<Map<string, boolean>> {
  const out = new Map<string, boolean>();
  if (siteIds.length === 0) return out;
  const res = await valkey.call((c) => siteIds.reduce((p, id) => p.hgetall(valkey.keys.targetHealth(id)), c.pipeline()).exec());
  for (const [err, hash] of res ?? []) {
    if (err) throw err;
    for (const [id, v] of Object.entries((hash ?? {}) as Record<string, string>)) out.set(id, v === '1');
  }
  return out;
}
