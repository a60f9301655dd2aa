// /api/v1/orgs/:orgId/resources and their targets. An HTTP resource is published by
// hostname under one of the org's domains; a TCP/UDP resource by public port. Targets are
// host:port endpoints reached through one of the org's sites.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { ClusterError } from '../../../core/errors.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { hit, type Limit } from '../../../persistence/rate-limit.ts';
import { orgAccess } from '../auth.ts';
import { ResourceListOut, TargetListOut } from '../schemas.ts';
import { deleteOne, Name, notFound, OrgParams, Page, page, Uuid, Version, versionConflict, write, type ApiDeps } from '../http.ts';
import { DomainName } from './domains.ts';

const resource = z.object({
  id: z.string(), orgId: z.string(), name: z.string(), protocol: z.string(), domainId: z.string().nullable(), hostname: z.string().nullable(),
  proxyPort: z.number().nullable(), tls: z.boolean(), enabled: z.boolean(), version: z.number(), createdAt: z.coerce.date(),
});
const COLUMNS = sql.fragment`id, org_id AS "orgId", name, protocol, domain_id AS "domainId", hostname, proxy_port AS "proxyPort", tls, enabled, version, created_at AS "createdAt"`;
const target = z.object({
  id: z.string(), resourceId: z.string(), siteId: z.string(), host: z.string(), port: z.number(), scheme: z.string(), enabled: z.boolean(), weight: z.number(),
  healthCheck: z.record(z.unknown()), version: z.number(),
});
const TARGET_COLUMNS = sql.fragment`id, resource_id AS "resourceId", site_id AS "siteId", host, port, scheme, enabled, weight, health_check AS "healthCheck", version`;

const certificate = z.object({
  hostname: z.string(), status: z.string(), notAfter: z.coerce.date().nullable(), renewAfter: z.coerce.date().nullable(), lastError: z.string().nullable(), nextAttemptAt: z.coerce.date().nullable(),
});
const Params = Type.Object({ orgId: Uuid, resourceId: Uuid }, { additionalProperties: false });
const TargetParams = Type.Object({ orgId: Uuid, resourceId: Uuid, targetId: Uuid }, { additionalProperties: false });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });

/** Certificate requests per org (each may place an ACME order on the cluster's one account). */
export const CERTIFICATE_LIMIT: Limit = { scope: 'certificate-org', max: 20, windowMs: 3600_000 };

/** A resource port must lie in the operator's range, which holds none of the node's own ports. */
function assertResourcePort(d: ApiDeps, port: number) {
  const { min, max } = d.resourcePorts;
  if (port < min || port > max) throw new ClusterError('CLUSTER_ERR_API_VALIDATION', `proxyPort ${port} is outside this cluster's resource ports ${min}-${max}`, { field: 'body.proxyPort', problem: `outside ${min}-${max}` });
}
const Host = Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:-]+$', description: 'hostname or IP address as seen from the site' });
const HealthCheck = Type.Object(
  {
    type: Type.Union([Type.Literal('http'), Type.Literal('tcp'), Type.Literal('none')]),
    path: Type.Optional(Type.String({ pattern: '^/[\\x21-\\x7e]{0,200}$' })),
    intervalMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 300_000 })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
    healthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 })),
    unhealthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 })),
  },
  { additionalProperties: false },
);

/** A deleted resource touches its zone and the sites its targets were on (deleted with it). */
const removedResource = (row: Record<string, unknown>) => ({
  resourceIds: [String(row.id)],
  siteIds: (row.site_ids as string[]).map(String),
  ...(row.hostname ? { names: [String(row.hostname)] } : {}),
});

export function resourceRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const withStatus = async (rows: Array<z.infer<typeof resource>>) => {
    const status = await deps().resourceStatus(rows.map((x) => x.id));
    const hostnames = rows.flatMap((x) => (x.hostname ? [x.hostname] : []));
    const certs = new Map(
      hostnames.length
        ? (await withDb(() => deps().db.any(sql.type(certificate)`
            SELECT hostname, status, not_after AS "notAfter", renew_after AS "renewAfter", last_error AS "lastError", next_attempt_at AS "nextAttemptAt"
            FROM certificates WHERE hostname = ANY(${sql.array(hostnames, 'text')})`))).map((c) => [c.hostname, c] as const)
        : [],
    );
    return rows.map((x) => {
      const cert = x.hostname ? certs.get(x.hostname) : undefined;
      const { hostname: _h, ...certificateStatus } = cert ?? { hostname: '' };
      return { ...x, status: status.get(x.id) ?? { published: false, servingNodes: [], targets: [], listenProblems: {}, access: null }, certificate: x.tls && cert ? (certificateStatus as Omit<z.infer<typeof certificate>, 'hostname'>) : null };
    });
  };

  r.get('/api/v1/orgs/:orgId/resources', { schema: { tags: ['resources'], params: OrgParams, querystring: Page, response: { 200: ResourceListOut } }, preHandler: orgAccess(deps, 'resources:read') }, async (req) => {
    const { limit, offset } = page(req.query);
    const items = await withDb(() => deps().db.any(sql.type(resource)`SELECT ${COLUMNS} FROM resources WHERE org_id = ${req.params.orgId} ORDER BY created_at, id LIMIT ${limit} OFFSET ${offset}`));
    return { items: await withStatus([...items]), limit, offset };
  });

  r.post('/api/v1/orgs/:orgId/resources', {
    schema: {
      tags: ['resources'],
      params: OrgParams,
      body: Type.Union([
        Type.Object({ name: Name, protocol: Type.Literal('http'), hostname: DomainName, tls: Type.Optional(Type.Boolean()), enabled: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        Type.Object({ name: Name, protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]), proxyPort: Port, enabled: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
      ]),
    },
    preHandler: orgAccess(deps, 'resources:write'),
  }, async (req, reply) => {
    const { orgId } = req.params;
    const b = req.body;
    const created = await write(deps(), req, { kind: 'resource', orgId, action: 'created' }, async (tx) => {
      if (b.protocol === 'http') {
        // The hostname must sit under one of this org's domains (longest match wins).
        const domainId = await tx.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
          SELECT id FROM domains WHERE org_id = ${orgId} AND (${b.hostname} = name OR ${b.hostname} LIKE '%.' || name) ORDER BY length(name) DESC LIMIT 1`);
        if (!domainId) throw new ClusterError('CLUSTER_ERR_API_VALIDATION', `${b.hostname} is not under one of this org's domains`, { field: 'body.hostname', problem: 'not under an org domain' });
        return tx.one(sql.type(resource)`
          INSERT INTO resources (org_id, name, protocol, domain_id, hostname, tls, enabled)
          VALUES (${orgId}, ${b.name}, 'http', ${domainId}, ${b.hostname}, ${b.tls ?? true}, ${b.enabled ?? true}) RETURNING ${COLUMNS}`);
      }
      assertResourcePort(deps(), b.proxyPort);
      return tx.one(sql.type(resource)`
        INSERT INTO resources (org_id, name, protocol, proxy_port, tls, enabled)
        VALUES (${orgId}, ${b.name}, ${b.protocol}, ${b.proxyPort}, false, ${b.enabled ?? true}) RETURNING ${COLUMNS}`);
    }, undefined, (r) => ({ resourceIds: [r.id], ...(r.hostname ? { names: [r.hostname] } : {}) }));
    return reply.code(201).send(created);
  });

  r.get('/api/v1/orgs/:orgId/resources/:resourceId', { schema: { tags: ['resources'], params: Params }, preHandler: orgAccess(deps, 'resources:read') }, async (req) => {
    const row = await withDb(() => deps().db.maybeOne(sql.type(resource)`SELECT ${COLUMNS} FROM resources WHERE id = ${req.params.resourceId} AND org_id = ${req.params.orgId}`));
    if (!row) throw notFound('resource');
    return (await withStatus([row]))[0];
  });

  // Obtain the certificate now (or renew it if due) instead of waiting for the next check.
  // Any number of these at once, on any nodes, make at most one ACME order.
  r.post('/api/v1/orgs/:orgId/resources/:resourceId/certificate', { schema: { tags: ['resources'], params: Params }, preHandler: orgAccess(deps, 'resources:write') }, async (req) => {
    const row = await withDb(() => deps().db.maybeOne(sql.type(resource)`SELECT ${COLUMNS} FROM resources WHERE id = ${req.params.resourceId} AND org_id = ${req.params.orgId}`));
    if (!row) throw notFound('resource');
    if (!row.tls || !row.hostname || !row.domainId) throw new ClusterError('CLUSTER_ERR_API_VALIDATION', 'only an HTTPS resource under a domain gets a certificate', { field: 'tls', problem: 'the resource is not an HTTPS resource under a domain' });
    // One org cannot spend the cluster's shared ACME account: requests are limited per org,
    // and a hostname backing off after failures is not ordered again before its time.
    await hit(deps().valkey, CERTIFICATE_LIMIT, req.params.orgId);
    const result = (await deps().obtainCertificate(row.hostname)) as { retryAt?: string; error?: string };
    if (result.retryAt) {
      const retryAfterMs = Math.max(0, Date.parse(result.retryAt) - Date.now());
      throw new ClusterError('CLUSTER_ERR_API_RATE_LIMITED', `${row.hostname} failed recently; the next order may be placed at ${result.retryAt}`, { retryAfterMs });
    }
    return result;
  });

  r.patch('/api/v1/orgs/:orgId/resources/:resourceId', {
    schema: { tags: ['resources'], params: Params, body: Type.Object({ version: Version, name: Type.Optional(Name), enabled: Type.Optional(Type.Boolean()), tls: Type.Optional(Type.Boolean()), proxyPort: Type.Optional(Port) }, { additionalProperties: false }) },
    preHandler: orgAccess(deps, 'resources:write'),
  }, async (req) => {
    const { orgId, resourceId } = req.params;
    const b = req.body;
    if (b.proxyPort !== undefined) assertResourcePort(deps(), b.proxyPort);
    return write(deps(), req, { kind: 'resource', id: resourceId, orgId, action: 'updated' }, async (tx) => {
      const row = await tx.maybeOne(sql.type(resource)`
        UPDATE resources SET name = COALESCE(${b.name ?? null}, name), enabled = COALESCE(${b.enabled ?? null}, enabled),
          tls = CASE WHEN protocol = 'http' THEN COALESCE(${b.tls ?? null}, tls) ELSE tls END,
          proxy_port = CASE WHEN protocol = 'http' THEN NULL ELSE COALESCE(${b.proxyPort ?? null}, proxy_port) END,
          version = version + 1, updated_at = now()
        WHERE id = ${resourceId} AND org_id = ${orgId} AND version = ${b.version} RETURNING ${COLUMNS}`);
      if (row) return row;
      throw versionConflict(await tx.maybeOneFirst(sql.type(z.object({ version: z.number() }))`SELECT version FROM resources WHERE id = ${resourceId} AND org_id = ${orgId}`), 'resource');
    }, undefined, (r) => ({ resourceIds: [resourceId], ...(r.hostname ? { names: [r.hostname] } : {}) }));
  });

  r.delete('/api/v1/orgs/:orgId/resources/:resourceId', { schema: { tags: ['resources'], params: Params }, preHandler: orgAccess(deps, 'resources:write') }, async (req, reply) => {
    const { orgId, resourceId } = req.params;
    await deleteOne(deps(), req, { kind: 'resource', id: resourceId, orgId, touches: removedResource }, 'resource', sql.unsafe`
      DELETE FROM resources WHERE id = ${resourceId} AND org_id = ${orgId}
      RETURNING id, hostname, (SELECT coalesce(array_agg(DISTINCT site_id), '{}') FROM targets WHERE resource_id = ${resourceId}) AS site_ids`);
    return reply.code(204).send();
  });

  // Targets
  r.get('/api/v1/orgs/:orgId/resources/:resourceId/targets', { schema: { tags: ['targets'], params: Params, response: { 200: TargetListOut } }, preHandler: orgAccess(deps, 'resources:read') }, async (req) => {
    const items = await withDb(() => deps().db.any(sql.type(target)`
      SELECT ${TARGET_COLUMNS} FROM targets t WHERE resource_id = ${req.params.resourceId}
        AND EXISTS (SELECT 1 FROM resources WHERE id = t.resource_id AND org_id = ${req.params.orgId}) ORDER BY created_at, id`));
    return { items: [...items] };
  });

  r.post('/api/v1/orgs/:orgId/resources/:resourceId/targets', {
    schema: {
      tags: ['targets'],
      params: Params,
      body: Type.Object({ siteId: Uuid, host: Host, port: Port, scheme: Type.Union([Type.Literal('http'), Type.Literal('https'), Type.Literal('tcp'), Type.Literal('udp')]), enabled: Type.Optional(Type.Boolean()), weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })), healthCheck: Type.Optional(HealthCheck) }, { additionalProperties: false }),
    },
    preHandler: orgAccess(deps, 'resources:write'),
  }, async (req, reply) => {
    const { orgId, resourceId } = req.params;
    const b = req.body;
    const created = await write(deps(), req, { kind: 'target', orgId, action: 'created', touches: { siteIds: [b.siteId], resourceIds: [resourceId] } }, async (tx) => {
      if (!(await tx.exists(sql.unsafe`SELECT 1 FROM resources WHERE id = ${resourceId} AND org_id = ${orgId}`))) throw notFound('resource');
      // A target may only use a site of the same org: other orgs' sites do not exist here.
      if (!(await tx.exists(sql.unsafe`SELECT 1 FROM sites WHERE id = ${b.siteId} AND org_id = ${orgId}`))) throw new ClusterError('CLUSTER_ERR_API_VALIDATION', 'no such site in this org', { field: 'body.siteId', problem: 'unknown site' });
      return tx.one(sql.type(target)`
        INSERT INTO targets (resource_id, site_id, host, port, scheme, enabled, weight, health_check)
        VALUES (${resourceId}, ${b.siteId}, ${b.host}, ${b.port}, ${b.scheme}, ${b.enabled ?? true}, ${b.weight ?? 100}, ${sql.jsonb((b.healthCheck ?? { type: 'none' }) as any)})
        RETURNING ${TARGET_COLUMNS}`);
    });
    return reply.code(201).send(created);
  });

  r.patch('/api/v1/orgs/:orgId/resources/:resourceId/targets/:targetId', {
    schema: { tags: ['targets'], params: TargetParams, body: Type.Object({ version: Version, enabled: Type.Optional(Type.Boolean()), weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })), host: Type.Optional(Host), port: Type.Optional(Port), healthCheck: Type.Optional(HealthCheck) }, { additionalProperties: false }) },
    preHandler: orgAccess(deps, 'resources:write'),
  }, async (req) => {
    const { orgId, resourceId, targetId } = req.params;
    const b = req.body;
    return write(deps(), req, { kind: 'target', id: targetId, orgId, action: 'updated' }, async (tx) => {
      const row = await tx.maybeOne(sql.type(target)`
        UPDATE targets t SET enabled = COALESCE(${b.enabled ?? null}, enabled), weight = COALESCE(${b.weight ?? null}, weight),
          host = COALESCE(${b.host ?? null}, host), port = COALESCE(${b.port ?? null}, port),
          health_check = COALESCE(${b.healthCheck ? sql.jsonb(b.healthCheck as any) : null}, health_check), version = version + 1, updated_at = now()
        WHERE id = ${targetId} AND resource_id = ${resourceId} AND version = ${b.version}
          AND EXISTS (SELECT 1 FROM resources WHERE id = t.resource_id AND org_id = ${orgId}) RETURNING ${TARGET_COLUMNS}`);
      if (row) return row;
      throw versionConflict(await tx.maybeOneFirst(sql.type(z.object({ version: z.number() }))`
        SELECT t.version FROM targets t JOIN resources r ON r.id = t.resource_id WHERE t.id = ${targetId} AND r.id = ${resourceId} AND r.org_id = ${orgId}`), 'target');
    }, undefined, (t) => ({ siteIds: [t.siteId], resourceIds: [resourceId] }));
  });

  r.delete('/api/v1/orgs/:orgId/resources/:resourceId/targets/:targetId', { schema: { tags: ['targets'], params: TargetParams }, preHandler: orgAccess(deps, 'resources:write') }, async (req, reply) => {
    const { orgId, resourceId, targetId } = req.params;
    await deleteOne(deps(), req, { kind: 'target', id: targetId, orgId, touches: (t) => ({ siteIds: [String(t.site_id)], resourceIds: [resourceId] }) }, 'target', sql.unsafe`
      DELETE FROM targets t USING resources r WHERE t.id = ${targetId} AND t.resource_id = ${resourceId} AND r.id = t.resource_id AND r.org_id = ${orgId} RETURNING t.id, t.site_id`);
    return reply.code(204).send();
  });
}
