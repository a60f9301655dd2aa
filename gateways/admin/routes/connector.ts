// POST /api/v1/connector/token: a connector proves its site id and secret and gets a
// short-lived token for the control WebSocket, bound to the site's current secret
// generation. Rate limited per address, and per site for wrong secrets only (counted in
// Valkey, so across nodes): knowing a site's id is not enough to lock its connector out.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { ClusterError } from '../../../core/errors.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { hashToken } from '../../../persistence/hashing.ts';
import { hit, type Limit } from '../../../persistence/rate-limit.ts';
import { Uuid, type ApiDeps } from '../http.ts';

export const CONNECTOR_LIMITS = {
  perAddress: { scope: 'connector-address', max: 60, windowMs: 60_000 } satisfies Limit,
  perSite: { scope: 'connector-site', max: 10, windowMs: 60_000 } satisfies Limit,
};

export function connectorRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.post('/api/v1/connector/token', {
    schema: { tags: ['connector'], summary: 'Exchange a site id and secret for a control-channel token', body: Type.Object({ siteId: Uuid, secret: Type.String({ minLength: 20, maxLength: 200 }) }, { additionalProperties: false }) },
  }, async (req) => {
    const d = deps();
    await hit(d.valkey, CONNECTOR_LIMITS.perAddress, req.ip);
    const rows = await withDb(() => d.db.any(sql.type(z.object({ secret_hash: z.instanceof(Buffer), generation: z.number() }))`
      SELECT k.secret_hash, s.secret_generation AS generation FROM site_secrets k JOIN sites s ON s.id = k.site_id
      WHERE k.site_id = ${req.body.siteId} AND k.revoked_at IS NULL`));
    const presented = hashToken(req.body.secret);
    // Compare against every live secret in constant time.
    const ok = rows.reduce((acc, r) => timingSafeEqual(r.secret_hash, presented) || acc, false);
    if (!ok) {
      req.log.warn({ siteId: req.body.siteId, from: req.ip }, 'connector refused: wrong site id or secret');
      await hit(d.valkey, CONNECTOR_LIMITS.perSite, req.body.siteId); // wrong secrets only
      throw new ClusterError('CLUSTER_ERR_AUTH_BAD_CREDENTIALS', 'wrong site id or secret', {});
    }
    return d.connectorToken(req.body.siteId, rows[0]!.generation);
  });
}
