// The node's tunnel registry: a standby tunnel's HTTP/2 session is made only when a stream
// needs it or the site is promoted (most standbys never carry a stream, and each session costs
// the node about 20 KB); the connector's first frames wait in the connection meanwhile.
import t from 'tap';
import http2 from 'node:http2';
import { connect as tcpConnect, type AddressInfo } from 'node:net';
import { text } from 'node:stream/consumers';
import { TunnelRegistry } from '../../gateways/connector/tunnels.ts';

t.test('a standby session starts at its first stream, and is used as made', async (t) => {
  // The connector's side: answers every CONNECT with 200 and a greeting.
  const server = http2.createServer();
  server.on('stream', (stream: http2.ServerHttp2Stream) => {
    stream.respond({ ':status': 200 });
    stream.end('hello from the site');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const sessions: http2.ClientHttp2Session[] = [];
  const sockets: Array<ReturnType<typeof tcpConnect>> = [];
  const connectOver = () => {
    const socket = tcpConnect(port, '127.0.0.1').on('error', () => {});
    sockets.push(socket);
    return () => {
      const h2 = http2.connect('http://connector.invalid', { createConnection: () => socket as never });
      sessions.push(h2);
      return h2;
    };
  };
  t.teardown(() => {
    sessions.forEach((s) => s.destroy());
    sockets.forEach((s) => s.destroy());
  });
  const tunnels = new TunnelRegistry();
  const target = { id: 'target-1', host: '10.0.0.5', port: 80 };

  tunnels.set('standby-site', 'session-1', connectOver(), true);
  tunnels.set('primary-site', 'session-2', connectOver());
  t.equal(sessions.length, 1, 'the primary has its session at once; the standby none');
  t.ok(tunnels.has('standby-site'), 'a standby without a session yet still counts as a tunnel here');
  t.same(tunnels.counts(), { primary: 1, standby: 1 });

  // The server's preface has been waiting in the socket.
  await new Promise((r) => setTimeout(r, 100));
  const stream = await tunnels.open('standby-site', target, 'tcp');
  t.equal(await text(stream), 'hello from the site', 'a stream through the standby, over a session made for it');
  t.equal(sessions.length, 2);
  tunnels.promote('standby-site', 'session-1');
  t.equal(sessions.length, 2, 'promotion keeps the session the standby has');
  t.same(tunnels.counts(), { primary: 2, standby: 0 });

  tunnels.set('other-site', 'session-3', connectOver(), true);
  tunnels.promote('other-site', 'session-3');
  t.equal(sessions.length, 3, 'a promoted standby gets its session then, ready for the routes that name it');
  tunnels.set('idle-site', 'session-4', connectOver(), true);
  tunnels.delete('idle-site', 'session-4');
  t.notOk(tunnels.has('idle-site'), 'a standby that never carried a stream goes without one being made');
  t.equal(sessions.length, 3);
});

t.test('a stream that times out while its session is being replaced fails once, and starts no stray retry', async (t) => {
  // The connector's side never answers a CONNECT (a target behind it that hangs).
  const server = http2.createServer();
  server.on('stream', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sessions: http2.ClientHttp2Session[] = [];
  t.teardown(() => {
    sessions.forEach((s) => s.destroy());
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const connect = () => {
    const h2 = http2.connect(`http://127.0.0.1:${port}`);
    h2.on('error', () => {});
    // Under load the session can go away right after the deadline's cancel, so the stream
    // also errors: made certain here.
    const request = h2.request.bind(h2);
    h2.request = ((...args: Parameters<typeof request>) => {
      const stream = request(...args);
      const close = stream.close.bind(stream);
      stream.close = ((code?: number, cb?: () => void) => {
        close(code, cb);
        stream.destroy(new Error('session went away'));
      }) as typeof stream.close;
      return stream;
    }) as typeof h2.request;
    sessions.push(h2);
    return h2;
  };
  const stray: unknown[] = [];
  const onUnhandled = (err: unknown) => stray.push(err);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));

  const tunnels = new TunnelRegistry();
  tunnels.set('site', 'session-1', connect);
  const opening = tunnels.open('site', { id: 'target-1', host: '10.0.0.5', port: 80 }, 'tcp', 300);
  await new Promise((r) => setTimeout(r, 50));
  tunnels.set('site', 'session-1', connect); // the data plane moves: the old session finishes its streams
  await t.rejects(opening, { code: 'CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT' }, 'the open fails at its deadline');
  await new Promise((r) => setTimeout(r, 700)); // a stray retry would have timed out by now
  t.same(stray, [], 'no rejection that nobody handles (it ended a node under load)');
});
