// Signing in through an OpenID Connect provider, on a real two-node cluster behind haproxy,
// with a real provider (oidc-provider over HTTPS with its own CA) and headless chromium:
// resource -> portal -> provider login -> back to the resource, the user created and given the
// org role its claims map to; the admin API's sign-in surviving the death of the node that
// started it; TOTP on top; and what must fail: a provider that is down (nothing created), a
// forged state, a replayed callback, a role the resource does not allow, key rotation.
import { createServer, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import t from 'tap';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { fromBase32, hotp, totpStep } from '../../core/totp.ts';
import { freePort } from '../../devenv/ports.ts';
import { addVerifiedDomain, call, servedBy, startApiCluster } from '../harness/api.ts';
import { startOidcProvider } from '../harness/oidc.ts';
import { until } from '../harness/until.ts';

const HOST = 'app.id.test';
const PORTAL = 'auth.id.test';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function get(ip: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: ip, port: 443, path, servername: PORTAL, headers: { host: PORTAL, ...headers }, rejectUnauthorized: false, agent: false }, (res: IncomingMessage) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Signs in at the provider's own pages (login, then consent) if it asks. */
async function atProvider(page: Page, issuer: string, user: string) {
  for (let i = 0; i < 4 && page.url().startsWith(issuer); i++) {
    if (await page.locator('input[name=login]').count()) {
      await page.fill('input[name=login]', user);
      await page.fill('input[name=password]', 'any password');
    }
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }).catch(() => {}), page.click('button[type=submit]')]);
  }
}

t.test('OpenID Connect sign-in for resources and the admin API', async (t) => {
  const target = createServer((req, res) => res.end(JSON.stringify({ url: req.url, user: req.headers['remote-user'] ?? null, role: req.headers['remote-role'] ?? null, name: req.headers['remote-name'] ?? null })));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));

  const lbPort = await freePort();
  const lb = `http://127.0.0.1:${lbPort}`;
  const idp = await startOidcProvider(t, [`${lb}/api/v1/auth/oidc/callback`, `https://${PORTAL}/oidc/callback`]);
  const net = `127.${30 + Math.floor(Math.random() * 200)}.${Math.floor(Math.random() * 250)}`;
  const ip = (i: number) => `${net}.${i + 1}`;
  const c = await startApiCluster(t, 2, { admin: { trustProxy: ['127.0.0.1'], publicUrl: lb, secureCookies: false }, access: { portalHostname: PORTAL } },
    (i) => ({ ingress: { https: `${ip(i)}:443`, http: `${ip(i)}:80`, publicAddresses: [ip(i)] } }), { NODE_EXTRA_CA_CERTS: idp.caFile }, lbPort);
  const cookie = c.adminCookie;
  const org = (await call(lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'idp', name: 'Idp' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  await addVerifiedDomain(c, base, 'id.test');
  const site = (await call(lb, 'POST', `${base}/sites`, { cookie, body: { name: 'site' } })).body;
  const resource = (await call(lb, 'POST', `${base}/resources`, { cookie, body: { name: 'app', protocol: 'http', hostname: HOST } })).body;
  await call(lb, 'POST', `${base}/resources/${resource.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port: (target.address() as { port: number }).port, scheme: 'http' } });
  const connector = new Connector({ endpoints: [c.nodes[1]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger: createLogger({ level: 'silent' }) });
  t.teardown(() => connector.stop());
  connector.start();
  await servedBy(c, org.id, resource.id, 'node-2', 20_000);
  const db = new pg.Client({ connectionString: c.postgresUrl });
  await db.connect();
  t.teardown(() => db.end());
  const count = async (table: string) => Number((await db.query(`SELECT count(*) FROM ${table}`)).rows[0].count);

  // A provider that cannot be reached is not saved.
  const downPort = await freePort();
  const down = await call(lb, 'POST', `${base}/identity-providers`, { cookie, body: { name: 'Down', issuerUrl: `https://127.0.0.1:${downPort}`, clientId: 'x', clientSecret: 'y' } });
  t.match([down.status, down.body.code], [503, 'CLUSTER_ERR_OIDC_PROVIDER_UNAVAILABLE'], 'a provider that is down: coded 503');
  const impostor = await call(lb, 'POST', `${base}/identity-providers`, { cookie, body: { name: 'Impostor', issuerUrl: idp.issuer.replace('127.0.0.1', 'localhost'), clientId: 'x', clientSecret: 'y' } });
  t.match([impostor.status, impostor.body.code], [401, 'CLUSTER_ERR_OIDC_REJECTED'], `an issuer URL whose discovery names another issuer is refused: ${impostor.body.message}`);
  t.equal(await count('identity_providers'), 0, 'and nothing was created');
  const created = await call(lb, 'POST', `${base}/identity-providers`, {
    cookie,
    body: { name: 'Test IdP', issuerUrl: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, scopes: 'openid email profile roles', roleClaim: 'roles', roleMap: { 'cluster-admins': 'admin', staff: 'member' }, autoProvision: true },
  });
  t.equal(created.status, 201, 'the org admin adds the provider');
  t.notOk(JSON.stringify(created.body).includes(idp.clientSecret), 'its secret is never returned');
  t.notOk(((await db.query('SELECT client_secret_sealed FROM identity_providers')).rows[0].client_secret_sealed as Buffer).includes(Buffer.from(idp.clientSecret)), 'and sealed at rest');
  const providerId = created.body.id as string;
  await call(lb, 'PUT', `${base}/resources/${resource.id}/access`, { cookie, body: { sso: { enabled: true } } });
  await until(async () => (await get(ip(0), `/resource/${resource.id}?to=${encodeURIComponent(`https://${HOST}/`)}`)).body.includes(`provider-${providerId}`), 20_000, 'the portal to offer the provider');

  const first = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...ARGS, `--host-resolver-rules=MAP ${HOST} ${ip(0)}, MAP ${PORTAL} ${ip(0)}`] });
  t.teardown(() => first.close());
  let browser: Browser = first;
  const callbacks: string[] = [];
  const fresh = async () => {
    const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
    page.on('request', (r) => r.url().includes('/oidc/callback') && callbacks.push(r.url()));
    return page;
  };

  t.test('resource -> portal -> provider -> resource; the user is created with the mapped role', async (t) => {
    const page = await fresh();
    await page.goto(`https://${HOST}/hello`);
    await page.click(`#provider-${providerId}`);
    t.ok(page.url().startsWith(idp.issuer), 'the portal sends the browser to the provider');
    await atProvider(page, idp.issuer, 'alice');
    await page.waitForURL((u) => u.host === HOST && !u.searchParams.has('__cluster_exchange'));
    t.match(JSON.parse((await page.textContent('body')) ?? '{}'), { url: '/hello', user: 'alice@idp.test', role: 'admin', name: 'Alice Idp' }, 'back at the resource as Alice, an org admin by her roles claim');
    const users = (await call(lb, 'GET', '/api/v1/users', { cookie })).body.items as Array<{ email: string }>;
    t.ok(users.some((u) => u.email === 'alice@idp.test'), 'Alice was provisioned');
    t.equal((await db.query(`SELECT role FROM org_members m JOIN users u ON u.id = m.user_id WHERE u.email = 'alice@idp.test'`)).rows[0]?.role, 'admin');
    const replay = await get(ip(1), new URL(callbacks.at(-1)!).pathname + new URL(callbacks.at(-1)!).search);
    t.match([replay.status, replay.body], [400, /CLUSTER_ERR_OIDC_BAD_STATE/], 'the same callback replayed (through another node) is refused');
    const forged = await get(ip(1), '/oidc/callback?code=abc&state=forged-state');
    t.match([forged.status, forged.body], [400, /CLUSTER_ERR_OIDC_BAD_STATE/], 'a forged state is refused');
    t.ok(Number((await db.query(`SELECT count(*) FROM audit_log WHERE action = 'oidc.refused'`)).rows[0].count) >= 2, 'refusals are audited');
  });

  t.test("a code the provider issued to another client (another audience) is refused", async (t) => {
    // Our own start (its state, PKCE and nonce), with the request rewritten for client `other`.
    const start = await fetch(`${lb}/api/v1/auth/oidc/${providerId}/start?redirect=/api/v1/auth/me`, { redirect: 'manual' });
    const url = new URL(start.headers.get('location')!);
    url.searchParams.set('client_id', 'other');
    const page = await fresh();
    await page.goto(url.href);
    await atProvider(page, idp.issuer, 'alice');
    await page.waitForURL((u) => u.pathname === '/api/v1/auth/oidc/callback');
    t.match(JSON.parse((await page.textContent('body')) ?? '{}'), { code: 'CLUSTER_ERR_OIDC_REJECTED' }, 'the token exchange fails validation: coded error');
    t.notOk((await page.context().cookies(lb)).some((k) => k.name === 'cluster_session'), 'and no session');
  });

  t.test("an org's provider cannot take over an existing account by naming its address", async (t) => {
    const page = await fresh();
    await page.goto(`${lb}/api/v1/auth/oidc/${providerId}/start?redirect=/api/v1/auth/me`);
    await atProvider(page, idp.issuer, 'mallory');
    await page.waitForURL((u) => u.pathname === '/api/v1/auth/oidc/callback');
    t.match(JSON.parse((await page.textContent('body')) ?? '{}'), { code: 'CLUSTER_ERR_OIDC_NOT_ALLOWED' }, "a token naming the server admin's e-mail, from an org's provider, is refused");
    t.notOk((await page.context().cookies(lb)).some((k) => k.name === 'cluster_session'), 'no session');
    t.equal(Number((await db.query(`SELECT count(*) FROM user_identities i JOIN users u ON u.id = i.user_id WHERE u.email = 'admin@example.com'`)).rows[0].count), 0, 'and the account was not linked');
  });

  t.test('an expired ID token is refused', async (t) => {
    // The provider's token endpoint runs two hours behind: its one-hour ID tokens are born expired.
    idp.skewTokenClock(2 * 3600_000);
    const page = await fresh();
    await page.goto(`${lb}/api/v1/auth/oidc/${providerId}/start?redirect=/api/v1/auth/me`);
    await atProvider(page, idp.issuer, 'alice');
    await page.waitForURL((u) => u.pathname === '/api/v1/auth/oidc/callback');
    const body = JSON.parse((await page.textContent('body')) ?? '{}');
    t.match(body, { code: 'CLUSTER_ERR_OIDC_REJECTED', message: /"exp"/ }, `an ID token that expired an hour ago: ${body.message}`);
    t.notOk((await page.context().cookies(lb)).some((k) => k.name === 'cluster_session'), 'and no session');
    idp.skewTokenClock(0);
  });

  t.test('oversized claims are refused with nothing created; a resource may go straight to its provider', async (t) => {
    const users = await count('users');
    const page = await fresh();
    await page.goto(`https://${HOST}/big`);
    await page.click(`#provider-${providerId}`);
    await atProvider(page, idp.issuer, 'bloated');
    await page.waitForURL((u) => u.host === PORTAL && u.pathname === '/oidc/callback');
    t.match(await page.textContent('[role=alert]'), /CLUSTER_ERR_OIDC_BAD_CLAIMS/, 'an ID token with 2,000 groups is refused');
    t.equal(await count('users'), users, 'and no user was created');
    await call(lb, 'PUT', `${base}/resources/${resource.id}/access`, { cookie, body: { sso: { enabled: true, providerId } } });
    t.match((await until(async () => {
      const r = (await call(lb, 'GET', `${base}/resources/${resource.id}`, { cookie })).body;
      return r?.status?.access?.ssoProviderId === providerId ? r : undefined;
    }, 10_000, 'the policy to be published')).status.access, { methods: ['sso'], ssoProviderId: providerId }, "the resource's status shows what the edge enforces");
    const straight = await fresh();
    await until(async () => (await straight.goto(`https://${HOST}/straight`), straight.url().startsWith(idp.issuer)), 20_000, 'the resource to send browsers straight to its provider');
    t.pass('with sso.providerId set, the portal sends the browser straight to the provider');
    await atProvider(straight, idp.issuer, 'alice');
    await straight.waitForURL((u) => u.host === HOST && !u.searchParams.has('__cluster_exchange'));
    t.match(JSON.parse((await straight.textContent('body')) ?? '{}'), { url: '/straight', user: 'alice@idp.test' });
  });

  t.test('a role the resource does not allow is refused; key rotation does not break sign-in', async (t) => {
    await call(lb, 'PUT', `${base}/resources/${resource.id}/access`, { cookie, body: { sso: { enabled: true, roles: ['admin'] } } });
    await idp.rotateKeys();
    await until(async () => (await call(lb, 'GET', `${base}/resources/${resource.id}`, { cookie })).body?.status?.access?.ssoRoles?.[0] === 'admin', 10_000, 'the edge to enforce admins only');
    await sleepMs(200); // the snapshot is published; its announcement reaches every node's mirror right after
    const page = await fresh();
    await page.goto(`https://${HOST}/bob`);
    await page.click(`#provider-${providerId}`);
    await atProvider(page, idp.issuer, 'bob');
    await page.waitForURL((u) => u.host === PORTAL && u.pathname === '/oidc/callback');
    t.match(await page.textContent('[role=alert]'), /may not use this resource/, 'Bob (a member) may not use an admins-only resource');
    t.equal((await db.query(`SELECT role FROM org_members m JOIN users u ON u.id = m.user_id WHERE u.email = 'bob@idp.test'`)).rows[0]?.role, 'member', 'signed in with the rotated key, and made a member by his claim');
  });

  t.test("the admin API's sign-in survives the death of the node that started it, and asks for TOTP", async (t) => {
    // Alice turns TOTP on (through a password-less OIDC session first).
    const page = await fresh();
    await page.goto(`${lb}/api/v1/auth/oidc/${providerId}/start?redirect=/api/v1/auth/me`);
    await atProvider(page, idp.issuer, 'alice');
    await page.waitForURL(`${lb}/api/v1/auth/me`);
    t.match(JSON.parse((await page.textContent('body')) ?? '{}'), { type: 'user', email: 'alice@idp.test' }, 'OIDC sign-in to the admin API');
    const session = (await page.context().cookies(lb)).find((k) => k.name === 'cluster_session')!;
    const aliceCookie = `cluster_session=${session.value}`;
    const key = fromBase32((await call(lb, 'POST', '/api/v1/auth/totp', { cookie: aliceCookie, body: {} })).body.secret);
    const confirmed = await call(lb, 'POST', '/api/v1/auth/totp/confirm', { cookie: aliceCookie, body: { code: hotp(key, totpStep(Date.now())) } });
    t.equal(confirmed.status, 200, 'Alice turned TOTP on');

    // Started on node-1, which dies; the provider sends her back through the load balancer.
    const second = await fresh();
    await second.goto(`${c.nodes[0]!.adminUrl}/api/v1/auth/oidc/${providerId}/start?redirect=/api/v1/auth/me`);
    t.ok(second.url().startsWith(idp.issuer), 'node-1 sent the browser to the provider');
    c.nodes[0]!.proc.signal('SIGKILL');
    await c.nodes[0]!.proc.exited;
    await atProvider(second, idp.issuer, 'alice');
    await second.waitForURL((u) => u.pathname === '/api/v1/auth/me');
    const hash = new URL(second.url()).hash;
    t.match(hash, /^#second-factor=totp&ticket=/, 'node-1 is dead, yet the callback on node-2 completes the first factor and asks for the code');
    const ticket = decodeURIComponent(hash.split('ticket=')[1]!);
    const done = await call(lb, 'POST', '/api/v1/auth/login/second-factor', { body: { ticket, code: hotp(key, totpStep(Date.now()) + 1) } });
    t.equal(done.status, 200, 'the code completes the sign-in');

    // At the portal, the same: the provider, then the code.
    const other = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...ARGS, `--host-resolver-rules=MAP ${HOST} ${ip(1)}, MAP ${PORTAL} ${ip(1)}`] });
    t.teardown(() => other.close());
    browser = other;
    const portal = await fresh();
    await portal.goto(`https://${HOST}/with-totp`);
    await portal.click(`#provider-${providerId}`);
    await atProvider(portal, idp.issuer, 'alice');
    await portal.waitForSelector('#totp-form');
    // TOTP codes of the current steps are spent by the sign-ins above (a code works once): a recovery code.
    await portal.fill('#code', confirmed.body.recoveryCodes[0]);
    await portal.click('#totp-form button');
    await portal.waitForURL((u) => u.host === HOST && !u.searchParams.has('__cluster_exchange'));
    t.match(JSON.parse((await portal.textContent('body')) ?? '{}'), { url: '/with-totp', user: 'alice@idp.test' }, 'resource -> portal -> provider -> second factor -> resource');

    // A provider that is down: a node that must discover it (node-1, started again) says so
    // with a coded page, and nothing is created.
    await idp.stop();
    await c.start('node-1').then((n) => n.waitReady(60_000));
    const before = [await count('users'), await count('user_identities'), await count('resource_sessions')];
    const node1 = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...ARGS, `--host-resolver-rules=MAP ${HOST} ${ip(0)}, MAP ${PORTAL} ${ip(0)}`] });
    t.teardown(() => node1.close());
    browser = node1;
    const downPage = await fresh();
    await until(async () => (await downPage.goto(`https://${HOST}/down`), (await downPage.locator(`#provider-${providerId}`).count()) > 0), 30_000, 'node-1 to serve the portal');
    await downPage.click(`#provider-${providerId}`);
    t.match(await downPage.textContent('main'), /CLUSTER_ERR_OIDC_PROVIDER_UNAVAILABLE/, 'the portal says the provider cannot be reached');
    t.same([await count('users'), await count('user_identities'), await count('resource_sessions')], before, 'and nothing was created');
    await idp.start();
  });
});

const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));
