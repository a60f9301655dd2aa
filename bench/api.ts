// npm run bench:api
// Three node processes behind haproxy. autocannon measures an authenticated list of sites
// and a create/update mix through the load balancer, and the same list against one node
// directly. Last line: one JSON object.
import { setupToken } from '../devenv/admin-client.ts';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { LocalHaproxy } from '../devenv/haproxy.ts';
import { NodeProcess } from '../devenv/node-process.ts';
import { testNodeConfig } from '../test/harness/nodes.ts';
import { log, runBench, withBenchServices } from './lib.ts';
import { concurrency, size } from './sizes.ts';

const DURATION = size('SECONDS', 10, 1);

async function json(url: string, init: RequestInit & { cookie?: string; body?: string } = {}) {
  const res = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...(init.cookie ? { cookie: init.cookie } : {}) } });
  return { status: res.status, body: await res.json().catch(() => undefined), cookie: res.headers.get('set-cookie')?.split(';')[0] };
}

function run(opts: autocannon.Options): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => autocannon(opts, (err, res) => (err ? reject(err) : resolve(res))));
}

async function main() {
  return withBenchServices('api', async ({ dir, services }) => {
    const nodes: NodeProcess[] = [];
    let haproxy: LocalHaproxy | undefined;
    try {
      const url = await services.postgres!.createDatabase('bench');
      for (const id of ['node-1', 'node-2', 'node-3']) {
        const config = await testNodeConfig({ postgresUrl: url, valkeyUrl: services.valkey!.url, clusterName: 'bench', nodeId: id, config: { log: { level: 'warn' }, admin: { trustProxy: ['127.0.0.1'] } } });
        nodes.push(new NodeProcess({ name: id, config, configFile: join(dir, `${id}.yaml`), logFile: join(dir, `${id}.log`) }));
      }
      await Promise.all(nodes.map((n) => n.waitReady(60_000)));
      haproxy = await LocalHaproxy.start({ dir, backends: nodes.map((n) => ({ name: String(n.config.nodeId), address: n.adminUrl.slice(7) })) });
      const token = await setupToken(nodes);
      const admin = { email: 'bench@example.com', password: 'benchmark password 123' };
      await json(`${haproxy.url}/api/v1/auth/setup`, { method: 'POST', body: JSON.stringify({ token, ...admin }) });
      const cookie = (await json(`${haproxy.url}/api/v1/auth/login`, { method: 'POST', body: JSON.stringify(admin) })).cookie!;
      const org = (await json(`${haproxy.url}/api/v1/orgs`, { method: 'POST', cookie, body: JSON.stringify({ slug: 'bench', name: 'Bench' }) })).body;
      for (let i = 0; i < 50; i++) await json(`${haproxy.url}/api/v1/orgs/${org.id}/sites`, { method: 'POST', cookie, body: JSON.stringify({ name: `site ${i}` }) });
      const list = `/api/v1/orgs/${org.id}/sites?limit=50`;
      const headers = { cookie, 'content-type': 'application/json' };
      log('cluster ready: 3 nodes behind haproxy, 50 sites');

      const read = await run({ url: `${haproxy.url}${list}`, headers, connections: concurrency(32), duration: DURATION });
      log(`read via haproxy: ${read.requests.average} req/s, p99 ${read.latency.p99} ms, non-2xx ${read.non2xx}`);
      const direct = await run({ url: `${nodes[0]!.adminUrl}${list}`, headers, connections: concurrency(32), duration: DURATION });
      log(`read direct:      ${direct.requests.average} req/s, p99 ${direct.latency.p99} ms, non-2xx ${direct.non2xx}`);
      let n = 0;
      const write = await run({
        url: haproxy.url,
        headers,
        connections: concurrency(16),
        duration: DURATION,
        requests: [
          {
            method: 'POST',
            path: `/api/v1/orgs/${org.id}/sites`,
            setupRequest: (req) => ({ ...req, body: JSON.stringify({ name: `w ${n++}` }) }),
            onResponse: (_status, body, context) => {
              try {
                const s = JSON.parse(body);
                (context as { site?: unknown }).site = s;
              } catch {}
            },
          },
          {
            method: 'PATCH',
            setupRequest: (req, context) => {
              const site = (context as { site?: { id: string; version: number } }).site;
              return { ...req, path: `/api/v1/orgs/${org.id}/sites/${site?.id}`, body: JSON.stringify({ version: site?.version ?? 1, name: `u ${n++}` }) };
            },
          },
        ],
      });
      log(`create/update via haproxy: ${write.requests.average} req/s, p99 ${write.latency.p99} ms, non-2xx ${write.non2xx}`);
      return {
        bench: 'api',
        read_rps: read.requests.average,
        read_p99_ms: read.latency.p99,
        write_rps: write.requests.average,
        write_p99_ms: write.latency.p99,
        direct_read_rps: direct.requests.average,
        direct_read_p99_ms: direct.latency.p99,
        non_2xx: read.non2xx + direct.non2xx + write.non2xx,
      };
    } finally {
      await haproxy?.stop();
      await Promise.all(nodes.map((n) => n.proc.stop('SIGKILL', 1000)));
    }
  });
}

runBench(main);
