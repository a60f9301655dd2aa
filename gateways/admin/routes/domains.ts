// /api/v1/orgs/:orgId/domains: zones the cluster is authoritative for. A domain belongs to one
// org: none may add a domain equal to, above or below another org's domain or resource
// hostname. A new domain is pending (serves only its name servers, gets no certificate)
// until the org proves control: delegation to the cluster's name servers, or the token as
// a TXT record at _cluster-challenge.<domain> (found through dns.verifyResolvers), or a
// server admin marks it verified.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { ClusterError } from '../../../core/errors.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { generateToken } from '../../../persistence/hashing.ts';
import { CHALLENGE_LABEL } from '../../dns/domain-proof.ts';
import { orgAccess } from '../auth.ts';
import { DomainListOut, DomainOut, ZoneRecordsOut } from '../schemas.ts';
import type { RecordData } from '../../../protocol/zone.ts';
import { deleteOne, notFound, OrgParams, Page, page, Uuid, write, type ApiDeps } from '../http.ts';

export const DomainName = Type.String({ maxLength: 253, pattern: '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' });
const domainRow = z.object({
  id: z.string(), orgId: z.string(), name: z.string(), soaSerial: z.coerce.number(), version: z.number(), createdAt: z.coerce.date(),
  status: z.enum(['pending', 'verified']), token: z.string(), verifiedAt: z.coerce.date().nullable(), verifiedBy: z.string().nullable(),
});
const COLUMNS = sql.fragment`id, org_id AS "orgId", name, soa_serial AS "soaSerial", version, created_at AS "createdAt",
  status, verification_token AS token, verified_at AS "verifiedAt", verified_by AS "verifiedBy"`;

/** The API's view of a domain: its verification, with what the org must publish to prove control. */
function view(d: z.infer<typeof domainRow>) {
  const { token, verifiedAt, verifiedBy, ...rest } = d;
  return {
    ...rest,
    verification: { status: d.status, verifiedAt, verifiedBy, txt: { name: `${CHALLENGE_LABEL}.${d.name}`, value: token } },
  };
}
const Params = Type.Object({ orgId: Uuid, domainId: Uuid }, { additionalProperties: false });

export function domainRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/api/v1/orgs/:orgId/domains', { schema: { tags: ['domains'], params: OrgParams, querystring: Page, response: { 200: DomainListOut } }, preHandler: orgAccess(deps, 'domains:read') }, async (req) => {
    const { limit, offset } = page(req.query);
    const items = await withDb(() => deps().db.any(sql.type(domainRow)`SELECT ${COLUMNS} FROM domains WHERE org_id = ${req.params.orgId} ORDER BY name LIMIT ${limit} OFFSET ${offset}`));
    return { items: items.map(view), limit, offset };
  });

  r.post('/api/v1/orgs/:orgId/domains', {
    schema: { tags: ['domains'], params: OrgParams, body: Type.Object({ name: DomainName }, { additionalProperties: false }), response: { 201: DomainOut } },
    preHandler: orgAccess(deps, 'domains:write'),
  }, async (req, reply) => {
    const { orgId } = req.params;
    const name = req.body.name;
    const created = await write(deps(), req, { kind: 'domain', orgId, action: 'created', touches: { names: [name] } }, async (tx) => {
      // One domain write at a time cluster-wide, so two orgs cannot add overlapping names at once.
      await tx.query(sql.unsafe`SELECT pg_advisory_xact_lock(hashtext('cluster:domains'))`);
      const taken = await tx.exists(sql.unsafe`
        SELECT 1 FROM domains WHERE org_id <> ${orgId} AND (name = ${name} OR ${name} LIKE '%.' || name OR name LIKE '%.' || ${name})
        UNION ALL
        SELECT 1 FROM resources WHERE org_id <> ${orgId} AND hostname IS NOT NULL AND (hostname = ${name} OR hostname LIKE '%.' || ${name})`);
      if (taken) throw new ClusterError('CLUSTER_ERR_API_CONFLICT', `${name} equals, contains or lies under a name another org holds`, { field: 'name' });
      return tx.one(sql.type(domainRow)`INSERT INTO domains (org_id, name, verification_token) VALUES (${orgId}, ${name}, ${generateToken(18)}) RETURNING ${COLUMNS}`);
    });
    return reply.code(201).send(view(created));
  });

  r.get('/api/v1/orgs/:orgId/domains/:domainId', { schema: { tags: ['domains'], params: Params }, preHandler: orgAccess(deps, 'domains:read') }, async (req) => {
    const row = await withDb(() => deps().db.maybeOne(sql.type(domainRow)`SELECT ${COLUMNS} FROM domains WHERE id = ${req.params.domainId} AND org_id = ${req.params.orgId}`));
    if (!row) throw notFound('domain');
    return view(row);
  });

  r.post('/api/v1/orgs/:orgId/domains/:domainId/verify', {
    schema: {
      tags: ['domains'],
      summary: 'Look for the proof of control now; a server admin may mark the domain verified by hand (force)',
      params: Params,
      // No body at all is the usual call; `{ "force": true }` is the server admin's.
      body: Type.Union([Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), Type.Null()]),
      response: { 200: DomainOut },
    },
    preHandler: orgAccess(deps, 'domains:write'),
  }, async (req) => {
    const d = deps();
    const { orgId, domainId } = req.params;
    const load = () => withDb(() => d.db.maybeOne(sql.type(domainRow)`SELECT ${COLUMNS} FROM domains WHERE id = ${domainId} AND org_id = ${orgId}`));
    const row = await load();
    if (!row) throw notFound('domain');
    if (row.status === 'verified') return view(row);
    if (req.body && req.body.force) {
      const p = req.principal;
      if (p?.type !== 'user' || !p.isServerAdmin) throw new ClusterError('CLUSTER_ERR_API_FORBIDDEN', 'only a server admin marks a domain verified by hand', { needed: 'server_admin' });
      await write(d, req, { kind: 'domain', id: domainId, orgId, action: 'updated', touches: { names: [row.name] } }, async (tx) => {
        await tx.query(sql.unsafe`UPDATE domains SET status = 'verified', verified_at = now(), verified_by = 'admin', version = version + 1 WHERE id = ${domainId} AND status = 'pending'`);
        return { id: domainId };
      }, () => ({ verified: 'admin' }));
    } else await d.verifyDomain(row.name);
    return view((await load())!);
  });

  // The zone as every node serves it (from the snapshot its actor published), and the NS
  // records with glue that delegate it to the cluster's name servers.
  r.get('/api/v1/orgs/:orgId/domains/:domainId/records', { schema: { tags: ['domains'], summary: 'The records every node serves for the domain, and the delegation to publish at its parent', params: Params, response: { 200: ZoneRecordsOut } }, preHandler: orgAccess(deps, 'domains:read') }, async (req) => {
    const row = await withDb(() => deps().db.maybeOne(sql.type(domainRow)`SELECT ${COLUMNS} FROM domains WHERE id = ${req.params.domainId} AND org_id = ${req.params.orgId}`));
    if (!row) throw notFound('domain');
    const zone = await deps().zone(row.name);
    if (!zone) return { serial: null, delegation: [], records: [] };
    const show = (r: RecordData) => (r.type === 'TXT' ? r.data.map((x) => JSON.stringify(x)).join(' ') : r.type === 'CAA' ? `${r.data.flags} ${r.data.tag} "${r.data.value}"` : r.data);
    const records = Object.entries(zone.records).sort(([a], [b]) => a.localeCompare(b)).flatMap(([name, rs]) => rs.map((r) => ({ name, type: r.type, ttl: r.ttl, value: show(r) })));
    const delegation = (zone.records[zone.zone] ?? []).filter((r) => r.type === 'NS').map((r) => ({
      ns: r.data as string,
      addresses: (zone.records[(r.data as string).toLowerCase()] ?? []).filter((g) => g.type === 'A' || g.type === 'AAAA').map((g) => g.data as string),
    }));
    return { serial: zone.serial, delegation, records };
  });

  r.delete('/api/v1/orgs/:orgId/domains/:domainId', { schema: { tags: ['domains'], summary: 'Delete a domain (refused while resources use it)', params: Params }, preHandler: orgAccess(deps, 'domains:write') }, async (req, reply) => {
    const { orgId, domainId } = req.params;
    await deleteOne(deps(), req, { kind: 'domain', id: domainId, orgId, touches: (row) => ({ names: [String(row.name)] }) }, 'domain', sql.unsafe`DELETE FROM domains WHERE id = ${domainId} AND org_id = ${orgId} RETURNING id, name`);
    return reply.code(204).send();
  });
}
