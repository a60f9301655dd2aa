// Read-only views of the cluster itself: nodes (server admins) and certificates (per org).
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { z } from 'zod';
import { sql, withDb } from '../../../persistence/db.ts';
import { orgAccess, serverAdmin } from '../auth.ts';
import { OrgParams, type ApiDeps } from '../http.ts';

const cert = z.object({ id: z.string(), hostname: z.string(), status: z.string(), notAfter: z.coerce.date().nullable(), renewAfter: z.coerce.date().nullable(), lastError: z.string().nullable() });

export function clusterRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/api/v1/nodes', { schema: { tags: ['cluster'], summary: 'Live nodes of the cluster, with lease age and actors by kind' }, preHandler: serverAdmin() }, async () => ({
    items: (await deps().nodes()).map((n) => ({ id: n.id, incarnation: n.incarnation, admin: n.admin, peer: n.peer, addresses: n.addresses ?? [], startedAt: new Date(n.startedAt), leaseAgeMs: n.leaseAgeMs, actors: n.actors })),
  }));

  r.get('/api/v1/orgs/:orgId/certificates', { schema: { tags: ['certificates'], params: OrgParams }, preHandler: orgAccess(deps, 'certificates:read') }, async (req) => {
    const items = await withDb(() => deps().db.any(sql.type(cert)`
      SELECT c.id, c.hostname, c.status, c.not_after AS "notAfter", c.renew_after AS "renewAfter", c.last_error AS "lastError"
      FROM certificates c JOIN domains d ON d.id = c.domain_id WHERE d.org_id = ${req.params.orgId} ORDER BY c.hostname`));
    return { items };
  });
}
