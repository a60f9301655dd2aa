// /api/v1/auth: first-start setup, login, logout, whoami.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { z } from 'zod';
import { ClusterError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/log.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { generateToken, hashPassword, hashToken, verifyPasswordOrDummy } from '../../../persistence/hashing.ts';
import { hit, LOGIN_LIMITS, reset } from '../../../persistence/rate-limit.ts';
import { LoginTickets, secondFactorOf } from '../../../persistence/second-factor.ts';
import type { Valkey } from '../../../persistence/valkey.ts';
import { SESSION_COOKIE, authenticated, revokeSession } from '../auth.ts';
import { Name, write, type ApiDeps } from '../http.ts';
import { MeOut, SecondFactorOut, SetupStatusOut, SignedInOut } from '../schemas.ts';

const Email = Type.String({ format: 'email', maxLength: 254 });
const Password = Type.String({ minLength: 12, maxLength: 256 });
const userRow = z.object({ id: z.string(), email: z.string(), password_hash: z.string(), is_server_admin: z.boolean() });

/**
 * On first start (no user yet) one node creates the one-time setup token and prints it to
 * its console (never to the log); the others see it exists and stay quiet.
 */
export async function ensureSetupToken(deps: { db: ApiDeps['db']; valkey: Valkey; nodeId: string }, logger: Logger): Promise<void> {
  const hasUser = await deps.db.exists(sql.unsafe`SELECT 1 FROM users`);
  if (hasUser) return;
  const token = generateToken(24);
  const created = await deps.valkey.call((c) => c.set(deps.valkey.keys.setupToken, hashToken(token).toString('hex'), 'NX'));
  if (created !== 'OK') return;
  process.stderr.write(`\n  First start: create the first administrator with this one-time setup token:\n    ${token}\n  POST /api/v1/auth/setup {"token", "email", "password"}\n\n`);
  logger.warn({ component: 'auth' }, 'no administrator yet: a one-time setup token was printed on this node\'s console');
}

/** A new admin session for the user: the row, then the cookie. */
export async function startSession(d: ApiDeps, reply: FastifyReply, userId: string): Promise<void> {
  const token = generateToken();
  await withDb(() => d.db.query(sql.unsafe`
    INSERT INTO sessions (user_id, token_hash, expires_at) VALUES (${userId}, ${sql.binary(hashToken(token))}, now() + ${`${d.sessionTtlMs} milliseconds`}::interval)`));
  reply.setCookie(SESSION_COOKIE, token, { httpOnly: true, sameSite: 'lax', secure: d.secureCookies, path: '/', maxAge: Math.floor(d.sessionTtlMs / 1000) });
}

export function authRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/api/v1/auth/setup', {
    schema: { tags: ['auth'], summary: 'Create the first server administrator with the setup token', body: Type.Object({ token: Type.String({ minLength: 10, maxLength: 200 }), email: Email, password: Password, displayName: Type.Optional(Name) }, { additionalProperties: false }) },
  }, async (req, reply) => {
    const d = deps();
    await hit(d.valkey, LOGIN_LIMITS.perAddress, req.ip);
    const stored = await d.valkey.call((c) => c.get(d.valkey.keys.setupToken));
    if (!stored) throw new ClusterError('CLUSTER_ERR_AUTH_SETUP_DONE', 'setup is done; log in instead', {});
    if (stored !== hashToken(req.body.token).toString('hex')) throw new ClusterError('CLUSTER_ERR_AUTH_BAD_SETUP_TOKEN', 'wrong setup token', {});
    const passwordHash = await hashPassword(req.body.password);
    const user = await write(d, req, { kind: 'user', orgId: null, action: 'created' }, async (tx) => {
      await tx.query(sql.unsafe`LOCK TABLE users IN EXCLUSIVE MODE`);
      if (await tx.exists(sql.unsafe`SELECT 1 FROM users`)) throw new ClusterError('CLUSTER_ERR_AUTH_SETUP_DONE', 'setup is done; log in instead', {});
      return tx.one(sql.type(z.object({ id: z.string(), email: z.string() }))`
        INSERT INTO users (email, display_name, password_hash, is_server_admin)
        VALUES (${req.body.email.toLowerCase()}, ${req.body.displayName ?? ''}, ${passwordHash}, true) RETURNING id, email`);
    });
    await d.valkey.call((c) => c.del(d.valkey.keys.setupToken));
    return reply.code(201).send({ id: user.id, email: user.email, isServerAdmin: true });
  });

  r.post('/api/v1/auth/login', {
    schema: { tags: ['auth'], summary: 'Log in; sets the session cookie (202: a second factor is due first)', body: Type.Object({ email: Email, password: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false }), response: { 200: SignedInOut, 202: SecondFactorOut } },
  }, async (req, reply) => {
    const d = deps();
    const email = req.body.email.toLowerCase();
    await hit(d.valkey, LOGIN_LIMITS.perAddress, req.ip);
    await hit(d.valkey, LOGIN_LIMITS.perAccount, email);
    const user = await withDb(() => d.db.maybeOne(sql.type(userRow)`SELECT id, email, password_hash, is_server_admin FROM users WHERE email = ${email} AND disabled_at IS NULL`));
    const ok = await verifyPasswordOrDummy(req.body.password, user?.password_hash);
    if (!user || !ok) throw new ClusterError('CLUSTER_ERR_AUTH_BAD_CREDENTIALS', 'wrong e-mail or password', {});
    await reset(d.valkey, LOGIN_LIMITS.perAccount, email);
    // A second factor (on, or required and not set up yet): no session until it is done.
    const second = await withDb(() => secondFactorOf(d.db, user.id));
    if (second.enrolled || second.required) {
      const stage = second.enrolled ? 'totp' : 'enrol';
      const ticket = await new LoginTickets(d.valkey).create({ userId: user.id, stage, purpose: 'admin' });
      return reply.code(202).send({ secondFactor: stage, ticket });
    }
    await startSession(d, reply, user.id);
    return { id: user.id, email: user.email, isServerAdmin: user.is_server_admin };
  });

  r.post('/api/v1/auth/logout', { schema: { tags: ['auth'], summary: 'End this session on every node' }, preHandler: authenticated() }, async (req, reply) => {
    const p = req.principal!;
    if (p.type !== 'user') throw new ClusterError('CLUSTER_ERR_API_FORBIDDEN', 'API keys have no session; revoke the key instead', { needed: 'session' });
    await revokeSession(deps(), p);
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.code(204).send();
  });

  r.get('/api/v1/auth/setup', { schema: { tags: ['auth'], summary: 'Whether the first administrator is still to be created (with the setup token)', response: { 200: SetupStatusOut } } }, async () => {
    const d = deps();
    return { needed: (await d.valkey.call((c) => c.exists(d.valkey.keys.setupToken))) === 1 };
  });

  r.get('/api/v1/auth/me', { schema: { tags: ['auth'], summary: 'The caller', response: { 200: MeOut } }, preHandler: authenticated() }, async (req) => {
    const p = req.principal!;
    if (p.type !== 'user') return { type: 'api_key' as const, id: p.keyId, orgId: p.orgId, actions: p.actions };
    const twoFactor = await withDb(() => secondFactorOf(deps().db, p.userId));
    return { type: 'user' as const, id: p.userId, email: p.email, isServerAdmin: p.isServerAdmin, twoFactor };
  });
}
