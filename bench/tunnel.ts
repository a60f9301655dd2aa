// npm run bench:tunnel
// Three node processes, a connector process and a target process (small HTTP answers and a
// bulk TCP source). Side by side: (a) HTTP keep-alive requests/s and p99 directly to the
// target, through haproxy as a plain reverse proxy, and through the cluster's tunnel; the
// latency of each at a light load (one client each, 100 requests/s, one kept-alive connection,
// the two side by side for 30 s);
// (b) one bulk TCP stream's throughput directly and through the tunnel; (c) steady requests
// spread over the nodes while the tunnel's node is SIGKILLed, ten rounds: the longest run of
// failing requests. Last line: one JSON object.
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { LocalHaproxy } from '../devenv/haproxy.ts';
import type { NodeProcess } from '../devenv/node-process.ts';
import { freePort } from '../devenv/ports.ts';
import { cpuMs, ServiceProcess } from '../devenv/process.ts';
import { adminCall as api } from '../devenv/admin-client.ts';
import { sampleHeap } from './inspector.ts';
import { FLOOR_CONNECTOR, FLOOR_NODE, listening, TARGET } from './relays.ts';
import { benchAdmin, cpuProfileArgs, okThrough, benchOrg, log, profileArgs, runBench, startBenchNodes, withBenchServices } from './lib.ts';
import { perfRecording } from './perf-top.ts';
import { concurrency, size } from './sizes.ts';

const SECONDS = size('SECONDS', 10, 1);
/**
 * Load before each saturating phase, not measured: a phase measures a warm proxy (our node's
 * JavaScript compiled by the optimizing tier, its kept-alive streams open), as a proxy that
 * has run a while is. The same for every proxy; the tenth session's figures had none.
 */
const WARMUP_SECONDS = size('WARMUP_SECONDS', 3, 1);
const PACED_SECONDS = size('PACED_SECONDS', 30, 1);
const ROUNDS = size('ROUNDS', 10, 1);
const BULK_MB = size('BULK_MB', 256, 4);
const CONNECTOR = fileURLToPath(new URL('../bin/cluster-connector.mjs', import.meta.url));


/**
 * Runs `phase` and returns its result with the CPU each of `pids` spent per request in it,
 * in microseconds, user and system apart. Steadier than requests/s on a machine whose two
 * cores every process of the run shares: it says what a request costs each process.
 */
async function perRequest<T extends autocannon.Result>(name: string, pids: Record<string, number>, phase: () => Promise<T>): Promise<{ result: T; us: Record<string, { user: number; sys: number }> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid)]));
  // BENCH_PERF=DIR: the phase recorded with perf (npm run bench:perf-top -- DIR/<name>).
  const perf = perfRecording(name);
  const result = await phase();
  await perf?.stop(result.requests.total, pids);
  const n = Math.max(1, result.requests.total);
  const us = Object.fromEntries(Object.entries(pids).map(([k, pid]) => {
    const after = cpuMs(pid);
    return [k, { user: Math.round(((after.user - before[k]!.user) * 1000) / n), sys: Math.round(((after.sys - before[k]!.sys) * 1000) / n) }];
  }));
  return { result, us };
}

const cpuText = (us: Record<string, { user: number; sys: number }>) => Object.entries(us).map(([k, v]) => `${k} ${v.user + v.sys} us (user ${v.user}, sys ${v.sys})`).join('; ');

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)] ?? NaN;

function bench(url: string, host?: string, seconds = SECONDS): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => autocannon({ url, connections: concurrency(size('CONNECTIONS', 16, 16)), duration: seconds, headers: host ? { host } : {} }, (err, res) => (err ? reject(err) : resolve(res))));
}

/** WARMUP_SECONDS of the same load, then the measured phase (its CPU counted from after the warm-up). */
async function warmed<T>(url: string, host: string | undefined, measure: (run: () => Promise<autocannon.Result>) => Promise<T>): Promise<T> {
  if (WARMUP_SECONDS > 0) await bench(url, host, WARMUP_SECONDS);
  return measure(() => bench(url, host));
}

/** A proxy the light-load client asks: its URL, and the Host header to send when it is not the URL's. */
type PacedTarget = { url: string; host?: string };

/**
 * p50 and p99 (ms, to 0.01) of one client per proxy sending 100 requests/s on one kept-alive
 * connection for PACED_SECONDS: the latency a lightly loaded proxy adds, which the saturating
 * run above hides behind queueing. The proxies take turns within each 10 ms tick (one request
 * to each, never two at once), so a stall of this shared machine falls on both alike, and the
 * 3,000 requests each of a full run put its p99 at the 30th slowest, not the 10th.
 */
async function pacedSideBySide(targets: [PacedTarget, PacedTarget]): Promise<[{ p50: number; p99: number }, { p50: number; p99: number }]> {
  const agents = targets.map(() => new Agent({ keepAlive: true, maxSockets: 1 }));
  const ms: number[][] = targets.map(() => []);
  const once = (i: number) => {
    const { url, host } = targets[i]!;
    const t0 = process.hrtime.bigint();
    return new Promise<void>((resolve) => {
      const req = request(url, { agent: agents[i], headers: host ? { host } : {} }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) ms[i]!.push(Number(process.hrtime.bigint() - t0) / 1e6);
          resolve();
        });
      });
      req.on('error', () => resolve());
      req.end();
    });
  };
  const end = Date.now() + PACED_SECONDS * 1000;
  for (let next = Date.now(), tick = 0; Date.now() < end; next += 10, tick++) {
    await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
    // Each first in turn: the request that follows the other never gets the quieter slot.
    const order = tick % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) await once(i);
  }
  for (const a of agents) a.destroy();
  const round = (x: number) => Math.round(x * 100) / 100;
  const summary = (xs: number[]) => ({ p50: round(pct(xs, 50)), p99: round(pct(xs, 99)) });
  return [summary(ms[0]!), summary(ms[1]!)];
}

/** Mbit/s reading the whole bulk stream from host:port. */
function bulk(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let bytes = 0;
    const s = connect({ host, port });
    s.on('data', (d) => (bytes += d.length));
    s.on('end', () => {
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      if (bytes < BULK_MB * 1024 * 1024) return reject(new Error(`short read: ${bytes} bytes`));
      resolve(Math.round((bytes * 8) / secs / 1e6));
    });
    s.on('error', reject);
  });
}

async function main() {
  return withBenchServices('tunnel', async ({ dir, services }) => {
    const procs: ServiceProcess[] = [];
    let nodes = new Map<string, NodeProcess>();
    let haproxy: LocalHaproxy | undefined;
    try {
      const [httpPort, bulkPort] = [await freePort(), await freePort()];
      procs.push(new ServiceProcess({ name: 'target', command: process.execPath, args: ['--input-type=module', '-e', TARGET, String(httpPort), String(bulkPort), String(BULK_MB)], logFile: join(dir, 'target.log') }));
      const cluster = await startBenchNodes(dir, services);
      const { configs, start } = cluster;
      nodes = cluster.nodes;
      const admin = nodes.get('node-1')!.adminUrl;
      const cookie = await benchAdmin(admin, nodes.values());
      const { base, site } = await benchOrg(admin, cookie);
      const web = (await api(admin, 'POST', `${base}/resources`, { name: 'web', protocol: 'http', hostname: 'app.bench.test', tls: false }, cookie)).body;
      await api(admin, 'POST', `${base}/resources/${web.id}/targets`, { siteId: site.id, host: '127.0.0.1', port: httpPort, scheme: 'http' }, cookie);
      const tcpPort = 29000; // inside the default ingress.resourcePorts
      const raw = (await api(admin, 'POST', `${base}/resources`, { name: 'bulk', protocol: 'tcp', proxyPort: tcpPort }, cookie)).body;
      await api(admin, 'POST', `${base}/resources/${raw.id}/targets`, { siteId: site.id, host: '127.0.0.1', port: bulkPort, scheme: 'tcp' }, cookie);
      procs.push(new ServiceProcess({
        name: 'connector',
        command: process.execPath,
        args: [...profileArgs(), CONNECTOR, ...[...nodes.values()].flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret, '--log-level', 'warn'],
        logFile: join(dir, 'connector.log'),
      }));
      const ip = (id: string) => String(configs.get(id)!.ingress.http).replace(/:80$/, '');
      const holder = async () => (await api(admin, 'GET', `${base}/sites/${site.id}`, undefined, cookie)).body?.status?.node as string | null;
      for (let i = 0; i < 200 && !(await holder()); i++) await new Promise((r) => setTimeout(r, 100));
      const first = (await holder())!;
      await new Promise((r) => setTimeout(r, 500));
      log(`ready: tunnel on ${first}`);

      // The target and the load generator (autocannon, in this process) share the two cores
      // with the proxy in every phase: their cost per request beside the proxy's says what the
      // ratio of requests/s is made of.
      const shared = { target: procs.find((p) => p.name === 'target')!.pid, client: process.pid };
      haproxy = await LocalHaproxy.start({ dir, backends: [{ name: 'target', address: `127.0.0.1:${httpPort}` }], checkPath: null });
      const direct = await warmed(`http://127.0.0.1:${httpPort}/`, undefined, (run) => run());
      log(`direct:  ${direct.requests.average} req/s, p99 ${direct.latency.p99} ms`);
      const { result: viaHaproxy, us: haproxyCpu } = await warmed(`${haproxy.url}/`, undefined, (run) => perRequest('haproxy', { haproxy: haproxy!.pid, ...shared }, run));
      log(`haproxy: ${viaHaproxy.requests.average} req/s, p99 ${viaHaproxy.latency.p99} ms; CPU per request: ${cpuText(haproxyCpu)}`);
      const connector = procs.find((p) => p.name === 'connector')!;
      // BENCH_PROMOTED_PROFILE=DIR: what the tunnel's node kept past a young collection through the saturating run (bench/inspector.ts, npm run bench:heap-top).
      // BENCH_ALLOCATED_PROFILE=DIR: everything it allocated then, kept or not (a sample every 16 KB).
      const heapDir = process.env.BENCH_PROMOTED_PROFILE ?? process.env.BENCH_ALLOCATED_PROFILE;
      const heapMode = process.env.BENCH_PROMOTED_PROFILE ? 'promoted' : 'allocated';
      const heapSample = heapDir ? await sampleHeap(nodes.get(first)!.proc, cluster.inspectPorts.get(first)!, 16 * 1024, heapMode) : undefined;
      const { result: viaTunnel, us: tunnelCpu } = await warmed(`http://${ip(first)}/`, 'app.bench.test', (run) => perRequest('tunnel', { node: nodes.get(first)!.pid, connector: connector.pid, ...shared }, run));
      await heapSample?.stop(join(heapDir!, `${first}-${heapMode}.heapprofile`));
      log(`tunnel:  ${viaTunnel.requests.average} req/s, p99 ${viaTunnel.latency.p99} ms, non-2xx ${viaTunnel.non2xx}; CPU per request: ${cpuText(tunnelCpu)}`);
      const [floorPort, floorH2Port] = [await freePort(), await freePort()];
      const floorConnector = new ServiceProcess({ name: 'floor-connector', command: process.execPath, args: [...cpuProfileArgs(), '--input-type=module', '-e', FLOOR_CONNECTOR, String(floorH2Port), String(httpPort)], logFile: join(dir, 'floor-connector.log') });
      procs.push(floorConnector);
      await listening(floorH2Port);
      const floorNode = new ServiceProcess({ name: 'floor-node', command: process.execPath, args: [...cpuProfileArgs(), '--input-type=module', '-e', FLOOR_NODE, String(floorPort), String(floorH2Port), String(httpPort)], logFile: join(dir, 'floor-node.log') });
      procs.push(floorNode);
      await listening(floorPort);
      const { result: viaFloor, us: floorCpu } = await warmed(`http://127.0.0.1:${floorPort}/`, undefined, (run) => perRequest('floor', { node: floorNode.pid, connector: floorConnector.pid, ...shared }, run));
      log(`floor:   ${viaFloor.requests.average} req/s, p99 ${viaFloor.latency.p99} ms, non-2xx ${viaFloor.non2xx}; CPU per request: ${cpuText(floorCpu)} (the least a Node relay of this shape does)`);
      await floorNode.stop('SIGTERM', 2000);
      await floorConnector.stop('SIGTERM', 2000);
      const [haproxyPaced, tunnelPaced] = await pacedSideBySide([{ url: `${haproxy.url}/` }, { url: `http://${ip(first)}/`, host: 'app.bench.test' }]);
      log(`at 100 req/s: haproxy p50 ${haproxyPaced.p50} ms p99 ${haproxyPaced.p99} ms; tunnel p50 ${tunnelPaced.p50} ms p99 ${tunnelPaced.p99} ms`);
      const directMbps = await bulk('127.0.0.1', bulkPort);
      const tunnelMbps = await bulk(ip(first), tcpPort);
      log(`bulk: direct ${directMbps} Mbit/s, tunnel ${tunnelMbps} Mbit/s`);

      const gaps: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const victim = (await holder())!;
        const others = [...configs.keys()].filter((n) => n !== victim);
        let running = true;
        let failingSince: number | undefined;
        let longest = 0;
        const client = (async () => {
          for (let i = 0; running; i++) {
            const ok = await okThrough(ip(others[i % others.length]!), 'app.bench.test', 1000);
            const now = Date.now();
            if (!ok) failingSince ??= now;
            else if (failingSince !== undefined) {
              longest = Math.max(longest, now - failingSince);
              failingSince = undefined;
            }
            await new Promise((res) => setTimeout(res, 10));
          }
        })();
        await new Promise((res) => setTimeout(res, 300));
        nodes.get(victim)!.proc.signal('SIGKILL');
        await nodes.get(victim)!.proc.exited;
        await new Promise((res) => setTimeout(res, 3000));
        running = false;
        await client;
        if (failingSince !== undefined) longest = Math.max(longest, Date.now() - failingSince);
        gaps.push(longest);
        log(`round ${r + 1}: killed ${victim}; longest failing run ${longest} ms`);
        await start(victim).waitReady(60_000);
      }
      return {
        bench: 'tunnel',
        direct_rps: direct.requests.average,
        haproxy_rps: viaHaproxy.requests.average,
        tunnel_rps: viaTunnel.requests.average,
        tunnel_p99_ms: viaTunnel.latency.p99,
        haproxy_cpu_us_per_req: haproxyCpu.haproxy!.user + haproxyCpu.haproxy!.sys,
        tunnel_node_cpu_us_per_req: tunnelCpu.node!.user + tunnelCpu.node!.sys,
        tunnel_connector_cpu_us_per_req: tunnelCpu.connector!.user + tunnelCpu.connector!.sys,
        floor_rps: viaFloor.requests.average,
        floor_node_cpu_us_per_req: floorCpu.node!.user + floorCpu.node!.sys,
        floor_connector_cpu_us_per_req: floorCpu.connector!.user + floorCpu.connector!.sys,
        haproxy_p50_ms_at_100: haproxyPaced.p50,
        haproxy_p99_ms_at_100: haproxyPaced.p99,
        tunnel_p50_ms_at_100: tunnelPaced.p50,
        tunnel_p99_ms_at_100: tunnelPaced.p99,
        direct_mbps: directMbps,
        tunnel_mbps: tunnelMbps,
        failover_gap_ms_p50: pct(gaps, 50),
        failover_gap_ms_p99: pct(gaps, 99),
      };
    } finally {
      await haproxy?.stop();
      for (const p of procs) await p.stop('SIGTERM', 2000);
      await Promise.all([...nodes.values()].map((n) => n.proc.stop(process.env.BENCH_STOP_SIGNAL === 'TERM' ? 'SIGTERM' : 'SIGKILL', 5000)));
    }
  });
}

runBench(main);
