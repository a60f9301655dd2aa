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
// Standbys hold at most half the slots: in a 10,000-site storm the
// survivors refused 5,582 registrations as busy, the slots taken by standbys registering at
// the pace of a saturated node; a site that comes back by registering anew (no standby ready)
// must find room among them.
// One site holds at most MAX_REGISTERING_PER_SITE of the slots: a token is good for many
// upgrades, and one site's connector (or whoever holds its secret) opening upgrades it never
// registers would otherwise keep all 256 taken and every other tenant's sites out.

/** Registrations in progress (upgraded, not yet registered) a node takes at once. */
export const MAX_REGISTERING = 256;
/**
 * Registrations in progress one site may hold at once: its primary and its standby, each with
 * a retry whose earlier upgrade has not closed yet.
 */
export const MAX_REGISTERING_PER_SITE = 4;
/** Event-loop lag (worst over the last two seconds) past which a node takes no new registrations. */
export const SHED_LAG_MS = 1000;
/** Event-loop lag past which a node defers standby registrations (a node at rest with 3,300 sites: p99 under 30 ms). */
export const STANDBY_SHED_LAG_MS = 250;
/** Standby registrations wait until this node has taken no promotion for this long. */
export const STANDBY_AFTER_PROMOTION_MS = 2000;

export type RefusedBecause = 'busy' | 'site-busy' | 'lagging' | 'standby-deferred';

export class Admission {
  #inProgress = 0;
  #standbysInProgress = 0;
  /** Registrations in progress by site (absent: none). */
  readonly #bySite = new Map<string, number>();
  readonly #max: number;
  readonly #maxPerSite: number;
  readonly #lagMs: () => number;
  readonly #onRefused: (reason: RefusedBecause, role: 'primary' | 'standby') => void;
  readonly #now: () => number;
  #promotedAt = -Infinity;

  /** `onRefused`: told of each refusal (the node counts them in cluster_connector_registrations_refused_total). */
  constructor(o: { lagMs: () => number; max?: number; maxPerSite?: number; onRefused?: (reason: RefusedBecause, role: 'primary' | 'standby') => void; now?: () => number }) {
    this.#lagMs = o.lagMs;
    this.#now = o.now ?? Date.now;
    this.#max = o.max ?? MAX_REGISTERING;
    this.#maxPerSite = o.maxPerSite ?? MAX_REGISTERING_PER_SITE;
    this.#onRefused = o.onRefused ?? (() => {});
  }

  /** A standby connection here took its site (a promotion): standbys wait a while. */
  promoted() {
    this.#promotedAt = this.#now();
  }

  get inProgress(): number {
    return this.#inProgress;
  }

  /**
   * A slot for one registration of `siteId`, released exactly once by the returned function;
   * or why it was refused.
   */
  enter(siteId: string, role: 'primary' | 'standby' = 'primary'): (() => void) | RefusedBecause {
    const ofSite = this.#bySite.get(siteId) ?? 0;
    // Before the node-wide bound: a site over its own share is told so even when the node is full.
    if (ofSite >= this.#maxPerSite) return this.#refuse('site-busy', role);
    const lag = this.#lagMs();
    const standby = role === 'standby';
    // A standby is deferred first: while promotions run, that is why it waits, however full the node.
    if (standby && (lag > STANDBY_SHED_LAG_MS || this.#now() - this.#promotedAt < STANDBY_AFTER_PROMOTION_MS)) return this.#refuse('standby-deferred', role);
    if (this.#inProgress >= this.#max || (standby && this.#standbysInProgress >= this.#max / 2)) return this.#refuse('busy', role);
    if (lag > SHED_LAG_MS) return this.#refuse('lagging', role);
    this.#inProgress++;
    if (standby) this.#standbysInProgress++;
    this.#bySite.set(siteId, ofSite + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inProgress--;
      if (standby) this.#standbysInProgress--;
      const left = (this.#bySite.get(siteId) ?? 1) - 1;
      if (left > 0) this.#bySite.set(siteId, left);
      else this.#bySite.delete(siteId);
    };
  }

  #refuse(reason: RefusedBecause, role: 'primary' | 'standby'): RefusedBecause {
    this.#onRefused(reason, role);
    return reason;
  }
}
