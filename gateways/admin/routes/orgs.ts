// /api/v1/orgs and their members. Server admins create orgs; org admins manage members.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { revokeResourceSessions } from '../../../persistence/resource-sessions.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { assertMayGrant, authenticated, orgAccess, ROLE_ACTIONS, serverAdmin } from '../auth.ts';
import { MemberListOut, OrgListOut } from '../schemas.ts';
import { deleteOne, Name, notFound, OrgParams, Page, page, Uuid, Version, versionConflict, write, type ApiDeps } from '../http.ts';

const Slug = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });
const org = z.object({ id: z.string(), slug: z.string(), name: z.string(), version: z.number(), createdAt: z.coerce.date(), updatedAt: z.coerce.date() });
const member = z.object({ userId: z.string(), email: z.string(), role: z.string(), createdAt: z.coerce.date() });
const ORG_COLUMNS = sql.fragment`id, slug, name, version, created_at AS "createdAt", updated_at AS "updatedAt"`;

export function orgRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/api/v1/orgs', { schema: { tags: ['orgs'], summary: 'Orgs the caller can see', querystring: Page, response: { 200: OrgListOut } }, preHandler: authenticated() }, async (req) => {
    const { db } = deps();
    const { limit, offset } = page(req.query);
    const p = req.principal!;
    const where =
      p.type === 'api_key' ? sql.fragment`WHERE id = ${p.orgId}`
      : p.isServerAdmin ? sql.fragment``
      : sql.fragment`WHERE id IN (SELECT org_id FROM org_members WHERE user_id = ${p.userId})`;
    const items = await withDb(() => db.any(sql.type(org)`SELECT ${ORG_COLUMNS} FROM orgs ${where} ORDER BY created_at, id LIMIT ${limit} OFFSET ${offset}`));
    return { items: items.map((o) => ({ ...o, createdAt: o.createdAt.toISOString(), updatedAt: o.updatedAt.toISOString() })), limit, offset };
  });

  r.post('/api/v1/orgs', {
    schema: { tags: ['orgs'], summary: 'Create an org (server admins)', body: Type.Object({ slug: Slug, name: Name }, { additionalProperties: false }) },
    preHandler: serverAdmin(),
  }, async (req, reply) => {
    const created = await write(deps(), req, { kind: 'org', orgId: null, action: 'created' }, (tx) =>
      tx.one(sql.type(org)`INSERT INTO orgs (slug, name) VALUES (${req.body.slug}, ${req.body.name}) RETURNING ${ORG_COLUMNS}`),
    );
    return reply.code(201).send(created);
  });

  r.get('/api/v1/orgs/:orgId', { schema: { tags: ['orgs'], params: OrgParams }, preHandler: orgAccess(deps, 'org:read') }, async (req) => {
    const row = await withDb(() => deps().db.maybeOne(sql.type(org)`SELECT ${ORG_COLUMNS} FROM orgs WHERE id = ${req.params.orgId}`));
    if (!row) throw notFound('org');
    return row;
  });

  r.patch('/api/v1/orgs/:orgId', {
    schema: { tags: ['orgs'], params: OrgParams, body: Type.Object({ name: Name, version: Version }, { additionalProperties: false }) },
    preHandler: serverAdmin(),
  }, async (req) => {
    const d = deps();
    return write(d, req, { kind: 'org', id: req.params.orgId, orgId: req.params.orgId, action: 'updated' }, async (tx) => {
      const row = await tx.maybeOne(sql.type(org)`
        UPDATE orgs SET name = ${req.body.name}, version = version + 1, updated_at = now()
        WHERE id = ${req.params.orgId} AND version = ${req.body.version} RETURNING ${ORG_COLUMNS}`);
      if (row) return row;
      throw versionConflict(await tx.maybeOneFirst(sql.type(z.object({ version: z.number() }))`SELECT version FROM orgs WHERE id = ${req.params.orgId}`), 'org');
    });
  });

  r.delete('/api/v1/orgs/:orgId', { schema: { tags: ['orgs'], params: OrgParams }, preHandler: serverAdmin() }, async (req, reply) => {
    await deleteOne(deps(), req, { kind: 'org', id: req.params.orgId, orgId: null }, 'org', sql.unsafe`DELETE FROM orgs WHERE id = ${req.params.orgId} RETURNING id`);
    return reply.code(204).send();
  });

  const MemberParams = Type.Object({ orgId: Uuid, userId: Uuid }, { additionalProperties: false });

  r.get('/api/v1/orgs/:orgId/members', { schema: { tags: ['members'], params: OrgParams, querystring: Page, response: { 200: MemberListOut } }, preHandler: orgAccess(deps, 'members:read') }, async (req) => {
    const { limit, offset } = page(req.query);
    const items = await withDb(() => deps().db.any(sql.type(member)`
      SELECT m.user_id AS "userId", u.email, m.role, m.created_at AS "createdAt" FROM org_members m JOIN users u ON u.id = m.user_id
      WHERE m.org_id = ${req.params.orgId} ORDER BY m.created_at, m.user_id LIMIT ${limit} OFFSET ${offset}`));
    return { items: [...items], limit, offset };
  });

  r.put('/api/v1/orgs/:orgId/members/:userId', {
    schema: { tags: ['members'], summary: 'Add a user to the org or change their role', params: MemberParams, body: Type.Object({ role: Type.Union([Type.Literal('admin'), Type.Literal('member')]) }, { additionalProperties: false }) },
    preHandler: orgAccess(deps, 'members:write'),
  }, async (req) => {
    const { orgId, userId } = req.params;
    assertMayGrant(req, ROLE_ACTIONS[req.body.role]);
    return write(deps(), req, { kind: 'member', id: userId, orgId, action: 'updated' }, async (tx) => {
      if (!(await tx.exists(sql.unsafe`SELECT 1 FROM users WHERE id = ${userId}`))) throw notFound('user');
      const before = await tx.maybeOneFirst(sql.type(z.object({ role: z.string() }))`SELECT role FROM org_members WHERE org_id = ${orgId} AND user_id = ${userId}`);
      await tx.query(sql.unsafe`INSERT INTO org_members (org_id, user_id, role) VALUES (${orgId}, ${userId}, ${req.body.role}) ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role`);
      // Resource sessions carry the role they were made with: a new role means signing in again.
      if (before !== null && before !== req.body.role) await revokeResourceSessions(tx, { userId, orgId });
      return { id: userId, userId, role: req.body.role };
    });
  });

  r.delete('/api/v1/orgs/:orgId/members/:userId', { schema: { tags: ['members'], params: MemberParams }, preHandler: orgAccess(deps, 'members:write') }, async (req, reply) => {
    const { orgId, userId } = req.params;
    await deleteOne(deps(), req, { kind: 'member', id: userId, orgId }, 'member', sql.unsafe`
      WITH gone AS (DELETE FROM org_members WHERE org_id = ${orgId} AND user_id = ${userId} RETURNING user_id),
        ended AS (UPDATE resource_sessions SET revoked_at = clock_timestamp() WHERE org_id = ${orgId} AND user_id IN (SELECT user_id FROM gone) AND revoked_at IS NULL AND expires_at > now())
      SELECT user_id FROM gone`);
    return reply.code(204).send();
  });
}
