// What a change of members means for the routes on this node. A node's death changes no route
// by itself: every reader of a route skips an owner or standby without a live lease (ingress,
// the zones' records, the status API), and the dead node's connectors move their sites, each
// move announced, which recomputes the routes naming them. Recomputing every local route at
// the death instead read owners, standbys and health for every resource on each survivor in
// the middle of the reconnect storm, and republished every route of a site not yet moved.
// Kept as a floor under lost news: once no site has moved for `quietMs` (`capMs` after the
// death at the latest), the routes still naming a gone node are recomputed.
import type { Clock } from '../core/clock.ts';
import { quietWait } from '../core/quiet-wait.ts';

export interface GoneNodesOptions {
  clock: Clock;
  /** How long since a site last moved (supervisors/site-news.ts). */
  quietForMs(): number;
  /** How long without a site move before the check runs. */
  quietMs: number;
  /** The latest the check runs after the first death it covers, news or not. */
  capMs: number;
  /** Recomputes the local routes still naming these nodes. */
  check(nodes: string[]): void;
}

export class GoneNodes {
  readonly #o: GoneNodesOptions;
  readonly #pending = new Set<string>();
  #deadline = 0;
  #timer: { cancel(): void } | undefined;

  constructor(o: GoneNodesOptions) {
    this.#o = o;
  }

  /** Members that left or died. */
  gone(nodes: string[]) {
    if (nodes.length === 0) return;
    if (this.#pending.size === 0) this.#deadline = this.#o.clock.now() + this.#o.capMs;
    for (const n of nodes) this.#pending.add(n);
    this.#arm(this.#o.quietMs);
  }

  stop() {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#pending.clear();
  }

  #arm(ms: number) {
    this.#timer?.cancel();
    this.#timer = this.#o.clock.setTimeout(() => this.#fire(), Math.max(0, Math.min(ms, this.#deadline - this.#o.clock.now())));
  }

  #fire() {
    this.#timer = undefined;
    const wait = quietWait(this.#o.quietForMs(), this.#o.quietMs, this.#o.clock.now(), this.#deadline);
    if (wait > 0) return this.#arm(wait);
    const nodes = [...this.#pending];
    this.#pending.clear();
    this.#o.check(nodes);
  }
}
