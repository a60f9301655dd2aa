import pg from 'pg';
import t from 'tap';
import { call, startApiCluster } from '../harness/api.ts';
import { until } from '../harness/until.ts';

t.test('admin writes', async (t) => {
  const c = await startApiCluster(t, 3);
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'acme', name: 'Acme' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  t.equal((await call(c.lb, 'POST', `${base}/domains`, { cookie, body: { name: 'example.com' } })).status, 201);
  await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'hq' } }); // audited below

  await t.test('two concurrent updates of one resource: one succeeds, one gets 409', async (t) => {
    const res = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'race', protocol: 'tcp', proxyPort: 23000 } })).body;
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
    const metrics = (await Promise.all(c.nodes.map(async (n) => (await fetch(`${n.metricsUrl}/metrics`)).text()))).join('\n');
    t.match(metrics, /cluster_http_requests_total\{method="POST",route="\/api\/v1\/orgs\/:orgId\/sites",status="201"\}/);
    for (const dep of ['postgres', 'valkey']) t.equal(metrics.match(new RegExp(`^cluster_dependency_up\\{dependency="${dep}"\\} 1$`, 'gm'))?.length, 3, `every node reports ${dep} up`);
    // A view is rebuilt every lease renewal; on a loaded machine one read may miss a peer for a moment.
    const liveViews = async () => (await Promise.all(c.nodes.map(async (n) => (await fetch(`${n.metricsUrl}/metrics`)).text()))).join('\n').match(/^cluster_live_nodes 3$/gm)?.length === 3;
    t.ok(await until(liveViews, 10_000, 'every node to see three live nodes'), 'every node sees three live nodes');
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
