// What a change of members means for the routes on this node. A node's death changes no route
// by itself: every reader of a route skips an owner or standby without a live lease (ingress,
// the zones' records, the status API), and the dead node's connectors move their sites, each
// move announced, which recomputes the routes naming them. Recomputing every local route at
// the death instead read owners, standbys and health for every resource on each survivor in
// the middle of the reconnect storm, and republished every route of a site not yet moved.
// Kept as a floor under lost news: once no site has moved for `quietMs` (`capMs` after the
// death at the latest), the routes still naming a gone node are recomputed.
import type { Clock } from '../core/clock.ts';
import { QuietBatch } from './quiet-batch.ts';

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
  readonly #batch: QuietBatch<string>;

  constructor(o: GoneNodesOptions) {
    this.#batch = new QuietBatch({ ...o, run: (nodes) => o.check(nodes) });
  }

  /** Members that left or died. */
  gone(nodes: string[]) {
    this.#batch.add(nodes);
  }

  stop() {
    this.#batch.stop();
  }
}
