// New UDP sessions are admitted within limits, per resource and per source, at a bounded rate.
import t from 'tap';
import { UdpAdmission } from '../../gateways/ingress/udp-admission.ts';
import { SimulatedClock } from '../harness/clock.ts';

t.test('sessions are capped per source (IPv6 per /56) and per resource, and released when they end', async (t) => {
  const clock = new SimulatedClock();
  const a = new UdpAdmission({ perResource: 100, perSource: 3, newPerSecondPerSource: 1000 }, clock);
  const got = ['2001:db8:1:2300::1', '2001:db8:1:23aa::2', '2001:db8:1:2301::3', '2001:db8:1:23ff::4'].map((ip) => a.admit(ip, 0));
  t.same(got.map((g) => (g.ok ? 'ok' : g.reason)), ['ok', 'ok', 'ok', 'source-full'], 'one /56 holds three');
  t.ok(a.admit('2001:db8:1:2400::1', 0).ok, 'the next /56 is another source');
  a.closed((got[0] as { source: string }).source);
  t.ok(a.admit('2001:db8:1:2355::9', 0).ok, 'an ended session frees its place');
  t.same(a.admit('192.0.2.1', 100), { ok: false, reason: 'resource-full' });
  t.equal(a.held, 4, 'four sessions held');
});

t.test('new sessions per source are rate limited, refilling with time', async (t) => {
  const clock = new SimulatedClock();
  const a = new UdpAdmission({ perResource: 10_000, perSource: 10_000, newPerSecondPerSource: 10 }, clock);
  const first = Array.from({ length: 15 }, () => a.admit('198.51.100.7', 0).ok);
  t.equal(first.filter(Boolean).length, 10, 'a burst of ten');
  t.ok(a.admit('198.51.100.8', 0).ok, 'another source is not affected');
  clock.advance(500);
  t.equal(Array.from({ length: 10 }, () => a.admit('198.51.100.7', 0).ok).filter(Boolean).length, 5, 'five more after half a second');
});
