// The SNI peek at :443 reads untrusted bytes: real hellos give their server name, partial
// ones wait, and no mutation of a hello makes it throw or read out of range.
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import t from 'tap';
import { MAX_HELLO, readClientHello } from '../../gateways/ingress/client-hello.ts';

/** The first bytes Node's TLS client sends for `servername`: a real ClientHello. */
async function realHello(servername?: string): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got = once(server, 'connection').then(async ([sock]) => {
    const [chunk] = await once(sock, 'data');
    sock.destroy();
    return chunk as Buffer;
  });
  const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ...(servername ? { servername } : {}), rejectUnauthorized: false });
  client.on('error', () => {});
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

/** A deterministic pseudo-random sequence, so a failing mutation can be reproduced. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 2 ** 32);
}

t.test('a real ClientHello gives its server name, lower case; one without SNI gives none', async (t) => {
  t.same(readClientHello(await realHello('App.Example.COM')), { state: 'done', serverName: 'app.example.com' });
  t.same(readClientHello(await realHello()), { state: 'done', serverName: undefined });
});

t.test('every prefix of a hello is incomplete, never an error or a wrong name', async (t) => {
  const hello = await realHello('app.example.com');
  const states = new Set<string>();
  for (let n = 0; n < hello.length; n++) states.add(readClientHello(hello.subarray(0, n)).state);
  t.same([...states], ['incomplete']);
});

t.test('what is not a TLS hello is refused with a reason', async (t) => {
  t.match(readClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), { state: 'error', reason: 'not a TLS handshake record' });
  t.match(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff])), { state: 'error', reason: 'bad record length' });
  t.match(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0])), { state: 'error', reason: 'not a ClientHello' });
  t.ok(MAX_HELLO > 16 * 1024, 'the wait bound covers one full record');
});

t.test('fuzz: 5,000 mutated hellos never throw and name nothing but a valid host name', async (t) => {
  const base = await realHello('app.example.com');
  const random = rng(20261204);
  const int = (n: number) => Math.floor(random() * n);
  let threw = 0;
  const badNames: string[] = [];
  const states = { incomplete: 0, done: 0, error: 0 };
  for (let i = 0; i < 5000; i++) {
    let buf = Buffer.from(base);
    for (let m = 1 + int(4); m > 0; m--) {
      const op = int(4);
      if (op === 0) buf[int(buf.length)] = int(256); // flip a byte
      else if (op === 1) buf = buf.subarray(0, int(buf.length)); // truncate
      else if (op === 2) buf = Buffer.concat([buf.subarray(0, 5 + int(60)), Buffer.from([int(256), int(256)]), buf.subarray(5 + int(60))]); // insert
      else if (buf.length >= 8) buf.writeUInt16BE(int(65536), 5 + int(buf.length - 7)); // corrupt a length
    }
    try {
      const r = readClientHello(buf);
      states[r.state]++;
      if (r.state === 'done' && r.serverName !== undefined && !/^[a-z0-9.-]{1,253}$/.test(r.serverName)) badNames.push(r.serverName);
    } catch {
      threw++;
    }
  }
  t.equal(threw, 0, 'no mutation threw');
  t.same(badNames, [], 'no invalid name came out');
  t.ok(states.error > 0 && states.done > 0, `the mutations reached both outcomes (${JSON.stringify(states)})`);
});
