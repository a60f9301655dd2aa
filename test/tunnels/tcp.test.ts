import { connect, createServer as createNetServer } from 'node:net';
import { once } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import t from 'tap';
import { until } from '../harness/until.ts';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { call, servedBy, startApiCluster } from '../harness/api.ts';
import { sharedServices } from '../harness/services.ts';
import { scrape, total } from '../harness/metrics.ts';

const logger = createLogger({ level: 'silent' });

/** Sends `request` over TCP and returns what came back once `done` says so. */
function exchange(host: string, port: number, request: string, done: (text: string) => boolean, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    let text = '';
    const timer = setTimeout(() => (sock.destroy(), reject(new Error(`no answer from ${host}:${port}; got ${JSON.stringify(text)}`))), ms);
    sock.on('connect', () => sock.write(request));
    sock.on('data', (d) => {
      text += d.toString();
      if (done(text)) {
        clearTimeout(timer);
        sock.end();
        resolve(text);
      }
    });
    sock.on('error', (e) => (clearTimeout(timer), reject(e)));
    sock.on('close', () => (clearTimeout(timer), done(text) ? resolve(text) : reject(new Error(`closed with ${JSON.stringify(text)}`))));
  });
}

t.test('a TCP resource carries a real protocol (Valkey) through every node, forwarding where the tunnel is elsewhere', async (t) => {
  // Each node gets its own loopback address, so all can listen on the resource's port.
  const net = `127.${20 + Math.floor(Math.random() * 200)}.${Math.floor(Math.random() * 250)}`;
  // The ingress on the main thread (ingress.thread: main, the fallback where the native module
  // is missing); every other multi-node test runs it on its own thread, the default.
  const c = await startApiCluster(t, 3, {}, (i) => ({ ingress: { https: `${net}.${i + 1}:443`, http: `${net}.${i + 1}:80`, publicAddresses: [`${net}.${i + 1}`], thread: 'main' } }));
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'tcp', name: 'Tcp' } })).body;
  const site = (await call(c.lb, 'POST', `/api/v1/orgs/${org.id}/sites`, { cookie, body: { name: 'datacenter' } })).body;
  const port = 20000 + Math.floor(Math.random() * 10_000); // inside the default ingress.resourcePorts; the nodes' addresses are the test's own
  const res = (await call(c.lb, 'POST', `/api/v1/orgs/${org.id}/resources`, { cookie, body: { name: 'cache', protocol: 'tcp', proxyPort: port } })).body;
  const valkeyUrl = new URL((await sharedServices()).valkeyUrl);
  const valkeyPort = Number(valkeyUrl.port);
  const auth = `AUTH ${decodeURIComponent(valkeyUrl.password)}\r\n`; // the test Valkey asks for its password, as it should
  const target = await call(c.lb, 'POST', `/api/v1/orgs/${org.id}/resources/${res.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port: valkeyPort, scheme: 'tcp' } });
  t.equal(target.status, 201);

  const connector = new Connector({ endpoints: [c.nodes[1]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger });
  t.teardown(() => connector.stop());
  const configured = new Promise((r) => connector.on('config', (targets: unknown[]) => targets.length && r(targets)));
  connector.start();
  await configured;
  await servedBy(c, org.id, res.id, 'node-2');

  await until(() => connector.websocketData === 'direct', 10_000, 'the data plane on its direct connection');
  for (let i = 0; i < 3; i++) {
    const host = `${net}.${i + 1}`;
    const reply = await exchange(host, port, `${auth}PING\r\n`, (s) => s.split('\r\n').length >= 3);
    t.equal(reply, '+OK\r\n+PONG\r\n', `AUTH and PING through node-${i + 1} (${i === 1 ? 'holds the tunnel' : 'forwards'})`);
  }
  // A longer exchange: several commands in one connection through a forwarding node.
  const many = await exchange(`${net}.1`, port, `${auth}PING\r\nECHO hello\r\nPING\r\n`, (s) => s.split('\r\n').length >= 6);
  t.equal(many, '+OK\r\n+PONG\r\n$5\r\nhello\r\n+PONG\r\n');
  // Bulk both ways: a 4 MB value stored through the tunnel's node, read back through a forwarding one.
  const value = randomBytes(3 * 1024 * 1024).toString('base64');
  const key = `bulk-${randomUUID()}`;
  const stored = await exchange(`${net}.2`, port, `${auth}*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`, (s) => s === '+OK\r\n+OK\r\n', 15_000);
  t.equal(stored, '+OK\r\n+OK\r\n', 'a 4 MB value stored');
  const read = await exchange(`${net}.1`, port, `${auth}*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n*2\r\n$3\r\nDEL\r\n$${key.length}\r\n${key}\r\n`, (s) => s.endsWith(':1\r\n'), 15_000);
  t.ok(read === `+OK\r\n$${value.length}\r\n${value}\r\n:1\r\n`, 'and read back intact through a forwarding node');
  // node-2 holds the site's primary tunnel, on its direct data connection by now: every stream
  // it opened through it (its own clients' and those forwarded to it) had a raw connection to
  // the connector. (A standby tunnel elsewhere may still be on WebSocket frames, where streams
  // stay on HTTP/2.)
  const onNode2 = async (path: string) => total(await scrape(c.nodes[1]!.metricsUrl), 'cluster_tunnel_streams_total', { path }) ?? 0;
  const [raw, h2] = [await onNode2('raw'), await onNode2('http2')];
  t.ok(raw >= 2 && h2 === 0, `the tunnel's node put every TCP stream on a raw connection (${raw} raw, ${h2} http2)`);

  // Disabling the target stops traffic; the connector also refuses what it was not configured for.
  await call(c.lb, 'PATCH', `/api/v1/orgs/${org.id}/resources/${res.id}/targets/${target.body.id}`, { cookie, body: { version: 1, enabled: false } });
  // Once the published route says so, a connection gets nowhere.
  await until(async () => (await call(c.lb, 'GET', `/api/v1/orgs/${org.id}/resources/${res.id}`, { cookie })).body?.status?.targets?.[0]?.enabled === false, 10_000, 'the disabled target in the route');
  await until(() => exchange(`${net}.2`, port, `${auth}PING\r\n`, (s) => s.includes('+PONG'), 1000).then(() => false, () => true), 10_000, 'connections to stop reaching the target');
  t.pass('a disabled target gets no traffic');

  // A port some other process holds on one node: that node says so in the resource's status,
  // the others listen, and the node still restarts (a resource never stops a node).
  const squatted = port === 29999 ? 20000 : port + 1;
  const squatter = createNetServer().listen(squatted, `${net}.1`);
  await once(squatter, 'listening');
  t.teardown(() => squatter.close());
  const held = (await call(c.lb, 'POST', `/api/v1/orgs/${org.id}/resources`, { cookie, body: { name: 'held', protocol: 'tcp', proxyPort: squatted } })).body;
  const status = await until(async () => {
    const r = (await call(c.lb, 'GET', `/api/v1/orgs/${org.id}/resources/${held.id}`, { cookie })).body;
    return r?.status?.listenProblems?.['node-1'] ? r.status : undefined;
  }, 15_000, 'the listen problem in the status');
  t.match(status.listenProblems, { 'node-1': /tcp port \d+: EADDRINUSE/ }, 'node-1 reports the port it cannot take');
  t.same(Object.keys(status.listenProblems), ['node-1'], 'the other nodes listen');
  c.nodes[0]!.proc.signal('SIGKILL');
  await c.nodes[0]!.proc.exited;
  const again = await c.start('node-1');
  await again.waitReady(30_000);
  t.pass('node-1 restarts while its resource port is held');
});
