// Valkey as operators run it: a primary, a replica and three Sentinels. The primary is
// SIGKILLed; Sentinel promotes the replica and the nodes follow it (valkey.sentinels): no
// acknowledged admin write is lost, traffic keeps flowing, the cluster heals, and a change
// made after the promotion reaches every node.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import t from 'tap';
import { createLogger } from '../../core/log.ts';
import { Connector } from '../../connector/connector.ts';
import { LocalSentinel } from '../../devenv/valkey-sentinel.ts';
import { LocalValkey } from '../../devenv/valkey.ts';
import { call, publishHttpResource, servedBy, startApiCluster } from '../harness/api.ts';
import { until } from '../harness/until.ts';

function get(ip: string, host: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: ip, port: 80, path: '/', headers: { host }, agent: false, timeout: 2000 }, (res: IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

t.test('the Valkey primary dies: Sentinel promotes the replica and the cluster follows', async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 'sentinel-'));
  chmodSync(scratch, 0o755);
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
  const primary = await LocalValkey.start({ dir: join(scratch, 'primary') });
  t.teardown(() => primary.stop());
  const replica = await LocalValkey.start({ dir: join(scratch, 'replica'), replicaOf: primary });
  t.teardown(() => replica.stop());
  const probe = new Redis(replica.url.replace(/:\d+$/, `:${replica.port}`), { lazyConnect: true, maxRetriesPerRequest: 1 });
  await probe.connect();
  await until(async () => /master_link_status:up/.test(await probe.info('replication')), 15_000, 'the replica in sync');
  probe.disconnect();
  const sentinels = await Promise.all([0, 1, 2].map((i) => LocalSentinel.start({ dir: join(scratch, `sentinel-${i}`), primary, masterName: 'cluster', quorum: 2 })));
  t.teardown(() => Promise.all(sentinels.map((s) => s.stop())));

  const target = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));
  // The lease outlasts a failover (Sentinel's 1 s down-after plus its election): the setting
  // the operator guide gives. With a 3 s lease every node fenced itself meanwhile (measured).
  const c = await startApiCluster(t, 3, { valkey: { url: primary.url, sentinels: sentinels.map((s) => s.address), masterName: 'cluster' }, lease: { ttl: '6s', renewEvery: '500ms' } });
  const cookie = c.adminCookie;
  const { org, base, site, resource } = await publishHttpResource(c, { slug: 'fo', zone: 'fo.test', targetPort: (target.address() as { port: number }).port });
  const connector = new Connector({ endpoints: c.nodes.map((n) => n.adminUrl), siteId: site.id, secret: site.connector.secret, logger: createLogger({ level: 'silent' }) });
  t.teardown(() => connector.stop());
  connector.start();
  await until(async () => (await call(c.lb, 'GET', `${base}/sites/${site.id}`, { cookie })).body?.status?.online, 20_000, 'the site online');
  const holder = (await call(c.lb, 'GET', `${base}/sites/${site.id}`, { cookie })).body.status.node as string;
  await servedBy(c, org.id, resource.id, holder, 20_000);
  const ips = c.nodes.map((n) => String(n.config.ingress.http).replace(/:80$/, ''));

  // Traffic through every node, and admin writes through the load balancer, throughout.
  const results: Array<{ start: number; ok: boolean }> = [];
  const acked: string[] = [];
  let running = true;
  const traffic = (async () => {
    for (let i = 0; running; i++) {
      const start = Date.now();
      results.push({ start, ok: (await get(ips[i % ips.length]!, 'app.fo.test')) === 200 });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const writes = (async () => {
    for (let i = 0; running; i++) {
      const r = await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: `w-${i}` } }).catch(() => undefined);
      if (r?.status === 201) acked.push(r.body.id);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  t.teardown(async () => ((running = false), await Promise.all([traffic, writes])));
  await new Promise((r) => setTimeout(r, 1000));

  const killedAt = Date.now();
  await primary.kill();
  await until(async () => (await sentinels[0]!.primaryPort('cluster')) === replica.port, 20_000, 'Sentinel to promote the replica');
  const promotedMs = Date.now() - killedAt;
  // A deadline for liveness, not a time goal. CI (sharing its cores with other test files)
  // met 20 s three times in two days where a run alone takes 3 s; the failure now names the
  // node still unready and what its /readyz said, for whoever meets it next.
  await until(async () => {
    for (const n of c.nodes) {
      const res = await fetch(`${n.adminUrl}/readyz`).catch((err: Error) => err);
      if (res instanceof Error || res.status !== 200) throw new Error(`${n.config.nodeId} not ready: ${res instanceof Error ? res.message : `${res.status} ${await res.text()}`}`);
    }
    return true;
  }, 45_000, 'every node ready on the new primary');
  const healedMs = Date.now() - killedAt;
  await new Promise((r) => setTimeout(r, 2000));
  running = false;
  await Promise.all([traffic, writes]);

  let longest = 0;
  let since: number | undefined;
  for (const r of results.filter((x) => x.start >= killedAt - 100)) {
    if (!r.ok) since ??= r.start;
    else if (since !== undefined) [longest, since] = [Math.max(longest, r.start - since), undefined];
  }
  t.comment(`Sentinel promoted the replica ${promotedMs} ms after SIGKILL; every node ready ${healedMs} ms after; longest run of failed requests ${longest} ms (${results.filter((r) => !r.ok).length} of ${results.length} failed)`);
  t.ok(results.at(-1)?.ok && since === undefined, 'requests succeed after the failover');
  const db = new pg.Client({ connectionString: c.postgresUrl });
  await db.connect();
  const stored = new Set((await db.query('SELECT id FROM sites WHERE id = ANY($1::uuid[])', [acked])).rows.map((r) => String(r.id)));
  await db.end();
  t.ok(acked.length > 20, `admin writes went on (${acked.length} acknowledged)`);
  t.same(acked.filter((id) => !stored.has(id)), [], 'no acknowledged write lost');

  // A change after the promotion travels through the new primary to every node.
  const after = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'after', protocol: 'http', hostname: 'after.fo.test', tls: false } })).body;
  await call(c.lb, 'POST', `${base}/resources/${after.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port: (target.address() as { port: number }).port, scheme: 'http' } });
  for (const ip of ips) await until(async () => (await get(ip, 'after.fo.test')) === 200, 15_000, `the new resource served by ${ip}`);
  t.pass('a resource made after the promotion is served by every node');
});
