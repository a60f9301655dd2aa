// Metrics are served on their own listener, never on the admin port, and behind a Bearer
// token when one is configured.
import t from 'tap';
import { Counter, Registry } from 'prom-client';
import { Secret } from '../../core/secret.ts';
import { listenMetrics } from '../../gateways/admin/metrics-server.ts';
import { adminApp } from '../harness/admin-app.ts';
import { nodeAddress } from '../harness/nodes.ts';

t.test('the metrics listener serves the registry, and asks for the token when one is set', async (t) => {
  const registry = new Registry();
  new Counter({ name: 'cluster_test_total', help: 'a test counter', registers: [registry] }).inc(3);
  const open = await listenMetrics(registry, { host: nodeAddress(), port: 9464 }, undefined);
  t.teardown(() => open.close());
  const host = nodeAddress();
  const guarded = await listenMetrics(registry, { host, port: 9464 }, new Secret('metrics-token-0123456789'));
  t.teardown(() => guarded.close());
  const url = `http://${host}:9464/metrics`;
  t.equal((await fetch(url)).status, 401, 'no token');
  t.equal((await fetch(url, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401, 'a wrong token');
  const ok = await fetch(url, { headers: { authorization: 'Bearer metrics-token-0123456789' } });
  t.equal(ok.status, 200);
  t.match(await ok.text(), /cluster_test_total 3/);
  t.equal((await fetch(`http://${host}:9464/other`)).status, 404);
});

t.test('the admin port (behind the load balancer) serves no metrics', async (t) => {
  const { call } = await adminApp(t);
  t.equal((await call('GET', '/metrics')).status, 404);
});
