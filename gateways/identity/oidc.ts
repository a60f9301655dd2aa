// Sign-in through OpenID Connect providers (openid-client: a certified relying party with
// discovery, PKCE, state and nonce checks, and JWKS fetched and refreshed as the provider
// rotates keys). The flow's state lives in Valkey for ten minutes and is taken exactly once,
// so the callback may land on any node, and a replayed or forged callback finds nothing.
// A provider's user is a cluster user linked by (provider, subject): at first sign-in, linked
// to the user with the same e-mail (cluster-wide providers only: an org's provider may not take
// over an existing account), or created when the provider auto-provisions. An org's
// provider maps a role claim to the org role. Every refusal is a coded error and an audit row,
// and nothing is created by a sign-in that fails.
import * as oidc from 'openid-client';
import { z } from 'zod';
import type { Clock } from '../../core/clock.ts';
import { ClusterError, isClusterError, type ErrorCode } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { audit } from '../../persistence/audit.ts';
import { sql, withDb, type DatabasePool } from '../../persistence/db.ts';
import { hashToken } from '../../persistence/hashing.ts';
import type { Sealer } from '../../persistence/sealed.ts';
import type { Valkey } from '../../persistence/valkey.ts';

const STATE_TTL_MS = 10 * 60_000;
const DISCOVERY_TTL_MS = 60 * 60_000;
const MAX_CLAIMS_BYTES = 16 * 1024;
const EMAIL = /^[^@\s]{1,64}@[^@\s]{1,190}$/;

export interface Provider {
  id: string;
  orgId: string | null;
  name: string;
  issuerUrl: string;
  clientId: string;
  clientSecret: string;
  scopes: string;
  userClaim: string;
  roleClaim: string | null;
  roleMap: Record<string, 'admin' | 'member'>;
  autoProvision: boolean;
  version: number;
}

const ProviderRow = z.object({
  id: z.string(), org_id: z.string().nullable(), name: z.string(), issuer_url: z.string(), client_id: z.string(), client_secret_sealed: z.instanceof(Buffer),
  scopes: z.string(), user_claim: z.string(), role_claim: z.string().nullable(), role_map: z.record(z.enum(['admin', 'member'])), auto_provision: z.boolean(), version: z.number(),
});

export const providerSecretContext = (id: string) => `identity-provider:${id}`;

/** What one sign-in carries from the redirect to the callback. */
export const FlowStateSchema = z.object({
  providerId: z.string(),
  verifier: z.string(),
  nonce: z.string(),
  redirectUri: z.string(),
  purpose: z.enum(['admin', 'portal']),
  /** Admin sign-in: the path to land on afterwards. */
  redirect: z.string().optional(),
  /** Portal sign-in: the resource and its address to return to. */
  resourceId: z.string().optional(),
  to: z.string().optional(),
});
export type FlowState = z.infer<typeof FlowStateSchema>;

export interface SignedIn {
  state: FlowState;
  user: { id: string; email: string; name: string; isServerAdmin: boolean };
}

export interface OidcDeps {
  db: DatabasePool;
  valkey: Valkey;
  sealer: Sealer;
  clock: Clock;
  logger: Logger;
  nodeId: string;
}

export class OidcSignIn {
  readonly #d: OidcDeps;
  readonly #log: Logger;
  /** Discovered configurations by provider id (and version: an edit makes a new one). */
  readonly #configs = new Map<string, { version: number; at: number; config: Promise<oidc.Configuration> }>();

  constructor(d: OidcDeps) {
    this.#d = d;
    this.#log = d.logger.child({ component: 'oidc' });
  }

  /** An enabled provider by id. */
  async provider(id: string): Promise<Provider | undefined> {
    if (!/^[0-9a-f-]{36}$/.test(id)) return undefined;
    const r = await withDb(() => this.#d.db.maybeOne(sql.type(ProviderRow)`
      SELECT id, org_id, name, issuer_url, client_id, client_secret_sealed, scopes, user_claim, role_claim, role_map, auto_provision, version
      FROM identity_providers WHERE id = ${id} AND enabled`));
    if (!r) return undefined;
    return {
      id: r.id, orgId: r.org_id, name: r.name, issuerUrl: r.issuer_url, clientId: r.client_id, clientSecret: this.#d.sealer.open(r.client_secret_sealed, providerSecretContext(r.id)).toString('utf8'),
      scopes: r.scopes, userClaim: r.user_claim, roleClaim: r.role_claim, roleMap: r.role_map, autoProvision: r.auto_provision, version: r.version,
    };
  }

  /** Enabled providers a sign-in for this org may use: the org's own and the cluster's. */
  async providersFor(orgId: string | null): Promise<Array<{ id: string; name: string }>> {
    return [...(await withDb(() => this.#d.db.any(sql.type(z.object({ id: z.string(), name: z.string() }))`
      SELECT id, name FROM identity_providers WHERE enabled AND (org_id IS NULL OR org_id = ${orgId}) ORDER BY org_id NULLS LAST, name`)))];
  }

  /** The provider's discovered configuration (cached an hour; a failed discovery is not cached). */
  configFor(p: Pick<Provider, 'id' | 'version' | 'issuerUrl' | 'clientId' | 'clientSecret'>): Promise<oidc.Configuration> {
    const now = this.#d.clock.now();
    const cached = this.#configs.get(p.id);
    if (cached && cached.version === p.version && now - cached.at < DISCOVERY_TTL_MS) return cached.config;
    const config = this.discover(p).catch((err: Error) => {
      this.#configs.delete(p.id);
      throw err;
    });
    this.#configs.set(p.id, { version: p.version, at: now, config });
    return config;
  }

  /** Reads the issuer's discovery document now (not cached: also how a new provider is checked). */
  async discover(p: Pick<Provider, 'issuerUrl' | 'clientId' | 'clientSecret'> & { id?: string }): Promise<oidc.Configuration> {
    try {
      return await oidc.discovery(new URL(p.issuerUrl), p.clientId, p.clientSecret);
    } catch (e) {
      const err = e as Error & { cause?: Error };
      // Reached, but it says it is another issuer: a misconfiguration (or an impostor), not an outage.
      if (/issuer/i.test(`${err.message} ${err.cause?.message ?? ''}`)) throw new ClusterError('CLUSTER_ERR_OIDC_REJECTED', `the discovery document at ${p.issuerUrl} names another issuer: ${err.cause?.message ?? err.message}`, {});
      throw new ClusterError('CLUSTER_ERR_OIDC_PROVIDER_UNAVAILABLE', `the identity provider cannot be reached: ${err.message}`, { providerId: p.id ?? '' });
    }
  }

  /** The provider's authorization URL for a new sign-in (its state stored in Valkey). */
  async start(providerId: string, s: Omit<FlowState, 'providerId' | 'verifier' | 'nonce'>): Promise<string> {
    const p = await this.provider(providerId);
    if (!p) throw new ClusterError('CLUSTER_ERR_API_NOT_FOUND', 'no such identity provider', {});
    const config = await this.configFor(p);
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const flow: FlowState = { ...s, providerId, verifier, nonce };
    await this.#d.valkey.call((c) => c.set(this.#d.valkey.keys.oidcState(hashToken(state).toString('hex')), JSON.stringify(flow), 'PX', STATE_TTL_MS));
    return oidc.buildAuthorizationUrl(config, { redirect_uri: s.redirectUri, scope: p.scopes, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state, nonce }).href;
  }

  /** Completes a sign-in from the callback's query; the user it names (linked or created). */
  async finish(query: URLSearchParams): Promise<SignedIn> {
    const stateParam = query.get('state') ?? '';
    // Taken exactly once, whichever node the callback reaches: a replay finds nothing.
    const raw = stateParam.length > 0 && stateParam.length <= 200 ? await this.#d.valkey.call((c) => c.getdel(this.#d.valkey.keys.oidcState(hashToken(stateParam).toString('hex')))) : null;
    const parsed = raw ? FlowStateSchema.safeParse(JSON.parse(raw)) : undefined;
    if (!parsed?.success) return this.#refuse(null, 'CLUSTER_ERR_OIDC_BAD_STATE', 'this sign-in link is unknown, expired or used; start again');
    const state = parsed.data;
    const p = await this.provider(state.providerId);
    if (!p) return this.#refuse(null, 'CLUSTER_ERR_OIDC_BAD_STATE', 'the identity provider was removed or disabled meanwhile');
    if (query.get('error')) return this.#refuse(p, 'CLUSTER_ERR_OIDC_REJECTED', `the provider refused: ${String(query.get('error')).slice(0, 100)}`);
    let claims: Record<string, unknown>;
    try {
      const tokens = await this.#grant(p, state, stateParam, query);
      claims = (tokens.claims() ?? {}) as Record<string, unknown>;
    } catch (err) {
      if (isClusterError(err)) return this.#refuse(p, err.code, err.message);
      return this.#refuse(p, 'CLUSTER_ERR_OIDC_REJECTED', `the provider's answer failed validation: ${(err as Error).message}`);
    }
    return { state, user: await this.#link(p, claims) };
  }

  /** The code for tokens; the ID token's signature, issuer, audience, expiry and nonce are checked. */
  async #grant(p: Provider, state: FlowState, stateParam: string, query: URLSearchParams) {
    const callback = new URL(state.redirectUri);
    for (const k of ['code', 'state', 'iss', 'error', 'session_state']) if (query.has(k)) callback.searchParams.set(k, query.get(k)!);
    const checks = { pkceCodeVerifier: state.verifier, expectedState: stateParam, expectedNonce: state.nonce, idTokenExpected: true };
    try {
      return await oidc.authorizationCodeGrant(await this.configFor(p), callback, checks);
    } catch (err) {
      if (isClusterError(err)) throw err;
      const e = err as Error & { code?: string; cause?: unknown };
      if (e instanceof TypeError || e.code === 'ECONNREFUSED' || /fetch failed/.test(e.message)) {
        this.#configs.delete(p.id);
        throw new ClusterError('CLUSTER_ERR_OIDC_PROVIDER_UNAVAILABLE', `the identity provider cannot be reached: ${e.message}`, { providerId: p.id });
      }
      throw new ClusterError('CLUSTER_ERR_OIDC_REJECTED', `the provider's answer failed validation: ${e.message}${e.cause && typeof e.cause === 'object' && 'message' in e.cause ? ` (${String((e.cause as Error).message)})` : ''}`, {});
    }
  }

  /** Finds, links or creates the user; maps the org role. One transaction: all of it or nothing. */
  async #link(p: Provider, claims: Record<string, unknown>): Promise<SignedIn['user']> {
    const sub = claims.sub;
    const value = claims[p.userClaim];
    if (JSON.stringify(claims).length > MAX_CLAIMS_BYTES) return this.#refuse(p, 'CLUSTER_ERR_OIDC_BAD_CLAIMS', 'the ID token\'s claims are too large');
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 255) return this.#refuse(p, 'CLUSTER_ERR_OIDC_BAD_CLAIMS', 'the ID token has no usable subject');
    if (typeof value !== 'string' || !EMAIL.test(value)) return this.#refuse(p, 'CLUSTER_ERR_OIDC_BAD_CLAIMS', `the claim ${p.userClaim} is not an e-mail address`);
    if (p.userClaim === 'email' && claims.email_verified === false) return this.#refuse(p, 'CLUSTER_ERR_OIDC_BAD_CLAIMS', 'the provider says this e-mail address is not verified');
    const email = value.toLowerCase();
    const name = typeof claims.name === 'string' ? claims.name.replace(/[\x00-\x1f<>]/g, '').slice(0, 200) : '';
    const rawRoles = p.roleClaim ? claims[p.roleClaim] : undefined;
    const roles = (Array.isArray(rawRoles) ? rawRoles : typeof rawRoles === 'string' ? [rawRoles] : []).filter((r): r is string => typeof r === 'string');
    const mapped = roles.map((r) => p.roleMap[r]).filter(Boolean);
    const orgRole = mapped.includes('admin') ? 'admin' : mapped.includes('member') ? 'member' : null;
    const announce: Array<{ kind: 'user' | 'member'; id: string; orgId: string | null; action: 'created' | 'updated' }> = [];
    let refusal: { code: ErrorCode; message: string } | undefined;
    const user = await withDb(() => this.#d.db.transaction(async (tx) => {
      const U = z.object({ id: z.string(), email: z.string(), display_name: z.string(), is_server_admin: z.boolean(), disabled: z.boolean() });
      let u = await tx.maybeOne(sql.type(U)`
        SELECT u.id, u.email, u.display_name, u.is_server_admin, u.disabled_at IS NOT NULL AS disabled FROM user_identities i JOIN users u ON u.id = i.user_id
        WHERE i.provider_id = ${p.id} AND i.subject = ${sub}`);
      if (!u) {
        u = await tx.maybeOne(sql.type(U)`SELECT id, email, display_name, is_server_admin, disabled_at IS NOT NULL AS disabled FROM users WHERE email = ${email}`);
        // An org's provider is configured by that org's admins: it must not take over an account
        // that exists already (a server admin's, another org's member) by naming its address.
        // Only a cluster-wide provider (server admins') links to existing accounts by e-mail.
        if (u && p.orgId) return void (refusal = { code: 'CLUSTER_ERR_OIDC_NOT_ALLOWED', message: `an account with ${email} exists already; an org's provider may not sign in to it` });
        if (!u && !p.autoProvision) return void (refusal = { code: 'CLUSTER_ERR_OIDC_UNKNOWN_USER', message: `${email} has no account here, and this provider does not create accounts` });
        if (!u) {
          u = await tx.one(sql.type(U)`
            INSERT INTO users (email, display_name, password_hash) VALUES (${email}, ${name}, '!oidc') -- no password: it signs in through its provider
            RETURNING id, email, display_name, is_server_admin, false AS disabled`);
          await audit(tx, { actorType: 'system', actorId: null, orgId: p.orgId, action: 'user.created', targetType: 'user', targetId: u.id, nodeId: this.#d.nodeId, details: { provider: p.id, provisioned: true } });
          announce.push({ kind: 'user', id: u.id, orgId: null, action: 'created' });
        }
        await tx.query(sql.unsafe`INSERT INTO user_identities (provider_id, subject, user_id) VALUES (${p.id}, ${sub}, ${u.id})`);
      }
      if (u.disabled) return void (refusal = { code: 'CLUSTER_ERR_OIDC_NOT_ALLOWED', message: 'this account is disabled' });
      if (p.orgId) {
        const current = await tx.maybeOneFirst(sql.type(z.object({ role: z.string() }))`SELECT role FROM org_members WHERE org_id = ${p.orgId} AND user_id = ${u.id}`);
        if (!orgRole && !current) return void (refusal = { code: 'CLUSTER_ERR_OIDC_NOT_ALLOWED', message: 'the provider\'s claims give this account no role in the org' });
        if (orgRole && orgRole !== current) {
          await tx.query(sql.unsafe`INSERT INTO org_members (org_id, user_id, role) VALUES (${p.orgId}, ${u.id}, ${orgRole}) ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role`);
          // Resource sessions carry the role they were made with.
          if (current) await tx.query(sql.unsafe`UPDATE resource_sessions SET revoked_at = clock_timestamp() WHERE org_id = ${p.orgId} AND user_id = ${u.id} AND revoked_at IS NULL AND expires_at > now()`);
          await audit(tx, { actorType: 'system', actorId: null, orgId: p.orgId, action: 'member.updated', targetType: 'member', targetId: u.id, nodeId: this.#d.nodeId, details: { provider: p.id, role: orgRole, claim: p.roleClaim } });
          announce.push({ kind: 'member', id: u.id, orgId: p.orgId, action: 'updated' });
        }
      }
      await tx.query(sql.unsafe`UPDATE user_identities SET last_login_at = now() WHERE provider_id = ${p.id} AND subject = ${sub}`);
      await audit(tx, { actorType: 'user', actorId: u.id, orgId: p.orgId, action: 'oidc.signed_in', targetType: 'identity_provider', targetId: p.id, nodeId: this.#d.nodeId });
      return { id: u.id, email: u.email, name: u.display_name || name, isServerAdmin: u.is_server_admin };
    }));
    if (refusal || !user) return this.#refuse(p, refusal?.code ?? 'CLUSTER_ERR_OIDC_NOT_ALLOWED', refusal?.message ?? 'refused', { email });
    for (const a of announce) await this.#d.valkey.publish('changes', a).catch(() => {});
    return user;
  }

  /** Audits a refused sign-in and throws its coded error. */
  async #refuse(p: Provider | null, code: ErrorCode, message: string, details: Record<string, unknown> = {}): Promise<never> {
    this.#log.info({ provider: p?.id, code, reason: message }, 'oidc sign-in refused');
    await withDb(() => this.#d.db.transaction((tx) => audit(tx, { actorType: 'system', actorId: null, orgId: p?.orgId ?? null, action: 'oidc.refused', targetType: 'identity_provider', targetId: p?.id ?? 'unknown', nodeId: this.#d.nodeId, details: { code, reason: message, ...details } }))).catch(() => {});
    throw new ClusterError(code as 'CLUSTER_ERR_OIDC_REJECTED', message, {} as never);
  }
}
