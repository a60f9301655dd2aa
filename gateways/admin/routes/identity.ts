// Identity providers and signing in through them.
// - /api/v1/identity-providers (server admins: the cluster's) and
//   /api/v1/orgs/:orgId/identity-providers (org admins: the org's). The client secret is sealed
//   at rest and never returned; a provider is saved only after its discovery document was read.
// - /api/v1/auth/providers lists the enabled ones for a login page; /api/v1/auth/oidc/:id/start
//   redirects to the provider; /api/v1/auth/oidc/callback (the URL to register at the provider)
//   completes the sign-in on any node, second factor included.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import { z } from 'zod';
import { ClusterError } from '../../../core/errors.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { LoginTickets, secondFactorOf } from '../../../persistence/second-factor.ts';
import { providerSecretContext } from '../../identity/oidc.ts';
import { orgAccess, serverAdmin } from '../auth.ts';
import { Name, notFound, OrgParams, Uuid, Version, versionConflict, write, type ApiDeps } from '../http.ts';
import { startSession } from './auth.ts';

const Claim = Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,100}$' });
const ProviderBody = Type.Object({
  name: Name,
  issuerUrl: Type.String({ pattern: '^https://[^\\s]{3,500}$' }),
  clientId: Type.String({ minLength: 1, maxLength: 500 }),
  clientSecret: Type.String({ minLength: 1, maxLength: 2000 }),
  scopes: Type.Optional(Type.String({ pattern: '^openid( [A-Za-z0-9_.:-]{1,100}){0,20}$' })),
  userClaim: Type.Optional(Claim),
  roleClaim: Type.Optional(Claim),
  roleMap: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 200 }), Type.Union([Type.Literal('admin'), Type.Literal('member')]))),
  autoProvision: Type.Optional(Type.Boolean()),
  enabled: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });
const ProviderPatch = Type.Object({ ...Type.Partial(ProviderBody).properties, version: Version }, { additionalProperties: false });

const provider = z.object({
  id: z.string(), orgId: z.string().nullable(), name: z.string(), issuerUrl: z.string(), clientId: z.string(), scopes: z.string(), userClaim: z.string(), roleClaim: z.string().nullable(),
  roleMap: z.record(z.string()), autoProvision: z.boolean(), enabled: z.boolean(), version: z.number(), createdAt: z.coerce.date(),
});
const COLUMNS = sql.fragment`id, org_id AS "orgId", name, issuer_url AS "issuerUrl", client_id AS "clientId", scopes, user_claim AS "userClaim", role_claim AS "roleClaim",
  role_map AS "roleMap", auto_provision AS "autoProvision", enabled, version, created_at AS "createdAt"`;

/** Where providers send admins back: the configured public URL, else this request's origin. */
export function adminCallbackUrl(d: ApiDeps, req: FastifyRequest): string {
  return `${d.publicUrl ?? `${req.protocol}://${req.host}`}/api/v1/auth/oidc/callback`;
}

export function identityRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  /** Reads the issuer's discovery document first: a provider that cannot be reached is not saved. */
  const create = async (req: FastifyRequest, orgId: string | null, b: Static<typeof ProviderBody>) => {
    await deps().oidc.discover(b);
    const d = deps();
    return write(d, req, { kind: 'identity_provider', orgId, action: 'created' }, async (tx) => {
      const row = await tx.one(sql.type(provider)`
        INSERT INTO identity_providers (org_id, name, issuer_url, client_id, client_secret_sealed, scopes, user_claim, role_claim, role_map, auto_provision, enabled)
        VALUES (${orgId}, ${b.name}, ${b.issuerUrl.replace(/\/$/, '')}, ${b.clientId}, ''::bytea, ${b.scopes ?? 'openid email profile'}, ${b.userClaim ?? 'email'}, ${b.roleClaim ?? null},
          ${sql.jsonb(b.roleMap ?? {})}, ${b.autoProvision ?? false}, ${b.enabled ?? true})
        RETURNING ${COLUMNS}`);
      // Sealed under its own id: a sealed secret copied to another row does not open there.
      await tx.query(sql.unsafe`UPDATE identity_providers SET client_secret_sealed = ${sql.binary(d.sealer.seal(b.clientSecret, providerSecretContext(row.id)))} WHERE id = ${row.id}`);
      return row;
    }, (p) => ({ name: p.name, issuerUrl: p.issuerUrl }));
  };
  const update = async (req: FastifyRequest, orgId: string | null, id: string, b: Static<typeof ProviderPatch>) => {
    const d = deps();
    return write(d, req, { kind: 'identity_provider', id, orgId, action: 'updated' }, async (tx) => {
      const row = await tx.maybeOne(sql.type(provider)`
        UPDATE identity_providers SET name = COALESCE(${b.name ?? null}, name), issuer_url = COALESCE(${b.issuerUrl ?? null}, issuer_url), client_id = COALESCE(${b.clientId ?? null}, client_id),
          client_secret_sealed = COALESCE(${b.clientSecret ? sql.binary(d.sealer.seal(b.clientSecret, providerSecretContext(id))) : null}, client_secret_sealed),
          scopes = COALESCE(${b.scopes ?? null}, scopes), user_claim = COALESCE(${b.userClaim ?? null}, user_claim), role_claim = COALESCE(${b.roleClaim ?? null}, role_claim),
          role_map = COALESCE(${b.roleMap ? sql.jsonb(b.roleMap) : null}, role_map), auto_provision = COALESCE(${b.autoProvision ?? null}, auto_provision),
          enabled = COALESCE(${b.enabled ?? null}, enabled), version = version + 1, updated_at = now()
        WHERE id = ${id} AND org_id IS NOT DISTINCT FROM ${orgId} AND version = ${b.version} RETURNING ${COLUMNS}`);
      if (row) return row;
      throw versionConflict(await tx.maybeOneFirst(sql.type(z.object({ version: z.number() }))`SELECT version FROM identity_providers WHERE id = ${id} AND org_id IS NOT DISTINCT FROM ${orgId}`), 'identity provider');
    });
  };
  const remove = async (req: FastifyRequest, reply: FastifyReply, orgId: string | null, id: string) => {
    await write(deps(), req, { kind: 'identity_provider', id, orgId, action: 'deleted' }, async (tx) => {
      if (!(await tx.maybeOne(sql.unsafe`DELETE FROM identity_providers WHERE id = ${id} AND org_id IS NOT DISTINCT FROM ${orgId} RETURNING id`))) throw notFound('identity provider');
      return { id };
    });
    return reply.code(204).send();
  };
  const list = (orgId: string | null) => withDb(() => deps().db.any(sql.type(provider)`SELECT ${COLUMNS} FROM identity_providers WHERE org_id IS NOT DISTINCT FROM ${orgId} ORDER BY created_at`));

  const IdParams = Type.Object({ providerId: Uuid }, { additionalProperties: false });
  const OrgIdParams = Type.Object({ orgId: Uuid, providerId: Uuid }, { additionalProperties: false });
  r.get('/api/v1/identity-providers', { schema: { tags: ['identity'] }, preHandler: serverAdmin() }, async () => ({ items: await list(null) }));
  r.post('/api/v1/identity-providers', { schema: { tags: ['identity'], summary: 'Add a cluster-wide OpenID Connect provider', body: ProviderBody }, preHandler: serverAdmin() }, async (req, reply) => reply.code(201).send(await create(req, null, req.body)));
  r.patch('/api/v1/identity-providers/:providerId', { schema: { tags: ['identity'], params: IdParams, body: ProviderPatch }, preHandler: serverAdmin() }, async (req) => update(req, null, req.params.providerId, req.body));
  r.delete('/api/v1/identity-providers/:providerId', { schema: { tags: ['identity'], params: IdParams }, preHandler: serverAdmin() }, async (req, reply) => remove(req, reply, null, req.params.providerId));
  r.get('/api/v1/orgs/:orgId/identity-providers', { schema: { tags: ['identity'], params: OrgParams }, preHandler: orgAccess(deps, 'members:read') }, async (req) => ({ items: await list(req.params.orgId) }));
  r.post('/api/v1/orgs/:orgId/identity-providers', { schema: { tags: ['identity'], summary: "Add an OpenID Connect provider for the org's members", params: OrgParams, body: ProviderBody }, preHandler: orgAccess(deps, 'members:write') }, async (req, reply) =>
    reply.code(201).send(await create(req, req.params.orgId, req.body)));
  r.patch('/api/v1/orgs/:orgId/identity-providers/:providerId', { schema: { tags: ['identity'], params: OrgIdParams, body: ProviderPatch }, preHandler: orgAccess(deps, 'members:write') }, async (req) =>
    update(req, req.params.orgId, req.params.providerId, req.body));
  r.delete('/api/v1/orgs/:orgId/identity-providers/:providerId', { schema: { tags: ['identity'], params: OrgIdParams }, preHandler: orgAccess(deps, 'members:write') }, async (req, reply) =>
    remove(req, reply, req.params.orgId, req.params.providerId));

  r.get('/api/v1/auth/providers', {
    schema: { tags: ['auth'], summary: 'Enabled identity providers, for a login page', response: { 200: Type.Object({ items: Type.Array(Type.Object({ id: Type.String(), name: Type.String(), orgId: Type.Union([Type.String(), Type.Null()]) })) }) } },
  }, async () => {
    const items = await withDb(() => deps().db.any(sql.type(z.object({ id: z.string(), name: z.string(), orgId: z.string().nullable() }))`
      SELECT id, name, org_id AS "orgId" FROM identity_providers WHERE enabled ORDER BY org_id NULLS FIRST, name`));
    return { items: [...items] };
  });

  r.get('/api/v1/auth/oidc/:providerId/start', {
    schema: { tags: ['auth'], summary: 'Sign in through a provider: redirects to it', params: IdParams, querystring: Type.Object({ redirect: Type.Optional(Type.String({ pattern: '^/(?!/)[\\x21-\\x7e]{0,500}$' })) }, { additionalProperties: false }) },
  }, async (req, reply) => {
    const d = deps();
    const url = await d.oidc.start(req.params.providerId, { purpose: 'admin', redirect: req.query.redirect ?? '/', redirectUri: adminCallbackUrl(d, req) });
    return reply.redirect(url, 302);
  });

  r.get('/api/v1/auth/oidc/callback', { schema: { tags: ['auth'], summary: 'Where providers send admins back (register this URL at the provider)' } }, async (req, reply) => {
    const d = deps();
    const query = new URLSearchParams(req.url.split('?')[1] ?? '');
    const { state, user } = await d.oidc.finish(query);
    if (state.purpose !== 'admin') throw new ClusterError('CLUSTER_ERR_OIDC_BAD_STATE', 'this sign-in was started for the portal', {});
    const redirect = state.redirect ?? '/';
    const second = await withDb(() => secondFactorOf(d.db, user.id));
    if (second.enrolled || second.required) {
      // The provider vouched for the first factor; the code step is the same as after a password.
      const stage = second.enrolled ? 'totp' : 'enrol';
      const ticket = await new LoginTickets(d.valkey).create({ userId: user.id, stage, purpose: 'admin' });
      return reply.redirect(`${redirect}#second-factor=${stage}&ticket=${encodeURIComponent(ticket)}`, 303);
    }
    await startSession(d, reply, user.id);
    return reply.redirect(redirect, 303);
  });
}
