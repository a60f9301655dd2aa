// Keep-alive connections to HTTP targets. Opening a tunnel stream costs the connector a new
// TCP connection to the target (and, from another node, a new peer-link connection), so the
// ingress keeps finished request streams open and reuses them, newest first, per path
// (target, and the node it goes through). An idle stream that closes or says anything is
// dropped; one idle past the timeout is closed by a sweep (no timer per request).
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { setUser, type StreamUser } from './upstream-exchange.ts';

export interface UpstreamPath {
  /** Pool key: target id and address, plus the node the stream goes through. */
  key: string;
  tls: boolean;
  servername: string;
  open(): Promise<Duplex>;
}

/** A stream kept idle: while idle the target has nothing to say, so a byte, an end or a close means it is done. */
class Idle implements StreamUser {
  constructor(
    readonly pool: UpstreamPool,
    readonly key: string,
    readonly stream: Duplex,
    readonly since: number,
  ) {}
  data() {
    this.pool.gone(this);
  }
  ended() {
    this.pool.gone(this);
  }
  closed() {
    this.pool.gone(this);
  }
  failed() {
    this.pool.gone(this);
  }
}

export class UpstreamPool {
  readonly #idle = new Map<string, Idle[]>();
  /**
   * Every open stream by key, idle or carrying an exchange (dropNode ends them all): added when
   * opened, removed when closed, so a request that takes and releases a kept stream touches
   * no set (two set operations and a map lookup per request before).
   */
  readonly #streams = new Map<string, Set<Duplex>>();
  readonly #maxIdle: number;
  readonly #idleMs: number;
  readonly #sweep: NodeJS.Timeout;

  constructor(options: { maxIdlePerPath?: number; idleTimeoutMs?: number } = {}) {
    // As many as a busy target's concurrent requests: at 32, 64 clients of one target closed
    // and reopened a stream and a target connection for half their requests, at twice the CPU
    // per request, and each stream dropped was a reset that cost the tunnel (stream-cancel.ts).
    this.#maxIdle = options.maxIdlePerPath ?? 256;
    this.#idleMs = options.idleTimeoutMs ?? 30_000;
    this.#sweep = setInterval(() => this.#expire(), Math.min(5000, this.#idleMs)).unref();
  }

  /** A kept-alive stream to the target under `key`, if there is one (no promise: the common case stays synchronous). */
  take(key: string): Duplex | undefined {
    const list = this.#idle.get(key);
    let idle: Idle | undefined;
    while ((idle = list?.pop())) {
      this.#unwatch(idle);
      if (!idle.stream.destroyed && idle.stream.writable) return idle.stream;
    }
    return undefined;
  }

  /** A new stream to the path's target (TLS to it when it asks for it), tracked until it closes. */
  async open(path: UpstreamPath): Promise<Duplex> {
    const raw = await path.open();
    // Targets inside a site commonly use private or self-signed certificates.
    const stream: Duplex = path.tls ? tlsConnect({ socket: raw as Socket, servername: path.servername, rejectUnauthorized: false }) : raw;
    if (path.tls) await new Promise<void>((resolve, reject) => (stream as TLSSocket).once('secureConnect', resolve).once('error', reject));
    return this.#track(path.key, stream);
  }

  #track(key: string, stream: Duplex): Duplex {
    let open = this.#streams.get(key);
    if (!open) this.#streams.set(key, (open = new Set()));
    open.add(stream);
    stream.once('close', () => {
      open.delete(stream);
      if (open.size === 0 && this.#streams.get(key) === open) this.#streams.delete(key);
    });
    return stream;
  }

  /** The exchange on `stream` is over: kept for the next one if `reusable`, else closed. */
  release(key: string, stream: Duplex, reusable: boolean) {
    let list = this.#idle.get(key);
    if (!reusable || stream.destroyed || !stream.writable || (list?.length ?? 0) >= this.#maxIdle) return void stream.destroy();
    if (!list) this.#idle.set(key, (list = []));
    const entry = new Idle(this, key, stream, Date.now());
    setUser(stream, entry);
    list.push(entry);
  }

  #unwatch(entry: Idle) {
    setUser(entry.stream, null);
  }

  /** An idle stream said something or closed: it is dropped. */
  gone(entry: Idle) {
    const { stream } = entry;
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
    for (const [key, open] of this.#streams) if (through(key)) for (const s of open) s.destroy();
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
    for (const open of this.#streams.values()) for (const s of open) s.destroy();
    this.#streams.clear();
  }
}
