// The DNS gateway is open to anyone: what a query may cost it is bounded. Junk after a
// question is FORMERR and never a cache entry, the cache is bounded by bytes, rate limits
// count IPv6 per /56 and cannot be reset by spoofed sources, TCP is capped per source.
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import dnsPacket from 'dns-packet';
import t from 'tap';
import { createLogger } from '../../core/log.ts';
import { RateBuckets, sourceOf } from '../../core/rate-buckets.ts';
import { DnsServer } from '../../gateways/dns/server.ts';
import { sourceFromMeta } from '../../gateways/dns/udp-batch.ts';
import type { ZoneData } from '../../protocol/zone.ts';
import { SimulatedClock } from '../harness/clock.ts';
import { until } from '../harness/until.ts';

const zone: ZoneData = {
  zone: 'limits.test',
  serial: 1,
  soa: { mname: 'ns.limits.test', rname: 'hostmaster.limits.test', refresh: 1, retry: 1, expire: 1, minimum: 30, ttl: 30 },
  records: { 'app.limits.test': [{ type: 'A', ttl: 30, data: '192.0.2.1' }] },
};
const zones = { zones: new Map([['limits.test', zone]]), generation: 1 };
const server = (rateLimit = 0) => new DnsServer({ zones, host: '127.0.0.1', port: 0, logger: createLogger({ level: 'silent' }), rateLimit, clock: new SimulatedClock() });
const query = (name: string, id = 1, opt = false) =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }], additionals: opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as never] : [] });
const rcode = (out: Buffer | undefined) => out && out[3]! & 0xf;

t.test('bytes after the question and OPT record are FORMERR and cached nowhere', async (t) => {
  const dns = server();
  const good = query('app.limits.test');
  t.equal(rcode(dns.answer(good, 'udp')), 0);
  const cached = dns.cacheBytes;
  t.ok(cached > 0, 'the answer is cached');
  let formerr = 0;
  for (let i = 0; i < 2000; i++) if (rcode(dns.answer(Buffer.concat([query('app.limits.test', i), Buffer.alloc(100, i)]), 'udp')) === 1) formerr++;
  t.equal(formerr, 2000, 'every query with junk after it is FORMERR');
  t.equal(dns.cacheBytes, cached, '2,000 queries with junk added nothing to the cache');
  t.equal(rcode(dns.answer(Buffer.concat([query('app.limits.test'), Buffer.alloc(20_000)]), 'tcp')), 1, 'an oversized query is FORMERR');
  t.equal(rcode(dns.answer(query('app.limits.test', 7, true), 'udp')), 0, 'a query with an OPT record is fine');
});

t.test('the same question under other ids shares one entry; the cache is bounded by bytes', async (t) => {
  const dns = server();
  for (let i = 0; i < 500; i++) dns.answer(query('app.limits.test', i), 'udp');
  const one = dns.cacheBytes;
  dns.answer(query('app.limits.test', 9999), 'udp');
  t.equal(dns.cacheBytes, one, 'ids do not make new entries');
  for (let i = 0; i < 200_000; i++) dns.answer(query(`n${i}-${'x'.repeat(40)}.limits.test`, i & 0xffff), 'udp');
  t.ok(dns.cacheBytes <= 32 * 1024 * 1024, `the cache holds ${dns.cacheBytes} bytes after 200,000 distinct names`);
});

t.test('rate limits: spoofed sources cannot reset a busy source, and IPv6 counts per /56', async (t) => {
  const b = new RateBuckets(5, 1000);
  for (let i = 0; i < 5; i++) t.ok(b.take('198.51.100.1', 0));
  t.notOk(b.take('198.51.100.1', 0), 'the busy source is out of tokens');
  for (let i = 0; i < 5000; i++) {
    b.take(`203.0.${i >> 8}.${i & 255}`, 0);
    if (i % 700 === 0) b.take('198.51.100.1', 0); // it asks once per 700 new sources (under 3/4 of the 1,000 kept), so it stays known
  }
  t.ok(b.size <= 1000, 'memory is bounded');
  t.notOk(b.take('198.51.100.1', 0), 'and its bucket was not reset by the flood');
  t.equal(sourceOf('2001:db8:1:2345::1'), sourceOf('2001:db8:1:23ff:aaaa::9'), 'one /56');
  t.not(sourceOf('2001:db8:1:2345::1'), sourceOf('2001:db8:1:2445::1'), 'another /56');
  t.equal(sourceOf('2001:db8:0:0:3:4:5:6'), '2001:db8:0:0::/56');
  t.equal(sourceOf('::ffff:192.0.2.7'), '192.0.2.7');
});

t.test('TCP: one source holds at most 16 connections', async (t) => {
  const dns = new DnsServer({ zones, host: '127.0.0.1', port: 0, logger: createLogger({ level: 'silent' }), rateLimit: 0, clock: new SimulatedClock() });
  // Port 0 picks a free port for UDP and TCP separately; the TCP one is what this test needs.
  await dns.listen();
  t.teardown(() => dns.close());
  const port = dns.tcpPort!;
  const socks = await Promise.all(Array.from({ length: 20 }, async () => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    await once(s, 'connect');
    return s;
  }));
  t.teardown(() => socks.forEach((s) => s.destroy()));
  const closed = () => socks.filter((s) => s.destroyed || s.readableEnded).length;
  for (const s of socks) s.on('end', () => s.destroy());
  await until(() => closed() >= 4, 5000, 'connections over the cap to close');
  t.equal(closed(), 4, 'the connections over 16 were closed, the rest stay');
});

for (const udp of ['batched', 'dgram'] as const) {
  t.test(`UDP (${udp}): bound by a host name, answers go back to each asker, each query counted once`, async (t) => {
    let counted = 0;
    const dns = new DnsServer({ zones, host: 'localhost', port: 0, logger: createLogger({ level: 'silent' }), rateLimit: 0, clock: new SimulatedClock(), udp, queryCounter: () => ({ inc: () => void counted++ }) });
    await dns.listen();
    t.teardown(() => dns.close());
    // The batched socket is built by the bootstrap on every Linux machine with a compiler:
    // a fall back to dgram here means the build failed, which must not pass unseen.
    t.equal(dns.udpMode, udp, `served by ${udp}`);
    const askers = [createSocket('udp4'), createSocket('udp4')];
    t.teardown(() => askers.forEach((s) => s.close()));
    const answers: Array<{ asker: number; id: number; rcode: number }> = [];
    askers.forEach((s, asker) => s.on('message', (m) => answers.push({ asker, id: m.readUInt16BE(0), rcode: m[3]! & 0xf })));
    // Two cached answers, a miss, junk after a question, a query longer than a batch slot,
    // a response (dropped) and a short packet (dropped).
    const sent = [
      query('app.limits.test', 100),
      query('app.limits.test', 101),
      query('nope.limits.test', 102),
      Buffer.concat([query('app.limits.test', 103), Buffer.alloc(30)]),
      Buffer.concat([query('app.limits.test', 104), Buffer.alloc(3000)]),
      Buffer.from(query('app.limits.test', 105)).fill(0x80, 2, 3),
      Buffer.alloc(5),
    ];
    sent.forEach((q, i) => askers[i % 2]!.send(q, dns.udpPort!, '127.0.0.1'));
    await until(() => answers.length === 5, 5000, 'five answers');
    await new Promise((r) => setTimeout(r, 200));
    t.same(answers.sort((a, b) => a.id - b.id), [
      { asker: 0, id: 100, rcode: 0 },
      { asker: 1, id: 101, rcode: 0 },
      { asker: 0, id: 102, rcode: 3 },
      { asker: 1, id: 103, rcode: 1 },
      { asker: 0, id: 104, rcode: 1 },
    ], 'every answer to its asker under its id, the cached ones too; FORMERR for junk and oversize; nothing for the rest');
    t.equal(counted, 5);
  });
}

t.test('UDP (batched): the rate limit counts a source once per query, answers the rest', async (t) => {
  const dns = new DnsServer({ zones, host: '127.0.0.1', port: 0, logger: createLogger({ level: 'silent' }), rateLimit: 5, clock: new SimulatedClock() });
  await dns.listen();
  t.teardown(() => dns.close());
  const asker = createSocket('udp4');
  t.teardown(() => asker.close());
  let answered = 0;
  asker.on('message', () => answered++);
  for (let i = 0; i < 40; i++) asker.send(query('app.limits.test', i), dns.udpPort!, '127.0.0.1');
  await until(() => answered >= 5, 5000, 'the first answers');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(answered, 5, 'five answers for a source allowed five per second, the clock standing still');
});

t.test('the rate limiter keys a batched source as it keys the same address in text', async (t) => {
  const meta = Buffer.alloc(24);
  const key = (family: 4 | 6, bytes: number[]) => {
    meta.fill(0);
    meta[4] = family;
    Buffer.from(bytes).copy(meta, 8);
    return sourceFromMeta(meta, 0);
  };
  t.equal(key(4, [192, 0, 2, 7]), sourceOf('192.0.2.7'));
  t.equal(key(6, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7]), sourceOf('::ffff:192.0.2.7'), 'IPv4-mapped');
  const v6 = [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x23, 0x45, 0, 0, 0, 0, 0, 0, 0, 1];
  t.equal(key(6, v6), sourceOf('2001:db8:1:2345::1'), 'IPv6 per /56');
  t.equal(key(6, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 3, 0, 4, 0, 5, 0, 6]), sourceOf('2001:db8:0:0:3:4:5:6'));
});
