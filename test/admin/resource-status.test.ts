// The API's resource status names a site's node only while that node holds a lease: a route
// may name a node that died until its site moves (supervisors/gone-nodes.ts).
import t from 'tap';
import { statusQueries } from '../../gateways/admin/status.ts';
import { SnapshotStore } from '../../persistence/snapshots.ts';
import { freshValkey } from '../harness/services.ts';

t.test('a route naming a dead owner reads as that site offline', async (t) => {
  const v = await freshValkey(t);
  const routes = new SnapshotStore(v, 'routes');
  const target = (id: string, siteId: string) => ({ id, siteId, host: '10.0.0.5', port: 80, scheme: 'http' as const, enabled: true, weight: 1, healthy: true });
  await routes.put({
    id: 'r1',
    version: { epoch: 1, seq: 1 },
    data: { resourceId: 'r1', orgId: 'o1', protocol: 'http', hostname: 'app.example', port: null, tls: false, enabled: true, targets: [target('t1', 's1'), target('t2', 's2')], owners: { s1: 'node-2', s2: 'node-3' } },
  });
  const member = (id: string) => ({ id, incarnation: '1', admin: '127.0.0.1:1', peer: '127.0.0.1:2', addresses: [], startedAt: 0 });
  const status = statusQueries({ valkey: v, routes, leaseTtlMs: 3000, live: () => [member('node-1'), member('node-2')], ownersOf: async () => new Map(), actorCounts: async () => null });
  const r1 = (await status.resourceStatus(['r1'])).get('r1');
  t.match(r1?.targets, [{ targetId: 't1', siteOnline: true, node: 'node-2' }, { targetId: 't2', siteOnline: false, node: null }], 'node-3 holds no lease: its site is offline');
  t.same(r1?.servingNodes, ['node-2']);
});
