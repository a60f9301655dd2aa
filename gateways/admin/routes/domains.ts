// /api/v1/orgs/:orgId/domains: zones the cluster is authoritative for.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { sql, withDb } from '../../../persistence/db.ts';
import { orgAccess } from '../auth.ts';
import { deleteOne, notFound, OrgParams, Page, page, Uuid, write, type ApiDeps } from '../http.ts';

export const DomainName = Type.String({ maxLength: 253, pattern: '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' });
const domain = z.object({ id: z.string(), orgId: z.string(), name: z.string(), soaSerial: z.coerce.number(), version: z.number(), createdAt: z.coerce.date() });
const COLUMNS = sql.fragment`id, org_id AS "orgId", name, soa_serial AS "soaSerial", version, created_at AS "createdAt"`;
const Params = Type.Object({ orgId: Uuid, domainId: Uuid }, { additionalProperties: false });

export function domainRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/api/v1/orgs/:orgId/domains', { schema: { tags: ['domains'], params: OrgParams, querystring: Page }, preHandler: orgAccess(deps, 'domains:read') }, async (req) => {
    const { limit, offset } = page(req.query);
    const items = await withDb(() => deps().db.any(sql.type(domain)`SELECT ${COLUMNS} FROM domains WHERE org_id = ${req.params.orgId} ORDER BY name LIMIT ${limit} OFFSET ${offset}`));
    return { items, limit, offset };
  });

  r.post('/api/v1/orgs/:orgId/domains', {
    schema: { tags: ['domains'], params: OrgParams, body: Type.Object({ name: DomainName }, { additionalProperties: false }) },
    preHandler: orgAccess(deps, 'domains:write'),
  }, async (req, reply) => {
    const created = await write(deps(), req, { kind: 'domain', orgId: req.params.orgId, action: 'created' }, (tx) =>
      tx.one(sql.type(domain)`INSERT INTO domains (org_id, name) VALUES (${req.params.orgId}, ${req.body.name}) RETURNING ${COLUMNS}`),
    );
    return reply.code(201).send(created);
  });

  r.get('/api/v1/orgs/:orgId/domains/:domainId', { schema: { tags: ['domains'], params: Params }, preHandler: orgAccess(deps, 'domains:read') }, async (req) => {
    const row = await withDb(() => deps().db.maybeOne(sql.type(domain)`SELECT ${COLUMNS} FROM domains WHERE id = ${req.params.domainId} AND org_id = ${req.params.orgId}`));
    if (!row) throw notFound('domain');
    return row;
  });

  r.delete('/api/v1/orgs/:orgId/domains/:domainId', { schema: { tags: ['domains'], summary: 'Delete a domain (refused while resources use it)', params: Params }, preHandler: orgAccess(deps, 'domains:write') }, async (req, reply) => {
    const { orgId, domainId } = req.params;
    await deleteOne(deps(), req, { kind: 'domain', id: domainId, orgId }, 'domain', sql.unsafe`DELETE FROM domains WHERE id = ${domainId} AND org_id = ${orgId} RETURNING id`);
    return reply.code(204).send();
  });
}
