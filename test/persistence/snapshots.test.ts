import { once } from 'node:events';
import t from 'tap';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { SnapshotMirror, SnapshotStore } from '../../persistence/snapshots.ts';
import { Valkey } from '../../persistence/valkey.ts';
import { freshClusterName } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });

t.test('snapshots: a stale owner cannot overwrite its successor, tombstones stay, mirrors keep the newest', async (t) => {
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const v = new Valkey({ url: new Secret(valkeyUrl), clusterName, connectTimeout: 1000, commandTimeout: 1000, logger });
  v.connect();
  t.teardown(() => v.close());
  if (v.state !== 'ready') await once(v.cmd, 'ready');
  const store = new SnapshotStore<{ n: number }>(v, 'things');
  const seen: Array<[string, number | undefined]> = [];
  const mirror = new SnapshotMirror(store, (id, data) => seen.push([id, data?.n]));
  await mirror.start(60_000, () => {});
  t.teardown(() => mirror.stop());

  t.ok(await store.put({ id: 'a', version: { epoch: 2, seq: 1 }, data: { n: 1 } }), 'first write');
  t.ok(await store.put({ id: 'a', version: { epoch: 2, seq: 2 }, data: { n: 2 } }), 'next sequence');
  t.notOk(await store.put({ id: 'a', version: { epoch: 1, seq: 99 }, data: { n: -1 } }), 'an older epoch is refused');
  t.notOk(await store.put({ id: 'a', version: { epoch: 2, seq: 2 }, data: { n: -2 } }), 'the same version is refused');
  t.same((await store.get('a'))?.data, { n: 2 });
  t.ok(await store.put({ id: 'a', version: { epoch: 3, seq: 1 } }), 'a tombstone from the next owner');
  t.notOk(await store.put({ id: 'a', version: { epoch: 2, seq: 3 }, data: { n: 3 } }), 'a late write cannot bring it back');
  for (let i = 0; i < 50 && mirror.version('a')?.epoch !== 3; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(mirror.get('a'), undefined, 'the mirror dropped it');
  t.same(seen, [['a', 1], ['a', 2], ['a', undefined]], 'the mirror saw exactly the accepted versions, in order');

  // Out-of-order delivery (e.g. from a repair read racing an announcement) keeps the newest.
  mirror.apply({ id: 'b', version: { epoch: 5, seq: 2 }, data: { n: 52 } });
  mirror.apply({ id: 'b', version: { epoch: 5, seq: 1 }, data: { n: 51 } });
  t.same(mirror.get('b'), { n: 52 });
});
