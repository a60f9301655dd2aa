// Runs `cluster up` as a child process (the suite's test and `npm run bench:chaos` use the
// real command, exactly as an operator would) and waits until it says it is up.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServiceProcess } from './process.ts';

export const CLUSTER_CLI = fileURLToPath(new URL('../bin/cluster.mjs', import.meta.url));

export interface LaunchedCluster {
  proc: ServiceProcess;
  dataDir: string;
  /** Everything `cluster up` printed so far. */
  output(): string;
}

/** `netnsSubnet`: `cluster up --netns --netns-subnet` (10.X.Y), each node in a network namespace of its own. */
export async function launchLocalCluster(opts: { dir: string; nodes?: number; timeoutMs?: number; netnsSubnet?: string }): Promise<LaunchedCluster> {
  const logFile = join(opts.dir, 'up.out');
  const dataDir = join(opts.dir, 'data');
  // The log is appended to across launches on one directory: read only this launch's part.
  const from = existsSync(logFile) ? statSync(logFile).size : 0;
  const proc = new ServiceProcess({ name: 'cluster-up', command: process.execPath, args: [CLUSTER_CLI, 'up', '--nodes', String(opts.nodes ?? 3), '--data-dir', dataDir, ...(opts.netnsSubnet ? ['--netns-subnet', opts.netnsSubnet] : [])], logFile });
  const output = () => (existsSync(logFile) ? readFileSync(logFile).subarray(from).toString('utf8') : '');
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  while (!/Ctrl-C stops everything/.test(output())) {
    if (!proc.alive || Date.now() > deadline) {
      await proc.stop('SIGTERM', 30_000);
      throw new Error(`cluster up did not become ready:\n${output().slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { proc, dataDir, output };
}
