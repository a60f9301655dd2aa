import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import t from 'tap';
import { compileConfig, envName, loadConfig, redactConfig } from '../../cluster.config.ts';
import { ClusterError, isClusterError } from '../../core/errors.ts';
import { CLUSTER_ENTRY } from '../../devenv/node-process.ts';

const CLUSTER_SECRET = 'c1uster-secret-that-must-never-be-printed-xyz';
const KEY = randomBytes(32).toString('base64');
const PG_PASSWORD = 'pg-pass-never-printed';

const valid = () => ({
  nodeId: 'node-a',
  clusterSecret: CLUSTER_SECRET,
  encryptionKey: KEY,
  postgres: { url: `postgres://app:${PG_PASSWORD}@127.0.0.1:5432/cluster` },
  valkey: { url: 'redis://127.0.0.1:6379' },
  peer: { advertise: '10.1.2.3:7946' },
});

function problemsOf(fn: () => unknown): Array<{ field: string; problem: string; expected: string }> {
  try {
    fn();
  } catch (err) {
    if (isClusterError(err, 'CLUSTER_ERR_CONFIG_INVALID')) return err.fields.problems;
    throw err;
  }
  throw new Error('expected CLUSTER_ERR_CONFIG_INVALID');
}

t.test('a valid config compiles with documented defaults, durations in milliseconds, frozen', async (t) => {
  const c = compileConfig({ ...valid(), lease: { ttl: '4s', renewEvery: 1500 } });
  t.equal(c.lease.ttl, 4000);
  t.equal(c.lease.renewEvery, 1500);
  t.equal(c.clusterName, 'cluster');
  t.same(c.admin.bind, { host: '0.0.0.0', port: 8080 });
  t.same(c.dns.bind, { host: '0.0.0.0', port: 53 });
  t.equal(c.postgres.statementTimeout, 10_000);
  t.equal(c.encryptionKey.reveal().length, 32);
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.lease), 'frozen');
  t.throws(() => ((c as any).lease.ttl = 1));
});

t.test('bad values are rejected, each naming its field, the problem and the expected form', async (t) => {
  const problems = problemsOf(() =>
    compileConfig({
      ...valid(),
      lease: { ttl: '3x' },
      admin: { bind: 'localhost' },
      postgres: { url: 'mysql://db/x' },
      dns: { caaIssuers: ['not a domain'] },
      wireguard: { driver: 'kernel', network: '100.89.0.0/31', mtu: 576, endpoint: 'nowhere' },
      log: { level: 'loud' },
      leese: { ttl: '3s' },
    }),
  );
  const byField = new Map(problems.map((p) => [p.field, p]));
  t.match(byField.get('lease.ttl'), { problem: /"3x" is not a duration/, expected: /duration such as/ });
  t.match(byField.get('admin.bind'), { problem: /not host:port/, expected: /host:port/ });
  t.match(byField.get('postgres.url'), { problem: /unsupported scheme/, expected: /postgres:/ });
  t.match(byField.get('dns.caaIssuers'), { problem: /not a domain name/ });
  t.match(byField.get('wireguard.driver'), { expected: /"auto", "netlink", "uapi"/ });
  t.match(byField.get('wireguard.network'), { expected: /IPv4 network with a prefix of \/8 to \/24/ });
  t.match(byField.get('wireguard.mtu'), { problem: /576/ });
  t.match(byField.get('wireguard.endpoint'), { expected: /host:port/ });
  t.match(byField.get('log.level'), { problem: /"loud"/ });
  t.match(byField.get('leese'), { problem: /not a known field/ });
  t.equal(problems.length, 10, 'every bad field is reported at once');
});

t.test('missing required fields name the field and its environment variable', async (t) => {
  const problems = problemsOf(() => compileConfig({ nodeId: 'x' }));
  t.same(problems.map((p) => p.field).sort(), ['clusterSecret', 'encryptionKey', 'postgres.url', 'valkey.url']);
  t.match(problems.find((p) => p.field === 'postgres.url'), { problem: 'is required', expected: /CLUSTER_POSTGRES_URL/ });
});

t.test('a node listening on a wildcard peer address must say how peers reach it', async (t) => {
  const { peer: _, ...noPeer } = valid();
  t.match(problemsOf(() => compileConfig(noPeer)), [{ field: 'peer.advertise', expected: /host:port other nodes dial/ }]);
  t.same(compileConfig({ ...noPeer, ingress: { publicAddresses: ['192.0.2.7'] } }).peer.advertise, { host: '192.0.2.7', port: 7946 });
  t.same(compileConfig({ ...noPeer, peer: { bind: '10.0.0.9:7000' } }).peer.advertise, undefined, 'a specific bind address is dialled as is');
});

t.test('a lease renewal interval that leaves no room before expiry is rejected', async (t) => {
  const problems = problemsOf(() => compileConfig({ ...valid(), lease: { ttl: '3s', renewEvery: '2s' } }));
  t.match(problems, [{ field: 'lease.renewEvery', expected: /half of lease.ttl/ }]);
});

t.test('environment variables override the file, and unknown CLUSTER_ variables are rejected', async (t) => {
  const dir = t.testdir({ 'node.yaml': `nodeId: from-file\nlease:\n  ttl: 3s\ndns:\n  caaIssuers: [a.example]\npeer:\n  advertise: 10.0.0.1:7946\n` });
  const env = {
    CLUSTER_CLUSTER_SECRET: CLUSTER_SECRET,
    CLUSTER_ENCRYPTION_KEY: KEY,
    CLUSTER_POSTGRES_URL: valid().postgres.url,
    CLUSTER_VALKEY_URL: 'redis://127.0.0.1:1',
    CLUSTER_NODE_ID: 'from-env',
    CLUSTER_LEASE_TTL: '5s',
    CLUSTER_DNS_CAA_ISSUERS: 'b.example, C.Example.',
  };
  const c = await loadConfig({ file: join(dir, 'node.yaml'), env });
  t.equal(c.nodeId, 'from-env');
  t.equal(c.lease.ttl, 5000);
  t.same(c.dns.caaIssuers, ['b.example', 'c.example']);
  t.equal(envName('lease.renewEvery'), 'CLUSTER_LEASE_RENEW_EVERY');
  await t.rejects(loadConfig({ file: join(dir, 'node.yaml'), env: { ...env, CLUSTER_LEASE_TLL: '1s' } }), { code: 'CLUSTER_ERR_CONFIG_INVALID', fields: { problems: [{ field: 'CLUSTER_LEASE_TLL' }] } });
  await t.rejects(loadConfig({ file: join(dir, 'node.yaml'), env: { ...env, CLUSTER_LEASE_TTL: 'soon' } }), { code: 'CLUSTER_ERR_CONFIG_INVALID', message: /lease\.ttl: "soon" is not a duration/ });
});

t.test('an unreadable or unparsable config file gets its own coded error', async (t) => {
  const dir = t.testdir({ 'bad.yaml': 'nodeId: [unclosed' });
  await t.rejects(loadConfig({ file: join(dir, 'missing.yaml'), env: {} }), { code: 'CLUSTER_ERR_CONFIG_FILE_UNREADABLE' });
  await t.rejects(loadConfig({ file: join(dir, 'bad.yaml'), env: {} }), { code: 'CLUSTER_ERR_CONFIG_FILE_UNREADABLE', fields: { path: join(dir, 'bad.yaml') } });
});

t.test('secrets never appear when config is logged, printed, inspected or rejected', async (t) => {
  const c = compileConfig(valid());
  for (const text of [JSON.stringify(c), inspect(c, { depth: 10 }), JSON.stringify(redactConfig(c)), `${c.clusterSecret}`]) {
    t.notMatch(text, CLUSTER_SECRET);
    t.notMatch(text, PG_PASSWORD);
    t.notMatch(text, KEY);
  }
  t.equal(redactConfig(c).clusterSecret, '[redacted]');
  t.match((redactConfig(c).postgres as any).url, 'postgres://app:***@127.0.0.1:5432/cluster');
  t.equal(c.clusterSecret.reveal(), CLUSTER_SECRET, 'the value is still there for the code that needs it');

  // A secret that is rejected is described, never echoed.
  const shortSecret = 'short-secret-value';
  try {
    compileConfig({ ...valid(), clusterSecret: shortSecret, encryptionKey: 'not-a-key-but-secret' });
    t.fail('should reject');
  } catch (err) {
    t.ok(err instanceof ClusterError);
    const text = `${(err as Error).message} ${JSON.stringify(err)}`;
    t.match(text, /clusterSecret: a 18-character value is too short/);
    t.notMatch(text, shortSecret);
    t.notMatch(text, 'not-a-key-but-secret');
  }
});

t.test('`cluster config` prints the config redacted; a bad file exits 2 naming the field', async (t) => {
  const dir = t.testdir();
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify(valid()));
  const ok = spawnSync(process.execPath, [CLUSTER_ENTRY, 'config', '--config', good], { encoding: 'utf8', env: { PATH: process.env.PATH } });
  t.equal(ok.status, 0, ok.stderr);
  t.equal(JSON.parse(ok.stdout).nodeId, 'node-a');
  t.notMatch(ok.stdout + ok.stderr, CLUSTER_SECRET);
  t.notMatch(ok.stdout + ok.stderr, PG_PASSWORD);

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ ...valid(), clusterSecret: 'tiny', lease: { ttl: -1 } }));
  const res = spawnSync(process.execPath, [CLUSTER_ENTRY, 'node', '--config', bad], { encoding: 'utf8', env: { PATH: process.env.PATH } });
  t.equal(res.status, 2);
  t.match(res.stderr, /CLUSTER_ERR_CONFIG_INVALID/);
  t.match(res.stderr, /lease\.ttl: -1 is not a duration/);
  t.match(res.stderr, /clusterSecret: a 4-character value is too short/);
  t.notMatch(res.stderr, 'tiny');
  t.notMatch(res.stderr, PG_PASSWORD);
});

t.test('the resource port range may hold none of the node\'s own ports', async (t) => {
  t.same(compileConfig(valid()).ingress.resourcePorts, { min: 20000, max: 29999 }, 'the default');
  t.match(problemsOf(() => compileConfig({ ...valid(), ingress: { resourcePorts: '1-1024' } })), [{ field: 'ingress.resourcePorts', problem: /HTTP port 80, HTTPS port 443, DNS port 53/ }]);
  t.match(problemsOf(() => compileConfig({ ...valid(), ingress: { resourcePorts: '30000-60000' } })), [{ field: 'ingress.resourcePorts', problem: /WireGuard port 51820/ }]);
  t.match(problemsOf(() => compileConfig({ ...valid(), ingress: { resourcePorts: '9-1' } })), [{ field: 'ingress.resourcePorts', expected: /min-max/ }]);
  t.same(compileConfig({ ...valid(), ingress: { resourcePorts: '30000-40000' } }).ingress.resourcePorts, { min: 30000, max: 40000 });
});
