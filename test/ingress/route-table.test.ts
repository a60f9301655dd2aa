// The ingress's route table keeps its hostname index in place, snapshot by snapshot (a full
// rebuild per snapshot was quadratic at thousands of routes), and tells its listeners each
// tick's changes with what every route was before.
import t from 'tap';
import { systemClock } from '../../core/clock.ts';
import { createLogger } from '../../core/log.ts';
import { RouteTable, type Route, type RouteChange } from '../../gateways/ingress/routes.ts';
import { SnapshotStore } from '../../persistence/snapshots.ts';
import { freshValkey } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });
const route = (id: string, over: Partial<Route> = {}): Route => ({ resourceId: id, orgId: 'org', protocol: 'http', hostname: `${id}.example.test`, port: null, tls: true, enabled: true, targets: [], owners: {}, ...over });

t.test('the hostname index follows renames, disables and deletes; listeners hear each tick once', async (t) => {
  const v = await freshValkey(t);
  const store = new SnapshotStore(v, 'routes');
  let seq = 0;
  const put = (id: string, data?: Route) => store.put({ id, version: { epoch: 1, seq: ++seq }, ...(data ? { data } : {}) });
  await put('a', route('a'));
  const table = new RouteTable({ valkey: v, logger, clock: systemClock });
  const batches: RouteChange[][] = [];
  table.on('updated', (c: RouteChange[]) => batches.push(c));
  await table.start();
  t.teardown(() => table.stop());
  t.equal(table.byHost('a.example.test')?.resourceId, 'a', 'what was published before start is served');
  t.same(batches.map((b) => b.map((c) => c.after?.resourceId)), [['a']], 'and told to listeners once');

  const settle = async (ok: () => boolean) => {
    for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 20));
  };
  batches.length = 0;
  await Promise.all([put('b', route('b')), put('c', route('c', { protocol: 'tcp', hostname: null, port: 20001 }))]);
  await settle(() => table.all().length === 3);
  t.equal(table.byHost('b.example.test')?.resourceId, 'b');
  t.equal(table.all().length, 3, 'all() sees every route');

  // A renames to the name b gives up in the same moment, in either order.
  await put('b', route('b', { hostname: 'b2.example.test' }));
  await put('a', route('a', { hostname: 'b.example.test' }));
  await settle(() => table.byHost('b.example.test')?.resourceId === 'a');
  t.equal(table.byHost('b.example.test')?.resourceId, 'a', 'a took the name b gave up');
  t.equal(table.byHost('b2.example.test')?.resourceId, 'b');
  t.equal(table.byHost('a.example.test'), undefined, "a's old name is gone");

  await put('b', route('b', { hostname: 'b2.example.test', enabled: false }));
  await put('a');
  await settle(() => table.byId('a') === undefined && table.byHost('b2.example.test') === undefined);
  t.equal(table.byHost('b2.example.test'), undefined, 'a disabled route is not served by name');
  t.equal(table.byHost('b.example.test'), undefined, 'a deleted route neither');
  t.same(table.all().map((r) => r.resourceId).sort(), ['b', 'c']);

  // Listeners hear of it on the next tick.
  const toldDeleted = () => batches.flat().some((c) => c.before?.resourceId === 'a' && c.after === undefined);
  await settle(toldDeleted);
  const changes = batches.flat();
  const lastOfA = changes.filter((c) => (c.before ?? c.after)?.resourceId === 'a').at(-1);
  t.equal(lastOfA?.after, undefined, 'the delete is told with nothing after');
  t.equal(lastOfA?.before?.hostname, 'b.example.test', 'and with what the route was');
  t.ok(changes.some((c) => c.after?.protocol === 'tcp'), 'a TCP route is among the changes (what the TCP listener watches for)');
});
