// Where every actor lives. `owner:<kind>:<id>` in Valkey holds {node, inc, epoch}; claims
// are compare-and-set (Lua), epochs come from PostgreSQL, so exactly one claimer wins and
// a stale owner cannot write. Every node keeps an owner cache fed by pub/sub; a miss or a
// failed delivery reads the key again.
import { EventEmitter } from 'node:events';
import type { DatabasePool } from '../persistence/db.ts';
import { claimEpochs } from '../persistence/epochs.ts';
import { CLAIM_OWNERS, CONFIRM_OWNERS, RELEASE_OWNERS } from '../persistence/ownership-scripts.ts';
import type { Valkey } from '../persistence/valkey.ts';
import type { Owner, OwnershipChange } from '../protocol/channels.ts';
import type { Membership, MembershipEvent } from './membership.ts';
import { actorKey } from './placement.ts';

export type { Owner };

export type { OwnershipChange };

const BATCH = 500;

export class OwnershipRegistry extends EventEmitter {
  readonly #valkey: Valkey;
  readonly #db: DatabasePool;
  readonly #membership: Membership;
  readonly #cache = new Map<string, Owner | null>();
  #unsubscribe: (() => Promise<void>) | undefined;
  #offResubscribed: (() => void) | undefined;

  constructor(deps: { valkey: Valkey; db: DatabasePool; membership: Membership }) {
    super();
    this.#valkey = deps.valkey;
    this.#db = deps.db;
    this.#membership = deps.membership;
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#valkey.subscribe('ownership', (m) => this.#apply(m));
    // Claims announced while the subscription was away never came: the cached owners may be
    // stale, and a copy here of an actor claimed elsewhere still runs. Forget them, and tell
    // the actor host ('resubscribed': a placement pass drops such copies now, not in 5 s).
    this.#offResubscribed = this.#valkey.onResubscribed(() => {
      this.#cache.clear();
      this.emit('resubscribed');
    });
    // A member that died or left takes its cached entries with it. Only those: clearing the
    // whole cache when a node died sent every delivery on every node, to actors that never
    // moved, to Valkey for its owner again, in the middle of the reconnect storm.
    this.#membership.on('change', (e: MembershipEvent) => {
      if (e.type === 'join') return;
      for (const [key, owner] of this.#cache) if (owner?.node === e.member.id && owner.incarnation === e.member.incarnation) this.#cache.delete(key);
    });
  }

  async stop(): Promise<void> {
    this.#offResubscribed?.();
    await this.#unsubscribe?.().catch(() => {});
  }

  #apply(change: OwnershipChange) {
    if (!change || !Array.isArray(change.ids)) return;
    change.ids.forEach((id, i) => {
      const key = actorKey(change.kind, id);
      if (change.type === 'claimed') this.#cache.set(key, { node: change.node, incarnation: change.incarnation, epoch: change.epochs[i] ?? 0 });
      else if (this.#cache.get(key)?.incarnation === change.incarnation) this.#cache.delete(key);
    });
    this.emit('change', change);
  }

  invalidate(kind: string, id: string) {
    this.#cache.delete(actorKey(kind, id));
  }

  /** Current live owner of an actor, or undefined (free, claiming, or owner's lease gone). */
  async ownerOf(kind: string, id: string, opts: { fresh?: boolean } = {}): Promise<Owner | undefined> {
    const key = actorKey(kind, id);
    let owner = opts.fresh ? undefined : this.#cache.get(key);
    // A cached owner no longer live is read again: its successor may have claimed it already.
    if (owner && !this.#isLive(owner)) {
      this.#cache.delete(key);
      owner = undefined;
    }
    if (owner === undefined) {
      const raw = await this.#valkey.call((c) => c.get(this.#valkey.keys.owner(kind, id)));
      const parsed = raw ? (JSON.parse(raw) as { node: string; inc: string; epoch: string }) : null;
      owner = parsed && parsed.epoch !== '0' ? { node: parsed.node, incarnation: parsed.inc, epoch: Number(parsed.epoch) } : null;
      if (owner) this.#cache.set(key, owner);
    }
    return owner && this.#isLive(owner) ? owner : undefined;
  }

  #isLive(owner: Owner): boolean {
    return this.#membership.member(owner.node)?.incarnation === owner.incarnation;
  }

  /**
   * Live owners of many actors in one round trip (missing = no live owner). `pending`: also a
   * claim still in progress (epoch 0: taken in Valkey, its epoch not yet confirmed), for
   * routing only: a site being claimed by the node its connector just registered with has no
   * confirmed owner for those milliseconds, and a route built then named nobody (a 503 at
   * every node until the next refresh). Never for fencing or delivery.
   */
  async ownersOf(kind: string, ids: readonly string[], opts: { pending?: boolean } = {}): Promise<Map<string, Owner>> {
    const out = new Map<string, Owner>();
    if (ids.length === 0) return out;
    const raws = await this.#valkey.call((c) => c.mget(...ids.map((id) => this.#valkey.keys.owner(kind, id))));
    ids.forEach((id, i) => {
      const raw = raws[i];
      if (!raw) return;
      const o = JSON.parse(raw) as { node: string; inc: string; epoch: string };
      const member = this.#membership.member(o.node);
      if ((o.epoch !== '0' || opts.pending) && member?.incarnation === o.inc) out.set(id, { node: o.node, incarnation: o.inc, epoch: Number(o.epoch) });
    });
    return out;
  }

  /**
   * Claims the ids that are free (or whose owner is dead) for this node: CAS in Valkey, a
   * new epoch per won id from PostgreSQL, confirm in Valkey. Returns the epochs of the ids
   * won; ids held by a live owner are skipped.
   */
  async claim(kind: string, ids: readonly string[], opts: { force?: boolean } = {}): Promise<Map<string, number>> {
    // Not while deaf to announcements: another node taking one of these ids after this claim
    // (a connector moving its site) would go unheard, and this node would run its copy on
    // until the next resubscription or reconciliation (seen in chaos: a node whose lease came
    // back before its subscriber attached its kept connections, and a site ran on two nodes).
    if (!this.#valkey.hearing) await this.#valkey.untilHearing();
    const won = new Map<string, number>();
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH);
      for (const [id, epoch] of await this.#claimBatch(kind, batch, opts.force ?? false)) won.set(id, epoch);
    }
    return won;
  }

  async #claimBatch(kind: string, ids: readonly string[], force: boolean): Promise<Map<string, number>> {
    const v = this.#valkey;
    const node = this.#membership.nodeId;
    const inc = this.#membership.incarnation;
    const keys = ids.map((id) => v.keys.owner(kind, id));
    const res = (await v.call((c) => c.eval(CLAIM_OWNERS, keys.length, ...keys, node, inc, v.keys.leasePrefix, force ? 'force' : 'free'))) as number[];
    const taken = ids.filter((_, i) => res[i] === 1);
    const already = ids.filter((_, i) => res[i] === 2);
    const out = new Map<string, number>();
    if (taken.length > 0) {
      const epochs = await claimEpochs(this.#db, kind, taken, { node, incarnation: Number(inc) });
      const takenKeys = taken.map((id) => v.keys.owner(kind, id));
      const confirmed = (await v.call((c) => c.eval(CONFIRM_OWNERS, takenKeys.length, ...takenKeys, node, inc, ...taken.map((id) => String(epochs.get(id)))))) as number[];
      const ok = taken.filter((_, i) => confirmed[i] === 1);
      for (const id of ok) out.set(id, epochs.get(id)!);
      // Confirmed is claimed: the announcement goes out without holding the claim's answer for
      // another round trip (a turn of a loaded event loop), and a lost one fails no claim (peers
      // read owners again on their reconciliation and on resubscribe).
      if (ok.length) void v.publish('ownership', { type: 'claimed', kind, ids: ok, node, incarnation: inc, epochs: ok.map((id) => epochs.get(id)!) } satisfies OwnershipChange).catch(() => {});
    }
    // Entries already ours (e.g. confirmed but not running after a local crash) keep their epoch.
    for (const id of already) {
      const owner = await this.ownerOf(kind, id, { fresh: true });
      if (owner && owner.node === node) out.set(id, owner.epoch);
    }
    return out;
  }

  /** Deletes the entries this incarnation holds and announces it. */
  async release(kind: string, ids: readonly string[]): Promise<void> {
    const v = this.#valkey;
    const node = this.#membership.nodeId;
    const inc = this.#membership.incarnation;
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH);
      const keys = batch.map((id) => v.keys.owner(kind, id));
      const res = (await v.call((c) => c.eval(RELEASE_OWNERS, keys.length, ...keys, node, inc))) as number[];
      const released = batch.filter((_, j) => res[j] === 1);
      if (released.length) await v.publish('ownership', { type: 'released', kind, ids: released, node, incarnation: inc } satisfies OwnershipChange);
    }
  }
}
