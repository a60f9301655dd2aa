// Read-only views of the cluster itself: nodes (server admins) and certificates (per org).
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { z } from 'zod';
import { sql, withDb } from '../../../persistence/db.ts';
import { orgAccess, serverAdmin } from '../auth.ts';
import { OrgParams, type ApiDeps } from '../http.ts';
import { CertificateListOut, NodeListOut, PlacementOut } from '../schemas.ts';

const cert = z.object({ id: z.string(), hostname: z.string(), status: z.string(), notAfter: z.coerce.date().nullable(), renewAfter: z.coerce.date().nullable(), lastError: z.string().nullable() });

export function clusterRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/api/v1/nodes', { schema: { tags: ['cluster'], summary: 'Live nodes of the cluster, with lease age and actors by kind', response: { 200: NodeListOut } }, preHandler: serverAdmin() }, async () => ({
    items: (await deps().nodes()).map((n) => ({ id: n.id, incarnation: n.incarnation, admin: n.admin, peer: n.peer, addresses: n.addresses ?? [], startedAt: new Date(n.startedAt).toISOString(), leaseAgeMs: n.leaseAgeMs, actors: n.actors })),
  }));

  // Which node runs each site, resource and zone actor (and the certificate issuer), from the
  // ownership registry: a live owner, or none while it moves.
  r.get('/api/v1/cluster/placement', { schema: { tags: ['cluster'], summary: 'Which node runs each site, resource and zone', response: { 200: PlacementOut } }, preHandler: serverAdmin() }, async () => {
    const d = deps();
    const Row = z.object({ kind: z.enum(['site', 'resource', 'dns-zone']), id: z.string(), name: z.string(), orgId: z.string() });
    const rows = await withDb(() => d.db.any(sql.type(Row)`
      SELECT 'site' AS kind, id::text, name, org_id::text AS "orgId" FROM sites
      UNION ALL SELECT 'resource', id::text, COALESCE(hostname, name), org_id::text FROM resources
      UNION ALL SELECT 'dns-zone', name, name, org_id::text FROM domains WHERE status = 'verified'
      ORDER BY 1, 3`));
    const items: Array<{ kind: 'site' | 'resource' | 'dns-zone' | 'cert-issuer'; id: string; name: string; orgId: string | null; node: string | null }> = [];
    for (const kind of ['site', 'resource', 'dns-zone'] as const) {
      const of = rows.filter((x) => x.kind === kind);
      const owners = await d.owners(kind, of.map((x) => x.id));
      for (const x of of) items.push({ ...x, node: owners.get(x.id) ?? null });
    }
    const issuer = await d.owners('cert-issuer', ['cluster']);
    items.push({ kind: 'cert-issuer', id: 'cluster', name: 'certificate issuer', orgId: null, node: issuer.get('cluster') ?? null });
    return { items };
  });

  // A live feed of what this node sees happen: members joining, dying, leaving; actors claimed
  // and released. Server-sent events; a client that loses its node reconnects through the load
  // balancer (retry: 1 s) to another, and reads the state again.
  r.get('/api/v1/cluster/events', { schema: { tags: ['cluster'], summary: 'Membership and ownership events, as server-sent events (text/event-stream)' }, preHandler: serverAdmin() }, async (req, reply) => {
    const d = deps();
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(`retry: 1000\nevent: hello\ndata: ${JSON.stringify({ node: d.nodeId })}\n\n`);
    const off = d.clusterEvents((e) => res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`));
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 10_000);
    req.raw.once('close', () => (off(), clearInterval(keepAlive)));
  });

  r.get('/api/v1/orgs/:orgId/certificates', { schema: { tags: ['certificates'], params: OrgParams, response: { 200: CertificateListOut } }, preHandler: orgAccess(deps, 'certificates:read') }, async (req) => {
    const items = await withDb(() => deps().db.any(sql.type(cert)`
      SELECT c.id, c.hostname, c.status, c.not_after AS "notAfter", c.renew_after AS "renewAfter", c.last_error AS "lastError"
      FROM certificates c JOIN domains d ON d.id = c.domain_id WHERE d.org_id = ${req.params.orgId} ORDER BY c.hostname`));
    return { items: [...items] };
  });
}
