// Shared scaffolding of the benchmarks: a scratch directory PostgreSQL can reach, local
// services, three nodes with an administrator, and a main() wrapper that exits non-zero with
// the error on stderr.
import { request } from 'node:http';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminCall, setupToken } from '../devenv/admin-client.ts';
import { launchLocalCluster } from '../devenv/local-cluster.ts';
import { NodeProcess } from '../devenv/node-process.ts';
import { freePort } from '../devenv/ports.ts';
import { startLocalServices, type LocalServices } from '../devenv/services.ts';
import { testNodeConfig } from '../test/harness/nodes.ts';

export const log = (line: string) => process.stderr.write(`${line}\n`);

/** A CPU profile alone (BENCH_CPU_PROFILE), for processes that are not ours: the floor relay in bench:tunnel. */
export const cpuProfileArgs = (): string[] => [
  ...(process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROFILE] : []),
  // BENCH_PERF (bench/perf-top.ts): perf names JavaScript frames from the map this writes.
  ...(process.env.BENCH_PERF ? ['--perf-basic-prof'] : []),
];

/**
 * BENCH_CPU_PROFILE=DIR: node's own profiler in the processes a benchmark starts (nodes,
 * connector), each writing a .cpuprofile into DIR when it exits (NODE_OPTIONS may not carry
 * --cpu-prof). `npm run bench:cpu-top -- DIR` prints where their time went.
 * BENCH_HEAP_SNAPSHOTS=DIR: each of those processes writes a heap snapshot into DIR on SIGUSR2.
 * BENCH_TRACE_GC=1: each prints a line per garbage collection (kind, heap before/after, pause)
 * into its log, to tell a GC pause from a starved CPU when a process stalls.
 */
export const profileArgs = (): string[] => [
  ...cpuProfileArgs(),
  ...(process.env.BENCH_TRACE_GC ? ['--trace-gc'] : []),
  ...(process.env.BENCH_HEAP_SNAPSHOTS ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${process.env.BENCH_HEAP_SNAPSHOTS}`] : []),
  // V8 options for the nodes alone, as an operator would set them (`--max-old-space-size=1024`).
  ...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ').filter(Boolean) : []),
];

/**
 * The real `cluster up` in a scratch directory (what an operator runs), `body` against its data
 * directory, then stop and clean up. Prints the summary `body` returns as the last stdout line
 * and exits 1 when it says an invariant broke, or on an error.
 */
export async function againstLocalCluster(launch: { netnsSubnet?: string }, body: (dataDir: string) => Promise<{ summary: object; broken: boolean }>): Promise<never> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-cluster-'));
  chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user and must reach its directory
  let code = 1;
  const cluster = await launchLocalCluster({ dir, ...launch });
  try {
    const { summary, broken } = await body(cluster.dataDir);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    code = broken ? 1 : 0;
  } catch (err) {
    log((err as Error).stack ?? String(err));
  } finally {
    await cluster.proc.stop('SIGTERM', 60_000);
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(code);
}

/** Runs `body` with a scratch directory and fresh PostgreSQL + Valkey; always cleans up. */
export async function withBenchServices<T>(name: string, body: (ctx: { dir: string; services: LocalServices }) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `bench-${name}-`));
  chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user and must reach its directory
  const services = await startLocalServices({ dataDir: join(dir, 'services') });
  try {
    return await body({ dir, services });
  } catch (err) {
    // The logs go with the scratch directory: what the nodes and connectors said is shown first.
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.log'))) log(`--- ${f} (last lines)\n${readFileSync(join(dir, f), 'utf8').split('\n').slice(-25).join('\n')}`);
    throw err;
  } finally {
    await services.stop();
    // BENCH_KEEP_DIR=1: the nodes' and connectors' logs stay for a look afterwards.
    if (process.env.BENCH_KEEP_DIR) log(`logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints the result as the last line (one JSON object), or the error, and exits. */
export function runBench(main: () => Promise<Record<string, unknown>>): void {
  main().then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}

/**
 * `cluster node` processes (three unless `opts.ids` names others) on their own loopback
 * addresses; `start` (re)starts one. `opts.nodeArgs`: more options for node itself.
 */
export async function startBenchNodes(dir: string, services: LocalServices, config: Record<string, any> = {}, opts: { ids?: string[]; nodeArgs?: string[] } = {}) {
  const url = await services.postgres!.createDatabase('bench');
  const configs = new Map<string, Record<string, any>>();
  // BENCH_INGRESS_THREAD=main|worker: where the nodes run their ingress (config ingress.thread), to compare the two.
  const thread = process.env.BENCH_INGRESS_THREAD;
  if (thread !== undefined && thread !== 'main' && thread !== 'worker') throw new Error('BENCH_INGRESS_THREAD is main or worker');
  if (thread) config = { ...config, ingress: { ...config.ingress, thread } };
  for (const id of opts.ids ?? ['node-1', 'node-2', 'node-3']) {
    configs.set(id, await testNodeConfig({ postgresUrl: url, valkeyUrl: services.valkey!.url, clusterName: 'bench', nodeId: id, config: { log: { level: 'warn' }, ...config } }));
  }
  const nodes = new Map<string, NodeProcess>();
  // BENCH_WINDOW_PROFILE, BENCH_HEAP_PROFILE, BENCH_STORM_ALLOCATIONS, BENCH_STORM_PROMOTED, BENCH_PROMOTED_PROFILE, BENCH_ALLOCATED_PROFILE: each node's inspector port, opened only when a profile is taken (bench/inspector.ts).
  const inspectPorts = new Map<string, number>();
  if (['BENCH_WINDOW_PROFILE', 'BENCH_HEAP_PROFILE', 'BENCH_STORM_ALLOCATIONS', 'BENCH_STORM_PROMOTED', 'BENCH_PROMOTED_PROFILE', 'BENCH_ALLOCATED_PROFILE'].some((k) => process.env[k])) for (const id of configs.keys()) inspectPorts.set(id, await freePort());
  const start = (id: string) => {
    const inspect = inspectPorts.has(id) ? [`--inspect-port=127.0.0.1:${inspectPorts.get(id)}`] : [];
    const n = new NodeProcess({ name: id, config: configs.get(id)!, configFile: join(dir, `${id}.yaml`), logFile: join(dir, `${id}.log`), nodeArgs: [...profileArgs(), ...inspect, ...(opts.nodeArgs ?? [])] });
    nodes.set(id, n);
    return n;
  };
  for (const id of configs.keys()) start(id);
  await Promise.all([...nodes.values()].map((n) => n.waitReady(60_000)));
  return { configs, nodes, start, inspectPorts };
}

/** Creates the benchmark's administrator with the setup token and logs in; the session cookie. */
export async function benchAdmin(admin: string, nodes: Iterable<{ logFile: string }>): Promise<string> {
  const who = { email: 'bench@example.com', password: 'benchmark password 123' };
  await adminCall(admin, 'POST', '/api/v1/auth/setup', { token: await setupToken(nodes), ...who });
  return (await adminCall(admin, 'POST', '/api/v1/auth/login', who)).cookie!;
}

/** The org `bench` with the verified zone `bench.test` and one site, made through `admin`. */
export async function benchOrg(admin: string, cookie: string): Promise<{ org: { id: string }; base: string; site: { id: string; connector: { secret: string } } }> {
  const org = (await adminCall(admin, 'POST', '/api/v1/orgs', { slug: 'bench', name: 'Bench' }, cookie)).body;
  const base = `/api/v1/orgs/${org.id}`;
  const zone = (await adminCall(admin, 'POST', `${base}/domains`, { name: 'bench.test' }, cookie)).body;
  await adminCall(admin, 'POST', `${base}/domains/${zone.id}/verify`, { force: true }, cookie);
  const site = (await adminCall(admin, 'POST', `${base}/sites`, { name: 'site' }, cookie)).body;
  return { org, base, site };
}

/** One GET / for `hostname` at host:80 on a fresh connection; true when it answers 200 within `timeoutMs`. */
export function okThrough(host: string, hostname: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host, port: 80, path: '/', headers: { host: hostname }, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}
