// The guarantee that makes PostgreSQL and Valkey safe to fail over: while either one hangs
// (frozen: connections stay open and nothing answers), tunnels, DNS and ingress keep serving
// from memory, and an admin write gets a clear 503 instead of hanging. "Briefly" is relative
// to the membership lease: past `lease.ttl` without Valkey a node fences its actors.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { LocalPostgres, LocalValkey } from '../../devenv/services.ts';
import { call, publishHttpResource, servedBy, startApiCluster, type Reply } from '../harness/api.ts';
import { dig } from '../harness/dig.ts';
import { nodeAddress } from '../harness/nodes.ts';
import { until } from '../harness/until.ts';

const OUTAGE_MS = 4000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function get(host: string, hostname: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port: 80, path: '/', headers: { host: hostname }, agent: false }, (res: IncomingMessage) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

t.test('while PostgreSQL or Valkey hangs, tunnels, DNS and HTTP keep serving from memory and admin writes answer 503 instead of hanging', async (t) => {
  // Servers of its own (it takes them down), on fresh data (the postgres user must reach it).
  const scratch = mkdtempSync(join(tmpdir(), 'outage-'));
  chmodSync(scratch, 0o755);
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
  const pgServer = await LocalPostgres.start({ dir: join(scratch, 'pg'), fast: true });
  t.teardown(() => (pgServer.thaw(), pgServer.stop()));
  const vkServer = await LocalValkey.start({ dir: join(scratch, 'vk') });
  t.teardown(() => (vkServer.thaw(), vkServer.stop()));
  const target = createServer((_req, res) => res.end('served from the site'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));
  // Where an admin moves the resource while Valkey is away.
  const moved = createServer((_req, res) => res.end('served from the new target'));
  await new Promise<void>((r) => moved.listen(0, '127.0.0.1', r));
  t.teardown(() => (moved.closeAllConnections(), moved.close()));

  const ips = [nodeAddress(), nodeAddress()];
  const c = await startApiCluster(
    t,
    2,
    // statementTimeout bounds how long a write may wait on a hung PostgreSQL (plus connectTimeout).
    { postgres: { url: pgServer.url, statementTimeout: '3s' }, valkey: { url: vkServer.url }, lease: { ttl: '10s', renewEvery: '1s' } },
    (i) => ({ ingress: { http: `${ips[i]}:80`, https: `${ips[i]}:443`, publicAddresses: [ips[i]] }, dns: { bind: `${ips[i]}:53` } }),
  );
  const cookie = c.adminCookie;
  const { org, base, site, resource: res, target: tgt } = await publishHttpResource(c, { slug: 'outage', zone: 'outage.test', targetPort: (target.address() as { port: number }).port });
  const connector = new Connector({ endpoints: [c.nodes[1]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger: createLogger({ level: 'silent' }) });
  t.teardown(() => connector.stop());
  connector.start();
  await servedBy(c, org.id, res.id, 'node-2', 20_000);

  /** One round of what the public sees: HTTP through each node, and each node's DNS. */
  const failures: string[] = [];
  const probe = async () => {
    await Promise.all(ips.map(async (ip) => {
      const http = await get(ip, 'app.outage.test').catch((e: Error) => ({ status: 0, body: e.message }));
      if (http.status !== 200 || !http.body.startsWith('served from the')) failures.push(`HTTP via ${ip}: ${http.status} ${http.body.slice(0, 80)}`);
      const dns = await dig(ip, 'app.outage.test', 'A').catch((e: Error) => ({ status: e.message, short: [] as string[] }));
      if (dns.status !== 'NOERROR' || dns.short.length === 0) failures.push(`DNS via ${ip}: ${dns.status}`);
    }));
  };
  /** An admin write straight to node-1 (not through the load balancer, which would take it out). */
  const write = async (name: string): Promise<Reply & { ms: number }> => {
    const t0 = Date.now();
    const r = await call(c.nodes[0]!.adminUrl, 'POST', `${base}/sites`, { cookie, body: { name } }).catch((e: Error) => ({ status: 0, body: { message: `no answer: ${e.message}` } }));
    return { ...r, ms: Date.now() - t0 };
  };
  // The record reaches each node's DNS with the zone snapshot, a moment after the route: the
  // outage is only meaningful once both serve.
  for (const ip of ips) await until(async () => ((await dig(ip, 'app.outage.test', 'A').catch(() => undefined))?.short.length ?? 0) > 0, 10_000, `the record in ${ip}'s DNS`);
  await probe();
  t.same(failures, [], 'everything answers before the outage');

  const outage = async (dependency: string, server: { freeze(): void; thaw(): void }) => {
    failures.length = 0;
    server.freeze();
    const until = Date.now() + OUTAGE_MS;
    const writing = sleep(500).then(() => write(`during-${dependency}`));
    let rounds = 0;
    while (Date.now() < until) {
      await probe();
      rounds++;
      await sleep(150);
    }
    const during = await writing;
    server.thaw();
    t.same(failures, [], `${dependency} frozen for ${OUTAGE_MS / 1000} s: all ${rounds * 2} HTTP requests and DNS queries through both nodes answered`);
    await Promise.all(c.nodes.map((n) => n.waitReady(30_000)));
    return during;
  };

  // Valkey hung: a write needs only PostgreSQL, so it is committed and acknowledged.
  const withoutValkey = await outage('Valkey', vkServer);
  t.equal(withoutValkey.status, 201, `Valkey frozen: an admin write is acknowledged (in ${withoutValkey.ms} ms)`);
  const stored = await call(c.nodes[1]!.adminUrl, 'GET', `${base}/sites/${withoutValkey.body?.id}`, { cookie });
  t.equal(stored.body?.name, 'during-Valkey', 'and it is stored');

  // A change committed while Valkey was frozen takes effect once it is back: its announcement
  // arrives late (or, had it been lost, the audit-log replay finds it: change-replay.test.ts),
  // and no request may reuse a kept-alive stream to the target's old address.
  vkServer.freeze();
  const repoint = await call(c.nodes[0]!.adminUrl, 'PATCH', `${base}/resources/${res.id}/targets/${tgt.id}`, { cookie, body: { version: tgt.version, port: (moved.address() as { port: number }).port } });
  vkServer.thaw();
  t.equal(repoint.status, 200, 'a target moved while Valkey is frozen is acknowledged');
  let answers: string[] = [];
  for (let i = 0; i < 60 && !answers.every((a) => a === 'served from the new target') || answers.length === 0; i++) {
    if (i) await sleep(500);
    answers = await Promise.all(ips.map((ip) => get(ip, 'app.outage.test').then((r) => r.body, (e: Error) => e.message)));
  }
  t.same(answers, ips.map(() => 'served from the new target'), 'and once Valkey is back, both nodes send traffic to the new target');
  await Promise.all(c.nodes.map((n) => n.waitReady(30_000)));

  // PostgreSQL hung: a write cannot commit, and says so within its bound instead of hanging.
  const withoutPostgres = await outage('PostgreSQL', pgServer);
  t.equal(withoutPostgres.status, 503, `PostgreSQL frozen: an admin write is refused with 503 (after ${withoutPostgres.ms} ms), not left hanging`);
  t.equal(withoutPostgres.body?.code, 'CLUSTER_ERR_DB_UNAVAILABLE', `and says why (${withoutPostgres.body?.message})`);
  const after = await write('after-PostgreSQL');
  t.equal(after.status, 201, 'PostgreSQL back: admin writes work again');
  // The refused write stayed refused: its transaction, waiting on the frozen server, rolled
  // back when the server woke instead of committing behind the 503.
  const db = new pg.Client({ connectionString: pgServer.url });
  await db.connect();
  const { rows } = await db.query(`SELECT name FROM sites WHERE name IN ('during-PostgreSQL', 'after-PostgreSQL') ORDER BY name`).finally(() => db.end());
  t.same(rows.map((r) => r.name), ['after-PostgreSQL'], 'a write answered 503 is not in PostgreSQL after recovery');
  await probe();
  t.same(failures, [], 'and everything still serves');
});
