// The routes this node's ingress serves: a mirror of the snapshots the resource actors
// publish (route, target health, the node holding each site's tunnel), indexed by hostname
// and port. Lookups are in memory; a connection never waits on Valkey or PostgreSQL.
import { EventEmitter } from 'node:events';
import type { Route } from '../../protocol/route.ts';
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { SnapshotMirror, SnapshotStore } from '../../persistence/snapshots.ts';
import type { Valkey } from '../../persistence/valkey.ts';

export type { Route, RouteTarget } from '../../protocol/route.ts';

export class RouteTable extends EventEmitter {
  readonly #log: Logger;
  readonly #mirror: SnapshotMirror<'routes'>;
  #byHost = new Map<string, Route>();
  #all: Route[] = [];
  #pending: NodeJS.Timeout | undefined;

  constructor(deps: { valkey: Valkey; logger: Logger; clock: Clock }) {
    super();
    this.#log = deps.logger.child({ component: 'routes' });
    this.#mirror = new SnapshotMirror(new SnapshotStore(deps.valkey, 'routes'), () => this.#schedule(), deps.clock);
  }

  async start(): Promise<void> {
    await this.#mirror.start(30_000, (err) => this.#log.warn({ err: err.message }, 'route repair failed; keeping the last table'));
    this.#rebuild();
  }

  async stop() {
    clearTimeout(this.#pending);
    await this.#mirror.stop();
  }

  /** Indexes are rebuilt at most once per tick, however many snapshots arrive together. */
  #schedule() {
    if (this.#pending) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      this.#rebuild();
    }, 0);
  }

  #rebuild() {
    this.#all = [...this.#mirror.values()];
    this.#byHost = new Map(this.#all.filter((r) => r.protocol === 'http' && r.enabled && r.hostname).map((r) => [r.hostname!, r]));
    this.emit('updated', this.#all);
  }

  all(): readonly Route[] {
    return this.#all;
  }

  byId(resourceId: string): Route | undefined {
    return this.#mirror.get(resourceId);
  }

  /** The enabled HTTP resource published under this hostname (lower case). */
  byHost(hostname: string): Route | undefined {
    return this.#byHost.get(hostname);
  }

  /** Age of the newest information, for metrics. */
  get lastUpdate(): number {
    return this.#mirror.lastUpdate;
  }
}

/** Weighted random choice. */
export function pickWeighted<T extends { weight: number }>(items: T[], random = Math.random): T | undefined {
  const total = items.reduce((s, t) => s + t.weight, 0);
  let x = random() * total;
  for (const t of items) if ((x -= t.weight) < 0) return t;
  return items.at(-1);
}

/**
 * The enabled routes none of whose enabled targets has its site's tunnel on a live node:
 * what an operator (or bench:scale) asks to see which resources a node cannot serve now.
 */
export function unroutedIds(routes: readonly Route[], isLive: (node: string) => boolean): string[] {
  const out: string[] = [];
  for (const r of routes) {
    if (!r.enabled) continue;
    if (!r.targets.some((t) => t.enabled && r.owners[t.siteId] !== undefined && isLive(r.owners[t.siteId]!))) out.push(r.resourceId);
  }
  return out;
}
