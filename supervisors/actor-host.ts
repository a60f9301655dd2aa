// Hosts this node's share of the cluster's actors and routes messages to any actor.
// On every membership or ownership change (and periodically, to repair lost pub/sub) it
// computes which placed actors belong here by rendezvous hashing over live nodes, claims
// the ones it lacks and hands off the ones that belong elsewhere. A dead node's actors are
// therefore respawned on survivors without any message being sent to them.
import type { Clock } from '../core/clock.ts';
import { ClusterError, isClusterError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { SerialRuns } from '../core/serial-runs.ts';
import type { ActorSystem, Behavior } from '../actors/runtime.ts';
import type { PeerLink } from '../gateways/peer/link.ts';
import type { ClusterMetrics } from './metrics.ts';
import type { Membership } from './membership.ts';
import type { OwnershipRegistry, OwnershipChange } from './ownership.ts';
import { ACTOR_MESSAGES, isActorKind, type ActorKindName, type ActorMessage } from '../protocol/actor-messages.ts';
import { actorKey, placeOn } from './placement.ts';

/** How long news that adds or removes actors waits for more before a placement pass. */
const RECONCILE_COALESCE_MS = 100;

export interface ActorKind<K extends ActorKindName = ActorKindName> {
  kind: K;
  /** `placed`: rendezvous hashing decides the node; `explicit`: claimed where needed (sites). */
  placement: 'placed' | 'explicit';
  /** Ids of all actors of this kind that should exist (placed kinds). */
  catalog?: () => Promise<string[]>;
  behavior(id: string, epoch: number): Behavior<any, ActorMessage<K>>;
}

export interface ActorHostDeps {
  system: ActorSystem;
  membership: Membership;
  ownership: OwnershipRegistry;
  peer: PeerLink;
  metrics: ClusterMetrics;
  clock: Clock;
  logger: Logger;
  /** Bound on retrying a message to an actor in motion. */
  handoffTimeoutMs: number;
  /** How often placement is recomputed even without events. */
  reconcileEveryMs: number;
}

export class ActorHost {
  readonly #d: ActorHostDeps;
  readonly #log: Logger;
  readonly #kinds = new Map<string, ActorKind<any>>();
  #timer: { cancel(): void } | undefined;
  readonly #passes = new SerialRuns(async () => {
    try {
      await this.#reconcileOnce();
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'placement pass failed; will retry');
    }
  }, () => !this.#stopped);
  #soon: { cancel(): void } | undefined;
  #stopped = false;
  /** Actors that escalated: not reclaimed here until the time given. */
  readonly #quarantine = new Map<string, number>();
  /**
   * Claims of explicitly placed actors waiting for the next batch, by kind, and whether one is
   * on its way: a reconnect storm claims thousands of sites at once, and a claim of one was four
   * round trips (Valkey, PostgreSQL, Valkey, publish). One batch at a time; what arrives
   * meanwhile goes in the next.
   */
  readonly #claimWaiters = new Map<string, Map<string, Array<{ resolve: (epoch: number) => void; reject: (err: unknown) => void }>>>();
  readonly #claiming = new Set<string>();
  /**
   * Where each actor belongs among the current live nodes, kept until they change: a pass
   * runs after every new resource, and hashing every actor against every node on each pass
   * made creating 10,000 resources quadratic (measured: 1,000 in 22 s, the next 9,000 in 618 s).
   */
  #placed: { live: string; home: Map<string, string | undefined> } = { live: '', home: new Map() };

  constructor(deps: ActorHostDeps) {
    this.#d = deps;
    this.#log = deps.logger.child({ component: 'actor-host' });
  }

  register<K extends ActorKindName>(kind: ActorKind<K>) {
    this.#kinds.set(kind.kind, kind);
  }

  /** Checks a message against its kind's schema: every delivery, local or from a peer. */
  #validate(kind: string, id: string, msg: unknown): unknown {
    if (!isActorKind(kind) || !this.#kinds.has(kind)) throw new ClusterError('CLUSTER_ERR_ACTOR_UNKNOWN_KIND', `unknown actor kind ${kind}`, { kind });
    const parsed = ACTOR_MESSAGES[kind].safeParse(msg);
    if (!parsed.success) {
      const reason = parsed.error.issues.map((i) => `${i.path.join('.') || 'message'}: ${i.message}`).join('; ').slice(0, 500);
      throw new ClusterError('CLUSTER_ERR_ACTOR_BAD_MESSAGE', `message for ${kind}/${id} refused: ${reason}`, { kind, id, reason });
    }
    return parsed.data;
  }

  kinds(): string[] {
    return [...this.#kinds.keys()];
  }

  start() {
    const { membership, ownership, clock } = this.#d;
    membership.on('change', () => this.reconcile());
    membership.on('fenced', () => void this.#fenced());
    ownership.on('change', (c: OwnershipChange) => this.#onOwnership(c));
    ownership.on('resubscribed', () => void this.reconcile());
    this.#timer = clock.setInterval(() => this.reconcile(), this.#d.reconcileEveryMs);
    this.reconcile();
  }

  /**
   * A placement pass soon, for news that adds or removes actors: a burst of admin creations
   * shares one pass (a pass visits every actor, so one per creation was quadratic: the
   * placement lookup alone took 7 % of a node while 5,800 sites were created).
   */
  reconcileSoon(): void {
    if (this.#soon || this.#stopped) return;
    this.#soon = this.#d.clock.setTimeout(() => {
      this.#soon = undefined;
      void this.reconcile();
    }, RECONCILE_COALESCE_MS);
  }

  /** Schedules a placement pass; passes never overlap, and one more runs if asked meanwhile. */
  reconcile(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return this.#passes.run();
  }

  /** The node each actor key belongs on among `live`, remembered while `live` stays the same. */
  #homes(live: readonly string[]): (key: string) => string | undefined {
    const liveKey = [...live].sort().join(',');
    if (this.#placed.live !== liveKey) this.#placed = { live: liveKey, home: new Map() };
    const home = this.#placed.home;
    return (key) => {
      if (!home.has(key)) home.set(key, placeOn(key, live));
      return home.get(key);
    };
  }

  async #reconcileOnce() {
    const { membership, system, ownership, metrics, clock } = this.#d;
    if (!membership.healthy) return;
    const live = membership.liveIds();
    const homeOf = this.#homes(live);
    this.#d.peer.sync(membership.live());
    for (const kind of this.#kinds.values()) {
      if (kind.placement === 'explicit') {
        await this.#dropStolen(kind.kind);
        continue;
      }
      if (!kind.catalog) continue;
      const ids = await kind.catalog();
      const want = new Set<string>();
      for (const id of ids) if (homeOf(actorKey(kind.kind, id)) === membership.nodeId) want.add(id);
      // Hand off what belongs elsewhere now (a node joined, or the catalog shrank).
      const leaving = system.list(kind.kind).filter((a) => !want.has(a.id)).map((a) => a.id);
      if (leaving.length) await this.#handoff(kind.kind, leaving);
      const now = clock.now();
      const missing = [...want].filter((id) => !system.get(kind.kind, id) && !((this.#quarantine.get(actorKey(kind.kind, id)) ?? 0) > now));
      if (missing.length === 0 || !membership.healthy) continue;
      const t0 = clock.now();
      const won = await ownership.claim(kind.kind, missing);
      metrics.claimLatency.observe((clock.now() - t0) / 1000);
      // One that will not start is given back (the next pass tries again) and the rest still start.
      const failed: string[] = [];
      for (const [id, epoch] of won) {
        if (system.get(kind.kind, id) || !membership.healthy) continue;
        if (this.#spawnClaimed(kind, id, epoch) !== true) {
          failed.push(id);
          continue;
        }
        metrics.claims.inc({ kind: kind.kind });
        if (epoch > 1) metrics.respawns.inc({ kind: kind.kind });
      }
      if (failed.length) await ownership.release(kind.kind, failed).catch(() => {});
      if (won.size) this.#log.info({ kind: kind.kind, claimed: won.size, wanted: missing.length }, 'claimed actors');
    }
  }

  /**
   * Explicitly placed actors (sites) move when another node claims them; that node's
   * announcement stops our copy at once. Should the announcement be lost, this check (every
   * reconcile pass) stops any local copy whose ownership entry names someone else.
   */
  async #dropStolen(kind: string) {
    const { system, ownership, membership } = this.#d;
    const local = system.list(kind);
    if (local.length === 0) return;
    const owners = await ownership.ownersOf(kind, local.map((a) => a.id));
    for (const a of local) {
      const o = owners.get(a.id);
      if (o && (o.node !== membership.nodeId || o.incarnation !== membership.incarnation)) {
        this.#log.warn({ kind, id: a.id, owner: o.node }, 'local actor is owned elsewhere; stopping it');
        await system.get(kind, a.id)?.stop();
      }
    }
  }

  /** Stops local actors (draining their mailboxes) and releases their ownership. */
  async #handoff(kind: string, ids: string[]) {
    const { system, ownership } = this.#d;
    await Promise.all(ids.map((id) => system.get(kind, id)?.stop()));
    await ownership.release(kind, ids);
    this.#log.info({ kind, count: ids.length }, 'handed off actors');
  }

  #onOwnership(c: OwnershipChange) {
    const { system, membership } = this.#d;
    if (c.type === 'claimed' && c.node !== membership.nodeId) {
      // Someone else owns these now (newest-wins claim): stop our copies at once.
      for (const id of c.ids) {
        const local = system.get(c.kind, id);
        if (local) {
          this.#log.info({ kind: c.kind, id, newOwner: c.node }, 'actor claimed elsewhere; stopping local copy');
          void local.stop();
        }
      }
    }
    if (c.type === 'released' && c.node !== membership.nodeId) this.reconcile();
  }

  /** The lease is lost: stop everything now, without releasing (our entries are already stale). */
  async #fenced() {
    const { system, metrics } = this.#d;
    const n = system.count();
    await system.stopAll(0);
    metrics.fencings.inc();
    this.#log.warn({ stopped: n }, 'fenced: all actors stopped');
  }

  /** An actor exhausted its restart budget: give up ownership and keep it off this node a while. */
  onEscalate(kind: string, id: string, quarantineMs: number) {
    this.#quarantine.set(actorKey(kind, id), this.#d.clock.now() + quarantineMs);
    void this.#d.ownership.release(kind, [id]).catch(() => {});
  }

  /**
   * Claims an explicitly placed actor on this node, taking it from a live owner if needed
   * (newest connection wins); the old owner stops its copy when it sees the claim.
   * `takeFromLive: false` takes it only if it is free or its owner is dead: for a connection
   * kept through a fence, older than any claim made while this node was away.
   */
  async claimHere(kind: string, id: string, opts: { takeFromLive?: boolean } = {}): Promise<number> {
    const k = this.#kinds.get(kind);
    if (!k) throw new ClusterError('CLUSTER_ERR_ACTOR_UNKNOWN_KIND', `unknown actor kind ${kind}`, { kind });
    const existing = this.#d.system.get(kind, id);
    if (existing && !existing.stopping) return existing.epoch;
    const force = opts.takeFromLive ?? true;
    const key = `${kind}/${force ? 'force' : 'free'}`;
    return new Promise<number>((resolve, reject) => {
      let batch = this.#claimWaiters.get(key);
      if (!batch) this.#claimWaiters.set(key, (batch = new Map()));
      batch.set(id, [...(batch.get(id) ?? []), { resolve, reject }]);
      // Everything asked for in this turn of the event loop goes together.
      if (!this.#claiming.has(key)) setImmediate(() => void this.#claimBatch(key, kind, k, force));
    });
  }

  /** `key`: the kind and the claim's mode (force or free), batched apart. */
  async #claimBatch(key: string, kind: string, k: ActorKind<any>, force: boolean): Promise<void> {
    const batch = this.#claimWaiters.get(key);
    if (!batch || this.#claiming.has(key)) return;
    this.#claimWaiters.delete(key);
    this.#claiming.add(key);
    try {
      const won = await this.#d.ownership.claim(kind, [...batch.keys()], { force });
      for (const [id, waiters] of batch) {
        const epoch = won.get(id);
        if (epoch === undefined) {
          const err = new ClusterError('CLUSTER_ERR_ACTOR_UNREACHABLE', `could not claim ${kind}/${id}`, { kind, id, attempts: 1 });
          for (const w of waiters) w.reject(err);
          continue;
        }
        // A copy from before this claim (stopping after a move, or of an older epoch) goes first:
        // two copies of one actor never run here, and one stale copy must not fail the batch.
        const before = this.#d.system.get(kind, id);
        if (before && (before.stopping || before.epoch !== epoch)) void before.stop().catch(() => {}).then(() => this.#startClaimed(kind, id, k, epoch, waiters));
        else this.#startClaimed(kind, id, k, epoch, waiters);
      }
    } catch (err) {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
    } finally {
      this.#claiming.delete(key);
      if (this.#claimWaiters.has(key)) void this.#claimBatch(key, kind, k, force);
    }
  }

  /**
   * Starts an actor this node just claimed and answers its waiters. One that will not start
   * (its behaviour throws) fails alone and its claim is given up: the store must not name this
   * node owner of an actor that does not run here, and the rest of its batch, claimed in the
   * same round trips, still starts.
   */
  #startClaimed(kind: string, id: string, k: ActorKind<any>, epoch: number, waiters: Array<{ resolve: (epoch: number) => void; reject: (err: unknown) => void }>) {
    const here = this.#d.system.get(kind, id);
    if (here && !here.stopping && here.epoch === epoch) {
      for (const w of waiters) w.resolve(epoch); // the same claim, started by the other mode's batch or a claim meanwhile
      return;
    }
    const failed = this.#spawnClaimed(k, id, epoch);
    if (failed !== true) {
      for (const w of waiters) w.reject(failed);
      // Given up unless another copy runs here (its claim is not this one's to drop).
      if (!here) void this.#d.ownership.release(kind, [id]).catch(() => {});
      return;
    }
    this.#d.metrics.claims.inc({ kind });
    for (const w of waiters) w.resolve(epoch);
  }

  /** Spawns a claimed actor: true, or why it would not start (logged). */
  #spawnClaimed(k: ActorKind<any>, id: string, epoch: number): true | Error {
    try {
      this.#d.system.spawn(k.kind, id, k.behavior(id, epoch), { epoch });
      return true;
    } catch (err) {
      this.#log.warn({ kind: k.kind, id, err: (err as Error).message }, 'a claimed actor would not start');
      return err as Error;
    }
  }

  /** Stops a local actor and gives up its ownership (e.g. a site whose connector left). */
  async release(kind: string, id: string): Promise<void> {
    await this.#handoff(kind, [id]);
  }

  /** Whether the actor runs on this node. */
  hasLocal(kind: string, id: string): boolean {
    return this.#d.system.get(kind, id) !== undefined;
  }

  /**
   * Tells one actor, if it runs on this node; false if it does not. News every node hears is
   * delivered by the node where its actor runs, so no other node needs to look it up.
   */
  tellLocal<K extends ActorKindName>(kind: K, id: string, msg: ActorMessage<K>): boolean {
    const a = this.#d.system.get(kind, id);
    if (!a) return false;
    this.#validate(kind, id, msg);
    try {
      a.send(msg);
      return true;
    } catch {
      return false; // stopping: it will not need the news
    }
  }

  /** Sends to every local actor of a kind (e.g. tell local sites their config changed). */
  broadcastLocal<K extends ActorKindName>(kind: K, msg: ActorMessage<K>) {
    this.#validate(kind, '*', msg);
    for (const a of this.#d.system.list(kind)) {
      try {
        this.#d.system.get(kind, a.id)?.send(msg);
      } catch {} // stopping: it will not need the news
    }
  }

  /** Delivery of a message that arrived over the peer link (or a local gateway), for a local actor. */
  deliverLocal(kind: string, id: string, msg: unknown, timeoutMs: number): Promise<unknown> {
    return this.#deliverChecked(kind, id, this.#validate(kind, id, msg), timeoutMs);
  }

  /** Delivery of a message already checked against its kind's schema. */
  async #deliverChecked(kind: string, id: string, msg: unknown, timeoutMs: number): Promise<unknown> {
    // A renewal awaited (past the margin, or after a stall) is no fence yet: wait for its outcome.
    if (!this.#d.membership.healthy && !(await this.#d.membership.whenHealthy(timeoutMs))) {
      throw new ClusterError('CLUSTER_ERR_NODE_FENCED', 'this node is fenced', { nodeId: this.#d.membership.nodeId });
    }
    const actor = this.#d.system.get(kind, id);
    if (!actor || actor.stopping) throw new ClusterError('CLUSTER_ERR_ACTOR_NOT_HERE', `${kind}/${id} is not on this node`, { kind, id });
    return actor.ask(msg, timeoutMs);
  }

  /**
   * Asks an actor wherever it lives. While the actor moves (no live owner, not running yet,
   * or the old owner answers NOT_HERE) it retries with backoff until handoffTimeout, then
   * fails with CLUSTER_ERR_ACTOR_UNREACHABLE. A message is only resent when it certainly
   * was not handled; a link lost mid-flight fails instead (at most once, never twice).
   */
  ask<K extends ActorKindName>(kind: K, id: string, msg: ActorMessage<K>, timeoutMs = 5000): Promise<unknown> {
    return this.route(kind, id, msg, timeoutMs);
  }

  /** `ask` for a message from outside (POST /peer/v1/ask): checked here before it travels. */
  async route(kind: string, id: string, msg: unknown, timeoutMs = 5000): Promise<unknown> {
    msg = this.#validate(kind, id, msg);
    const { ownership, membership, peer, clock } = this.#d;
    const deadline = clock.now() + this.#d.handoffTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      const owner = await ownership.ownerOf(kind, id);
      try {
        if (owner?.node === membership.nodeId) return await this.#deliverChecked(kind, id, msg, timeoutMs);
        if (owner) return await peer.ask(owner.node, kind, id, msg, timeoutMs);
      } catch (err) {
        if (!isClusterError(err, 'CLUSTER_ERR_ACTOR_NOT_HERE') && !isClusterError(err, 'CLUSTER_ERR_NODE_FENCED')) throw err;
        ownership.invalidate(kind, id);
      }
      if (clock.now() >= deadline) throw new ClusterError('CLUSTER_ERR_ACTOR_UNREACHABLE', `${kind}/${id} has no reachable owner after ${attempt} attempts`, { kind, id, attempts: attempt });
      await clock.sleep(Math.min(200, 10 * 2 ** Math.min(attempt, 5)));
    }
  }

  /** Planned shutdown: hand every actor off so nobody waits for our lease to expire. */
  async handoffAll(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#soon?.cancel();
    await this.#passes.current;
    const byKind = new Map<string, string[]>();
    for (const a of this.#d.system.list()) byKind.set(a.kind, [...(byKind.get(a.kind) ?? []), a.id]);
    for (const [kind, ids] of byKind) await this.#handoff(kind, ids);
  }
}
