// Partitions for real: `npm run bench:partition` at its suite size (30 s of network faults, one
// every 5 s, against `cluster up --netns`: nodes, PostgreSQL and Valkey in namespaces of their
// own, faults as nftables rules inside them). The figures are for full runs; the invariants
// hold at any size: nothing acknowledged is lost, no actor runs twice, no stale owner writes,
// a node cut off from Valkey past its lease fences itself, and every node rejoins.
import t from 'tap';
import { runBenchSmoke } from '../harness/bench.ts';

t.test('bench:partition: 30 s of network faults lose nothing, run no actor twice, and every node fences and rejoins', async (t) => {
  const run = await runBenchSmoke('partition');
  if (run.code !== 0) t.comment(run.stderr);
  t.equal(run.code, 0, 'it exits 0');
  t.same(run.bad, [], 'no promised field is missing or not a number');
  const r = run.result ?? {};
  t.ok(Number(r.faults) >= 5, `every 5 s a fault (${r.faults})`);
  t.equal(r.lost_writes, 0, 'no acknowledged write lost');
  t.equal(r.duplicates, 0, 'no actor ran on two nodes');
  t.equal(r.stale_writes, 0, 'no fenced write from a stale owner accepted');
  t.equal(r.unfenced, 0, 'every node cut off from Valkey past its lease fenced itself');
  t.equal(r.not_rejoined, 0, 'every faulted node held its lease again after healing');
});
