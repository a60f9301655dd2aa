// /api/v1/users: server admins manage user accounts.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { DatabaseTransactionConnection } from 'slonik';
import { Type } from 'typebox';
import { z } from 'zod';
import { revokeResourceSessions } from '../../../persistence/resource-sessions.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { hashPassword } from '../../../persistence/hashing.ts';
import { serverAdmin } from '../auth.ts';
import { UserListOut } from '../schemas.ts';
import { Name, notFound, Page, page, Uuid, Version, versionConflict, write, type ApiDeps } from '../http.ts';

const user = z.object({ id: z.string(), email: z.string(), displayName: z.string(), isServerAdmin: z.boolean(), disabled: z.boolean(), require2fa: z.boolean(), twoFactor: z.boolean(), version: z.number(), createdAt: z.coerce.date() });
const COLUMNS = sql.fragment`id, email, display_name AS "displayName", is_server_admin AS "isServerAdmin", disabled_at IS NOT NULL AS disabled, require_2fa AS "require2fa",
  EXISTS (SELECT 1 FROM user_totp t WHERE t.user_id = users.id AND t.enabled_at IS NOT NULL) AS "twoFactor", version, created_at AS "createdAt"`;
const Params = Type.Object({ userId: Uuid }, { additionalProperties: false });

export function userRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/api/v1/users', { schema: { tags: ['users'], querystring: Page, response: { 200: UserListOut } }, preHandler: serverAdmin() }, async (req) => {
    const { limit, offset } = page(req.query);
    const items = await withDb(() => deps().db.any(sql.type(user)`SELECT ${COLUMNS} FROM users ORDER BY created_at, id LIMIT ${limit} OFFSET ${offset}`));
    return { items: [...items], limit, offset };
  });

  r.post('/api/v1/users', {
    schema: {
      tags: ['users'],
      body: Type.Object({ email: Type.String({ format: 'email', maxLength: 254 }), password: Type.String({ minLength: 12, maxLength: 256 }), displayName: Type.Optional(Name), isServerAdmin: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    },
    preHandler: serverAdmin(),
  }, async (req, reply) => {
    const hash = await hashPassword(req.body.password);
    const created = await write(deps(), req, { kind: 'user', orgId: null, action: 'created' }, (tx) =>
      tx.one(sql.type(user)`
        INSERT INTO users (email, display_name, password_hash, is_server_admin)
        VALUES (${req.body.email.toLowerCase()}, ${req.body.displayName ?? ''}, ${hash}, ${req.body.isServerAdmin ?? false}) RETURNING ${COLUMNS}`),
    );
    return reply.code(201).send(created);
  });

  r.get('/api/v1/users/:userId', { schema: { tags: ['users'], params: Params }, preHandler: serverAdmin() }, async (req) => {
    const row = await withDb(() => deps().db.maybeOne(sql.type(user)`SELECT ${COLUMNS} FROM users WHERE id = ${req.params.userId}`));
    if (!row) throw notFound('user');
    return row;
  });

  r.patch('/api/v1/users/:userId', {
    schema: { tags: ['users'], params: Params, body: Type.Object({ version: Version, displayName: Type.Optional(Name), disabled: Type.Optional(Type.Boolean()), isServerAdmin: Type.Optional(Type.Boolean()), require2fa: Type.Optional(Type.Boolean()) }, { additionalProperties: false }) },
    preHandler: serverAdmin(),
  }, async (req) => {
    const b = req.body;
    const d = deps();
    let revoked: Buffer[] = [];
    const updated = await write(d, req, { kind: 'user', id: req.params.userId, orgId: null, action: 'updated' }, async (tx) => {
      const row = await tx.maybeOne(sql.type(user)`
        UPDATE users SET
          display_name = COALESCE(${b.displayName ?? null}, display_name),
          is_server_admin = COALESCE(${b.isServerAdmin ?? null}, is_server_admin),
          require_2fa = COALESCE(${b.require2fa ?? null}, require_2fa),
          disabled_at = CASE WHEN ${b.disabled ?? null}::boolean IS NULL THEN disabled_at WHEN ${b.disabled ?? null}::boolean THEN COALESCE(disabled_at, now()) ELSE NULL END,
          version = version + 1, updated_at = now()
        WHERE id = ${req.params.userId} AND version = ${b.version} RETURNING ${COLUMNS}`);
      if (!row) throw versionConflict(await tx.maybeOneFirst(sql.type(z.object({ version: z.number() }))`SELECT version FROM users WHERE id = ${req.params.userId}`), 'user');
      // A disabled user's resource sessions end too, on every node (the change names kind user).
      if (b.disabled) await revokeResourceSessions(tx, { userId: row.id });
      revoked = b.disabled
        ? [...(await tx.anyFirst(sql.type(z.object({ token_hash: z.instanceof(Buffer) }))`
            UPDATE sessions SET revoked_at = now() WHERE user_id = ${row.id} AND revoked_at IS NULL RETURNING token_hash`))]
        : await liveSessionHashes(tx, row.id);
      return row;
    });
    // Any change to a user (disabled, no longer a server admin) holds on every node now, not
    // when the cached principals expire: they are dropped and read again from PostgreSQL.
    await forgetCachedSessions(d, revoked);
    return updated;
  });

  r.delete('/api/v1/users/:userId', { schema: { tags: ['users'], params: Params }, preHandler: serverAdmin() }, async (req, reply) => {
    const d = deps();
    let hashes: Buffer[] = [];
    await write(d, req, { kind: 'user', id: req.params.userId, orgId: null, action: 'deleted' }, async (tx) => {
      hashes = await liveSessionHashes(tx, req.params.userId);
      // Marked before the user goes: the rows stay (user_id NULL) so every node learns them.
      await revokeResourceSessions(tx, { userId: req.params.userId });
      // The API keys the user made go with them (an org admin can make new ones).
      await tx.query(sql.unsafe`UPDATE api_keys SET revoked_at = now() WHERE created_by = ${req.params.userId} AND revoked_at IS NULL`);
      if (!(await tx.maybeOne(sql.unsafe`DELETE FROM users WHERE id = ${req.params.userId} RETURNING id`))) throw notFound('user');
      return { id: req.params.userId };
    });
    await forgetCachedSessions(d, hashes);
    return reply.code(204).send();
  });
}

async function liveSessionHashes(tx: DatabaseTransactionConnection, userId: string): Promise<Buffer[]> {
  return [...(await tx.anyFirst(sql.type(z.object({ token_hash: z.instanceof(Buffer) }))`SELECT token_hash FROM sessions WHERE user_id = ${userId} AND revoked_at IS NULL`))];
}

/** Drops cached principals, so the next request of each session is checked in PostgreSQL. */
async function forgetCachedSessions(d: ApiDeps, hashes: Buffer[]): Promise<void> {
  if (hashes.length) await d.valkey.call((c) => c.del(...hashes.map((h) => d.valkey.keys.session(h.toString('hex')))));
}
