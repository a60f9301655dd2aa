import { once } from 'node:events';
import t, { type Test } from 'tap';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { LocalValkey } from '../../devenv/valkey.ts';
import { Valkey } from '../../persistence/valkey.ts';
import { freshClusterName } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });

async function client(t: Test, url: string, clusterName: string): Promise<Valkey> {
  const v = new Valkey({ url: new Secret(url), clusterName, connectTimeout: 1000, commandTimeout: 1000, logger });
  v.connect();
  t.teardown(() => v.close());
  if (v.state !== 'ready') await once(v.cmd, 'ready');
  return v;
}

async function scanAll(v: Valkey): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await v.call((c) => c.scan(cursor, 'MATCH', v.keys.pattern, 'COUNT', 1000));
    out.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return out.sort();
}

t.test("two tests' Valkey prefixes never see each other's keys or messages", async (t) => {
  const a = await freshClusterName(t);
  const b = await freshClusterName(t);
  const va = await client(t, a.valkeyUrl, a.clusterName);
  const vb = await client(t, b.valkeyUrl, b.clusterName);
  await va.call((c) => c.set(va.keys.lease('node-1'), 'a'));
  await va.call((c) => c.set(va.keys.owner('site', 's1'), 'a'));
  await vb.call((c) => c.set(vb.keys.lease('node-1'), 'b'));
  t.same(await scanAll(va), [va.keys.lease('node-1'), va.keys.owner('site', 's1')].sort());
  t.same(await scanAll(vb), [vb.keys.lease('node-1')]);
  t.equal(await va.call((c) => c.get(va.keys.lease('node-1'))), 'a');
  t.equal(await vb.call((c) => c.get(vb.keys.lease('node-1'))), 'b', 'same logical key, separate values');

  const gotA: unknown[] = [];
  const gotB: unknown[] = [];
  await va.subscribe('membership', (m) => gotA.push(m));
  await vb.subscribe('membership', (m) => gotB.push(m));
  t.equal(await va.publish('membership', { from: 'a' }), 1, 'only the same-prefix subscriber receives');
  await vb.publish('membership', { from: 'b' });
  await new Promise((r) => setTimeout(r, 100));
  t.same(gotA, [{ from: 'a' }]);
  t.same(gotB, [{ from: 'b' }]);
});

t.test('a prefix that could escape its keyspace is refused', async (t) => {
  t.throws(() => new Valkey({ url: new Secret('redis://127.0.0.1:1'), clusterName: 'a*', connectTimeout: 100, commandTimeout: 100, logger }));
});

t.test('while Valkey is down commands fail at once with a coded error, and recover after', async (t) => {
  const server = await LocalValkey.start({ dir: t.testdir() });
  t.teardown(() => server.stop());
  const v = await client(t, server.url, 'outage');
  const seen: unknown[] = [];
  await v.subscribe('events', (m) => seen.push(m));
  await v.call((c) => c.set(v.keys.custom('k'), '1'));

  await server.pause();
  const started = Date.now();
  await t.rejects(v.call((c) => c.get(v.keys.custom('k'))), { code: 'CLUSTER_ERR_VALKEY_UNAVAILABLE' });
  t.ok(Date.now() - started < 1500, `failed in ${Date.now() - started}ms, not a hang`);
  t.equal(await v.ping(200), false);

  await server.resume();
  const deadline = Date.now() + 10_000;
  while (v.state !== 'ready' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(v.state, 'ready', 'reconnected by itself');
  t.equal(await v.call((c) => c.set(v.keys.custom('k'), '2')), 'OK');
  // The subscriber resubscribes by itself too.
  const until = Date.now() + 5000;
  while (seen.length === 0 && Date.now() < until) {
    await v.publish('events', { n: 1 });
    await new Promise((r) => setTimeout(r, 100));
  }
  t.same(seen[0], { n: 1 }, 'pub/sub works again after the outage');
});
