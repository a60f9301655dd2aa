// The access check in front of every protected HTTP resource, on the node that terminates
// TLS. Order: blockAccess, then rules (first match by priority: allow skips the methods,
// deny answers 403, pass goes on), then credentials: the resource session cookie, a share
// link token (header or query), basic auth. A valid session or share link is decided from
// memory: signature, expiry, the revoked-session set and the policy published with the route.
// Only what signs someone in (an exchange, a share link turning into a session, basic auth
// not yet seen) reaches Valkey or PostgreSQL. Without credentials a browser goes to the
// portal; any other client gets 401 (with `WWW-Authenticate: Basic` where basic auth is on).
import type { IncomingMessage } from 'node:http';
import type { Clock } from '../../core/clock.ts';
import { hashToken } from '../../persistence/hashing.ts';
import { ClusterError, isClusterError, ERROR_CODES, type ErrorCode } from '../../core/errors.ts';
import { emailAllowed, type AccessPolicy, type SessionClaims, type ShareLink } from '../../protocol/access.ts';
import type { Route } from '../../protocol/route.ts';
import type { AccessDecision } from './access-log.ts';
import { firstMatch, normalizePath, type CountryOf } from './rules.ts';
import type { SessionSigner } from './session-token.ts';

/** Cookie of a resource session: host-only by the `__Host-` prefix where the resource has TLS. */
export const cookieName = (tls: boolean) => (tls ? '__Host-cluster_access' : 'cluster_access');
export const TOKEN_HEADER = 'x-cluster-access-token';
export const TOKEN_PARAM = '__cluster_token';
export const EXCHANGE_PARAM = '__cluster_exchange';
/** Paths of the resource's own host that belong to the cluster, not the target. */
export const LOGOUT_PATH = '/.cluster-auth/logout';

export interface Identity {
  id: string;
  email: string;
  name: string;
  role: string;
}

export type Verdict =
  | { allow: true; identity?: Identity; url: string; consumedAuthorization: boolean }
  | { allow: false; status: number; headers: Record<string, string | string[]>; body: string };

/** What signing in needs (Valkey and PostgreSQL); see sign-in.ts. */
export interface SignInOps {
  /** The cookie value a one-time exchange token stands for (undefined: unknown, used or expired). */
  exchange(token: string): Promise<{ cookie: string; resourceId: string } | undefined>;
  /** A new session made from a share link; the signed cookie value. */
  linkSession(route: Route, link: ShareLink, client: string): Promise<{ cookie: string; maxAgeMs: number }>;
  /** Checks basic-auth credentials (the resource password or a cluster account); counts failures. */
  basic(route: Route, user: string, password: string, client: string): Promise<Identity | 'resource' | null>;
  /** Counts a wrong token against the client and resource; throws CLUSTER_ERR_API_RATE_LIMITED past the limit. */
  failed(route: Route, client: string): Promise<void>;
  /** Revokes a session (logout). */
  logout(claims: SessionClaims, route: Route): Promise<void>;
}

export interface AccessGuardDeps {
  signer: SessionSigner;
  revocations: { has(sessionId: string): boolean };
  countryOf: CountryOf;
  /** https://<portal hostname>; undefined: no portal configured (browsers get 401 too). */
  portalOrigin: string | undefined;
  signIn: SignInOps;
  clock: Clock;
  record: (d: AccessDecision) => void;
}

const BASIC_CACHE_MS = 60_000;

function answer(code: ErrorCode, message: string, fields: Record<string, unknown>, headers: Record<string, string | string[]> = {}): Verdict {
  const status = ERROR_CODES[code].status ?? 500;
  return { allow: false, status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers }, body: JSON.stringify({ code, message, ...fields }) };
}

function redirect(location: string, headers: Record<string, string | string[]> = {}): Verdict {
  return { allow: false, status: 302, headers: { location, 'cache-control': 'no-store', ...headers }, body: '' };
}

/** The value of one cookie from a Cookie header (first occurrence), without parsing the rest. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The URL with the cluster's own query parameters removed. */
export function cleanUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const kept = url.slice(q + 1).split('&').filter((p) => {
    const name = p.split('=', 1)[0]!;
    return name !== TOKEN_PARAM && name !== EXCHANGE_PARAM;
  });
  return kept.length ? `${url.slice(0, q)}?${kept.join('&')}` : url.slice(0, q);
}

function queryParam(url: string, name: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  for (const p of url.slice(q + 1).split('&')) {
    const eq = p.indexOf('=');
    if ((eq < 0 ? p : p.slice(0, eq)) === name) {
      try {
        return decodeURIComponent(eq < 0 ? '' : p.slice(eq + 1));
      } catch {
        return '';
      }
    }
  }
  return undefined;
}

/** What the decision reads of a request: its method, URL and headers (the body never). */
export type RequestHead = Pick<IncomingMessage, 'method' | 'url' | 'headers'>;

export const isBrowser = (req: RequestHead) => (req.method === 'GET' || req.method === 'HEAD') && (req.headers.accept ?? '').includes('text/html');


export function sessionCookie(tls: boolean, value: string, maxAgeMs: number): string {
  return `${cookieName(tls)}=${value}; Path=/; Max-Age=${Math.max(0, Math.floor(maxAgeMs / 1000))}; HttpOnly; SameSite=Lax${tls ? '; Secure' : ''}`;
}

export class AccessGuard {
  readonly #d: AccessGuardDeps;
  /** What each published policy needs on every request, worked out once (a new snapshot is a new object). */
  readonly #compiled = new WeakMap<AccessPolicy, Compiled>();

  constructor(d: AccessGuardDeps) {
    this.#d = d;
  }

  /** Decides one request to a resource that has a policy. */
  check(req: RequestHead, route: Route, proto: 'http' | 'https', client: string): Verdict | Promise<Verdict> {
    const policy = route.access!;
    const now = this.#d.clock.now();
    const url = req.url ?? '/';
    const log = (decision: AccessDecision['decision'], method: string | null, reason: string, extra: { ruleId?: string; userId?: string } = {}) =>
      this.#d.record({ orgId: route.orgId, resourceId: route.resourceId, decision, method, ruleId: extra.ruleId ?? null, reason, client, userId: extra.userId ?? null });
    const denied = (reason: string, ruleId?: string) => {
      log('denied', ruleId ? 'rule' : null, reason, { ruleId });
      return answer('CLUSTER_ERR_ACCESS_DENIED', 'access to this resource is denied', { resourceId: route.resourceId, reason });
    };
    if (policy.blockAccess) return denied('blocked');

    const compiled = this.#compile(policy);
    // Normalizing costs a URL parse: only when a path rule or a share link's prefix needs it.
    const path = compiled.needsPath || url.startsWith(LOGOUT_PATH) ? normalizePath(url) : null;
    const rule = policy.rules.length ? firstMatch(policy.rules, { client, path }, this.#d.countryOf) : undefined;
    if (rule?.action === 'deny') return denied(`rule ${rule.priority}`, rule.id);
    if (rule?.action === 'allow') {
      log('allowed', 'rule', `rule ${rule.priority}`, { ruleId: rule.id });
      return { allow: true, url: cleanUrl(url), consumedAuthorization: false };
    }
    if (!compiled.hasMethods) return { allow: true, url: cleanUrl(url), consumedAuthorization: false };

    const exchange = queryParam(url, EXCHANGE_PARAM);
    if (exchange !== undefined) return this.#exchange(req, route, proto, exchange, url, log);

    const claims = this.#d.signer.verify(readCookie(req.headers.cookie, cookieName(route.tls)));
    const valid = claims && this.#sessionValid(claims, route, policy, now, path);
    if (valid && path === LOGOUT_PATH) return this.#logout(claims, route, proto);
    if (valid) {
      log('allowed', claims.method, 'session', { userId: claims.user?.id });
      return { allow: true, identity: claims.user ?? (claims.email ? { id: '', email: claims.email, name: '', role: '' } : undefined), url: cleanUrl(url), consumedAuthorization: false };
    }

    const headerToken = req.headers[TOKEN_HEADER];
    const token = typeof headerToken === 'string' ? headerToken : queryParam(url, TOKEN_PARAM);
    if (token !== undefined) return this.#shareLink(req, route, policy, token, path, url, client, now, typeof headerToken === 'string', log);

    const authorization = req.headers.authorization;
    if (policy.basicAuth && authorization?.startsWith('Basic ')) return this.#basicAuth(route, policy, authorization, client, now, url, log);

    log('denied', null, 'no credentials');
    return this.#unauthenticated(req, route, proto);
  }

  #sessionValid(c: SessionClaims, route: Route, policy: AccessPolicy, now: number, path: string | null): boolean {
    if (c.rid !== route.resourceId || c.exp <= now || this.#d.revocations.has(c.sid)) return false;
    switch (c.method) {
      case 'password':
        return policy.password;
      case 'pin':
        return policy.pin;
      case 'sso':
        return policy.sso !== null && c.user !== undefined && userAllowed(policy.sso, c.user);
      case 'link': {
        const link = policy.links.find((l) => l.id === c.link);
        return link !== undefined && (link.expiresAt === null || link.expiresAt > now) && pathAllowed(link, path);
      }
      case 'email':
        // The list may have narrowed since: it is checked on every request.
        return policy.email !== null && c.email !== undefined && emailAllowed(policy.email.allowed, c.email);
    }
  }

  #unauthenticated(req: RequestHead, route: Route, proto: 'http' | 'https'): Verdict {
    const portal = this.#d.portalOrigin;
    if (portal && isBrowser(req)) {
      const back = `${proto}://${route.hostname}${cleanUrl(req.url ?? '/')}`;
      return redirect(`${portal}/resource/${route.resourceId}?to=${encodeURIComponent(back)}`);
    }
    const headers: Record<string, string> = route.access!.basicAuth ? { 'www-authenticate': `Basic realm="${route.hostname}", charset="UTF-8"` } : {};
    return answer('CLUSTER_ERR_ACCESS_UNAUTHENTICATED', 'sign in to reach this resource', { resourceId: route.resourceId }, headers);
  }

  async #exchange(req: RequestHead, route: Route, proto: 'http' | 'https', token: string, url: string, log: LogFn): Promise<Verdict> {
    try {
      const found = token.length <= 100 ? await this.#d.signIn.exchange(token) : undefined;
      // A token minted for another resource is spent here and useless: it opens nothing.
      const claims = found && found.resourceId === route.resourceId ? this.#d.signer.verify(found.cookie) : undefined;
      if (!claims) {
        log('denied', null, 'bad exchange token');
        return this.#unauthenticated(req, route, proto);
      }
      log('allowed', claims.method, 'signed in', { userId: claims.user?.id });
      return redirect(cleanUrl(url), { 'set-cookie': sessionCookie(route.tls, found!.cookie, claims.exp - this.#d.clock.now()) });
    } catch (err) {
      return failure(err);
    }
  }

  async #shareLink(req: RequestHead, route: Route, policy: AccessPolicy, token: string, path: string | null, url: string, client: string, now: number, fromHeader: boolean, log: LogFn): Promise<Verdict> {
    const link = token.length <= 200 ? this.#compile(policy).links.get(hashToken(token).toString('hex')) : undefined;
    if (!link || (link.expiresAt !== null && link.expiresAt <= now) || !pathAllowed(link, path)) {
      log('denied', 'link', link ? 'link expired or outside its path' : 'bad token');
      try {
        await this.#d.signIn.failed(route, client);
      } catch (err) {
        if (isClusterError(err) && err.code === 'CLUSTER_ERR_API_RATE_LIMITED') return failure(err);
        // Valkey away: the token is refused all the same, just not counted.
      }
      return answer('CLUSTER_ERR_ACCESS_BAD_CREDENTIALS', 'this share link is not valid here', {});
    }
    log('allowed', 'link', 'share link');
    if (link.makesSession && !fromHeader && isBrowser(req)) {
      try {
        const s = await this.#d.signIn.linkSession(route, link, client);
        return redirect(cleanUrl(url), { 'set-cookie': sessionCookie(route.tls, s.cookie, s.maxAgeMs) });
      } catch {
        // PostgreSQL away: this request goes through on the link; the session waits for another.
      }
    }
    return { allow: true, url: cleanUrl(url), consumedAuthorization: false };
  }

  async #basicAuth(route: Route, policy: AccessPolicy, authorization: string, client: string, now: number, url: string, log: LogFn): Promise<Verdict> {
    const key = hashToken(authorization).toString('hex');
    const cache = this.#compile(policy).basic;
    const hit = cache.get(key);
    if (hit && hit.until > now) {
      log('allowed', 'basic', 'basic auth', { userId: hit.identity?.id });
      return { allow: true, identity: hit.identity, url: cleanUrl(url), consumedAuthorization: true };
    }
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    try {
      const who = colon < 0 || decoded.length > 600 ? null : await this.#d.signIn.basic(route, decoded.slice(0, colon), decoded.slice(colon + 1), client);
      if (!who) {
        log('denied', 'basic', 'bad credentials');
        return answer('CLUSTER_ERR_ACCESS_BAD_CREDENTIALS', 'wrong credentials for this resource', {}, { 'www-authenticate': `Basic realm="${route.hostname}", charset="UTF-8"` });
      }
      const identity = who === 'resource' ? undefined : who;
      if (cache.size > 10_000) cache.clear();
      cache.set(key, { identity, until: now + BASIC_CACHE_MS });
      log('allowed', 'basic', 'basic auth', { userId: identity?.id });
      return { allow: true, identity, url: cleanUrl(url), consumedAuthorization: true };
    } catch (err) {
      return failure(err);
    }
  }

  async #logout(claims: SessionClaims, route: Route, proto: 'http' | 'https'): Promise<Verdict> {
    try {
      await this.#d.signIn.logout(claims, route);
    } catch (err) {
      return failure(err);
    }
    const clear = sessionCookie(route.tls, '', 0);
    return { allow: false, status: 200, headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'set-cookie': clear }, body: `<!doctype html><title>Signed out</title><p>Signed out of ${escapeHtml(`${proto}://${route.hostname}`)}.</p>` };
  }

  #compile(policy: AccessPolicy): Compiled {
    let c = this.#compiled.get(policy);
    if (!c) {
      c = {
        links: new Map(policy.links.map((l) => [l.tokenHash, l])),
        needsPath: policy.rules.some((r) => r.match === 'path') || policy.links.some((l) => l.pathPrefix !== null),
        hasMethods: policy.password || policy.pin || policy.sso !== null || policy.email !== null || policy.basicAuth || policy.links.length > 0,
        basic: new Map(),
      };
      this.#compiled.set(policy, c);
    }
    return c;
  }
}

interface Compiled {
  /** Share links by token hash (hex). */
  links: Map<string, ShareLink>;
  /** Whether a rule or a link compares the request's path. */
  needsPath: boolean;
  /** Whether anything lets a request in besides an allow rule. */
  hasMethods: boolean;
  /** Basic-auth headers already checked (by hash): who they are and until when. */
  basic: Map<string, { identity: Identity | undefined; until: number }>;
}

type LogFn = (decision: AccessDecision['decision'], method: string | null, reason: string, extra?: { ruleId?: string; userId?: string }) => void;

export function userAllowed(sso: NonNullable<AccessPolicy['sso']>, user: { id: string; role: string }): boolean {
  if (!sso.roles.length && !sso.userIds.length) return true;
  return sso.roles.includes(user.role as 'admin') || sso.userIds.includes(user.id);
}

function pathAllowed(link: ShareLink, path: string | null): boolean {
  if (link.pathPrefix === null) return true;
  if (path === null) return false;
  const prefix = link.pathPrefix;
  return path === prefix || path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

/** Valkey or PostgreSQL away, or rate limited: the coded answer, never a 500. */
function failure(err: unknown): Verdict {
  if (isClusterError(err)) {
    const headers: Record<string, string> = err.code === 'CLUSTER_ERR_API_RATE_LIMITED' ? { 'retry-after': String(Math.ceil((err.fields as { retryAfterMs: number }).retryAfterMs / 1000)) } : {};
    return answer(err.code, err.message, {}, headers);
  }
  const e = new ClusterError('CLUSTER_ERR_DB_UNAVAILABLE', 'signing in is not possible right now', {});
  return answer(e.code, e.message, {});
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
