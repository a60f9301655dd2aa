// Every node's copy of the zones the dns-zone actors publish (Valkey snapshots mirrored in
// memory), so a query never waits on Valkey or PostgreSQL. Addresses of nodes this node
// suspects are left out of answers (on top of the snapshot: no actor has to move first); a
// name they alone served is answered with the nodes still answering.
import { isIP } from 'node:net';
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { SnapshotMirror, SnapshotStore } from '../../persistence/snapshots.ts';
import type { Valkey } from '../../persistence/valkey.ts';
import type { RecordData, ZoneData } from '../../protocol/zone.ts';
import { zoneOf } from './answer.ts';

export class ZoneTable {
  readonly #mirror: SnapshotMirror<'zones'>;
  readonly #log: Logger;
  readonly #clock: Clock;
  #zones = new Map<string, ZoneData>();
  /** The zone name each snapshot id holds in #zones. */
  readonly #nameOf = new Map<string, string>();
  #excluded: ReadonlySet<string> = new Set();
  #fallback: readonly string[] = [];
  /** Bumped on every change; answer caches key on it. */
  generation = 0;

  constructor(deps: { valkey: Valkey; logger: Logger; clock: Clock }) {
    this.#clock = deps.clock;
    this.#log = deps.logger.child({ component: 'dns-zones' });
    this.#mirror = new SnapshotMirror(new SnapshotStore(deps.valkey, 'zones'), (id, data) => this.#apply(id, data), deps.clock);
  }

  async start(): Promise<void> {
    await this.#mirror.start(30_000, (err) => this.#log.warn({ err: err.message }, 'zone repair failed; answering from the last snapshot'));
  }

  /** One zone's snapshot, in place: rebuilding every zone for each was quadratic when a thousand zones are published together. */
  #apply(id: string, data: ZoneData | undefined) {
    const old = this.#nameOf.get(id);
    if (old !== undefined) this.#zones.delete(old);
    this.#nameOf.delete(id);
    if (data) {
      this.#zones.set(data.zone, withoutAddresses(data, this.#excluded, this.#fallback));
      this.#nameOf.set(id, data.zone);
    }
    this.generation++;
  }

  /** Every zone anew (the suspected addresses changed). */
  #rebuild() {
    this.#zones = new Map();
    this.#nameOf.clear();
    for (const [id, data] of this.#mirror.entries()) this.#apply(id, data);
  }

  /**
   * Leaves these addresses out of A/AAAA answers (the suspected nodes'), from now on; a name
   * that had only those gets `fallback` (the nodes still answering).
   */
  exclude(addresses: ReadonlySet<string>, fallback: readonly string[]) {
    const same = addresses.size === this.#excluded.size && [...addresses].every((a) => this.#excluded.has(a)) && fallback.join() === this.#fallback.join();
    if (same) return;
    this.#excluded = addresses;
    this.#fallback = fallback;
    this.#rebuild();
  }

  get zones(): ReadonlyMap<string, ZoneData> {
    return this.#zones;
  }

  /** The TXT values this node's DNS answers at exactly `name` (what a CA checking DNS-01 here sees). */
  txt(name: string): string[] {
    const lower = name.toLowerCase();
    const zone = zoneOf(lower, this.#zones);
    const records = zone === undefined ? [] : (this.#zones.get(zone)!.records[lower] ?? []);
    return records.flatMap((r) => (r.type === 'TXT' ? r.data : []));
  }

  /** Milliseconds since the newest snapshot or repair read arrived. */
  get age(): number {
    return this.#mirror.lastUpdate ? this.#clock.now() - this.#mirror.lastUpdate : Number.POSITIVE_INFINITY;
  }

  stop() {
    return this.#mirror.stop();
  }
}

/**
 * The zone with `excluded` addresses taken out of each name's A/AAAA records. A name left
 * with none of a family gets `fallback` (the addresses of the nodes still answering: any node
 * forwards), or, with no fallback either, keeps what it had. Name-server glue is left alone.
 */
export function withoutAddresses(z: ZoneData, excluded: ReadonlySet<string>, fallback: readonly string[] = []): ZoneData {
  if (excluded.size === 0) return z;
  const glue = new Set((z.records[z.zone] ?? []).filter((r) => r.type === 'NS').map((r) => String(r.data).toLowerCase()));
  let records: ZoneData['records'] | undefined;
  for (const [name, rrs] of Object.entries(z.records)) {
    if (glue.has(name)) continue;
    let kept = rrs;
    for (const family of ['A', 'AAAA'] as const) {
      const all = kept.filter((r) => r.type === family);
      if (!all.some((r) => excluded.has(r.data as string))) continue;
      const left = all.filter((r) => !excluded.has(r.data as string));
      const instead: RecordData[] = left.length > 0 ? left : fallback.filter((a) => isIP(a) === (family === 'A' ? 4 : 6)).map((a) => ({ type: family, ttl: all[0]!.ttl, data: a }));
      if (instead.length > 0) kept = [...kept.filter((r) => r.type !== family), ...instead];
    }
    if (kept !== rrs) (records ??= { ...z.records })[name] = kept;
  }
  return records ? { ...z, records } : z;
}
