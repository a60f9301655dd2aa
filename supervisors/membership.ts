// Cluster membership. Each node writes its record and holds a lease key (TTL lease.ttl,
// renewed every lease.renewEvery); liveness *is* the lease. Every node keeps a view of the
// live members, updated by pub/sub events and repaired by a periodic reconciliation, so a
// lost message cannot leave the view wrong for longer than one renewal interval.
//
// A node that cannot renew in time fences itself: it reports `fenced`, which stops every
// actor, before its lease can have expired, and then rejoins with a new incarnation.
// A node whose own process stalled past that point (a long GC, a starved CPU) has no evidence
// either way: while the lease certainly still holds in Valkey (ttl from the last renewal that
// was sent, less CONFIRM_SLACK_MS) it sends a renewal and fences only if none is confirmed
// by then. Its actors take no claims and no deliveries meanwhile, and a peer cannot have taken
// them: the lease has not run out. Fencing would only have doubled the load that stalled it.
// After a stall, the decision waits for the answers already in the socket to be read (timers
// run before I/O in Node's loop): a renewal sent just before or after the stall may have been
// answered meanwhile, and any renewal Valkey answered with 1 proves the lease never lapsed
// (an expired key makes it answer 0); fencing on the clock alone, with that answer unread,
// fenced a survivor of a SIGKILL in five of six 10,000-site storms (lease intact wherever the
// log could tell). It waits only when a renewal sent before the stall could still cover the
// lease: otherwise it fences at once, before that turn's I/O, in which a node just thawed
// would answer, for a few hundred milliseconds of backlog, as the holder of actors a peer
// already runs (`cluster chaos` saw them on two nodes).
// Renewals travel on their own Valkey connection, not behind the storm's commands.
// Fast detection: when a peer link drops and the peer's port refuses connections, the
// process is gone, so its lease is compare-and-deleted at once instead of waiting for TTL.
import { EventEmitter } from 'node:events';
import { connect } from 'node:net';
import type { Clock } from '../core/clock.ts';
import { SerialRuns } from '../core/serial-runs.ts';
import type { Logger } from '../core/log.ts';
import { DROP_LEASE, JOIN_LEASE, LEAVE_LEASE, RENEW_LEASE } from '../persistence/ownership-scripts.ts';
import type { Valkey } from '../persistence/valkey.ts';
import type { ChannelMessage, MemberRecord } from '../protocol/channels.ts';

export type { MemberRecord };

export type MembershipEvent =
  | { type: 'join'; member: MemberRecord }
  | { type: 'dead'; member: MemberRecord; reason: 'lease' | 'refused' }
  | { type: 'leave'; member: MemberRecord };

export interface MembershipOptions {
  valkey: Valkey;
  clock: Clock;
  logger: Logger;
  nodeId: string;
  admin: string;
  peer: string;
  addresses?: string[];
  ttlMs: number;
  renewEveryMs: number;
}

type State = 'idle' | 'joining' | 'joined' | 'fenced' | 'left';

/** Renewals sent this recently, at a stall's detection, were sent after it (in the same turn). */
const SENT_THIS_TURN_MS = 100;
/** A stalled node's renewal must be confirmed this long before its lease could end (the fence's own stop of every actor comes then). */
const CONFIRM_SLACK_MS = 150;

export class Membership extends EventEmitter {
  readonly #o: MembershipOptions;
  readonly #log: Logger;
  #state: State = 'idle';
  #incarnation = '';
  #startedAt = 0;
  #view = new Map<string, MemberRecord>();
  /** When each peer last renewed its lease, as estimated from the TTL left at the last reconciliation. */
  readonly #peerRenewedAt = new Map<string, number>();
  /** The view when this node last fenced itself: traffic keeps using it until the node rejoins. */
  #beforeFence = new Map<string, MemberRecord>();
  /** Incarnations of this process fenced since it last joined: their leases are ours to take (#join). */
  #fencedIncarnations: string[] = [];
  /** When the last successful renewal was *sent*: the lease lasts at least ttl from then. */
  #renewedAt = 0;
  #timers: Array<{ cancel(): void }> = [];
  #unsubscribe: (() => Promise<void>) | undefined;
  readonly #reconciles = new SerialRuns(() => this.#reconcile());
  #expiryCheck: { cancel(): void } | undefined;
  /** Incarnations that announced a planned leave: their disappearance is a leave, not a death. */
  readonly #leaving = new Set<string>();
  /** When the last few renewals were sent, answered or not (see #watchdog). */
  readonly #sentAt: number[] = [];
  /** When the watchdog last ran: a long gap means this process was not running, not that Valkey was silent. */
  #watchdogAt = 0;
  /** Set while a node that stalled past its fence point waits for a renewal to be confirmed (see #checkConfirm). */
  #confirm: { timer: { cancel(): void } } | undefined;
  /** Deliveries waiting for the lease to be certain again (see whenHealthy). */
  readonly #healthWaiters = new Set<(ok: boolean) => void>();

  constructor(o: MembershipOptions) {
    super();
    this.#o = o;
    this.#log = o.logger.child({ component: 'membership' });
  }

  get nodeId(): string {
    return this.#o.nodeId;
  }

  get incarnation(): string {
    return this.#incarnation;
  }

  get state(): State {
    return this.#state;
  }

  /** Fenced, or joining again after it: this node's actors are stopped for the moment (and, at the first join, not started yet). */
  get away(): boolean {
    return this.#state === 'fenced' || this.#state === 'joining';
  }

  /** True while our lease is certainly still ours; actors may act only then. */
  get healthy(): boolean {
    return this.#state === 'joined' && this.#o.clock.now() < this.#fenceAt();
  }

  /**
   * True as soon as the lease is certainly held again; false if the node fences or leaves
   * first, or after `timeoutMs`. For deliveries that arrive while a renewal is awaited (past
   * the margin, or confirming after a stall): failing them closed connectors' control
   * connections, each then registering again, in storms where no node fenced.
   */
  whenHealthy(timeoutMs: number): Promise<boolean> {
    if (this.healthy) return Promise.resolve(true);
    if (this.#state !== 'joined') return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        timer.cancel();
        this.#healthWaiters.delete(done);
        resolve(ok);
      };
      const timer = this.#o.clock.setTimeout(() => done(false), timeoutMs);
      this.#healthWaiters.add(done);
    });
  }

  #settleWaiters(ok: boolean) {
    for (const done of [...this.#healthWaiters]) done(ok);
  }

  /** How long our lease certainly lasts without another renewal; 0 when we hold none. */
  get leaseRemainingMs(): number {
    return this.#state === 'joined' ? Math.max(0, this.#fenceAt() - this.#o.clock.now()) : 0;
  }

  #fenceAt(): number {
    return this.#renewedAt + this.#o.ttlMs - Math.min(500, this.#o.renewEveryMs / 2);
  }

  /** Live members (including this node once joined), sorted by id. */
  live(): MemberRecord[] {
    return [...this.#view.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  liveIds(): string[] {
    return this.live().map((m) => m.id);
  }

  member(id: string): MemberRecord | undefined {
    return this.#view.get(id);
  }

  /**
   * Whether `id` is still renewing its lease as far as Valkey shows: renewed within two renewal
   * intervals (one for its own period, one for the age of our last read). A peer this node
   * cannot hear that still renews is alive; the fault is on this node's side.
   */
  renewingLease(id: string): boolean {
    const at = this.#peerRenewedAt.get(id);
    return at !== undefined && this.#state === 'joined' && this.#o.clock.now() - at <= 2 * this.#o.renewEveryMs + 300;
  }

  /**
   * For traffic only (forwarding, peer links, DNS answers, suspicion), never for ownership:
   * the live members, or, while this node is fenced and cannot reach Valkey to rejoin, the
   * members live when it fenced. A node cut off from Valkey alone can still carry its
   * clients' requests to the peers that took its sites over.
   */
  forTraffic(): MemberRecord[] {
    return [...this.#trafficView().values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  trafficMember(id: string): MemberRecord | undefined {
    return this.#trafficView().get(id);
  }

  #trafficView(): Map<string, MemberRecord> {
    return this.#state === 'joined' ? this.#view : this.#beforeFence;
  }

  #record(): MemberRecord {
    return { id: this.#o.nodeId, incarnation: this.#incarnation, admin: this.#o.admin, peer: this.#o.peer, addresses: this.#o.addresses ?? [], startedAt: this.#startedAt };
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#o.valkey.subscribe('membership', (m) => this.#onMessage(m));
    await this.#join();
    this.#timers.push(this.#o.clock.setInterval(() => void this.#renew(), this.#o.renewEveryMs));
    this.#watchdogAt = this.#o.clock.now();
    this.#timers.push(this.#o.clock.setInterval(() => this.#watchdog(), this.#watchdogEveryMs()));
    this.#timers.push(this.#o.clock.setInterval(() => void this.reconcile(), this.#o.renewEveryMs));
  }

  /** Joins with a new incarnation; waits while another live process holds our node id. */
  async #join(): Promise<void> {
    this.#state = 'joining';
    const { valkey, clock, ttlMs } = this.#o;
    this.#incarnation = String(clock.now() * 1000 + Math.floor(Math.random() * 1000));
    this.#startedAt = clock.now();
    const rec = this.#record();
    let waiting = false;
    for (let attempt = 0; ; attempt++) {
      if (this.#state !== 'joining') return;
      try {
        const sentAt = clock.now();
        const ok = await valkey.call((c) => c.eval(JOIN_LEASE, 1, valkey.keys.lease(this.#o.nodeId), this.#incarnation, ttlMs, ...this.#fencedIncarnations), 'lease');
        if (ok === 1) {
          // The record too, in the same retry: a connection lost between the two must not
          // leave the node holding a lease but never joined (JOIN_LEASE is idempotent for
          // this incarnation, so the next attempt takes the lease again).
          await valkey.call((c) => c.multi().set(valkey.keys.nodeRecord(rec.id), JSON.stringify(rec)).sadd(valkey.keys.members, rec.id).exec());
          this.#renewedAt = sentAt;
          break;
        }
        // Said once, when first seen (not only on the first attempt, which may have failed outright).
        if (!waiting) this.#log.warn('another live process holds this node id; waiting for its lease to end');
        waiting = true;
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'join failed; retrying');
      }
      await clock.sleep(Math.min(1000, 100 * 2 ** Math.min(attempt, 4)));
    }
    this.#state = 'joined';
    this.#fencedIncarnations = [];
    this.#beforeFence.clear();
    this.#view.set(rec.id, rec);
    this.#log.info({ incarnation: this.#incarnation }, 'joined cluster');
    this.emit('joined');
    await valkey.publish('membership', { type: 'join', member: rec }).catch(() => {});
    await this.reconcile();
  }

  async #renew(): Promise<void> {
    if (this.#state !== 'joined') return;
    const { valkey, clock, ttlMs } = this.#o;
    const sentAt = clock.now();
    this.#sentAt.push(sentAt);
    if (this.#sentAt.length > 4) this.#sentAt.shift();
    const incarnation = this.#incarnation;
    try {
      const r = await valkey.call((c) => c.eval(RENEW_LEASE, 1, valkey.keys.lease(this.#o.nodeId), incarnation, ttlMs), 'lease');
      // A fenced incarnation's renewal answered after the rejoin speaks for a lease given up.
      if (this.#state !== 'joined' || this.#incarnation !== incarnation) return;
      if (r !== 1) return this.#fence(r === 0 ? 'lease lost (expired or declared dead)' : 'lease held by another incarnation');
      const before = this.#renewedAt;
      this.#renewedAt = Math.max(before, sentAt); // a renewal sent before a stall may answer after a later one
      if (this.healthy) this.#settleWaiters(true);
      const confirm = this.#confirm;
      // Valkey held the lease when this reached it, so it never lapsed; it lasts ttl from sentAt.
      // An older renewal answered late may not bring the node back inside its margin: the
      // pending check then waits on (for the renewal sent after the stall) or fences.
      if (!confirm || clock.now() >= this.#fenceAt()) return;
      confirm.timer.cancel();
      this.#confirm = undefined;
      this.#log.warn({ sinceLastRenewalMs: sentAt - before, answeredAfterMs: clock.now() - sentAt }, 'lease confirmed after a stall: it was still ours, not fencing');
      this.emit('stalled', 'confirmed');
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'lease renewal failed');
    }
  }

  #watchdogEveryMs(): number {
    return Math.max(50, Math.min(200, this.#o.renewEveryMs / 4));
  }

  /** The last confirmed renewal's lease certainly holds until then (less the slack for the fence's own stop). */
  #confirmBy(): number {
    return this.#renewedAt + this.#o.ttlMs - CONFIRM_SLACK_MS;
  }

  /**
   * Fences as soon as the lease may be about to expire, even if Valkey calls hang; unless this
   * process itself was stalled across that moment (the watchdog ran late by half a renewal
   * interval or more): then a renewal goes out at once, and the node fences when, with the
   * answers that have arrived read, no confirmed renewal covers the lease any more.
   */
  #watchdog() {
    const now = this.#o.clock.now();
    const gap = now - this.#watchdogAt;
    this.#watchdogAt = now;
    if (this.#state !== 'joined' || this.#confirm || now < this.#fenceAt()) return;
    const stalled = gap >= this.#watchdogEveryMs() + Math.max(500, this.#o.renewEveryMs / 2);
    if (!stalled) return this.#fence('could not renew the lease in time');
    // Only a renewal that reached Valkey before the lease could end can prove it held: one sent
    // before the stall (those sent in this turn, after it, are not: they go out now).
    const sentBefore = Math.max(this.#renewedAt, ...this.#sentAt.filter((at) => at < now - SENT_THIS_TURN_MS));
    if (sentBefore + this.#o.ttlMs - CONFIRM_SLACK_MS <= now) {
      this.emit('stalled', 'fenced');
      return this.#fence('stalled past the end the lease could have; no renewal sent before the stall can cover it');
    }
    this.#log.warn({ stalledMs: gap, confirmWithinMs: this.#confirmBy() - now }, 'this process stalled past its lease margin; renewing before the lease can end');
    const confirm = { timer: { cancel() {} } };
    this.#confirm = confirm;
    void this.#renew();
    this.#checkConfirm(confirm);
  }

  /**
   * Once this turn's I/O has been read (a renewal's answer may be waiting): fences if no
   * confirmed renewal covers the lease any more, else looks again when the covered time ends.
   */
  #checkConfirm(confirm: { timer: { cancel(): void } }) {
    setImmediate(() => {
      if (this.#confirm !== confirm || this.#state !== 'joined') return;
      const left = this.#confirmBy() - this.#o.clock.now();
      if (left <= 0) return this.#fence('stalled past the lease margin; no renewal confirmed before the lease could end');
      confirm.timer = this.#o.clock.setTimeout(() => this.#checkConfirm(confirm), left);
    });
  }

  #fence(reason: string) {
    if (this.#state !== 'joined') return;
    this.#state = 'fenced';
    if (this.#confirm) {
      this.#confirm.timer.cancel();
      this.#confirm = undefined;
      this.emit('stalled', 'fenced');
    }
    this.#settleWaiters(false);
    this.#log.error({ reason, incarnation: this.#incarnation }, 'fenced: stopping all actors, then rejoining');
    this.#beforeFence = new Map(this.#view);
    this.#view.clear();
    this.emit('fenced', reason);
    this.emit('view', true);
    // Rejoin after the listeners had their chance to stop actors (they run synchronously
    // from emit, and their async stops do not need the lease). The old lease goes first,
    // when Valkey can be reached: it may outlive the fence by up to a renewal (a renewal that
    // reached Valkey but whose reply came too late), and until it ends the peers do not take
    // the actors over. Safe: the actors are stopping, and a late write of theirs carries an
    // epoch the next owner has already superseded. For the same reason the join takes the old
    // lease over wherever it finds it: a renewal sent before the fence can reach Valkey much
    // later (queued in a frozen Valkey's socket, run when it thaws: seen in CI), bringing the
    // lease back for a whole ttl after the drop failed, which kept the node out that long.
    const old = this.#incarnation;
    this.#fencedIncarnations.push(old);
    setImmediate(() => {
      void this.#o.valkey
        .call((c) => c.eval(DROP_LEASE, 1, this.#o.valkey.keys.lease(this.#o.nodeId), old), 'lease')
        .catch(() => {}) // cut off from Valkey: the lease runs out by itself
        .then(() => this.#join())
        .catch((err) => this.#log.error({ err }, 'rejoin failed'));
    });
  }

  #onMessage(m: ChannelMessage<'membership'>) {
    if (m.member.id === this.#o.nodeId) return;
    if (m.type === 'leave') this.#leaving.add(`${m.member.id}/${m.member.incarnation}`);
    // Events only trigger a reconciliation: the lease keys are the truth.
    void this.reconcile();
  }

  /**
   * Rebuilds the view from the members set and lease keys; emits join/dead/leave. Asked again
   * while one runs (a join announced after it read the members), it runs once more after it:
   * else the news waits for the next interval (a test saw a peer's claim land in that gap).
   */
  reconcile(): Promise<void> {
    return this.#reconciles.run();
  }

  async #reconcile(): Promise<void> {
    if (this.#state !== 'joined') return;
    const { valkey } = this.#o;
    let next: Map<string, MemberRecord>;
    try {
      const ids = await valkey.call((c) => c.smembers(valkey.keys.members));
      for (const id of this.#peerRenewedAt.keys()) if (!ids.includes(id)) this.#peerRenewedAt.delete(id); // members that left
      const pipe = valkey.cmd.pipeline();
      for (const id of ids) pipe.get(valkey.keys.lease(id)).pttl(valkey.keys.lease(id)).get(valkey.keys.nodeRecord(id));
      const readAt = this.#o.clock.now();
      const res = (await valkey.call(() => pipe.exec())) ?? [];
      next = new Map();
      let soonest = Infinity;
      ids.forEach((id, i) => {
        const lease = res[3 * i]?.[1] as string | null;
        const pttl = res[3 * i + 1]?.[1] as number;
        if (typeof pttl === 'number' && pttl > 0) this.#peerRenewedAt.set(id, readAt - (this.#o.ttlMs - pttl));
        const recRaw = res[3 * i + 2]?.[1] as string | null;
        if (!lease || !recRaw) return;
        const rec = JSON.parse(recRaw) as MemberRecord;
        // A planned leave leaves its mark on the lease (LEAVE_LEASE): a leave, whichever of the
        // announcement and this read comes first.
        if (lease === `left:${rec.incarnation}`) return void (this.#view.has(id) && this.#leaving.add(`${id}/${rec.incarnation}`));
        if (rec.incarnation !== lease) return;
        next.set(id, rec);
        if (id !== this.#o.nodeId && pttl > 0) soonest = Math.min(soonest, pttl);
      });
      // Look again right when the first peer lease would run out, so a frozen peer is seen
      // dead at its TTL rather than up to one renewal interval later.
      if (soonest < this.#o.renewEveryMs) {
        this.#expiryCheck?.cancel();
        this.#expiryCheck = this.#o.clock.setTimeout(() => void this.reconcile(), soonest + 5);
      }
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'membership reconciliation failed');
      return;
    }
    if (this.#state !== 'joined') return;
    next.set(this.#o.nodeId, this.#record());
    const prev = this.#view;
    this.#view = next;
    for (const [id, rec] of next) {
      const old = prev.get(id);
      if (!old) this.#emitEvent({ type: 'join', member: rec });
      else if (old.incarnation !== rec.incarnation) {
        this.#emitEvent({ type: 'dead', member: old, reason: 'lease' });
        this.#emitEvent({ type: 'join', member: rec });
      }
    }
    for (const [id, rec] of prev) {
      if (next.has(id)) continue;
      const key = `${id}/${rec.incarnation}`;
      this.#emitEvent(this.#leaving.delete(key) ? { type: 'leave', member: rec } : { type: 'dead', member: rec, reason: 'lease' });
    }
    // Every read (each renewal) is announced; `changed` says whether members or their addresses differ from the last.
    const changed = prev.size !== next.size || [...next].some(([id, rec]) => prev.get(id)?.incarnation !== rec.incarnation || String(prev.get(id)?.addresses) !== String(rec.addresses));
    this.emit('view', changed);
  }

  #emitEvent(e: MembershipEvent) {
    if (e.member.id === this.#o.nodeId) return;
    this.#log.info({ peer: e.member.id, incarnation: e.member.incarnation, ...(e.type === 'dead' ? { reason: e.reason } : {}) }, `member ${e.type}`);
    this.emit('change', e);
  }

  /**
   * A peer link to `id` dropped. If nothing accepts connections on its peer port, its
   * process is gone: delete its lease (only that incarnation's) and tell everyone.
   * A peer that merely stops answering (frozen, partitioned) keeps its lease until TTL.
   */
  async suspect(id: string): Promise<void> {
    const rec = this.#view.get(id);
    if (!rec || this.#state !== 'joined') return;
    const [host, port] = [rec.peer.slice(0, rec.peer.lastIndexOf(':')), Number(rec.peer.slice(rec.peer.lastIndexOf(':') + 1))];
    const refused = await new Promise<boolean>((resolve) => {
      const sock = connect({ host, port });
      sock.setTimeout(300, () => (sock.destroy(), resolve(false)));
      sock.once('connect', () => (sock.destroy(), resolve(false)));
      sock.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
    });
    if (!refused) return;
    const { valkey } = this.#o;
    try {
      const dropped = await valkey.call((c) => c.eval(DROP_LEASE, 1, valkey.keys.lease(id), rec.incarnation));
      if (dropped === 1) {
        this.#log.warn({ peer: id, incarnation: rec.incarnation }, 'peer process is gone (port refused); declared dead');
        await valkey.publish('membership', { type: 'dead', member: rec }).catch(() => {});
      }
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, peer: id }, 'could not declare peer dead');
    }
    await this.reconcile();
  }

  /** Planned leave: drop our lease and tell everyone, so they take over at once. */
  async leave(): Promise<void> {
    const was = this.#state;
    this.#state = 'left';
    for (const t of this.#timers) t.cancel();
    this.#timers = [];
    this.#expiryCheck?.cancel();
    this.#confirm?.timer.cancel();
    this.#confirm = undefined;
    this.#settleWaiters(false);
    if (was === 'joined') {
      const { valkey } = this.#o;
      await valkey.call((c) => c.eval(LEAVE_LEASE, 1, valkey.keys.lease(this.#o.nodeId), this.#incarnation, 2 * this.#o.ttlMs), 'lease').catch(() => {});
      await valkey.publish('membership', { type: 'leave', member: this.#record() }).catch(() => {});
    }
    await this.#unsubscribe?.().catch(() => {});
  }
}
