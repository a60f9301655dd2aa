// npm run bench:cpu-top -- DIR [N] [--window SECONDS] [--inclusive]
// Where the time went in each .cpuprofile in DIR (written by node --cpu-prof; a benchmark
// run with BENCH_CPU_PROFILE=DIR writes one per node and connector process): the top N
// functions by self time, with their share of the samples, one table per process, labelled
// by the script it ran. --window reads only the busiest SECONDS of each process (a load
// phase, not start-up); --inclusive adds the top N by time spent in a function and what it
// called. Reads and prints only.
//
// The profiler samples wall time: a syscall that wakes another process on a shared core
// (a socket write to a local client) is charged for the time the woken process then runs.
// Per-process CPU from /proc (bench:tunnel prints it per request) tells user from system time.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }>;
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

export interface Frame {
  name: string;
  /** file (relative to the repository when it is ours) and line */
  where: string;
  selfMs: number;
  share: number;
}

/** Self time per function (same name and place summed), largest first; `root` strips our checkout's path. */
export function topFrames(p: CpuProfile, n: number, root = ''): Frame[] {
  const byNode = new Map(p.nodes.map((x) => [x.id, x]));
  // Self time: each sample's delta charged to the node it landed in.
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0));
  // Shares of the time the process was busy: waiting for the event loop ((idle)) is not work.
  for (const [id] of self) if (byNode.get(id)?.callFrame.functionName === '(idle)') self.delete(id);
  const total = [...self.values()].reduce((a, b) => a + b, 0) || 1;
  const merged = new Map<string, Frame>();
  for (const [id, us] of self) {
    const f = byNode.get(id)?.callFrame;
    if (!f) continue;
    const { name, where } = describe(f, root);
    const key = `${name}@${where}`;
    const m = merged.get(key) ?? { name, where, selfMs: 0, share: 0 };
    m.selfMs += us / 1000;
    merged.set(key, m);
  }
  return [...merged.values()]
    .map((m) => ({ ...m, selfMs: Math.round(m.selfMs), share: Math.round((m.selfMs * 1000 * 1000) / total) / 10 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, n);
}

/** The profile cut to its busiest `seconds` (most time not idle): a load phase of a whole run. */
export function busiestWindow(p: CpuProfile, seconds: number): CpuProfile {
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  const idle = new Set(p.nodes.filter((x) => x.callFrame.functionName === '(idle)').map((x) => x.id));
  const at: number[] = [];
  let t = p.startTime;
  for (const d of deltas.slice(0, samples.length)) at.push((t += d));
  const cost = (i: number) => (idle.has(samples[i]!) ? 0 : (deltas[i + 1] ?? deltas[i] ?? 0));
  let [best, from, to, busy, j] = [-1, 0, 0, 0, 0];
  for (let i = 0; i < samples.length; i++) {
    busy += cost(i);
    while (at[i]! - at[j]! > seconds * 1e6) busy -= cost(j++);
    if (busy > best) [best, from, to] = [busy, j, i + 1];
  }
  return { ...p, samples: samples.slice(from, to), timeDeltas: deltas.slice(from, to + 1), startTime: at[from] ?? p.startTime, endTime: at[to - 1] ?? p.endTime };
}

/** Time in each function and everything it called (a recursive function counted once per sample), largest first. */
export function inclusiveFrames(p: CpuProfile, n: number, root = ''): Frame[] {
  const byNode = new Map(p.nodes.map((x) => [x.id, x]));
  const parent = new Map<number, number>();
  for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  const total = new Map<string, Frame>();
  let busy = 0;
  for (let i = 0; i < samples.length; i++) {
    if (byNode.get(samples[i]!)?.callFrame.functionName === '(idle)') continue;
    const us = deltas[i + 1] ?? deltas[i] ?? 0;
    busy += us;
    const seen = new Set<string>();
    for (let id: number | undefined = samples[i]; id !== undefined; id = parent.get(id)) {
      const f = byNode.get(id)?.callFrame;
      if (!f || f.functionName === '(root)') continue;
      const { name, where } = describe(f, root);
      const key = `${name}@${where}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const m = total.get(key) ?? { name, where, selfMs: 0, share: 0 };
      m.selfMs += us / 1000;
      total.set(key, m);
    }
  }
  return [...total.values()]
    .map((m) => ({ ...m, selfMs: Math.round(m.selfMs), share: Math.round((m.selfMs * 1000 * 1000) / (busy || 1)) / 10 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, n);
}

function describe(f: { functionName: string; url: string; lineNumber: number }, root: string): { name: string; where: string } {
  const url = f.url.replace(/^file:\/\//, '').replace(root, '');
  return { name: f.functionName || (url ? '(anonymous)' : `(${f.url || 'native'})`), where: url ? `${url}:${f.lineNumber + 1}` : '' };
}

/** Which of our scripts a profile ran (its frames name them), for the table's title. */
export function profileLabel(p: CpuProfile): string {
  const urls = p.nodes.map((x) => x.callFrame.url);
  if (urls.some((u) => u.includes('/supervisors/node.ts'))) return 'node';
  if (urls.some((u) => u.includes('/connector/connector.ts'))) return 'connector';
  // The nodes run from a bundle: its frames name the bundle, not our files.
  if (urls.some((u) => u.endsWith('/.cache/cluster/cluster.mjs'))) return 'node';
  // bench:tunnel's floor relay (its node and its connector), scripts given to `node -e`.
  if (urls.some((u) => /\[eval\d*\]/.test(u))) return 'floor';
  return 'other';
}

/** Milliseconds the process was busy (every sample but idle ones). */
export function busyMs(p: CpuProfile): number {
  const idle = new Set(p.nodes.filter((x) => x.callFrame.functionName === '(idle)').map((x) => x.id));
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  let us = 0;
  for (let i = 0; i < samples.length; i++) if (!idle.has(samples[i]!)) us += deltas[i + 1] ?? deltas[i] ?? 0;
  return Math.round(us / 1000);
}

/**
 * The command line of cpu-top and heap-top: `DIR [N]`; calls `each` with every file in DIR
 * ending in `ext` (parsed), in name order, N (default `n`) and our checkout's path to strip.
 */
export function forEachProfile<P>(script: string, ext: string, n: number, each: (file: string, p: P, n: number, root: string) => void) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write(`usage: npm run bench:${script} -- DIR [N]\n`);
    process.exit(2);
  }
  const root = `${join(import.meta.dirname, '..')}/`;
  // N is the first argument after DIR that is neither a flag nor a flag's value.
  const rest = process.argv.slice(3);
  const count = rest.find((a, i) => !a.startsWith('--') && rest[i - 1] !== '--window');
  for (const file of readdirSync(dir).filter((f) => f.endsWith(ext)).sort()) each(file, JSON.parse(readFileSync(join(dir, file), 'utf8')) as P, Number(count ?? n), root);
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const flag = (name: string) => process.argv.indexOf(name);
  const window = flag('--window') > 0 ? Number(process.argv[flag('--window') + 1]) : undefined;
  const inclusive = flag('--inclusive') > 0;
  forEachProfile<CpuProfile>('cpu-top', '.cpuprofile', 15, (file, whole, n, root) => {
    const label = profileLabel(whole);
    if (label === 'other') return;
    const p = window ? busiestWindow(whole, window) : whole;
    const line = (f: Frame) => process.stdout.write(`  ${String(f.share).padStart(5)}%  ${String(f.selfMs).padStart(6)} ms  ${f.name}  ${f.where}\n`);
    process.stdout.write(`\n${label} (${file}: ${Math.round((p.endTime - p.startTime) / 1000)} ms ${window ? 'in its busiest window' : 'profiled'}, ${busyMs(p)} ms busy)\n`);
    topFrames(p, n, root).forEach(line);
    if (!inclusive) return;
    process.stdout.write(`  inclusive:\n`);
    inclusiveFrames(p, n, root).forEach(line);
  });
}
