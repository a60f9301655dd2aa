// What every node's ingress knows of target health: reported by the connectors, kept by the
// site actors in Valkey (one hash per site) and announced on the `health` channel. Unknown
// health counts as healthy (a target without checks is always used).
import type { Logger } from '../../core/log.ts';
import type { Valkey } from '../../persistence/valkey.ts';
import type { RouteTable } from './routes.ts';

export class TargetHealth {
  readonly #valkey: Valkey;
  readonly #log: Logger;
  readonly #healthy = new Map<string, boolean>();

  constructor(deps: { valkey: Valkey; logger: Logger }) {
    this.#valkey = deps.valkey;
    this.#log = deps.logger.child({ component: 'target-health' });
  }

  async start(routes: RouteTable): Promise<void> {
    await this.#valkey.subscribe('health', (m) => {
      for (const t of (m as { targets?: Array<{ id: string; healthy: boolean }> }).targets ?? []) this.#healthy.set(t.id, t.healthy);
    });
    const load = () => void this.#load(routes).catch((err) => this.#log.warn({ err: (err as Error).message }, 'health reload failed'));
    routes.on('updated', load);
    load();
  }

  async #load(routes: RouteTable) {
    const sites = [...new Set(routes.all().flatMap((r) => r.targets.map((t) => t.siteId)))];
    if (sites.length === 0) return;
    const res = await this.#valkey.call((c) => sites.reduce((p, id) => p.hgetall(this.#valkey.keys.targetHealth(id)), c.pipeline()).exec());
    for (const [, hash] of res ?? []) for (const [id, v] of Object.entries((hash ?? {}) as Record<string, string>)) this.#healthy.set(id, v === '1');
  }

  healthy(targetId: string): boolean {
    return this.#healthy.get(targetId) ?? true;
  }
}

/** The site actor's side: record and announce. */
export async function publishHealth(valkey: Valkey, siteId: string, targets: Array<{ id: string; healthy: boolean }>): Promise<void> {
  const key = valkey.keys.targetHealth(siteId);
  await valkey.call((c) => c.hset(key, Object.fromEntries(targets.map((t) => [t.id, t.healthy ? '1' : '0']))));
  await valkey.publish('health', { siteId, targets });
}
