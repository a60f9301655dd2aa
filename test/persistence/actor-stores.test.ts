// What the site-side stores announce: every announcement on `health` or `sites` recomputes the
// site's routes on every node, so one that can change no route is not made. Target health is
// announced only when a reported value changed (a connector reports every target on each
// (re)connect); a standby's record cleared because its own node took the site is not.
import t from 'tap';
import { siteStandbys, targetHealth } from '../../persistence/actor-stores.ts';
import { freshValkey } from '../harness/services.ts';

/** What a subscriber heard on `channel`, and a wait until it has heard `n` messages and nothing more comes. */
async function listen(v: Awaited<ReturnType<typeof freshValkey>>, channel: 'health' | 'sites') {
  const heard: unknown[] = [];
  await v.subscribe(channel, (m) => heard.push(m));
  const settle = async (n: number) => {
    for (let i = 0; i < 50 && heard.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
  };
  return { heard, settle };
}

t.test('a health report is recorded, and announced only when a value changed', async (t) => {
  const v = await freshValkey(t);
  const health = targetHealth(v);
  const { heard, settle } = await listen(v, 'health');

  await health.publish('s1', [{ id: 't1', healthy: true }, { id: 't2', healthy: false }]);
  await settle(1);
  t.same(heard, [{ siteId: 's1', targets: [{ id: 't1', healthy: true }, { id: 't2', healthy: false }] }], 'a first report is news');
  t.same([...(await health.read(['s1']))], [['t1', true], ['t2', false]], 'and recorded');

  await health.publish('s1', [{ id: 't2', healthy: false }, { id: 't1', healthy: true }]);
  await settle(2);
  t.equal(heard.length, 1, 'the same values again (a reconnect): recorded, not announced');

  await health.publish('s1', [{ id: 't1', healthy: true }, { id: 't2', healthy: true }]);
  await settle(2);
  t.same(heard.at(-1), { siteId: 's1', targets: [{ id: 't1', healthy: true }, { id: 't2', healthy: true }] }, 'one value changed: announced');
  t.same([...(await health.read(['s1']))], [['t1', true], ['t2', true]]);

  await health.publish('s1', [{ id: 't3', healthy: true }]);
  await settle(3);
  t.equal(heard.length, 3, 'a target never reported before is news');
  await health.publish('s1', []);
  await settle(4);
  t.equal(heard.length, 3, 'an empty report changes nothing');
});

t.test('standby records: set and cleared with an announcement, except a clear that can change no route', async (t) => {
  const v = await freshValkey(t);
  const standbys = siteStandbys(v);
  const { heard, settle } = await listen(v, 'sites');
  await standbys.set('s1', 'node-2', 'session-a');
  await settle(1);
  t.same([...(await standbys.read(['s1']))], [['s1', 'node-2']]);
  t.equal(heard.length, 1, 'a new standby is announced');
  await standbys.clear('s1', 'node-2', 'session-old');
  await settle(2);
  t.same([...(await standbys.read(['s1']))], [['s1', 'node-2']], "another session's clear leaves a newer standby");
  await standbys.clear('s1', 'node-2', 'session-a', { announce: false });
  await settle(2);
  t.same([...(await standbys.read(['s1']))], [], 'cleared');
  t.equal(heard.length, 2, 'the promotion clear is not announced');
  await standbys.set('s1', 'node-3', 'session-b');
  await standbys.clear('s1', 'node-3', 'session-b');
  await settle(4);
  t.equal(heard.length, 4, 'a standby gone is announced');
});
