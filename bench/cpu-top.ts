// npm run bench:cpu-top -- DIR [N]
// Where the time went in each .cpuprofile in DIR (written by node --cpu-prof; a benchmark
// run with BENCH_CPU_PROFILE=DIR writes one per node and connector process): the top N
// functions by self time, with their share of the samples, one table per process, labelled
// by the script it ran. Reads and prints only.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }>;
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
    const url = f.url.replace(/^file:\/\//, '').replace(root, '');
    const name = f.functionName || (url ? '(anonymous)' : `(${f.url || 'native'})`);
    const where = url ? `${url}:${f.lineNumber + 1}` : '';
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

/** Which of our scripts a profile ran (its frames name them), for the table's title. */
export function profileLabel(p: CpuProfile): string {
  const urls = p.nodes.map((x) => x.callFrame.url);
  if (urls.some((u) => u.includes('/supervisors/node.ts'))) return 'node';
  if (urls.some((u) => u.includes('/connector/connector.ts'))) return 'connector';
  // The nodes run from a bundle: its frames name the bundle, not our files.
  if (urls.some((u) => u.endsWith('/.cache/cluster/cluster.mjs'))) return 'node';
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
  for (const file of readdirSync(dir).filter((f) => f.endsWith(ext)).sort()) each(file, JSON.parse(readFileSync(join(dir, file), 'utf8')) as P, Number(process.argv[3] ?? n), root);
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  forEachProfile<CpuProfile>('cpu-top', '.cpuprofile', 15, (file, p, n, root) => {
    const label = profileLabel(p);
    if (label === 'other') return;
    process.stdout.write(`\n${label} (${file}: ${Math.round((p.endTime - p.startTime) / 1000)} ms profiled, ${busyMs(p)} ms busy)\n`);
    for (const f of topFrames(p, n, root)) process.stdout.write(`  ${String(f.share).padStart(5)}%  ${String(f.selfMs).padStart(6)} ms  ${f.name}  ${f.where}\n`);
  });
}
