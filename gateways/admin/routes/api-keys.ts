// /api/v1/orgs/:orgId/api-keys: org-scoped keys with a set of allowed actions. The key is
// shown once at creation; only its prefix (for lookup) and SHA-256 hash are stored.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { sql, withDb } from '../../../persistence/db.ts';
import { generateToken, hashToken } from '../../../persistence/hashing.ts';
import { API_ACTIONS, assertMayGrant, orgAccess } from '../auth.ts';
import { ApiKeyCreatedOut, ApiKeyListOut } from '../schemas.ts';
import { deleteOne, Name, OrgParams, Uuid, write, type ApiDeps } from '../http.ts';

const key = z.object({ id: z.string(), name: z.string(), prefix: z.string(), actions: z.array(z.string()), createdAt: z.coerce.date(), lastUsedAt: z.coerce.date().nullable(), revoked: z.boolean() });
const COLUMNS = sql.fragment`id, name, key_prefix AS prefix, actions, created_at AS "createdAt", last_used_at AS "lastUsedAt", revoked_at IS NOT NULL AS revoked`;
const PREFIX_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function newPrefix(): string {
  return [...randomBytes(12)].map((b) => PREFIX_ALPHABET[b % PREFIX_ALPHABET.length]).join('');
}

export function apiKeyRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/api/v1/orgs/:orgId/api-keys', { schema: { tags: ['api keys'], params: OrgParams, response: { 200: ApiKeyListOut } }, preHandler: orgAccess(deps, 'members:write') }, async (req) => {
    const items = await withDb(() => deps().db.any(sql.type(key)`SELECT ${COLUMNS} FROM api_keys WHERE org_id = ${req.params.orgId} ORDER BY created_at`));
    return { items: [...items] };
  });

  r.post('/api/v1/orgs/:orgId/api-keys', {
    schema: {
      tags: ['api keys'],
      summary: 'Create an API key; the key is shown only in this reply',
      params: OrgParams,
      body: Type.Object({ name: Name, actions: Type.Array(Type.Union(API_ACTIONS.map((a) => Type.Literal(a))), { minItems: 1, uniqueItems: true }) }, { additionalProperties: false }),
      response: { 201: ApiKeyCreatedOut },
    },
    preHandler: orgAccess(deps, 'members:write'),
  }, async (req, reply) => {
    assertMayGrant(req, req.body.actions);
    const prefix = newPrefix();
    const token = `ck_${prefix}_${generateToken()}`;
    const p = req.principal!;
    const created = await write(deps(), req, { kind: 'api_key', orgId: req.params.orgId, action: 'created' }, (tx) =>
      tx.one(sql.type(key)`
        INSERT INTO api_keys (org_id, name, key_prefix, key_hash, actions, created_by)
        VALUES (${req.params.orgId}, ${req.body.name}, ${prefix}, ${sql.binary(hashToken(token))}, ${sql.array(req.body.actions, 'text')}, ${p.type === 'user' ? p.userId : null})
        RETURNING ${COLUMNS}`),
    (k) => ({ actions: k.actions }));
    return reply.code(201).send({ ...created, key: token });
  });

  r.delete('/api/v1/orgs/:orgId/api-keys/:keyId', { schema: { tags: ['api keys'], summary: 'Revoke a key', params: Type.Object({ orgId: Uuid, keyId: Uuid }, { additionalProperties: false }) }, preHandler: orgAccess(deps, 'members:write') }, async (req, reply) => {
    await deleteOne(deps(), req, { kind: 'api_key', id: req.params.keyId, orgId: req.params.orgId }, 'API key', sql.unsafe`
      UPDATE api_keys SET revoked_at = now() WHERE id = ${req.params.keyId} AND org_id = ${req.params.orgId} AND revoked_at IS NULL RETURNING id`);
    return reply.code(204).send();
  });
}
