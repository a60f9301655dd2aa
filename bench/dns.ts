// npm run bench:dns
// Three node processes serving a zone with BENCH_HOSTS resource names, and NSD (Debian's)
// serving the same records from a zone file generated from the node's published snapshot.
// dnsperf sends the same query mix (A hits, SOA, NS, NXDOMAIN, NODATA) to each for
// BENCH_SECONDS; latencies come from dnsperf's per-query output. Then the record-follow
// time: the node holding the demo site's tunnel is SIGKILLed, and we measure until every
// survivor's answer names the new holder (BENCH_ROUNDS rounds). Last line: one JSON object.
import { execFile, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { NodeProcess } from '../devenv/node-process.ts';
import { startNsd } from '../devenv/nsd.ts';
import { ServiceProcess, treeCpuMs, waitUntil } from '../devenv/process.ts';
import { createLogger } from '../core/log.ts';
import { Secret } from '../core/secret.ts';
import { SnapshotStore } from '../persistence/snapshots.ts';
import { Valkey } from '../persistence/valkey.ts';
import type { ZoneData } from '../protocol/zone.ts';
import { nodeAddress } from '../test/harness/nodes.ts';
import { adminCall as api } from '../devenv/admin-client.ts';
import { benchAdmin, log, runBench, startBenchNodes, withBenchServices } from './lib.ts';
import { concurrency, size } from './sizes.ts';

const run = promisify(execFile);
const SECONDS = size('SECONDS', 10, 1);
const ROUNDS = size('ROUNDS', 5, 1);
const HOSTS = size('HOSTS', 50, 3);
const ZONE = 'bench.test';
const CONNECTOR = fileURLToPath(new URL('../bin/cluster-connector.mjs', import.meta.url));

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)] ?? NaN;

async function digShort(server: string, name: string, type: string): Promise<string[]> {
  const { stdout } = await run('dig', [`@${server}`, name, type, '+short', '+norec', '+time=1', '+tries=1']).catch(() => ({ stdout: '' }));
  return stdout.trim().split('\n').filter(Boolean).sort();
}

/**
 * dnsperf for SECONDS against the server whose process is `pid`; qps from its summary, p99
 * from its per-query (-v) lines, and the server's CPU per answered query in microseconds,
 * user and system (steadier than qps on a machine whose two cores dnsperf shares with the
 * server: at saturation dnsperf itself is the limit for the faster server).
 */
async function dnsperf(server: string, port: number, queries: string, pid: number): Promise<{ qps: number; p99_ms: number; lost: number; cpu_us: number; user_us: number }> {
  const before = treeCpuMs(pid);
  const r = await dnsperfRun(server, port, queries);
  const after = treeCpuMs(pid);
  const us = (ms: number) => Math.round((ms * 10_000) / Math.max(1, r.completed)) / 10;
  return { ...r, cpu_us: us(after.user + after.sys - before.user - before.sys), user_us: us(after.user - before.user) };
}

function dnsperfRun(server: string, port: number, queries: string): Promise<{ qps: number; p99_ms: number; lost: number; completed: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn('dnsperf', ['-s', server, '-p', String(port), '-d', queries, '-l', String(SECONDS), '-c', String(concurrency(4)), '-q', String(concurrency(200)), '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const latencies: number[] = [];
    let tail = '';
    let summary = '';
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (chunk: string) => {
      const lines = (tail + chunk).split('\n');
      tail = lines.pop()!;
      for (const l of lines) {
        if (l.startsWith('> ')) {
          const ms = Number(l.trim().split(/\s+/).at(-1)) * 1000;
          if (Number.isFinite(ms)) latencies.push(ms);
        } else summary += `${l}\n`;
      }
    });
    p.stderr.resume();
    p.on('error', reject);
    p.on('close', (code) => {
      const qps = Number(/Queries per second:\s+([\d.]+)/.exec(summary)?.[1]);
      const lost = Number(/Queries lost:\s+(\d+)/.exec(summary)?.[1] ?? 0);
      const completed = Number(/Queries completed:\s+(\d+)/.exec(summary)?.[1] ?? 0);
      if (code !== 0 || !Number.isFinite(qps)) return reject(new Error(`dnsperf failed (${code}): ${summary.slice(-500)}`));
      resolve({ qps: Math.round(qps), p99_ms: Math.round(pct(latencies, 99) * 100) / 100, lost, completed });
    });
  });
}

function zoneFile(z: ZoneData): string {
  const lines = [`$ORIGIN ${z.zone}.`, `@ ${z.soa.ttl} IN SOA ${z.soa.mname}. ${z.soa.rname}. ${z.serial} ${z.soa.refresh} ${z.soa.retry} ${z.soa.expire} ${z.soa.minimum}`];
  for (const [name, records] of Object.entries(z.records)) {
    for (const r of records) {
      const data = r.type === 'TXT' ? r.data.map((s) => JSON.stringify(s)).join(' ') : r.type === 'CAA' ? `${r.data.flags} ${r.data.tag} "${r.data.value}"` : r.type === 'NS' || r.type === 'CNAME' ? `${r.data}.` : r.data;
      lines.push(`${name}. ${r.ttl} IN ${r.type} ${data}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

async function main() {
  return withBenchServices('dns', async ({ dir, services }) => {
    const procs: ServiceProcess[] = [];
    let nodes = new Map<string, NodeProcess>();
    try {
      const target = createServer((_req, res) => res.end('ok'));
      await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
      const cluster = await startBenchNodes(dir, services, { dns: { rateLimit: 0 } });
      const { configs, start } = cluster;
      nodes = cluster.nodes;
      const ip = (id: string) => String(configs.get(id)!.dns.bind).replace(/:53$/, '');
      const admin = nodes.get('node-1')!.adminUrl;
      const cookie = await benchAdmin(admin, nodes.values());
      const org = (await api(admin, 'POST', '/api/v1/orgs', { slug: 'bench', name: 'Bench' }, cookie)).body;
      const base = `/api/v1/orgs/${org.id}`;
      const domain = (await api(admin, 'POST', `${base}/domains`, { name: ZONE }, cookie)).body;
      await api(admin, 'POST', `${base}/domains/${domain.id}/verify`, { force: true }, cookie);
      const site = (await api(admin, 'POST', `${base}/sites`, { name: 'site' }, cookie)).body;
      for (let i = 0; i < HOSTS; i++) {
        const r = (await api(admin, 'POST', `${base}/resources`, { name: `app${i}`, protocol: 'http', hostname: `app${i}.${ZONE}`, tls: false }, cookie)).body;
        await api(admin, 'POST', `${base}/resources/${r.id}/targets`, { siteId: site.id, host: '127.0.0.1', port: (target.address() as { port: number }).port, scheme: 'http' }, cookie);
      }
      procs.push(new ServiceProcess({
        name: 'connector',
        command: process.execPath,
        args: [CONNECTOR, ...[...nodes.values()].flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret, '--log-level', 'warn'],
        logFile: join(dir, 'connector.log'),
      }));
      const holder = async () => (await api(admin, 'GET', `${base}/sites/${site.id}`, undefined, cookie)).body?.status?.node as string | null;
      await waitUntil('site online', async () => Boolean(await holder()), { timeoutMs: 30_000 });
      const first = (await holder())!;
      await waitUntil('zone follows the site', async () => (await digShort(ip('node-1'), `app0.${ZONE}`, 'A')).join() === ip(first), { timeoutMs: 30_000 });
      log(`ready: ${HOSTS} names, tunnel on ${first}`);

      // The same records for NSD, from the snapshot the zone actor published.
      const valkey = new Valkey({ url: new Secret(services.valkey!.url), clusterName: 'bench', connectTimeout: 2000, commandTimeout: 2000, logger: createLogger({ level: 'silent' }) });
      valkey.connect();
      let zone: ZoneData | undefined;
      await waitUntil('zone snapshot', async () => Boolean((zone = (await new SnapshotStore(valkey, 'zones').get(ZONE).catch(() => undefined))?.data)), { timeoutMs: 10_000 });
      await valkey.close();
      const nsdIp = nodeAddress();
      const nsdProc = await startNsd({ dir, ip: nsdIp, zones: [{ name: ZONE, text: zoneFile(zone!) }] });
      procs.push(nsdProc);

      const mix: string[] = [];
      for (let i = 0; i < HOSTS; i++) mix.push(`app${i}.${ZONE} A`, `app${i}.${ZONE} A`, `app${i}.${ZONE} A`, `missing${i}.${ZONE} A`, `app${i}.${ZONE} MX`);
      mix.push(`${ZONE} SOA`, `${ZONE} NS`);
      writeFileSync(join(dir, 'queries.txt'), `${mix.join('\n')}\n`);
      const ours = await dnsperf(ip('node-1'), 53, join(dir, 'queries.txt'), nodes.get('node-1')!.proc.pid);
      log(`cluster node: ${ours.qps} qps, p99 ${ours.p99_ms} ms, lost ${ours.lost}, ${ours.cpu_us} us of CPU per query (user ${ours.user_us})`);
      const nsd = await dnsperf(nsdIp, 53, join(dir, 'queries.txt'), nsdProc.pid);
      log(`nsd:          ${nsd.qps} qps, p99 ${nsd.p99_ms} ms, lost ${nsd.lost}, ${nsd.cpu_us} us of CPU per query (user ${nsd.user_us})`);

      const follows: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const victim = (await holder())!;
        const survivors = [...configs.keys()].filter((n) => n !== victim);
        const killedAt = Date.now();
        nodes.get(victim)!.proc.signal('SIGKILL');
        const times = await Promise.all(survivors.map(async (id) => {
          for (;;) {
            const a = await digShort(ip(id), `app0.${ZONE}`, 'A');
            if (a.length === 1 && a[0] !== ip(victim) && survivors.some((s) => ip(s) === a[0])) return Date.now() - killedAt;
            if (Date.now() - killedAt > 30_000) return Number.NaN;
            await new Promise((res) => setTimeout(res, 10));
          }
        }));
        const ms = Math.max(...times);
        follows.push(ms);
        log(`round ${r + 1}: killed ${victim}; every survivor named the new holder after ${ms} ms`);
        await nodes.get(victim)!.proc.exited;
        await start(victim).waitReady(60_000);
        await new Promise((res) => setTimeout(res, 1000));
      }
      target.close();
      return { bench: 'dns', qps: ours.qps, nsd_qps: nsd.qps, p99_ms: ours.p99_ms, nsd_p99_ms: nsd.p99_ms, cpu_us_per_query: ours.cpu_us, nsd_cpu_us_per_query: nsd.cpu_us, follow_ms_p99: pct(follows, 99) };
    } finally {
      for (const p of procs) await p.stop('SIGTERM', 2000);
      await Promise.all([...nodes.values()].map((n) => n.proc.stop(process.env.BENCH_STOP_SIGNAL === 'TERM' ? 'SIGTERM' : 'SIGKILL', 5000)));
    }
  });
}

runBench(main);
