// The suspicion core with a simulated clock: a silent peer is suspected only after its
// silence and an indirect probe both say so; one that others hear is not; a peer heard again
// is cleared; this node's own stall suspects nobody. And what routing does with it: DNS
// leaves suspected nodes' addresses out (never all of a name's), ingress avoids them while
// another holder exists.
import t from 'tap';
import { createLogger } from '../../core/log.ts';
import { withoutAddresses } from '../../gateways/dns/zones.ts';
import { chooseTarget } from '../../gateways/ingress/upstream.ts';
import type { Route, RouteTarget } from '../../protocol/route.ts';
import type { ZoneData } from '../../protocol/zone.ts';
import { Suspicion } from '../../supervisors/suspicion.ts';
import { SimulatedClock } from '../harness/clock.ts';

const logger = createLogger({ level: 'silent' });
const flush = () => new Promise((r) => setImmediate(r));

function detector(o: { peers: string[]; heardBy?: Record<string, number | null> }) {
  const clock = new SimulatedClock();
  const asked: string[] = [];
  const s = new Suspicion({
    clock, logger, afterMs: 700, probeEveryMs: 100,
    peers: () => o.peers,
    ping: () => {},
    askVia: async (via, about) => {
      asked.push(`${via}:${about}`);
      return o.heardBy?.[via] ?? null;
    },
  });
  s.start();
  const suspects: string[] = [];
  s.on('suspect', (id: string) => suspects.push(id));
  /** Advances time in probe steps, `answering` peers heard at every step. */
  const run = async (ms: number, answering: string[]) => {
    for (let i = 0; i < ms / 100; i++) {
      for (const p of answering) s.heard(p);
      clock.advance(100);
      await flush();
    }
  };
  return { s, clock, asked, suspects, run };
}

t.test('a silent peer is suspected after the silence and an indirect probe; heard again, it is cleared', async (t) => {
  const d = detector({ peers: ['b', 'c'] });
  await d.run(600, ['b']);
  t.same(d.suspects, [], 'not before the silence passes');
  await d.run(300, ['b']);
  t.same(d.suspects, ['c'], 'c suspected after 700 ms of silence');
  t.ok(d.asked.includes('b:c'), 'b was asked about c first');
  t.ok(d.s.isSuspected('c'));
  const gen = d.s.generation;
  d.s.heard('c');
  t.notOk(d.s.isSuspected('c'), 'cleared the moment it is heard');
  t.ok(d.s.generation > gen, 'answer caches see the change');
  t.same(d.s.raised.get('c'), 1);
});

t.test('a peer another node still hears is not suspected (only this path is bad)', async (t) => {
  const d = detector({ peers: ['b', 'c'], heardBy: { b: 50 } });
  await d.run(2000, ['b']);
  t.same(d.suspects, []);
});

t.test('this node stalling (a GC pause, SIGSTOP) suspects nobody', async (t) => {
  const d = detector({ peers: ['b', 'c'] });
  await d.run(300, ['b', 'c']);
  d.clock.t += 5000; // time passes, no timer runs (this process was stopped)...
  d.clock.advance(100); // ...then one late tick: the whole cluster looks silent
  await flush();
  await d.run(300, ['b', 'c']);
  t.same(d.suspects, []);
});

t.test('two nodes: no third to ask, silence alone decides', async (t) => {
  const d = detector({ peers: ['b'] });
  await d.run(1000, []);
  t.same(d.suspects, ['b']);
});

t.test('DNS leaves out suspected addresses; a name only they served gets the nodes still answering', async (t) => {
  const a = (ip: string) => ({ type: 'A' as const, ttl: 30, data: ip });
  const txt = { type: 'TXT' as const, ttl: 30, data: ['x'] };
  const zone = {
    zone: 'ex.test', serial: 1, soa: {} as ZoneData['soa'],
    records: { 'ex.test': [{ type: 'NS', ttl: 30, data: 'ns-n2.ex.test' }], 'app.ex.test': [a('10.0.0.1'), a('10.0.0.2'), txt], 'db.ex.test': [a('10.0.0.2')], 'ns-n2.ex.test': [a('10.0.0.2')] },
  } as unknown as ZoneData;
  const out = withoutAddresses(zone, new Set(['10.0.0.2']), ['10.0.0.1', '10.0.0.3']);
  t.same(out.records['app.ex.test'], [txt, a('10.0.0.1')], 'the suspected node left out');
  t.same(out.records['db.ex.test'], [a('10.0.0.1'), a('10.0.0.3')], 'a name it alone served: the nodes still answering');
  t.same(out.records['ns-n2.ex.test'], [a('10.0.0.2')], 'name-server glue untouched');
  t.same(withoutAddresses(zone, new Set(['10.0.0.2'])).records['db.ex.test'], [a('10.0.0.2')], 'no node answering: the name keeps what it had');
  t.same(zone.records['app.ex.test']!.length, 3, 'the snapshot itself is untouched');
  t.equal(withoutAddresses(zone, new Set()), zone, 'nothing suspected: the same object');
});

t.test('ingress avoids a suspected holder while another exists', async (t) => {
  const target = (id: string, siteId: string): RouteTarget => ({ id, siteId, host: '10.0.0.1', port: 80, scheme: 'http', enabled: true, weight: 1, healthy: true });
  const route: Route = { resourceId: 'r', orgId: 'o', protocol: 'http', hostname: 'a.example', port: null, tls: true, enabled: true, targets: [target('t1', 's1'), target('t2', 's2')], owners: { s1: 'node-2', s2: 'node-3' } };
  const none = { has: () => false };
  const placement = (suspected: string[]) => ({ nodeId: 'node-1', isLive: () => true, isSuspected: (n: string) => suspected.includes(n) });
  for (const r of [0.1, 0.9]) t.match(chooseTarget(route, none, placement(['node-2']), 'tcp', () => r), { node: 'node-3' }, 'never the suspected node while node-3 holds a target');
  t.match(chooseTarget(route, none, placement(['node-2', 'node-3']), 'tcp', () => 0.1), { node: 'node-2' }, 'all suspected: still tried');
});
