// npm run bench:auth
// What access control costs on the request path. Three nodes, a connector and a small HTTP
// target; two plain-HTTP resources on one site: `open` (no policy) and `private` (a password
// method and a share link). A session is made the way a browser makes one (portal form,
// exchange token, cookie); then, in the same run, keep-alive requests/s and p99 to the tunnel's
// node: the open resource, the private one with the session cookie, and the private one with
// the share link's header. Goal: a request with a valid session costs at most 10 % of the open
// resource's requests/s. Last line: one JSON object.
import { request, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { adminCall as api } from '../devenv/admin-client.ts';
import type { NodeProcess } from '../devenv/node-process.ts';
import { freePort } from '../devenv/ports.ts';
import { ServiceProcess } from '../devenv/process.ts';
import { benchAdmin, benchOrg, log, runBench, startBenchNodes, withBenchServices } from './lib.ts';
import { concurrency, size } from './sizes.ts';

const SECONDS = size('SECONDS', 10, 1);
const CONNECTOR = fileURLToPath(new URL('../bin/cluster-connector.mjs', import.meta.url));
const PORTAL = 'auth.bench.test';
const TARGET = `
import { createServer } from 'node:http';
createServer((req, res) => res.end('hello')).listen(Number(process.argv.at(-1)), '127.0.0.1');
`;

function load(url: string, headers: Record<string, string>, duration: number): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => autocannon({ url, connections: concurrency(16), duration, headers }, (err, res) => (err ? reject(err) : resolve(res))));
}

async function bench(url: string, headers: Record<string, string>): Promise<autocannon.Result> {
  await load(url, headers, Math.min(2, SECONDS));
  return load(url, headers, SECONDS);
}

interface Answer { status: number; headers: IncomingHttpHeaders; body: string }

/** One request; `tls` for the portal (served on :443 only). */
function fetchOnce(o: { ip: string; host: string; path: string; tls?: boolean; method?: string; headers?: Record<string, string>; body?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const send = o.tls ? httpsRequest : request;
    const req = send({ host: o.ip, port: o.tls ? 443 : 80, path: o.path, method: o.method ?? 'GET', servername: o.host, rejectUnauthorized: false, agent: false, headers: { host: o.host, ...o.headers } } as never, (res: import('node:http').IncomingMessage) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Signs in with the password as a browser would: portal page, form post, exchange; returns the cookie. */
async function browserSession(ip: string, resourceId: string, host: string, password: string): Promise<string> {
  const to = `http://${host}/`;
  const page = await fetchOnce({ ip, host: PORTAL, tls: true, path: `/resource/${resourceId}?to=${encodeURIComponent(to)}`, headers: { accept: 'text/html' } });
  const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1];
  const csrfCookie = String(page.headers['set-cookie']?.[0] ?? '').split(';')[0]!;
  if (!csrf) throw new Error(`portal page without a form: ${page.status}`);
  const form = new URLSearchParams({ method: 'password', secret: password, to, csrf }).toString();
  const post = await fetchOnce({ ip, host: PORTAL, tls: true, method: 'POST', path: `/resource/${resourceId}`, headers: { cookie: csrfCookie, 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' }, body: form });
  const back = new URL(String(post.headers.location));
  const exchanged = await fetchOnce({ ip, host, path: `${back.pathname}${back.search}`, headers: { accept: 'text/html' } });
  const cookie = String(exchanged.headers['set-cookie']?.[0] ?? '').split(';')[0];
  if (!cookie) throw new Error(`no session: portal ${post.status}, exchange ${exchanged.status}`);
  return cookie;
}

async function main() {
  return withBenchServices('auth', async ({ dir, services }) => {
    const procs: ServiceProcess[] = [];
    let nodes = new Map<string, NodeProcess>();
    try {
      const httpPort = await freePort();
      procs.push(new ServiceProcess({ name: 'target', command: process.execPath, args: ['--input-type=module', '-e', TARGET, String(httpPort)], logFile: join(dir, 'target.log') }));
      const cluster = await startBenchNodes(dir, services, { access: { portalHostname: PORTAL } });
      nodes = cluster.nodes;
      const admin = nodes.get('node-1')!.adminUrl;
      const cookie = await benchAdmin(admin, nodes.values());
      const { base, site } = await benchOrg(admin, cookie);
      const resources: Record<string, { id: string }> = {};
      for (const name of ['open', 'private']) {
        resources[name] = (await api(admin, 'POST', `${base}/resources`, { name, protocol: 'http', hostname: `${name}.bench.test`, tls: false }, cookie)).body;
        await api(admin, 'POST', `${base}/resources/${resources[name]!.id}/targets`, { siteId: site.id, host: '127.0.0.1', port: httpPort, scheme: 'http' }, cookie);
      }
      const priv = `${base}/resources/${resources.private!.id}`;
      const password = 'benchmark resource password';
      await api(admin, 'PUT', `${priv}/access/password`, { password }, cookie);
      const link = (await api(admin, 'POST', `${priv}/share-links`, { title: 'bench' }, cookie)).body;
      procs.push(new ServiceProcess({
        name: 'connector',
        command: process.execPath,
        args: [CONNECTOR, ...[...nodes.values()].flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret, '--log-level', 'warn'],
        logFile: join(dir, 'connector.log'),
      }));
      const ip = (id: string) => String(cluster.configs.get(id)!.ingress.http).replace(/:80$/, '');
      const holder = async () => (await api(admin, 'GET', `${base}/sites/${site.id}`, undefined, cookie)).body?.status?.node as string | null;
      for (let i = 0; i < 200 && !(await holder()); i++) await new Promise((r) => setTimeout(r, 100));
      const node = ip((await holder())!);
      // Published everywhere: the private resource refuses a bare request.
      for (let i = 0; i < 100 && (await fetchOnce({ ip: node, host: 'private.bench.test', path: '/' })).status !== 401; i++) await new Promise((r) => setTimeout(r, 100));
      const session = await browserSession(node, resources.private!.id, 'private.bench.test', password);
      const check = async (headers: Record<string, string>) => (await fetchOnce({ ip: node, host: 'private.bench.test', path: '/', headers })).status;
      if ((await check({ cookie: session })) !== 200 || (await check({ 'x-cluster-access-token': link.token })) !== 200) throw new Error('the session or the share link does not open the private resource');
      log(`ready: tunnel on ${node}`);

      const open = await bench(`http://${node}/`, { host: 'open.bench.test' });
      log(`open:    ${open.requests.average} req/s, p99 ${open.latency.p99} ms, non-2xx ${open.non2xx}`);
      const withSession = await bench(`http://${node}/`, { host: 'private.bench.test', cookie: session });
      log(`session: ${withSession.requests.average} req/s, p99 ${withSession.latency.p99} ms, non-2xx ${withSession.non2xx}`);
      const withToken = await bench(`http://${node}/`, { host: 'private.bench.test', 'x-cluster-access-token': link.token });
      log(`token:   ${withToken.requests.average} req/s, p99 ${withToken.latency.p99} ms, non-2xx ${withToken.non2xx}`);
      if (withSession.non2xx || withToken.non2xx) throw new Error(`refused requests under load: session ${withSession.non2xx}, token ${withToken.non2xx}`);

      // Revocation: a fresh session works through every node; then every node refuses it.
      const all = [...cluster.configs.keys()].map(ip);
      const fresh = await browserSession(node, resources.private!.id, 'private.bench.test', password);
      const statuses = () => Promise.all(all.map((n) => fetchOnce({ ip: n, host: 'private.bench.test', path: '/', headers: { cookie: fresh } }).then((r) => r.status)));
      if ((await statuses()).some((x) => x !== 200)) throw new Error('a fresh session is not accepted by every node');
      await api(admin, 'DELETE', `${priv}/sessions`, undefined, cookie);
      const t0 = Date.now();
      while ((await statuses()).some((x) => x !== 401)) {
        if (Date.now() - t0 > 30_000) throw new Error('a revoked session is still accepted after 30 s');
        await new Promise((r) => setTimeout(r, 5));
      }
      const revokeMs = Date.now() - t0;
      log(`revoked: every node refuses the session ${revokeMs} ms after the revocation answered`);
      return {
        bench: 'auth',
        open_rps: open.requests.average,
        session_rps: withSession.requests.average,
        token_rps: withToken.requests.average,
        session_p99_ms: withSession.latency.p99,
        open_p99_ms: open.latency.p99,
        revoke_ms: revokeMs,
      };
    } finally {
      for (const p of procs) await p.stop('SIGTERM', 2000);
      await Promise.all([...nodes.values()].map((n) => n.proc.stop('SIGKILL', 5000)));
    }
  });
}

runBench(main);
