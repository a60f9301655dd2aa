// A node claims actors only while it hears announcements: newest-wins claims (a connector
// moving its site) stop the old copy by announcement, so a node claiming while its subscriber
// was away ran its copy on beside the new owner's (chaos: one site on two nodes for 250 ms,
// after a node's lease came back a second before its subscriber). Real Valkey and PostgreSQL;
// the subscriber is kept away by holding its reconnection.
import t from 'tap';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { Valkey } from '../../persistence/valkey.ts';
import { ownershipNode } from '../harness/ownership.ts';
import { freshClusterName, freshMigratedDb } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kills this client's subscriber connection (found by its local port) and waits until the client knows it. */
async function killSubscriber(v: Valkey) {
  const port = v.subscriber.stream.localPort;
  const line = ((await v.cmd.client('LIST')) as string).split('\n').find((l) => new RegExp(` addr=[^ ]+:${port} `).test(l));
  if (!line) throw new Error(`no client connection from port ${port}`);
  await v.cmd.client('KILL', 'ID', /\bid=(\d+)/.exec(line)![1]!);
  while (v.hearing) await sleep(10);
}

t.test('a claim waits while the node is deaf to announcements, and one taken meanwhile is not won', async (t) => {
  const { db } = await freshMigratedDb(t, 6);
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const [a, b] = await Promise.all(['a', 'b'].map((id) => ownershipNode(t, { id, db, clusterName, valkeyUrl })));
  t.ok((await a!.ownership.claim('site', ['s1'], { force: true })).has('s1'), 'a holds the site');
  // a's subscriber is killed and its reconnection held: a is deaf (its lease and commands work).
  const sub = a!.valkey.subscriber;
  const connect = sub.connect.bind(sub);
  let letGo!: () => void;
  const held = new Promise<void>((r) => (letGo = r));
  sub.connect = async () => (await held, connect());
  await killSubscriber(a!.valkey);

  // Like a node attaching the connections it kept through a fence: a claims the site again.
  let settled = false;
  const again = a!.ownership.claim('site', ['s1']).finally(() => (settled = true));
  await sleep(300);
  t.notOk(settled, 'the claim waits while a cannot hear another node take the site');
  t.equal((await b!.ownership.claim('site', ['s1'], { force: true })).get('s1'), 2, 'b takes the site meanwhile (its connector moved)');
  letGo();
  t.notOk((await again).has('s1'), 'once a hears again its claim finds the site taken: a does not run it beside b');
  t.equal((await a!.ownership.ownerOf('site', 's1', { fresh: true }))?.node, 'b');

  // Deaf for good: a claim fails as Valkey being unavailable would, after a command timeout.
  sub.connect = async () => (await new Promise<void>(() => {}), connect());
  await killSubscriber(a!.valkey);
  await t.rejects(a!.ownership.claim('probe', ['p1']), { code: 'CLUSTER_ERR_VALKEY_UNAVAILABLE' }, 'a deaf node claims nothing');
  sub.connect = connect;
  void sub.connect().catch(() => {});
});

t.test('a connection made again brings the others back at once, not after their backoff', async (t) => {
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const valkey = new Valkey({ url: new Secret(valkeyUrl), clusterName, connectTimeout: 1000, commandTimeout: 1000, logger });
  t.teardown(() => valkey.close());
  valkey.connect();
  await valkey.subscribe('ownership', () => {});
  while (!valkey.hearing) await sleep(10);
  // The subscriber as after a long outage: its next reconnection waits a second or two.
  (valkey.subscriber as unknown as { retryAttempts: number }).retryAttempts = 20;
  const started = Date.now();
  await killSubscriber(valkey);
  // The command connection drops too and, early in its own backoff, is back within 100 ms.
  const port = valkey.cmd.stream.localPort;
  const line = ((await valkey.leaseConnection.client('LIST')) as string).split('\n').find((l) => new RegExp(` addr=[^ ]+:${port} `).test(l))!;
  await valkey.leaseConnection.client('KILL', 'ID', /\bid=(\d+)/.exec(line)![1]!);
  while (!valkey.hearing && Date.now() - started < 5000) await sleep(10);
  const tookMs = Date.now() - started;
  t.ok(valkey.hearing, 'subscribed again');
  t.ok(tookMs < 800, `the subscriber came back with the command connection (${tookMs} ms; its own backoff was at least 1000 ms)`);
});
