// `cluster chaos`: argument checking and exit status around devenv/chaos/run.ts.
import { DEFAULT_DATA_DIR } from '../devenv/control.ts';
import { runChaos } from '../devenv/chaos/run.ts';
import { NETWORK_MODES } from '../devenv/chaos/network.ts';
import type { Mode } from '../devenv/chaos/report.ts';
import { UsageError } from './usage-error.ts';

const MODES: readonly Mode[] = ['kill', 'stop', 'restart', 'valkey-failover', ...NETWORK_MODES];
/** The modes run when --modes is not given (valkey-failover needs `cluster up --valkey-replica`). */
const DEFAULT_MODES: readonly Mode[] = ['kill', 'stop', 'restart'];

function seconds(flag: string, raw: string | undefined, fallback: number, min: number): number {
  const v = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(v) || v < min || v > 86_400) throw new UsageError(`--${flag} must be a number of seconds, at least ${min}`);
  return v;
}

/** Runs it; the exit status is 1 when a write was lost, an actor ran twice, a stale owner wrote, or a node cut off did not fence itself or rejoin. */
export async function chaosCommand(args: { duration?: string; killEvery?: string; modes?: string; seed?: string; dataDir?: string }): Promise<number> {
  const durationS = seconds('duration', args.duration, 60, 5);
  const killEveryS = seconds('kill-every', args.killEvery, 10, 3);
  const modes = (args.modes ?? DEFAULT_MODES.join(',')).split(',').map((m) => m.trim()) as Mode[];
  const bad = modes.filter((m) => !MODES.includes(m));
  if (bad.length || modes.length === 0) throw new UsageError(`--modes takes a list of ${MODES.join(', ')} (got ${bad.join(', ') || 'nothing'})`);
  const seed = args.seed === undefined ? Math.floor(Math.random() * 1_000_000) : Number(args.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new UsageError('--seed must be a non-negative integer');
  const dataDir = args.dataDir ?? DEFAULT_DATA_DIR;
  const say = (line: string) => process.stdout.write(`${line}\n`);
  say(`chaos: ${durationS} s, a disruption every ${killEveryS} s (${modes.join(', ')}), seed ${seed}`);
  const summary = await runChaos({ dataDir, durationS, killEveryS, modes, seed, say });
  const broken = summary.lost_writes > 0 || summary.duplicates > 0 || summary.stale_writes > 0 || summary.unfenced > 0 || summary.not_rejoined > 0;
  if (broken) say(`FAILED: ${summary.lost_writes} acknowledged writes lost, ${summary.duplicates} duplicate actors, ${summary.stale_writes} stale fenced writes, ${summary.unfenced} nodes cut off from Valkey that did not fence themselves, ${summary.not_rejoined} that did not rejoin`);
  say(JSON.stringify(summary));
  return broken ? 1 : 0;
}
