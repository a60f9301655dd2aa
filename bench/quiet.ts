// npm run bench:quiet
// The false-suspicion check of the failure detector: three nodes, one site and its connector,
// a steady trickle of requests through every node and DNS queries to every node, and nothing
// wrong, for 10 minutes. Every suspicion counted (cluster_peer_suspicions_total) is a false
// one; so is every failed request. Also the worst event-loop lag any node reported, which is
// what a false suspicion would come from. Last line: one JSON object.
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminCall as api } from '../devenv/admin-client.ts';
import type { NodeProcess } from '../devenv/node-process.ts';
import { ServiceProcess } from '../devenv/process.ts';
import { dig } from '../test/harness/dig.ts';
import { scrape, total } from '../test/harness/metrics.ts';
import { benchAdmin, benchOrg, log, runBench, startBenchNodes, withBenchServices } from './lib.ts';
import { size } from './sizes.ts';

const SECONDS = size('SECONDS', 600, 3);
const CONNECTOR = fileURLToPath(new URL('../bin/cluster-connector.mjs', import.meta.url));

function get(ip: string, host: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: ip, port: 80, path: '/', headers: { host }, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function main() {
  return withBenchServices('quiet', async ({ dir, services }) => {
    const target = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    const procs: ServiceProcess[] = [];
    let nodes = new Map<string, NodeProcess>();
    try {
      const cluster = await startBenchNodes(dir, services);
      nodes = cluster.nodes;
      const admin = nodes.get('node-1')!.adminUrl;
      const cookie = await benchAdmin(admin, nodes.values());
      const { base, site } = await benchOrg(admin, cookie);
      const resource = (await api(admin, 'POST', `${base}/resources`, { name: 'app', protocol: 'http', hostname: 'app.bench.test', tls: false }, cookie)).body;
      await api(admin, 'POST', `${base}/resources/${resource.id}/targets`, { siteId: site.id, host: '127.0.0.1', port: (target.address() as { port: number }).port, scheme: 'http' }, cookie);
      procs.push(new ServiceProcess({ name: 'connector', command: process.execPath, args: [CONNECTOR, ...[...nodes.values()].flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret, '--log-level', 'warn'], logFile: join(dir, 'connector.log') }));
      const ips = [...cluster.configs.values()].map((c) => String(c.ingress.http).replace(/:80$/, ''));
      for (let i = 0; i < 300 && (await get(ips[0]!, 'app.bench.test')) !== 200; i++) await new Promise((r) => setTimeout(r, 100));
      // Start-up (migrations, compiling) is not what is measured: one scrape resets the lag histograms.
      for (const n of nodes.values()) await scrape(n.metricsUrl);
      log(`ready; ${SECONDS} s without faults`);

      let requests = 0;
      let failed = 0;
      let queries = 0;
      const end = Date.now() + SECONDS * 1000;
      let lagMaxMs = 0;
      for (let i = 0; Date.now() < end; i++) {
        const ip = ips[i % ips.length]!;
        const [status, answer] = await Promise.all([get(ip, 'app.bench.test'), i % 5 === 0 ? dig(ip, 'app.bench.test', 'A').then((d) => d.status) : Promise.resolve('NOERROR')]);
        requests++;
        if (status !== 200) failed++;
        if (i % 5 === 0) queries++;
        if (answer !== 'NOERROR') failed++;
        if (i % 100 === 0) {
          for (const n of nodes.values()) lagMaxMs = Math.max(lagMaxMs, 1000 * (total(await scrape(n.metricsUrl), 'nodejs_eventloop_lag_max_seconds') ?? 0));
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      let suspicions = 0;
      for (const n of nodes.values()) suspicions += total(await scrape(n.metricsUrl), 'cluster_peer_suspicions_total') ?? 0;
      log(`${requests} requests, ${queries} DNS queries, ${failed} failed; ${suspicions} suspicions; worst event-loop lag ${Math.round(lagMaxMs)} ms`);
      return { bench: 'quiet', seconds: SECONDS, requests, dns_queries: queries, failed, suspicions, loop_lag_max_ms: Math.round(lagMaxMs) };
    } finally {
      await Promise.all(procs.map((p) => p.stop('SIGTERM', 3000)));
      await Promise.all([...nodes.values()].map((n) => n.proc.stop('SIGKILL', 1000)));
      target.close();
    }
  });
}

runBench(main);
