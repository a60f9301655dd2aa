// npm run bench:chaos
// `cluster up` in a scratch directory, then `cluster chaos` against it for 120 s (a disruption
// every 10 s: SIGKILL, SIGSTOP or restart of a random node) with a fixed seed, so two runs
// break the same nodes the same way. The chaos timeline goes to stderr; the last line on
// stdout is its JSON summary. Exits non-zero if a write was lost or an actor ran twice.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChaos } from '../devenv/chaos/run.ts';
import { launchLocalCluster } from '../devenv/local-cluster.ts';
import { log } from './lib.ts';
import { size } from './sizes.ts';

const DURATION_S = size('DURATION', 120, 8);
const KILL_EVERY_S = size('KILL_EVERY', 10, 3);
const SEED = Number(process.env.BENCH_SEED ?? 20261124);

const dir = mkdtempSync(join(tmpdir(), 'bench-chaos-'));
chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user and must reach its directory
let code = 1;
const cluster = await launchLocalCluster({ dir });
try {
  log(`cluster up; chaos for ${DURATION_S} s, seed ${SEED}`);
  const summary = await runChaos({ dataDir: cluster.dataDir, durationS: DURATION_S, killEveryS: KILL_EVERY_S, modes: ['kill', 'stop', 'restart'], seed: SEED, say: log });
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  code = summary.lost_writes > 0 || summary.duplicates > 0 || summary.stale_writes > 0 ? 1 : 0;
} catch (err) {
  log((err as Error).stack ?? String(err));
} finally {
  await cluster.proc.stop('SIGTERM', 60_000);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
