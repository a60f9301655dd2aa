// `cluster up` (npm start): a local cluster to try things out. Starts PostgreSQL, Valkey and
// Pebble (the local ACME CA, checking challenges against node-1's DNS) with data under
// .data/ (kept across restarts; --fresh wipes it), then N nodes on their own loopback
// addresses (127.0.0.11, .12, ...) with the standard ports, haproxy in front of their admin
// API, and a demo site: a small HTTP service and its connector, published as
// https://hello.demo.cluster.test with a certificate from Pebble. Prints progress, a status
// table and commands to try. Ctrl-C or SIGTERM stops everything it started, in reverse order.
// It stays the owner of the node processes: `cluster chaos` asks it, through the control
// socket .data/control.sock, to signal and restart them. With --netns (root) each node,
// PostgreSQL and Valkey runs in a network namespace of its own (devenv/netns.ts), and the
// control socket also puts network faults between them.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterError } from '../core/errors.ts';
import { adminCall as api, setupToken } from '../devenv/admin-client.ts';
import { DEFAULT_DATA_DIR, serveControl, type ClusterInfo } from '../devenv/control.ts';
import { LOCK_FILE, lockDataDir } from '../devenv/data-lock.ts';
import { LocalHaproxy } from '../devenv/haproxy.ts';
import { NodeProcess } from '../devenv/node-process.ts';
import { busyAddresses, type Listen } from '../devenv/ports.ts';
import { ServiceProcess } from '../devenv/process.ts';
import { NetnsLab, requireNetns, type NetFault } from '../devenv/netns.ts';
import { LocalValkey, startLocalServices } from '../devenv/services.ts';
import { LocalSentinel } from '../devenv/valkey-sentinel.ts';
import { printStatus } from './status.ts';

const CONNECTOR = fileURLToPath(new URL('./cluster-connector.mjs', import.meta.url));
/** haproxy's port on 127.0.0.1, in front of the nodes' admin API. */
const LB_PORT = 8080;
export const DEMO = { org: 'demo', zone: 'demo.cluster.test', hostname: 'hello.demo.cluster.test' };

interface LocalSecrets {
  clusterSecret: string;
  encryptionKey: string;
  adminEmail: string;
  adminPassword: string;
}

/** Secrets of the local cluster, made once and kept with its data (mode 0600). */
function localSecrets(dataDir: string): LocalSecrets {
  const file = join(dataDir, 'secrets.json');
  const old = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalSecrets>) : {};
  const secrets: LocalSecrets = {
    clusterSecret: old.clusterSecret ?? randomBytes(32).toString('base64url'),
    encryptionKey: old.encryptionKey ?? randomBytes(32).toString('base64'),
    adminEmail: old.adminEmail ?? 'admin@cluster.test',
    adminPassword: old.adminPassword ?? randomBytes(12).toString('base64url'),
  };
  writeFileSync(file, JSON.stringify(secrets), { mode: 0o600 });
  return secrets;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const progress = (name: string, what: string) => say(`  ${name.padEnd(12)} ${what}`);

/** Prints that a step starts; the function it returns prints that it is ready, with the time. */
function step(name: string, detail = ''): (detail?: string) => void {
  const t0 = Date.now();
  progress(name, `starting${detail ? ` (${detail})` : ''}`);
  return (done = '') => progress(name, `ready in ${Date.now() - t0} ms${done ? ` (${done})` : ''}`);
}

const DEMO_SERVICE = `
import { createServer } from 'node:http';
const port = Number(process.argv.at(-1));
createServer((req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end('hello from the demo site (served by ' + req.headers['x-forwarded-host'] + ' for ' + req.headers['x-forwarded-for'] + ')\\n');
}).listen(port, '127.0.0.1');
`;

/** `--netns` without --netns-subnet: nodes on 10.231.0.11+, PostgreSQL .2, Valkey .3. */
export const DEFAULT_NETNS_SUBNET = '10.231.0';

export async function up(opts: { fresh: boolean; nodes: number; dataDir?: string; valkeyReplica?: boolean; netns?: string }): Promise<void> {
  const dataDir = opts.dataDir ?? DEFAULT_DATA_DIR;
  if (opts.netns) {
    requireNetns();
    if (opts.valkeyReplica) throw new ClusterError('CLUSTER_ERR_NETNS_UNAVAILABLE', '--netns runs one Valkey server in a namespace of its own; --valkey-replica is not supported with it yet', { reason: 'valkey-replica' });
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  // Before anything is started or deleted: a running cluster's data is never touched.
  const lock = lockDataDir(dataDir);
  if (opts.fresh) for (const f of readdirSync(dataDir)) if (f !== LOCK_FILE) rmSync(join(dataDir, f), { recursive: true, force: true });
  const t0 = Date.now();
  // --netns: every node, PostgreSQL and Valkey a "machine" of its own on a bridge (devenv/netns.ts).
  let lab: NetnsLab | undefined;
  if (opts.netns) {
    lab = new NetnsLab(opts.netns);
    const mine = join(dataDir, 'netns.json');
    // Ours from a launcher that was killed (this data directory is locked): clean it up.
    if (existsSync(mine) && JSON.parse(readFileSync(mine, 'utf8')).prefix === lab.prefix) NetnsLab.clean(lab.prefix);
    try {
      lab.create();
      writeFileSync(mine, JSON.stringify({ prefix: lab.prefix }));
      lab.addHost('postgres', 2);
      lab.addHost('valkey', 3);
      for (let i = 0; i < opts.nodes; i++) lab.addHost(`node-${i + 1}`, 11 + i);
    } catch (err) {
      lab.destroy();
      lock.release();
      throw err;
    }
    say(`network namespaces on bridge ${lab.bridge} (${lab.prefix}.0/24): postgres ${lab.host('postgres').ip}, valkey ${lab.host('valkey').ip}, nodes ${lab.prefix}.11+`);
  }
  const ip = (i: number) => (lab ? lab.host(`node-${i + 1}`).ip : `127.0.0.${11 + i}`);
  const ports = { admin: 8080, http: 80, https: 443, dns: 53, peer: 7946, metrics: 9464 };
  // --netns: haproxy on our end of the bridge, so this cluster and a loopback one can run side by side.
  const lbHost = lab ? lab.gateway : '127.0.0.1';
  const wanted: Listen[] = [{ host: lbHost, port: LB_PORT, proto: 'tcp' }];
  // Fresh namespaces hold nothing: only loopback addresses can be taken.
  for (let i = 0; i < opts.nodes && !lab; i++) {
    for (const port of Object.values(ports)) wanted.push({ host: ip(i), port, proto: 'tcp' });
    wanted.push({ host: ip(i), port: ports.dns, proto: 'udp' });
  }
  const busy = await busyAddresses(wanted);
  if (busy.length) {
    lab?.destroy();
    lock.release();
    const addresses = busy.map((l) => `${l.host}:${l.port}/${l.proto}`);
    const named = addresses.length > 4 ? `${addresses.slice(0, 4).join(', ')} and ${addresses.length - 4} more` : addresses.join(', ');
    throw new ClusterError('CLUSTER_ERR_LOCAL_ADDRESS_IN_USE', `${named} ${busy.length === 1 ? 'is' : 'are'} held by another process (a \`cluster up\` with another --data-dir, or a benchmark's cluster? \`ss -ltnup\` shows who)`, { addresses });
  }
  say(`starting local services (data in ${dataDir})`);
  const services = await startLocalServices({
    dataDir,
    pebble: true,
    pebbleDnsServer: `${ip(0)}:${ports.dns}`,
    persistent: true,
    ...(lab ? { netns: { postgres: { ns: lab.host('postgres').ns, host: lab.host('postgres').ip, clients: `${lab.prefix}.0/24` }, valkey: { ns: lab.host('valkey').ns, host: lab.host('valkey').ip }, pebbleHost: lab.gateway } } : {}),
    onStarting: (name) => progress(name, 'starting'),
    onReady: (name, ms) => progress(name, `ready in ${ms} ms`),
  }).catch((err: unknown) => {
    lab?.destroy();
    lock.release();
    throw err;
  });
  // --valkey-replica: a replica and three Sentinels beside the primary; nodes find the primary through them.
  const valkeys: LocalValkey[] = [];
  const sentinels: LocalSentinel[] = [];
  if (opts.valkeyReplica) {
    try {
      valkeys.push(services.valkey!, await LocalValkey.start({ dir: join(dataDir, 'valkey-replica'), replicaOf: services.valkey! }));
      for (let i = 0; i < 3; i++) sentinels.push(await LocalSentinel.start({ dir: join(dataDir, `sentinel-${i + 1}`), primary: services.valkey!, masterName: 'cluster', quorum: 2 }));
      progress('valkey replica and 3 sentinels', 'ready');
    } catch (err) {
      for (const s of [...sentinels, ...valkeys.slice(1)]) await s.stop().catch(() => {});
      await services.stop();
      lock.release();
      throw err;
    }
  }
  // With Sentinels, 6 s outlasts a failover (docs/operations.md); otherwise the default.
  const leaseTtlMs = sentinels.length ? 6000 : 3000;
  let killedValkey: LocalValkey | undefined;
  const nodes = new Map<string, NodeProcess>(); // the current process of each node
  const extras: Array<{ stop(): Promise<unknown> }> = [];
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nstopping');
    control?.close();
    for (const e of extras.reverse()) await e.stop().catch(() => {});
    for (const s of [...sentinels, ...valkeys.slice(1)]) await s.stop().catch(() => {});
    // A node frozen by `cluster chaos` must be thawed to hear SIGTERM.
    for (const n of nodes.values()) n.proc.signal('SIGCONT');
    await Promise.all([...nodes.values()].map((n) => n.proc.stop('SIGTERM', 20_000)));
    say('  nodes stopped');
    await services.stop();
    say('  services stopped');
    if (lab) {
      lab.destroy();
      rmSync(join(dataDir, 'netns.json'), { force: true });
      say('  network namespaces removed');
    }
    lock.release();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  let control: Server | undefined;

  try {
    const secrets = localSecrets(dataDir);
    const ids = Array.from({ length: opts.nodes }, (_, i) => `node-${i + 1}`);
    const startNode = (id: string): NodeProcess => {
      const host = ip(ids.indexOf(id));
      const n = new NodeProcess({
        name: id,
        netns: lab?.host(id).ns,
        configFile: join(dataDir, `${id}.yaml`),
        logFile: join(dataDir, `${id}.log`),
        env: { NODE_EXTRA_CA_CERTS: services.pebble!.caFile },
        config: {
          nodeId: id,
          clusterName: 'local',
          clusterSecret: secrets.clusterSecret,
          encryptionKey: secrets.encryptionKey,
          postgres: { url: services.postgres!.url },
          valkey: { url: services.valkey!.url, ...(sentinels.length ? { sentinels: sentinels.map((s) => s.address), masterName: 'cluster' } : {}) },
          lease: { ttl: leaseTtlMs },
          // The local load balancer speaks plain HTTP on loopback: session cookies without Secure.
          admin: { bind: `${host}:${ports.admin}`, trustProxy: [lab ? lab.gateway : '127.0.0.1'], secureCookies: false },
          ingress: { http: `${host}:${ports.http}`, https: `${host}:${ports.https}`, publicAddresses: [host] },
          dns: { bind: `${host}:${ports.dns}`, caaIssuers: ['pebble.letsencrypt.org'] },
          peer: { bind: `${host}:${ports.peer}` },
          metrics: { bind: `${host}:${ports.metrics}` },
          // One machine: each node's device needs its own name and UDP port (run as root for WireGuard; otherwise sites use websocket).
          // --netns: WebSocket only. A WebSocket site keeps a standby tunnel to a second node, which is what
          // carries its traffic past a partition; a WireGuard site re-registers instead (docs/operations.md).
          wireguard: lab ? { enabled: false } : { interfaceName: `wg-local-${ids.indexOf(id) + 1}`, listenPort: 51820 + ids.indexOf(id) },
          acme: { directoryUrl: services.pebble!.directoryUrl, checkEvery: '1m' },
          shutdown: { drainDelay: '1s' },
        },
      });
      nodes.set(id, n);
      void n.proc.exited.then((e) => {
        if (!stopping && nodes.get(id) === n) say(`${id} exited (${e.code ?? e.signal}); see ${n.logFile}. The rest keeps running.`);
      });
      return n;
    };
    await Promise.all(ids.map(async (id) => {
      const ready = step(id, ip(ids.indexOf(id)));
      await startNode(id).waitReady(60_000);
      ready(ip(ids.indexOf(id)));
    }));
    const haproxyDir = join(dataDir, 'haproxy');
    mkdirSync(haproxyDir, { recursive: true });
    const lbReady = step('haproxy');
    const lb = await LocalHaproxy.start({ dir: haproxyDir, host: lbHost, port: LB_PORT, backends: [...nodes.values()].map((n) => ({ name: String(n.config.nodeId), address: n.adminUrl.replace('http://', '') })) });
    extras.push(lb);
    lbReady(lb.url);

    // The first start creates the local admin with the one-time setup token from a node's log.
    const demoReady = step('demo site', 'admin, org, zone, site, resource, connector, certificate');
    let login = await api(lb.url, 'POST', '/api/v1/auth/login', { email: secrets.adminEmail, password: secrets.adminPassword });
    let usedToken: string | undefined;
    if (login.status !== 200) {
      usedToken = await setupToken([...nodes.values()]);
      const setup = await api(lb.url, 'POST', '/api/v1/auth/setup', { token: usedToken, email: secrets.adminEmail, password: secrets.adminPassword });
      if (setup.status !== 201) throw new Error(`could not create the local admin: ${JSON.stringify(setup.body)}`);
      login = await api(lb.url, 'POST', '/api/v1/auth/login', { email: secrets.adminEmail, password: secrets.adminPassword });
    }
    const cookie = login.cookie!;
    const demo = await ensureDemo(lb.url, cookie, dataDir);
    const service = new ServiceProcess({ name: 'demo-service', command: process.execPath, args: ['--input-type=module', '-e', DEMO_SERVICE, String(demo.port)], logFile: join(dataDir, 'demo-service.log') });
    extras.push({ stop: () => service.stop('SIGTERM', 2000) });
    const connector = new ServiceProcess({
      name: 'connector',
      command: process.execPath,
      args: [CONNECTOR, '--endpoint', lb.url, ...[...nodes.values()].flatMap((n) => ['--endpoint', n.adminUrl]), '--id', demo.siteId, '--secret', demo.secret, ...(lab ? ['--transport', 'websocket'] : [])],
      logFile: join(dataDir, 'connector.log'),
    });
    extras.push({ stop: () => connector.stop('SIGTERM', 3000) });
    let online = false;
    for (let i = 0; i < 100 && !online; i++) {
      const site = await api(lb.url, 'GET', `/api/v1/orgs/${demo.orgId}/sites/${demo.siteId}`, undefined, cookie);
      online = site.body?.status?.online === true;
      if (!online) await new Promise((r) => setTimeout(r, 100));
    }
    if (!online) say(`  demo site    WARNING: its connector is not connected after 10 s; see ${join(dataDir, 'connector.log')}`);
    const cert = await api(lb.url, 'POST', `/api/v1/orgs/${demo.orgId}/resources/${demo.resourceId}/certificate`, undefined, cookie);
    demoReady(`certificate: ${cert.body?.status ?? cert.status}`);
    say(`\ncluster up in ${Date.now() - t0} ms\n`);
    await printStatus(lb.url, cookie, say);
    // Pebble makes a new root every start, while certificates it issued before stay in use
    // until renewed: the trust file keeps every root seen with this data directory.
    const rootFile = join(dataDir, 'pebble-root.pem');
    const root = (await services.pebble!.issuedRoot()).trim();
    const roots = existsSync(rootFile) ? readFileSync(rootFile, 'utf8') : '';
    if (!roots.includes(root)) writeFileSync(rootFile, `${roots}${root}\n`);
    const dd = opts.dataDir ? ` --data-dir ${dataDir}` : '';
    say(`
try:
  dig @${ip(0)} ${DEMO.hostname} A +norec
  curl --cacert ${rootFile} --resolve ${DEMO.hostname}:443:${ip(opts.nodes - 1)} https://${DEMO.hostname}/
  node bin/cluster.mjs status${dd}
dashboard: ${lb.url}/   sign in as ${secrets.adminEmail} / ${secrets.adminPassword}
admin API (behind haproxy): ${lb.url}/api/v1   docs: ${lb.url}/api/v1/docs
  login: POST ${lb.url}/api/v1/auth/login  ${secrets.adminEmail} / ${secrets.adminPassword}   (kept in ${join(dataDir, 'secrets.json')})${usedToken ? `
  first start: this admin was made with the one-time setup token ${usedToken} from the nodes' log
  (POST /api/v1/auth/setup; it works once, so it is spent now)` : ''}
logs: ${join(dataDir, 'node-N.log')}, ${join(dataDir, 'connector.log')}   (JSON lines; readable: tail -f FILE | npx pino-pretty)
chaos: node bin/cluster.mjs chaos --duration 60${dd}   (kills, freezes and restarts nodes under traffic; see docs/operations.md)
Ctrl-C stops everything.`);
    const info = (): ClusterInfo => ({
      nodes: ids.map((id) => {
        const n = nodes.get(id)!;
        return { id, ip: ip(ids.indexOf(id)), pid: n.pid, alive: n.proc.alive, admin: n.adminUrl, peer: String(n.config.peer.bind), dns: String(n.config.dns.bind) };
      }),
      adminUrl: lb.url,
      postgresUrl: services.postgres!.url,
      hostname: DEMO.hostname,
      caFile: join(dataDir, 'pebble-root.pem'),
      valkeyReplica: sentinels.length > 0,
      leaseTtlMs,
      ...(lab ? { netns: { observer: lab.observer, hosts: Object.fromEntries([...lab.hosts.values()].map((h) => [h.name, h.ip])) } } : {}),
    });
    control = await serveControl(join(dataDir, 'control.sock'), async (req) => {
      if (req.op === 'info') return info();
      if (req.op === 'net-fault' || req.op === 'net-heal') {
        if (!lab) throw new Error('network faults need a cluster started with `cluster up --netns`');
        if (req.op === 'net-heal') {
          lab.heal(req.host);
          say(`${req.host}: network healed (control socket)`);
          return {};
        }
        const from = (req.from ?? []).map((h) => lab!.host(h).ip);
        const fault: NetFault = req.fault === 'loss' ? { kind: 'loss', from, share: req.share ?? 30 } : req.fault === 'cut' ? { kind: 'cut', from } : { kind: req.fault };
        lab.apply(req.host, fault);
        say(`${req.host}: network fault ${req.fault}${from.length ? ` from ${req.from!.join(', ')}` : ''}${req.fault === 'loss' ? ` (${req.share ?? 30}% of packets)` : ''} (control socket)`);
        return {};
      }
      if (req.op === 'valkey-kill' || req.op === 'valkey-start') {
        if (!sentinels.length) throw new Error('this cluster runs one Valkey server: start it with `cluster up --valkey-replica`');
        if (req.op === 'valkey-start') {
          await killedValkey?.resume();
          say(`valkey: port ${killedValkey?.port} started again (Sentinel makes it a replica)`);
          killedValkey = undefined;
          return {};
        }
        const port = await sentinels[0]!.primaryPort('cluster');
        const primary = valkeys.find((v) => v.port === port);
        if (!primary) throw new Error(`Sentinel names a primary on port ${port} that this launcher did not start`);
        say(`valkey: SIGKILL the primary on port ${port} (control socket)`);
        await primary.kill();
        killedValkey = primary;
        return { port };
      }
      const n = nodes.get(req.node);
      if (!n) throw new Error(`no node ${JSON.stringify(req.node)} (have ${ids.join(', ')})`);
      switch (req.op) {
        case 'signal':
          say(`${req.node}: ${req.signal} (control socket)`);
          n.proc.signal(req.signal);
          return { pid: n.pid };
        case 'wait-exit':
          return n.proc.exited;
        case 'start': {
          // A SIGKILLed process may not have been reaped yet.
          if (n.proc.alive) await Promise.race([n.proc.exited, new Promise((r) => setTimeout(r, 5000))]);
          if (n.proc.alive) throw new Error(`${req.node} is running (pid ${n.pid})`);
          const tn = Date.now();
          await startNode(req.node).waitReady(60_000);
          say(`${req.node}: started again, ready in ${Date.now() - tn} ms`);
          return { readyMs: Date.now() - tn };
        }
      }
    });
    await new Promise(() => {}); // until Ctrl-C / SIGTERM
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    await stop(1);
  }
}

/** The demo org, zone, site, resource and target; created once, found again after a restart. */
async function ensureDemo(lb: string, cookie: string, dataDir: string): Promise<{ orgId: string; siteId: string; secret: string; resourceId: string; port: number }> {
  const file = join(dataDir, 'demo.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const org = (await api(lb, 'POST', '/api/v1/orgs', { slug: DEMO.org, name: 'Demo' }, cookie)).body;
  const base = `/api/v1/orgs/${org.id}`;
  // The demo zone is served at once: the local admin marks it verified by hand.
  const zone = (await api(lb, 'POST', `${base}/domains`, { name: DEMO.zone }, cookie)).body;
  await api(lb, 'POST', `${base}/domains/${zone.id}/verify`, { force: true }, cookie);
  const site = (await api(lb, 'POST', `${base}/sites`, { name: 'demo-site' }, cookie)).body;
  const resource = (await api(lb, 'POST', `${base}/resources`, { name: 'hello', protocol: 'http', hostname: DEMO.hostname, tls: true }, cookie)).body;
  const port = 18_000 + Math.floor(Math.random() * 2000);
  const target = await api(lb, 'POST', `${base}/resources/${resource.id}/targets`, { siteId: site.id, host: '127.0.0.1', port, scheme: 'http', healthCheck: { type: 'http', path: '/', intervalMs: 2000 } }, cookie);
  if (target.status !== 201) throw new Error(`could not create the demo: ${JSON.stringify(target.body)}`);
  const demo = { orgId: org.id, siteId: site.id, secret: site.connector.secret, resourceId: resource.id, port };
  writeFileSync(file, JSON.stringify(demo), { mode: 0o600 });
  return demo;
}
