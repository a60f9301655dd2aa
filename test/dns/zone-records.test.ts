// What a zone publishes, computed from the live nodes, the resources' routes and the
// challenges: DNS names the nodes that can serve a hostname without an extra hop.
import t from 'tap';
import { zoneRecords } from '../../actors/dns-zone.ts';
import type { Route } from '../../protocol/route.ts';

const live = [
  { id: 'node-2', addresses: ['192.0.2.2'] },
  { id: 'node-1', addresses: ['192.0.2.1', '2001:db8::1'] },
  { id: 'node-3', addresses: [] }, // no public address: serves nothing in DNS
];
const route = (owners: Record<string, string>, healthy = true): Route => ({
  resourceId: 'r1', orgId: 'o', protocol: 'http', hostname: 'app.example.com', port: null, tls: true, enabled: true, owners,
  targets: [{ id: 't1', siteId: 's1', host: '10.0.0.1', port: 80, scheme: 'http', enabled: true, weight: 1, healthy }],
});
const compute = (routes: Map<string, Route>, acme: Record<string, string[]> = {}) =>
  zoneRecords({ zone: 'example.com', ttl: 30, caaIssuers: ['letsencrypt.org'], live, hosts: [{ resourceId: 'r1', hostname: 'app.example.com' }], routes, acme });

t.test('every live node with an address is a name server with glue, in a stable order; CAA names the CA', async (t) => {
  const r = compute(new Map());
  t.same(r['example.com']!.filter((x) => x.type === 'NS').map((x) => x.data), ['ns-node-1.example.com', 'ns-node-2.example.com']);
  t.same(r['ns-node-1.example.com']!.map((x) => `${x.type} ${x.data}`), ['A 192.0.2.1', 'AAAA 2001:db8::1']);
  t.match(r['example.com']!.find((x) => x.type === 'CAA'), { data: { tag: 'issue', value: 'letsencrypt.org' } });
});

t.test('a hostname resolves to the node holding its healthy target\'s tunnel, else to every live node', async (t) => {
  t.same(compute(new Map([['r1', route({ s1: 'node-2' })]]))['app.example.com']!.map((x) => x.data), ['192.0.2.2']);
  const all = ['192.0.2.1', '2001:db8::1', '192.0.2.2'];
  t.same(compute(new Map([['r1', route({ s1: 'node-2' }, false)]]))['app.example.com']!.map((x) => x.data), all, 'unhealthy target: any node forwards');
  t.same(compute(new Map([['r1', route({ s1: 'node-9' })]]))['app.example.com']!.map((x) => x.data), all, 'its holder is not live');
  t.same(compute(new Map())['app.example.com']!.map((x) => x.data), all, 'no route published yet');
});

t.test('challenge values become one TXT record with a short TTL; cleared ones disappear', async (t) => {
  const r = compute(new Map(), { '_acme-challenge.app.example.com': ['a', 'b'], '_acme-challenge.old.example.com': [] });
  t.same(r['_acme-challenge.app.example.com'], [{ type: 'TXT', ttl: 30, data: ['a', 'b'] }]);
  t.equal(r['_acme-challenge.old.example.com'], undefined);
});
