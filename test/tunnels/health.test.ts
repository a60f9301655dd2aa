import { createServer, request, type Server } from 'node:http';
import t from 'tap';
import { until } from '../harness/until.ts';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { call, startApiCluster } from '../harness/api.ts';

const logger = createLogger({ level: 'silent' });

function serve(name: string, port = 0): Promise<Server> {
  const s = createServer((_req, res) => res.end(name));
  return new Promise((r) => s.listen(port, '127.0.0.1', () => r(s)));
}

function get(host: string): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ host, port: 80, path: '/', headers: { host: 'app.health.test' }, agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : `HTTP ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve('error'));
    req.end();
  });
}

async function sample(host: string, n = 20): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await get(host));
  return out;
}

t.test('a target marked unhealthy stops receiving traffic and comes back when healthy', async (t) => {
  let a = await serve('A');
  const portA = (a.address() as { port: number }).port;
  const b = await serve('B');
  t.teardown(() => {
    for (const s of [a, b]) (s.closeAllConnections(), s.close());
  });
  const c = await startApiCluster(t, 2);
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'health', name: 'Health' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  await call(c.lb, 'POST', `${base}/domains`, { cookie, body: { name: 'health.test' } });
  const site = (await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'site' } })).body;
  const res = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'app', protocol: 'http', hostname: 'app.health.test', tls: false } })).body;
  const check = { type: 'http', path: '/', intervalMs: 1000, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 1 };
  for (const port of [portA, (b.address() as { port: number }).port]) {
    t.equal((await call(c.lb, 'POST', `${base}/resources/${res.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port, scheme: 'http', healthCheck: check } })).status, 201);
  }
  const connector = new Connector({ endpoints: [c.nodes[0]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger });
  t.teardown(() => connector.stop());
  connector.start();
  const ingress = c.nodes.map((n) => String(n.config.ingress.http).replace(/:80$/, ''));
  const sampled = (what: string, ok: (s: string[]) => boolean) =>
    until(async () => {
      const s = [...(await sample(ingress[0]!, 10)), ...(await sample(ingress[1]!, 10))];
      return ok(s) ? s : undefined;
    }, 15_000, what, 200);
  await sampled('both targets in use', (s) => s.includes('A') && s.includes('B'));
  t.pass('both targets serve while healthy (through both nodes)');

  const connected = (await call(c.lb, 'GET', `${base}/sites/${site.id}`, { cookie })).body.status;
  t.match(connected, { online: true, node: 'node-1', connectedSince: /^\d{4}-/ }, 'the API shows where and since when the site is connected');
  t.equal(connected.targets.length, 2, 'and the health of its checked targets');
  t.ok(connected.targets.every((x: { healthy: boolean }) => x.healthy));
  a.closeAllConnections();
  a.close();
  const onlyB = await sampled('A taken out', (s) => s.every((x) => x === 'B'));
  t.same([...new Set(onlyB)], ['B'], 'the unhealthy target gets no traffic on any node');
  const status = (await call(c.lb, 'GET', `${base}/sites/${site.id}`, { cookie })).body.status;
  t.equal(status.targets.filter((x: { healthy: boolean }) => !x.healthy).length, 1, 'the API shows the unhealthy target');

  a = await serve('A', portA);
  await sampled('A back', (s) => s.includes('A'));
  t.pass('it comes back when healthy again');
});
