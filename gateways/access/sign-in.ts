// Signing in to a resource: the part of access control that needs Valkey and PostgreSQL (the
// request path after it does not). Checks a password, PIN or cluster account, creates the
// resource session row, signs its cookie and hands it over through a one-time exchange token
// (Valkey, one minute, GETDEL), so the cookie is set by the resource's own host. Failed
// attempts are counted per client and resource in Valkey across the cluster (checked before
// each attempt); with Valkey away, signing in answers CLUSTER_ERR_VALKEY_UNAVAILABLE (503)
// while existing sessions keep working. Also: the TOTP step at the portal, sign-in through an
// identity provider (its user, then this resource's rules), and e-mail one-time codes.
import { randomInt, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Clock } from '../../core/clock.ts';
import { ClusterError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { sourceOf } from '../../core/rate-buckets.ts';
import { audit } from '../../persistence/audit.ts';
import { sql, withDb, type DatabasePool } from '../../persistence/db.ts';
import { generateToken, hashToken, verifyPasswordOrDummy } from '../../persistence/hashing.ts';
import { check, hit, LOGIN_LIMITS, reset, type Limit } from '../../persistence/rate-limit.ts';
import { createResourceSession, revokeResourceSessions } from '../../persistence/resource-sessions.ts';
import type { Sealer } from '../../persistence/sealed.ts';
import { checkSecondFactor, LoginTickets, secondFactorOf } from '../../persistence/second-factor.ts';
import type { Valkey } from '../../persistence/valkey.ts';
import { emailAllowed, type SessionClaims, type SessionMethod, type ShareLink } from '../../protocol/access.ts';
import type { Route } from '../../protocol/route.ts';
import { userAllowed, type Identity, type SignInOps } from './guard.ts';
import type { Mailer } from './mailer.ts';
import type { SessionSigner } from './session-token.ts';

/** Wrong passwords, PINs, accounts and tokens per client (IPv6: /56) and resource. */
export const ACCESS_ATTEMPTS: Limit = { scope: 'resource-auth', max: 10, windowMs: 5 * 60_000 };
const EXCHANGE_TTL_MS = 60_000;

export interface SignInDeps {
  db: DatabasePool;
  valkey: Valkey;
  signer: SessionSigner;
  clock: Clock;
  nodeId: string;
  /** Lifetime of a resource session. */
  sessionTtlMs: number;
  /** Lifetime of the portal's own sign-in (single sign-on across resources). */
  portalSessionTtlMs: number;
  /** Opens TOTP secrets. */
  sealer: Sealer;
  /** Sends e-mail codes; undefined when the cluster has no SMTP server. */
  mailer?: Mailer;
  logger: Logger;
}

const MemberRow = z.object({ id: z.string(), email: z.string(), display_name: z.string(), role: z.enum(['admin', 'member']).nullable() });
const UserRow = MemberRow.extend({ password_hash: z.string() });
type Member = Identity & { role: 'admin' | 'member' };

/** The user, if they are a member of the resource's org and its single sign-on settings let them in. */
function allowedHere(route: Route, u: z.infer<typeof MemberRow> | null): Member | null {
  const sso = route.access?.sso;
  if (!u?.role || !sso) return null;
  const member = { id: u.id, email: u.email, name: u.display_name, role: u.role };
  return userAllowed(sso, member) ? member : null;
}

/** Codes sent per address, and per resource, across the cluster. */
export const EMAIL_SENDS = {
  perAddress: { scope: 'email-code-address', max: 5, windowMs: 15 * 60_000 } satisfies Limit,
  perResource: { scope: 'email-code-resource', max: 200, windowMs: 60 * 60_000 } satisfies Limit,
};
const EMAIL_CODE_TTL_MS = 10 * 60_000;
/** Wrong codes one sent code may take. */
export const EMAIL_CODE_ATTEMPTS = 5;

/** How a cluster-account sign-in at the portal went on. */
export type AccountSignIn = { exchange: string; portal: string } | { secondFactor: 'totp'; ticket: string } | { secondFactor: 'enrol' };

export class AccessSignIn implements SignInOps {
  readonly #d: SignInDeps;
  readonly #tickets: LoginTickets;

  constructor(d: SignInDeps) {
    this.#d = d;
    this.#tickets = new LoginTickets(d.valkey);
  }

  /** Refuses (429) a client that failed too often at this resource; counts nothing. */
  #check(route: Route, client: string) {
    return check(this.#d.valkey, ACCESS_ATTEMPTS, `${route.resourceId}|${sourceOf(client)}`);
  }

  /** Counts a failure against the client and resource (429 past the limit). */
  async failed(route: Route, client: string): Promise<void> {
    await hit(this.#d.valkey, ACCESS_ATTEMPTS, `${route.resourceId}|${sourceOf(client)}`);
  }

  /** `result`, or, when it is null (a failure), the failure counted first. */
  async #counted<T>(route: Route, client: string, result: T | null): Promise<T | null> {
    if (result === null) await this.failed(route, client);
    return result;
  }

  async exchange(token: string): Promise<{ cookie: string; resourceId: string } | undefined> {
    const raw = await this.#d.valkey.call((c) => c.getdel(this.#d.valkey.keys.accessExchange(hashToken(token).toString('hex'))));
    if (!raw) return undefined;
    const parsed = z.object({ cookie: z.string(), resourceId: z.string() }).safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  }

  /** A one-time token the resource's host exchanges for the cookie. */
  async #mint(route: Route, cookie: string): Promise<string> {
    const token = generateToken(24);
    const key = this.#d.valkey.keys.accessExchange(hashToken(token).toString('hex'));
    await this.#d.valkey.call((c) => c.set(key, JSON.stringify({ cookie, resourceId: route.resourceId }), 'PX', EXCHANGE_TTL_MS));
    return token;
  }

  async #session(route: Route, method: SessionMethod, client: string, extra: { user?: Member; linkId?: string; ttlMs?: number }): Promise<{ cookie: string; maxAgeMs: number }> {
    const ttlMs = extra.ttlMs ?? this.#d.sessionTtlMs;
    const s = await withDb(() => createResourceSession(this.#d.db, { resourceId: route.resourceId, orgId: route.orgId, method, userId: extra.user?.id, linkId: extra.linkId, client, ttlMs }));
    const claims: SessionClaims = { sid: s.id, rid: route.resourceId, method, exp: s.expiresAt, ...(extra.linkId ? { link: extra.linkId } : {}), ...(extra.user ? { user: extra.user } : {}) };
    return { cookie: this.#d.signer.sign(claims), maxAgeMs: s.expiresAt - this.#d.clock.now() };
  }

  async linkSession(route: Route, link: ShareLink, client: string): Promise<{ cookie: string; maxAgeMs: number }> {
    // A link session never outlives its link.
    const ttlMs = link.expiresAt === null ? undefined : Math.max(1000, Math.min(this.#d.sessionTtlMs, link.expiresAt - this.#d.clock.now()));
    return this.#session(route, 'link', client, { linkId: link.id, ttlMs });
  }

  async #secretMatches(route: Route, kind: 'password' | 'pin', secret: string): Promise<boolean> {
    const hash = await withDb(() => this.#d.db.maybeOneFirst(sql.type(z.object({ hash: z.string() }))`SELECT hash FROM resource_secrets WHERE resource_id = ${route.resourceId} AND kind = ${kind}`));
    return verifyPasswordOrDummy(secret, hash);
  }

  /** A cluster account that may use this resource: member of its org, allowed by its SSO settings. */
  async #account(route: Route, email: string, password: string): Promise<(Member) | null> {
    const lower = email.trim().toLowerCase();
    await hit(this.#d.valkey, LOGIN_LIMITS.perAccount, lower);
    const u = await withDb(() => this.#d.db.maybeOne(sql.type(UserRow)`
      SELECT u.id, u.email, u.display_name, u.password_hash, m.role FROM users u LEFT JOIN org_members m ON m.user_id = u.id AND m.org_id = ${route.orgId}
      WHERE u.email = ${lower} AND u.disabled_at IS NULL`));
    // Checked even for an unknown account (against a throw-away hash): as slow as a wrong password.
    const ok = await verifyPasswordOrDummy(password, u?.password_hash);
    if (!u || !ok) return null;
    await reset(this.#d.valkey, LOGIN_LIMITS.perAccount, lower);
    return allowedHere(route, u);
  }

  /** A user by id, if the resource lets them in (see allowedHere). */
  async #member(route: Route, userId: string): Promise<Member | null> {
    return allowedHere(route, await withDb(() => this.#d.db.maybeOne(sql.type(MemberRow)`
      SELECT u.id, u.email, u.display_name, m.role FROM users u LEFT JOIN org_members m ON m.user_id = u.id AND m.org_id = ${route.orgId} WHERE u.id = ${userId} AND u.disabled_at IS NULL`)));
  }

  async basic(route: Route, user: string, password: string, client: string): Promise<Identity | 'resource' | null> {
    await this.#check(route, client);
    const p = route.access!;
    if (p.password && (await this.#secretMatches(route, 'password', password))) return 'resource';
    if (!p.sso || !user.includes('@')) return this.#counted(route, client, null);
    const account = await this.#counted(route, client, await this.#account(route, user, password));
    // Basic auth cannot ask for a code: an account with a second factor signs in at the portal.
    if (account && (await this.#secondFactor(account.id)) !== 'none') throw new ClusterError('CLUSTER_ERR_AUTH_SECOND_FACTOR_NEEDED', 'this account signs in with a second factor: use the portal', {});
    return account;
  }

  /** Password or PIN from the portal: the exchange token, or null when wrong. */
  async withSecret(route: Route, kind: 'password' | 'pin', secret: string, client: string): Promise<string | null> {
    await this.#check(route, client);
    if (!route.access?.[kind] || !(await this.#secretMatches(route, kind, secret))) return this.#counted(route, client, null);
    return this.#mint(route, (await this.#session(route, kind, client, {})).cookie);
  }

  async #secondFactor(userId: string): Promise<'none' | 'totp' | 'enrol'> {
    const s = await withDb(() => secondFactorOf(this.#d.db, userId));
    return s.enrolled ? 'totp' : s.required ? 'enrol' : 'none';
  }

  /**
   * A cluster account from the portal form: the exchange token and a portal session token
   * (so the next resource is one click); or the second factor it still needs (`ticket` for
   * the code form); or null when wrong or not allowed here.
   */
  async withAccount(route: Route, email: string, password: string, client: string): Promise<AccountSignIn | null> {
    await this.#check(route, client);
    const user = await this.#counted(route, client, await this.#account(route, email, password));
    return user ? this.#afterFirstFactor(route, user, client) : null;
  }

  /**
   * A user an identity provider vouched for: their role in the resource's org and the
   * resource's SSO settings decide, then the second factor as after a password.
   */
  async withIdentity(route: Route, userId: string, client: string): Promise<AccountSignIn | null> {
    const user = await this.#member(route, userId);
    return user ? this.#afterFirstFactor(route, user, client) : null;
  }

  async #afterFirstFactor(route: Route, user: Member, client: string): Promise<AccountSignIn> {
    const second = await this.#secondFactor(user.id);
    if (second === 'enrol') return { secondFactor: 'enrol' };
    if (second === 'totp') return { secondFactor: 'totp', ticket: await this.#tickets.create({ userId: user.id, stage: 'totp', purpose: 'portal', resourceId: route.resourceId }) };
    return this.#signedIn(route, user, client);
  }

  /** The code step of a portal sign-in: null when the code is wrong (the ticket counts it) or the ticket is not for this resource. */
  async withCode(route: Route, ticket: string, proof: { code?: string; recoveryCode?: string }, client: string): Promise<AccountSignIn | null> {
    await this.#check(route, client);
    const t = await this.#tickets.read(ticket);
    if (!t || t.stage !== 'totp' || t.purpose !== 'portal' || t.resourceId !== route.resourceId) return this.#counted(route, client, null);
    if (!(await checkSecondFactor(this.#d.db, this.#d.sealer, t.userId, proof, this.#d.clock.now()))) {
      await this.#tickets.failed(ticket, t);
      return this.#counted(route, client, null);
    }
    await this.#tickets.spend(ticket);
    const user = await this.#member(route, t.userId);
    return user ? this.#signedIn(route, user, client) : null;
  }

  async #signedIn(route: Route, user: Member, client: string): Promise<AccountSignIn> {
    const portal = generateToken();
    await withDb(() => this.#d.db.query(sql.unsafe`
      INSERT INTO sessions (user_id, token_hash, expires_at) VALUES (${user.id}, ${sql.binary(hashToken(portal))}, now() + ${`${this.#d.portalSessionTtlMs} milliseconds`}::interval)`));
    return { exchange: await this.#mint(route, (await this.#session(route, 'sso', client, { user })).cookie), portal };
  }

  /** The user of a portal session, if it is valid and the user may use this resource. */
  async portalUser(route: Route, portalToken: string): Promise<Member | null> {
    return allowedHere(route, await withDb(() => this.#d.db.maybeOne(sql.type(MemberRow)`
      SELECT u.id, u.email, u.display_name, m.role FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN org_members m ON m.user_id = u.id AND m.org_id = ${route.orgId}
      WHERE s.token_hash = ${sql.binary(hashToken(portalToken))} AND s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL`)));
  }

  /** Single sign-on: a session for a user the portal already knows. */
  async asUser(route: Route, user: Member, client: string): Promise<string> {
    return this.#mint(route, (await this.#session(route, 'sso', client, { user })).cookie);
  }

  #codeKey(route: Route, email: string) {
    return this.#d.valkey.keys.emailCode(route.resourceId, hashToken(email).toString('hex'));
  }

  /**
   * Sends a code when the address is on the resource's list; an address that is not gets the
   * same answer and the same counting (nothing tells them apart), and no mail.
   */
  async sendEmailCode(route: Route, email: string, client: string): Promise<void> {
    const address = email.trim().toLowerCase();
    await hit(this.#d.valkey, EMAIL_SENDS.perAddress, address);
    await hit(this.#d.valkey, EMAIL_SENDS.perResource, route.resourceId);
    const allowed = route.access?.email && emailAllowed(route.access.email.allowed, address);
    if (!allowed || !this.#d.mailer) return;
    const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
    await this.#d.valkey.call((c) => c.set(this.#codeKey(route, address), JSON.stringify({ hash: hashToken(code).toString('hex'), attempts: 0 }), 'PX', EMAIL_CODE_TTL_MS));
    // Not awaited: the answer must not wait on (or reveal) the mail server's work.
    this.#d.mailer.send(address, `Your sign-in code for ${route.hostname}`, `Your code for ${route.hostname} is ${code}.\nIt works once, for 10 minutes. If you did not ask for it, ignore this message.\n`)
      .catch((err) => this.#d.logger.warn({ resourceId: route.resourceId, err: (err as Error).message }, 'could not send an e-mail code'));
  }

  /** A code from the mail: the exchange token, or null (wrong, expired, spent by wrong attempts, or never sent). */
  async withEmailCode(route: Route, email: string, code: string, client: string): Promise<string | null> {
    const address = email.trim().toLowerCase();
    await this.#check(route, client);
    if (!route.access?.email || !emailAllowed(route.access.email.allowed, address)) return this.#counted(route, client, null);
    const key = this.#codeKey(route, address);
    const raw = await this.#d.valkey.call((c) => c.get(key));
    const stored = raw ? z.object({ hash: z.string(), attempts: z.number() }).safeParse(JSON.parse(raw)) : undefined;
    if (!stored?.success) return this.#counted(route, client, null);
    const given = hashToken(code.trim());
    if (!timingSafeEqual(given, Buffer.from(stored.data.hash, 'hex'))) {
      if (stored.data.attempts + 1 >= EMAIL_CODE_ATTEMPTS) await this.#d.valkey.call((c) => c.del(key));
      else await this.#d.valkey.call((c) => c.set(key, JSON.stringify({ ...stored.data, attempts: stored.data.attempts + 1 }), 'KEEPTTL'));
      return this.#counted(route, client, null);
    }
    // One use: whoever deletes it first signs in.
    if ((await this.#d.valkey.call((c) => c.del(key))) !== 1) return this.#counted(route, client, null);
    const s = await withDb(() => createResourceSession(this.#d.db, { resourceId: route.resourceId, orgId: route.orgId, method: 'email', email: address, client, ttlMs: this.#d.sessionTtlMs }));
    const claims: SessionClaims = { sid: s.id, rid: route.resourceId, method: 'email', exp: s.expiresAt, email: address };
    return this.#mint(route, this.#d.signer.sign(claims));
  }

  async logout(claims: SessionClaims, route: Route): Promise<void> {
    await withDb(() => this.#d.db.transaction(async (tx) => {
      await revokeResourceSessions(tx, { sessionId: claims.sid });
      await audit(tx, { actorType: claims.user ? 'user' : 'system', actorId: claims.user?.id ?? null, orgId: route.orgId, action: 'resource_session.revoked', targetType: 'resource_session', targetId: claims.sid, nodeId: this.#d.nodeId, details: { resourceId: route.resourceId, reason: 'logout' } });
    }));
    await this.#d.valkey.publish('changes', { kind: 'resource_session', id: claims.sid, orgId: route.orgId, action: 'deleted' }).catch(() => {});
  }
}
