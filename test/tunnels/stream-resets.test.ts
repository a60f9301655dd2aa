// A tunnel stream the node gives up while it is open (a client that hung up mid-request, an
// exchange that failed) used to be reset. nghttp2 tears down a server session that receives
// more than 1,000 resets at once or 33 a second after (its "rapid reset" defence,
// CVE-2023-44487); the connector is that server, so public clients hanging up took a whole
// site offline. Given-up streams are now cancelled with a trailer and reset by the connector
// (gateways/connector/stream-cancel.ts).
import t from 'tap';
import { randomUUID } from 'node:crypto';
import http2 from 'node:http2';
import { connect, createServer, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { TunnelRegistry } from '../../gateways/connector/tunnels.ts';
import { createDataPlaneServer } from '../../connector/data-plane.ts';
import { createLogger } from '../../core/log.ts';
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
