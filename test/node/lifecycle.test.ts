import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import t from 'tap';
import { until } from '../harness/until.ts';
import { LocalPostgres } from '../../devenv/postgres.ts';
import { LocalValkey } from '../../devenv/valkey.ts';
import type { NodeProcess } from '../../devenv/node-process.ts';
import { freshClusterName, freshDatabase } from '../harness/services.ts';
import { TEST_SECRETS, startTestNode } from '../harness/nodes.ts';

async function readyz(node: NodeProcess): Promise<{ status: number; body: any }> {
  try {
    return await node.readyz();
  } catch {
    return { status: 0, body: null };
  }
}

/** Polls /readyz until `want(status)` or the deadline; returns the last answer. */
async function waitForReadyz(node: NodeProcess, want: (status: number) => boolean, ms = 15_000) {
  let last = await readyz(node);
  // The caller asserts on the last answer, so running out of time is not an error here.
  await until(async () => want((last = await readyz(node)).status), ms, '/readyz', 100).catch(() => {});
  return last;
}

t.test('a node becomes ready, answers health checks, drains and exits 0 on SIGTERM', async (t) => {
  const postgresUrl = await freshDatabase(t);
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const node = await startTestNode(t, { postgresUrl, valkeyUrl, clusterName, config: { shutdown: { drainDelay: '1500ms' } } });
  await node.waitReady();
  const ready = await node.readyz();
  t.same(ready.body, { status: 'ready', ready: true, node: 'node-1', pid: node.pid, state: 'running', checks: { postgres: 'up', valkey: 'up', migrations: 'done', lease: 'held' } });
  const health = await fetch(`${node.adminUrl}/healthz`);
  t.equal(health.status, 200);
  t.same(await health.json(), { status: 'alive' });

  node.proc.signal('SIGTERM');
  const draining = await waitForReadyz(node, (s) => s === 503, 1500);
  t.equal(draining.status, 503, 'not ready while draining, so load balancers move away');
  t.match(draining.body, { status: 'not_ready', code: 'CLUSTER_ERR_NODE_NOT_READY', state: 'draining' });
  t.equal((await fetch(`${node.adminUrl}/healthz`)).status, 200, 'still alive while draining');
  const exit = await node.proc.exited;
  t.same(exit, { code: 0, signal: null }, 'clean exit');
  const log = readFileSync(node.logFile, 'utf8');
  t.match(log, /"to":"draining"/);
  t.match(log, /"msg":"node stopped"/);
  t.notMatch(log, TEST_SECRETS.clusterSecret, 'the cluster secret is never logged');
  t.notMatch(log, TEST_SECRETS.encryptionKey, 'the encryption key is never logged');
});

t.test('/readyz is 503 while PostgreSQL or Valkey is down and recovers when they return, without a restart', async (t) => {
  const pgServer = await LocalPostgres.start({ dir: t.testdir() + '-pg', fast: true });
  t.teardown(() => pgServer.stop());
  const vkServer = await LocalValkey.start({ dir: t.testdir() + '-vk' });
  t.teardown(() => vkServer.stop());
  // The password is ignored by the trust-auth test server; it must still never be logged.
  const postgresUrl = pgServer.url.replace('postgres@', 'postgres:pw-never-logged@');
  const node = await startTestNode(t, { postgresUrl, valkeyUrl: vkServer.url, clusterName: 'readyz' });
  await node.waitReady();
  const pid = node.pid;

  await pgServer.pause();
  let r = await waitForReadyz(node, (s) => s === 503);
  t.equal(r.status, 503, 'not ready without PostgreSQL');
  t.match(r.body, { state: 'running', checks: { postgres: 'down', valkey: 'up' } });
  await pgServer.resume();
  r = await waitForReadyz(node, (s) => s === 200);
  t.equal(r.status, 200, 'ready again once PostgreSQL is back');

  await vkServer.pause();
  r = await waitForReadyz(node, (s) => s === 503);
  t.equal(r.status, 503, 'not ready without Valkey');
  t.match(r.body, { checks: { postgres: 'up', valkey: 'down' } });
  await vkServer.resume();
  r = await waitForReadyz(node, (s) => s === 200);
  t.equal(r.status, 200, 'ready again once Valkey is back');

  t.equal(node.pid, pid, 'same process throughout');
  t.ok(node.proc.alive);
  t.notMatch(readFileSync(node.logFile, 'utf8'), 'pw-never-logged', 'the PostgreSQL password is never logged');
});

t.test('a node started while PostgreSQL is down waits, then migrates and becomes ready', async (t) => {
  const pgServer = await LocalPostgres.start({ dir: t.testdir() + '-pg', fast: true });
  t.teardown(() => pgServer.stop());
  await pgServer.pause();
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const node = await startTestNode(t, { postgresUrl: pgServer.url, valkeyUrl, clusterName });
  const waiting = await waitForReadyz(node, (s) => s === 503);
  t.match(waiting.body, { state: 'starting', checks: { postgres: 'down', migrations: 'pending' } });
  await new Promise((r) => setTimeout(r, 500));
  t.ok(node.proc.alive, 'still waiting, not crashed');
  await pgServer.resume();
  await node.waitReady(20_000);
  t.match((await node.readyz()).body, { checks: { migrations: 'done' } });
});

t.test('a node whose config is invalid refuses to start with the field named', async (t) => {
  const postgresUrl = await freshDatabase(t);
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const node = await startTestNode(t, { postgresUrl, valkeyUrl, clusterName, config: { lease: { ttl: 'forever' } } });
  const exit = await node.proc.exited;
  t.equal(exit.code, 2);
  t.match(readFileSync(node.logFile, 'utf8'), /CLUSTER_ERR_CONFIG_INVALID[\s\S]*lease\.ttl: "forever" is not a duration/);
});

t.test('a node whose ingress cannot listen fails its start, says why and exits 1', async (t) => {
  const postgresUrl = await freshDatabase(t);
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  // The HTTP address is taken: the ingress (on its own thread: the error crosses from it) cannot listen.
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  t.teardown(() => holder.close());
  const taken = `127.0.0.1:${(holder.address() as AddressInfo).port}`;
  const node = await startTestNode(t, { postgresUrl, valkeyUrl, clusterName, config: { ingress: { http: taken, thread: 'worker' } } });
  const exit = await node.proc.exited;
  t.equal(exit.code, 1, 'exit 1: not a node without its ingress');
  const log = readFileSync(node.logFile, 'utf8');
  t.match(log, new RegExp(`"msg":"node failed to start"`));
  t.match(log, new RegExp(`EADDRINUSE[^\\n]*${taken.replace(/\./g, '\\.')}`), 'the address in use is named');
});
