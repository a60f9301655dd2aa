// Target health is announced only when a reported value changed: a connector reports every
// target on each (re)connect, and in a reconnect storm the unchanged reports woke every route
// of every moved site once more on every node.
import t from 'tap';
import { targetHealth } from '../../persistence/actor-stores.ts';
import { freshValkey } from '../harness/services.ts';

t.test('a health report is recorded, and announced only when a value changed', async (t) => {
  const v = await freshValkey(t);
  const health = targetHealth(v);
  const heard: unknown[] = [];
  await v.subscribe('health', (m) => heard.push(m));
  const settle = async (n: number) => {
    for (let i = 0; i < 50 && heard.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50)); // and nothing more comes
  };

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
