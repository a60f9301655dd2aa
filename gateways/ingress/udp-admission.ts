// Who may open a UDP session. Every session costs a tunnel stream here and a socket at the
// connector, and UDP sources are trivially spoofed, so sessions are capped per resource and
// per source, and new ones are rate limited per source; what is refused is dropped and
// counted, never queued.
import type { Clock } from '../../core/clock.ts';
import { RateBuckets, sourceOf } from '../../core/rate-buckets.ts';

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
  readonly #bySource = new Map<string, number>();

  constructor(limits: UdpLimits, clock: Clock) {
    this.#limits = limits;
    this.#clock = clock;
    this.#buckets = new RateBuckets(limits.newPerSecondPerSource);
  }

  /** Decides on a new session from `address` for a resource holding `sessions`; counts it when admitted. */
  admit(address: string, sessions: number): { ok: true; source: string } | { ok: false; reason: DropReason } {
    const source = sourceOf(address);
    if (sessions >= this.#limits.perResource) return { ok: false, reason: 'resource-full' };
    const held = this.#bySource.get(source) ?? 0;
    if (held >= this.#limits.perSource) return { ok: false, reason: 'source-full' };
    if (!this.#buckets.take(source, this.#clock.now())) return { ok: false, reason: 'rate' };
    this.#bySource.set(source, held + 1);
    return { ok: true, source };
  }

  /** A session admitted for `source` ended. */
  closed(source: string): void {
    const n = (this.#bySource.get(source) ?? 1) - 1;
    if (n > 0) this.#bySource.set(source, n);
    else this.#bySource.delete(source);
  }

  /** Sessions held by all sources (tests, metrics). */
  get held(): number {
    let n = 0;
    for (const v of this.#bySource.values()) n += v;
    return n;
  }
}
