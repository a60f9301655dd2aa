// The access log: every decision at a protected resource, kept in PostgreSQL. Decisions are
// summed in memory per (resource, decision, method, rule, reason, client, user) and written
// once a second as one row each with a count, so a busy resource costs a row per second and
// client, not a row per request; the request path never waits on PostgreSQL. While
// PostgreSQL is away, up to `maxPending` distinct rows wait; beyond that decisions are
// counted as dropped (a metric), never allowed to grow memory without bound.
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { sql, type DatabasePool } from '../../persistence/db.ts';

export interface AccessDecision {
  orgId: string;
  resourceId: string;
  decision: 'allowed' | 'denied';
  /** sso, password, pin, link, basic, session, rule; null when none applied. */
  method: string | null;
  ruleId: string | null;
  /** Why, in a word or two: `session`, `rule deny`, `no credentials`, `bad token`, ... */
  reason: string;
  client: string;
  userId: string | null;
}

interface Pending extends AccessDecision {
  at: number;
  count: number;
}

export interface AccessLogDeps {
  db: DatabasePool;
  clock: Clock;
  logger: Logger;
  nodeId: string;
  /** Rows older than this are deleted. */
  retentionMs: number;
  /** Distinct rows kept while PostgreSQL is away. @default 10000 */
  maxPending?: number;
  onDrop?: (n: number) => void;
}

const keyOf = (e: AccessDecision) => `${e.resourceId}|${e.decision}|${e.method}|${e.ruleId}|${e.reason}|${e.client}|${e.userId}`;

export class AccessLog {
  readonly #d: AccessLogDeps;
  #pending = new Map<string, Pending>();
  #timers: Array<{ cancel(): void }> = [];
  #flushing: Promise<void> | undefined;

  constructor(d: AccessLogDeps) {
    this.#d = d;
  }

  start(): void {
    this.#timers.push(this.#d.clock.setInterval(() => void this.flush(), 1000));
    // Retention: every node deletes what is past it; the deletes are idempotent and small.
    this.#timers.push(this.#d.clock.setInterval(() => void this.expire(), 10 * 60_000));
  }

  record(e: AccessDecision): void {
    const key = keyOf(e);
    const p = this.#pending.get(key);
    if (p) return void p.count++;
    if (this.#pending.size >= (this.#d.maxPending ?? 10_000)) return this.#d.onDrop?.(1);
    this.#pending.set(key, { ...e, at: this.#d.clock.now(), count: 1 });
  }

  /** Writes what is pending (the timer calls it; tests and shutdown too). */
  async flush(): Promise<void> {
    if (this.#flushing) return this.#flushing;
    if (!this.#pending.size) return;
    const batch = [...this.#pending.values()];
    this.#pending = new Map();
    this.#flushing = (async () => {
      try {
        const col = <K extends keyof Pending>(k: K) => batch.map((b) => b[k]);
        await this.#d.db.query(sql.unsafe`
          INSERT INTO access_log (at, org_id, resource_id, decision, method, rule_id, reason, client, user_id, node_id, count)
          SELECT to_timestamp(t.at / 1000.0), t.org_id, t.resource_id, t.decision, t.method, t.rule_id, t.reason, t.client, t.user_id, ${this.#d.nodeId}, t.count
          FROM unnest(${sql.array(col('at'), 'float8')}, ${sql.array(col('orgId'), 'uuid')}, ${sql.array(col('resourceId'), 'uuid')}, ${sql.array(col('decision'), 'text')},
            ${sql.array(col('method'), 'text')}, ${sql.array(col('ruleId'), 'uuid')}, ${sql.array(col('reason'), 'text')}, ${sql.array(col('client'), 'text')},
            ${sql.array(col('userId'), 'uuid')}, ${sql.array(col('count'), 'int4')})
            AS t(at, org_id, resource_id, decision, method, rule_id, reason, client, user_id, count)
          -- a resource or org deleted meanwhile: its decisions go with it
          WHERE EXISTS (SELECT 1 FROM orgs WHERE id = t.org_id)`);
      } catch (err) {
        // Put the batch back (counts merge) unless that would exceed the bound.
        for (const b of batch) {
          const key = keyOf(b);
          const p = this.#pending.get(key);
          if (p) p.count += b.count;
          else if (this.#pending.size < (this.#d.maxPending ?? 10_000)) this.#pending.set(key, b);
          else this.#d.onDrop?.(b.count);
        }
        this.#d.logger.debug({ err: (err as Error).message }, 'access log write failed; kept for the next second');
      } finally {
        this.#flushing = undefined;
      }
    })();
    return this.#flushing;
  }

  async expire(): Promise<void> {
    await this.#d.db.query(sql.unsafe`DELETE FROM access_log WHERE at < now() - ${this.#d.retentionMs} * interval '1 millisecond'`).catch(() => {});
  }

  async stop(): Promise<void> {
    for (const t of this.#timers) t.cancel();
    await this.flush();
  }
}
