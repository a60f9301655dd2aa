// Every benchmark runs here at its smoke size (BENCH_SMOKE=1: a few actors, a second of
// load, one round), so none can break unseen; its JSON line must carry every field it
// promises, as a number. Only the fields are checked: figures belong to full runs. The chaos
// benchmark needs the local cluster's fixed addresses and runs in test/devenv/up.test.ts.
import t from 'tap';
import { runBenchSmoke } from '../harness/bench.ts';

for (const name of ['failover', 'api', 'tunnel', 'dns', 'auth', 'quiet', 'scale'] as const) {
  t.test(`bench:${name} runs to the end and prints every field it promises`, async (t) => {
    const run = await runBenchSmoke(name);
    if (run.code !== 0) t.comment(run.stderr);
    t.equal(run.code, 0, 'it exits 0');
    t.equal(run.result?.bench, name, 'its last line is its JSON summary');
    t.same(run.bad, [], 'no promised field is missing or not a number');
    if (name === 'failover') t.equal(run.result?.duplicates, 0, 'no actor ran on two nodes at once');
  });
}
