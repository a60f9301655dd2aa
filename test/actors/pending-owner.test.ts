// A force claim is two steps (taken in Valkey with epoch 0, then confirmed with an epoch from
// PostgreSQL). Routes built between them named no owner for the site, and every node answered
// 503 for those milliseconds (seen when a WireGuard site's holder drained). Routing counts the
// claim in progress; fencing and delivery never do.
import t from 'tap';
import { systemClock } from '../../core/clock.ts';
import { createLogger } from '../../core/log.ts';
import { Membership } from '../../supervisors/membership.ts';
import { OwnershipRegistry } from '../../supervisors/ownership.ts';
import { freshMigratedDb, freshValkey } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });

t.test('a claim in progress is an owner for routing, not for anything else', async (t) => {
  const { db } = await freshMigratedDb(t);
  const valkey = await freshValkey(t);
  const membership = new Membership({ valkey, clock: systemClock, logger, nodeId: 'a', admin: '127.0.0.1:1', peer: '127.0.0.1:1', ttlMs: 3000, renewEveryMs: 1000 });
  await membership.start();
  t.teardown(() => membership.leave());
  const ownership = new OwnershipRegistry({ valkey, db, membership });
  // The state between the two steps of a claim by this (live) node.
  await valkey.cmd.set(valkey.keys.owner('site', 's1'), JSON.stringify({ node: 'a', inc: membership.incarnation, epoch: '0' }));
  t.same([...(await ownership.ownersOf('site', ['s1'])).keys()], [], 'not an owner for fencing and delivery');
  t.same([...(await ownership.ownersOf('site', ['s1'], { pending: true }))].map(([id, o]) => [id, o.node]), [['s1', 'a']], 'the claimer, for routing');
  // A claim in progress by an incarnation that is gone names nobody, even for routing.
  await valkey.cmd.set(valkey.keys.owner('site', 's2'), JSON.stringify({ node: 'a', inc: 'gone', epoch: '0' }));
  t.same([...(await ownership.ownersOf('site', ['s2'], { pending: true })).keys()], [], 'a dead claimer is no owner');
  // Confirmed: an owner either way.
  const won = await ownership.claim('site', ['s3'], { force: true });
  t.ok(won.has('s3'));
  t.same([...(await ownership.ownersOf('site', ['s3'])).keys()], ['s3'], 'a confirmed claim is an owner');
});
