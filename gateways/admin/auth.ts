// Who is calling, and may they do this. A request carries either a session cookie
// (browsers) or `Authorization: Bearer ck_...` (API keys). Sessions live in PostgreSQL and
// are cached in Valkey; logout deletes the cache entry before replying, so the very next
// request on any node goes to PostgreSQL and is refused. Authorization is declared at each
// route with `serverAdmin()` or `orgAccess(action)`.
import { timingSafeEqual } from 'node:crypto';
import '@fastify/cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ClusterError } from '../../core/errors.ts';
import { sql, withDb, type DatabasePool } from '../../persistence/db.ts';
import { hashToken } from '../../persistence/hashing.ts';
import type { Valkey } from '../../persistence/valkey.ts';

export const SESSION_COOKIE = 'cluster_session';

/** Actions an API key can be granted; `<area>:read` or `<area>:write`. */
export const API_ACTIONS = ['org:read', 'members:read', 'members:write', 'sites:read', 'sites:write', 'domains:read', 'domains:write', 'resources:read', 'resources:write', 'certificates:read', 'audit:read'] as const;
export type ApiAction = (typeof API_ACTIONS)[number];

/** What granting a role in an org hands out. */
export const ROLE_ACTIONS: Record<'admin' | 'member', readonly ApiAction[]> = {
  admin: API_ACTIONS,
  member: API_ACTIONS.filter((a) => a.endsWith(':read')),
};

export type Principal =
  | { type: 'user'; userId: string; email: string; isServerAdmin: boolean; sessionId: string; tokenHash: string }
  | { type: 'api_key'; keyId: string; orgId: string; actions: string[] };

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    /** The caller's role in the org of the route (set by orgAccess). */
    orgRole?: 'server_admin' | 'admin' | 'member' | 'api_key';
  }
}

export interface AuthDeps {
  db: DatabasePool;
  valkey: Valkey;
}

const sessionRow = z.object({ session_id: z.string(), user_id: z.string(), email: z.string(), is_server_admin: z.boolean(), expires_at: z.coerce.number() });
const keyRow = z.object({ id: z.string(), org_id: z.string(), actions: z.array(z.string()), key_hash: z.instanceof(Buffer) });

async function sessionPrincipal(deps: AuthDeps, token: string): Promise<Principal | undefined> {
  const tokenHash = hashToken(token).toString('hex');
  const cacheKey = deps.valkey.keys.session(tokenHash);
  const cached = await deps.valkey.call((c) => c.get(cacheKey)).catch(() => null);
  if (cached) return JSON.parse(cached) as Principal;
  const row = await withDb(() =>
    deps.db.maybeOne(sql.type(sessionRow)`
      SELECT s.id AS session_id, u.id AS user_id, u.email, u.is_server_admin, extract(epoch FROM s.expires_at) * 1000 AS expires_at
      FROM sessions s JOIN users u ON u.id = s.user_id
      WHERE s.token_hash = ${sql.binary(hashToken(token))} AND s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL`),
  );
  if (!row) return undefined;
  const principal: Principal = { type: 'user', userId: row.user_id, email: row.email, isServerAdmin: row.is_server_admin, sessionId: row.session_id, tokenHash };
  const ttl = Math.min(60_000, Math.floor(row.expires_at - Date.now()));
  if (ttl > 0) await deps.valkey.call((c) => c.set(cacheKey, JSON.stringify(principal), 'PX', ttl)).catch(() => {});
  return principal;
}

/** API keys look like `ck_<12-char prefix>_<secret>`; the prefix finds the row, the hash proves it. */
async function apiKeyPrincipal(deps: AuthDeps, token: string): Promise<Principal | undefined> {
  const m = /^ck_([A-Za-z0-9]{12})_[A-Za-z0-9_-]{20,}$/.exec(token);
  if (!m) return undefined;
  const row = await withDb(() =>
    deps.db.maybeOne(sql.type(keyRow)`
      SELECT k.id, k.org_id, k.actions, k.key_hash FROM api_keys k LEFT JOIN users u ON u.id = k.created_by
      WHERE k.key_prefix = ${m[1]!} AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
        AND u.disabled_at IS NULL -- a disabled user's keys stop with them`),
  );
  if (!row || !timingSafeEqual(row.key_hash, hashToken(token))) return undefined;
  void deps.db.query(sql.unsafe`UPDATE api_keys SET last_used_at = now() WHERE id = ${row.id}`).catch(() => {});
  return { type: 'api_key', keyId: row.id, orgId: row.org_id, actions: row.actions };
}

/** Resolves the caller (or none); never throws for bad credentials, only for outages. */
export async function authenticate(deps: AuthDeps, req: FastifyRequest): Promise<Principal | undefined> {
  const header = req.headers.authorization;
  if (header?.startsWith('Bearer ')) return apiKeyPrincipal(deps, header.slice(7).trim());
  const token = req.cookies?.[SESSION_COOKIE];
  return token ? sessionPrincipal(deps, token) : undefined;
}

/** Revokes a session in PostgreSQL and drops its cache entry before the reply. */
export async function revokeSession(deps: AuthDeps, principal: Extract<Principal, { type: 'user' }>): Promise<void> {
  await withDb(() => deps.db.query(sql.unsafe`UPDATE sessions SET revoked_at = now() WHERE id = ${principal.sessionId} AND revoked_at IS NULL`));
  await deps.valkey.call((c) => c.del(deps.valkey.keys.session(principal.tokenHash)));
}

function need(req: FastifyRequest): Principal {
  if (!req.principal) throw new ClusterError('CLUSTER_ERR_API_UNAUTHENTICATED', 'log in or send an API key', {});
  return req.principal;
}

/** Route guard: any authenticated caller. */
export const authenticated = () => async (req: FastifyRequest) => void need(req);

/** Route guard: a server administrator (a user, never an API key). */
export const serverAdmin = () => async (req: FastifyRequest) => {
  const p = need(req);
  if (p.type !== 'user' || !p.isServerAdmin) throw new ClusterError('CLUSTER_ERR_API_FORBIDDEN', 'server administrators only', { needed: 'server_admin' });
};

/**
 * Route guard for `/orgs/:orgId/...`: server admins may do anything; org admins may read
 * and write; members may only read; API keys act only in their org and only with the
 * action granted. An org the caller cannot see answers 404, as if it did not exist.
 */
export const orgAccess = (deps: () => AuthDeps, action: ApiAction) => async (req: FastifyRequest, _reply: FastifyReply) => {
  const p = need(req);
  const orgId = (req.params as { orgId?: string }).orgId;
  const notFound = new ClusterError('CLUSTER_ERR_API_NOT_FOUND', 'no such org', {});
  if (!orgId) throw notFound;
  const write = action.endsWith(':write');
  if (p.type === 'api_key') {
    if (p.orgId !== orgId) throw notFound;
    if (!p.actions.includes(action)) throw new ClusterError('CLUSTER_ERR_API_FORBIDDEN', `this API key lacks ${action}`, { needed: action });
    req.orgRole = 'api_key';
    return;
  }
  const { db } = deps();
  const row = await withDb(() => db.maybeOne(sql.type(z.object({ role: z.string().nullable() }))`
    SELECT m.role FROM orgs o LEFT JOIN org_members m ON m.org_id = o.id AND m.user_id = ${p.userId} WHERE o.id = ${orgId}`));
  if (!row) throw notFound;
  if (p.isServerAdmin) {
    req.orgRole = 'server_admin';
    return;
  }
  if (row.role === null) throw notFound; // not a member: the org is invisible
  if (write && row.role !== 'admin') throw new ClusterError('CLUSTER_ERR_API_FORBIDDEN', 'org admins only', { needed: 'org_admin' });
  req.orgRole = row.role as 'admin' | 'member';
};

/**
 * Nobody hands out more than they hold: an API key may create keys, or give a role, only
 * with actions it has itself. (Server admins and org admins hold every action of the org;
 * members cannot reach a route that grants.)
 */
export function assertMayGrant(req: FastifyRequest, actions: readonly string[]): void {
  const p = need(req);
  if (p.type !== 'api_key') return;
  const missing = actions.filter((a) => !p.actions.includes(a));
  if (missing.length) throw new ClusterError('CLUSTER_ERR_API_FORBIDDEN', `this API key cannot grant what it does not hold: ${missing.join(', ')}`, { needed: missing[0]! });
}
