// Loads asked for in one turn of the event loop become one fetch (a reconnect storm's site and
// resource actors loading at once); each caller still gets its own row, or undefined.
import t from 'tap';
import { batchLoader, pooledLoader, uuidsOnly } from '../../persistence/batch-load.ts';

function recorder(fail?: (ids: string[]) => boolean) {
  const calls: string[][] = [];
  const fetch = async (ids: string[]) => {
    calls.push(ids);
    if (fail?.(ids)) throw new Error('database gone');
    return new Map(ids.filter((id) => !id.startsWith('missing')).map((id) => [id, `row ${id}`]));
  };
  return { calls, fetch };
}

t.test('one fetch per turn, every caller answered, duplicates asked once', async (t) => {
  const r = recorder();
  const load = batchLoader(r.fetch);
  const got = await Promise.all(['a', 'b', 'a', 'missing-1'].map(load));
  t.same(got, ['row a', 'row b', 'row a', undefined], 'a missing row is undefined, not an error');
  t.same(r.calls, [['a', 'b', 'missing-1']]);
  t.same(await load('c'), 'row c', 'a later turn is a batch of its own');
  t.equal(r.calls.length, 2);
});

t.test('a batch larger than the limit is split; a failed fetch fails only its callers', async (t) => {
  const r = recorder((ids) => ids.includes('bad'));
  const load = batchLoader(r.fetch, 2);
  const got = await Promise.allSettled(['a', 'b', 'bad', 'c'].map(load));
  t.same(r.calls, [['a', 'b'], ['bad', 'c']]);
  t.same(got.map((g) => g.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected']);
  t.same(await load('c'), 'row c', 'the loader goes on after a failure');
});

t.test('one loader per pool', async (t) => {
  const seen: Array<[string, string[]]> = [];
  const load = pooledLoader(async (pool: { name: string }, ids: string[]) => {
    seen.push([pool.name, ids]);
    return new Map(ids.map((id) => [id, `${pool.name}:${id}`]));
  });
  const one = { name: 'one' };
  const two = { name: 'two' };
  t.same(await Promise.all([load(one, 'x'), load(two, 'x'), load(one, 'y')]), ['one:x', 'two:x', 'one:y']);
  t.same(seen, [['one', ['x', 'y']], ['two', ['x']]]);
});

t.test('ids that cannot be uuids are left out of the statement', async (t) => {
  t.same(uuidsOnly(['6f1c0f7e-4a9b-4a39-8d0e-2b8c7d6e5f40', 'site-1', "x' OR 1=1", '']), ['6f1c0f7e-4a9b-4a39-8d0e-2b8c7d6e5f40']);
});
