// Resource sessions in PostgreSQL: created at sign-in, marked at revocation. Validity is
// decided from the signed cookie on every node; these rows are what revocations name, and
// `revokedSessions` is how every node learns them (on an announcement, or from the audit log
// when the announcement was lost).
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { SessionMethod } from '../protocol/access.ts';
import { sql } from './db.ts';

export interface NewResourceSession {
  resourceId: string;
  orgId: string;
  method: SessionMethod;
  userId?: string;
  linkId?: string;
  /** The address an e-mail code proved. */
  email?: string;
  client: string;
  ttlMs: number;
}

/** Creates the row; returns its id and expiry (epoch ms). */
export async function createResourceSession(db: CommonQueryMethods, s: NewResourceSession): Promise<{ id: string; expiresAt: number }> {
  const row = await db.one(sql.type(z.object({ id: z.string(), expires_at: z.coerce.number() }))`
    INSERT INTO resource_sessions (resource_id, org_id, method, user_id, link_id, email, client, expires_at)
    VALUES (${s.resourceId}, ${s.orgId}, ${s.method}, ${s.userId ?? null}, ${s.linkId ?? null}, ${s.email ?? null}, ${s.client}, now() + ${`${s.ttlMs} milliseconds`}::interval)
    RETURNING id, (extract(epoch FROM expires_at) * 1000)::bigint AS expires_at`);
  return { id: row.id, expiresAt: row.expires_at };
}

/** Which sessions a revocation covers. */
export type RevocationScope =
  | { resourceId: string; method?: SessionMethod; linkId?: string }
  | { userId: string; orgId?: string }
  | { sessionId: string };

/** Marks the unexpired, unrevoked sessions in scope revoked; returns how many. */
export async function revokeResourceSessions(db: CommonQueryMethods, scope: RevocationScope): Promise<number> {
  const where =
    'sessionId' in scope
      ? sql.fragment`id = ${scope.sessionId}`
      : 'userId' in scope
        ? sql.fragment`user_id = ${scope.userId} AND (${scope.orgId ?? null}::uuid IS NULL OR org_id = ${scope.orgId ?? null})`
        : sql.fragment`resource_id = ${scope.resourceId} AND (${scope.method ?? null}::text IS NULL OR method = ${scope.method ?? null})
            AND (${scope.linkId ?? null}::uuid IS NULL OR link_id = ${scope.linkId ?? null})`;
  const r = await db.query(sql.unsafe`UPDATE resource_sessions SET revoked_at = clock_timestamp() WHERE ${where} AND revoked_at IS NULL AND expires_at > now()`);
  return r.rowCount;
}

const Revoked = z.object({ id: z.string(), expires_at: z.coerce.number(), revoked_at: z.coerce.number() });

/**
 * Revoked sessions that have not expired: all of them (`withinMs` null), or those revoked in
 * the last `withinMs` by the database's clock (a revoking transaction commits after it set
 * the time, so a reader looks back further than its own period, not from its last result).
 */
export async function revokedSessions(db: CommonQueryMethods, withinMs: number | null): Promise<Array<{ id: string; expiresAt: number; revokedAt: number }>> {
  const rows = await db.any(sql.type(Revoked)`
    SELECT id, (extract(epoch FROM expires_at) * 1000)::bigint AS expires_at, (extract(epoch FROM revoked_at) * 1000)::bigint AS revoked_at
    FROM resource_sessions WHERE revoked_at IS NOT NULL AND expires_at > now()
      AND (${withinMs}::bigint IS NULL OR revoked_at >= now() - ${withinMs ?? 0} * interval '1 millisecond')`);
  return rows.map((r) => ({ id: r.id, expiresAt: r.expires_at, revokedAt: r.revoked_at }));
}
