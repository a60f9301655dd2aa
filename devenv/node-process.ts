// Spawning `cluster node` processes (tests and the launcher). Each is a real OS process,
// so tests can SIGKILL, SIGSTOP and SIGTERM it.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { defaultHeapArgs } from '../core/heap-watch.ts';
import { ServiceProcess, waitUntil } from './process.ts';

export const CLUSTER_ENTRY = fileURLToPath(new URL('../bin/cluster.mjs', import.meta.url));

export interface NodeProcessOptions {
  name: string;
  /** Raw config (as a file would hold it); written to `configFile`. */
  config: Record<string, unknown>;
  configFile: string;
  logFile: string;
  env?: NodeJS.ProcessEnv;
  /** Run inside this network namespace (`cluster up --netns`). */
  netns?: string;
  /** Options for node itself, before the script (e.g. `--cpu-prof` for a profile). */
  nodeArgs?: string[];
}

export class NodeProcess {
  readonly proc: ServiceProcess;
  readonly adminUrl: string;
  /** Where the node serves GET /metrics (config metrics.bind). */
  readonly metricsUrl: string;
  readonly logFile: string;
  readonly configFile: string;
  /** The raw config the node was started with. */
  readonly config: Record<string, any>;

  constructor(opts: NodeProcessOptions) {
    this.config = opts.config;
    this.logFile = opts.logFile;
    this.configFile = opts.configFile;
    writeFileSync(opts.configFile, stringify(opts.config), { mode: 0o600 });
    const bind = String((opts.config.admin as { bind?: string } | undefined)?.bind ?? '0.0.0.0:8080');
    this.adminUrl = `http://${bind.replace(/^0\.0\.0\.0:/, '127.0.0.1:')}`;
    const metrics = String((opts.config.metrics as { bind?: string } | undefined)?.bind ?? '127.0.0.1:9464');
    this.metricsUrl = `http://${metrics.replace(/^0\.0\.0\.0:/, '127.0.0.1:')}`;
    // CLUSTER_* from our own environment must not leak into the child's config.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CLUSTER_')));
    this.proc = new ServiceProcess({
      name: opts.name,
      command: process.execPath,
      // The heap limit bin/cluster gives a node (core/heap-watch.ts), unless NODE_OPTIONS names one.
      args: [...defaultHeapArgs(opts.env?.NODE_OPTIONS ?? env.NODE_OPTIONS), ...(opts.nodeArgs ?? []), CLUSTER_ENTRY, 'node', '--config', opts.configFile],
      env: { ...env, ...opts.env },
      logFile: opts.logFile,
      netns: opts.netns,
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  async readyz(): Promise<{ status: number; body: any }> {
    const res = await fetch(`${this.adminUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
    return { status: res.status, body: await res.json() };
  }

  /** Until this very process answers ready (another server on the address never counts). */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    await waitUntil(this.proc.name, async () => {
      const r = await this.readyz();
      return r.status === 200 && r.body?.pid === this.pid;
    }, { timeoutMs, proc: this.proc });
  }
}
