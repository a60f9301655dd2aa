// Who may open a UDP session. Every session costs a tunnel stream here and a socket at the
// connector, and UDP sources are trivially spoofed, so sessions are capped per resource and
// per source, and new ones are rate limited per source; what is refused is dropped and
// counted, never queued.
import type { Clock } from '../../core/clock.ts';
import { ConnectionCounter, RateBuckets, sourceOf } from '../../core/rate-buckets.ts';

export interface UdpLimits {
  /** Sessions one resource may hold on this node. */
  perResource: number;
  /** Sessions one source (IPv4 address, IPv6 /56) may hold on this node. */
  perSource: number;
  /** New sessions per second one source may open. */
  newPerSecondPerSource: number;
}

export const UDP_LIMITS: UdpLimits = { perResource: 4096, perSource: 64, newPerSecondPerSource: 50 };

export type DropReason = 'resource-full' | 'source-full' | 'rate' | 'backpressure' | 'queue-full' | 'oversized';

export class UdpAdmission {
  readonly #limits: UdpLimits;
  readonly #clock: Clock;
  readonly #buckets: RateBuckets;
  readonly #sessions: ConnectionCounter;

  constructor(limits: UdpLimits, clock: Clock) {
    this.#limits = limits;
    this.#clock = clock;
    this.#buckets = new RateBuckets(limits.newPerSecondPerSource);
    this.#sessions = new ConnectionCounter(limits.perSource);
  }

  /** Decides on a new session from `address` for a resource holding `sessions`; counts it when admitted. */
  admit(address: string, sessions: number): { ok: true; source: string } | { ok: false; reason: DropReason } {
    const source = sourceOf(address);
    if (sessions >= this.#limits.perResource) return { ok: false, reason: 'resource-full' };
    if (!this.#sessions.tryOpen(source)) return { ok: false, reason: 'source-full' };
    if (!this.#buckets.take(source, this.#clock.now())) {
      this.#sessions.closed(source);
      return { ok: false, reason: 'rate' };
    }
    return { ok: true, source };
  }

  /** A session admitted for `source` ended. */
  closed(source: string): void {
    this.#sessions.closed(source);
  }

  /** Sessions held by all sources (tests, metrics). */
  get held(): number {
    return this.#sessions.total;
  }
}
