// npm run bench:heap-top -- DIR [N]
// What holds each node's memory, from the .heapprofile files in DIR (a benchmark run with
// BENCH_HEAP_PROFILE=DIR writes one per node): V8's sampling heap profiler keeps a sample of
// every ~64 KiB allocated while it ran and drops those collected since, so what is left is
// the live memory by the stack that allocated it (files named *allocated*, from
// BENCH_STORM_ALLOCATIONS, keep the collected samples too: all that was allocated, which is
// what makes the collector work). Two tables per profile: the functions that allocated it
// themselves (self), and the ones under which it was allocated (inclusive: a function counts
// each sample once however often it recurs). Reads and prints only.
import { forEachProfile, profileLabel } from './cpu-top.ts';

interface CallFrame { functionName: string; url: string; lineNumber: number }
export interface HeapNode { callFrame: CallFrame; selfSize: number; children: HeapNode[] }
export interface HeapProfile { head: HeapNode }

export interface HeapFrame {
  name: string;
  where: string;
  mb: number;
  share: number;
}

function keyOf(f: CallFrame, root: string): { name: string; where: string } {
  const url = f.url.replace(/^file:\/\//, '').replace(root, '');
  return { name: f.functionName || (url ? '(anonymous)' : `(${f.url || 'native'})`), where: url ? `${url}:${f.lineNumber + 1}` : '' };
}

/** Live bytes by allocating function: `self` where allocated, `inclusive` under each frame on the stack; largest first. */
export function topAllocators(p: HeapProfile, n: number, root = ''): { totalMb: number; self: HeapFrame[]; inclusive: HeapFrame[] } {
  const self = new Map<string, { name: string; where: string; bytes: number }>();
  const incl = new Map<string, { name: string; where: string; bytes: number }>();
  let total = 0;
  const walk = (node: HeapNode, path: Array<{ key: string; name: string; where: string }>) => {
    const k = keyOf(node.callFrame, root);
    const key = `${k.name}@${k.where}`;
    const here = [...path, { key, ...k }];
    if (node.selfSize > 0) {
      total += node.selfSize;
      const s = self.get(key) ?? { ...k, bytes: 0 };
      s.bytes += node.selfSize;
      self.set(key, s);
      const seen = new Set<string>();
      for (const f of here) {
        if (seen.has(f.key)) continue;
        seen.add(f.key);
        const e = incl.get(f.key) ?? { name: f.name, where: f.where, bytes: 0 };
        e.bytes += node.selfSize;
        incl.set(f.key, e);
      }
    }
    for (const c of node.children) walk(c, here);
  };
  walk(p.head, []);
  const rank = (m: Map<string, { name: string; where: string; bytes: number }>) =>
    [...m.values()]
      .filter((e) => e.name !== '(root)')
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, n)
      .map((e) => ({ name: e.name, where: e.where, mb: Math.round(e.bytes / 104857.6) / 10, share: Math.round((e.bytes * 1000) / (total || 1)) / 10 }));
  return { totalMb: Math.round(total / 104857.6) / 10, self: rank(self), inclusive: rank(incl) };
}

/** Every frame of the tree, as cpu-top's label check reads them. */
function frames(p: HeapProfile): Array<{ callFrame: CallFrame }> {
  const out: Array<{ callFrame: CallFrame }> = [];
  const walk = (x: HeapNode) => (out.push(x), x.children.forEach(walk));
  walk(p.head);
  return out;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  forEachProfile<HeapProfile>('heap-top', '.heapprofile', 20, (file, p, n, root) => {
    const top = topAllocators(p, n, root);
    process.stdout.write(`\n${profileLabel({ nodes: frames(p) as never, startTime: 0, endTime: 0 })} (${file}: ${top.totalMb} MB ${file.includes('allocated') ? 'allocated, garbage included' : 'live of what was sampled'})\n`);
    for (const [title, rows] of [['self', top.self], ['inclusive', top.inclusive]] as const) {
      process.stdout.write(`  ${title}:\n`);
      for (const f of rows) process.stdout.write(`  ${String(f.share).padStart(5)}%  ${String(f.mb).padStart(7)} MB  ${f.name}  ${f.where}\n`);
    }
  });
}
