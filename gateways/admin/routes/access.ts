// /api/v1/orgs/:orgId/resources/:resourceId/{access,share-links,sessions} and the org's
// access log. Every change is one audited write announced as a change of the resource: its
// actor republishes the route with the new policy, and every node reads revoked sessions
// again. Removing or changing a method ends the sessions it made, on every node.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { DatabaseTransactionConnection } from 'slonik';
import { z } from 'zod';
import { ClusterError } from '../../../core/errors.ts';
import { AuthSettingsSchema, type AuthSettings } from '../../../persistence/access-policy.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { generateToken, hashPassword, hashToken } from '../../../persistence/hashing.ts';
import { revokeResourceSessions } from '../../../persistence/resource-sessions.ts';
import { EMAIL_PATTERN, RULE_ACTIONS, RULE_MATCHES } from '../../../protocol/access.ts';
import { ruleValueProblem } from '../../access/rules.ts';
import { orgAccess } from '../auth.ts';
import { AccessLogOut, AccessOut, ShareLinkCreatedOut } from '../schemas.ts';
import { notFound, OrgParams, Uuid, write, type ApiDeps } from '../http.ts';

const Params = Type.Object({ orgId: Uuid, resourceId: Uuid }, { additionalProperties: false });
const RuleParams = Type.Object({ orgId: Uuid, resourceId: Uuid, ruleId: Uuid }, { additionalProperties: false });
const LinkParams = Type.Object({ orgId: Uuid, resourceId: Uuid, linkId: Uuid }, { additionalProperties: false });
const Title = Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\x00-\\x1f<>]+$' });
const literals = <T extends readonly string[]>(xs: T) => Type.Union(xs.map((x) => Type.Literal(x)));

const ruleRow = z.object({ id: z.string(), priority: z.number(), match: z.string(), value: z.string(), action: z.string(), enabled: z.boolean() });
const linkRow = z.object({ id: z.string(), title: z.string(), pathPrefix: z.string().nullable(), expiresAt: z.coerce.date().nullable(), makesSession: z.boolean(), createdAt: z.coerce.date() });
const LINK_COLUMNS = sql.fragment`id, title, path_prefix AS "pathPrefix", expires_at AS "expiresAt", makes_session AS "makesSession", created_at AS "createdAt"`;

/** The resource, locked for the change; refuses TCP/UDP resources and other orgs' ones. */
async function httpResource(tx: DatabaseTransactionConnection, orgId: string, resourceId: string): Promise<{ auth: AuthSettings; hostname: string; tls: boolean }> {
  const r = await tx.maybeOne(sql.type(z.object({ protocol: z.string(), auth: z.unknown(), hostname: z.string().nullable(), tls: z.boolean() }))`
    SELECT protocol, auth, hostname, tls FROM resources WHERE id = ${resourceId} AND org_id = ${orgId} FOR UPDATE`);
  if (!r) throw notFound('resource');
  if (r.protocol !== 'http' || !r.hostname) throw new ClusterError('CLUSTER_ERR_ACCESS_NOT_HTTP', 'access control applies to HTTP resources only', {});
  return { auth: AuthSettingsSchema.parse(r.auth ?? {}), hostname: r.hostname, tls: r.tls };
}

async function describeAccess(db: ApiDeps['db'], orgId: string, resourceId: string) {
  const r = await db.maybeOne(sql.type(z.object({ auth: z.unknown(), secrets: z.array(z.string()) }))`
    SELECT auth, ARRAY(SELECT kind FROM resource_secrets WHERE resource_id = r.id) AS secrets FROM resources r WHERE id = ${resourceId} AND org_id = ${orgId}`);
  if (!r) throw notFound('resource');
  const rules = await db.any(sql.type(ruleRow)`SELECT id, priority, match, value, action, enabled FROM resource_rules WHERE resource_id = ${resourceId} ORDER BY priority`);
  const links = await db.any(sql.type(linkRow)`SELECT ${LINK_COLUMNS} FROM resource_share_links WHERE resource_id = ${resourceId} ORDER BY created_at`);
  return { ...AuthSettingsSchema.parse(r.auth ?? {}), password: r.secrets.includes('password'), pin: r.secrets.includes('pin'), rules: [...rules], shareLinks: [...links] };
}

export function accessRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const base = '/api/v1/orgs/:orgId/resources/:resourceId';
  const change = (orgId: string, resourceId: string) => ({ kind: 'resource' as const, id: resourceId, orgId, action: 'updated' as const, touches: { resourceIds: [resourceId] } });

  r.get(`${base}/access`, { schema: { tags: ['access'], summary: "The resource's access policy (secrets only as set or not)", params: Params, response: { 200: AccessOut } }, preHandler: orgAccess(deps, 'resources:read') }, async (req) =>
    withDb(() => describeAccess(deps().db, req.params.orgId, req.params.resourceId)));

  r.put(`${base}/access`, {
    schema: {
      tags: ['access'],
      summary: 'Change blockAccess, single sign-on and basic auth',
      params: Params,
      body: Type.Object({
        blockAccess: Type.Optional(Type.Boolean()),
        sso: Type.Optional(Type.Object({
          enabled: Type.Boolean(),
          roles: Type.Optional(Type.Array(literals(['admin', 'member'] as const), { maxItems: 2 })),
          userIds: Type.Optional(Type.Array(Uuid, { maxItems: 1000 })),
          providerId: Type.Optional(Type.Union([Uuid, Type.Null()], { description: 'send the portal straight to this identity provider (the org\'s or the cluster\'s)' })),
        }, { additionalProperties: false })),
        basicAuth: Type.Optional(Type.Boolean()),
        emailCodes: Type.Optional(Type.Object({ enabled: Type.Boolean(), allowed: Type.Optional(Type.Array(Type.String({ maxLength: 254, pattern: EMAIL_PATTERN.source }), { maxItems: 500 })) }, { additionalProperties: false })),
      }, { additionalProperties: false }),
      response: { 200: AccessOut },
    },
    preHandler: orgAccess(deps, 'resources:write'),
  }, async (req) => {
    if (req.body.emailCodes?.enabled && !deps().smtpConfigured) throw new ClusterError('CLUSTER_ERR_ACCESS_NO_SMTP', 'this cluster has no SMTP server configured (smtp.url, smtp.from): e-mail codes cannot be sent', {});
    const { orgId, resourceId } = req.params;
    const b = req.body;
    await write(deps(), req, change(orgId, resourceId), async (tx) => {
      const { auth } = await httpResource(tx, orgId, resourceId);
      const next: AuthSettings = {
        blockAccess: b.blockAccess ?? auth.blockAccess,
        basicAuth: b.basicAuth ?? auth.basicAuth,
        sso: b.sso ? { enabled: b.sso.enabled, roles: b.sso.roles ?? [], userIds: b.sso.userIds ?? [], providerId: b.sso.providerId ?? null } : auth.sso,
        emailCodes: b.emailCodes ? { enabled: b.emailCodes.enabled, allowed: [...new Set((b.emailCodes.allowed ?? []).map((a) => a.toLowerCase()))] } : auth.emailCodes,
      };
      // Sessions of addresses no longer on the list are refused by every node at once (the
      // list is checked per request); turning the method off ends them in PostgreSQL too.
      if (auth.emailCodes.enabled && !next.emailCodes.enabled) await revokeResourceSessions(tx, { resourceId, method: 'email' });
      if (next.sso.providerId && !(await tx.exists(sql.unsafe`SELECT 1 FROM identity_providers WHERE id = ${next.sso.providerId} AND (org_id IS NULL OR org_id = ${orgId})`))) {
        throw new ClusterError('CLUSTER_ERR_API_VALIDATION', 'body.sso.providerId is not an identity provider of this org or of the cluster', { field: 'body.sso.providerId', problem: 'unknown provider' });
      }
      // Turning SSO off, or narrowing who may use it, ends the sessions it made.
      const narrowed = auth.sso.enabled && (!next.sso.enabled || JSON.stringify(next.sso) !== JSON.stringify(auth.sso));
      if (narrowed) await revokeResourceSessions(tx, { resourceId, method: 'sso' });
      await tx.query(sql.unsafe`UPDATE resources SET auth = ${sql.jsonb(next as any)}, version = version + 1, updated_at = now() WHERE id = ${resourceId}`);
      return { id: resourceId };
    });
    return withDb(() => describeAccess(deps().db, orgId, resourceId));
  });

  for (const kind of ['password', 'pin'] as const) {
    const body = kind === 'password'
      ? Type.Object({ password: Type.String({ minLength: 8, maxLength: 256 }) }, { additionalProperties: false })
      : Type.Object({ pin: Type.String({ pattern: '^[0-9]{6,9}$' }) }, { additionalProperties: false });
    r.put(`${base}/access/${kind}`, { schema: { tags: ['access'], summary: `Set the resource ${kind} (ends sessions made with the old one)`, params: Params, body }, preHandler: orgAccess(deps, 'resources:write') }, async (req, reply) => {
      const { orgId, resourceId } = req.params;
      const secret = (req.body as { password?: string; pin?: string })[kind]!;
      const hash = await hashPassword(secret);
      await write(deps(), req, change(orgId, resourceId), async (tx) => {
        await httpResource(tx, orgId, resourceId);
        await revokeResourceSessions(tx, { resourceId, method: kind });
        await tx.query(sql.unsafe`INSERT INTO resource_secrets (resource_id, kind, hash) VALUES (${resourceId}, ${kind}, ${hash})
          ON CONFLICT (resource_id, kind) DO UPDATE SET hash = EXCLUDED.hash, updated_at = now()`);
        return { id: resourceId };
      });
      return reply.code(204).send();
    });
    r.delete(`${base}/access/${kind}`, { schema: { tags: ['access'], summary: `Remove the ${kind} method (ends its sessions)`, params: Params }, preHandler: orgAccess(deps, 'resources:write') }, async (req, reply) => {
      const { orgId, resourceId } = req.params;
      await write(deps(), req, change(orgId, resourceId), async (tx) => {
        await httpResource(tx, orgId, resourceId);
        if (!(await tx.maybeOne(sql.unsafe`DELETE FROM resource_secrets WHERE resource_id = ${resourceId} AND kind = ${kind} RETURNING kind`))) throw notFound(kind);
        await revokeResourceSessions(tx, { resourceId, method: kind });
        return { id: resourceId };
      });
      return reply.code(204).send();
    });
  }

  r.post(`${base}/access/rules`, {
    schema: {
      tags: ['access'],
      summary: 'Add a rule (lowest priority number runs first)',
      params: Params,
      body: Type.Object({ priority: Type.Integer({ minimum: 0, maximum: 1_000_000 }), match: literals(RULE_MATCHES), value: Type.String({ minLength: 1, maxLength: 500 }), action: literals(RULE_ACTIONS), enabled: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    },
    preHandler: orgAccess(deps, 'resources:write'),
  }, async (req, reply) => {
    const { orgId, resourceId } = req.params;
    const b = req.body;
    const problem = ruleValueProblem(b.match, b.value);
    if (problem) throw new ClusterError('CLUSTER_ERR_API_VALIDATION', `body.value ${problem}`, { field: 'body.value', problem });
    const value = b.match === 'country' ? b.value.toUpperCase() : b.value;
    const created = await write(deps(), req, change(orgId, resourceId), async (tx) => {
      await httpResource(tx, orgId, resourceId);
      return tx.one(sql.type(ruleRow)`INSERT INTO resource_rules (resource_id, priority, match, value, action, enabled)
        VALUES (${resourceId}, ${b.priority}, ${b.match}, ${value}, ${b.action}, ${b.enabled ?? true}) RETURNING id, priority, match, value, action, enabled`);
    });
    return reply.code(201).send(created);
  });

  r.delete(`${base}/access/rules/:ruleId`, { schema: { tags: ['access'], params: RuleParams }, preHandler: orgAccess(deps, 'resources:write') }, async (req, reply) => {
    const { orgId, resourceId, ruleId } = req.params;
    await write(deps(), req, change(orgId, resourceId), async (tx) => {
      await httpResource(tx, orgId, resourceId);
      if (!(await tx.maybeOne(sql.unsafe`DELETE FROM resource_rules WHERE id = ${ruleId} AND resource_id = ${resourceId} RETURNING id`))) throw notFound('rule');
      return { id: resourceId };
    });
    return reply.code(204).send();
  });

  r.get(`${base}/share-links`, { schema: { tags: ['access'], params: Params }, preHandler: orgAccess(deps, 'resources:read') }, async (req) => {
    const { orgId, resourceId } = req.params;
    const items = await withDb(() => deps().db.any(sql.type(linkRow)`
      SELECT ${LINK_COLUMNS} FROM resource_share_links l WHERE resource_id = ${resourceId} AND EXISTS (SELECT 1 FROM resources WHERE id = l.resource_id AND org_id = ${orgId}) ORDER BY created_at`));
    return { items };
  });

  r.post(`${base}/share-links`, {
    schema: {
      tags: ['access'],
      summary: 'Create a share link; its token is shown once',
      params: Params,
      body: Type.Object({
        title: Title,
        expiresInSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 * 365 * 86400 })),
        pathPrefix: Type.Optional(Type.String({ pattern: '^/[\\x21-\\x7e]{0,500}$' })),
        makesSession: Type.Optional(Type.Boolean()),
      }, { additionalProperties: false }),
      response: { 201: ShareLinkCreatedOut },
    },
    preHandler: orgAccess(deps, 'resources:write'),
  }, async (req, reply) => {
    const { orgId, resourceId } = req.params;
    const b = req.body;
    const token = generateToken();
    let where = { hostname: '', tls: true };
    const link = await write(deps(), req, change(orgId, resourceId), async (tx) => {
      const res = await httpResource(tx, orgId, resourceId);
      where = res;
      return tx.one(sql.type(linkRow)`
        INSERT INTO resource_share_links (resource_id, title, token_hash, path_prefix, expires_at, makes_session, created_by)
        VALUES (${resourceId}, ${b.title}, ${sql.binary(hashToken(token))}, ${b.pathPrefix ?? null},
          ${b.expiresInSeconds === undefined ? null : sql.fragment`now() + ${b.expiresInSeconds} * interval '1 second'`}, ${b.makesSession ?? false},
          ${req.principal?.type === 'user' ? req.principal.userId : null})
        RETURNING ${LINK_COLUMNS}`);
    }, (l) => ({ title: l.title, pathPrefix: l.pathPrefix, expiresAt: l.expiresAt }));
    const url = `${where.tls ? 'https' : 'http'}://${where.hostname}${b.pathPrefix ?? '/'}?__cluster_token=${token}`;
    return reply.code(201).send({ ...link, token, url });
  });

  r.delete(`${base}/share-links/:linkId`, { schema: { tags: ['access'], summary: 'Delete a share link (ends the sessions it made)', params: LinkParams }, preHandler: orgAccess(deps, 'resources:write') }, async (req, reply) => {
    const { orgId, resourceId, linkId } = req.params;
    await write(deps(), req, change(orgId, resourceId), async (tx) => {
      await httpResource(tx, orgId, resourceId);
      if (!(await tx.maybeOne(sql.unsafe`DELETE FROM resource_share_links WHERE id = ${linkId} AND resource_id = ${resourceId} RETURNING id`))) throw notFound('share link');
      await revokeResourceSessions(tx, { resourceId, linkId });
      return { id: resourceId };
    });
    return reply.code(204).send();
  });

  r.delete(`${base}/sessions`, { schema: { tags: ['access'], summary: 'End every session of the resource, on every node', params: Params }, preHandler: orgAccess(deps, 'resources:write') }, async (req) => {
    const { orgId, resourceId } = req.params;
    let revoked = 0;
    await write(deps(), req, change(orgId, resourceId), async (tx) => {
      await httpResource(tx, orgId, resourceId);
      revoked = await revokeResourceSessions(tx, { resourceId });
      return { id: resourceId };
    }, () => ({ revoked }));
    return { revoked };
  });

  const logRow = z.object({ id: z.coerce.string(), at: z.coerce.date(), resourceId: z.string(), decision: z.string(), method: z.string().nullable(), ruleId: z.string().nullable(), reason: z.string(), client: z.string(), userId: z.string().nullable(), nodeId: z.string(), count: z.number() });
  r.get('/api/v1/orgs/:orgId/access-log', {
    schema: {
      tags: ['access'],
      summary: 'Access decisions at this org\'s resources, newest first (identical decisions within a second are one row with a count)',
      params: OrgParams,
      querystring: Type.Object({
        resourceId: Type.Optional(Uuid),
        decision: Type.Optional(literals(['allowed', 'denied'] as const)),
        limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$' })),
        before: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$', description: 'rows with an id below this (paging)' })),
      }, { additionalProperties: false }),
      response: { 200: AccessLogOut },
    },
    preHandler: orgAccess(deps, 'audit:read'),
  }, async (req) => {
    const q = req.query;
    const limit = Math.min(500, Math.max(1, Number(q.limit ?? 100)));
    const items = await withDb(() => deps().db.any(sql.type(logRow)`
      SELECT id, at, resource_id AS "resourceId", decision, method, rule_id AS "ruleId", reason, client, user_id AS "userId", node_id AS "nodeId", count
      FROM access_log WHERE org_id = ${req.params.orgId}
        AND (${q.resourceId ?? null}::uuid IS NULL OR resource_id = ${q.resourceId ?? null})
        AND (${q.decision ?? null}::text IS NULL OR decision = ${q.decision ?? null})
        AND (${q.before ?? null}::bigint IS NULL OR id < ${q.before ?? null}::bigint)
      ORDER BY id DESC LIMIT ${limit}`));
    return { items: [...items], next: items.length === limit ? items.at(-1)!.id : null };
  });
}
