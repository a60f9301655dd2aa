import { once } from 'node:events';
import t from 'tap';
import { sql } from '../../persistence/db.ts';
import { z } from 'zod';
import { claimEpochs, fencedWrite, fenceHolds, fenceMoved } from '../../persistence/epochs.ts';
import { ownershipNode } from '../harness/ownership.ts';
import { freshClusterName, freshMigratedDb } from '../harness/services.ts';

t.test('three nodes claiming the same actor at once: exactly one wins, every time', async (t) => {
  const { db } = await freshMigratedDb(t, 6);
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const nodes = await Promise.all(['a', 'b', 'c'].map((id) => ownershipNode(t, { id, db, clusterName, valkeyUrl })));
  const rounds = 50;
  let exactlyOne = 0;
  for (let round = 0; round < rounds; round++) {
    const actor = `race-${round}`;
    const results = await Promise.all(nodes.map((n) => n.ownership.claim('probe', [actor])));
    const winners = nodes.filter((_, i) => results[i]!.has(actor));
    if (winners.length === 1) exactlyOne++;
    const owner = await nodes[0]!.ownership.ownerOf('probe', actor, { fresh: true });
    if (owner?.node !== winners[0]?.id) t.fail(`round ${round}: owner ${owner?.node} but winner ${winners[0]?.id}`);
  }
  t.equal(exactlyOne, rounds, `exactly one winner in all ${rounds} rounds`);
  const epochs = await db.anyFirst(sql.unsafe`SELECT epoch FROM actor_epochs WHERE kind = 'probe'`);
  t.same([...new Set(epochs.map(Number))], [1], 'only winners took an epoch');

  // Newest wins (sites): a forced claim takes the actor from a live owner, who is told.
  const [a, b] = nodes;
  const won = await a!.ownership.claim('site', ['s1']);
  t.equal(won.get('s1'), 1);
  const told = new Promise((resolve) => {
    const seen = (c: { node: string }) => c.node === 'b' && (a!.ownership.off('change', seen), resolve(c));
    a!.ownership.on('change', seen);
  });
  const taken = await b!.ownership.claim('site', ['s1'], { force: true });
  t.equal(taken.get('s1'), 2, 'the newest claim gets the next epoch');
  t.match(await told, { type: 'claimed', kind: 'site', ids: ['s1'], node: 'b' }, 'the old owner hears of it (and stops its copy)');
  t.equal((await a!.ownership.ownerOf('site', 's1', { fresh: true }))?.node, 'b');
  await t.rejects(fencedWrite(db, { kind: 'site', id: 's1', epoch: 1 }, async () => 'x'), { code: 'CLUSTER_ERR_ACTOR_FENCED' }, 'the old owner can no longer write');

  // A claim whose announcement was lost (the subscriber away): the cached owner is stale until
  // the subscription is made again, then forgotten, and the actor host is told to look again.
  const c = nodes[2]!;
  t.equal((await a!.ownership.ownerOf('site', 's1'))?.node, 'b', 'a has b cached');
  await a!.valkey.cmd.set(a!.valkey.keys.owner('site', 's1'), JSON.stringify({ node: 'c', inc: c.membership.incarnation, epoch: '3' }));
  t.equal((await a!.ownership.ownerOf('site', 's1'))?.node, 'b', 'c took it without a word: a still names b');
  const resubscribed = Promise.race([once(a!.ownership, 'resubscribed'), new Promise((r) => setTimeout(r, 5000))]);
  const clients = (await a!.valkey.cmd.client('LIST') as string).split('\n').filter((l) => l.includes(` name=${clusterName} `) && / sub=[1-9]/.test(l));
  for (const l of clients) await a!.valkey.cmd.client('KILL', 'ID', /\bid=(\d+)/.exec(l)![1]!);
  await resubscribed;
  t.equal((await a!.ownership.ownerOf('site', 's1'))?.node, 'c', 'once subscribed again, a reads the owner afresh');

  // A stale epoch cannot write; the current one can.
  await t.rejects(fencedWrite(db, { kind: 'probe', id: 'race-0', epoch: 0 }, async () => 'x'), { code: 'CLUSTER_ERR_ACTOR_FENCED', fields: { currentEpoch: 1 } });
  t.equal(await fencedWrite(db, { kind: 'probe', id: 'race-0', epoch: 1 }, async () => 'written'), 'written');
});

t.test('one fenced statement: the current epoch writes, a stale one touches nothing and is told why', async (t) => {
  const { db } = await freshMigratedDb(t);
  await db.query(sql.unsafe`CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)`);
  await db.query(sql.unsafe`INSERT INTO counters VALUES (1, 0)`);
  const bump = (epoch: number, id = 1) =>
    db.maybeOneFirst(sql.type(z.object({ n: z.number() }))`UPDATE counters SET n = n + 1 WHERE id = ${id} AND ${fenceHolds({ kind: 'dns-zone', id: 'z', epoch })} RETURNING n`);
  t.equal((await claimEpochs(db, 'dns-zone', ['z'], { node: 'a', incarnation: 1 })).get('z'), 1);
  t.equal(await bump(1), 1, 'the owner of epoch 1 writes');
  t.equal((await claimEpochs(db, 'dns-zone', ['z'], { node: 'b', incarnation: 1 })).get('z'), 2, 'another node takes the zone');
  t.equal(await bump(1), null, 'the old owner\'s statement touches nothing');
  t.match(await fenceMoved(db, { kind: 'dns-zone', id: 'z', epoch: 1 }), { code: 'CLUSTER_ERR_ACTOR_FENCED', fields: { currentEpoch: 2 } }, 'and is told the epoch moved on');
  t.equal(await bump(2), 2, 'the new owner writes');
  t.equal(await bump(2, 9), null, 'a missing row touches nothing either');
  t.equal(await fenceMoved(db, { kind: 'dns-zone', id: 'z', epoch: 2 }), undefined, 'but the fence holds: the row was not there');
  t.equal(await db.oneFirst(sql.unsafe`SELECT n FROM counters WHERE id = 1`), 2, 'exactly the current owners\' writes landed');
});
