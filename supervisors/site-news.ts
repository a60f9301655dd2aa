// When this node last heard a site move or report health (the `sites` and `health` channels).
// The checks that exist only as a floor under lost news (a route still naming a node that
// died, a route naming no owner read again) wait while that news flows: in a reconnect storm
// the news itself recomputes the routes, and the checks, each a Valkey read per resource, ran
// by the thousand in the middle of it.
import type { Clock } from '../core/clock.ts';

export class SiteNews {
  readonly #clock: Clock;
  #lastAt = -Infinity;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  heard() {
    this.#lastAt = this.#clock.now();
  }

  /** How long since the last news (Infinity: none yet). */
  quietForMs(): number {
    return this.#clock.now() - this.#lastAt;
  }
}
