// The dashboard in headless chromium against a real three-node cluster behind haproxy: the
// page and its headers, first-time setup through the page, the Cluster page watching a
// failover happen live (the node holding a site is SIGKILLed: its death and the site's new
// node appear without a reload), and a member who sees no server-admin pages while the API
// refuses their writes. Screenshots of each page go to .artifacts/ui/.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import t from 'tap';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { fromBase32, hotp, totpStep } from '../../core/totp.ts';
import { LocalHaproxy } from '../../devenv/haproxy.ts';
import { LocalPebble } from '../../devenv/pebble.ts';
import { setupToken } from '../../devenv/admin-client.ts';
import { call } from '../harness/api.ts';
import { startCluster } from '../harness/cluster.ts';
import { until } from '../harness/until.ts';

const ARTIFACTS = fileURLToPath(new URL('../../.artifacts/ui/', import.meta.url));
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ADMIN = { email: 'ops@example.com', password: 'a long operator password' };

function httpsThrough(ip: string, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host: ip, port: 443, servername, ca, rejectUnauthorized: true }, () => sock.write(`GET / HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`));
    let body = '';
    sock.on('data', (d) => (body += d));
    sock.on('end', () => resolve(body));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

/** The body of a 200; any other answer as its status, location and body, so a failure says what came back. */
function fetchThrough(ip: string, host: string, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: ip, port: 80, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : `HTTP ${res.statusCode} ${res.headers.location ?? ''} ${body}`));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('the dashboard, served by every node behind the load balancer', async (t) => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const target = createServer((_req, res) => res.end('hello from the site'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));
  const targetPort = (target.address() as { port: number }).port;
  const net = `127.${30 + Math.floor(Math.random() * 200)}.${Math.floor(Math.random() * 250)}`;
  // Pebble (Let's Encrypt's test CA) checks DNS-01 challenges against node-1's DNS.
  const pebble = await LocalPebble.start({ dir: mkdtempSync(join(tmpdir(), 'pebble-')), dnsServer: `${net}.1:53` });
  t.teardown(() => pebble.stop());
  const c = await startCluster(t, 3, { admin: { trustProxy: ['127.0.0.1'], secureCookies: false }, acme: { directoryUrl: pebble.directoryUrl, checkEvery: '1s' } },
    (i) => ({ ingress: { http: `${net}.${i + 1}:80`, https: `${net}.${i + 1}:443`, publicAddresses: [`${net}.${i + 1}`] }, dns: { bind: `${net}.${i + 1}:53` } }), { NODE_EXTRA_CA_CERTS: pebble.caFile });
  const haproxy = await LocalHaproxy.start({ dir: mkdtempSync(join(tmpdir(), 'haproxy-')), backends: c.nodes.map((n) => ({ name: String(n.config.nodeId), address: n.adminUrl.replace('http://', '') })) });
  t.teardown(() => haproxy.stop());
  const lb = haproxy.url;

  const page = await fetch(`${lb}/`);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'; style-src 'self'/, 'a strict Content Security Policy');
  t.equal(page.headers.get('cache-control'), 'no-cache', 'index.html is never cached');
  const script = /src="(\/assets\/[^"]+\.js)"/.exec(await page.text())?.[1];
  const asset = await fetch(`${lb}${script}`);
  t.match([asset.status, asset.headers.get('cache-control')], [200, /max-age=31536000.*immutable/], 'hashed assets are cached for a year');

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  t.teardown(() => browser.close());
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const ui = await ctx.newPage();
  const cspViolations: string[] = [];
  ui.on('console', (m) => /Content Security Policy/.test(m.text()) && cspViolations.push(m.text()));

  // First-time setup, through the page.
  await ui.goto(lb);
  await ui.waitForSelector('#setup-form');
  await ui.screenshot({ path: join(ARTIFACTS, 'setup.png') });
  await ui.fill('#setup-form input[name=token]', await setupToken(c.nodes));
  await ui.fill('#setup-form input[name=email]', ADMIN.email);
  await ui.fill('#setup-form input[name=password]', ADMIN.password);
  await ui.click('#setup-form button');
  await ui.waitForSelector('#nodes tbody tr[data-node="node-3"]');
  t.equal(await ui.textContent('#account'), ADMIN.email, 'setup creates the administrator and signs them in');
  t.equal(await ui.locator('#nodes tbody tr').count(), 3, 'the Cluster page lists the three nodes');
  // An API session of the same administrator, for what the pages do not do (creating users).
  const cookie = (await call(lb, 'POST', '/api/v1/auth/login', { body: ADMIN })).cookie!;

  // An org, a verified domain, a site and an HTTP resource with a target, all through the pages.
  await ui.click('a[href="#/orgs"]');
  await ui.fill('#org-form input[name=name]', 'Dashboard');
  await ui.fill('#org-form input[name=slug]', 'ui');
  await ui.click('#org-form button');
  await ui.click('#orgs tr[data-org="ui"] a');
  await ui.waitForSelector('#site-form');
  const orgId = /#\/orgs\/([0-9a-f-]{36})/.exec(ui.url())![1]!;
  await ui.click(`a[href="#/orgs/${orgId}/domains"]`);
  await ui.fill('#domain-form input[name=name]', 'ui.test');
  await ui.click('#domain-form button');
  await ui.waitForSelector('article[data-domain="ui.test"] .txt-value');
  t.match(await ui.textContent('article[data-domain="ui.test"]'), /_cluster-challenge\.ui\.test/, 'the domain page says which TXT record proves control');
  await ui.click('article[data-domain="ui.test"] button.force');
  await until(async () => (await ui.textContent('article[data-domain="ui.test"] .status')) === 'verified', 10_000, 'the domain to be verified');
  await until(async () => (await ui.textContent('article[data-domain="ui.test"] .delegation').catch(() => ''))?.includes(`ns-node-1.ui.test. A ${net}.1`), 15_000, 'the delegation with glue on the page');
  t.match(await ui.textContent('article[data-domain="ui.test"] .delegation'), /ui\.test\. NS ns-node-1\.ui\.test\./, 'the domain page gives the NS records with glue, from the zone every node serves');
  await ui.screenshot({ path: join(ARTIFACTS, 'domains.png'), fullPage: true });
  await ui.click(`a[href="#/orgs/${orgId}/sites"]`);
  await ui.fill('#site-form input[name=name]', 'branch-office');
  await ui.click('#site-form button');
  const command = (await (await ui.waitForSelector('#connector-command')).textContent())!;
  t.match(command, new RegExp(`^cluster-connector --endpoint ${lb.replace(/[.]/g, '\\.')} --id [0-9a-f-]{36} --secret \\S+$`), 'creating a site shows the connector command, secret included, once');
  await ui.screenshot({ path: join(ARTIFACTS, 'sites-created.png'), fullPage: true });
  // Started as the page said: its id and secret, this load balancer and (for failover) the nodes.
  const [, siteId, secret] = /--id (\S+) --secret (\S+)/.exec(command)!;
  const site = { id: siteId! };
  const connector = new Connector({ endpoints: [c.nodes[1]!.adminUrl, lb, c.nodes[2]!.adminUrl, c.nodes[0]!.adminUrl], siteId: siteId!, secret: secret!, logger: createLogger({ level: 'silent' }) });
  t.teardown(() => connector.stop());
  connector.start();
  await until(async () => (await ui.textContent('#sites tr[data-site="branch-office"] .online')) === 'online', 20_000, 'the site to show online');
  t.pass('the site goes online on the page');
  await ui.click(`a[href="#/orgs/${orgId}/resources"]`);
  await ui.fill('#resource-form input[name=name]', 'app');
  await ui.fill('#resource-form input[name=hostname]', 'app.ui.test');
  await ui.uncheck('#resource-form input[name=tls]');
  await ui.click('#resource-form button');
  await ui.waitForSelector('article[data-resource="app"] .target-form');
  await ui.fill('article[data-resource="app"] input[name=host]', '127.0.0.1');
  await ui.fill('article[data-resource="app"] input[name=port]', String(targetPort));
  await ui.click('article[data-resource="app"] .target-form button');
  await until(async () => (await ui.textContent('article[data-resource="app"] .healthy')) === '1/1', 20_000, 'the target to show healthy');
  t.match(await ui.textContent('article[data-resource="app"] .serving'), /node-2/, 'the resource page shows where it is served from');
  await ui.screenshot({ path: join(ARTIFACTS, 'resources.png'), fullPage: true });
  for (let i = 0; i < 3; i++) t.equal(await fetchThrough(`${net}.${i + 1}`, 'app.ui.test'), 'hello from the site', `the resource answers through node-${i + 1}`);
  // An HTTPS resource: its certificate becomes valid on the page, issued by Pebble.
  await ui.fill('#resource-form input[name=name]', 'secure');
  await ui.fill('#resource-form input[name=hostname]', 'secure.ui.test');
  await ui.click('#resource-form button');
  await ui.waitForSelector('article[data-resource="secure"] .target-form');
  await ui.fill('article[data-resource="secure"] input[name=host]', '127.0.0.1');
  await ui.fill('article[data-resource="secure"] input[name=port]', String(targetPort));
  await ui.click('article[data-resource="secure"] .target-form button');
  await until(async () => (await ui.textContent('article[data-resource="secure"] .certificate').catch(() => null)) === 'valid', 60_000, 'the certificate to become valid on the page');
  t.pass('the certificate of an HTTPS resource becomes valid on the page');
  const root = await pebble.issuedRoot();
  for (let i = 0; i < 3; i++) t.match(await httpsThrough(`${net}.${i + 1}`, 'secure.ui.test', root), /hello from the site/, `the HTTPS resource answers through node-${i + 1}, its chain verified`);
  // Access control from the page: a password, then a share link whose URL is shown once.
  await ui.click('article[data-resource="app"] .access-details summary');
  await ui.fill('article[data-resource="app"] .secret-form input[name=secret]', 'a resource password');
  await ui.click('article[data-resource="app"] .secret-form button');
  await until(async () => (await fetchThrough(`${net}.1`, 'app.ui.test')).includes('CLUSTER_ERR_ACCESS_UNAUTHENTICATED'), 15_000, 'the password to protect the resource');
  t.pass('a password set on the page protects the resource on every node');
  await ui.fill('article[data-resource="app"] .link-form input[name=title]', 'for a colleague');
  await ui.click('article[data-resource="app"] .link-form button');
  const shareUrl = new URL((await (await ui.waitForSelector('article[data-resource="app"] .share-url')).textContent())!.trim());
  await until(async () => (await fetchThrough(`${net}.2`, 'app.ui.test', `/?${shareUrl.searchParams}`)) === 'hello from the site', 15_000, 'the share link to open the resource');
  t.pass('the share link made on the page opens it');
  await ui.screenshot({ path: join(ARTIFACTS, 'resource-access.png'), fullPage: true });
  // An API key made on the page, shown once, holding only what it was given.
  await ui.click(`a[href="#/orgs/${orgId}/members"]`);
  await ui.fill('#key-form input[name=name]', 'ci reader');
  await ui.check('#key-form input[name="sites:read"]');
  await ui.click('#key-form button');
  const key = (await (await ui.waitForSelector('#api-key')).textContent())!.trim();
  t.equal((await call(lb, 'GET', `/api/v1/orgs/${orgId}/sites`, { bearer: key })).status, 200, 'the key made on the page reads sites');
  t.equal((await call(lb, 'POST', `/api/v1/orgs/${orgId}/sites`, { bearer: key, body: { name: 'nope' } })).status, 403, 'and may not write them');
  await ui.screenshot({ path: join(ARTIFACTS, 'members-keys.png'), fullPage: true });
  await ui.click(`a[href="#/orgs/${orgId}/logs"]`);
  await until(async () => (await ui.textContent('#audit'))?.includes('site.created'), 10_000, 'the audit log on the page');
  t.pass('the Logs tab shows the audit log');
  await ui.screenshot({ path: join(ARTIFACTS, 'logs.png'), fullPage: true });
  // Two-factor sign-in turned on from the account page.
  await ui.click('#account');
  await ui.click('#enrol');
  const totpSecret = (await (await ui.waitForSelector('#totp-secret')).textContent())!;
  await ui.fill('#confirm-form input[name=code]', hotp(fromBase32(totpSecret), totpStep(Date.now())));
  await ui.click('#confirm-form button');
  await ui.waitForSelector('#recovery-codes li');
  t.equal(await ui.locator('#recovery-codes li').count(), 10, 'the account page turns TOTP on and shows ten recovery codes');
  await until(async () => (await ui.textContent('#two-factor-state')) === 'On.', 5000, 'the account page to say TOTP is on');
  await ui.screenshot({ path: join(ARTIFACTS, 'account.png'), fullPage: true });
  await ui.click('a[href="#/cluster"]');
  const siteNode = () => ui.textContent(`#placement tr[data-kind="site"][data-id="${site.id}"] .node`).catch(() => null);
  await until(async () => (await siteNode()) === 'node-2', 20_000, 'the page to show the site on node-2');
  t.pass('the Cluster page shows the site on node-2, pushed without a reload');
  await ui.screenshot({ path: join(ARTIFACTS, 'cluster.png'), fullPage: true });

  // node-2 dies: the page shows it and where the site went, by itself.
  const reloads: string[] = [];
  ui.on('framenavigated', (f) => f === ui.mainFrame() && reloads.push(f.url()));
  const killedAt = Date.now();
  c.nodes[1]!.proc.signal('SIGKILL');
  // Told live, or (when the feed's own connection went through node-2) found on reconnecting.
  await until(async () => /node-2 (died|is no longer live)/.test((await ui.textContent('#events')) ?? ''), 15_000, 'the death of node-2 on the page');
  const deathMs = Date.now() - killedAt;
  await until(async () => ['node-1', 'node-3'].includes((await siteNode()) ?? ''), 15_000, "the site's new node on the page");
  const movedMs = Date.now() - killedAt;
  t.pass(`the page showed node-2's death after ${deathMs} ms and the site on ${await siteNode()} after ${movedMs} ms`);
  t.same(reloads, [], 'without a reload');
  await ui.screenshot({ path: join(ARTIFACTS, 'cluster-failover.png'), fullPage: true });
  t.same(cspViolations, [], 'no Content Security Policy violation');

  // A member sees their orgs, no Cluster page and no write control; the API refuses their writes.
  const org = { id: orgId };
  const member = { email: 'member@example.com', password: 'a long member password' };
  const memberId = (await call(lb, 'POST', '/api/v1/users', { cookie, body: member })).body.id;
  await call(lb, 'PUT', `/api/v1/orgs/${org.id}/members/${memberId}`, { cookie, body: { role: 'member' } });
  const memberPage = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
  await memberPage.goto(lb);
  await memberPage.fill('#login-form input[name=email]', member.email);
  await memberPage.fill('#login-form input[name=password]', member.password);
  await memberPage.click('#login-form button');
  await memberPage.waitForSelector('#orgs');
  t.equal(await memberPage.locator('a[href="#/cluster"]').count(), 0, 'a member has no Cluster page');
  t.match(await memberPage.textContent('#orgs'), /Dashboard/, 'and sees their org');
  await memberPage.click('#orgs tr[data-org="ui"] a');
  await memberPage.waitForSelector('#sites tr[data-site="branch-office"]');
  t.same([await memberPage.locator('#site-form').count(), await memberPage.locator('button.rotate').count()], [0, 0], 'a member sees the sites but no write controls');
  await memberPage.screenshot({ path: join(ARTIFACTS, 'member-orgs-phone.png'), fullPage: true });
  const refused = await memberPage.evaluate(async () => (await fetch('/api/v1/orgs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ slug: 'nope', name: 'Nope' }) })).status);
  t.equal(refused, 403, 'the API refuses a write from their session');
  await memberPage.click('#sign-out');
  await memberPage.waitForSelector('#login-form');
  t.pass('sign-out returns to the sign-in page');
  t.comment(`screenshots in ${ARTIFACTS}`);
});
