// The routes this node's ingress serves: a mirror of the snapshots the resource actors
// publish (route, target health, the node holding each site's tunnel), indexed by hostname
// and port. Lookups are in memory; a connection never waits on Valkey or PostgreSQL.
import { EventEmitter } from 'node:events';
import type { Route } from '../../protocol/route.ts';
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { SnapshotMirror, SnapshotStore, type Snapshot, type SnapshotSource } from '../../persistence/snapshots.ts';
import type { Valkey } from '../../persistence/valkey.ts';

export type { Route, RouteTarget } from '../../protocol/route.ts';

/** One route that changed in a batch of snapshots: what it was and what it is (undefined: none). */
export interface RouteChange {
  before: Route | undefined;
  after: Route | undefined;
}

export class RouteTable extends EventEmitter {
  readonly #log: Logger;
  readonly #mirror: SnapshotMirror<'routes'>;
  /** Enabled HTTP routes by hostname, and the hostname each route holds there. */
  readonly #byHost = new Map<string, Route>();
  readonly #hostOf = new Map<string, string>();
  /** Made on demand, dropped on a change: most batches are read by no one in full. */
  #all: Route[] | undefined;
  /** Changes since the last 'updated', by route id: what each was before the first of them. */
  #changed = new Map<string, Route | undefined>();
  #pending: NodeJS.Timeout | undefined;

  /** `source`: where the snapshots come from when not from Valkey (the ingress thread's, passed on by the main thread). */
  constructor(deps: { valkey: Valkey; logger: Logger; clock: Clock } | { source: SnapshotSource<Route>; logger: Logger; clock: Clock }) {
    super();
    this.#log = deps.logger.child({ component: 'routes' });
    const source = 'source' in deps ? deps.source : new SnapshotStore(deps.valkey, 'routes');
    this.#mirror = new SnapshotMirror(source, (id, data, before) => this.#apply(id, data, before), deps.clock);
  }

  async start(): Promise<void> {
    await this.#mirror.start(30_000, (err) => this.#log.warn({ err: err.message }, 'route repair failed; keeping the last table'));
    // Listeners attached after the first snapshots came in see the whole table once.
    for (const r of this.#mirror.values()) if (!this.#changed.has(r.resourceId)) this.#changed.set(r.resourceId, undefined);
    this.#flush();
  }

  async stop() {
    clearTimeout(this.#pending);
    await this.#mirror.stop();
  }

  /**
   * One snapshot: the hostname index is updated in place (a full rebuild per snapshot was
   * quadratic when thousands of routes are published together), and listeners hear of every
   * change of one tick together, with what each route was before.
   */
  #apply(id: string, data: Route | undefined, before: Route | undefined) {
    const host = this.#hostOf.get(id);
    if (host !== undefined && this.#byHost.get(host)?.resourceId === id) this.#byHost.delete(host);
    this.#hostOf.delete(id);
    if (data && data.protocol === 'http' && data.enabled && data.hostname) {
      this.#byHost.set(data.hostname, data);
      this.#hostOf.set(id, data.hostname);
    }
    this.#all = undefined;
    if (!this.#changed.has(id)) this.#changed.set(id, before);
    this.#pending ??= setTimeout(() => this.#flush(), 0);
  }

  #flush() {
    clearTimeout(this.#pending);
    this.#pending = undefined;
    const changes: RouteChange[] = [...this.#changed].map(([id, before]) => ({ before, after: this.#mirror.get(id) }));
    this.#changed = new Map();
    if (changes.length) this.emit('updated', changes);
  }

  all(): readonly Route[] {
    return (this.#all ??= [...this.#mirror.values()]);
  }

  /** Every route snapshot held, tombstones included (passed on to the ingress thread). */
  snapshots(): IterableIterator<Snapshot<Route>> {
    return this.#mirror.snapshots();
  }

  /** The route's snapshot as this node holds it (version and data). */
  snapshot(resourceId: string): Snapshot<Route> | undefined {
    return this.#mirror.snapshot(resourceId);
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
