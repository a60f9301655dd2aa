import t from 'tap';
import { systemClock } from '../../core/clock.ts';
import { SnapshotMirror, SnapshotStore } from '../../persistence/snapshots.ts';
import { freshValkey } from '../harness/services.ts';

const soa = { mname: 'ns.z', rname: 'hostmaster.z', refresh: 1, retry: 1, expire: 1, minimum: 1, ttl: 1 };
/** A zone snapshot whose serial stands for the value under test. */
const zone = (n: number) => ({ zone: 'z', serial: n, soa, records: {} });

t.test('snapshots: a stale owner cannot overwrite its successor, tombstones stay, mirrors keep the newest', async (t) => {
  const v = await freshValkey(t);
  const store = new SnapshotStore(v, 'zones');
  const seen: Array<[string, number | undefined]> = [];
  const mirror = new SnapshotMirror(store, (id, data) => seen.push([id, data?.serial]), systemClock);
  await mirror.start(60_000, () => {});
  t.teardown(() => mirror.stop());

  t.ok(await store.put({ id: 'a', version: { epoch: 2, seq: 1 }, data: zone(1) }), 'first write');
  t.ok(await store.put({ id: 'a', version: { epoch: 2, seq: 2 }, data: zone(2) }), 'next sequence');
  t.notOk(await store.put({ id: 'a', version: { epoch: 1, seq: 99 }, data: zone(-1) }), 'an older epoch is refused');
  t.notOk(await store.put({ id: 'a', version: { epoch: 2, seq: 2 }, data: zone(-2) }), 'the same version is refused');
  t.same((await store.get('a'))?.data, zone(2));
  t.ok(await store.put({ id: 'a', version: { epoch: 3, seq: 1 } }), 'a tombstone from the next owner');
  t.notOk(await store.put({ id: 'a', version: { epoch: 2, seq: 3 }, data: zone(3) }), 'a late write cannot bring it back');
  for (let i = 0; i < 50 && mirror.version('a')?.epoch !== 3; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(mirror.get('a'), undefined, 'the mirror dropped it');
  t.same(seen, [['a', 1], ['a', 2], ['a', undefined]], 'the mirror saw exactly the accepted versions, in order');

  // Out-of-order delivery (e.g. from a repair read racing an announcement) keeps the newest.
  mirror.apply({ id: 'b', version: { epoch: 5, seq: 2 }, data: zone(52) });
  mirror.apply({ id: 'b', version: { epoch: 5, seq: 1 }, data: zone(51) });
  t.same(mirror.get('b'), zone(52));

  // What does not match the channel's schema never reaches a subscriber (nor a repair read).
  const heard: unknown[] = [];
  await v.subscribe('zones', (m) => heard.push(m));
  await v.cmd.publish(v.keys.channel('zones'), JSON.stringify({ id: 'c', version: { epoch: 1, seq: 1 }, data: { zone: 'c', serial: 'not a number' } }));
  await v.cmd.hset(v.keys.snapshot('zones'), 'c', JSON.stringify({ id: 'c', version: { epoch: 1, seq: 1 }, data: { zone: 'c' } }));
  t.ok(await store.put({ id: 'd', version: { epoch: 1, seq: 1 }, data: zone(7) }), 'a valid snapshot after the bad one');
  for (let i = 0; i < 50 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.same(heard.map((m) => (m as { id: string }).id), ['d'], 'only the valid announcement was delivered');
  t.equal(v.droppedMessages, 1, 'the malformed announcement was counted');
  t.equal(await store.get('c'), undefined, 'a malformed stored entry reads as absent');
  t.same((await store.all()).map((e) => e.id).sort(), ['a', 'd'], 'a full read skips it too');
});

t.test('a mirror reads every snapshot again as soon as its lost subscription is made again', async (t) => {
  const v = await freshValkey(t);
  const store = new SnapshotStore(v, 'zones');
  const mirror = new SnapshotMirror(store, () => {}, systemClock);
  await mirror.start(60_000, () => {}); // the periodic repair is a minute away
  t.teardown(() => mirror.stop());
  // Stored while the subscriber was away: its announcement never reached this node.
  await v.cmd.hset(v.keys.snapshot('zones'), 'missed', JSON.stringify({ id: 'missed', version: { epoch: 1, seq: 1 }, data: zone(9) }));
  const name = v.keys.prefix.slice(0, -1);
  const subscriber = (await v.cmd.client('LIST') as string).split('\n').find((l) => l.includes(` name=${name} `) && / sub=[1-9]/.test(l));
  t.ok(subscriber, 'found this node\'s subscriber connection');
  await v.cmd.client('KILL', 'ID', /\bid=(\d+)/.exec(subscriber!)![1]!);
  const killedAt = Date.now();
  for (let i = 0; i < 100 && !mirror.get('missed'); i++) await new Promise((r) => setTimeout(r, 20));
  t.same(mirror.get('missed'), zone(9), `read after the subscription came back (${Date.now() - killedAt} ms)`);
});

t.test('a repair parses only the snapshots newer than the mirror holds, and still finds every new one', async (t) => {
  const v = await freshValkey(t);
  const store = new SnapshotStore(v, 'zones');
  const mirror = new SnapshotMirror(store, () => {}, systemClock);
  await mirror.start(60_000, () => {});
  t.teardown(() => mirror.stop());
  for (let i = 0; i < 20; i++) t.ok(await store.put({ id: `z${i}`, version: { epoch: 1, seq: 1 }, data: zone(i) }));
  await mirror.repair();
  t.equal([...mirror.values()].length, 20, 'all twenty mirrored');
  // One newer unannounced, one written by hand with its keys in another order (read in full).
  await v.cmd.hset(v.keys.snapshot('zones'), 'z3', JSON.stringify({ id: 'z3', version: { epoch: 1, seq: 2 }, data: zone(33) }));
  await v.cmd.hset(v.keys.snapshot('zones'), 'z4', JSON.stringify({ version: { epoch: 2, seq: 1 }, id: 'z4', data: zone(44) }));
  const parses: string[] = [];
  const parse = JSON.parse;
  JSON.parse = (text: string, ...rest: never[]) => (parses.push(text), parse(text, ...rest));
  try {
    await mirror.repair();
  } finally {
    JSON.parse = parse;
  }
  t.same(mirror.get('z3'), zone(33), 'the newer one is picked up');
  t.same(mirror.get('z4'), zone(44), 'so is the one in another key order');
  t.equal(parses.filter((p) => p.includes('"zone"')).length, 2, 'and only those two were parsed, not the eighteen unchanged');
});

// An actor respawned elsewhere republishes what its predecessor did under its new epoch: stored
// (a late write of the old owner is then refused), not announced (every node would parse it
// and recompute from it to no effect).
t.test('snapshots: the same data under a newer version is stored but not announced', async (t) => {
  const v = await freshValkey(t);
  const store = new SnapshotStore(v, 'zones');
  const heard: Array<[string, number]> = [];
  await store.subscribe((s) => heard.push([`${s.version.epoch}.${s.version.seq}`, s.data?.serial ?? -1]));
  const settle = async (n: number) => {
    for (let i = 0; i < 50 && heard.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
  };
  t.ok(await store.put({ id: 'a', version: { epoch: 1, seq: 1 }, data: zone(1) }));
  await settle(1);
  t.ok(await store.put({ id: 'a', version: { epoch: 2, seq: 1 }, data: zone(1) }), 'the successor republishes the same zone: stored');
  t.same((await store.get('a'))?.version, { epoch: 2, seq: 1 });
  t.notOk(await store.put({ id: 'a', version: { epoch: 1, seq: 2 }, data: zone(9) }), 'so the old owner cannot write after it');
  t.ok(await store.put({ id: 'a', version: { epoch: 2, seq: 2 }, data: zone(2) }), 'then a change');
  await settle(2);
  t.same(heard, [['1.1', 1], ['2.2', 2]], 'announced: the first and the change, not the same data again');
  t.ok(await store.put({ id: 'a', version: { epoch: 3, seq: 1 } }), 'a tombstone');
  t.ok(await store.put({ id: 'a', version: { epoch: 4, seq: 1 } }), 'the same tombstone again');
  await settle(3);
  t.same(heard.slice(2), [['3.1', -1]]);
  // An entry stored in another form (not written by put) is compared by version only, and announced.
  await v.cmd.hset(v.keys.snapshot('zones'), 'b', JSON.stringify({ version: { epoch: 1, seq: 1 }, id: 'b', data: zone(5) }));
  t.ok(await store.put({ id: 'b', version: { epoch: 1, seq: 2 }, data: zone(5) }));
  t.notOk(await store.put({ id: 'b', version: { epoch: 1, seq: 2 }, data: zone(5) }), 'not newer');
  await settle(4);
  t.same(heard.at(-1), ['1.2', 5]);
});

t.test('getMany takes the copy a node holds when its version is the stored one, and reads the rest', async (t) => {
  const v = await freshValkey(t);
  const store = new SnapshotStore(v, 'zones');
  for (let i = 0; i < 3; i++) t.ok(await store.put({ id: `z${i}`, version: { epoch: 1, seq: 1 }, data: zone(i) }));
  const held = new Map([
    ['z0', { id: 'z0', version: { epoch: 1, seq: 1 }, data: zone(0) }], // current
    ['z1', { id: 'z1', version: { epoch: 1, seq: 0 }, data: zone(-1) }], // older than stored
  ]);
  t.ok(await store.put({ id: 'z2', version: { epoch: 1, seq: 2 }, data: zone(22) }), 'z2 moved on');
  held.set('z2', { id: 'z2', version: { epoch: 1, seq: 1 }, data: zone(2) });
  const parses: string[] = [];
  const parse = JSON.parse;
  JSON.parse = (text: string, ...rest: never[]) => (parses.push(text), parse(text, ...rest));
  let got: Map<string, { data?: unknown }>;
  try {
    got = await store.getMany(['z0', 'z1', 'z2', 'none'], (id) => held.get(id));
  } finally {
    JSON.parse = parse;
  }
  t.equal(got.get('z0'), held.get('z0'), 'the held copy, as it is, when the versions match');
  t.same(got.get('z1')?.data, zone(1), 'a held copy older than the stored one: the stored one');
  t.same(got.get('z2')?.data, zone(22), 'a held copy of an older sequence: the stored one');
  t.notOk(got.has('none'), 'none stored: none returned');
  t.equal(parses.filter((p) => p.includes('"id":"z0"')).length, 0, 'the matching one was not parsed');
});
