// Liveness of one control connection, as the connector sees it: a ping every tick, the node
// given up after `silentAfterMs` without a pong. A standby carries no traffic of its own, so
// it is pinged every STANDBY_PING_PACE ticks and given as many times the silence (the pongs of
// thousands of idle standbys were a measurable share of a node's CPU at scale); once
// promoted it is at the primary's pace at once, its silence counted from the promotion.
// A tick that comes late means this process stalled (GC, a starved CPU): it sent no pings
// meanwhile and may not have read the pongs that came, so the stall is not the node's
// silence: it counts from that tick (at 10,000 sites on two cores, load connectors stalled
// a few seconds and left thousands of healthy nodes' connections at once).

/** A standby connection is pinged every this many ticks, and given as many times the silence. */
export const STANDBY_PING_PACE = 3;

export class Liveness {
  #heard: number;
  #tick = 0;
  #tickedAt: number | undefined;
  #wasPrimary: boolean;
  readonly #silentAfterMs: number;
  readonly #everyMs: number;

  /** `everyMs`: how often `tick` is called. */
  constructor(now: number, primary: boolean, silentAfterMs: number, everyMs: number) {
    this.#heard = now;
    this.#wasPrimary = primary;
    this.#silentAfterMs = silentAfterMs;
    this.#everyMs = everyMs;
  }

  /** A pong arrived. */
  heard(now: number): void {
    this.#heard = now;
  }

  silentFor(now: number): number {
    return now - this.#heard;
  }

  /** One tick of the interval: give the node up, ping it, or wait. */
  tick(now: number, primary: boolean): 'silent' | 'ping' | 'wait' {
    const late = this.#tickedAt !== undefined && now - this.#tickedAt > 2 * this.#everyMs;
    this.#tickedAt = now;
    if (late) [this.#heard, this.#tick] = [now, 0]; // this process stalled: not the node's silence
    if (primary && !this.#wasPrimary) [this.#heard, this.#tick] = [now, 0];
    this.#wasPrimary = primary;
    const pace = primary ? 1 : STANDBY_PING_PACE;
    if (now - this.#heard > this.#silentAfterMs * pace) return 'silent';
    return this.#tick++ % pace === 0 ? 'ping' : 'wait';
  }
}
