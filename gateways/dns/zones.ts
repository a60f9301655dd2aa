// Every node's copy of the zones the dns-zone actors publish (Valkey snapshots mirrored in
// memory), so a query never waits on Valkey or PostgreSQL.
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { SnapshotMirror, SnapshotStore } from '../../persistence/snapshots.ts';
import type { Valkey } from '../../persistence/valkey.ts';
import type { ZoneData } from '../../protocol/zone.ts';
import { zoneOf } from './answer.ts';

export class ZoneTable {
  readonly #mirror: SnapshotMirror<'zones'>;
  readonly #log: Logger;
  readonly #clock: Clock;
  #zones = new Map<string, ZoneData>();
  /** Bumped on every change; answer caches key on it. */
  generation = 0;

  constructor(deps: { valkey: Valkey; logger: Logger; clock: Clock }) {
    this.#clock = deps.clock;
    this.#log = deps.logger.child({ component: 'dns-zones' });
    this.#mirror = new SnapshotMirror(new SnapshotStore(deps.valkey, 'zones'), () => this.#rebuild(), deps.clock);
  }

  async start(): Promise<void> {
    await this.#mirror.start(30_000, (err) => this.#log.warn({ err: err.message }, 'zone repair failed; answering from the last snapshot'));
  }

  #rebuild() {
    this.#zones = new Map([...this.#mirror.values()].map((z) => [z.zone, z]));
    this.generation++;
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
