// A frozen node (SIGSTOP: its sockets stay open, nothing answers) is routed around by DNS well
// before its lease runs out: every other node suspects it after failover.suspectAfter and an
// indirect probe, and leaves its address out of answers; once it wakes it is named again. No
// node suspects anyone while nothing is wrong.
import t from 'tap';
import { addVerifiedDomain, call, startApiCluster } from '../harness/api.ts';
import { dig } from '../harness/dig.ts';
import { scrape, total } from '../harness/metrics.ts';
import { until } from '../harness/until.ts';

t.test('DNS stops naming a frozen node before its lease expires, and names it again when it wakes', async (t) => {
  // A long lease: whatever happens within it is the suspicion's doing, not the lease's.
  const c = await startApiCluster(t, 3, { lease: { ttl: '15s', renewEvery: '1s' } });
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'frz', name: 'Frozen' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  await addVerifiedDomain(c, base, 'frz.test');
  await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'app', protocol: 'http', hostname: 'app.frz.test', tls: false } });
  const address = (i: number) => String(c.nodes[i]!.config.ingress.publicAddresses[0]);
  const all = [0, 1, 2].map(address).sort();
  // No site online: any node forwards, so every node is named.
  await until(async () => (await dig(address(0), 'app.frz.test', 'A')).short.join() === all.join(), 20_000, 'every node named');

  await new Promise((r) => setTimeout(r, 2000)); // two seconds of a healthy cluster
  for (const n of c.nodes) t.equal(total(await scrape(n.metricsUrl), 'cluster_peer_suspicions_total') ?? 0, 0, `${n.config.nodeId} suspected nobody while nothing was wrong`);

  const frozen = c.nodes[2]!;
  frozen.proc.signal('SIGSTOP');
  t.teardown(() => frozen.proc.signal('SIGCONT'));
  const stoppedAt = Date.now();
  for (const i of [0, 1]) {
    await until(async () => (await dig(address(i), 'app.frz.test', 'A')).short.join() === [address(0), address(1)].sort().join(), 10_000, `node-${i + 1} to leave the frozen node out`, 25);
  }
  const followMs = Date.now() - stoppedAt;
  t.comment(`DNS on both other nodes stopped naming the frozen node ${followMs} ms after SIGSTOP (lease 15 s)`);
  const nodes = (await call(c.nodes[0]!.adminUrl, 'GET', '/api/v1/nodes', { cookie })).body.items as Array<{ id: string }>;
  t.same(nodes.map((n) => n.id).sort(), ['node-1', 'node-2', 'node-3'], 'its lease still held it in the cluster meanwhile: no actor moved');
  t.ok((total(await scrape(c.nodes[0]!.metricsUrl), 'cluster_peer_suspicions_total', { peer: 'node-3' }) ?? 0) >= 1, 'the suspicion is counted');

  frozen.proc.signal('SIGCONT');
  await until(async () => (await dig(address(0), 'app.frz.test', 'A')).short.join() === all.join(), 10_000, 'the woken node named again', 25);
  t.pass('named again once it answers');
});
