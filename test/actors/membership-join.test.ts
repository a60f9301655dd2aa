// Joining must survive the connection to Valkey dropping half way (a partition healing, a
// reconnect): a node that took its lease but failed to write its record once was left
// "joining" for good, holding no lease and running nothing (seen under `cluster chaos
// --modes isolate` with --netns).
import { once } from 'node:events';
import t, { type Test } from 'tap';
import { systemClock } from '../../core/clock.ts';
import { ClusterError } from '../../core/errors.ts';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { Valkey } from '../../persistence/valkey.ts';
import { Membership } from '../../supervisors/membership.ts';
import { freshClusterName } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });

/** A Valkey client on a fresh key prefix, closed after the test. */
async function connected(t: Test): Promise<Valkey> {
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const valkey = new Valkey({ url: new Secret(valkeyUrl), clusterName, connectTimeout: 1000, commandTimeout: 1000, logger });
  valkey.connect();
  await once(valkey.cmd, 'ready');
  t.teardown(() => valkey.close());
  return valkey;
}

t.test('a join whose record write fails once is retried until the node is a member', async (t) => {
  const valkey = await connected(t);
  // The second call of the join (the record and members write, after the lease) fails once, as a dropped connection would.
  let calls = 0;
  const flaky = new Proxy(valkey, {
    get(target, prop) {
      if (prop === 'call') {
        return async (op: Parameters<Valkey['call']>[0]) => {
          if (++calls === 2) throw new ClusterError('CLUSTER_ERR_VALKEY_UNAVAILABLE', 'valkey unavailable: Stream isn\'t writeable', {});
          return target.call(op);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const membership = new Membership({ valkey: flaky, clock: systemClock, logger, nodeId: 'a', admin: '127.0.0.1:1', peer: '127.0.0.1:1', ttlMs: 3000, renewEveryMs: 1000 });
  const started = membership.start();
  t.teardown(() => membership.leave());
  await Promise.race([started, new Promise((_, reject) => setTimeout(() => reject(new Error('join did not finish in 5 s')), 5000))]);
  t.equal(membership.state, 'joined', 'the node joined');
  t.ok(membership.healthy, 'and holds its lease');
  t.ok(calls >= 3, 'after the failed write was retried');
  t.same(await valkey.cmd.smembers(valkey.keys.members), ['a'], 'its record is in the members set');
});

t.test('a fenced node rejoins at once though a late renewal brought its old lease back, not a ttl later', async (t) => {
  const valkey = await connected(t);
  // `cut`: every call fails, as with a frozen Valkey (the lease cannot be renewed or dropped).
  const link = { cut: false };
  const cuttable = new Proxy(valkey, {
    get(target, prop) {
      if (prop === 'call') {
        return async (op: Parameters<Valkey['call']>[0], ...rest: unknown[]) => {
          if (link.cut) throw new ClusterError('CLUSTER_ERR_VALKEY_UNAVAILABLE', 'valkey unavailable: Command timed out', {});
          return (target.call as (...a: unknown[]) => Promise<unknown>)(op, ...rest);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const membership = new Membership({ valkey: cuttable, clock: systemClock, logger, nodeId: 'a', admin: '127.0.0.1:1', peer: '127.0.0.1:1', ttlMs: 3000, renewEveryMs: 1000 });
  await membership.start();
  t.teardown(() => membership.leave());
  const old = membership.incarnation;
  link.cut = true;
  await once(membership, 'fenced');
  // The renewal queued in the frozen Valkey runs as it thaws: the old lease is back, for a ttl of 20 s.
  await valkey.cmd.set(valkey.keys.lease('a'), old, 'PX', 20_000);
  link.cut = false;
  const rejoined = once(membership, 'joined');
  await Promise.race([rejoined, new Promise((_, reject) => setTimeout(() => reject(new Error('not rejoined within 5 s')), 5000))]);
  t.not(membership.incarnation, old, 'rejoined under a new incarnation');
  t.equal(await valkey.cmd.get(valkey.keys.lease('a')), membership.incarnation, 'which holds the lease now');
});

t.test('a lease held by another process is still waited for', async (t) => {
  const valkey = await connected(t);
  await valkey.cmd.set(valkey.keys.lease('a'), 'another-process', 'PX', 1500);
  const membership = new Membership({ valkey, clock: systemClock, logger, nodeId: 'a', admin: '127.0.0.1:1', peer: '127.0.0.1:1', ttlMs: 3000, renewEveryMs: 1000 });
  const t0 = Date.now();
  await membership.start();
  t.teardown(() => membership.leave());
  t.ok(Date.now() - t0 >= 1000, `joined only once that lease ran out (after ${Date.now() - t0} ms)`);
});
