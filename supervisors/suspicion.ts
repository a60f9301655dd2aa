// A fast, local view of which peers are answering, for routing traffic only: DNS answers and
// the ingress's choice of node leave out peers this node suspects. It never moves an actor:
// ownership stays with the lease (membership.ts), which is slower on purpose.
//
// SWIM-style: every peer link is pinged every `probeEveryMs`; a peer silent for `afterMs` is
// not suspected at once, first up to two other peers are asked when they last heard it (an
// indirect probe), so a path that fails only between two nodes does not make either look
// dead. A peer is cleared the moment it is heard again. If this node itself stalled (a long
// GC pause, SIGSTOP), every peer looks silent when it wakes: a tick that comes late resets the
// clocks instead of suspecting everyone.
import { EventEmitter } from 'node:events';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';

export interface SuspicionOptions {
  clock: Clock;
  logger: Logger;
  /** Silence after which a peer is probed indirectly, then suspected. */
  afterMs: number;
  /** How often peers are pinged and silences checked. */
  probeEveryMs: number;
  /** Live peers (this node excluded). */
  peers: () => string[];
  /** Sends the heartbeat pings (the peer link answers them; `heard` is called with each answer). */
  ping: () => void;
  /** Asks `via` how long ago it heard `about` (null: never, or not a peer of it). */
  askVia: (via: string, about: string, timeoutMs: number) => Promise<number | null>;
}

export class Suspicion extends EventEmitter {
  readonly #o: SuspicionOptions;
  readonly #log: Logger;
  readonly #heard = new Map<string, number>();
  readonly #suspected = new Set<string>();
  readonly #probing = new Set<string>();
  #lastTick = 0;
  #timer: { cancel(): void } | undefined;
  /** Suspicions raised since start, by peer (the metric; any in a fault-free run is a false one). */
  readonly raised = new Map<string, number>();
  /** Bumped whenever the suspected set changes (DNS answer caches key on it). */
  generation = 0;

  constructor(o: SuspicionOptions) {
    super();
    this.#o = o;
    this.#log = o.logger.child({ component: 'suspicion' });
  }

  start() {
    this.#lastTick = this.#o.clock.now();
    this.#timer = this.#o.clock.setInterval(() => void this.tick(), this.#o.probeEveryMs);
  }

  stop() {
    this.#timer?.cancel();
  }

  /** Something arrived from `node` (a pong, a message): it is answering. */
  heard(node: string) {
    this.#heard.set(node, this.#o.clock.now());
    if (this.#suspected.delete(node)) {
      this.generation++;
      this.#log.info({ peer: node }, 'peer answers again; no longer suspected');
      this.emit('change');
    }
  }

  /** Milliseconds since `node` was last heard; null when never. */
  heardAgo(node: string): number | null {
    const at = this.#heard.get(node);
    return at === undefined ? null : this.#o.clock.now() - at;
  }

  isSuspected(node: string): boolean {
    return this.#suspected.has(node);
  }

  get suspected(): ReadonlySet<string> {
    return this.#suspected;
  }

  async tick(): Promise<void> {
    const now = this.#o.clock.now();
    const stalledMs = now - this.#lastTick;
    const late = stalledMs > this.#o.afterMs;
    this.#lastTick = now;
    const peers = this.#o.peers();
    const known = new Set(peers);
    for (const id of [...this.#heard.keys()]) if (!known.has(id)) this.#forget(id);
    for (const id of peers) {
      // A new peer, or our own stall: the silence is not the peer's.
      if (late || !this.#heard.has(id)) this.#heard.set(id, now);
    }
    if (late) this.#log.warn({ stalledMs }, 'this node stalled; peer silences restarted');
    this.#o.ping();
    for (const id of peers) {
      if (this.#suspected.has(id) || this.#probing.has(id)) continue;
      if (now - this.#heard.get(id)! <= this.#o.afterMs) continue;
      this.#probing.add(id);
      void this.#probeIndirectly(id, peers).finally(() => this.#probing.delete(id));
    }
  }

  async #probeIndirectly(id: string, peers: string[]): Promise<void> {
    const helpers = peers.filter((p) => p !== id && !this.#suspected.has(p) && (this.heardAgo(p) ?? Infinity) <= this.#o.afterMs).slice(0, 2);
    const timeoutMs = Math.max(100, Math.min(300, this.#o.afterMs / 2));
    const answers = await Promise.all(helpers.map((h) => this.#o.askVia(h, id, timeoutMs).catch(() => null)));
    // Heard meanwhile (a late pong), or gone from the view: nothing to do.
    if ((this.heardAgo(id) ?? Infinity) <= this.#o.afterMs || !this.#o.peers().includes(id)) return;
    if (answers.some((a) => a !== null && a <= this.#o.afterMs)) return; // others hear it: only our path is bad
    this.#suspected.add(id);
    this.generation++;
    this.raised.set(id, (this.raised.get(id) ?? 0) + 1);
    this.#log.warn({ peer: id, silentMs: this.heardAgo(id), helpers: helpers.length }, 'peer suspected: traffic routes around it until it answers');
    this.emit('suspect', id);
    this.emit('change');
  }

  #forget(id: string) {
    this.#heard.delete(id);
    if (this.#suspected.delete(id)) {
      this.generation++;
      this.emit('change');
    }
  }
}
