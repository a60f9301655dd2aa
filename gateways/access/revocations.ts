// The revoked resource sessions this node refuses, in memory. Loaded whole at start; after
// that, every change that may revoke (announced on `changes`, or found in the audit log when
// the announcement was lost) reads what was revoked in the last minute. A session id is
// forgotten when the session would have expired anyway, so the set stays as small as the
// number of revoked, still-unexpired sessions.
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import type { DatabasePool } from '../../persistence/db.ts';
import { revokedSessions } from '../../persistence/resource-sessions.ts';

/** Kinds of change after which revoked sessions are read again. */
export const REVOKING_KINDS = new Set(['resource', 'resource_session', 'user', 'member', 'org']);

const LOOK_BACK_MS = 60_000;

export class Revocations {
  readonly #db: DatabasePool;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** Session id -> its expiry (epoch ms). */
  readonly #revoked = new Map<string, number>();
  #loaded = false;
  #reading: Promise<void> | undefined;
  #again = false;

  constructor(d: { db: DatabasePool; clock: Clock; logger: Logger }) {
    this.#db = d.db;
    this.#clock = d.clock;
    this.#log = d.logger.child({ component: 'revocations' });
  }

  async start(): Promise<void> {
    await this.#read(null);
    this.#loaded = true;
  }

  has(sessionId: string): boolean {
    return this.#revoked.has(sessionId);
  }

  get size(): number {
    return this.#revoked.size;
  }

  /** A change of this kind was made: read recent revocations (coalesced while one read runs). */
  changed(kind: string): void {
    if (!REVOKING_KINDS.has(kind)) return;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = this.#read(this.#loaded ? LOOK_BACK_MS : null)
      .then(() => void (this.#loaded = true))
      .catch((err) => this.#log.warn({ err: (err as Error).message }, 'cannot read revoked sessions; the audit log replay tries again'))
      .finally(() => {
        this.#reading = undefined;
        if (this.#again) {
          this.#again = false;
          this.changed('resource_session');
        }
      });
  }

  async #read(withinMs: number | null): Promise<void> {
    const rows = await revokedSessions(this.#db, withinMs);
    const now = this.#clock.now();
    for (const [id, exp] of this.#revoked) if (exp <= now) this.#revoked.delete(id);
    for (const r of rows) this.#revoked.set(r.id, r.expiresAt);
  }

  /** Waits for a read in progress (tests). */
  async settled(): Promise<void> {
    while (this.#reading) await this.#reading;
  }
}
