// The auth portal, served by every node on the configured public hostname. A browser sent
// here by a protected resource sees that resource's methods (password, PIN, cluster account);
// on success it goes back to the resource's own address with a one-time exchange token, which
// the resource's node turns into a cookie for that host. The portal keeps its own sign-in (a
// cluster session cookie on the portal host), so a user signed in once reaches the next
// resource that allows them without typing again.
// Forms carry a CSRF token that must equal the portal's CSRF cookie, and a POST from another
// site (Origin or Sec-Fetch-Site) is refused. The return address must be an address of the
// resource itself: the portal never redirects anywhere else.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isClusterError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { hashToken } from '../../persistence/hashing.ts';
import { sql, withDb, type DatabasePool } from '../../persistence/db.ts';
import type { Route } from '../../protocol/route.ts';
import type { AccessDecision } from './access-log.ts';
import { EXCHANGE_PARAM, escapeHtml, readCookie } from './guard.ts';
import type { AccessSignIn } from './sign-in.ts';
import type { OidcSignIn } from '../identity/oidc.ts';

export const PORTAL_COOKIE = '__Host-cluster_portal';
const CSRF_COOKIE = '__Host-cluster_csrf';
const MAX_FORM = 8 * 1024;

export interface PortalDeps {
  hostname: string;
  oidc: OidcSignIn;
  routes: { byId(resourceId: string): Route | undefined };
  signIn: AccessSignIn;
  db: DatabasePool;
  logger: Logger;
  portalSessionTtlMs: number;
  record: (d: AccessDecision) => void;
}

/** The resource's address to return to, or undefined when `to` is not one of its URLs. */
export function returnAddress(route: Route, to: string | null): URL | undefined {
  if (!to || to.length > 4096) return undefined;
  try {
    const u = new URL(to);
    const proto = route.tls ? 'https:' : 'http:';
    if (u.protocol !== proto || u.hostname !== route.hostname || u.port !== '' || u.username || u.password) return undefined;
    u.searchParams.delete(EXCHANGE_PARAM);
    return u;
  } catch {
    return undefined;
  }
}

function page(res: ServerResponse, status: number, title: string, body: string, headers: Record<string, string | string[]> = {}) {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title>
<style>body{font:16px system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}form{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}
label{display:block;margin:.5rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}button{margin-top:.8rem;padding:.4rem 1rem}.error{color:#a00}</style></head>
<body><main><h1>${escapeHtml(title)}</h1>${body}</main></body></html>`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // No form-action: browsers apply it to the redirect after a post too, and sign-in ends in
    // a redirect to the resource's own host.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    'x-frame-options': 'DENY',
    // Not no-referrer: with it, a browser sends `Origin: null` on the portal's own form posts.
    'referrer-policy': 'same-origin',
    ...headers,
  });
  res.end(html);
}

function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  return new Promise((resolve) => {
    if (!(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) return resolve(undefined);
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_FORM) {
        resolve(undefined);
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', () => resolve(undefined));
  });
}

/** The browser's CSRF token, or a new one and the cookie that sets it (the forms carry it back). */
function csrfOf(req: IncomingMessage): { csrf: string; headers: Record<string, string> } {
  const csrf = readCookie(req.headers.cookie, CSRF_COOKIE);
  if (csrf && /^[A-Za-z0-9_-]{32,64}$/.test(csrf)) return { csrf, headers: {} };
  const fresh = randomBytes(24).toString('base64url');
  return { csrf: fresh, headers: { 'set-cookie': `${CSRF_COOKIE}=${fresh}; Path=/; HttpOnly; Secure; SameSite=Strict` } };
}

const sameText = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

export class Portal {
  readonly #d: PortalDeps;
  readonly #log: Logger;
  readonly origin: string;
  readonly hostname: string;

  constructor(d: PortalDeps) {
    this.#d = d;
    this.hostname = d.hostname;
    this.#log = d.logger.child({ component: 'portal' });
    this.origin = `https://${d.hostname}`;
  }

  async handle(req: IncomingMessage, res: ServerResponse, client: string): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', this.origin);
      const m = /^\/resource\/([0-9a-f-]{36})$/.exec(url.pathname);
      if (m && req.method === 'GET') return await this.#show(req, res, m[1]!, url.searchParams.get('to'), client);
      if (m && req.method === 'POST') return await this.#submit(req, res, m[1]!, client);
      const start = /^\/oidc\/([0-9a-f-]{36})\/start$/.exec(url.pathname);
      if (start && req.method === 'GET') return await this.#oidcStart(res, start[1]!, url.searchParams.get('resource') ?? '', url.searchParams.get('to'));
      if (url.pathname === '/oidc/callback' && req.method === 'GET') return await this.#oidcCallback(req, res, url.searchParams, client);
      if (url.pathname === '/logout') return await this.#logout(req, res);
      if (url.pathname === '/') return page(res, 200, 'Sign-in portal', '<p>Open the resource you want to reach; it brings you here when it needs a sign-in.</p>');
      page(res, 404, 'Not found', '<p>There is nothing here.</p>');
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'portal request failed');
      if (!res.headersSent) this.#failure(res, err);
    }
  }

  /** Redirects to an identity provider the resource's org may use. */
  async #oidcStart(res: ServerResponse, providerId: string, resourceId: string, to: string | null) {
    const route = this.#route(resourceId);
    const back = route && returnAddress(route, to);
    if (!route?.access?.sso || !back) return page(res, 400, 'Unknown address', '<p class="error">This sign-in link is not valid. Open the resource again.</p>');
    if (!(await this.#d.oidc.providersFor(route.orgId)).some((p) => p.id === providerId)) return page(res, 404, 'Unknown provider', '<p class="error">This resource does not take that identity provider.</p>');
    const url = await this.#d.oidc.start(providerId, { purpose: 'portal', resourceId, to: back.toString(), redirectUri: `${this.origin}/oidc/callback` });
    res.writeHead(302, { location: url, 'cache-control': 'no-store' });
    res.end();
  }

  /** Where providers send browsers back (register `https://<portal>/oidc/callback` at the provider). */
  async #oidcCallback(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, client: string) {
    let signedIn;
    try {
      signedIn = await this.#d.oidc.finish(query);
    } catch (err) {
      const code = isClusterError(err) ? err.code : 'CLUSTER_ERR_OIDC_REJECTED';
      const status = isClusterError(err) ? (err.status ?? 400) : 400;
      return page(res, status, 'Sign-in failed', `<p class="error" role="alert">${escapeHtml((err as Error).message)} (${escapeHtml(code)})</p><p>Open the resource again to start over.</p>`);
    }
    const { state, user } = signedIn;
    const route = state.purpose === 'portal' && state.resourceId ? this.#route(state.resourceId) : undefined;
    const back = route && returnAddress(route, state.to ?? null);
    if (!route || !back) return page(res, 400, 'Unknown address', '<p class="error">This sign-in was not for a resource here.</p>');
    const r = await this.#d.signIn.withIdentity(route, user.id, client);
    if (!r) {
      this.#record(route, 'denied', 'sso', 'identity not allowed here', client);
      return page(res, 403, 'Not allowed', `<p class="error" role="alert">${escapeHtml(user.email)} may not use this resource.</p>`);
    }
    if ('secondFactor' in r) {
      if (r.secondFactor === 'enrol') return page(res, 403, 'Two-factor sign-in needed', '<p class="error" role="alert">This account must set up two-factor sign-in first: sign in to the dashboard to do so.</p>');
      const { csrf, headers } = csrfOf(req);
      return this.#codeForm(res, back, csrf, r.ticket, undefined, route.resourceId, headers);
    }
    this.#record(route, 'allowed', 'sso', 'signed in', client);
    return this.#done(res, back, r.exchange, `${PORTAL_COOKIE}=${r.portal}; Path=/; Max-Age=${Math.floor(this.#d.portalSessionTtlMs / 1000)}; HttpOnly; Secure; SameSite=Lax`);
  }

  #failure(res: ServerResponse, err: unknown) {
    if (isClusterError(err) && err.code === 'CLUSTER_ERR_API_RATE_LIMITED') {
      const wait = Math.ceil((err.fields as { retryAfterMs: number }).retryAfterMs / 1000);
      return page(res, 429, 'Too many attempts', `<p class="error">Too many attempts. Try again in ${wait} seconds.</p>`, { 'retry-after': String(wait) });
    }
    const code = isClusterError(err) ? err.code : 'CLUSTER_ERR_API_INTERNAL';
    page(res, 503, 'Signing in is not possible right now', `<p class="error">Signing in is not possible right now (${escapeHtml(code)}). Try again shortly.</p>`);
  }

  #route(resourceId: string): Route | undefined {
    const r = this.#d.routes.byId(resourceId);
    return r?.enabled && r.access && r.hostname ? r : undefined;
  }

  async #show(req: IncomingMessage, res: ServerResponse, resourceId: string, to: string | null, client: string, error?: { status: number; text: string }) {
    const route = this.#route(resourceId);
    const back = route && returnAddress(route, to);
    if (!route || !back) return page(res, 400, 'Unknown address', '<p class="error">This sign-in link is not valid. Open the resource again.</p>');
    const portalToken = readCookie(req.headers.cookie, PORTAL_COOKIE);
    if (!error && portalToken && route.access!.sso) {
      const user = await this.#d.signIn.portalUser(route, portalToken);
      if (user) return this.#done(res, back, await this.#d.signIn.asUser(route, user, client));
    }
    const { csrf, headers } = csrfOf(req);
    const p = route.access!;
    const providers = p.sso ? await this.#d.oidc.providersFor(route.orgId) : [];
    const startAt = (id: string) => `/oidc/${id}/start?resource=${route.resourceId}&to=${encodeURIComponent(back.toString())}`;
    // The resource names one provider: straight there, unless this page shows an error.
    if (!error && p.sso?.providerId && providers.some((x) => x.id === p.sso!.providerId)) {
      res.writeHead(302, { location: startAt(p.sso.providerId), 'cache-control': 'no-store' });
      return void res.end();
    }
    const hidden = (method: string) => `<input type="hidden" name="method" value="${method}"><input type="hidden" name="to" value="${escapeHtml(back.toString())}"><input type="hidden" name="csrf" value="${csrf}">`;
    const forms = [
      p.password && `<form id="password-form" method="post">${hidden('password')}<label for="password">Password</label><input id="password" name="secret" type="password" autocomplete="current-password" required><button type="submit">Continue</button></form>`,
      p.pin && `<form id="pin-form" method="post">${hidden('pin')}<label for="pin">PIN</label><input id="pin" name="secret" inputmode="numeric" pattern="[0-9]{6,9}" autocomplete="off" required><button type="submit">Continue</button></form>`,
      p.email && `<form id="email-form" method="post">${hidden('email-send')}<label for="code-email">E-mail</label><input id="code-email" name="email" type="email" autocomplete="email" required><button type="submit">Send me a code</button></form>`,
      p.sso && `<form id="sso-form" method="post">${hidden('sso')}<label for="email">E-mail</label><input id="email" name="email" type="email" autocomplete="username" required><label for="account-password">Password</label><input id="account-password" name="password" type="password" autocomplete="current-password" required><button type="submit">Sign in with your account</button></form>`,
      ...providers.map((x) => `<p><a class="provider" id="provider-${x.id}" href="${escapeHtml(startAt(x.id))}">Sign in with ${escapeHtml(x.name)}</a></p>`),
    ].filter(Boolean);
    const body = `<p>Sign in to reach <strong>${escapeHtml(route.hostname!)}</strong>.</p>${error ? `<p class="error" role="alert">${escapeHtml(error.text)}</p>` : ''}${forms.join('') || '<p>This resource takes share links only.</p>'}`;
    page(res, error?.status ?? 200, 'Sign in', body, headers);
  }

  async #submit(req: IncomingMessage, res: ServerResponse, resourceId: string, client: string) {
    const form = await readForm(req);
    const route = this.#route(resourceId);
    const back = route && form && returnAddress(route, form.get('to'));
    const csrf = readCookie(req.headers.cookie, CSRF_COOKIE);
    const fetchSite = req.headers['sec-fetch-site'];
    const origin = req.headers.origin;
    // Sec-Fetch-Site where the browser sends it; Origin otherwise (older browsers).
    const foreign = fetchSite !== undefined ? fetchSite !== 'same-origin' : origin !== undefined && origin !== this.origin;
    if (!route || !form || !back) return page(res, 400, 'Unknown address', '<p class="error">This form is not valid. Open the resource again.</p>');
    if (foreign || !csrf || !sameText(csrf, form.get('csrf') ?? '')) {
      this.#record(route, 'denied', null, 'bad form', client);
      return page(res, 400, 'Form expired', '<p class="error">This form expired or came from another site. Open the resource again.</p>');
    }
    const method = form.get('method');
    const retry = (text: string) => this.#show(req, res, resourceId, back.toString(), client, { status: 401, text });
    try {
      if (method === 'password' || method === 'pin') {
        const secret = (form.get('secret') ?? '').slice(0, 256);
        const token = await this.#d.signIn.withSecret(route, method, secret, client);
        if (!token) return (this.#record(route, 'denied', method, 'bad credentials', client), retry(`Wrong ${method === 'pin' ? 'PIN' : 'password'}.`));
        this.#record(route, 'allowed', method, 'signed in', client);
        return this.#done(res, back, token);
      }
      if (method === 'email-send' && route.access!.email) {
        const email = (form.get('email') ?? '').slice(0, 254);
        await this.#d.signIn.sendEmailCode(route, email, client);
        // The same answer whether or not the address is on the list.
        return this.#emailCodeForm(res, back, csrf, email);
      }
      if (method === 'email-code' && route.access!.email) {
        const email = (form.get('email') ?? '').slice(0, 254);
        const token = await this.#d.signIn.withEmailCode(route, email, (form.get('code') ?? '').slice(0, 20), client);
        if (!token) {
          this.#record(route, 'denied', 'email', 'bad code', client);
          return this.#emailCodeForm(res, back, csrf, email, 'Wrong or expired code.');
        }
        this.#record(route, 'allowed', 'email', 'signed in', client);
        return this.#done(res, back, token);
      }
      if ((method === 'sso' || method === 'totp') && route.access!.sso) {
        const ticket = (form.get('ticket') ?? '').slice(0, 100);
        const r = method === 'sso'
          ? await this.#d.signIn.withAccount(route, (form.get('email') ?? '').slice(0, 254), (form.get('password') ?? '').slice(0, 256), client)
          : await this.#d.signIn.withCode(route, ticket, /^\d{6}$/.test(form.get('code') ?? '') ? { code: form.get('code')! } : { recoveryCode: (form.get('code') ?? '').slice(0, 40) }, client);
        if (!r && method === 'totp') {
          this.#record(route, 'denied', 'sso', 'bad second factor', client);
          return this.#codeForm(res, back, csrf, ticket, 'Wrong or used code.');
        }
        // Wrong password, unknown account and "not allowed here" read the same: nothing to enumerate.
        if (!r) return (this.#record(route, 'denied', 'sso', 'bad credentials', client), retry('Wrong e-mail or password, or this account may not use this resource.'));
        if ('secondFactor' in r) {
          if (r.secondFactor === 'totp') return this.#codeForm(res, back, csrf, r.ticket);
          this.#record(route, 'denied', 'sso', 'two-factor enrolment required', client);
          return retry('This account must set up two-factor sign-in first: sign in to the dashboard to do so.');
        }
        this.#record(route, 'allowed', 'sso', 'signed in', client);
        return this.#done(res, back, r.exchange, `${PORTAL_COOKIE}=${r.portal}; Path=/; Max-Age=${Math.floor(this.#d.portalSessionTtlMs / 1000)}; HttpOnly; Secure; SameSite=Lax`);
      }
      return page(res, 400, 'Unknown method', '<p class="error">This resource does not take that sign-in.</p>');
    } catch (err) {
      this.#failure(res, err);
    }
  }

  /** After asking for an e-mail code: where to type it (the same page for any address). */
  #emailCodeForm(res: ServerResponse, back: URL, csrf: string, email: string, error?: string) {
    const body = `${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : `<p>If ${escapeHtml(email)} may sign in here, a code is on its way. It works once, for 10 minutes.</p>`}<form id="email-code-form" method="post">
<input type="hidden" name="method" value="email-code"><input type="hidden" name="to" value="${escapeHtml(back.toString())}"><input type="hidden" name="csrf" value="${escapeHtml(csrf)}"><input type="hidden" name="email" value="${escapeHtml(email)}">
<label for="email-code">Code from the e-mail</label><input id="email-code" name="code" inputmode="numeric" pattern="[0-9]{6}" autocomplete="one-time-code" required><button type="submit">Continue</button></form>`;
    page(res, error ? 401 : 200, 'Check your e-mail', body);
  }

  /** The second step of an account sign-in: a code from the authenticator app, or a recovery code. */
  #codeForm(res: ServerResponse, back: URL, csrf: string, ticket: string, error?: string, resourceId?: string, headers: Record<string, string> = {}) {
    const action = resourceId ? ` action="/resource/${escapeHtml(resourceId)}"` : '';
    const body = `${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}<form id="totp-form" method="post"${action}>
<input type="hidden" name="method" value="totp"><input type="hidden" name="to" value="${escapeHtml(back.toString())}"><input type="hidden" name="csrf" value="${escapeHtml(csrf)}"><input type="hidden" name="ticket" value="${escapeHtml(ticket)}">
<label for="code">Code from your authenticator app (or a recovery code)</label><input id="code" name="code" autocomplete="one-time-code" required><button type="submit">Verify</button></form>`;
    page(res, error ? 401 : 200, 'Two-factor sign-in', body, headers);
  }

  #done(res: ServerResponse, back: URL, exchange: string, setCookie?: string) {
    const to = new URL(back);
    to.searchParams.set(EXCHANGE_PARAM, exchange);
    res.writeHead(303, { location: to.toString(), 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', ...(setCookie ? { 'set-cookie': setCookie } : {}) });
    res.end();
  }

  async #logout(req: IncomingMessage, res: ServerResponse) {
    const token = readCookie(req.headers.cookie, PORTAL_COOKIE);
    if (token) await withDb(() => this.#d.db.query(sql.unsafe`UPDATE sessions SET revoked_at = now() WHERE token_hash = ${sql.binary(hashToken(token))} AND revoked_at IS NULL`));
    page(res, 200, 'Signed out', '<p>You are signed out of the portal.</p>', { 'set-cookie': `${PORTAL_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax` });
  }

  #record(route: Route, decision: 'allowed' | 'denied', method: string | null, reason: string, client: string) {
    this.#d.record({ orgId: route.orgId, resourceId: route.resourceId, decision, method, ruleId: null, reason, client, userId: null });
  }
}
