// A tunnel stream the node gives up while it is open (a client that hung up mid-request, an
// exchange that failed) used to be reset. nghttp2 tears down a server session that receives
// more than 1,000 resets at once or 33 a second after (its "rapid reset" defence,
// CVE-2023-44487); the connector is that server, so public clients hanging up took a whole
// site offline. Given-up streams are now cancelled with a trailer and reset by the connector
// (gateways/connector/stream-cancel.ts).
import t from 'tap';
import { randomUUID } from 'node:crypto';
import http2 from 'node:http2';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TunnelRegistry } from '../../gateways/connector/tunnels.ts';
import { createDataPlaneServer } from '../../connector/data-plane.ts';
import { createLogger } from '../../core/log.ts';
import { CANCEL_TRAILER, TARGET_HEADER } from '../../protocol/tunnel-framing.ts';
import { until } from '../harness/until.ts';

const logger = createLogger({ level: 'silent' });
const portOf = (s: { address(): unknown }) => (s.address() as AddressInfo).port;

t.test('thousands of streams given up by the node leave the tunnel up and close their target connections', async (t) => {
  const target = createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const echo = { id: randomUUID(), host: '127.0.0.1', port: portOf(target), scheme: 'tcp' as const, enabled: true, healthCheck: {} };
  const dataPlane = createDataPlaneServer(() => [echo], logger);
  const connectorSide = createServer((s) => dataPlane.emit('connection', s));
  await new Promise<void>((r) => connectorSide.listen(0, '127.0.0.1', r));

  const tunnels = new TunnelRegistry();
  let sessions = 0;
  let goaway: number | undefined;
  let h2: http2.ClientHttp2Session | undefined;
  tunnels.set('site', 'session', () => {
    sessions++;
    h2 = http2.connect('http://connector.invalid', { createConnection: () => connect(portOf(connectorSide), '127.0.0.1') as never });
    h2.on('error', () => {});
    h2.on('goaway', (code) => (goaway = code));
    return h2;
  });
  t.teardown(() => {
    h2?.destroy();
    target.close();
    connectorSide.close();
    dataPlane.close();
  });

  const roundTrip = async (s: Duplex) => {
    s.write('ping');
    const [reply] = (await new Promise((r) => s.once('data', (d) => r([d])))) as [Buffer];
    return reply.toString();
  };
  // 3,000 streams, 100 at a time, each given up by the node (destroy()) once its target answered: three
  // times nghttp2's burst, within about a second.
  for (let round = 0; round < 30; round++) {
    const streams = await Promise.all(Array.from({ length: 100 }, () => tunnels.open('site', echo, 'tcp')));
    await Promise.all(streams.map(roundTrip));
    for (const s of streams) s.destroy();
  }
  const after = await tunnels.open('site', echo, 'tcp');
  t.equal(await roundTrip(after), 'ping', 'a stream after them reaches the target');
  after.destroy();
  t.equal(goaway, undefined, 'the connector never sent GOAWAY');
  const open = () => new Promise<number>((r) => target.getConnections((_e, n) => r(n)));
  await until(async () => (await open()) === 0, 5000, 'the target connections of the given-up streams to close');
  t.pass('every given-up stream closed its target connection');
  t.equal(sessions, 1, 'the same HTTP/2 session carried every stream');
});

// The connector resets a cancelled stream, and the stream closes only once that reset is
// written: while the session cannot write (the node reading slowly, a stalled connector in a
// storm), the stream's target connection can come up first. Answering the closed stream then
// threw in the socket's callback and ended the connector process (seen in bench:scale).
t.test('a stream cancelled while its target connects, on a session that cannot write, does not end the connector', async (t) => {
  const flood = createServer((s) => {
    s.on('error', () => {});
    const chunk = Buffer.alloc(1 << 20);
    const more = () => {
      while (s.write(chunk));
    };
    s.on('drain', more);
    more();
  });
  let accepted = 0;
  const echo = createServer((s) => {
    accepted++;
    s.on('error', () => {});
    s.pipe(s);
  });
  await Promise.all([flood, echo].map((srv) => new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))));
  const big = { id: randomUUID(), host: '127.0.0.1', port: portOf(flood), scheme: 'tcp' as const, enabled: true, healthCheck: {} };
  const small = { id: randomUUID(), host: '127.0.0.1', port: portOf(echo), scheme: 'tcp' as const, enabled: true, healthCheck: {} };
  const dataPlane = createDataPlaneServer(() => [big, small], logger);
  const connectorSide = createServer((s) => dataPlane.emit('connection', s));
  await new Promise<void>((r) => connectorSide.listen(0, '127.0.0.1', r));
  let raw!: Socket;
  const h2 = http2.connect('http://connector.invalid', { createConnection: () => (raw = connect(portOf(connectorSide), '127.0.0.1')) as never });
  h2.on('error', () => {});
  t.teardown(() => {
    h2.destroy();
    for (const srv of [flood, echo, connectorSide]) srv.close();
    dataPlane.close();
  });
  const request = (to: typeof big, options?: http2.ClientSessionRequestOptions) => {
    const s = h2.request({ ':method': 'CONNECT', ':authority': `${to.host}:${to.port}`, [TARGET_HEADER]: to.id }, options);
    s.on('error', () => {});
    return s;
  };
  // One stream fills the session towards the node, which stops reading: the connector's writes wait.
  const bulk = request(big);
  await new Promise((r) => bulk.once('response', r));
  raw.pause();
  await new Promise((r) => setTimeout(r, 300));
  // Streams cancelled as soon as they are sent: the connector reads the cancel before its target connection is up.
  for (let i = 0; i < 20; i++) {
    const s = request(small, { waitForTrailers: true });
    s.on('wantTrailers', () => s.sendTrailers({ [CANCEL_TRAILER]: '1' }));
    s.end();
  }
  const open = () => new Promise<number>((r) => echo.getConnections((_e, n) => r(n)));
  await until(async () => accepted === 20 && (await open()) === 0, 5000, 'the cancelled streams\' target connections to be made and closed');
  t.pass('the connector is still running and the cancelled streams left no target connection open');
  bulk.destroy();
  raw.resume();
  const after = request(small);
  after.write('ping');
  const reply = await new Promise<string>((r) => after.once('data', (d: Buffer) => r(d.toString())));
  t.equal(reply, 'ping', 'the session still reaches the target');
});
