import { createServer, request, type IncomingMessage } from 'node:http';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import t, { type Test } from 'tap';
import { ServiceProcess } from '../../devenv/process.ts';
import { call, publishHttpResource, startApiCluster } from '../harness/api.ts';

const CONNECTOR_ENTRY = fileURLToPath(new URL('../../bin/cluster-connector.mjs', import.meta.url));

function get(host: string, hostname: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host, port: 80, path: '/', headers: { host: hostname }, agent: false, timeout: 2000 }, (res: IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** A 3-node cluster, an HTTP resource and its connector (dialling every node); the node holding the tunnel. */
async function haSite(t: Test) {
  const target = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));
  const c = await startApiCluster(t, 3);
  const cookie = c.adminCookie;
  const { base, site } = await publishHttpResource(c, { slug: 'ha', zone: 'ha.test', targetPort: (target.address() as { port: number }).port });

  const dir = mkdtempSync(join(tmpdir(), 'connector-'));
  const connector = new ServiceProcess({
    name: 'connector',
    command: process.execPath,
    args: [CONNECTOR_ENTRY, ...c.nodes.flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret],
    logFile: join(dir, 'connector.log'),
  });
  t.teardown(() => connector.stop('SIGTERM', 3000));
  const ingress = c.nodes.map((n) => String(n.config.ingress.http).replace(/:80$/, ''));
  // Ready means both: the resource answers through a node, and the API names the node whose
  // site actor holds the tunnel. Either one alone is not enough to pick the victim.
  const deadline = Date.now() + 30_000;
  let status: any;
  let answer = 0;
  for (;;) {
    answer = await get(ingress[0]!, 'app.ha.test');
    status = (await call(c.lb, 'GET', `${base}/sites/${site.id}`, { cookie })).body?.status;
    if (answer === 200 && status?.online && c.nodes.some((n) => n.config.nodeId === status.node)) break;
    if (Date.now() > deadline) {
      // What the connector saw is the first thing to read when this happens (it did once, under a loaded suite).
      const log = existsSync(join(dir, 'connector.log')) ? readFileSync(join(dir, 'connector.log'), 'utf8').split('\n').slice(-40).join('\n') : '(no connector log)';
      t.comment(`connector log:\n${log}`);
      throw new Error(`site not ready after 30 s: ingress answered ${answer}, site status ${JSON.stringify(status)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const holder = status.node as string;
  const victim = c.nodes.find((n) => n.config.nodeId === holder)!;
  const survivors = c.nodes.filter((n) => n !== victim).map((n) => String(n.config.ingress.http).replace(/:80$/, ''));

  return { c, cookie, base, site, holder, victim, survivors };
}

/** Requests round-robin over `hosts` until stopped (at the latest when the test ends). */
function client(t: Test, hosts: string[]) {
  const results: Array<{ at: number; ok: boolean }> = [];
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const status = await get(hosts[i % hosts.length]!, 'app.ha.test');
      results.push({ at: Date.now(), ok: status === 200 });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const stop = () => ((running = false), loop);
  t.teardown(stop);
  return { results, stop };
}

t.test('SIGKILL the node holding the tunnel while a client sends requests: the connector moves and requests succeed again', async (t) => {
  const { c, cookie, base, site, holder, victim, survivors } = await haSite(t);
  // A client that, like one with a stale DNS answer, keeps using every surviving node.
  const { results, stop } = client(t, survivors);
  await new Promise((r) => setTimeout(r, 500));
  const killedAt = Date.now();
  victim.proc.signal('SIGKILL');
  await new Promise((r) => setTimeout(r, 4000));
  await stop();

  const before = results.filter((r) => r.at < killedAt);
  const after = results.filter((r) => r.at >= killedAt);
  t.ok(before.length > 5 && before.every((r) => r.ok), 'requests succeeded before the kill');
  const lastFailure = Math.max(killedAt, ...after.filter((r) => !r.ok).map((r) => r.at));
  t.comment(`longest gap: ${lastFailure - killedAt}ms; ${after.filter((r) => !r.ok).length} of ${after.length} requests failed after the kill`);
  const tail = after.filter((r) => r.at > lastFailure);
  t.ok(tail.length > 20, 'requests succeed again');
  t.ok(tail.every((r) => r.ok), 'and keep succeeding: nothing is left routed to the dead node');
  const status = (await call(c.nodes.find((n) => n !== victim)!.adminUrl, 'GET', `${base}/sites/${site.id}`, { cookie })).body.status;
  t.not(status.node, holder, 'the site is held by a survivor');
});

t.test('SIGTERM the node holding the tunnel while a client sends requests: the connector moves first and no request fails', async (t) => {
  const { c, cookie, base, site, holder, victim, survivors } = await haSite(t);
  const { results, stop } = client(t, survivors);
  await new Promise((r) => setTimeout(r, 500));
  victim.proc.signal('SIGTERM');
  t.equal((await victim.proc.exited).code, 0, 'the node stopped cleanly');
  await new Promise((r) => setTimeout(r, 1000));
  await stop();
  t.ok(results.length > 50, `requests flowed throughout (${results.length})`);
  t.equal(results.filter((r) => !r.ok).length, 0, 'not one request failed while the tunnel moved');
  const status = (await call(c.nodes.find((n) => n !== victim)!.adminUrl, 'GET', `${base}/sites/${site.id}`, { cookie })).body.status;
  t.ok(status.online && status.node !== holder, `the site is held by another node (${status.node})`);
});
