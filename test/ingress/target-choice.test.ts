// Target choice, from memory: a local tunnel first, else the live node holding one; never a
// disabled or unhealthy target, never this node without a tunnel, never a dead node.
import t from 'tap';
import { chooseTarget } from '../../gateways/ingress/upstream.ts';
import { unroutedIds } from '../../gateways/ingress/routes.ts';
import type { Route, RouteTarget } from '../../protocol/route.ts';

const target = (id: string, siteId: string, extra: Partial<RouteTarget> = {}): RouteTarget => ({ id, siteId, host: '10.0.0.1', port: 80, scheme: 'http', enabled: true, weight: 1, healthy: true, ...extra });
const route = (targets: RouteTarget[], owners: Record<string, string>): Route => ({ resourceId: 'r', orgId: 'o', protocol: 'http', hostname: 'a.example', port: null, tls: true, enabled: true, targets, owners });
const tunnelsTo = (...sites: string[]) => ({ has: (s: string) => sites.includes(s) });
const placement = (live: string[]) => ({ nodeId: 'node-1', isLive: (n: string) => live.includes(n) });

t.test('a target whose site tunnel is here is chosen over one elsewhere', async (t) => {
  const r = route([target('t1', 's1'), target('t2', 's2')], { s1: 'node-2', s2: 'node-1' });
  t.match(chooseTarget(r, tunnelsTo('s2'), placement(['node-1', 'node-2']), 'tcp'), { node: 'local', target: { id: 't2' } });
});

t.test('without a local tunnel the node holding one is chosen, if it is live and not this node', async (t) => {
  const r = route([target('t1', 's1')], { s1: 'node-2' });
  t.match(chooseTarget(r, tunnelsTo(), placement(['node-1', 'node-2']), 'tcp'), { node: 'node-2', target: { id: 't1' } });
  t.equal(chooseTarget(r, tunnelsTo(), placement(['node-1']), 'tcp'), undefined, 'a dead owner is not forwarded to');
  const stale = route([target('t1', 's1')], { s1: 'node-1' });
  t.equal(chooseTarget(stale, tunnelsTo(), placement(['node-1']), 'tcp'), undefined, 'a route naming this node without a tunnel here is stale');
});

t.test('disabled, unhealthy and wrong-protocol targets are never chosen; weights pick among the rest', async (t) => {
  const r = route([target('off', 's1', { enabled: false }), target('sick', 's1', { healthy: false }), target('udp', 's1', { scheme: 'udp' }), target('ok', 's1')], {});
  t.match(chooseTarget(r, tunnelsTo('s1'), placement([]), 'tcp'), { target: { id: 'ok' } });
  t.match(chooseTarget(r, tunnelsTo('s1'), placement([]), 'udp'), { target: { id: 'udp' } });
  const weighted = route([target('light', 's1', { weight: 1 }), target('heavy', 's1', { weight: 3 })], {});
  t.match(chooseTarget(weighted, tunnelsTo('s1'), placement([]), 'tcp', () => 0.2), { target: { id: 'light' } });
  t.match(chooseTarget(weighted, tunnelsTo('s1'), placement([]), 'tcp', () => 0.5), { target: { id: 'heavy' } });
  t.equal(chooseTarget(route([target('sick', 's1', { healthy: false })], {}), tunnelsTo('s1'), placement([]), 'tcp'), undefined);
});

t.test('a route is unrouted when no enabled target has its tunnel on a live node', async (t) => {
  const r = (id: string, targets: RouteTarget[], owners: Record<string, string>, enabled = true): Route => ({ ...route(targets, owners), resourceId: id, enabled });
  const routes = [
    r('served', [target('t1', 's1')], { s1: 'node-1' }),
    r('offline', [target('t2', 's2')], {}),
    r('on-dead', [target('t3', 's3')], { s3: 'node-2' }),
    r('disabled-target', [target('t4', 's4', { enabled: false })], { s4: 'node-1' }),
    r('one-of-two', [target('t5', 's2'), target('t6', 's1')], { s1: 'node-1' }),
    r('disabled', [], {}, false),
  ];
  t.same(unroutedIds(routes, (n) => n === 'node-1'), ['offline', 'on-dead', 'disabled-target'], 'a disabled resource is not counted');
});
