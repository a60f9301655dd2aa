// The admin API's rules, in-process against real PostgreSQL and Valkey (no cluster of
// processes needed): validation names the field and changes nothing, conflicts are 409,
// targets stay inside their org, API keys stay inside their org and actions.
import pg from 'pg';
import t from 'tap';
import { adminApp } from '../harness/admin-app.ts';

async function counts(url: string): Promise<Record<string, number>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query(`SELECT (SELECT count(*) FROM orgs)::int AS orgs, (SELECT count(*) FROM sites)::int AS sites, (SELECT count(*) FROM resources)::int AS resources,
      (SELECT count(*) FROM domains)::int AS domains, (SELECT count(*) FROM targets)::int AS targets, (SELECT count(*) FROM users)::int AS users, (SELECT count(*) FROM audit_log)::int AS audit`);
    return rows[0];
  } finally {
    await c.end();
  }
}

t.test('admin API rules', async (t) => {
  const { call, cookie, postgresUrl } = await adminApp(t);
  const org = (await call('POST', '/api/v1/orgs', { cookie, body: { slug: 'acme', name: 'Acme' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  t.equal((await call('POST', `${base}/domains`, { cookie, body: { name: 'example.com' } })).status, 201);
  const site = (await call('POST', `${base}/sites`, { cookie, body: { name: 'hq' } })).body;

  await t.test('bad input gets a coded 4xx naming the field, and changes nothing', async (t) => {
    const before = await counts(postgresUrl);
    const cases: Array<[string, string, { body?: unknown; raw?: string; contentType?: string }, number, RegExp | string]> = [
      ['POST', `${base}/sites`, { raw: '{"name": "broken' }, 400, 'CLUSTER_ERR_API_BAD_REQUEST'],
      ['POST', `${base}/sites`, { body: { name: 'x', color: 'red' } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/sites`, { body: { name: 42 } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/sites`, { body: {} }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/sites`, { body: { name: "x'; DROP TABLE sites; --" } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/sites`, { body: { name: '<script>alert(1)</script>' } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/resources`, { body: { name: 'app', protocol: 'http', hostname: "app.example.com' OR 1=1 --" } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/resources`, { body: { name: 'app', protocol: 'tcp', proxyPort: '22' } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/resources`, { body: { name: 'app', protocol: 'tcp', proxyPort: 70000 } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      // A node's own ports (HTTPS, DNS, admin) lie outside the resource port range: no tenant can take one.
      ['POST', `${base}/resources`, { body: { name: 'app', protocol: 'tcp', proxyPort: 443 } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/resources`, { body: { name: 'app', protocol: 'udp', proxyPort: 53 } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/resources`, { body: { name: 'app', protocol: 'tcp', proxyPort: 8080 } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/resources`, { body: { name: 'app', protocol: 'http', hostname: 'app.other.org' } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `/api/v1/orgs/not-a-uuid/sites`, { body: { name: 'x' } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/sites`, { raw: 'name=x', contentType: 'application/x-www-form-urlencoded' }, 415, 'CLUSTER_ERR_API_BAD_REQUEST'],
      ['GET', `${base}/sites?limit=abc`, {}, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/sites`, { body: { name: 'wg', transport: 'carrier-pigeon' } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
    ];
    for (const [method, path, opts, status, code] of cases) {
      const r = await call(method, path, { cookie, ...opts });
      t.equal(r.status, status, `${method} ${path} ${JSON.stringify(opts).slice(0, 60)} -> ${status}`);
      t.match(r.body?.code, code);
    }
    const big = await call('POST', `${base}/sites`, { cookie, raw: JSON.stringify({ name: 'a'.repeat(200_000) }) });
    t.match(big, { status: 413, body: { code: 'CLUSTER_ERR_API_BAD_REQUEST', reason: 'FST_ERR_CTP_BODY_TOO_LARGE' } }, 'oversize body');
    const unknown = await call('POST', `${base}/sites`, { cookie, body: { name: 'x', color: 'red' } });
    t.match(unknown.body, { field: 'body.color', problem: 'is not a known field' });
    const wrongType = await call('POST', `${base}/sites`, { cookie, body: { name: 42 } });
    t.match(wrongType.body, { field: 'body.name' });
    const wg = await call('POST', `${base}/sites`, { cookie, body: { name: 'wg', transport: 'carrier-pigeon' } });
    t.match(wg.body, { field: 'body.transport' }, 'an unknown transport is named as the bad field');
    t.same(await counts(postgresUrl), before, 'no row changed, not even the audit log');
  });

  await t.test('uniqueness conflicts are 409 naming the field', async (t) => {
    t.equal((await call('POST', `${base}/resources`, { cookie, body: { name: 'app', protocol: 'http', hostname: 'app.example.com' } })).status, 201);
    t.match(await call('POST', `${base}/resources`, { cookie, body: { name: 'app two', protocol: 'http', hostname: 'app.example.com' } }), { status: 409, body: { code: 'CLUSTER_ERR_API_CONFLICT', field: 'hostname' } });
    t.equal((await call('POST', `${base}/resources`, { cookie, body: { name: 'ssh', protocol: 'tcp', proxyPort: 22222 } })).status, 201);
    t.match(await call('POST', `${base}/resources`, { cookie, body: { name: 'ssh2', protocol: 'tcp', proxyPort: 22222 } }), { status: 409, body: { field: 'proxyPort' } });
    t.match(await call('POST', `${base}/sites`, { cookie, body: { name: 'hq' } }), { status: 409, body: { field: 'name' } });
    t.match(await call('DELETE', `${base}/domains/${(await call('GET', `${base}/domains`, { cookie })).body.items[0].id}`, { cookie }), { status: 409, body: { field: 'references' } }, 'a domain in use cannot be deleted');
  });

  await t.test('targets only use the org\'s own sites; site secrets are shown once and stored hashed', async (t) => {
    const res = (await call('POST', `${base}/resources`, { cookie, body: { name: 'web', protocol: 'http', hostname: 'web.example.com' } })).body;
    const other = (await call('POST', '/api/v1/orgs', { cookie, body: { slug: 'other', name: 'Other' } })).body;
    const foreign = (await call('POST', `/api/v1/orgs/${other.id}/sites`, { cookie, body: { name: 'theirs' } })).body;
    t.match(await call('POST', `${base}/resources/${res.id}/targets`, { cookie, body: { siteId: foreign.id, host: '10.0.0.5', port: 80, scheme: 'http' } }), { status: 400, body: { field: 'body.siteId' } });
    t.match(await call('POST', `${base}/resources/${res.id}/targets`, { cookie, body: { siteId: site.id, host: '10.0.0.5', port: 80, scheme: 'http', healthCheck: { type: 'http', path: '/health' } } }), { status: 201, body: { siteId: site.id, healthCheck: { type: 'http' } } });
    t.match(site.connector.secret, /^[A-Za-z0-9_-]{43}$/);
    t.match(await call('GET', `${base}/sites/${site.id}`, { cookie }), { status: 200, body: { name: 'hq', status: { online: false } } });
    t.notOk(JSON.stringify((await call('GET', `${base}/sites/${site.id}`, { cookie })).body).includes(site.connector.secret), 'never shown again');
    const db = new pg.Client({ connectionString: postgresUrl });
    await db.connect();
    const { rows } = await db.query('SELECT secret_hash FROM site_secrets WHERE site_id = $1', [site.id]);
    await db.end();
    t.notOk(rows.some((r) => r.secret_hash.toString('utf8').includes(site.connector.secret)));
    const rotated = await call('POST', `${base}/sites/${site.id}/rotate-secret`, { cookie });
    t.equal(rotated.status, 200);
    t.not(rotated.body.connector.secret, site.connector.secret);
  });

  await t.test('an API key cannot act outside its org or its allowed actions', async (t) => {
    const a = await call('POST', '/api/v1/orgs', { cookie, body: { slug: 'alpha', name: 'Alpha' } });
    const b = await call('POST', '/api/v1/orgs', { cookie, body: { slug: 'beta', name: 'Beta' } });
    t.equal(a.status, 201);
    await call('POST', `/api/v1/orgs/${b.body.id}/sites`, { cookie, body: { name: 'beta hq' } });
    const key = await call('POST', `/api/v1/orgs/${a.body.id}/api-keys`, { cookie, body: { name: 'reader', actions: ['sites:read'] } });
    t.equal(key.status, 201);
    t.match(key.body.key, /^ck_[A-Za-z0-9]{12}_/);
    const bearer = key.body.key as string;
    t.match(await call('GET', `/api/v1/orgs/${a.body.id}/sites`, { bearer }), { status: 200, body: { items: [] } });
    t.match(await call('POST', `/api/v1/orgs/${a.body.id}/sites`, { bearer, body: { name: 'nope' } }), { status: 403, body: { code: 'CLUSTER_ERR_API_FORBIDDEN', needed: 'sites:write' } });
    t.match(await call('GET', `/api/v1/orgs/${a.body.id}/domains`, { bearer }), { status: 403 });
    t.match(await call('GET', `/api/v1/orgs/${b.body.id}/sites`, { bearer }), { status: 404, body: { code: 'CLUSTER_ERR_API_NOT_FOUND' } }, 'another org is invisible');
    t.match(await call('GET', '/api/v1/users', { bearer }), { status: 403 });
    t.match(await call('GET', '/api/v1/orgs', { bearer }), { status: 200, body: { items: [{ slug: 'alpha' }] } });
    t.equal((await call('GET', '/api/v1/orgs', { bearer })).body.items.length, 1);
    t.match(await call('GET', `/api/v1/orgs/${a.body.id}/sites`, { bearer: bearer.slice(0, -2) + 'xx' }), { status: 401 }, 'a forged key is refused');
    t.equal((await call('DELETE', `/api/v1/orgs/${a.body.id}/api-keys/${key.body.id}`, { cookie })).status, 204);
    t.match(await call('GET', `/api/v1/orgs/${a.body.id}/sites`, { bearer }), { status: 401 }, 'a revoked key is refused');
  });

});

t.test('an API key grants nothing it does not hold: no broader key, no higher role', async (t) => {
  const { call, cookie } = await adminApp(t);
  const org = (await call('POST', '/api/v1/orgs', { cookie, body: { slug: 'delta', name: 'Delta' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  const user = (await call('POST', '/api/v1/users', { cookie, body: { email: 'someone@example.com', password: 'a long enough password' } })).body;
  const mint = async (actions: string[], by: { cookie?: string; bearer?: string }) => call('POST', `${base}/api-keys`, { ...by, body: { name: `k ${actions.length}`, actions } });
  const manager = (await mint(['members:write'], { cookie })).body.key as string;

  t.match(await mint(['members:write', 'sites:write'], { bearer: manager }), { status: 403, body: { code: 'CLUSTER_ERR_API_FORBIDDEN', needed: 'sites:write' } }, 'a broader key is refused');
  t.equal((await mint(['members:write'], { bearer: manager })).status, 201, 'a key with the same actions is fine');
  t.match(await call('PUT', `${base}/members/${user.id}`, { bearer: manager, body: { role: 'admin' } }), { status: 403 }, 'org admin is refused: it carries every action');
  t.match(await call('PUT', `${base}/members/${user.id}`, { bearer: manager, body: { role: 'member' } }), { status: 403 }, 'so is member: it reads what this key cannot');
  t.match(await call('GET', `${base}/members`, { cookie }), { status: 200, body: { items: [] } }, 'nothing changed');

  const reader = (await mint(['members:write', 'org:read', 'members:read', 'sites:read', 'domains:read', 'resources:read', 'certificates:read', 'audit:read'], { cookie })).body.key as string;
  t.equal((await call('PUT', `${base}/members/${user.id}`, { bearer: reader, body: { role: 'member' } })).status, 200, 'a key holding every read action may add a member');
  t.equal((await call('PUT', `${base}/members/${user.id}`, { cookie, body: { role: 'admin' } })).status, 200, 'a server admin may make an org admin');
});

t.test('certificate requests: a hostname backing off answers 429 with its retry time, and each org has a budget', async (t) => {
  const { call, cookie } = await adminApp(t);
  const mk = async (slug: string) => {
    const org = (await call('POST', '/api/v1/orgs', { cookie, body: { slug, name: slug } })).body;
    await call('POST', `/api/v1/orgs/${org.id}/domains`, { cookie, body: { name: `${slug}.test` } });
    const mkRes = async (host: string) => (await call('POST', `/api/v1/orgs/${org.id}/resources`, { cookie, body: { name: host.split('.')[0], protocol: 'http', hostname: `${host}.${slug}.test` } })).body;
    return { base: `/api/v1/orgs/${org.id}`, mkRes };
  };
  const a = await mk('certa');
  const failing = await a.mkRes('backoff');
  t.match(await call('POST', `${a.base}/resources/${failing.id}/certificate`, { cookie }), { status: 429, body: { code: 'CLUSTER_ERR_API_RATE_LIMITED', retryAfterMs: Number } }, 'no order during the backoff');
  const fine = await a.mkRes('www');
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push((await call('POST', `${a.base}/resources/${fine.id}/certificate`, { cookie })).status);
  t.same([...new Set(statuses)], [200, 429], 'the org runs out of its hourly budget');
  t.equal(statuses.filter((x) => x === 200).length, 19, 'after 20 requests (the backed-off one counted)');
  const b = await mk('certb');
  const other = await b.mkRes('www');
  t.equal((await call('POST', `${b.base}/resources/${other.id}/certificate`, { cookie })).status, 200, 'another org is not held up');
});

t.test('a changed, disabled or deleted user loses what they had at once, API keys included', async (t) => {
  const { call, cookie } = await adminApp(t);
  const password = 'a long enough password';
  const mkUser = async (email: string, isServerAdmin = false) => {
    const u = (await call('POST', '/api/v1/users', { cookie, body: { email, password } })).body;
    if (isServerAdmin) await call('PATCH', `/api/v1/users/${u.id}`, { cookie, body: { version: u.version, isServerAdmin: true } });
    return (await call('GET', `/api/v1/users/${u.id}`, { cookie })).body as { id: string; version: number };
  };
  const login = async (email: string) => (await call('POST', '/api/v1/auth/login', { body: { email, password } })).cookie!;

  const ops = await mkUser('ops@example.com', true);
  const opsCookie = await login('ops@example.com');
  t.equal((await call('GET', '/api/v1/users', { cookie: opsCookie })).status, 200, 'a server admin lists users (and the principal is cached)');
  await call('PATCH', `/api/v1/users/${ops.id}`, { cookie, body: { version: ops.version, isServerAdmin: false } });
  t.equal((await call('GET', '/api/v1/users', { cookie: opsCookie })).status, 403, 'no longer a server admin: refused on the next request');

  const org = (await call('POST', '/api/v1/orgs', { cookie, body: { slug: 'epsilon', name: 'Epsilon' } })).body;
  const dev = await mkUser('dev@example.com');
  await call('PUT', `/api/v1/orgs/${org.id}/members/${dev.id}`, { cookie, body: { role: 'admin' } });
  const devCookie = await login('dev@example.com');
  const key = (await call('POST', `/api/v1/orgs/${org.id}/api-keys`, { cookie: devCookie, body: { name: 'ci', actions: ['sites:read'] } })).body.key as string;
  t.equal((await call('GET', `/api/v1/orgs/${org.id}/sites`, { bearer: key })).status, 200, 'their key works');
  const devNow = (await call('GET', `/api/v1/users/${dev.id}`, { cookie })).body;
  await call('PATCH', `/api/v1/users/${dev.id}`, { cookie, body: { version: devNow.version, disabled: true } });
  t.equal((await call('GET', `/api/v1/orgs/${org.id}/sites`, { bearer: key })).status, 401, 'a disabled user\'s API key stops working');
  t.equal((await call('GET', '/api/v1/auth/me', { cookie: devCookie })).status, 401, 'and so does their session');

  const gone = await mkUser('gone@example.com');
  await call('PUT', `/api/v1/orgs/${org.id}/members/${gone.id}`, { cookie, body: { role: 'admin' } });
  const goneCookie = await login('gone@example.com');
  const goneKey = (await call('POST', `/api/v1/orgs/${org.id}/api-keys`, { cookie: goneCookie, body: { name: 'ci2', actions: ['sites:read'] } })).body.key as string;
  t.equal((await call('GET', '/api/v1/auth/me', { cookie: goneCookie })).status, 200);
  t.equal((await call('DELETE', `/api/v1/users/${gone.id}`, { cookie })).status, 204);
  t.equal((await call('GET', '/api/v1/auth/me', { cookie: goneCookie })).status, 401, 'a deleted user\'s session ends at once');
  t.equal((await call('GET', `/api/v1/orgs/${org.id}/sites`, { bearer: goneKey })).status, 401, 'and their keys are revoked');
  t.equal((await call('DELETE', `/api/v1/users/${gone.id}`, { cookie })).status, 404, 'deleting again: no such user');
});

t.test('a cookie-authenticated change from another site is refused; the same origin, tools and API keys are not', async (t) => {
  const { call, cookie } = await adminApp(t);
  const withHeaders = (headers: Record<string, string>) => call('POST', '/api/v1/orgs', { cookie, body: { slug: `o${Object.keys(headers).length}${Math.floor(Math.random() * 1e6)}`, name: 'x' }, headers });
  t.match(await withHeaders({ origin: 'https://evil.example' }), { status: 403, body: { code: 'CLUSTER_ERR_API_CROSS_ORIGIN' } }, 'another Origin');
  t.match(await withHeaders({ 'sec-fetch-site': 'cross-site' }), { status: 403 }, 'a cross-site fetch');
  t.match(await withHeaders({ origin: 'null' }), { status: 403 }, 'an opaque origin');
  t.equal((await withHeaders({ origin: 'http://localhost:80' })).status, 201, 'the API\'s own origin');
  t.equal((await withHeaders({})).status, 201, 'a tool without a browser (no Origin)');
  t.equal((await call('GET', '/api/v1/orgs', { cookie, headers: { origin: 'https://evil.example' } })).status, 200, 'reads are not changes');
});

t.test('only a server admin marks a domain verified by hand', async (t) => {
  const { call, cookie } = await adminApp(t);
  const org = (await call('POST', '/api/v1/orgs', { cookie, body: { slug: 'zeta', name: 'Zeta' } })).body;
  const user = (await call('POST', '/api/v1/users', { cookie, body: { email: 'zadmin@example.com', password: 'a long enough password' } })).body;
  await call('PUT', `/api/v1/orgs/${org.id}/members/${user.id}`, { cookie, body: { role: 'admin' } });
  const orgAdmin = (await call('POST', '/api/v1/auth/login', { body: { email: 'zadmin@example.com', password: 'a long enough password' } })).cookie!;
  const domain = (await call('POST', `/api/v1/orgs/${org.id}/domains`, { cookie: orgAdmin, body: { name: 'zeta.test' } })).body;
  t.match(domain, { verification: { status: 'pending' } });
  t.match(await call('POST', `/api/v1/orgs/${org.id}/domains/${domain.id}/verify`, { cookie: orgAdmin, body: { force: true } }), { status: 403, body: { code: 'CLUSTER_ERR_API_FORBIDDEN', needed: 'server_admin' } });
  t.match(await call('POST', `/api/v1/orgs/${org.id}/domains/${domain.id}/verify`, { cookie: orgAdmin }), { status: 200, body: { verification: { status: 'pending' } } }, 'an org admin may ask for a check');
  t.match(await call('POST', `/api/v1/orgs/${org.id}/domains/${domain.id}/verify`, { cookie, body: { force: true } }), { status: 200, body: { verification: { status: 'verified', verifiedBy: 'admin' } } });
});
