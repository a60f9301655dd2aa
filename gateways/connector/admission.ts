// Admission of new connector registrations. At a mass start (10,000 sites on three nodes)
// a node accepted every upgrade at once, fell seconds behind, missed its lease and fenced,
// which sent its sites back at the others: the start never converged. A node now takes at most
// MAX_REGISTERING registrations in progress, and none while its event loop runs more than
// SHED_LAG_MS late; the rest get a cheap 503 (CLUSTER_ERR_NODE_OVERLOADED) and come back after
// their jittered backoff. Connections already registered are never shed.
// A standby (a second tunnel of a site online elsewhere) is deferred sooner: past
// STANDBY_SHED_LAG_MS, and while this node is taking promotions (within STANDBY_AFTER_PROMOTION_MS
// of the last). When a node dies, its sites' promotions (the way they come back online) come
// over connections already open, and the new standbys (one per promoted site, and one per site
// whose standby was on the dead node) took the survivors' CPU from them in the middle of it.

/** Registrations in progress (upgraded, not yet registered) a node takes at once. */
export const MAX_REGISTERING = 256;
/** Event-loop lag (worst over the last two seconds) past which a node takes no new registrations. */
export const SHED_LAG_MS = 1000;
/** Event-loop lag past which a node defers standby registrations (a node at rest with 3,300 sites: p99 under 30 ms). */
export const STANDBY_SHED_LAG_MS = 250;
/** Standby registrations wait until this node has taken no promotion for this long. */
export const STANDBY_AFTER_PROMOTION_MS = 2000;

export type RefusedBecause = 'busy' | 'lagging' | 'standby-deferred';

export class Admission {
  #inProgress = 0;
  readonly #max: number;
  readonly #lagMs: () => number;
  readonly #onRefused: (reason: RefusedBecause) => void;
  readonly #now: () => number;
  #promotedAt = -Infinity;

  /** `onRefused`: told of each refusal (the node counts them in cluster_connector_registrations_refused_total). */
  constructor(o: { lagMs: () => number; max?: number; onRefused?: (reason: RefusedBecause) => void; now?: () => number }) {
    this.#lagMs = o.lagMs;
    this.#now = o.now ?? Date.now;
    this.#max = o.max ?? MAX_REGISTERING;
    this.#onRefused = o.onRefused ?? (() => {});
  }

  /** A standby connection here took its site (a promotion): standbys wait a while. */
  promoted() {
    this.#promotedAt = this.#now();
  }

  get inProgress(): number {
    return this.#inProgress;
  }

  /** A slot for one registration, released exactly once by the returned function; undefined when refused. */
  enter(role: 'primary' | 'standby' = 'primary'): (() => void) | undefined {
    if (this.#inProgress >= this.#max) return void this.#onRefused('busy');
    const lag = this.#lagMs();
    if (lag > SHED_LAG_MS) return void this.#onRefused('lagging');
    if (role === 'standby' && (lag > STANDBY_SHED_LAG_MS || this.#now() - this.#promotedAt < STANDBY_AFTER_PROMOTION_MS)) return void this.#onRefused('standby-deferred');
    this.#inProgress++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inProgress--;
    };
  }
}
