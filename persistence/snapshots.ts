// Versioned snapshots that actors publish for every node: one Valkey hash per kind (id ->
// JSON), written compare-and-set on the version, then announced on a channel of the same
// name. A version is the publishing actor's fencing epoch and a sequence number within it,
// so a stale owner (a lower epoch) can never overwrite what its successor published, and a
// node that hears messages out of order keeps the newest. Deletions are tombstones, so a
// late write from an older owner cannot bring a deleted entry back.
import { CHANNELS, type ChannelMessage, type SnapshotChannel } from '../protocol/channels.ts';
import { fastSafeParse } from '../protocol/fast-parse.ts';
import type { Clock } from '../core/clock.ts';
import type { Valkey } from './valkey.ts';

export interface Version {
  epoch: number;
  seq: number;
}

export interface Snapshot<T> {
  id: string;
  version: Version;
  /** Undefined in a tombstone. */
  data?: T;
}

/** What a snapshot channel's entries hold. */
export type SnapshotData<C extends SnapshotChannel> = NonNullable<ChannelMessage<C>['data']>;

export function newer(a: Version, b: Version | undefined): boolean {
  return !b || a.epoch > b.epoch || (a.epoch === b.epoch && a.seq > b.seq);
}

/**
 * The version at the head of a stored snapshot's JSON, read without parsing the rest (`put`
 * writes id, version, data in that order); undefined when the head is not in that form.
 */
export function storedVersion(raw: string): Version | undefined {
  const m = /^\{"id":"(?:[^"\\]|\\.)*","version":\{"epoch":(\d+),"seq":(\d+)\}/.exec(raw);
  return m ? { epoch: Number(m[1]), seq: Number(m[2]) } : undefined;
}

/**
 * KEYS[1]=hash; ARGV: id, epoch, seq, json, channel, the json's text after its version.
 * 1 = stored and announced; 2 = stored, not announced: the data is what the stored entry
 * already holds (an actor respawned elsewhere republishing the same route or zone, whose
 * announcement every node would parse and act on to no effect); 0 = not newer.
 */
const PUT = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local same = false
if cur then
  local head, e, s = string.match(cur, '^({"id":"[^"]*","version":{"epoch":(%d+),"seq":(%d+)})')
  if not head then
    local v = cjson.decode(cur).version
    e, s = v.epoch, v.seq
  end
  e, s = tonumber(e), tonumber(s)
  local ne, ns = tonumber(ARGV[2]), tonumber(ARGV[3])
  if e > ne or (e == ne and s >= ns) then return 0 end
  same = head ~= nil and string.sub(cur, #head + 1) == ARGV[6]
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
if same then return 2 end
redis.call('PUBLISH', ARGV[5], ARGV[4])
return 1`;

export class SnapshotStore<C extends SnapshotChannel, T extends SnapshotData<C> = SnapshotData<C>> {
  readonly #valkey: Valkey;
  readonly #name: C;

  constructor(valkey: Valkey, name: C) {
    this.#valkey = valkey;
    this.#name = name;
  }

  /** A stored entry, checked like an announced one: it crossed a process too. */
  #parse(raw: string): Snapshot<T> | undefined {
    const r = fastSafeParse(CHANNELS[this.#name], JSON.parse(raw));
    return r.success ? (r.data as Snapshot<T>) : undefined;
  }

  /**
   * Stores a snapshot unless a newer one is stored, and announces it unless the stored one
   * held the same data; true if it was stored. Written as id, version, data, in that order
   * (`storedVersion` and the script read the head).
   */
  async put(snapshot: Snapshot<T>): Promise<boolean> {
    const v = this.#valkey;
    const { id, version } = snapshot;
    const head = JSON.stringify({ id, version: { epoch: version.epoch, seq: version.seq } });
    const rest = snapshot.data === undefined ? '}' : `,"data":${JSON.stringify(snapshot.data)}}`;
    const json = head.slice(0, -1) + rest;
    const r = await v.call((c) => c.eval(PUT, 1, v.keys.snapshot(this.#name), id, version.epoch, version.seq, json, v.keys.channel(this.#name), rest));
    return r === 1 || r === 2;
  }

  async get(id: string): Promise<Snapshot<T> | undefined> {
    const raw = await this.#valkey.call((c) => c.hget(this.#valkey.keys.snapshot(this.#name), id));
    return raw ? this.#parse(raw) : undefined;
  }

  /**
   * Stored snapshots by id. `known`: a copy this node holds already (its mirror), taken instead
   * of parsing the stored one when their versions match (a version is written once, so its data
   * is the same): a zone recomputing after a route change read and checked every route of the
   * zone again, most of them unchanged, a tenth of all a node allocated in a reconnect storm.
   */
  async getMany(ids: string[], known?: (id: string) => Snapshot<T> | undefined): Promise<Map<string, Snapshot<T>>> {
    if (ids.length === 0) return new Map();
    const raws = await this.#valkey.call((c) => c.hmget(this.#valkey.keys.snapshot(this.#name), ...ids));
    return new Map(ids.flatMap((id, i) => {
      const raw = raws[i];
      if (!raw) return [];
      const have = known?.(id);
      const stored = have && storedVersion(raw);
      const s = have && stored && stored.epoch === have.version.epoch && stored.seq === have.version.seq ? have : this.#parse(raw);
      return s ? [[id, s] as const] : [];
    }));
  }

  /**
   * Every stored snapshot; with `known`, only those newer than the version it gives for their
   * id (the rest are not parsed: a periodic repair at 10,000 routes otherwise parsed and
   * checked every one of them each time, to find none new).
   */
  async all(known?: (id: string) => Version | undefined): Promise<Snapshot<T>[]> {
    const raw = await this.#valkey.call((c) => c.hgetall(this.#valkey.keys.snapshot(this.#name)));
    const out: Snapshot<T>[] = [];
    for (const [id, r] of Object.entries(raw)) {
      const have = known?.(id);
      const stored = have && storedVersion(r);
      if (stored && !newer(stored, have)) continue;
      const s = this.#parse(r);
      if (s) out.push(s);
    }
    return out;
  }

  /** Calls `f` when the subscription is made again after it was lost (announcements meanwhile never came). */
  onResubscribed(f: () => void): () => void {
    return this.#valkey.onResubscribed(f);
  }

  /** Calls `handler` for every announced snapshot (any order; compare versions). */
  subscribe(handler: (s: Snapshot<T>) => void): Promise<() => Promise<void>> {
    return this.#valkey.subscribe(this.#name, (m) => handler(m as Snapshot<T>));
  }
}

/**
 * A node's in-memory copy of every snapshot of one kind: fed by announcements, repaired by a
 * periodic full read (pub/sub is at-most-once). Readers never wait on Valkey.
 */
/** What a mirror reads: a channel's snapshots in Valkey (SnapshotStore), or as another thread passes them on. */
export interface SnapshotSource<T> {
  all(known?: (id: string) => Version | undefined): Promise<Snapshot<T>[]>;
  onResubscribed(f: () => void): () => void;
  subscribe(handler: (s: Snapshot<T>) => void): Promise<() => Promise<void>>;
}

export class SnapshotMirror<C extends SnapshotChannel, T extends SnapshotData<C> = SnapshotData<C>> {
  readonly #store: SnapshotSource<T>;
  readonly #entries = new Map<string, Snapshot<T>>();
  /** Told of each newer snapshot: its data, and the data it replaced. */
  readonly #onChange: (id: string, data: T | undefined, before: T | undefined) => void;
  readonly #clock: Clock;
  #timer: { cancel(): void } | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #offResubscribed: (() => void) | undefined;
  /** When the last full read or announcement arrived (clock ms). */
  lastUpdate = 0;

  constructor(store: SnapshotSource<T>, onChange: (id: string, data: T | undefined, before: T | undefined) => void, clock: Clock) {
    this.#store = store;
    this.#onChange = onChange;
    this.#clock = clock;
  }

  async start(repairEveryMs: number, onRepairError: (err: Error) => void): Promise<void> {
    this.#unsubscribe = await this.#store.subscribe((s) => this.apply(s));
    // Snapshots announced while the subscription was away (Valkey restarted or failed over,
    // the subscriber back later than the command connection): read at once, not up to a
    // periodic repair later (30 s for routes: a node not serving a new route that long).
    this.#offResubscribed = this.#store.onResubscribed(() => void this.repair().catch(onRepairError));
    await this.repair();
    this.#timer = this.#clock.setInterval(() => void this.repair().catch(onRepairError), repairEveryMs);
  }

  async repair(): Promise<void> {
    for (const s of await this.#store.all((id) => this.#entries.get(id)?.version)) this.apply(s);
    this.lastUpdate = this.#clock.now();
  }

  apply(s: Snapshot<T>) {
    if (!s || typeof s.id !== 'string' || !s.version) return;
    const before = this.#entries.get(s.id);
    if (!newer(s.version, before?.version)) return;
    this.#entries.set(s.id, s);
    this.lastUpdate = this.#clock.now();
    this.#onChange(s.id, s.data, before?.data);
  }

  get(id: string): T | undefined {
    return this.#entries.get(id)?.data;
  }

  version(id: string): Version | undefined {
    return this.#entries.get(id)?.version;
  }

  /** The newest snapshot heard for an id, tombstones included. */
  snapshot(id: string): Snapshot<T> | undefined {
    return this.#entries.get(id);
  }

  /** [id, data] of every snapshot that holds data. */
  *entries(): IterableIterator<[string, T]> {
    for (const [id, s] of this.#entries) if (s.data !== undefined) yield [id, s.data];
  }

  *values(): IterableIterator<T> {
    for (const s of this.#entries.values()) if (s.data !== undefined) yield s.data;
  }

  /** Every snapshot held, tombstones included. */
  snapshots(): IterableIterator<Snapshot<T>> {
    return this.#entries.values();
  }

  async stop() {
    this.#timer?.cancel();
    this.#offResubscribed?.();
    await this.#unsubscribe?.();
  }
}
