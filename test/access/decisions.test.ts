// The access decision core without a cluster: rules, session cookies and the guard's
// answers, with a fake sign-in behind its narrow interface.
import type { IncomingMessage } from 'node:http';
import t from 'tap';
import { Secret } from '../../core/secret.ts';
import { countryLookup } from '../../gateways/access/country.ts';
import { AccessGuard, cleanUrl, type SignInOps, type Verdict } from '../../gateways/access/guard.ts';
import { firstMatch, normalizePath, ruleValueProblem } from '../../gateways/access/rules.ts';
import { SessionSigner } from '../../gateways/access/session-token.ts';
import type { AccessPolicy, SessionClaims } from '../../protocol/access.ts';
import type { Route } from '../../protocol/route.ts';
import { createHash } from 'node:crypto';

const RID = '11111111-1111-4111-8111-111111111111';
const OTHER = '22222222-2222-4222-8222-222222222222';
const SID = '33333333-3333-4333-8333-333333333333';
const LINK = '44444444-4444-4444-8444-444444444444';
const USER = { id: '55555555-5555-4555-8555-555555555555', email: 'ann@example.com', name: 'Ann', role: 'member' as const };

t.test('paths are normalized before rules see them', async (t) => {
  t.equal(normalizePath('/%61dmin/x?y=1'), '/admin/x');
  t.equal(normalizePath('//admin'), '/admin');
  t.equal(normalizePath('/public/../admin'), '/admin');
  t.equal(normalizePath('/public/%2e%2e/admin'), '/admin');
  t.equal(normalizePath('/%zz'), null, 'an undecodable path is null');
  t.equal(normalizePath('/a%00b'), null, 'a NUL is refused');
});

t.test('rules match by IP, CIDR, path glob and country; the first by priority decides', async (t) => {
  const countryOf = countryLookup();
  const rules = [
    { id: 'r1', priority: 1, match: 'ip', value: '127.0.0.7', action: 'allow' },
    { id: 'r2', priority: 2, match: 'cidr', value: '10.1.0.0/16', action: 'deny' },
    { id: 'r3', priority: 3, match: 'path', value: '/admin/*', action: 'deny' },
    { id: 'r4', priority: 4, match: 'country', value: 'SE', action: 'deny' },
    { id: 'r5', priority: 5, match: 'path', value: '/public/*', action: 'allow' },
  ] as const;
  const at = (client: string, url: string) => firstMatch(rules as never, { client, path: normalizePath(url) }, countryOf)?.id;
  t.equal(at('127.0.0.7', '/admin/x'), 'r1', 'an earlier allow wins over a later deny');
  t.equal(at('::ffff:127.0.0.7', '/'), 'r1', 'an IPv4-mapped address is the IPv4 client');
  t.equal(at('10.1.200.3', '/public/a'), 'r2', 'CIDR');
  t.equal(at('192.0.2.1', '/%61dmin/settings'), 'r3', 'an encoded path meets the path rule');
  t.equal(at('192.0.2.1', '/public/../admin/x'), 'r3', 'dot segments do not step around a deny');
  t.equal(at('89.160.20.112', '/'), 'r4', "MaxMind's documented Swedish test address is in SE");
  t.equal(at('81.2.69.142', '/public/x'), 'r5', 'a British address passes the country rule');
  t.equal(at('192.0.2.1', '/other'), undefined, 'no rule matches');
  t.equal(at('192.0.2.1', '/%zz'), 'r3', 'an undecodable path meets every deny path rule');
  t.equal(countryOf('127.0.0.1'), undefined, 'loopback has no country');
  t.equal(ruleValueProblem('cidr', '10.0.0.0/33'), 'not a CIDR block (a.b.c.d/n or x::/n)');
  t.equal(ruleValueProblem('country', 'Sweden'), 'an ISO 3166-1 alpha-2 country code (two letters)');
  t.equal(ruleValueProblem('ip', '2001:db8::1'), undefined);
});

t.test('session cookies verify only as signed, for this cluster', async (t) => {
  const signer = new SessionSigner(new Secret('a'.repeat(40)));
  const claims: SessionClaims = { sid: SID, rid: RID, method: 'password', exp: Date.now() + 60_000 };
  const cookie = signer.sign(claims);
  t.same(signer.verify(cookie), claims);
  const [body, mac] = cookie.split('.');
  const forged = Buffer.from(JSON.stringify({ ...claims, rid: OTHER })).toString('base64url');
  t.equal(signer.verify(`${forged}.${mac}`), undefined, 'a changed body fails');
  // One bit of the MAC flipped (editing its base64 text could leave the decoded bytes as they were).
  const flipped = Buffer.from(mac!, 'base64url');
  flipped[0]! ^= 1;
  t.equal(signer.verify(`${body}.${flipped.toString('base64url')}`), undefined, 'a changed signature fails');
  t.equal(new SessionSigner(new Secret('b'.repeat(40))).verify(cookie), undefined, "another cluster's cookie fails");
  t.equal(signer.verify('x'.repeat(5000)), undefined, 'oversized');
  t.equal(signer.verify('garbage'), undefined, 'malformed');
  const notJson = Buffer.from('not json').toString('base64url');
  t.equal(signer.verify(`${notJson}.${createHash('sha256').digest('base64url')}`), undefined);
});

function harness(policy: Partial<AccessPolicy>, opts: { revoked?: string[] } = {}) {
  const signer = new SessionSigner(new Secret('a'.repeat(40)));
  const now = 1_800_000_000_000;
  const failures: string[] = [];
  const signIn: SignInOps = {
    exchange: async (token) => (token === 'good' ? { cookie: signer.sign({ sid: SID, rid: RID, method: 'pin', exp: now + 1000 }), resourceId: RID } : token === 'foreign' ? { cookie: signer.sign({ sid: SID, rid: OTHER, method: 'pin', exp: now + 1000 }), resourceId: OTHER } : undefined),
    linkSession: async () => ({ cookie: signer.sign({ sid: SID, rid: RID, method: 'link', link: LINK, exp: now + 1000 }), maxAgeMs: 1000 }),
    basic: async (_r, user, password) => (user === 'x' && password === 'right' ? 'resource' : null),
    failed: async (_r, client) => void failures.push(client),
    logout: async () => {},
  };
  const full: AccessPolicy = { blockAccess: false, sso: null, password: false, pin: false, email: null, basicAuth: false, links: [], rules: [], secretsChangedAt: 0, ...policy };
  const route: Route = { resourceId: RID, orgId: OTHER, protocol: 'http', hostname: 'app.example.test', port: null, tls: true, enabled: true, targets: [], owners: {}, access: full };
  const guard = new AccessGuard({ signer, revocations: { has: (id) => (opts.revoked ?? []).includes(id) }, countryOf: () => undefined, portalOrigin: 'https://auth.example.test', signIn, clock: { now: () => now } as never, record: () => {} });
  const check = async (url: string, headers: Record<string, string> = {}, client = '192.0.2.9'): Promise<Verdict> => guard.check({ url, method: 'GET', headers } as IncomingMessage, route, 'https', client);
  const cookie = (c: Partial<SessionClaims>) => `other=1; __Host-cluster_access=${signer.sign({ sid: SID, rid: RID, method: 'password', exp: now + 1000, ...c } as SessionClaims)}`;
  return { check, cookie, failures, now };
}

t.test('the guard lets a valid session through and nothing else', async (t) => {
  const h = harness({ password: true, pin: true, sso: { roles: ['admin'], userIds: [], providerId: null }, basicAuth: true });
  t.match(await h.check('/x', { cookie: h.cookie({}) }), { allow: true, url: '/x' }, 'a valid password session');
  t.match(await h.check('/x', { cookie: h.cookie({ rid: OTHER }) }), { allow: false, status: 401 }, "another resource's session is useless here");
  t.match(await h.check('/x', { cookie: h.cookie({ exp: h.now - 1 }) }), { allow: false, status: 401 }, 'an expired session');
  t.match(await h.check('/x', { cookie: h.cookie({ method: 'sso', user: USER }) }), { allow: false, status: 401 }, 'an SSO user outside the allowed roles');
  t.match(await h.check('/x', { cookie: h.cookie({ method: 'sso', user: { ...USER, role: 'admin' } }) }), { allow: true, identity: { email: 'ann@example.com' } });
  t.match(await h.check('/x', { cookie: '__Host-cluster_access=tampered.value' }), { allow: false, status: 401 }, 'a tampered cookie: 401, not 500');
  const browser = await h.check('/deep?q=1', { accept: 'text/html' });
  t.match(browser, { allow: false, status: 302 }, 'a browser goes to the portal');
  t.equal((browser as { headers: Record<string, string> }).headers.location, `https://auth.example.test/resource/${RID}?to=${encodeURIComponent('https://app.example.test/deep?q=1')}`);
  const api = await h.check('/x');
  t.match(api, { allow: false, status: 401, headers: { 'www-authenticate': 'Basic realm="app.example.test", charset="UTF-8"' } }, 'a non-browser gets 401 and the basic-auth challenge');
  t.match(JSON.parse((api as { body: string }).body), { code: 'CLUSTER_ERR_ACCESS_UNAUTHENTICATED' });
  t.match(await h.check('/x', { authorization: `Basic ${Buffer.from('x:right').toString('base64')}` }), { allow: true, consumedAuthorization: true }, 'basic auth');
  t.match(await h.check('/x', { authorization: `Basic ${Buffer.from('x:wrong').toString('base64')}` }), { allow: false, status: 401 });
});

t.test('a revoked session or a removed method is refused at once', async (t) => {
  t.match(await harness({ password: true }, { revoked: [SID] }).check('/', { cookie: harness({}).cookie({}) }), { allow: false, status: 401 });
  const h = harness({ pin: true });
  t.match(await h.check('/', { cookie: h.cookie({ method: 'password' }) }), { allow: false }, 'the password method is gone');
});

t.test('share links: from memory, limited to their path and expiry', async (t) => {
  const token = 'tok-123';
  const tokenHash = createHash('sha256').update(token).digest('hex');
  const h = harness({ links: [{ id: LINK, tokenHash, pathPrefix: '/docs', expiresAt: null, makesSession: true }] });
  t.match(await h.check('/docs/a', { 'x-cluster-access-token': token }), { allow: true, url: '/docs/a' }, 'header token');
  t.match(await h.check(`/docs?__cluster_token=${token}&a=1`), { allow: true, url: '/docs?a=1' }, 'query token; the parameter never reaches the target');
  t.match(await h.check('/private', { 'x-cluster-access-token': token }), { allow: false, status: 401 }, 'outside the path prefix');
  t.match(await h.check('/docs/../private', { 'x-cluster-access-token': token }), { allow: false }, 'dot segments do not leave the prefix');
  t.match(await h.check('/docs', { 'x-cluster-access-token': 'wrong' }), { allow: false, status: 401 });
  t.same(h.failures, ['192.0.2.9', '192.0.2.9', '192.0.2.9'], 'wrong tokens are counted against the client');
  const viaBrowser = await h.check(`/docs?__cluster_token=${token}`, { accept: 'text/html' });
  t.match(viaBrowser, { allow: false, status: 302, headers: { location: '/docs' } }, 'a browser trades the link for a session and loses the token from its URL');
  t.match((viaBrowser as { headers: Record<string, string> }).headers['set-cookie'], /^__Host-cluster_access=.*; HttpOnly; SameSite=Lax; Secure$/);
  const expired = harness({ links: [{ id: LINK, tokenHash, pathPrefix: null, expiresAt: 1, makesSession: false }] });
  t.match(await expired.check('/', { 'x-cluster-access-token': token }), { allow: false }, 'an expired link');
});

t.test('exchange tokens, rules and blockAccess', async (t) => {
  const h = harness({ pin: true, rules: [{ id: 'd', priority: 1, match: 'path', value: '/admin*', action: 'deny' }, { id: 'a', priority: 2, match: 'path', value: '/health', action: 'allow' }] });
  const ok = await h.check('/page?__cluster_exchange=good');
  t.match(ok, { allow: false, status: 302, headers: { location: '/page' } }, 'the exchange sets the cookie and cleans the URL');
  t.match((ok as { headers: Record<string, string> }).headers['set-cookie'], /^__Host-cluster_access=/);
  t.match(await h.check('/page?__cluster_exchange=foreign'), { allow: false, status: 401 }, "a token minted for another resource opens nothing");
  t.match(await h.check('/admin/x', { cookie: h.cookie({ method: 'pin' }) }), { allow: false, status: 403 }, 'a deny rule beats a session');
  t.match(await h.check('/health'), { allow: true }, 'an allow rule skips the methods');
  t.match(await harness({ blockAccess: true }).check('/', { cookie: h.cookie({}) }), { allow: false, status: 403 });
  t.equal(cleanUrl('/a?__cluster_token=1&b=2&__cluster_exchange=3'), '/a?b=2');
});
