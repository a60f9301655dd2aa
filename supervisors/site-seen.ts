// Last-seen times of the sites online on this node, written in batches: one fenced statement
// per interval for all of them (in chunks), instead of a timer and a transaction per site,
// and a site that just came online within a second, with the others that did meanwhile (a
// reconnect storm brings thousands, each of which was a transaction of its own).
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import type { DatabasePool } from '../persistence/db.ts';
import { markSitesSeen } from '../persistence/epochs.ts';

const CHUNK = 1000;

export class SiteSeen {
  readonly #online = new Map<string, number>();
  /** Came online since the last write. */
  readonly #fresh = new Set<string>();
  #timer: { cancel(): void } | undefined;
  #soon: { cancel(): void } | undefined;
  readonly #d: { db: DatabasePool; clock: Clock; logger: Logger; everyMs: number };

  constructor(d: { db: DatabasePool; clock: Clock; logger: Logger; everyMs: number }) {
    this.#d = d;
  }

  /** Site `id` is online here under `epoch`, or not any more (a copy with an older epoch stopping late changes nothing). */
  set(id: string, epoch: number, on: boolean) {
    if (on) {
      this.#online.set(id, epoch);
      this.#fresh.add(id);
      this.#soon ??= this.#d.clock.setTimeout(() => {
        this.#soon = undefined;
        void this.flush([...this.#fresh]).catch((err) => this.#d.logger.warn({ err: (err as Error).message }, 'could not record when sites were last seen'));
      }, 1000);
    } else if (this.#online.get(id) === epoch) this.#online.delete(id);
  }

  start() {
    this.#timer = this.#d.clock.setInterval(() => void this.flush().catch((err) => this.#d.logger.warn({ err: (err as Error).message }, 'could not record when sites were last seen')), this.#d.everyMs);
  }

  /** Writes the given sites (default: all online here) that are still online here. */
  async flush(ids: string[] = [...this.#online.keys()]): Promise<void> {
    for (const id of ids) this.#fresh.delete(id);
    const all = ids.flatMap((id) => (this.#online.has(id) ? [[id, this.#online.get(id)!] as const] : []));
    for (let i = 0; i < all.length; i += CHUNK) await markSitesSeen(this.#d.db, new Map(all.slice(i, i + CHUNK)));
  }

  stop() {
    this.#timer?.cancel();
    this.#soon?.cancel();
  }
}
