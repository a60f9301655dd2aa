// The audit log: every admin write appends a row in the same transaction as the change.
import { sql } from './db.ts';
import type { DatabaseTransactionConnection } from 'slonik';
import { z } from 'zod';

export interface AuditEntry {
  actorType: 'user' | 'api_key' | 'system' | 'node' | 'connector';
  actorId: string | null;
  orgId: string | null;
  action: string;
  targetType: string;
  targetId: string;
  nodeId: string;
  details?: Record<string, unknown>;
}

/** Appends the row; returns its id (announcements carry it, so nodes can tell which they missed). */
export async function audit(tx: DatabaseTransactionConnection, e: AuditEntry): Promise<number> {
  const id = await tx.oneFirst(sql.type(z.object({ id: z.coerce.number() }))`
    INSERT INTO audit_log (actor_type, actor_id, org_id, action, target_type, target_id, node_id, details)
    VALUES (${e.actorType}, ${e.actorId}, ${e.orgId}, ${e.action}, ${e.targetType}, ${e.targetId}, ${e.nodeId}, ${sql.jsonb((e.details ?? {}) as any)})
    RETURNING id`);
  return Number(id);
}
