// Child processes for local services (PostgreSQL, Valkey, Pebble, node processes in tests).
// Three layers make sure nothing outlives us:
//  - each child runs under `setpriv --pdeathsig KILL`, so the kernel kills it when we die,
//    even by SIGKILL;
//  - each child leads its own process group, which we signal as a whole;
//  - an `exit` hook kills every group still alive.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, type WriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { ClusterError } from '../core/errors.ts';

const live = new Set<ServiceProcess>();
let exitHookInstalled = false;

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) p.killNow();
  });
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  /** Run as this user (requires root); uses setpriv, so the child stays our direct child. */
  user?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Append stdout and stderr here. */
  logFile?: string;
  /** Run inside this network namespace (`ip netns exec`; root only). */
  netns?: string;
}

export class ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #log: WriteStream | undefined;
  #alive = true;

  constructor(opts: SpawnOptions) {
    installExitHook();
    this.name = opts.name;
    const wrapper = ['--pdeathsig', 'KILL'];
    if (opts.user && process.getuid?.() === 0) wrapper.push(`--reuid=${opts.user}`, `--regid=${opts.user}`, '--init-groups');
    // `ip netns exec` execs setpriv in place: the pid stays our child's, so signals and the death signal still reach it.
    const argv = ['setpriv', ...wrapper, '--', opts.command, ...opts.args];
    this.child = spawn(opts.netns ? 'ip' : argv[0]!, opts.netns ? ['netns', 'exec', opts.netns, ...argv] : argv.slice(1), {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: ['ignore', opts.logFile ? 'pipe' : 'ignore', opts.logFile ? 'pipe' : 'ignore'],
    });
    if (opts.logFile) {
      this.#log = createWriteStream(opts.logFile, { flags: 'a' });
      this.child.stdout?.pipe(this.#log, { end: false });
      this.child.stderr?.pipe(this.#log, { end: false });
    }
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.#alive = false;
        live.delete(this);
        // 'exit' can come before the last output is read from the pipes: resolve only once
        // the log holds everything the process wrote (bounded, in case a grandchild keeps a
        // pipe open), so a caller reading the log after `exited` sees the final lines.
        void this.#drainLog().then(() => resolve({ code, signal }));
      });
      this.child.once('error', () => {
        this.#alive = false;
        live.delete(this);
        resolve({ code: -1, signal: null });
      });
    });
  }

  async #drainLog(): Promise<void> {
    const log = this.#log;
    if (!log) return;
    const closed = (s: Readable | null) => (s && !s.destroyed ? new Promise<void>((r) => s.once('close', r)) : Promise.resolve());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([closed(this.child.stdout), closed(this.child.stderr)]), new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    this.child.stdout?.unpipe(log);
    this.child.stderr?.unpipe(log);
    await new Promise<void>((r) => log.end(r));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** Signals the whole process group. */
  signal(sig: NodeJS.Signals): void {
    if (!this.#alive || !this.child.pid) return;
    try {
      process.kill(-this.child.pid, sig);
    } catch {}
  }

  /** Synchronous SIGKILL of the group, for exit hooks. */
  killNow(): void {
    this.signal('SIGKILL');
  }

  /** Sends `sig`, waits up to `graceMs`, then SIGKILLs. */
  async stop(sig: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
    if (!this.#alive) return;
    this.signal(sig);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.killNow();
      await this.exited;
    }
  }
}

/** Runs a short command to completion; throws a coded error with its output on failure. */
export function runChecked(service: string, command: string, args: string[], opts: { user?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const [cmd, argv] = opts.user && process.getuid?.() === 0 ? ['runuser', ['-u', opts.user, '--', command, ...args]] : [command, args];
  const res = spawnSync(cmd, argv, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8' });
  if (res.status !== 0) {
    throw new ClusterError('CLUSTER_ERR_LOCAL_SERVICE_FAILED', `${service}: ${command} failed (${res.status ?? res.signal}): ${(res.stderr || res.stdout || String(res.error ?? '')).trim().slice(-2000)}`, { service });
  }
  return res.stdout;
}

/** Polls `probe` until it returns true, the process dies, or the deadline passes. */
export async function waitUntil(service: string, probe: () => Promise<boolean>, opts: { timeoutMs: number; proc?: ServiceProcess; logFile?: string }): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  while (Date.now() < deadline) {
    if (opts.proc && !opts.proc.alive) {
      throw new ClusterError('CLUSTER_ERR_LOCAL_SERVICE_FAILED', `${service} exited during start-up${opts.logFile ? ` (see ${opts.logFile})` : ''}`, { service });
    }
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new ClusterError('CLUSTER_ERR_LOCAL_SERVICE_FAILED', `${service} not ready after ${opts.timeoutMs}ms${opts.logFile ? ` (see ${opts.logFile})` : ''}`, { service });
}

/**
 * The fields of /proc/PID/stat after the command name (Linux): [0] state, [1] ppid, ...,
 * [11] utime, [12] stime (clock ticks). Throws when the process is gone.
 */
export function procStat(pid: number | string): string[] {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU time a process has used so far, user and system, in ms (/proc/PID/stat; Linux). */
export function cpuMs(pid: number): { user: number; sys: number } {
  const f = procStat(pid);
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  return { user: Number(f[11]) * tick, sys: Number(f[12]) * tick };
}

/**
 * CPU time of a process's main thread alone so far (ms, user + system; /proc/PID/task/PID/stat):
 * for Node, the event loop, without V8's garbage-collection helpers and libuv's pool, which a
 * machine with cores to spare runs beside it. 0 once it is gone.
 */
export function mainThreadCpuMs(pid: number): number {
  try {
    const f = procStat(`${pid}/task/${pid}`);
    return (Number(f[11]) + Number(f[12])) * 10; // USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
}

/** CPU time of a process and all its descendants so far (ms, user + system; Linux). 0 once it is gone. */
export function treeCpuMs(pid: number): { user: number; sys: number } {
  let own: { user: number; sys: number };
  try {
    own = cpuMs(pid);
  } catch {
    return { user: 0, sys: 0 };
  }
  return childPids(pid).map(treeCpuMs).reduce((a, b) => ({ user: a.user + b.user, sys: a.sys + b.sys }), own);
}

/**
 * CPU time of a process, its children that have exited and been waited for (PostgreSQL's
 * backends of closed connections), and its live descendants, so far (ms, user + system; Linux).
 */
export function treeCpuWithReapedMs(pid: number): number {
  let reaped: number;
  try {
    const f = procStat(pid);
    reaped = (Number(f[13]) + Number(f[14])) * 10; // cutime, cstime in USER_HZ (100)
  } catch {
    return 0;
  }
  const t = treeCpuMs(pid);
  return t.user + t.sys + reaped;
}

/** The whole machine's CPU time so far, busy and in all, in ms summed over its cores (/proc/stat; Linux). */
export function machineCpuMs(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = f[3]! + f[4]!; // idle and iowait
  return { busy: (total - idle) * 10, total: total * 10 };
}

/** Pids of the direct children of `pid` (from /proc; Linux). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(procStat(entry)[1]) === pid) out.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}
