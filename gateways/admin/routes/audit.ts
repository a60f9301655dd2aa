// /api/v1/orgs/:orgId/audit-log and /api/v1/audit-log: every admin write (and sign-in
// refusals, certificate orders), newest first; an org's rows for its admins and `audit:read`
// keys, every row for server admins.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { sql, withDb } from '../../../persistence/db.ts';
import { orgAccess, serverAdmin } from '../auth.ts';
import { OrgParams, type ApiDeps } from '../http.ts';
import { AuditListOut } from '../schemas.ts';

export function auditRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const auditRow = z.object({ id: z.coerce.string(), at: z.coerce.date(), actorType: z.string(), actorId: z.string().nullable(), orgId: z.string().nullable(), action: z.string(), targetType: z.string().nullable(), targetId: z.string().nullable(), nodeId: z.string().nullable(), details: z.record(z.unknown()) });
  const AuditQuery = Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$' })), before: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$', description: 'rows with an id below this (paging)' })) }, { additionalProperties: false });
  const auditPage = async (orgId: string | null, q: { limit?: string; before?: string }) => {
    const limit = Math.min(500, Math.max(1, Number(q.limit ?? 100)));
    const items = await withDb(() => deps().db.any(sql.type(auditRow)`
      SELECT id, at, actor_type AS "actorType", actor_id AS "actorId", org_id AS "orgId", action, target_type AS "targetType", target_id AS "targetId", node_id AS "nodeId", details
      FROM audit_log WHERE (${orgId}::uuid IS NULL OR org_id = ${orgId}) AND (${q.before ?? null}::bigint IS NULL OR id < ${q.before ?? null}::bigint)
      ORDER BY id DESC LIMIT ${limit}`));
    return { items: [...items], next: items.length === limit ? items.at(-1)!.id : null };
  };
  r.get('/api/v1/orgs/:orgId/audit-log', { schema: { tags: ['audit'], summary: "The org's audit log, newest first", params: OrgParams, querystring: AuditQuery, response: { 200: AuditListOut } }, preHandler: orgAccess(deps, 'audit:read') }, async (req) => auditPage(req.params.orgId, req.query));
  r.get('/api/v1/audit-log', { schema: { tags: ['audit'], summary: 'The whole audit log, newest first (server admins)', querystring: AuditQuery, response: { 200: AuditListOut } }, preHandler: serverAdmin() }, async (req) => auditPage(null, req.query));
}
