import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import t from 'tap';
import { until } from '../harness/until.ts';
import { WebSocket, WebSocketServer } from 'ws';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { call, servedBy, startApiCluster } from '../harness/api.ts';

const logger = createLogger({ level: 'silent' });
const CLIENT_ADDRESS = '127.9.9.9'; // the test's "public client", distinct from everything else

interface Reply { status: number; headers: IncomingMessage['headers']; body: string }

function get(opts: { https?: boolean; host: string; port: number; servername: string; path?: string; method?: string; body?: Buffer; headers?: Record<string, string> }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const send = opts.https ? httpsRequest : httpRequest;
    const req = send({
      host: opts.host, port: opts.port, path: opts.path ?? '/', method: opts.method ?? 'GET', localAddress: CLIENT_ADDRESS,
      headers: { host: opts.servername, ...opts.headers }, servername: opts.servername, rejectUnauthorized: false, agent: false,
    } as never, (res: IncomingMessage) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end(opts.body);
  });
}

t.test('HTTP resources answer through every node', async (t) => {
  // The target: echoes what it received, and a WebSocket echo.
  const target = createServer((req, res) => {
    let size = 0;
    req.on('data', (d) => (size += d.length));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, xff: req.headers['x-forwarded-for'], proto: req.headers['x-forwarded-proto'], xhost: req.headers['x-forwarded-host'], bytes: Buffer.from(String(req.headers['x-bytes'] ?? ''), 'latin1').toString('hex'), size }));
    });
  });
  new WebSocketServer({ server: target }).on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m}`)));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    target.closeAllConnections();
    target.close();
  });
  const targetPort = (target.address() as { port: number }).port;

  const net = `127.${20 + Math.floor(Math.random() * 200)}.${Math.floor(Math.random() * 250)}`;
  // node-1 runs its ingress on its main thread, the others on their ingress threads (the
  // default): both ways serve, forward to each other and take forwards.
  const c = await startApiCluster(t, 3, {}, (i) => ({ ingress: { https: `${net}.${i + 1}:443`, http: `${net}.${i + 1}:80`, publicAddresses: [`${net}.${i + 1}`], thread: i === 0 ? 'main' : 'worker' } }));
  const threads = c.nodes.map((n) => /"thread":"(\w+)","msg":"ingress listening"/.exec(readFileSync(n.logFile, 'utf8'))?.[1]);
  t.same(threads, ['main', 'worker', 'worker'], 'each node says where its ingress runs');
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'web', name: 'Web' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  await call(c.lb, 'POST', `${base}/domains`, { cookie, body: { name: 'example.test' } });
  const site = (await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'office' } })).body;
  const plain = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'plain', protocol: 'http', hostname: 'plain.example.test', tls: false } })).body;
  const secure = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'secure', protocol: 'http', hostname: 'app.example.test' } })).body;
  for (const r of [plain, secure]) await call(c.lb, 'POST', `${base}/resources/${r.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port: targetPort, scheme: 'http' } });

  const connector = new Connector({ endpoints: [c.nodes[1]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger });
  t.teardown(() => connector.stop());
  const ready = new Promise((r) => connector.on('config', (targets: unknown[]) => targets.length === 2 && r(targets)));
  connector.start();
  await ready;
  for (const r of [plain, secure]) await servedBy(c, org.id, r.id, 'node-2');
  await until(() => connector.websocketData === 'direct', 10_000, 'the data plane to move to its direct connection');

  for (let i = 0; i < 3; i++) {
    const ip = `${net}.${i + 1}`;
    const how = i === 1 ? 'holds the tunnel' : 'forwards';
    // A header byte over 0x7f (Node's client sends the string as latin1) reaches the target as that one byte.
    const p = await get({ host: ip, port: 80, servername: 'plain.example.test', path: '/hello?x=1', headers: { 'x-bytes': 'caf\u00e9' } });
    t.equal(p.status, 200, `plain HTTP via node-${i + 1} (${how})`);
    t.match(JSON.parse(p.body), { method: 'GET', url: '/hello?x=1', host: 'plain.example.test', xff: CLIENT_ADDRESS, proto: 'http', xhost: 'plain.example.test', bytes: '636166e9' }, 'the target sees the client\'s real address, and its header bytes as sent');
    const s = await get({ https: true, host: ip, port: 443, servername: 'app.example.test', path: '/secure' });
    t.equal(s.status, 200, `HTTPS via node-${i + 1} (${how})`);
    t.match(JSON.parse(s.body), { url: '/secure', xff: CLIENT_ADDRESS, proto: 'https' }, 'the client address survives TLS forwarding (PROXY v2)');
    const r = await get({ host: ip, port: 80, servername: 'app.example.test', path: '/login' });
    t.same([r.status, r.headers.location], [301, 'https://app.example.test/login'], 'plain HTTP to a TLS resource is redirected');
  }

  const big = Buffer.alloc(3 * 1024 * 1024, 7);
  const posted = await get({ https: true, host: `${net}.1`, port: 443, servername: 'app.example.test', method: 'POST', path: '/upload', body: big });
  t.equal(JSON.parse(posted.body).size, big.length, 'a 3 MiB body streams through a forwarding node');

  const echo = await new Promise<string>((resolve, reject) => {
    const ws = new WebSocket(`wss://${net}.3/socket`, { headers: { host: 'app.example.test' }, ...({ servername: 'app.example.test', rejectUnauthorized: false } as object) });
    ws.on('open', () => ws.send('ping'));
    ws.on('message', (m) => (resolve(m.toString()), ws.close()));
    ws.on('error', reject);
  });
  t.equal(echo, 'echo:ping', 'a WebSocket echo works through the resource');

  // The direct data connection's door: only a live session's one-time key opens it.
  const upgrade = (headers: Record<string, string>) => new Promise<number>((resolve, reject) => {
    const req = httpRequest(new URL('/api/v1/tunnel', c.nodes[1]!.adminUrl), { headers: { connection: 'Upgrade', upgrade: 'cluster-tunnel', ...headers } });
    req.on('response', (res) => (res.resume(), resolve(res.statusCode ?? 0)));
    req.on('upgrade', (_res, sock) => (sock.destroy(), resolve(101)));
    req.on('error', reject);
    req.end();
  });
  t.equal(await upgrade({ 'x-cluster-tunnel-key': 'guessed-key' }), 401, 'a made-up key is refused');
  t.equal(await upgrade({}), 401, 'no key is refused');
  t.equal(await upgrade({ upgrade: 'websocket', 'x-cluster-tunnel-key': 'guessed-key' }), 400, 'another upgrade at the tunnel path is refused');
  t.equal((await get({ host: `${net}.2`, port: 80, servername: 'plain.example.test' })).status, 200, 'the site is served on as before');

  // Where the direct connection cannot be had, the WebSocket's own frames carry the data plane.
  // (One connector at a time: two with the same site's secret take it from each other in turn.)
  await connector.stop();
  const framed = new Connector({ endpoints: [c.nodes[2]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger, direct: false, standby: false });
  framed.start();
  await until(() => framed.node === 'node-3' && framed.websocketData === 'frames', 10_000, 'the framed connector to take the site');
  for (const r of [plain, secure]) await servedBy(c, org.id, r.id, 'node-3');
  for (let i = 0; i < 3; i++) t.equal((await get({ host: `${net}.${i + 1}`, port: 80, servername: 'plain.example.test' })).status, 200, `over the WebSocket's frames, via node-${i + 1}`);
  await framed.stop();

  // Through the load balancer (round robin): the upgrade may land on a node that does not
  // know the key; the connector then dials its node's own address and still gets there.
  for (let i = 0; i < 3; i++) {
    const viaLb = new Connector({ endpoints: [c.lb], siteId: site.id, secret: site.connector.secret, logger, standby: false });
    viaLb.start();
    await until(() => viaLb.websocketData === 'direct', 10_000, `connector ${i + 1} through the load balancer to move to a direct connection`);
    const holder = viaLb.node!;
    for (const r of [plain]) await servedBy(c, org.id, r.id, holder);
    t.equal((await get({ host: `${net}.1`, port: 80, servername: 'plain.example.test' })).status, 200, `through the load balancer to ${holder}, on a direct connection`);
    await viaLb.stop();
  }

  const unknown = await get({ host: `${net}.2`, port: 80, servername: 'nothing.example.test' });
  t.match({ status: unknown.status, body: JSON.parse(unknown.body) }, { status: 404, body: { code: 'CLUSTER_ERR_API_NOT_FOUND' } });
  // Every connector of the site has stopped by now.
  const down = await until(async () => {
    const r = await get({ host: `${net}.2`, port: 80, servername: 'plain.example.test' });
    return r.status === 503 ? r : undefined;
  }, 10_000, 'the site to go offline');
  t.match({ status: down.status, body: JSON.parse(down.body) }, { status: 503, body: { code: 'CLUSTER_ERR_INGRESS_NO_TARGET' } }, 'no online site: a coded 503');
});
