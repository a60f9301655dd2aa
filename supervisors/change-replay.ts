// Admin writes are announced on the `changes` channel after they commit. Pub/sub is
// fire-and-forget: an announcement is lost when Valkey is unreachable at that moment (the
// write itself needs only PostgreSQL) or while a node's subscription reconnects, and the
// actors would keep stale config until some later change. Every write also commits an audit
// row in its own transaction, so the audit log is the change log: each node reads the rows
// it has not seen every `everyMs` and applies their kinds like announcements (applying one
// twice is harmless: actors reload from PostgreSQL). Announcements carry their audit id, so
// a change is replayed only where its announcement did not arrive.
//
// Audit ids are handed out when a transaction inserts its row, not when it commits, so a row
// can appear below ids already read. Each read therefore starts at the newest id known
// `lookBackMs` ago, and the ids already applied since then are remembered.
import { z } from 'zod';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import { sql, type DatabasePool } from '../persistence/db.ts';

export interface ChangeReplayOptions {
  db: DatabasePool;
  clock: Clock;
  logger: Logger;
  everyMs: number;
  lookBackMs: number;
  /** Applies the kinds of change found (`site`, `target`, `resource`, `org`, `domain`, ...). */
  apply: (kinds: Set<string>) => void;
}

const PAGE = 5000;
const Row = z.object({ id: z.coerce.number(), kind: z.string().nullable() });

export class ChangeReplay {
  readonly #o: ChangeReplayOptions;
  /** Ids applied since the read floor. */
  readonly #seen = new Set<number>();
  /** The newest id known at each read, oldest first; the first is the floor of the next read. */
  #marks: Array<{ at: number; maxId: number }> = [];
  #timer: { cancel(): void } | undefined;
  #busy = false;

  constructor(o: ChangeReplayOptions) {
    this.#o = o;
  }

  /** Starts from the newest row now: what came before, the actors read when they started. */
  async start(): Promise<void> {
    const maxId = Number(await this.#o.db.oneFirst(sql.type(z.object({ max: z.coerce.number() }))`SELECT coalesce(max(id), 0) AS max FROM audit_log`));
    this.#marks = [{ at: this.#o.clock.now(), maxId }];
    this.#timer = this.#o.clock.setInterval(() => void this.tick(), this.#o.everyMs);
  }

  stop() {
    this.#timer?.cancel();
  }

  /** An announcement of this audit row arrived: the read need not apply it again. */
  announced(auditId: number) {
    if (auditId > (this.#marks[0]?.maxId ?? 0)) this.#seen.add(auditId);
  }

  /** One read (the timer calls it; exposed for tests). */
  async tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const now = this.#o.clock.now();
      // Marks older than the look-back: only the newest of them is needed, as the floor.
      const cutoff = now - this.#o.lookBackMs;
      this.#marks = [...this.#marks.filter((m) => m.at <= cutoff).slice(-1), ...this.#marks.filter((m) => m.at > cutoff)];
      const floor = this.#marks[0]!.maxId;
      for (const id of this.#seen) if (id <= floor) this.#seen.delete(id);
      const kinds = new Set<string>();
      let maxId = this.#marks.at(-1)!.maxId;
      for (let after = floor; ; ) {
        const rows = await this.#o.db.any(sql.type(Row)`SELECT id, target_type AS kind FROM audit_log WHERE id > ${after} ORDER BY id LIMIT ${PAGE}`);
        for (const r of rows) {
          maxId = Math.max(maxId, r.id);
          if (this.#seen.has(r.id)) continue;
          this.#seen.add(r.id);
          if (r.kind) kinds.add(r.kind);
        }
        if (rows.length < PAGE) break;
        after = rows.at(-1)!.id;
      }
      this.#marks.push({ at: now, maxId });
      if (kinds.size) this.#o.apply(kinds);
    } catch (err) {
      // PostgreSQL away: the next read catches up from the same floor.
      this.#o.logger.debug({ err: (err as Error).message }, 'change replay read failed');
    } finally {
      this.#busy = false;
    }
  }
}
