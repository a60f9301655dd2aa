// Raw streams (RAW_UPGRADE): a TCP resource's stream on a connection of its own between the
// node and the connector, set up inside the tunnel's HTTP/2 CONNECT. The node's registry and
// key table, the connector's data plane and its dialler, with real sockets; the stream falls
// back to HTTP/2 wherever the raw connection cannot be made.
import t, { type Test } from 'tap';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import { createServer as httpServer, request } from 'node:http';
import { connect, createServer, Socket, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { RawOffers } from '../../gateways/connector/raw-offers.ts';
import { TunnelRegistry } from '../../gateways/connector/tunnels.ts';
import { createDataPlaneServer } from '../../connector/data-plane.ts';
import { RAW_DIAL, rawDialer } from '../../connector/raw-dial.ts';
import { createLogger } from '../../core/log.ts';
import { DIRECT_PATH, RAW_KEY_HEADER, RAW_UPGRADE } from '../../protocol/tunnel-framing.ts';

const logger = createLogger({ level: 'silent' });
const portOf = (s: { address(): unknown }) => (s.address() as AddressInfo).port;

/**
 * A site's target (says `banner;` first, then echoes), the connector's data plane reached
 * over one TCP connection, and the node's raw upgrade endpoint. `dialTo`: where the
 * connector dials raw connections (the node's endpoint unless a test says otherwise).
 */
async function setup(t: Test, dialTo?: (nodePort: number) => number) {
  const target = createServer((s) => {
    s.on('error', () => {});
    s.write('banner;');
    s.pipe(s);
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const targets = [{ id: randomUUID(), host: '127.0.0.1', port: portOf(target), scheme: 'tcp' as const, enabled: true, healthCheck: {} }];

  const offers = new RawOffers();
  const node = httpServer();
  node.on('upgrade', (req, socket: Socket, head: Buffer) => {
    socket.on('error', () => {});
    if (req.headers.upgrade !== RAW_UPGRADE || !offers.accept(String(req.headers[RAW_KEY_HEADER]), socket, head)) socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  await new Promise<void>((r) => node.listen(0, '127.0.0.1', r));

  const dataPlane = createDataPlaneServer(() => targets, logger);
  const dataPort = dialTo ? dialTo(portOf(node)) : portOf(node);
  const connectorSide = createServer((s) => {
    Object.assign(s, { [RAW_DIAL]: rawDialer(new URL(DIRECT_PATH, `http://127.0.0.1:${dataPort}`), undefined) });
    dataPlane.emit('connection', s);
  });
  await new Promise<void>((r) => connectorSide.listen(0, '127.0.0.1', r));

  const tunnels = new TunnelRegistry();
  const sessions: http2.ClientHttp2Session[] = [];
  tunnels.set('site', 'session', () => {
    const h2 = http2.connect('http://connector.invalid', { createConnection: () => connect(portOf(connectorSide), '127.0.0.1') as never });
    h2.on('error', () => {});
    sessions.push(h2);
    return h2;
  }, false, undefined, () => offers.offer());
  t.teardown(() => {
    sessions.forEach((s) => s.destroy());
    [target, node, connectorSide].forEach((s) => s.close());
    dataPlane.close();
  });
  return { tunnels, offers, target: targets[0]!, nodePort: portOf(node) };
}

/** Reads from `s` until `n` bytes came. */
function readBytes(s: Duplex, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got < n) return;
      s.off('data', onData);
      resolve(Buffer.concat(chunks));
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test("a TCP resource's stream gets a connection of its own, the target's first words and bulk intact", async (t) => {
  const { tunnels, offers, target } = await setup(t);
  const stream = await tunnels.open('site', target, 'tcp', 5000, true);
  t.ok(stream instanceof Socket, 'the stream is a plain socket to the connector (no HTTP/2 framing on the way)');
  t.same(tunnels.opened, { http2: 0, raw: 1 });
  t.equal(offers.waiting, 0, 'its key is spent');
  t.equal((await readBytes(stream, 7)).toString(), 'banner;', 'what the target said before the raw connection was up arrives first');
  const bulk = randomBytes(8 * 1024 * 1024);
  const echoed = readBytes(stream, bulk.length);
  stream.write(bulk);
  t.equal(sha((await echoed).subarray(0, bulk.length)), sha(bulk), '8 MiB there and back, intact');
  stream.destroy();
});

t.test('HTTP streams, and streams whose raw connection cannot be made, stay on HTTP/2', async (t) => {
  const { tunnels, offers, target } = await setup(t);
  const plain = await tunnels.open('site', target, 'tcp');
  t.notOk(plain instanceof Socket, 'not asked for (an HTTP upstream): an HTTP/2 stream');
  t.equal((await readBytes(plain, 7)).toString(), 'banner;');
  plain.destroy();
  t.equal(offers.waiting, 0, 'no key offered');

  // The connector dials somewhere that refuses its key (a proxy, another node).
  const refusing = httpServer();
  refusing.on('upgrade', (_req, socket: Socket) => socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
  await new Promise<void>((r) => refusing.listen(0, '127.0.0.1', r));
  t.teardown(() => refusing.close());
  const elsewhere = await setup(t, () => portOf(refusing));
  const fallback = await elsewhere.tunnels.open('site', elsewhere.target, 'tcp', 5000, true);
  t.notOk(fallback instanceof Socket, 'refused: the HTTP/2 stream carries it');
  t.same(elsewhere.tunnels.opened, { http2: 1, raw: 0 });
  t.equal(elsewhere.offers.waiting, 0, 'the unused key is forgotten');
  t.equal((await readBytes(fallback, 7)).toString(), 'banner;');
  const echoed = readBytes(fallback, 4);
  fallback.write('ping');
  t.equal((await echoed).toString(), 'ping', 'and works both ways');
  fallback.destroy();
});

t.test('a raw upgrade naming no offered key gets 401 and no stream', async (t) => {
  const { offers, nodePort } = await setup(t);
  const offer = offers.offer()!;
  for (const key of [randomBytes(18).toString('base64url'), undefined]) {
    const req = request({ port: nodePort, host: '127.0.0.1', path: DIRECT_PATH, headers: { connection: 'Upgrade', upgrade: RAW_UPGRADE, ...(key ? { [RAW_KEY_HEADER]: key } : {}) } });
    req.end();
    const [res] = (await Promise.race([once(req, 'response'), once(req, 'upgrade')])) as [{ statusCode?: number }];
    t.equal(res.statusCode, 401, key ? 'an unknown key' : 'no key');
  }
  t.equal(offers.waiting, 1, 'the real key still waits, untouched');
  offer.cancel();
  t.equal(offers.waiting, 0);
  await t.rejects(offer.take(), /no connection came/, 'a cancelled key brings no connection');
});

t.test('raw streams leave no reset behind: thousands of them keep the tunnel up', async (t) => {
  // Each raw stream's HTTP/2 stream is closed once its connection is up; closed with a reset,
  // the connector's nghttp2 ended the session after 1,000 (see stream-resets.test.ts).
  const { tunnels, target } = await setup(t);
  for (let round = 0; round < 15; round++) {
    const streams = await Promise.all(Array.from({ length: 100 }, () => tunnels.open('site', target, 'tcp', 5000, true)));
    await Promise.all(streams.map((s) => readBytes(s, 7)));
    for (const s of streams) s.end();
  }
  t.same(tunnels.opened, { http2: 0, raw: 1500 }, '1,500 raw streams on one session');
});

t.test('refused streams leave no reset behind either', async (t) => {
  // A target the connector refuses (not configured, or down: 403 or 502 with the stream ended).
  const { tunnels, target } = await setup(t);
  const unknown = { ...target, id: randomUUID() };
  for (let round = 0; round < 12; round++) {
    const refusals = await Promise.allSettled(Array.from({ length: 100 }, () => tunnels.open('site', unknown, 'tcp')));
    if (round === 0) t.match((refusals[0] as PromiseRejectedResult).reason, { code: 'CLUSTER_ERR_TUNNEL_TARGET_REFUSED' });
  }
  const s = await tunnels.open('site', target, 'tcp');
  t.equal((await readBytes(s, 7)).toString(), 'banner;', 'after 1,200 refusals the same tunnel still reaches the target');
  s.destroy();
});
