import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { allowedTarget } from '../../connector/data-plane.ts';
import { pickWeighted } from '../../gateways/ingress/routes.ts';
import { issueConnectorToken, verifyConnectorToken } from '../../gateways/connector/token.ts';
import { Secret } from '../../core/secret.ts';

t.test('a connector dials only targets configured for its site, at their configured address', async (t) => {
  const targets = [
    { id: '00000000-0000-4000-8000-000000000001', host: '10.0.0.5', port: 80, scheme: 'http' as const, enabled: true, healthCheck: {} },
    { id: '00000000-0000-4000-8000-000000000002', host: '10.0.0.6', port: 53, scheme: 'udp' as const, enabled: true, healthCheck: {} },
    { id: '00000000-0000-4000-8000-000000000003', host: '10.0.0.7', port: 22, scheme: 'tcp' as const, enabled: false, healthCheck: {} },
  ];
  const h = (id: string, authority: string, protocol = 'tcp') => ({ ':method': 'CONNECT', ':authority': authority, 'x-cluster-target': id, 'x-cluster-protocol': protocol });
  t.equal(allowedTarget(targets, h(targets[0]!.id, '10.0.0.5:80'))?.id, targets[0]!.id);
  t.equal(allowedTarget(targets, h(targets[0]!.id, '169.254.169.254:80')), undefined, 'a configured id with another address is refused');
  t.equal(allowedTarget(targets, h('00000000-0000-4000-8000-00000000000f', '10.0.0.5:80')), undefined, 'an unknown target (another site\'s) is refused');
  t.equal(allowedTarget(targets, h(targets[2]!.id, '10.0.0.7:22')), undefined, 'a disabled target is refused');
  t.equal(allowedTarget(targets, h(targets[1]!.id, '10.0.0.6:53', 'tcp')), undefined, 'a UDP target is not dialled over TCP');
  t.equal(allowedTarget(targets, h(targets[1]!.id, '10.0.0.6:53', 'udp'))?.id, targets[1]!.id);
  t.equal(allowedTarget(targets, { ...h(targets[0]!.id, '10.0.0.5:80'), ':method': 'GET' }), undefined);
});

t.test('connector tokens are bound to the site and its secret generation, and expire', async (t) => {
  const secret = new Secret('cluster-secret-for-token-tests-0123456789');
  const site = '11111111-2222-4333-8444-555555555555';
  const token = issueConnectorToken(secret, site, 3, 60_000, 1_000_000);
  t.same(verifyConnectorToken(secret, token, 1_000_001), { siteId: site, generation: 3 });
  t.equal(verifyConnectorToken(secret, token, 1_060_001), undefined, 'expired');
  t.equal(verifyConnectorToken(new Secret('another-cluster-secret-0123456789abcdef'), token, 1_000_001), undefined, 'another cluster');
  const [body, sig] = token.split('.');
  const forged = Buffer.from(Buffer.from(body!, 'base64url').toString().replace('1', '9')).toString('base64url');
  t.equal(verifyConnectorToken(secret, `${forged}.${sig}`, 1_000_001), undefined, 'a changed body fails');
  const newer = Buffer.from(Buffer.from(body!, 'base64url').toString().replace('.3.', '.4.')).toString('base64url');
  t.equal(verifyConnectorToken(secret, `${newer}.${sig}`, 1_000_001), undefined, 'so does a changed generation');
});

t.test('targets are chosen by weight', async (t) => {
  const items = [{ id: 'a', weight: 1 }, { id: 'b', weight: 3 }];
  let seq = 0;
  const rnd = () => [0.1, 0.3, 0.6, 0.9][seq++ % 4]!;
  t.same(Array.from({ length: 4 }, () => pickWeighted(items, rnd)!.id), ['a', 'b', 'b', 'b']);
  t.equal(pickWeighted([]), undefined);
});

t.test('the connector refuses a bad command line before it dials anything', async (t) => {
  const entry = fileURLToPath(new URL('../../bin/cluster-connector.mjs', import.meta.url));
  const run = (...args: string[]) => spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, CLUSTER_CONNECTOR_ENDPOINTS: '', CLUSTER_CONNECTOR_ID: '', CLUSTER_CONNECTOR_SECRET: '' } });
  const base = ['--endpoint', 'http://127.0.0.1:1', '--id', 'site', '--secret', 'x'];
  for (const bad of ['10', '1.5e3x', '999999']) {
    const r = run(...base, '--silent-after', bad);
    t.equal(r.status, 2, `--silent-after ${bad} exits 2`);
    t.match(r.stderr, /invalid --silent-after .*milliseconds from 1500 to 60000/);
  }
  const ftp = run('--endpoint', 'ftp://x', '--id', 'site', '--secret', 'x');
  t.equal(ftp.status, 2);
  t.match(ftp.stderr, /invalid endpoint "ftp:\/\/x"/);
  t.match(run('--id', 'site').stderr, /^usage: cluster-connector/);
});
