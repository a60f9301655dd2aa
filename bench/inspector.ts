// Profiles one window of a running node (a storm, say), not its whole life as --cpu-prof does:
// SIGUSR1 opens the node's inspector on the port its --inspect-port named, the profiler runs
// until stop(), and the profile is written as a .cpuprofile for `npm run bench:cpu-top`.
// The heap sampler the same way: what was allocated since start (still alive, all of it, or
// what outlived a young collection), by the stack that allocated it, as a .heapprofile for
// `npm run bench:heap-top`.
// For benchmarks only: an open inspector is a way into the process.
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { WebSocket } from 'ws';

export interface WindowProfile {
  stop(file: string): Promise<void>;
}

/** A DevTools protocol session with the node's inspector (opened by SIGUSR1). */
async function openInspector(proc: { signal(s: NodeJS.Signals): void }, port: number) {
  proc.signal('SIGUSR1');
  let url: string | undefined;
  for (let i = 0; i < 100 && !url; i++) {
    url = await fetch(`http://127.0.0.1:${port}/json/list`)
      .then(async (r) => ((await r.json()) as Array<{ webSocketDebuggerUrl?: string }>)[0]?.webSocketDebuggerUrl)
      .catch(() => undefined);
    if (!url) await new Promise((r) => setTimeout(r, 100));
  }
  if (!url) throw new Error(`no inspector on port ${port}`);
  const ws = new WebSocket(url, { maxPayload: 1 << 30 });
  await once(ws, 'open');
  let next = 0;
  const waiting = new Map<number, (m: { result?: any; error?: { message: string } }) => void>();
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as { id?: number; result?: any; error?: { message: string } };
    if (m.id !== undefined) waiting.get(m.id)?.(m);
  });
  const send = (method: string, params: object = {}) =>
    new Promise<any>((resolve, reject) => {
      const id = ++next;
      waiting.set(id, (m) => (waiting.delete(id), m.error ? reject(new Error(m.error.message)) : resolve(m.result)));
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, close: () => ws.close() };
}

export async function profileWindow(proc: { signal(s: NodeJS.Signals): void }, port: number): Promise<WindowProfile> {
  const s = await openInspector(proc, port);
  await s.send('Profiler.enable');
  await s.send('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await s.send('Profiler.stop');
      writeProfile(file, profile);
      s.close();
    },
  };
}

/**
 * What a heap sample keeps at stop(): `live`, what is still alive of what was allocated since
 * start; `allocated`, everything allocated meanwhile (garbage included: what drives the
 * collector's work); `promoted`, what outlived a young-generation collection (V8 moved it to
 * the old generation, where only a full collection frees it), whether still alive or not.
 */
export type HeapSampleMode = 'live' | 'allocated' | 'promoted';

/** Samples allocations about every `intervalBytes` from now; stop() writes them by the stack that allocated them. */
export async function sampleHeap(proc: { signal(s: NodeJS.Signals): void }, port: number, intervalBytes = 64 * 1024, mode: HeapSampleMode = 'live'): Promise<WindowProfile> {
  const s = await openInspector(proc, port);
  await s.send('HeapProfiler.enable');
  const flags = mode === 'allocated' ? { includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } : mode === 'promoted' ? { includeObjectsCollectedByMajorGC: true } : {};
  await s.send('HeapProfiler.startSampling', { samplingInterval: intervalBytes, ...flags });
  return {
    async stop(file) {
      if (mode === 'live') await s.send('HeapProfiler.collectGarbage'); // garbage not yet collected is not memory held
      const { profile } = await s.send('HeapProfiler.stopSampling');
      writeProfile(file, profile);
      s.close();
    },
  };
}

/** The profile as JSON, its directory made first (the knobs name a directory that need not exist yet). */
function writeProfile(file: string, profile: unknown) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(profile));
}
