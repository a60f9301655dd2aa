// A domain belongs to one org and serves nothing until its org proves control. NSD plays the
// parent zone's server (standing in for the recursive resolver operators configure):
// one domain proves itself with the TXT token, one by delegation, one not at all.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startNsd } from '../../devenv/nsd.ts';
import { call, startApiCluster } from '../harness/api.ts';
import { dig } from '../harness/dig.ts';
import { nodeAddress } from '../harness/nodes.ts';
import { until } from '../harness/until.ts';

t.test('cross-org names are refused, and pending domains serve nothing until proven', async (t) => {
  const nsdIp = nodeAddress();
  const ips = [nodeAddress(), nodeAddress()];
  const c = await startApiCluster(t, 2, {}, (i) => ({
    ingress: { http: `${ips[i]}:80`, https: `${ips[i]}:443`, publicAddresses: [ips[i]] },
    dns: { bind: `${ips[i]}:53`, verifyResolvers: [`${nsdIp}:53`], verifyEvery: '500ms' },
  }));
  const cookie = c.adminCookie;
  const org = async (slug: string) => `/api/v1/orgs/${(await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug, name: slug } })).body.id}`;
  const a = await org('alpha');
  const b = await org('beta');
  const add = (base: string, name: string) => call(c.lb, 'POST', `${base}/domains`, { cookie, body: { name } });

  const txtDomain = (await add(a, 'txt.verify.test')).body;
  const delegated = (await add(a, 'delegated.verify.test')).body;
  const unproven = (await add(a, 'nothing.verify.test')).body;
  t.match(txtDomain, { verification: { status: 'pending', txt: { name: '_cluster-challenge.txt.verify.test', value: /^[A-Za-z0-9_-]{20,}$/ } } }, 'a new domain is pending, with the token to publish');
  await call(c.lb, 'POST', `${a}/resources`, { cookie, body: { name: 'app', protocol: 'http', hostname: 'app.nothing.verify.test' } });
  await call(c.lb, 'POST', `${a}/resources`, { cookie, body: { name: 'web', protocol: 'http', hostname: 'web.txt.verify.test' } });

  // Another org cannot take a name at, above or below alpha's.
  for (const name of ['txt.verify.test', 'verify.test', 'login.nothing.verify.test', 'app.nothing.verify.test']) {
    t.match(await add(b, name), { status: 409, body: { code: 'CLUSTER_ERR_API_CONFLICT', field: 'name' } }, `${name} is refused for another org`);
  }
  t.equal((await add(b, 'beta.test')).status, 201, 'a name of its own is fine');
  t.equal((await add(a, 'deeper.nothing.verify.test')).status, 201, 'the owning org may nest its own');

  // Pending: the zone serves its name servers only, no addresses, and no certificate is ordered.
  await until(async () => (await dig(ips[0]!, 'nothing.verify.test', 'NS')).short.length === 2, 15_000, 'the pending zone\'s name servers');
  t.same((await dig(ips[0]!, 'app.nothing.verify.test', 'A')).short, [], 'no address for a pending domain\'s resource');
  t.match(await call(c.lb, 'POST', `${a}/domains/${unproven.id}/verify`, { cookie }), { status: 200, body: { verification: { status: 'pending' } } }, 'no proof yet');

  // The parent zone (NSD): the TXT token for one, a delegation to the cluster for the other.
  const dir = mkdtempSync(join(tmpdir(), 'nsd-verify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const zone = [
    '$ORIGIN verify.test.', '$TTL 60',
    '@ IN SOA ns.verify.test. hostmaster.verify.test. 1 3600 600 86400 60',
    '@ IN NS ns.verify.test.', `ns IN A ${nsdIp}`,
    `_cluster-challenge.txt IN TXT "${txtDomain.verification.txt.value}"`,
    'delegated IN NS ns-node-1.delegated.verify.test.', `ns-node-1.delegated IN A ${ips[0]}`,
    '_cluster-challenge.nothing IN TXT "not-the-token"',
    '',
  ].join('\n');
  const nsd = await startNsd({ dir, ip: nsdIp, zones: [{ name: 'verify.test', text: zone }] });
  t.teardown(() => nsd.stop('SIGTERM', 3000));

  const status = async (id: string) => (await call(c.lb, 'GET', `${a}/domains/${id}`, { cookie })).body.verification;
  t.match(await until(async () => ((await status(txtDomain.id)).status === 'verified' ? status(txtDomain.id) : undefined), 20_000, 'the TXT proof'), { status: 'verified', verifiedBy: 'txt' });
  t.match(await until(async () => ((await status(delegated.id)).status === 'verified' ? status(delegated.id) : undefined), 20_000, 'the delegation'), { status: 'verified', verifiedBy: 'delegation' });
  const served = await until(async () => (await dig(ips[1]!, 'web.txt.verify.test', 'A')).short.sort().join(',') || undefined, 15_000, 'the verified zone\'s records');
  t.equal(served, [...ips].sort().join(','), 'once verified, the zone serves its resources (no tunnel yet: every node)');
  t.match(await status(unproven.id), { status: 'pending' }, 'a wrong token proves nothing');

  // A server admin may mark a domain verified by hand.
  t.match(await call(c.lb, 'POST', `${a}/domains/${unproven.id}/verify`, { cookie, body: { force: true } }), { status: 200, body: { verification: { status: 'verified', verifiedBy: 'admin' } } });
});
