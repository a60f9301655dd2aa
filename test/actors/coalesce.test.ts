// Coalesced: recomputations asked for in a burst are done once per key.
import t from 'tap';
import { Coalesced } from '../../core/coalesce.ts';

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('keys added within the window are flushed once each, with their last value', async (t) => {
  const flushed: Array<Array<[string, string]>> = [];
  const c = new Coalesced<string, string>(20, (due) => flushed.push([...due]));
  c.add('resource-a', 'site-1');
  c.add('resource-b', 'site-1');
  c.add('resource-a', 'site-2'); // the same resource woken again before the window closed
  t.same(flushed, [], 'nothing before the window closes');
  await wait(60);
  t.same(flushed, [[['resource-a', 'site-2'], ['resource-b', 'site-1']]], 'one flush, each key once, its last value');
  c.add('resource-a', 'site-3');
  await wait(60);
  t.same(flushed.at(-1), [['resource-a', 'site-3']], 'a later burst is a window of its own');
  t.equal(flushed.length, 2);
});

t.test('stopping drops what is due', async (t) => {
  let flushes = 0;
  const c = new Coalesced<string>(20, () => flushes++);
  c.add('zone', undefined);
  c.stop();
  await wait(60);
  t.equal(flushes, 0);
});

t.test('with no window, what one turn of the event loop added is flushed once, at the end of that turn', async (t) => {
  const flushed: string[][] = [];
  const c = new Coalesced<string, string>(0, (due) => flushed.push([...due.keys()]));
  c.add('resource-a', 'site-1');
  c.add('resource-a', 'site-1');
  c.add('resource-b', 'site-2');
  await new Promise((r) => setImmediate(r));
  t.same(flushed, [['resource-a', 'resource-b']]);
  c.add('resource-a', 'site-1');
  c.stop();
  await new Promise((r) => setTimeout(r, 10));
  t.equal(flushed.length, 1, 'stopped before its turn ended: dropped');
});
