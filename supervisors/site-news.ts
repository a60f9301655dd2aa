// When this node last heard a site move or report health (the `sites` and `health` channels).
// The checks that exist only as a floor under lost news (a route still naming a node that
// died, a route naming no owner read again) wait while that news flows: in a reconnect storm
// the news itself recomputes the routes, and the checks, each a Valkey read per resource, ran
// by the thousand in the middle of it.
import type { Clock } from '../core/clock.ts';

export class SiteNews {
  readonly #clock: Clock;
  #lastAt = -Infinity;
  #lastSite: string | undefined;
  /** The last news of any site other than `#lastSite`. */
  #otherAt = -Infinity;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  heard(siteId?: string) {
    const now = this.#clock.now();
    if (siteId === undefined || siteId !== this.#lastSite) this.#otherAt = this.#lastAt;
    this.#lastSite = siteId;
    this.#lastAt = now;
  }

  /** How long since the last news (Infinity: none yet). */
  quietForMs(): number {
    return this.#clock.now() - this.#lastAt;
  }

  /**
   * How long since news of any site but the latest one's: quiet but for one site. A zone
   * following one site's failover waits while sites move, but that failover is news itself
   * (its move, then its new standby); timed from it, every lone failover waited the whole
   * quiet period (DNS named a dead node's replacement after 1.1 s instead of about 0.1).
   */
  quietButForOneSiteMs(): number {
    return this.#clock.now() - this.#otherAt;
  }
}
