// npm run bench:perf-top -- DIR/PHASE [N]
// Where each process's CPU time went in one measured phase, in microseconds per request: a
// benchmark run with BENCH_PERF=DIR records the whole machine with `perf record` through each
// measured phase (DIR/PHASE.data) and writes beside it the requests it served and the pid of
// each role (DIR/PHASE.json). This prints, per role, its total and its top N frames by self
// time. BENCH_PERF also starts the benchmark's node processes with --perf-basic-prof, so
// their JavaScript frames have names (haproxy's and the kernel's have theirs).
//
// CPU time, unlike node's own profiler (bench:cpu-top), which samples the wall clock and
// charges a process for the time it waited preempted inside a system call; kernel frames
// (the wake-up of the process reading our write, say) are counted too.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';

/** Samples a second per CPU: one sample is 1/HZ s of that CPU. */
const HZ = 1999;

export interface PhaseMeta {
  requests: number;
  pids: Record<string, number>;
  hz: number;
}

export interface RoleProfile {
  role: string;
  pid: number;
  /** CPU per request, all frames. */
  usPerRequest: number;
  top: Array<{ frame: string; usPerRequest: number }>;
}

/** A recording of the whole machine until stop(), when BENCH_PERF names a directory; else undefined. */
export function perfRecording(phase: string, dir = process.env.BENCH_PERF): { stop(requests: number, pids: Record<string, number>): Promise<void> } | undefined {
  if (!dir) return undefined;
  mkdirSync(dir, { recursive: true });
  const perf: ChildProcess = spawn('perf', ['record', '-a', '-e', 'cpu-clock', '-F', String(HZ), '-o', `${dir}/${phase}.data`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  perf.stderr!.on('data', (d: Buffer) => (said += d.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    perf.once('exit', (code) => resolve(code));
    perf.once('error', (err) => reject(new Error(`BENCH_PERF: cannot run perf (${err.message}); it comes with the linux-perf package`)));
  });
  exited.catch(() => {}); // reported by stop()
  return {
    async stop(requests, pids) {
      perf.kill('SIGINT'); // perf writes its file and exits
      const code = await exited;
      // It ends by the signal it was sent, having written its file (it says so), or says why not.
      if (code !== 0 && !/Captured and wrote/.test(said)) throw new Error(`BENCH_PERF: perf record failed (exit ${code}): ${said.trim().split('\n').slice(-2).join(' ')}`);
      writeFileSync(`${dir}/${phase}.json`, JSON.stringify({ requests, pids, hz: HZ } satisfies PhaseMeta));
    },
  };
}

/** Self samples per pid and frame, from `perf script` lines `PID IP SYMBOL`. Addresses in JavaScript frames' names are dropped, so one function is one frame. */
export function samplesByPid(script: string): Map<number, Map<string, number>> {
  const out = new Map<number, Map<string, number>>();
  for (const line of script.split('\n')) {
    const m = /^\s*(\d+)\s+[0-9a-f]+\s*(.*)$/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const frame = m[2]!.replace(/\s*\(deleted\)$/, '').replace(/0x[0-9a-f]+/g, '').trim() || '[unknown]';
    let frames = out.get(pid);
    if (!frames) out.set(pid, (frames = new Map()));
    frames.set(frame, (frames.get(frame) ?? 0) + 1);
  }
  return out;
}

/** Each role's CPU per request and its top `n` frames, from a phase's samples. */
export function profileRoles(samples: Map<number, Map<string, number>>, meta: PhaseMeta, n: number): RoleProfile[] {
  const us = (count: number) => Math.round(((count * 1e6) / meta.hz / Math.max(1, meta.requests)) * 100) / 100;
  return Object.entries(meta.pids).map(([role, pid]) => {
    const frames = samples.get(pid) ?? new Map<string, number>();
    let total = 0;
    for (const c of frames.values()) total += c;
    const top = [...frames].sort((a, b) => b[1] - a[1]).slice(0, n).map(([frame, c]) => ({ frame, usPerRequest: us(c) }));
    return { role, pid, usPerRequest: us(total), top };
  });
}

/** The roles' profiles of DIR/PHASE (its .data read through `perf script`). */
export function readPhase(path: string, n: number): RoleProfile[] {
  const meta = JSON.parse(readFileSync(`${path}.json`, 'utf8')) as PhaseMeta;
  const script = spawnSync('perf', ['script', '-i', `${path}.data`, '-F', 'pid,ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (script.status !== 0) throw new Error(`perf script: ${script.stderr || script.error?.message}`);
  return profileRoles(samplesByPid(script.stdout), meta, n);
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const [path, n] = process.argv.slice(2);
  if (!path) {
    process.stderr.write('usage: npm run bench:perf-top -- DIR/PHASE [N]  (a phase recorded with BENCH_PERF=DIR)\n');
    process.exit(2);
  }
  for (const r of readPhase(path.replace(/\.(data|json)$/, ''), Number(n ?? 15))) {
    process.stdout.write(`${r.role} (pid ${r.pid}): ${r.usPerRequest} us per request\n`);
    for (const f of r.top) process.stdout.write(`  ${f.usPerRequest.toFixed(2).padStart(6)}  ${f.frame}\n`);
  }
}
