// What one client may hold at the edge: a ClientHello must arrive whole within its deadline
// (a byte now and then does not keep a socket), and one source holds a bounded number of
// connections on :80 and :443.
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import t from 'tap';
import { startApiCluster } from '../harness/api.ts';
import { until } from '../harness/until.ts';

t.test('slow hellos are cut at their deadline, and connections per source are capped', async (t) => {
  const c = await startApiCluster(t, 1, { ingress: { helloTimeout: '1s', maxConnectionsPerSource: 5 } });
  const host = String(c.nodes[0]!.config.ingress.http).replace(/:80$/, '');

  // A TLS record header promising a large hello, then one byte every 200 ms.
  const slow = connect(443, host);
  slow.on('error', () => {});
  await once(slow, 'connect');
  slow.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
  let sent = 0;
  const trickle = setInterval(() => !slow.destroyed && (slow.write(Buffer.from([0x01])), sent++), 200);
  t.teardown(() => clearInterval(trickle));
  // Not events.once: it rejects on 'error', and a node closing a socket with unread bytes
  // resets it (the client reads ECONNRESET before 'close').
  await new Promise((r) => slow.once('close', r));
  clearInterval(trickle);
  t.ok(sent < 512, `the node closed it while the hello was still arriving (${sent} of 512 bytes sent)`);

  for (const port of [80, 443]) {
    const socks: Socket[] = await Promise.all(Array.from({ length: 8 }, async () => {
      const s = connect(port, host);
      s.on('error', () => {});
      // Connected, or already cut: on a loaded machine the node's reset of one over the cap can
      // be read before its 'connect' (events.once would then reject with ECONNRESET).
      await new Promise((r) => (s.once('connect', r), s.once('close', r)));
      return s;
    }));
    const closed = () => socks.filter((s) => s.closed).length;
    await until(() => closed() >= 3, 5000, `connections over the cap on :${port} to close`);
    t.equal(closed(), 3, `:${port}: the three over the cap of five were closed`);
    for (const s of socks) s.destroy();
    await until(() => socks.every((s) => s.closed), 5000, 'the test\'s sockets to close');
  }
  // Their places are free again once they close.
  const again = connect(80, host);
  again.on('error', () => {});
  await once(again, 'connect');
  again.write(`GET / HTTP/1.1\r\nHost: nothing.test\r\nConnection: close\r\n\r\n`);
  const [answer] = await once(again, 'data');
  t.match(String(answer), /^HTTP\/1\.1 404 /, 'a new connection is served');
});
