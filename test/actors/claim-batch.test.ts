// A claim batch (many sites claimed in the same round trips) where one actor will not start:
// the rest of the batch still starts, and the one that failed is not left owned by this node.
import t from 'tap';
import { ActorSystem, type Behavior } from '../../actors/runtime.ts';
import { systemClock } from '../../core/clock.ts';
import { createLogger } from '../../core/log.ts';
import { ActorHost } from '../../supervisors/actor-host.ts';
import { Membership } from '../../supervisors/membership.ts';
import { createMetrics } from '../../supervisors/metrics.ts';
import { OwnershipRegistry } from '../../supervisors/ownership.ts';
import type { PeerLink } from '../../gateways/peer/link.ts';
import { freshMigratedDb, freshValkey } from '../harness/services.ts';
import { until } from '../harness/until.ts';

const logger = createLogger({ level: 'silent' });

t.test('one claimed actor that will not start fails alone: the rest of its batch runs, and its claim is given up', async (t) => {
  const { db } = await freshMigratedDb(t, 4);
  const valkey = await freshValkey(t);
  const membership = new Membership({ valkey, clock: systemClock, logger, nodeId: 'a', admin: '127.0.0.1:1', peer: '127.0.0.1:1', ttlMs: 3000, renewEveryMs: 1000 });
  await membership.start();
  const ownership = new OwnershipRegistry({ valkey, db, membership });
  await ownership.start();
  const system = new ActorSystem({ logger });
  const metrics = createMetrics({ kinds: () => ['site'], actorCount: (kind) => system.count(kind), leaseHealthy: () => true, leaseRemainingMs: () => 3000, liveNodes: () => 1, dependencies: () => ({ postgres: true, valkey: true }), heapLiveRatio: () => 0 });
  const peer = { sync() {} } as unknown as PeerLink;
  const host = new ActorHost({ system, membership, ownership, peer, metrics, clock: systemClock, logger, handoffTimeoutMs: 1000, reconcileEveryMs: 60_000 });
  t.teardown(async () => {
    await system.shutdown();
    await ownership.stop();
    await membership.leave();
  });

  // A site whose state cannot be built here (its behaviour throws), and one whose stop is slow.
  const slowStop = { ms: 0 };
  host.register({
    kind: 'site',
    placement: 'explicit',
    behavior(id): Behavior<object, any> {
      if (id === 'broken') throw new Error('cannot build this site');
      return { init: async () => ({}), receive: (s) => s, stopped: () => new Promise((r) => setTimeout(r, slowStop.ms)) };
    },
  });

  // Claimed in one turn, so in one batch, the broken one in the middle.
  const ids = ['s1', 's2', 'broken', 's3', 's4'];
  const results = await Promise.allSettled(ids.map((id) => host.claimHere('site', id)));
  const outcome = Object.fromEntries(ids.map((id, i) => [id, results[i]!.status]));
  t.same(outcome, { s1: 'fulfilled', s2: 'fulfilled', broken: 'rejected', s3: 'fulfilled', s4: 'fulfilled' }, 'only the broken site fails');
  for (const id of ['s1', 's2', 's3', 's4']) t.ok(host.hasLocal('site', id), `${id} runs here`);
  t.notOk(host.hasLocal('site', 'broken'), 'the broken site does not run here');
  await until(async () => (await ownership.ownerOf('site', 'broken', { fresh: true })) === undefined, 3000);
  t.pass('no owner is named for the site that did not start');
  t.equal((await ownership.ownerOf('site', 's3', { fresh: true }))?.node, 'a', 'the others are owned here');

  // A copy still stopping here (its connector left and came back at once) does not fail the
  // batch it is claimed in again: it stops, then starts anew, and the rest start meanwhile.
  slowStop.ms = 300;
  const stopping = system.get('site', 's1')!.stop();
  const again = await Promise.allSettled([host.claimHere('site', 's1'), host.claimHere('site', 's5')]);
  t.same(again.map((r) => r.status), ['fulfilled', 'fulfilled'], 'both claims of the batch hold');
  await stopping;
  t.ok(host.hasLocal('site', 's1') && !system.get('site', 's1')!.stopping, 's1 runs again, a new copy');
  t.ok(host.hasLocal('site', 's5'), 's5, claimed with it, runs');
  t.equal((await ownership.ownerOf('site', 's1', { fresh: true }))?.node, 'a', 's1 is owned here');
});
