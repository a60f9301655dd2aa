// A resource actor whose route names a site with no live owner reads it again (RECHECK_MS,
// then every RECHECK_STEADY_MS for as long as it stays so): a site's move announced while the
// actor could not hear it (its node rejoining after a fence) left 88 resources unrouted for
// 120 s with every site online; after a ladder that ended, one stayed so in a later storm.
import t from 'tap';
import { RECHECK_MS, RECHECK_QUIET_CAP_MS, RECHECK_QUIET_MS, RECHECK_STEADY_MS, resourceBehavior, type ResourceMsg, type ResourceState } from '../../actors/resource.ts';
import type { ActorContext } from '../../actors/runtime.ts';
import { createLogger } from '../../core/log.ts';

t.test('a route with a target on a site nobody holds is read again until the site has an owner', async (t) => {
  const owners = new Map<string, string>();
  const published: unknown[] = [];
  const behavior = resourceBehavior({
    db: undefined as never, // not read by a refresh
    publish: async (s) => (published.push(s.data), true),
    siteOwners: async () => new Map(owners),
    health: async () => new Map(),
  }, 'r1', 1);
  const sent: ResourceMsg[] = [];
  const ctx = { kind: 'resource', id: 'r1', epoch: 1, log: createLogger({ level: 'silent' }), self: (m: ResourceMsg) => sent.push(m), reply: () => {} } satisfies ActorContext<ResourceMsg>;
  const base = { resourceId: 'r1', orgId: 'o1', protocol: 'http' as const, hostname: 'app.example', port: null, tls: false, enabled: true, targets: [{ id: 't1', siteId: 's1', host: '10.0.0.5', port: 80, scheme: 'http' as const, enabled: true, weight: 1, healthy: true }] };
  t.equal(RECHECK_MS[0], 1000);

  let state: ResourceState = await behavior.receive({ base, published: undefined }, { type: 'refresh' }, ctx);
  t.match(published.at(-1), { owners: {} }, 'published with no owner for s1 (its move not heard yet)');
  await new Promise((r) => setTimeout(r, 1100));
  t.same(sent, [{ type: 'refresh' }], 'read again after a second, unasked');

  owners.set('s1', 'node-2');
  state = await behavior.receive(state, sent.shift()!, ctx);
  t.match(published.at(-1), { owners: { s1: 'node-2' } }, 'the recheck found the owner');
  await new Promise((r) => setTimeout(r, 1200));
  t.same(sent, [], 'nothing more once every site is owned');
  await behavior.stopped?.(state, ctx);
});

t.test('past the ladder, a route still naming no owner keeps being read, a minute apart', async (t) => {
  t.equal(RECHECK_STEADY_MS, 60_000);
  const owners = new Map<string, string>();
  const published: unknown[] = [];
  const behavior = resourceBehavior({
    db: undefined as never,
    publish: async (s) => (published.push(s.data), true),
    siteOwners: async () => new Map(owners),
    health: async () => new Map(),
    recheck: { ladderMs: [20, 20], steadyMs: 60 },
  }, 'r1', 1);
  const sent: ResourceMsg[] = [];
  const ctx = { kind: 'resource', id: 'r1', epoch: 1, log: createLogger({ level: 'silent' }), self: (m: ResourceMsg) => sent.push(m), reply: () => {} } satisfies ActorContext<ResourceMsg>;
  const base = { resourceId: 'r1', orgId: 'o1', protocol: 'http' as const, hostname: 'app.example', port: null, tls: false, enabled: true, targets: [{ id: 't1', siteId: 's1', host: '10.0.0.5', port: 80, scheme: 'http' as const, enabled: true, weight: 1, healthy: true }] };
  let state: ResourceState = await behavior.receive({ base, published: undefined }, { type: 'refresh' }, ctx);
  // Each read finds no owner; the actor keeps asking itself, well past the two-step ladder.
  for (let i = 0; i < 5; i++) {
    const deadline = Date.now() + 1000;
    while (sent.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    t.same(sent.splice(0), [{ type: 'refresh' }], `read again (${i + 1})`);
    state = await behavior.receive(state, { type: 'refresh' }, ctx);
  }
  owners.set('s1', 'node-2');
  await new Promise((r) => setTimeout(r, 100));
  state = await behavior.receive(state, sent.splice(0)[0]!, ctx);
  t.match(published.at(-1), { owners: { s1: 'node-2' } }, 'the site, back at last, is found');
  await new Promise((r) => setTimeout(r, 150));
  t.same(sent, [], 'and the reads stop');
  await behavior.stopped?.(state, ctx);
});

// In a reconnect storm the moves' own announcements recompute the routes: a read that falls
// due while sites are moving waits for them to go quiet (or for a cap).
t.test('a read that falls due while sites move waits for quiet, or for the cap', async (t) => {
  t.equal(RECHECK_QUIET_MS, 2000);
  t.equal(RECHECK_QUIET_CAP_MS, 30_000);
  let lastNews = Date.now();
  const published: unknown[] = [];
  const behavior = (capMs: number) => resourceBehavior({
    db: undefined as never,
    publish: async (s) => (published.push(s.data), true),
    siteOwners: async () => new Map(),
    health: async () => new Map(),
    quietForMs: () => Date.now() - lastNews,
    recheck: { ladderMs: [20], steadyMs: 60_000, quietMs: 150, quietCapMs: capMs },
  }, 'r1', 1);
  const base = { resourceId: 'r1', orgId: 'o1', protocol: 'http' as const, hostname: 'app.example', port: null, tls: false, enabled: true, targets: [{ id: 't1', siteId: 's1', host: '10.0.0.5', port: 80, scheme: 'http' as const, enabled: true, weight: 1, healthy: true }] };
  const sent: ResourceMsg[] = [];
  const ctx = { kind: 'resource', id: 'r1', epoch: 1, log: createLogger({ level: 'silent' }), self: (m: ResourceMsg) => sent.push(m), reply: () => {} } satisfies ActorContext<ResourceMsg>;

  const moving = setInterval(() => (lastNews = Date.now()), 20); // a site moves every 20 ms
  const b1 = behavior(60_000);
  let state: ResourceState = await b1.receive({ base, published: undefined }, { type: 'refresh' }, ctx);
  await new Promise((r) => setTimeout(r, 400));
  t.same(sent, [], 'due after 20 ms, but sites keep moving: not read');
  clearInterval(moving);
  const quietFrom = Date.now();
  while (sent.length === 0 && Date.now() - quietFrom < 2000) await new Promise((r) => setTimeout(r, 5));
  t.same(sent, [{ type: 'refresh' }], 'read once the moves went quiet');
  t.ok(Date.now() - quietFrom >= 100, 'not before the quiet period');
  await b1.stopped?.(state, ctx);

  sent.length = 0;
  const again = setInterval(() => (lastNews = Date.now()), 20);
  t.teardown(() => clearInterval(again));
  const b2 = behavior(200);
  state = await b2.receive({ base, published: undefined }, { type: 'refresh' }, ctx);
  const started = Date.now();
  while (sent.length === 0 && Date.now() - started < 2000) await new Promise((r) => setTimeout(r, 5));
  t.same(sent, [{ type: 'refresh' }], 'sites never quiet: read at the cap');
  t.ok(Date.now() - started >= 200, `at the cap, ${Date.now() - started} ms`);
  await b2.stopped?.(state, ctx);
});
