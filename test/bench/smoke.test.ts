// Every benchmark runs here at its smoke size (BENCH_SMOKE=1: a few actors, a second of
// load, one round), so none can break unseen; its JSON line must carry every field it
// promises, as a number. Only the fields are checked: figures belong to full runs. The chaos
// benchmark needs the local cluster's fixed addresses and runs in test/devenv/up.test.ts.
// bench:scale also profiles its storm (BENCH_WINDOW_PROFILE), samples its nodes' heaps
// (BENCH_HEAP_PROFILE) and its survivors' allocations through the storm
// (BENCH_STORM_ALLOCATIONS), and bench:tunnel records its phases with perf (BENCH_PERF), so
// those diagnoses are kept working.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { profileLabel, topFrames, type CpuProfile } from '../../bench/cpu-top.ts';
import { topAllocators, type HeapProfile } from '../../bench/heap-top.ts';
import { readPhase } from '../../bench/perf-top.ts';
import { runBenchSmoke } from '../harness/bench.ts';

for (const name of ['failover', 'api', 'tunnel', 'ingress', 'dns', 'auth', 'quiet', 'scale'] as const) {
  t.test(`bench:${name} runs to the end and prints every field it promises`, async (t) => {
    const profiles = name === 'scale' ? mkdtempSync(join(tmpdir(), 'storm-profiles-')) : undefined;
    if (profiles) t.teardown(() => rmSync(profiles, { recursive: true, force: true }));
    const perf = name === 'tunnel' ? mkdtempSync(join(tmpdir(), 'tunnel-perf-')) : undefined;
    if (perf) t.teardown(() => rmSync(perf, { recursive: true, force: true }));
    const run = await runBenchSmoke(name, profiles ? { BENCH_WINDOW_PROFILE: profiles, BENCH_HEAP_PROFILE: profiles, BENCH_STORM_ALLOCATIONS: profiles } : perf ? { BENCH_PERF: perf } : {});
    if (run.code !== 0) t.comment(run.stderr);
    t.equal(run.code, 0, 'it exits 0');
    t.equal(run.result?.bench, name, 'its last line is its JSON summary');
    t.same(run.bad, [], 'no promised field is missing or not a number');
    if (name === 'failover') t.equal(run.result?.duplicates, 0, 'no actor ran on two nodes at once');
    if (perf) {
      for (const [phase, roles] of [['haproxy', ['haproxy']], ['tunnel', ['node', 'connector']], ['floor', ['node', 'connector']]] as const) {
        const read = readPhase(join(perf, phase), 5);
        for (const role of roles) t.ok((read.find((r) => r.role === role)?.usPerRequest ?? 0) > 0, `${phase}: perf recorded the ${role}'s CPU`);
      }
    }
    if (profiles) {
      const files = readdirSync(profiles).filter((f) => f.endsWith('-storm.cpuprofile'));
      t.equal(files.length, 2, 'a CPU profile of each survivor through the storm');
      for (const f of files) {
        const p = JSON.parse(readFileSync(join(profiles, f), 'utf8')) as CpuProfile;
        t.equal(profileLabel(p), 'node', `${f}: read as a node's`);
        t.ok(topFrames(p, 5).length > 0, `${f}: has samples`);
      }
      const heaps = readdirSync(profiles).filter((f) => f.endsWith('.heapprofile') && !f.includes('-storm-allocated'));
      t.equal(heaps.length, 3, 'a heap profile of each node');
      for (const f of heaps) t.ok(topAllocators(JSON.parse(readFileSync(join(profiles, f), 'utf8')) as HeapProfile, 5).totalMb > 0, `${f}: holds live samples`);
      const allocated = readdirSync(profiles).filter((f) => f.endsWith('-storm-allocated.heapprofile'));
      t.equal(allocated.length, 2, 'an allocation profile of each survivor through the storm');
      for (const f of allocated) t.ok(topAllocators(JSON.parse(readFileSync(join(profiles, f), 'utf8')) as HeapProfile, 5).totalMb > 0, `${f}: holds samples`);
    }
  });
}
