// The figures `cluster chaos` reports, computed from recorded samples (pure functions).
import t from 'tap';
import { ActorObserver } from '../../devenv/chaos/observer.ts';
import { chargedTo, outages, percentile, seededRandom, type ChaosEvent } from '../../devenv/chaos/report.ts';

const sample = (at: number, ok: boolean) => ({ at, ms: 10, ok, ...(ok ? {} : { error: 'x' }) });

t.test('an outage runs from the first failed request to the next good one, and one still open ends with the traffic', async (t) => {
  const samples = [sample(0, true), sample(100, false), sample(50, true), sample(150, false), sample(400, true), sample(500, false), sample(600, false)];
  t.same(outages(samples, 900), [
    { from: 100, seenAt: 110, to: 400, failed: 2 },
    { from: 500, seenAt: 510, to: 900, failed: 2 },
  ]);
  t.same(outages([sample(0, true), sample(50, true)], 100), [], 'no failure, no outage');
});

t.test('each outage is charged to the disruption under which its first failure was seen', async (t) => {
  const ev = (n: number, at: number): ChaosEvent => ({ n, mode: 'kill', node: 'node-1', at, holdMs: 0, actors: 1, recoveredMs: 1, backMs: 1 });
  const events = [ev(1, 1000), ev(2, 5000)];
  // A request sent at 4,900 ms to a node frozen at 5,000 ms times out at 7,900 ms: the freeze's doing.
  const samples = [sample(400, true), { at: 1200, ms: 20, ok: false, error: 'x' }, sample(1500, true), { at: 4900, ms: 3000, ok: false, error: 'timeout' }, sample(8000, true)];
  const all = outages(samples, 9000);
  t.same(all.map((o) => o.seenAt), [1220, 7900], 'seen when the failing request ended');
  t.same(chargedTo(events, all, 0, (o) => o.seenAt), [all[0]], 'a quick failure after the first disruption is its');
  t.same(chargedTo(events, all, 1, (o) => o.seenAt), [all[1]], 'the timeout that began before the second disruption is the second\'s');
});

t.test('percentiles are nearest-rank, and a seed replays the same draws', async (t) => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
  t.equal(percentile(xs, 50), 50);
  t.equal(percentile(xs, 99), 99);
  t.equal(percentile(xs, 100), 100);
  t.equal(percentile([], 99), 0);
  const a = seededRandom(7);
  const b = seededRandom(7);
  const draws = Array.from({ length: 5 }, () => a());
  t.same(Array.from({ length: 5 }, () => b()), draws, 'same seed, same victims');
  t.ok(draws.every((x) => x >= 0 && x < 1));
  t.not(seededRandom(8)(), draws[0], 'another seed, other draws');
});

t.test('an actor is down only while no node with a lease runs it, not while a draining node hands it over', async (t) => {
  const obs = new ActorObserver({ nodes: [], clusterSecret: 'x' });
  const at = (ms: number, byNode: Record<string, string[]>, healthy = Object.keys(byNode)) =>
    obs.record({ at: ms, byNode: new Map(Object.entries(byNode).map(([n, a]) => [n, new Set(a)])), healthy: new Set(healthy) });
  obs.watch(['site/a', 'resource/b']);
  at(0, { 'node-1': ['site/a', 'resource/b'] });
  at(250, { 'node-1': ['site/a'], 'node-2': ['resource/b'] }); // handed over between samples: never down
  at(500, { 'node-2': ['resource/b'] }); // node-1 frozen: site/a runs nowhere
  at(750, { 'node-1': ['site/a'], 'node-2': ['resource/b'] }, ['node-2']); // thawed without a lease: still down
  at(1000, { 'node-2': ['resource/b', 'site/a'] });
  t.same(obs.gaps, [{ actor: 'site/a', from: 500, to: 1000 }], 'one gap, from the first sample that missed it to the first that saw it again');
  at(1250, { 'node-2': ['site/a'] });
  t.same(obs.openGaps(1400), [{ actor: 'resource/b', from: 1250, to: 1400 }], 'a gap not yet closed is reported as open');
  t.same(obs.duplicates, new Set(), 'no actor listed twice in a row');
});
