import t from 'tap';
import { placeOn } from '../../supervisors/placement.ts';

t.test('rendezvous placement spreads actors evenly and moves only the dead node\'s share', async (t) => {
  const nodes = ['node-1', 'node-2', 'node-3'];
  const keys = Array.from({ length: 3000 }, (_, i) => `probe/${i}`);
  const before = new Map(keys.map((k) => [k, placeOn(k, nodes)!]));
  const counts = nodes.map((n) => [...before.values()].filter((v) => v === n).length);
  for (const c of counts) t.ok(c > 850 && c < 1150, `balanced: ${counts.join(', ')}`);
  const after = new Map(keys.map((k) => [k, placeOn(k, ['node-1', 'node-3'])!]));
  const moved = keys.filter((k) => before.get(k) !== after.get(k));
  t.ok(moved.every((k) => before.get(k) === 'node-2'), 'only node-2\'s actors moved');
  t.equal(moved.length, counts[1]);
  t.equal(placeOn('x', []), undefined);
  t.equal(placeOn('x', ['b', 'a']), placeOn('x', ['a', 'b']), 'order of the node list does not matter');
});
