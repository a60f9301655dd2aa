// Keep-alive connections to HTTP targets. Opening a tunnel stream costs the connector a new
// TCP connection to the target (and, from another node, a new peer-link connection), so the
// ingress keeps finished request streams open and reuses them, newest first, per path
// (target, and the node it goes through). An idle stream that closes or says anything is
// dropped; one idle past the timeout is closed by a sweep (no timer per request).
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';

export interface UpstreamPath {
  /** Pool key: target id and address, plus the node the stream goes through. */
  key: string;
  tls: boolean;
  servername: string;
  open(): Promise<Duplex>;
}

interface Idle {
  key: string;
  stream: Duplex;
  since: number;
}

const IDLE_EVENTS = ['data', 'close', 'end', 'error'] as const;

export class UpstreamPool {
  readonly #idle = new Map<string, Idle[]>();
  /** Streams carrying an exchange now, by key (dropNode ends them too). */
  readonly #busy = new Map<string, Set<Duplex>>();
  readonly #maxIdle: number;
  readonly #idleMs: number;
  readonly #sweep: NodeJS.Timeout;
  /** Idle entries by stream, so one listener (not a closure per release) finds its entry. */
  readonly #idleOf = new Map<Duplex, Idle>();
  /** While idle the target has nothing to say: a byte, an end or a close means the stream is done. */
  readonly #onIdleEvent: (this: Duplex) => void;

  constructor(options: { maxIdlePerPath?: number; idleTimeoutMs?: number } = {}) {
    this.#maxIdle = options.maxIdlePerPath ?? 32;
    this.#idleMs = options.idleTimeoutMs ?? 30_000;
    this.#sweep = setInterval(() => this.#expire(), Math.min(5000, this.#idleMs)).unref();
    const pool = this;
    this.#onIdleEvent = function (this: Duplex) {
      pool.#gone(this);
    };
  }

  /** A stream to the path's target: a kept-alive one if there is one (`reused`), else a new one. */
  async acquire(path: UpstreamPath): Promise<{ stream: Duplex; reused: boolean }> {
    const list = this.#idle.get(path.key);
    let idle: Idle | undefined;
    while ((idle = list?.pop())) {
      this.#unwatch(idle);
      if (!idle.stream.destroyed && idle.stream.writable) return { stream: this.#hold(path.key, idle.stream), reused: true };
    }
    const raw = await path.open();
    // Targets inside a site commonly use private or self-signed certificates.
    const stream: Duplex = path.tls ? tlsConnect({ socket: raw as Socket, servername: path.servername, rejectUnauthorized: false }) : raw;
    if (path.tls) await new Promise<void>((resolve, reject) => (stream as TLSSocket).once('secureConnect', resolve).once('error', reject));
    return { stream: this.#hold(path.key, stream), reused: false };
  }

  #hold(key: string, stream: Duplex): Duplex {
    let busy = this.#busy.get(key);
    if (!busy) this.#busy.set(key, (busy = new Set()));
    busy.add(stream);
    return stream;
  }

  /** The exchange on `stream` is over: kept for the next one if `reusable`, else closed. */
  release(key: string, stream: Duplex, reusable: boolean) {
    const busy = this.#busy.get(key);
    busy?.delete(stream);
    if (busy?.size === 0) this.#busy.delete(key);
    let list = this.#idle.get(key);
    if (!reusable || stream.destroyed || !stream.writable || (list?.length ?? 0) >= this.#maxIdle) return void stream.destroy();
    if (!list) this.#idle.set(key, (list = []));
    const entry: Idle = { key, stream, since: Date.now() };
    this.#idleOf.set(stream, entry);
    for (const e of IDLE_EVENTS) stream.on(e, this.#onIdleEvent);
    list.push(entry);
  }

  #unwatch(entry: Idle) {
    this.#idleOf.delete(entry.stream);
    for (const e of IDLE_EVENTS) entry.stream.off(e, this.#onIdleEvent);
  }

  #gone(stream: Duplex) {
    const entry = this.#idleOf.get(stream);
    if (!entry) return;
    this.#unwatch(entry);
    const list = this.#idle.get(entry.key);
    const i = list?.indexOf(entry) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    if (list?.length === 0) this.#idle.delete(entry.key);
    stream.destroy();
  }

  #expire() {
    const before = Date.now() - this.#idleMs;
    for (const [key, list] of this.#idle) {
      const stale = list.filter((e) => e.since <= before);
      if (stale.length === 0) continue;
      const kept = list.filter((e) => e.since > before);
      if (kept.length) this.#idle.set(key, kept);
      else this.#idle.delete(key);
      for (const e of stale) (this.#unwatch(e), e.stream.destroy());
    }
  }

  /**
   * Ends every stream through `node` (it stopped answering), idle or busy: requests waiting on
   * them fail now instead of hanging, and a bodiless one is sent again on the way chosen next.
   */
  dropNode(node: string) {
    const through = (key: string) => key.endsWith(`@${node}`);
    for (const [key, list] of this.#idle) {
      if (!through(key)) continue;
      this.#idle.delete(key);
      for (const e of list) (this.#unwatch(e), e.stream.destroy());
    }
    for (const [key, busy] of this.#busy) if (through(key)) for (const s of busy) s.destroy();
  }

  /** Idle connections held, for metrics and tests. */
  idle(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  close() {
    clearInterval(this.#sweep);
    for (const list of this.#idle.values()) for (const e of list) (this.#unwatch(e), e.stream.destroy());
    this.#idle.clear();
    for (const busy of this.#busy.values()) for (const s of busy) s.destroy();
    this.#busy.clear();
  }
}
