// The node's tunnel registry: a tunnel's HTTP/2 session is made only when a stream needs it
// (most sites are idle, every standby until promoted, and each session costs the node about
// 19 KB outside V8); the connector's first frames wait in the connection meanwhile.
import t, { type Test } from 'tap';
import http2 from 'node:http2';
import { connect as tcpConnect, type AddressInfo } from 'node:net';
import { text } from 'node:stream/consumers';
import { createServer as tcpServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { readAhead, TunnelRegistry } from '../../gateways/connector/tunnels.ts';

/**
 * The connector's side (answers every CONNECT with 200, then `greeting` if given) and a maker
 * of tunnels to it: each a TCP connection, its HTTP/2 session made when the registry asks.
 */
async function siteServer(t: Test, greeting?: string) {
  const server = http2.createServer();
  server.on('stream', (stream: http2.ServerHttp2Stream) => {
    stream.respond({ ':status': 200 });
    if (greeting !== undefined) stream.end(greeting);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const sessions: http2.ClientHttp2Session[] = [];
  const sockets: Array<ReturnType<typeof tcpConnect>> = [];
  t.teardown(() => {
    sessions.forEach((s) => s.destroy());
    sockets.forEach((s) => s.destroy()); // connections whose session was never made too
    server.close();
  });
  const connectOver = () => {
    const socket = tcpConnect(port, '127.0.0.1').on('error', () => {});
    sockets.push(socket);
    return () => {
      const h2 = http2.connect('http://connector.invalid', { createConnection: () => socket as never }).on('error', () => {});
      sessions.push(h2);
      return h2;
    };
  };
  return { connectOver, sessions, sockets };
}

t.test('a session starts at its first stream, primary or standby, and is used as made', async (t) => {
  const { connectOver, sessions } = await siteServer(t, 'hello from the site');
  const tunnels = new TunnelRegistry();
  const target = { id: 'target-1', host: '10.0.0.5', port: 80 };

  tunnels.set('standby-site', 'session-1', connectOver(), true);
  tunnels.set('primary-site', 'session-2', connectOver());
  t.equal(sessions.length, 0, 'no session before a stream needs one');
  t.ok(tunnels.has('standby-site') && tunnels.has('primary-site'), 'tunnels without a session yet still count as tunnels here');
  t.same(tunnels.counts(), { primary: 1, standby: 1 });

  // The server's preface has been waiting in the socket.
  await new Promise((r) => setTimeout(r, 100));
  t.equal(await text(await tunnels.open('primary-site', target, 'tcp')), 'hello from the site', "a primary's first stream, over a session made for it");
  const stream = await tunnels.open('standby-site', target, 'tcp');
  t.equal(await text(stream), 'hello from the site', 'a stream through the standby, over a session made for it');
  t.equal(sessions.length, 2);
  t.equal(await text(await tunnels.open('primary-site', target, 'tcp')), 'hello from the site');
  t.equal(sessions.length, 2, 'later streams use the session made');
  t.ok(tunnels.promote('standby-site', 'session-1'));
  t.equal(sessions.length, 2, 'promotion keeps the session the standby has');
  t.same(tunnels.counts(), { primary: 2, standby: 0 });

  tunnels.set('other-site', 'session-3', connectOver(), true);
  t.ok(tunnels.promote('other-site', 'session-3'), 'a standby that never carried a stream is promoted');
  t.equal(sessions.length, 2, 'and makes its session at its first stream, like a primary');
  tunnels.set('idle-site', 'session-4', connectOver(), true);
  tunnels.delete('idle-site', 'session-4');
  t.notOk(tunnels.has('idle-site'), 'a tunnel that never carried a stream goes without one being made');
  t.equal(sessions.length, 2);
});

t.test("a connection read ahead keeps the peer's first frames for its session, and shows its end at once", async (t) => {
  // The connector's side announces a setting of its own in its preface, sent as it accepts.
  const server = http2.createServer({ settings: { maxConcurrentStreams: 7 } });
  server.on('stream', (stream: http2.ServerHttp2Stream) => stream.respond({ ':status': 200 }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const socket = tcpConnect((server.address() as AddressInfo).port, '127.0.0.1').on('error', () => {});
  t.teardown(() => {
    socket.destroy();
    server.close();
  });
  const release = readAhead(socket);
  await once(socket, 'connect');
  await new Promise((r) => setTimeout(r, 200)); // the preface is read (and would be lost if dropped)
  release();
  const h2 = http2.connect('http://connector.invalid', { createConnection: () => socket as never }).on('error', () => {});
  t.teardown(() => h2.destroy());
  const [settings] = (await Promise.race([once(h2, 'remoteSettings'), new Promise((r) => setTimeout(() => r([undefined]), 2000))])) as [http2.Settings | undefined];
  t.equal(settings?.maxConcurrentStreams, 7, "the session made later reads the peer's settings, sent before it existed");

  /** A connection read ahead to a peer that does `onAccept`: whether it closed within 2 s. */
  const closesWhenPeer = async (onAccept: (c: Socket) => void) => {
    const peer = tcpServer(onAccept);
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    t.teardown(() => peer.close());
    const conn = tcpConnect((peer.address() as AddressInfo).port, '127.0.0.1').on('error', () => {});
    readAhead(conn);
    return Promise.race([once(conn, 'close').then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))]);
  };
  // A connector whose data connection ends before any stream (a reset, its machine gone).
  t.ok(await closesWhenPeer((c) => setTimeout(() => c.end(), 100)), 'its end is seen without a stream to write (an unread socket would show it only then)');
  // Not a connector: more than a preface before any stream was asked for.
  const cut = await closesWhenPeer((c) => c.write(Buffer.alloc(100 * 1024)));
  t.ok(cut, 'a connection that floods before its session is cut');
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

t.test('a tunnel whose session dies under a live control connection is reported lost; one ended on purpose is not', async (t) => {
  const { connectOver: connect, sockets } = await siteServer(t);
  const tunnels = new TunnelRegistry();
  const lost: string[] = [];
  const settle = () => new Promise((r) => setTimeout(r, 100));

  tunnels.set('site-a', 'session-1', connect(), false, () => lost.push('site-a'));
  (await tunnels.open('site-a', { id: 't', host: '10.0.0.5', port: 80 }, 'tcp')).destroy(); // its session is made
  await settle();
  sockets.at(-1)!.destroy(); // the data connection resets; the control connection knows nothing of it
  await settle();
  t.same(lost, ['site-a'], 'the dead session is reported, so the control connection can end and the connector register again');
  await t.rejects(tunnels.open('site-a', { id: 't', host: '10.0.0.5', port: 80 }, 'tcp'), { code: 'CLUSTER_ERR_TUNNEL_DOWN' });

  tunnels.set('site-b', 'session-2', connect(), false, () => lost.push('site-b: moved'));
  tunnels.set('site-b', 'session-2', connect(), false, () => lost.push('site-b: new')); // its data plane moves to a direct connection
  tunnels.set('site-c', 'session-3', connect(), false, () => lost.push('site-c'));
  tunnels.delete('site-c', 'session-3'); // the connector said goodbye
  tunnels.set('site-d', 'session-4', connect(), false, () => lost.push('site-d: old'));
  tunnels.set('site-d', 'session-5', connect(), false, () => lost.push('site-d: newest')); // a newer connection of the site
  await settle();
  t.same(lost, ['site-a'], 'sessions replaced or dropped on purpose are not losses');
  t.ok(tunnels.has('site-b') && tunnels.has('site-d'), 'the replacements carry on');
});

t.test("a standby never takes the place of the site's primary tunnel on the same node", async (t) => {
  const { connectOver: connect } = await siteServer(t, 'through the primary');
  const tunnels = new TunnelRegistry();
  const target = { id: 'target-1', host: '10.0.0.5', port: 80 };

  t.ok(tunnels.set('site', 'primary', connect()));
  t.notOk(tunnels.set('site', 'standby', connect(), true), 'a standby of a site whose primary is here is refused');
  t.equal(await text(await tunnels.open('site', target, 'tcp')), 'through the primary', 'the primary still carries the site');
  t.same(tunnels.counts(), { primary: 1, standby: 0 });

  tunnels.expect('other', 'registering');
  t.notOk(tunnels.set('other', 'standby', connect(), true), 'nor while its primary is being registered here');
  t.ok(tunnels.set('other', 'registering', connect()));

  t.ok(tunnels.set('third', 'standby', connect(), true), 'a standby of a site held elsewhere is taken');
  t.ok(tunnels.set('third', 'primary', connect()), 'and gives way when the site\'s primary comes here');
  t.notOk(tunnels.promote('third', 'standby'), 'a standby that gave way cannot be promoted');
  t.same(tunnels.counts(), { primary: 3, standby: 0 });
});
