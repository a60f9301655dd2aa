// npm run bench:ingress
// The ingress's own cost per proxied request, apart from the node around it: our real
// HttpIngress (one route, its tunnel an HTTP/2 session to a floor-like connector) alone in a
// small process, beside the floor relay (bench/relays.ts), the same target and client, the
// load alternating between them every few seconds. bench:tunnel's runs of the same code move
// 5-15 us per request on a shared virtual machine; alternating in one run separates about
// 1 us, which is what a change to the ingress's code is worth (the README's "Measured tunnel
// performance"). BENCH_INGRESS_BASE=<git revision>: that revision's ingress as a third relay,
// to measure a change against it (a revision with the same module layout).
// The same small ingress also runs inside a real `cluster node` (PostgreSQL and Valkey
// started for it), loaded with `--import` before the node's own code: once on the node's main
// thread, once in a worker thread of that process (node_main_*, node_worker_*; the node's CPU
// is the whole process's). What the same code costs on the main thread beside the node's
// other work, and what it costs in a thread of its own, is what a data plane in a worker
// would gain (docs/data-plane-worker.md). BENCH_INGRESS_IN_NODE=0 leaves them out.
// Last line: one JSON object.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import { freePort } from '../devenv/ports.ts';
import { cpuMs, ServiceProcess } from '../devenv/process.ts';
import type { LocalServices } from '../devenv/services.ts';
import type { NodeProcess } from '../devenv/node-process.ts';
import { log, runBench, startBenchNodes, withBenchServices } from './lib.ts';
import { FLOOR_CONNECTOR, FLOOR_NODE, listening, TARGET } from './relays.ts';
import { concurrency, size } from './sizes.ts';

const ROUNDS = size('ROUNDS', 6, 1);
const SECONDS = size('SECONDS', 8, 1);
const WARMUP_SECONDS = size('WARMUP_SECONDS', 2, 0);
const root = fileURLToPath(new URL('..', import.meta.url));
/** Inside the checkout's node_modules: the bundles' packages resolve from there. */
const BUNDLES = join(root, 'node_modules', '.cache', 'bench-ingress');

/** The relay process: `src`'s HttpIngress with a one-route table and a tunnel to the connector on argv's port. */
const relaySource = (src: string) => `
import http2 from 'node:http2';
import { HttpIngress } from '${src}/gateways/ingress/http.ts';
import { cancellable } from '${src}/gateways/connector/stream-cancel.ts';
import { createLogger } from '${src}/core/log.ts';
import { TUNNEL_H2_SETTINGS, TUNNEL_H2_CONNECTION_WINDOW, TARGET_HEADER, PROTOCOL_HEADER } from '${src}/protocol/tunnel-framing.ts';
import { isMainThread, workerData } from 'node:worker_threads';
// Its ports: from argv when it is a process of its own, from the loader inside a node (IN_NODE).
const inNode = globalThis.benchRelayPorts ?? workerData?.benchRelayPorts;
const [port, connectorPort, targetPort] = (inNode ?? process.argv.slice(-3)).map(Number);
const session = http2.connect('http://127.0.0.1:' + connectorPort, { settings: TUNNEL_H2_SETTINGS });
session.once('connect', () => session.setLocalWindowSize(TUNNEL_H2_CONNECTION_WINDOW));
const target = { id: 't1', siteId: 's1', host: '127.0.0.1', port: targetPort, scheme: 'http', enabled: true, weight: 1, healthy: true };
const route = { resourceId: 'r1', orgId: 'o1', protocol: 'http', hostname: 'app.bench.test', port: null, tls: false, enabled: true, targets: [target], owners: { s1: 'here' } };
const ingress = new HttpIngress({
  routes: { byHost: (h) => (h === 'app.bench.test' ? route : undefined) },
  tunnels: {
    has: () => true,
    open: () => new Promise((resolve, reject) => {
      const s = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:' + targetPort, [TARGET_HEADER]: 't1', [PROTOCOL_HEADER]: 'tcp' }, { waitForTrailers: true });
      cancellable(s);
      s.once('response', () => resolve(s));
      s.once('error', reject);
    }),
  },
  placement: { nodeId: 'here', isLive: () => true, isSuspected: () => false, forward: () => Promise.reject(new Error('one node')) },
  certs: { sniCallback: () => {} },
  http: { host: '127.0.0.1', port },
  https: { host: '127.0.0.1', port: 0 },
  logger: createLogger({ level: 'warn' }),
  helloTimeoutMs: 5000,
  maxConnectionsPerSource: 1_000_000,
  onRequest: () => {},
});
await ingress.listen();
if (!inNode) process.on('SIGTERM', () => process.exit(0));
else if (isMainThread) console.error('bench relay: listening on the main thread of the node, port ' + port);
`;

/**
 * Loaded into the node with --import, before its own code: the relay bundle on the main thread
 * and in a worker (their ports in BENCH_RELAY_IN_NODE). The node starts as usual after it.
 */
const IN_NODE_LOADER = `
import { isMainThread, Worker } from 'node:worker_threads';
// A worker runs the process's --import modules too: only the main thread loads the relays.
if (isMainThread) {
  const { bundle, main, worker, connector, target } = JSON.parse(process.env.BENCH_RELAY_IN_NODE);
  new Worker(new URL(bundle), { workerData: { benchRelayPorts: [worker, connector, target] } }).on('error', (err) => console.error('bench relay worker', err));
  globalThis.benchRelayPorts = [main, connector, target];
  await import(bundle);
}
`;

/** Bundles the relay for the sources under `src` (as the node runs from a bundle: code loaded through tsx ran slower). */
async function bundle(src: string, name: string): Promise<string> {
  const esbuild = await import('esbuild');
  mkdirSync(BUNDLES, { recursive: true });
  const outfile = join(BUNDLES, `${name}.mjs`);
  await esbuild.build({ stdin: { contents: relaySource(src), resolveDir: root, loader: 'ts', sourcefile: `${name}.ts` }, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outfile, logLevel: 'warning' });
  return outfile;
}

function load(port: number, seconds: number): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => autocannon({ url: `http://127.0.0.1:${port}/`, headers: { host: 'app.bench.test' }, connections: concurrency(16), duration: seconds }, (err, res) => (err ? reject(err) : resolve(res))));
}

interface Relay {
  name: string;
  port: number;
  proc: ServiceProcess;
  rps: number[];
  us: number[];
}

/** IN_NODE: the relay inside a node too (started with PostgreSQL and Valkey for it). */
const IN_NODE = process.env.BENCH_INGRESS_IN_NODE !== '0';

async function main() {
  if (IN_NODE) return withBenchServices('ingress', ({ dir, services }) => measure(dir, services));
  const dir = mkdtempSync(join(tmpdir(), 'bench-ingress-'));
  try {
    return await measure(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(dir: string, services?: LocalServices) {
  const procs: ServiceProcess[] = [];
  let nodes = new Map<string, NodeProcess>();
  try {
    const sources: Array<[string, string]> = [['ingress', root]];
    const base = process.env.BENCH_INGRESS_BASE;
    if (base) {
      const tree = join(dir, 'base');
      mkdirSync(tree);
      execFileSync('sh', ['-c', `git -C "${root}" archive "$0" | tar -x -C "${tree}"`, base]);
      sources.push(['base', tree]);
    }
    const [httpPort, bulkPort, connectorPort] = [await freePort(), await freePort(), await freePort()];
    procs.push(new ServiceProcess({ name: 'target', command: process.execPath, args: ['--input-type=module', '-e', TARGET, String(httpPort), String(bulkPort), '1'], logFile: join(dir, 'target.log') }));
    const connector = new ServiceProcess({ name: 'connector', command: process.execPath, args: ['--input-type=module', '-e', FLOOR_CONNECTOR, String(connectorPort), String(httpPort)], logFile: join(dir, 'connector.log') });
    procs.push(connector);
    await listening(httpPort);
    await listening(connectorPort);
    const relays: Relay[] = [];
    const start = async (name: string, args: string[]) => {
      const port = await freePort();
      const proc = new ServiceProcess({ name, command: process.execPath, args: [...args, String(port), String(connectorPort), String(httpPort)], logFile: join(dir, `${name}.log`) });
      procs.push(proc);
      relays.push({ name, port, proc, rps: [], us: [] });
      await listening(port);
    };
    await start('floor', ['--input-type=module', '-e', FLOOR_NODE]);
    for (const [name, src] of sources) await start(name, [await bundle(src, name)]);
    if (services) {
      // The current ingress's bundle again, on a node's main thread and in a worker of it.
      const [main, worker] = [await freePort(), await freePort()];
      process.env.BENCH_RELAY_IN_NODE = JSON.stringify({ bundle: pathToFileURL(join(BUNDLES, 'ingress.mjs')).href, main, worker, connector: connectorPort, target: httpPort });
      const loader = join(dir, 'in-node-loader.mjs');
      writeFileSync(loader, IN_NODE_LOADER);
      nodes = (await startBenchNodes(dir, services, {}, { ids: ['node-1'], nodeArgs: [`--import=${pathToFileURL(loader).href}`] })).nodes;
      const node = nodes.get('node-1')!;
      for (const [name, port] of [['node_main', main], ['node_worker', worker]] as const) {
        await listening(port);
        relays.push({ name, port, proc: node.proc, rps: [], us: [] });
      }
    }
    const connectorUs: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const r of relays) {
        if (WARMUP_SECONDS > 0) await load(r.port, WARMUP_SECONDS);
        const [before, beforeConnector] = [cpuMs(r.proc.pid), cpuMs(connector.pid)];
        const result = await load(r.port, SECONDS);
        const n = Math.max(1, result.requests.total);
        const [after, afterConnector] = [cpuMs(r.proc.pid), cpuMs(connector.pid)];
        const us = ((after.user + after.sys - before.user - before.sys) * 1000) / n;
        r.rps.push(result.requests.average);
        r.us.push(us);
        connectorUs.push(((afterConnector.user + afterConnector.sys - beforeConnector.user - beforeConnector.sys) * 1000) / n);
        log(`round ${round + 1} ${r.name}: ${result.requests.average} req/s, ${Math.round(us)} us per request, non-2xx ${result.non2xx}`);
        if (result.non2xx > 0 || result.errors > 0) throw new Error(`${r.name}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
      }
    }
    const mean = (xs: number[]) => Math.round((xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)) * 10) / 10;
    const out: Record<string, unknown> = { bench: 'ingress', rounds: ROUNDS };
    for (const r of relays) Object.assign(out, { [`${r.name}_rps`]: mean(r.rps), [`${r.name}_cpu_us_per_req`]: mean(r.us) });
    out.connector_cpu_us_per_req = mean(connectorUs);
    return out;
  } finally {
    for (const n of nodes.values()) await n.proc.stop('SIGKILL', 5000);
    for (const p of procs) await p.stop('SIGTERM', 2000);
  }
}

runBench(main);
