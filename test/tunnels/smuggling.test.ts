// HTTP request smuggling through the edge, tried as an attacker would with raw sockets: no
// ambiguous framing reaches a target, a body is always framed on its way on, and a second
// request can never be hidden inside the first on a pooled stream to the target.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { publishHttpResource, servedBy, startApiCluster } from '../harness/api.ts';
import { until } from '../harness/until.ts';

/** Sends raw bytes and collects everything the edge answers until it closes (or `ms` pass). */
function raw(host: string, bytes: string, ms = 3000): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect(80, host);
    let got = '';
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('error', () => {});
    sock.on('close', () => resolve(got));
    sock.setTimeout(ms, () => sock.destroy());
    sock.write(bytes);
  });
}

/**
 * Publishes `target` as app.<slug>.test through a one-node cluster with a connected site;
 * returns the node's HTTP address.
 */
async function throughEdge(t: Test, slug: string, target: Server): Promise<string> {
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  t.teardown(() => (target.closeAllConnections(), target.close()));
  const c = await startApiCluster(t, 1);
  const { org, site, resource } = await publishHttpResource(c, { slug, zone: `${slug}.test`, targetPort: (target.address() as { port: number }).port });
  const connector = new Connector({ endpoints: [c.nodes[0]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger: createLogger({ level: 'silent' }) });
  t.teardown(() => connector.stop());
  connector.start();
  await servedBy(c, org.id, resource.id, 'node-1', 20_000);
  return String(c.nodes[0]!.config.ingress.http).replace(/:80$/, '');
}

t.test('request smuggling is refused at the edge, and bodies reach the target framed', async (t) => {
  // The target records every request its HTTP parser sees, keeping connections alive.
  const seen: Array<{ method: string; url: string; body: string; headers: IncomingMessage['headers'] }> = [];
  const target = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body, headers: req.headers });
      res.end(`you asked for ${req.url}`);
    });
  });
  target.keepAliveTimeout = 60_000;
  const edge = await throughEdge(t, 'smuggle', target);
  const host = 'app.smuggle.test';

  const attacks: Array<[string, string]> = [
    ['CL.TE', `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED`],
    ['TE.CL', `POST / HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`],
    ['TE.TE (a second, unknown coding)', `POST / HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n0\r\n\r\n`],
    ['TE.TE (obfuscated name)', `POST / HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`],
    ['a bad chunk size', `POST / HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n1g\r\nx\r\n0\r\n\r\n`],
    ['obs-fold', `GET / HTTP/1.1\r\nHost: ${host}\r\nX-Folded: a\r\n b\r\n\r\n`],
    ['two Content-Lengths', `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 1\r\nContent-Length: 9\r\n\r\nx`],
  ];
  for (const [name, bytes] of attacks) {
    const answer = await raw(edge, bytes);
    t.match(answer, /^HTTP\/1\.1 400 /, `${name}: 400`);
    t.match(answer, /CLUSTER_ERR_INGRESS_BAD_REQUEST/, `${name}: coded`);
  }
  t.same(seen, [], 'none of them reached the target');

  // A chunked GET whose body is itself a request: the target gets one request, body framed.
  const inner = `GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`;
  const chunkedGet = `GET /first HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`;
  const first = await raw(edge, chunkedGet, 1500);
  t.match(first, /you asked for \/first/);
  // Later clients reuse the pooled stream to the target: none may receive the hidden request's answer.
  for (let i = 0; i < 3; i++) t.match(await raw(edge, `GET /next${i} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), new RegExp(`you asked for /next${i}`));
  await until(() => seen.length >= 4, 5000, 'the target to see the requests');
  t.same(seen.map((r) => r.url), ['/first', '/next0', '/next1', '/next2'], 'the hidden request never reached the target as a request');
  t.equal(seen[0]!.body, inner, 'it arrived as the body of the first');
  t.equal(seen[0]!.headers['transfer-encoding'], 'chunked', 'framed as chunked');

  // Headers only the edge may set: the client's own copies never reach the target.
  await raw(edge, `GET /spoof HTTP/1.1\r\nHost: ${host}\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Port: 1\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nConnection: close\r\n\r\n`);
  const spoof = await until(() => seen.find((r) => r.url === '/spoof'), 5000, 'the spoof request');
  t.notMatch(JSON.stringify(spoof.headers), /6\.6\.6\.6/, 'no client-supplied address');
  t.equal(spoof.headers['x-forwarded-port'], undefined);
  t.equal(spoof.headers['forwarded'], undefined);
});

t.test('an Upgrade sends the client\'s bytes on only after the target answered 101', async (t) => {
  const seen: string[] = [];
  // The target refuses every upgrade; whatever the client sends after its head must not arrive.
  const target = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(403, { connection: 'close' }).end('no upgrades here');
  });
  const early: string[] = [];
  target.on('upgrade', (req, sock, head: Buffer) => {
    seen.push(`UPGRADE ${req.url}`);
    // It takes its time to decide (a second), collecting any byte that comes after the head.
    let after = head.toString('latin1');
    sock.on('data', (d: Buffer) => (after += d.toString('latin1')));
    setTimeout(() => {
      early.push(after);
      sock.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 16\r\nconnection: close\r\n\r\nno upgrades here');
    }, 1000);
  });
  const edge = await throughEdge(t, 'upgrade', target);
  const answer = await raw(edge, `GET /ws HTTP/1.1\r\nHost: app.upgrade.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`);
  t.match(answer, /^HTTP\/1\.1 403 /, 'the refusal comes back');
  await until(() => early.length > 0, 5000, 'the target to answer');
  t.same(seen, ['UPGRADE /ws'], 'the target saw the upgrade request only');
  t.same(early, [''], 'and no byte after its head: the client\'s bytes wait for a 101');
});
