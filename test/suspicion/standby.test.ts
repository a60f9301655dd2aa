// Standby tunnels: the connector holds a second tunnel to the node the cluster advises. When
// the primary's node freezes, the other nodes suspect it and route to the standby before
// anything moves (the site is still owned by the frozen node); when the connector gives the
// frozen node up, the standby is promoted and a new standby opened elsewhere. SIGKILL of the
// primary's node: the standby is promoted at once.
import { createServer, request, type IncomingMessage } from 'node:http';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ServiceProcess } from '../../devenv/process.ts';
import { call, publishHttpResource, startApiCluster } from '../harness/api.ts';
import { until } from '../harness/until.ts';

const CONNECTOR_ENTRY = fileURLToPath(new URL('../../bin/cluster-connector.mjs', import.meta.url));

function get(host: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host, port: 80, path: '/', headers: { host: 'app.sb.test' }, agent: false, timeout: 1500 }, (res: IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Longest run of failed requests: from when the first of them was sent to when the next success came back (ms). */
function longestOutage(results: Array<{ start: number; at: number; ok: boolean }>): number {
  let longest = 0;
  let since: number | undefined;
  for (const r of results) {
    if (!r.ok) since ??= r.start;
    else if (since !== undefined) {
      longest = Math.max(longest, r.at - since);
      since = undefined;
    }
  }
  return since === undefined ? longest : Infinity;
}

t.test('a standby tunnel carries the traffic of a frozen or killed primary', async (t) => {
  const target = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));
  const c = await startApiCluster(t, 3, { lease: { ttl: '10s', renewEvery: '1s' } });
  const cookie = c.adminCookie;
  const { base, site } = await publishHttpResource(c, { slug: 'sb', zone: 'sb.test', targetPort: (target.address() as { port: number }).port });
  const dir = mkdtempSync(join(tmpdir(), 'standby-'));
  const logFile = join(dir, 'connector.log');
  const connector = new ServiceProcess({
    name: 'connector', command: process.execPath, logFile,
    args: [CONNECTOR_ENTRY, ...c.nodes.flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret],
  });
  t.teardown(() => connector.stop('SIGTERM', 3000));
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const ip = (nodeId: string) => String(c.nodes.find((n) => n.config.nodeId === nodeId)!.config.ingress.http).replace(/:80$/, '');
  const owner = async (via = c.lb) => (await call(via, 'GET', `${base}/sites/${site.id}`, { cookie })).body?.status?.node as string | null;
  const standbyNode = () => [...log().matchAll(/"standbyNode":"([^"]+)","node":"([^"]+)","msg":"standby tunnel up"/g)].at(-1)?.[1];
  await until(async () => (await owner()) && standbyNode() && (await get(ip((await owner())!))) === 200, 30_000, 'the site online with a standby');
  const primary = (await owner())!;
  const standby = standbyNode()!;
  t.not(standby, primary, `the standby (${standby}) is on another node than the primary (${primary})`);
  const third = c.nodes.map((n) => String(n.config.nodeId)).find((id) => id !== primary && id !== standby)!;

  // Freeze the primary's node, with a client on the two others.
  const results: Array<{ start: number; at: number; ok: boolean; via: string }> = [];
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const via = i % 2 ? standby : third;
      const start = Date.now();
      const ok = (await get(ip(via))) === 200;
      results.push({ start, at: Date.now(), ok, via });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  t.teardown(async () => ((running = false), await loop));
  await new Promise((r) => setTimeout(r, 500));
  const frozen = c.nodes.find((n) => n.config.nodeId === primary)!;
  frozen.proc.signal('SIGSTOP');
  t.teardown(() => frozen.proc.signal('SIGCONT'));
  const stoppedAt = Date.now();
  // Served again while the frozen node still owns the site: through the standby tunnel.
  await until(async () => results.some((r) => r.at > stoppedAt + 100 && r.ok) || undefined, 10_000, 'a request served after the freeze');
  t.equal(await owner(c.nodes.find((n) => n.config.nodeId === third)!.adminUrl), primary, 'the frozen node still owned the site: nothing had moved yet');
  t.notOk(/promoting the standby/.test(log()), 'and the connector had not yet given the frozen node up');
  // Then the connector gives it up (3 s of silence) and the standby is promoted.
  await until(async () => (await owner(c.nodes.find((n) => n.config.nodeId === third)!.adminUrl)) === standby, 15_000, 'the standby promoted');
  await new Promise((r) => setTimeout(r, 1000));
  const during = results.filter((r) => r.at >= stoppedAt - 50);
  const freezeOutage = Math.max(...[standby, third].map((via) => longestOutage(during.filter((r) => r.via === via))));
  t.comment(`frozen primary: longest outage through the standby's node ${longestOutage(during.filter((r) => r.via === standby))} ms, through the third node ${longestOutage(during.filter((r) => r.via === third))} ms (requests every 40 ms to each; a request times out after 1.5 s); slowest successful request ${Math.max(...during.filter((r) => r.ok).map((r) => r.at - r.start))} ms`);
  t.ok(Number.isFinite(freezeOutage), 'requests succeed again');
  frozen.proc.signal('SIGCONT');

  // A new standby opens (not on the new primary); then SIGKILL the new primary.
  await until(() => { const s = standbyNode(); return s && s !== standby ? s : undefined; }, 15_000, 'a new standby after the promotion');
  const next = standbyNode()!;
  t.not(next, standby, `a new standby on ${next}`);
  const killedAt = Date.now();
  await c.nodes.find((n) => n.config.nodeId === standby)!.proc.stop('SIGKILL', 1000);
  const alive = c.nodes.map((n) => String(n.config.nodeId)).filter((id) => id !== standby);
  results.length = 0;
  running = false;
  await loop;
  running = true;
  const loop2 = (async () => {
    for (let i = 0; running; i++) {
      const via = alive[i % alive.length]!;
      const start = Date.now();
      const ok = (await get(ip(via))) === 200;
      results.push({ start, at: Date.now(), ok, via });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await until(async () => (await owner(c.nodes.find((n) => n.config.nodeId === next)!.adminUrl)) === next, 15_000, 'the standby promoted after the kill');
  await new Promise((r) => setTimeout(r, 1000));
  running = false;
  await loop2;
  const killOutage = Math.max(...alive.map((via) => longestOutage(results.filter((r) => r.via === via))));
  t.comment(`killed primary: longest outage through any surviving node ${killOutage} ms (SIGKILL, then ${Date.now() - killedAt} ms of requests)`);
  t.ok(Number.isFinite(killOutage) && results.at(-1)?.ok, 'requests succeed again through the promoted standby');
});
