// npm run bench:chaos
// `cluster up` in a scratch directory, then `cluster chaos` against it for 120 s (a disruption
// every 10 s: SIGKILL, SIGSTOP or restart of a random node) with a fixed seed, so two runs
// break the same nodes the same way. The chaos timeline goes to stderr; the last line on
// stdout is its JSON summary. Exits non-zero if a write was lost, an actor ran twice or a
// stale owner wrote.
import { runChaos } from '../devenv/chaos/run.ts';
import { againstLocalCluster, log } from './lib.ts';
import { size } from './sizes.ts';

const DURATION_S = size('DURATION', 120, 8);
const KILL_EVERY_S = size('KILL_EVERY', 10, 3);
const SEED = Number(process.env.BENCH_SEED ?? 20261124);

await againstLocalCluster({}, async (dataDir) => {
  log(`cluster up; chaos for ${DURATION_S} s, seed ${SEED}`);
  const summary = await runChaos({ dataDir, durationS: DURATION_S, killEveryS: KILL_EVERY_S, modes: ['kill', 'stop', 'restart'], seed: SEED, say: log });
  return { summary, broken: summary.lost_writes > 0 || summary.duplicates > 0 || summary.stale_writes > 0 };
});
