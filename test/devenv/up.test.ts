// The local cluster an operator starts first (`npm start` = `cluster up`), and `cluster chaos`
// run against it: one cluster for the file, torn down by the last test.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import pg from 'pg';
import t, { type Test } from 'tap';
import { adminCall } from '../../devenv/admin-client.ts';
import { controlCall, type ClusterInfo } from '../../devenv/control.ts';
import { CLUSTER_CLI, launchLocalCluster, type LaunchedCluster } from '../../devenv/local-cluster.ts';
import { dig } from '../harness/dig.ts';
import { runBenchSmoke } from '../harness/bench.ts';
import { scrape, total } from '../harness/metrics.ts';

const NODE_IPS = ['127.0.0.11', '127.0.0.12', '127.0.0.13'];

/** The raw HTTP answer, with the serial number of the certificate the node presented. */
function httpsGet(ip: string, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: ip, port: 443, servername, ca, rejectUnauthorized: true }, () => sock.write(`GET / HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`));
    let body = '';
    sock.on('data', (d) => (body += d));
    sock.on('end', () => resolve(`certificate serial ${sock.getPeerCertificate().serialNumber}\n${body}`));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

const listeners = () => execFileSync('ss', ['-Htlnu'], { encoding: 'utf8' }).split('\n').filter((l) => NODE_IPS.some((ip) => l.includes(`${ip}:`)) || l.includes('127.0.0.1:8080 '));

/** What an engineer needs when the demo site does not come online: the connector's story and the nodes' complaints. */
function diagnose(t: Test, dataDir: string) {
  const tail = (f: string, n: number) => (existsSync(join(dataDir, f)) ? readFileSync(join(dataDir, f), 'utf8').trim().split('\n').slice(-n).join('\n') : `(no ${f})`);
  t.comment(`connector.log:\n${tail('connector.log', 30)}`);
  for (const n of ['node-1', 'node-2', 'node-3']) t.comment(`${n}.log warnings:\n${tail(`${n}.log`, 400).split('\n').filter((l) => /"level":[45]0/.test(l)).slice(-15).join('\n')}`);
}

const dir = mkdtempSync(join(tmpdir(), 'cluster-up-'));
chmodSync(dir, 0o755); // the postgres user must reach its data directory
let cluster: LaunchedCluster | undefined;
t.teardown(async () => {
  await cluster?.proc.stop('SIGKILL', 1000);
  rmSync(dir, { recursive: true, force: true });
});

t.test('`cluster up --nodes 3` becomes ready and the demo answers over HTTPS through every node', async (t) => {
  t.same(listeners(), [], 'nothing listens on the local cluster addresses before');
  cluster = await launchLocalCluster({ dir, nodes: 3 });
  const out = cluster.output();
  t.match(out, /cluster up in \d+ ms/, 'it says it is up');
  t.match(out, /demo site\s+ready in \d+ ms \(certificate: valid\)/, 'the demo resource has a certificate from the local CA');
  if (!t.match(out, /demo-site\s+yes\s+node-\d/, 'the status table shows the demo site online')) diagnose(t, cluster.dataDir);
  t.match(out, /node-\d\s+127\.0\.0\.1\d\s+\S+\s+\d+ ms\s+.*\b1 cert-issuer\b/, 'the status table shows the actors each node runs');
  const root = readFileSync(join(cluster.dataDir, 'pebble-root.pem'), 'utf8');
  for (const ip of NODE_IPS) t.match(await httpsGet(ip, 'hello.demo.cluster.test', root), /hello from the demo site/, `HTTPS through ${ip}, chain verified`);
  const dashboard = /dashboard: (http:\/\/\S+)\s+sign in as (\S+) \/ (\S+)/.exec(out);
  t.ok(dashboard, 'it prints the dashboard URL and the admin login');
  if (dashboard) {
    const page = await fetch(dashboard[1]!);
    t.match([page.status, await page.text()], [200, /<div id="app">/], 'and the dashboard answers there');
  }
});

t.test('a second `cluster up` beside a running one is refused before it starts or deletes anything', async (t) => {
  if (!cluster) return t.fail('no running cluster');
  const dataDir = cluster.dataDir;
  const before = readdirSync(dataDir).sort();
  const second = await new Promise<{ code: number | null; err: string }>((resolve) => {
    execFile(process.execPath, [CLUSTER_CLI, 'up', '--fresh', '--data-dir', dataDir], { timeout: 30_000 }, (e, _out, err) => resolve({ code: e ? (e.code as number) : 0, err }));
  });
  t.equal(second.code, 1, 'it exits 1');
  t.match(second.err, /CLUSTER_ERR_LOCAL_DATA_DIR_BUSY: another `cluster up` \(pid \d+\) is running/, 'and says which launcher holds the directory');
  t.same(readdirSync(dataDir).sort(), before, 'the data directory is as it was');
  const elsewhere = join(dir, 'other-data');
  const third = await new Promise<{ code: number | null; err: string }>((resolve) => {
    execFile(process.execPath, [CLUSTER_CLI, 'up', '--data-dir', elsewhere], { timeout: 30_000 }, (e, _out, err) => resolve({ code: e ? (e.code as number) : 0, err }));
  });
  t.equal(third.code, 1, 'one on another data directory exits 1 too');
  t.match(third.err, /CLUSTER_ERR_LOCAL_ADDRESS_IN_USE: 127\.0\.0\.1:8080\/tcp, 127\.0\.0\.11:8080\/tcp/, 'naming the addresses the running cluster holds, before it starts anything');
  t.same(readdirSync(elsewhere), [], 'it started nothing there');
  const root = readFileSync(join(dataDir, 'pebble-root.pem'), 'utf8');
  t.match(await httpsGet(NODE_IPS[2]!, 'hello.demo.cluster.test', root), /hello from the demo site/, 'the running cluster still serves');
});

t.test('a 30-second `cluster chaos` run loses no acknowledged write and runs no actor twice', async (t) => {
  if (!cluster) return t.fail('no cluster to run chaos against');
  const child = spawn(process.execPath, [CLUSTER_CLI, 'chaos', '--duration', '30', '--kill-every', '6', '--modes', 'kill,stop,restart', '--seed', '7', '--data-dir', cluster.dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.comment(out.split('\n').filter((l) => /^(report|  \S|    #)/.test(l)).join('\n'));
  const summary = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number>;
  t.equal(code, 0, 'chaos exits 0 (no lost write, no duplicate actor)');
  t.equal(summary.lost_writes, 0, 'every acknowledged admin write is in PostgreSQL');
  t.equal(summary.duplicates, 0, 'no actor ran on two nodes at once');
  t.equal(summary.stale_writes, 0, 'no stale owner wrote');
  t.ok(summary.kills! >= 3, `nodes were disrupted (${summary.kills})`);
  t.ok(summary.writes_acked! > 50, `admin writes flowed (${summary.writes_acked} acknowledged)`);
  t.ok(summary.requests! - summary.failed! > 100, `resource requests were served (${summary.requests! - summary.failed!} of ${summary.requests})`);
  t.match(out, /healed\s+every actor running once/, 'the cluster healed afterwards');
});

t.test('every node serves the metrics an operator watches, with values that match the cluster', async (t) => {
  if (!cluster) return t.fail('no cluster to scrape');
  const demo = JSON.parse(readFileSync(join(cluster.dataDir, 'demo.json'), 'utf8')) as { resourceId: string };
  const root = readFileSync(join(cluster.dataDir, 'pebble-root.pem'), 'utf8');
  // Traffic of our own, so the counters do not depend on which nodes chaos restarted last.
  for (const ip of NODE_IPS) {
    t.same((await dig(ip, 'hello.demo.cluster.test', 'A')).status, 'NOERROR', `${ip} answers the demo name`);
    t.match(await httpsGet(ip, 'hello.demo.cluster.test', root), /hello from the demo site/, `HTTPS through ${ip}`);
  }
  const perNode = await Promise.all(NODE_IPS.map((ip) => scrape(`http://${ip}:9464`)));
  for (const [i, m] of perNode.entries()) {
    const ip = NODE_IPS[i]!;
    t.equal(total(m, 'cluster_dependency_up', { dependency: 'postgres' }), 1, `${ip}: PostgreSQL up`);
    t.equal(total(m, 'cluster_dependency_up', { dependency: 'valkey' }), 1, `${ip}: Valkey up`);
    t.equal(total(m, 'cluster_lease_healthy'), 1, `${ip}: holds its lease`);
    const left = total(m, 'cluster_lease_remaining_seconds') ?? 0;
    t.ok(left > 0 && left <= 3, `${ip}: lease time left is within the 3 s TTL (${left} s)`);
    t.equal(total(m, 'cluster_live_nodes'), 3, `${ip}: sees three live nodes`);
    t.ok((total(m, 'cluster_dns_queries_total', { type: 'A', rcode: 'NOERROR' }) ?? 0) >= 1, `${ip}: counts the DNS query it answered`);
    const expiry = total(m, 'cluster_certificate_expiry_seconds', { hostname: 'hello.demo.cluster.test' }) ?? 0;
    t.ok(expiry > 86_400, `${ip}: reports the demo certificate's expiry (${Math.round(expiry / 86_400)} days)`);
  }
  const all = perNode.flat();
  for (const kind of ['site', 'resource', 'dns-zone', 'cert-issuer']) t.equal(total(all, 'cluster_actors', { kind }), 1, `one ${kind} actor across the nodes`);
  t.equal(total(all, 'cluster_tunnels', { role: 'primary' }), 1, 'one tunnel (the demo connector) across the nodes');
  // The standby is replaced after a growing pause (capped at 15 s) when chaos left its attempts failing.
  let standbys = total(all, 'cluster_tunnels', { role: 'standby' });
  for (let i = 0; i < 20 && standbys !== 1; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    standbys = total((await Promise.all(NODE_IPS.map((ip) => scrape(`http://${ip}:9464`)))).flat(), 'cluster_tunnels', { role: 'standby' });
  }
  t.equal(standbys, 1, 'and its standby tunnel, on another node');
  // Whichever node a client reached, the tunnel's holder terminated TLS and proxied it.
  t.ok((total(all, 'cluster_ingress_requests_total', { resource: demo.resourceId, status: '200' }) ?? 0) >= NODE_IPS.length, 'the demo requests are counted by resource');
  t.ok((total(all, 'cluster_ingress_request_seconds_count', { resource: demo.resourceId }) ?? 0) >= NODE_IPS.length, 'and timed by resource');
  t.ok((total(all, 'cluster_actor_respawns_total') ?? 0) > 0, 'the failovers of the chaos run are counted');
  t.ok((total(all, 'cluster_member_events_total') ?? 0) > 0, 'and so are the membership changes it caused');
});

async function stopAndCheck(t: Test, c: LaunchedCluster) {
  c.proc.signal('SIGTERM');
  const exit = await c.proc.exited;
  t.equal(exit.code, 0, 'it stops cleanly');
  t.same(listeners(), [], 'no listening port left behind');
  const procs = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(dir));
  t.same(procs, [], 'no process left behind');
}

let servedBefore = '';
t.test('Ctrl-C/SIGTERM stops everything `cluster up` started, leaving no process or listening port', async (t) => {
  if (!cluster) return t.fail('no cluster to stop');
  const root = readFileSync(join(cluster.dataDir, 'pebble-root.pem'), 'utf8');
  servedBefore = /certificate serial (\w+)/.exec(await httpsGet(NODE_IPS[0]!, 'hello.demo.cluster.test', root))?.[1] ?? '';
  await stopAndCheck(t, cluster);
});

t.test('`cluster up` again on the same data directory keeps its admin, demo site and certificate', async (t) => {
  if (!cluster) return t.fail('no data directory from the first start');
  const dataDir = cluster.dataDir;
  const kept = ['secrets.json', 'demo.json'].map((f) => readFileSync(join(dataDir, f), 'utf8'));
  cluster = await launchLocalCluster({ dir, nodes: 3 });
  t.same(['secrets.json', 'demo.json'].map((f) => readFileSync(join(dataDir, f), 'utf8')), kept, 'the same admin login and demo site');
  t.match(cluster.output(), /demo-site\s+yes\s+node-\d/, 'the demo site is online again');
  const root = readFileSync(join(dataDir, 'pebble-root.pem'), 'utf8');
  const answer = await httpsGet(NODE_IPS[1]!, 'hello.demo.cluster.test', root);
  t.match(answer, /hello from the demo site/, 'HTTPS answers again, chain verified');
  t.equal(/certificate serial (\w+)/.exec(answer)?.[1], servedBefore, 'the certificate issued before the restart is served from PostgreSQL, not ordered again');

  // The restarted local CA has forgotten the ACME account made on the first start: a renewal
  // now must register the stored key again and still get a certificate.
  const info = await controlCall<ClusterInfo>(join(dataDir, 'control.sock'), { op: 'info' }, 5000);
  const db = new pg.Client({ connectionString: info.postgresUrl });
  await db.connect();
  try {
    await db.query(`UPDATE certificates SET renew_after = now() - interval '1 second' WHERE hostname = 'hello.demo.cluster.test'`);
  } finally {
    await db.end();
  }
  const secrets = JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')) as { adminEmail: string; adminPassword: string };
  const login = await adminCall(info.adminUrl, 'POST', '/api/v1/auth/login', { email: secrets.adminEmail, password: secrets.adminPassword });
  const demo = JSON.parse(readFileSync(join(dataDir, 'demo.json'), 'utf8')) as { orgId: string; resourceId: string };
  const renewed = await adminCall(info.adminUrl, 'POST', `/api/v1/orgs/${demo.orgId}/resources/${demo.resourceId}/certificate`, undefined, login.cookie);
  t.match(renewed.body, { status: 'valid', ordered: true }, 'a due certificate is renewed through the restarted CA');
  let serial = '';
  for (let i = 0; i < 50 && (!serial || serial === servedBefore); i++) {
    serial = /certificate serial (\w+)/.exec(await httpsGet(NODE_IPS[2]!, 'hello.demo.cluster.test', root))?.[1] ?? '';
    if (serial === servedBefore) await new Promise((r) => setTimeout(r, 100));
  }
  t.not(serial, servedBefore, 'and every node serves the renewed certificate');
  await stopAndCheck(t, cluster);
});

// The chaos benchmark launches its own `cluster up` on the same fixed addresses, so it runs
// here, after this file's cluster has stopped, rather than beside it in test/bench/.
t.test('bench:chaos runs at smoke size and prints every field it promises, with nothing lost', async (t) => {
  t.same(listeners(), [], 'the addresses are free');
  const run = await runBenchSmoke('chaos');
  if (run.code !== 0) t.comment(run.stderr);
  t.equal(run.code, 0, 'it exits 0 (no lost write, no duplicate)');
  t.same(run.bad, [], 'no promised field is missing or not a number');
  t.equal(run.result?.lost_writes, 0);
});
