import { request } from 'node:http';
import pg from 'pg';
import t from 'tap';
import { call, startApiCluster } from '../harness/api.ts';

/** POSTs a body larger than the limit; the server may answer before reading it all. */
function oversize(base: string, path: string, cookie: string, body: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: 'POST', headers: { cookie, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', (err) => (req.destroyed && (err as NodeJS.ErrnoException).code === 'EPIPE' ? undefined : reject(err)));
    req.end(body);
  });
}

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

t.test('admin writes', async (t) => {
  const c = await startApiCluster(t, 3);
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'acme', name: 'Acme' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  t.equal((await call(c.lb, 'POST', `${base}/domains`, { cookie, body: { name: 'example.com' } })).status, 201);
  const site = (await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'hq' } })).body;

  await t.test('bad input gets a coded 4xx naming the field, and changes nothing', async (t) => {
    const before = await counts(c.postgresUrl);
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
      ['POST', `${base}/resources`, { body: { name: 'app', protocol: 'http', hostname: 'app.other.org' } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `/api/v1/orgs/not-a-uuid/sites`, { body: { name: 'x' } }, 400, 'CLUSTER_ERR_API_VALIDATION'],
      ['POST', `${base}/sites`, { raw: 'name=x', contentType: 'application/x-www-form-urlencoded' }, 415, 'CLUSTER_ERR_API_BAD_REQUEST'],
      ['GET', `${base}/sites?limit=abc`, {}, 400, 'CLUSTER_ERR_API_VALIDATION'],
      // Not built: refused, never stored as a site that would quietly use WebSocket.
      ['POST', `${base}/sites`, { body: { name: 'wg', transport: 'wireguard' } }, 422, 'CLUSTER_ERR_API_TRANSPORT_UNAVAILABLE'],
      ['PATCH', `${base}/sites/${site.id}`, { body: { version: site.version, transport: 'wireguard' } }, 422, 'CLUSTER_ERR_API_TRANSPORT_UNAVAILABLE'],
    ];
    for (const [method, path, opts, status, code] of cases) {
      const r = await call(c.lb, method, path, { cookie, ...opts });
      t.equal(r.status, status, `${method} ${path} ${JSON.stringify(opts).slice(0, 60)} -> ${status}`);
      t.match(r.body?.code, code);
    }
    const big = await oversize(c.nodes[0]!.adminUrl, `${base}/sites`, cookie, JSON.stringify({ name: 'a'.repeat(200_000) }));
    t.match(big, { status: 413, body: { code: 'CLUSTER_ERR_API_BAD_REQUEST', reason: 'FST_ERR_CTP_BODY_TOO_LARGE' } }, 'oversize body');
    const unknown = await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'x', color: 'red' } });
    t.match(unknown.body, { field: 'body.color', problem: 'is not a known field' });
    const wrongType = await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 42 } });
    t.match(wrongType.body, { field: 'body.name' });
    const wg = await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'wg', transport: 'wireguard' } });
    t.match(wg.body, { transport: 'wireguard', available: ['websocket'], message: /not built/ }, 'the refusal says what is available');
    t.same(await counts(c.postgresUrl), before, 'no row changed, not even the audit log');
  });

  await t.test('uniqueness conflicts are 409 naming the field', async (t) => {
    t.equal((await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'app', protocol: 'http', hostname: 'app.example.com' } })).status, 201);
    t.match(await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'app two', protocol: 'http', hostname: 'app.example.com' } }), { status: 409, body: { code: 'CLUSTER_ERR_API_CONFLICT', field: 'hostname' } });
    t.equal((await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'ssh', protocol: 'tcp', proxyPort: 2222 } })).status, 201);
    t.match(await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'ssh2', protocol: 'tcp', proxyPort: 2222 } }), { status: 409, body: { field: 'proxyPort' } });
    t.match(await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'hq' } }), { status: 409, body: { field: 'name' } });
    t.match(await call(c.lb, 'DELETE', `${base}/domains/${(await call(c.lb, 'GET', `${base}/domains`, { cookie })).body.items[0].id}`, { cookie }), { status: 409, body: { field: 'references' } }, 'a domain in use cannot be deleted');
  });

  await t.test('two concurrent updates of one resource: one succeeds, one gets 409', async (t) => {
    const res = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'race', protocol: 'tcp', proxyPort: 3000 } })).body;
    const [a, b] = await Promise.all([
      call(c.nodes[0]!.adminUrl, 'PATCH', `${base}/resources/${res.id}`, { cookie, body: { version: res.version, name: 'by a' } }),
      call(c.nodes[1]!.adminUrl, 'PATCH', `${base}/resources/${res.id}`, { cookie, body: { version: res.version, name: 'by b' } }),
    ]);
    t.same([a.status, b.status].sort(), [200, 409]);
    const loser = a.status === 409 ? a : b;
    t.match(loser.body, { code: 'CLUSTER_ERR_API_VERSION_CONFLICT', currentVersion: 2 });
    const now = await call(c.lb, 'GET', `${base}/resources/${res.id}`, { cookie });
    t.equal(now.body.name, (a.status === 200 ? a : b).body.name, 'the winner\'s write stands');
  });

  await t.test('targets only use the org\'s own sites; site secrets are shown once and stored hashed', async (t) => {
    const res = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'web', protocol: 'http', hostname: 'web.example.com' } })).body;
    const other = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'other', name: 'Other' } })).body;
    const foreign = (await call(c.lb, 'POST', `/api/v1/orgs/${other.id}/sites`, { cookie, body: { name: 'theirs' } })).body;
    t.match(await call(c.lb, 'POST', `${base}/resources/${res.id}/targets`, { cookie, body: { siteId: foreign.id, host: '10.0.0.5', port: 80, scheme: 'http' } }), { status: 400, body: { field: 'body.siteId' } });
    t.match(await call(c.lb, 'POST', `${base}/resources/${res.id}/targets`, { cookie, body: { siteId: site.id, host: '10.0.0.5', port: 80, scheme: 'http', healthCheck: { type: 'http', path: '/health' } } }), { status: 201, body: { siteId: site.id, healthCheck: { type: 'http' } } });
    t.match(site.connector.secret, /^[A-Za-z0-9_-]{43}$/);
    t.match(await call(c.lb, 'GET', `${base}/sites/${site.id}`, { cookie }), { status: 200, body: { name: 'hq', status: { online: false } } });
    t.notOk(JSON.stringify((await call(c.lb, 'GET', `${base}/sites/${site.id}`, { cookie })).body).includes(site.connector.secret), 'never shown again');
    const db = new pg.Client({ connectionString: c.postgresUrl });
    await db.connect();
    const { rows } = await db.query('SELECT secret_hash FROM site_secrets WHERE site_id = $1', [site.id]);
    await db.end();
    t.notOk(rows.some((r) => r.secret_hash.toString('utf8').includes(site.connector.secret)));
    const rotated = await call(c.lb, 'POST', `${base}/sites/${site.id}/rotate-secret`, { cookie });
    t.equal(rotated.status, 200);
    t.not(rotated.body.connector.secret, site.connector.secret);
  });

  await t.test('every write is audited; the OpenAPI document, docs and metrics are served', async (t) => {
    const db = new pg.Client({ connectionString: c.postgresUrl });
    await db.connect();
    const { rows } = await db.query(`SELECT action FROM audit_log WHERE org_id = $1 ORDER BY id`, [org.id]);
    await db.end();
    t.ok(rows.some((r) => r.action === 'site.created') && rows.some((r) => r.action === 'resource.updated'));
    const nodes = await call(c.lb, 'GET', '/api/v1/nodes', { cookie });
    t.same(nodes.body.items.map((n: { id: string }) => n.id), ['node-1', 'node-2', 'node-3']);
    t.ok(nodes.body.items.every((n: { leaseAgeMs: number }) => n.leaseAgeMs >= 0 && n.leaseAgeMs <= 3000), 'lease ages are shown');
    const issuers = nodes.body.items.map((n: { actors: Record<string, number> | null }) => n.actors?.['cert-issuer'] ?? 0);
    t.ok(nodes.body.items.every((n: { actors: unknown }) => n.actors !== null), 'every node reports its actors');
    t.equal(issuers.reduce((a: number, b: number) => a + b, 0), 1, 'the singleton certificate issuer runs on exactly one node');
    const doc = await call(c.lb, 'GET', '/api/v1/openapi.json');
    t.equal(doc.status, 200);
    t.ok(doc.body.paths['/api/v1/orgs/{orgId}/sites'].post, 'routes are documented');
    t.equal((await fetch(`${c.lb}/api/v1/docs/`)).status, 200);
    const metrics = (await Promise.all(c.nodes.map(async (n) => (await fetch(`${n.adminUrl}/metrics`)).text()))).join('\n');
    t.match(metrics, /cluster_http_requests_total\{method="POST",route="\/api\/v1\/orgs\/:orgId\/sites",status="201"\}/);
    for (const dep of ['postgres', 'valkey']) t.equal(metrics.match(new RegExp(`^cluster_dependency_up\\{dependency="${dep}"\\} 1$`, 'gm'))?.length, 3, `every node reports ${dep} up`);
    t.equal(metrics.match(/^cluster_live_nodes 3$/gm)?.length, 3, 'every node sees three live nodes');
  });

  await t.test('a SIGKILLed node loses no acknowledged write', async (t) => {
    const victim = c.nodes[0]!;
    const acked: string[] = [];
    let failed = 0;
    let n = 0;
    let running = true;
    const writers = Array.from({ length: 6 }, async (_, w) => {
      while (running) {
        const name = `w${w} n${n++}`;
        try {
          const r = await call(w % 2 === 0 ? victim.adminUrl : c.lb, 'POST', `${base}/sites`, { cookie, body: { name } });
          if (r.status === 201) acked.push(r.body.id);
          else failed++;
        } catch {
          failed++; // connection reset by the kill: not acknowledged
        }
      }
    });
    await new Promise((r) => setTimeout(r, 700));
    victim.proc.signal('SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    running = false;
    await Promise.all(writers);
    const db = new pg.Client({ connectionString: c.postgresUrl });
    await db.connect();
    const { rows } = await db.query('SELECT id FROM sites WHERE id = ANY($1::uuid[])', [acked]);
    await db.end();
    t.comment(`${acked.length} writes acknowledged, ${failed} not`);
    t.ok(acked.length > 20, 'writes were flowing');
    t.equal(rows.length, acked.length, 'every acknowledged write is in PostgreSQL');
  });
});
