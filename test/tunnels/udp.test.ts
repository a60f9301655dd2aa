import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import t from 'tap';
import { UDP_LIMITS } from '../../gateways/ingress/udp-admission.ts';
import { scrape, total } from '../harness/metrics.ts';
import { until } from '../harness/until.ts';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { Deframer, frameDatagram } from '../../protocol/datagrams.ts';
import { call, servedBy, startApiCluster } from '../harness/api.ts';

const run = promisify(execFile);
const logger = createLogger({ level: 'silent' });

t.test('datagram framing keeps boundaries however the stream splits it', async (t) => {
  const d = new Deframer();
  const wire = Buffer.concat([frameDatagram(Buffer.from('one')), frameDatagram(Buffer.alloc(0)), frameDatagram(Buffer.from('three'))]);
  const got = [...d.push(wire.subarray(0, 4)), ...d.push(wire.subarray(4, 9)), ...d.push(wire.subarray(9))];
  t.same(got.map((b) => b.toString()), ['one', '', 'three']);
  t.throws(() => frameDatagram(Buffer.alloc(70_000)), RangeError);
});

t.test('a UDP resource carries DNS queries through every node', async (t) => {
  // The site's DNS server: answers every A question with 192.0.2.53.
  const dns = createSocket('udp4');
  dns.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    const answer = dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.AUTHORITATIVE_ANSWER, questions: q.questions, answers: (q.questions ?? []).map((x) => ({ type: 'A', name: x.name, ttl: 60, data: '192.0.2.53' })) });
    dns.send(answer, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => dns.bind(0, '127.0.0.1', r));
  t.teardown(() => dns.close());

  // The ingress on the main thread (ingress.thread: main, the fallback where the native module
  // is missing); every other multi-node test runs it on its own thread, the default.
  const c = await startApiCluster(t, 3, { ingress: { thread: 'main' } });
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'udp', name: 'Udp' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  const site = (await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'resolver' } })).body;
  const port = 20000 + Math.floor(Math.random() * 10_000); // inside the default ingress.resourcePorts
  const res = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'dns', protocol: 'udp', proxyPort: port } })).body;
  const target = await call(c.lb, 'POST', `${base}/resources/${res.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port: dns.address().port, scheme: 'udp' } });
  t.equal(target.status, 201);
  const connector = new Connector({ endpoints: [c.nodes[1]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger });
  t.teardown(() => connector.stop());
  const configured = new Promise((r) => connector.on('config', (targets: unknown[]) => targets.length && r(targets)));
  connector.start();
  await configured;
  await servedBy(c, org.id, res.id, 'node-2');

  for (let i = 0; i < 3; i++) {
    const ip = String(c.nodes[i]!.config.ingress.https).replace(/:443$/, '');
    const { stdout } = await run('dig', [`@${ip}`, '-p', String(port), 'www.site.example', 'A', '+short', '+time=3', '+tries=2']);
    t.equal(stdout.trim(), '192.0.2.53', `dig through node-${i + 1} (${i === 1 ? 'holds the tunnel' : 'forwards'})`);
  }

  // A flood of new sessions from one source (100 client ports at once): the node admits what
  // its limits allow, drops the rest, counts the drops, and keeps serving.
  const holder = String(c.nodes[1]!.config.ingress.https).replace(/:443$/, '');
  const query = dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'www.site.example' }] });
  const clients = await Promise.all(Array.from({ length: 100 }, async () => {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return s;
  }));
  t.teardown(() => clients.forEach((s) => s.close()));
  let answered = 0;
  for (const s of clients) s.on('message', () => answered++);
  for (const s of clients) s.send(query, port, holder);
  const dropped = async () => total(await scrape(c.nodes[1]!.metricsUrl), 'cluster_udp_dropped_total') ?? 0;
  // The burst allowance is the per-source rate (tokens refill while the datagrams arrive).
  await until(async () => answered + (await dropped()) >= 100, 10_000, 'every datagram answered or counted as dropped');
  const drops = await dropped();
  t.equal(answered + drops, 100, 'each datagram was either served or dropped and counted');
  t.ok(answered >= UDP_LIMITS.newPerSecondPerSource && drops >= 30, `${answered} sessions admitted, ${drops} dropped`);
  const { stdout } = await run('dig', [`@${holder}`, '-p', String(port), 'www.site.example', 'A', '+short', '+time=3', '+tries=2']);
  t.equal(stdout.trim(), '192.0.2.53', 'and the resource still answers');
});
