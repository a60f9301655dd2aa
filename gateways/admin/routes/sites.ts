// /api/v1/orgs/:orgId/sites. Creating a site returns its connector id and secret once;
// only the secret's hash is stored. Rotation issues a new secret and revokes the old ones.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { sql, withDb } from '../../../persistence/db.ts';
import { generateToken, hashToken } from '../../../persistence/hashing.ts';
import { orgAccess } from '../auth.ts';
import { ConnectorSecretOut, SiteCreatedOut, SiteListOut, SiteOut } from '../schemas.ts';
import { deleteOne, Name, notFound, OrgParams, Page, page, Uuid, Version, versionConflict, write, type ApiDeps } from '../http.ts';

const site = z.object({ id: z.string(), orgId: z.string(), name: z.string(), transport: z.string(), version: z.number(), lastSeenAt: z.coerce.date().nullable(), createdAt: z.coerce.date() });
const COLUMNS = sql.fragment`id, org_id AS "orgId", name, transport, version, last_seen_at AS "lastSeenAt", created_at AS "createdAt"`;
const Params = Type.Object({ orgId: Uuid, siteId: Uuid }, { additionalProperties: false });
const Transport = Type.Union([Type.Literal('websocket'), Type.Literal('wireguard')]);
/** A deleted site touches the resources its targets belonged to (the targets go with it). */
const removedSite = (row: Record<string, unknown>) => ({ siteIds: [String(row.id)], resourceIds: (row.resource_ids as string[]).map(String) });

export function siteRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const withStatus = async (sites: Array<z.infer<typeof site>>) => {
    const status = await deps().siteStatus(sites.map((s) => s.id));
    return sites.map((s) => ({ ...s, status: status.get(s.id) ?? { online: false, node: null, connectedSince: null, transport: null, wireguard: null, targets: [] } }));
  };

  r.get('/api/v1/orgs/:orgId/sites', { schema: { tags: ['sites'], params: OrgParams, querystring: Page, response: { 200: SiteListOut } }, preHandler: orgAccess(deps, 'sites:read') }, async (req) => {
    const { limit, offset } = page(req.query);
    const rows = await withDb(() => deps().db.any(sql.type(site)`SELECT ${COLUMNS} FROM sites WHERE org_id = ${req.params.orgId} ORDER BY created_at, id LIMIT ${limit} OFFSET ${offset}`));
    return { items: await withStatus([...rows]), limit, offset };
  });

  r.post('/api/v1/orgs/:orgId/sites', {
    schema: { tags: ['sites'], summary: 'Create a site; the connector secret is shown only in this reply', params: OrgParams, body: Type.Object({ name: Name, transport: Type.Optional(Transport) }, { additionalProperties: false }), response: { 201: SiteCreatedOut } },
    preHandler: orgAccess(deps, 'sites:write'),
  }, async (req, reply) => {
    const secret = generateToken();
    const created = await write(deps(), req, { kind: 'site', orgId: req.params.orgId, action: 'created' }, async (tx) => {
      const s = await tx.one(sql.type(site)`INSERT INTO sites (org_id, name, transport) VALUES (${req.params.orgId}, ${req.body.name}, ${req.body.transport ?? 'websocket'}) RETURNING ${COLUMNS}`);
      await tx.query(sql.unsafe`INSERT INTO site_secrets (site_id, secret_hash) VALUES (${s.id}, ${sql.binary(hashToken(secret))})`);
      return s;
    }, undefined, (s) => ({ siteIds: [s.id] }));
    return reply.code(201).send({ ...created, connector: { id: created.id, secret } });
  });

  r.get('/api/v1/orgs/:orgId/sites/:siteId', { schema: { tags: ['sites'], params: Params, response: { 200: SiteOut } }, preHandler: orgAccess(deps, 'sites:read') }, async (req) => {
    const row = await withDb(() => deps().db.maybeOne(sql.type(site)`SELECT ${COLUMNS} FROM sites WHERE id = ${req.params.siteId} AND org_id = ${req.params.orgId}`));
    if (!row) throw notFound('site');
    const [one] = await withStatus([row]);
    // One site: its WireGuard peer's handshake and bytes, live from the node holding it.
    if (one!.status.online && one!.status.transport === 'wireguard') one!.status.wireguard = await deps().siteTunnel(row.id).catch(() => null);
    return one;
  });

  r.patch('/api/v1/orgs/:orgId/sites/:siteId', {
    schema: { tags: ['sites'], params: Params, body: Type.Object({ version: Version, name: Type.Optional(Name), transport: Type.Optional(Transport) }, { additionalProperties: false }) },
    preHandler: orgAccess(deps, 'sites:write'),
  }, async (req) => {
    const { orgId, siteId } = req.params;
    return write(deps(), req, { kind: 'site', id: siteId, orgId, action: 'updated', touches: { siteIds: [siteId] } }, async (tx) => {
      const row = await tx.maybeOne(sql.type(site)`
        UPDATE sites SET name = COALESCE(${req.body.name ?? null}, name), transport = COALESCE(${req.body.transport ?? null}, transport), version = version + 1, updated_at = now()
        WHERE id = ${siteId} AND org_id = ${orgId} AND version = ${req.body.version} RETURNING ${COLUMNS}`);
      if (row) return row;
      throw versionConflict(await tx.maybeOneFirst(sql.type(z.object({ version: z.number() }))`SELECT version FROM sites WHERE id = ${siteId} AND org_id = ${orgId}`), 'site');
    });
  });

  r.post('/api/v1/orgs/:orgId/sites/:siteId/rotate-secret', { schema: { tags: ['sites'], summary: 'Issue a new connector secret (shown once); old secrets stop working', params: Params, response: { 200: ConnectorSecretOut } }, preHandler: orgAccess(deps, 'sites:write') }, async (req) => {
    const { orgId, siteId } = req.params;
    const secret = generateToken();
    await write(deps(), req, { kind: 'site', id: siteId, orgId, action: 'updated', touches: { siteIds: [siteId] } }, async (tx) => {
      // The generation moves on: tokens issued for the old secret stop working, and the site's
      // live connection is closed by its actor when it hears of the change.
      if (!(await tx.maybeOne(sql.unsafe`UPDATE sites SET secret_generation = secret_generation + 1 WHERE id = ${siteId} AND org_id = ${orgId} RETURNING id`))) throw notFound('site');
      await tx.query(sql.unsafe`UPDATE site_secrets SET revoked_at = now() WHERE site_id = ${siteId} AND revoked_at IS NULL`);
      await tx.query(sql.unsafe`INSERT INTO site_secrets (site_id, secret_hash) VALUES (${siteId}, ${sql.binary(hashToken(secret))})`);
      return { id: siteId };
    }, () => ({ rotated: 'secret' }));
    return { connector: { id: siteId, secret } };
  });

  r.delete('/api/v1/orgs/:orgId/sites/:siteId', { schema: { tags: ['sites'], params: Params }, preHandler: orgAccess(deps, 'sites:write') }, async (req, reply) => {
    const { orgId, siteId } = req.params;
    await deleteOne(deps(), req, { kind: 'site', id: siteId, orgId, touches: removedSite }, 'site', sql.unsafe`
      DELETE FROM sites WHERE id = ${siteId} AND org_id = ${orgId}
      RETURNING id, (SELECT coalesce(array_agg(DISTINCT resource_id), '{}') FROM targets WHERE site_id = ${siteId}) AS resource_ids`);
    return reply.code(204).send();
  });
}
