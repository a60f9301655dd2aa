// A node whose own process stalls past its lease margin (a long GC, CPU starvation) must not
// fence while Valkey still holds its lease: at 10,000 sites on two cores, nodes stalled 1.4-2.9 s,
// fenced, restarted every actor (which stalled them again) and never came up. It renews first,
// and fences when the lease is gone, or when no renewal is confirmed before the lease could end
// (ttl from the last renewal sent, less 150 ms): never later, or a peer could have taken its
// actors meanwhile (an earlier version waited a renewal interval, and `cluster chaos` found an
// actor on two nodes). "Confirmed" counts every answer that has arrived by the time it decides:
// a renewal answered during a second stall proves the lease held (storm survivors fenced with
// the answer unread). A node that did not stall but hears nothing from Valkey still fences at
// its margin, as before.
import { once } from 'node:events';
import t, { type Test } from 'tap';
import { ClusterError } from '../../core/errors.ts';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { Valkey } from '../../persistence/valkey.ts';
import { Membership } from '../../supervisors/membership.ts';
import { SimulatedClock } from '../harness/clock.ts';
import { freshClusterName } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });
const settle = () => new Promise((r) => setTimeout(r, 150)); // real time for Valkey's replies
const afterIo = () => new Promise((r) => setImmediate(r));

async function joined(t: Pick<Test, 'teardown' | 'equal'>) {
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const valkey = new Valkey({ url: new Secret(valkeyUrl), clusterName, connectTimeout: 1000, commandTimeout: 1000, logger });
  valkey.connect();
  await once(valkey.cmd, 'ready');
  t.teardown(() => valkey.close());
  // `silent` makes every call fail fast, as an unreachable Valkey does; `held` keeps answers
  // back until released, as a process that stalls before reading them does.
  const link: { silent: boolean; held?: Promise<void> } = { silent: false };
  const proxied = new Proxy(valkey, {
    get(target, prop) {
      if (prop === 'call') {
        return async (...args: Parameters<Valkey['call']>) => {
          if (link.silent) throw new ClusterError('CLUSTER_ERR_VALKEY_UNAVAILABLE', 'valkey unavailable: timed out', {});
          const answer = await target.call(...args);
          if (link.held) await link.held;
          return answer;
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const clock = new SimulatedClock({ start: 1_000_000, sleepAdvances: false });
  const membership = new Membership({ valkey: proxied, clock, logger, nodeId: 'a', admin: '127.0.0.1:1', peer: '127.0.0.1:1', ttlMs: 3000, renewEveryMs: 1000 });
  const events: string[] = [];
  membership.on('fenced', () => events.push('fenced'));
  membership.on('stalled', (outcome: string) => events.push(`stalled:${outcome}`));
  await membership.start();
  t.teardown(async () => {
    link.silent = false;
    await membership.leave();
  });
  t.equal(membership.state, 'joined');
  return { valkey, clock, membership, events, link };
}

/** The process does not run for `ms`: time jumps, then the overdue timers fire at once. */
function stall(clock: SimulatedClock, ms: number) {
  clock.t += ms;
  clock.advance(0);
}

t.test('a stall past the margin with the lease still held in Valkey: no fence', async (t) => {
  const { clock, membership, events } = await joined(t);
  stall(clock, 2700); // past the 2.5 s margin, inside Valkey's 3 s lease less the 150 ms slack
  t.notOk(membership.healthy, 'unhealthy while it asks: no claims, no deliveries');
  const delivery = membership.whenHealthy(1000);
  await settle();
  t.equal(await delivery, true, 'a delivery that arrived meanwhile waited, and goes ahead');
  clock.advance(200);
  t.equal(membership.state, 'joined', 'still the same member');
  t.ok(membership.healthy, 'healthy again once Valkey confirmed the lease');
  t.same(events, ['stalled:confirmed'], 'counted as a stall survived, never fenced');
});

t.test('a stall during which the lease was lost: fences', async (t) => {
  const { valkey, clock, membership, events } = await joined(t);
  const before = membership.incarnation;
  await valkey.cmd.del(valkey.keys.lease('a')); // expired, or a peer declared this node dead
  stall(clock, 2700);
  const delivery = membership.whenHealthy(1000);
  await settle();
  t.equal(await delivery, false, 'a delivery that arrived meanwhile is refused');
  t.not(membership.incarnation, before, 'fenced, and rejoined as a new incarnation');
  t.same(events.slice(0, 2), ['stalled:fenced', 'fenced']);
});

t.test('a stall while Valkey cannot be reached: fences before the lease could end', async (t) => {
  const { clock, membership, events, link } = await joined(t);
  link.silent = true;
  stall(clock, 2700);
  await settle();
  t.equal(membership.state, 'joined', 'waits for the answer while the lease certainly holds');
  t.notOk(membership.healthy, 'and takes no claims or deliveries meanwhile');
  clock.advance(149);
  await afterIo();
  t.equal(membership.state, 'joined');
  clock.advance(1);
  await afterIo();
  t.equal(membership.state, 'fenced', 'fenced 150 ms before the 3 s lease from the last renewal could end');
  t.same(events, ['stalled:fenced', 'fenced']);
});

t.test('a stall that ends where the lease could have ended: fences at once, before the turn\'s I/O', async (t) => {
  const { clock, membership, events, link } = await joined(t);
  let release = () => {};
  link.held = new Promise((r) => (release = r));
  stall(clock, 2900); // Valkey may drop the lease within 100 ms
  // No renewal sent before the stall can cover the lease: nothing in the socket can save it,
  // and a thawed node reading its backlog first would answer meanwhile as the holder of
  // actors a peer may already run (`cluster chaos` saw them on two nodes).
  t.equal(membership.state, 'fenced', 'fenced in the timers that found the stall, before any I/O is read');
  t.same(events, ['stalled:fenced', 'fenced']);
  release();
});

t.test('a renewal answered during a second stall, past the first lease\'s end: it held, no fence', async (t) => {
  const { clock, membership, events, link } = await joined(t);
  let release = () => {};
  link.held = new Promise((r) => (release = r));
  stall(clock, 2700); // the renewal goes out now; its answer waits
  await settle(); // Valkey has answered; this process has not read it yet
  clock.t += 400; // a second stall, across the 2850 ms point where the first lease could end
  link.held = undefined;
  release();
  await afterIo();
  clock.advance(0); // the overdue timers, then this turn's I/O
  await afterIo();
  t.equal(membership.state, 'joined', 'Valkey renewed the lease before it ran out: it never lapsed');
  t.ok(membership.healthy);
  t.same(events, ['stalled:confirmed']);
});

t.test('no stall but no renewal answered for the margin: fences at the margin, as before', async (t) => {
  const { clock, membership, events, link } = await joined(t);
  link.silent = true;
  for (let elapsed = 0; elapsed < 2400; elapsed += 200) {
    clock.advance(200);
    await settle();
  }
  t.equal(membership.state, 'joined', 'inside the margin');
  clock.advance(200);
  clock.advance(200);
  t.equal(membership.state, 'fenced', 'fenced at 2.5 s, before the lease can run out');
  t.same(events, ['fenced'], 'not a stall: the watchdog ran on time');
});
