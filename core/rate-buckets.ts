// Token buckets per traffic source, for limits on what anonymous clients may cost a node
// (DNS answers, new UDP sessions). Memory is bounded without ever resetting everyone.
import { isIPv6 } from 'node:net';

/** A source as rate limits count it: an IPv4 address, or the /56 of an IPv6 one (what one site is given). */
export function sourceOf(address: string): string {
  if (!address.includes(':')) return address; // IPv4, the common case: no parsing on the hot path
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head, tail] = address.replace(/%.*$/, '').split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  const g = groups.map((x) => parseInt(x || '0', 16));
  return prefix56(g[0] ?? 0, g[1] ?? 0, g[2] ?? 0, g[3] ?? 0);
}

/** The key of an IPv6 source's /56, from its first four 16-bit groups. */
export function prefix56(g0: number, g1: number, g2: number, g3: number): string {
  return `${g0.toString(16)}:${g1.toString(16)}:${g2.toString(16)}:${(g3 & 0xff00).toString(16)}::/56`;
}

/**
 * Token buckets per source, in bounded memory: past `maxSources` the least recently seen
 * source is forgotten, one at a time, so a flood of spoofed sources cannot reset everyone's
 * bucket (a busy source stays recent and keeps its count).
 */
export class RateBuckets {
  readonly #b = new Map<string, { tokens: number; at: number; order: number }>();
  /** Sources added or moved to the end so far: an entry's `order` says how recent its place is. */
  #moves = 0;
  constructor(
    private readonly rate: number,
    private readonly maxSources = 100_000,
  ) {}

  take(key: string, now: number): boolean {
    if (this.rate <= 0) return true;
    let b = this.#b.get(key);
    if (!b) {
      if (this.#b.size >= this.maxSources) this.#b.delete(this.#b.keys().next().value!);
      b = { tokens: this.rate, at: now, order: this.#moves++ };
      this.#b.set(key, b);
    } else if (this.#moves - b.order > this.maxSources / 4) {
      // The map's order is recency: the first entry goes when the map is full. A source is
      // moved to the end only once a quarter of the map has come in after it, so a busy
      // source costs a lookup per packet, not a map write (a tenth of a DNS answer's own
      // CPU), and one that asks at least once per three quarters of maxSources new sources
      // is never the first.
      this.#b.delete(key);
      this.#b.set(key, b);
      b.order = this.#moves++;
    }
    b.tokens = Math.min(this.rate, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.#b.size;
  }
}

/** Open connections per source, capped: a source at its cap is refused until one closes. */
export class ConnectionCounter {
  readonly #open = new Map<string, number>();
  constructor(private readonly perSource: number) {}

  /** Counts a new connection from `source`; false (and not counted) when it is at its cap. */
  tryOpen(source: string): boolean {
    const n = this.#open.get(source) ?? 0;
    if (n >= this.perSource) return false;
    this.#open.set(source, n + 1);
    return true;
  }

  closed(source: string): void {
    const n = (this.#open.get(source) ?? 1) - 1;
    if (n > 0) this.#open.set(source, n);
    else this.#open.delete(source);
  }

  /** Connections (or sessions) held by all sources. */
  get total(): number {
    let n = 0;
    for (const v of this.#open.values()) n += v;
    return n;
  }

  /** Counts a socket for its life; its source, or undefined (and the socket destroyed) when that source is at its cap. */
  admit(sock: { remoteAddress?: string | undefined; destroy(): void; once(event: 'close', fn: () => void): unknown }): string | undefined {
    const source = sourceOf(sock.remoteAddress ?? '');
    if (!this.tryOpen(source)) {
      sock.destroy();
      return undefined;
    }
    sock.once('close', () => this.closed(source));
    return source;
  }
}
