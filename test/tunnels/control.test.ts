import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import pg from 'pg';
import t from 'tap';
import { until } from '../harness/until.ts';
import { Redis } from 'ioredis';
import { WebSocket } from 'ws';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { ServiceProcess } from '../../devenv/process.ts';
import { Keyspace } from '../../persistence/keys.ts';
import { call, startApiCluster, type ApiCluster } from '../harness/api.ts';

const logger = createLogger({ level: 'silent' });
const CONNECTOR_ENTRY = fileURLToPath(new URL('../../bin/cluster-connector.mjs', import.meta.url));

/** Resolves with the first emission of `event`, or fails after `ms`. */
function nextEvent<T>(emitter: { once(e: string, f: (v: T) => void): unknown }, event: string, ms = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms}ms`)), ms);
    emitter.once(event, (v: T) => (clearTimeout(timer), resolve(v)));
  });
}

async function newSite(c: ApiCluster, orgId: string, name: string) {
  const r = await call(c.lb, 'POST', `/api/v1/orgs/${orgId}/sites`, { cookie: c.adminCookie, body: { name } });
  return r.body as { id: string; connector: { id: string; secret: string } };
}

/** A connector for `site` on one node, started; with the node it connected to. */
async function connectedAt(t: { teardown(fn: () => unknown): void }, adminUrl: string, site: { id: string; connector: { secret: string } }) {
  const connector = new Connector({ endpoints: [adminUrl], siteId: site.id, secret: site.connector.secret, logger });
  t.teardown(() => connector.stop());
  const up = nextEvent<{ node: string }>(connector, 'connected');
  connector.start();
  return { connector, node: (await up).node };
}

function openControl(base: string, token: string): Promise<{ ws: WebSocket; closed: Promise<{ code: number; reason: string }> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/ws`, { headers: { authorization: `Bearer ${token}` } });
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.on('open', () => resolve({ ws, closed }));
    ws.on('error', reject);
  });
}

t.test('site connectors and the control channel', async (t) => {
  // A short connector silence (default 30 s), so a frozen connector is let go within the test.
  const c = await startApiCluster(t, 3, { connector: { silentAfter: '3s' } });
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie: c.adminCookie, body: { slug: 'sites', name: 'Sites' } })).body;
  const siteUrl = (id: string) => `/api/v1/orgs/${org.id}/sites/${id}`;
  const statusVia = async (base: string, id: string) => (await call(base, 'GET', siteUrl(id), { cookie: c.adminCookie })).body.status as { online: boolean; node: string | null };

  await t.test('a connector with a wrong secret is refused and rate limited; no token, no control channel', async (t) => {
    const site = await newSite(c, org.id, 'locked');
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await call(c.nodes[i % 3]!.adminUrl, 'POST', '/api/v1/connector/token', { body: { siteId: site.id, secret: `wrong-secret-guess-number-${i}` } })).status);
    t.same(statuses.slice(0, 10), Array(10).fill(401));
    t.same(statuses.slice(10), [429, 429], 'the limit holds across nodes');
    const right = await call(c.nodes[0]!.adminUrl, 'POST', '/api/v1/connector/token', { body: { siteId: site.id, secret: site.connector.secret } });
    t.equal(right.status, 200, 'the right secret still works: guessing at a site id cannot lock its connector out');
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${c.nodes[0]!.adminUrl.replace('http', 'ws')}/api/v1/ws`, { headers: { authorization: 'Bearer forged.token' } });
      ws.on('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(-1));
    });
    t.equal(refused, 401);
    t.match(await statusVia(c.lb, site.id), { online: false });
  });

  // A token is good for many upgrades: one site's upgrades that never register must not hold
  // every registration slot of a node (256) and keep the other tenants' sites out.
  await t.test('one site\'s unregistered upgrades hold at most four of a node\'s registration slots; other sites still register there', async (t) => {
    const hog = await newSite(c, org.id, 'hog');
    const token = (await call(c.lb, 'POST', '/api/v1/connector/token', { body: { siteId: hog.id, secret: hog.connector.secret } })).body.token as string;
    const base = c.nodes[0]!.adminUrl;
    const held = await Promise.all([1, 2, 3, 4].map(() => openControl(base, token)));
    t.teardown(() => held.forEach((h) => h.ws.terminate()));
    const refusal = await new Promise<{ status: number; body: string }>((resolve) => {
      const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/ws`, { headers: { authorization: `Bearer ${token}` } });
      ws.on('unexpected-response', (_q, res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      ws.on('open', () => (ws.terminate(), resolve({ status: 101, body: '' })));
      ws.on('error', () => resolve({ status: -1, body: '' }));
    });
    t.same({ status: refusal.status, code: JSON.parse(refusal.body || '{}').code }, { status: 429, code: 'CLUSTER_ERR_CONNECTOR_REGISTERING' }, 'the fifth upgrade of the same site is refused, coded');
    const other = await newSite(c, org.id, 'neighbour');
    const { node } = await connectedAt(t, base, other);
    t.equal(node, 'node-1', 'another site registers on the same node meanwhile');
    held[0]!.ws.terminate();
    await held[0]!.closed;
    const again = await until(async () => openControl(base, token).then((h) => (h.ws.terminate(), true), () => false), 5000, 'a slot of the site free again');
    t.ok(again, 'a slot given back takes the site\'s next upgrade');
    const refusedAt = /^cluster_connector_registrations_refused_total\{reason="site-busy",role="primary"\} (\d+)/m.exec(await (await fetch(`${c.nodes[0]!.metricsUrl}/metrics`)).text());
    t.ok(Number(refusedAt?.[1]) >= 1, 'counted as site-busy in the node\'s metrics');
  });

  await t.test('malformed, early or oversized control messages close the connection with a coded reason and change nothing', async (t) => {
    const site = await newSite(c, org.id, 'strict');
    const token = (await call(c.lb, 'POST', '/api/v1/connector/token', { body: { siteId: site.id, secret: site.connector.secret } })).body.token;
    const cases: Array<[string, string | Buffer, number, string]> = [
      ['garbage', 'not json at all', 4400, 'CLUSTER_ERR_CONNECTOR_BAD_MESSAGE'],
      ['health before register', JSON.stringify({ v: 1, type: 'health', targets: [] }), 4400, 'CLUSTER_ERR_CONNECTOR_BAD_MESSAGE'],
      ['unknown version', JSON.stringify({ v: 2, type: 'register', connectorVersion: 'x', transports: [] }), 4400, 'CLUSTER_ERR_CONNECTOR_BAD_MESSAGE'],
      ['extra field', JSON.stringify({ v: 1, type: 'register', connectorVersion: 'x', transports: [], admin: true }), 4400, 'CLUSTER_ERR_CONNECTOR_BAD_MESSAGE'],
      ['oversized', 'x'.repeat(200_000), 1009, 'CLUSTER_ERR_CONNECTOR_MESSAGE_TOO_LARGE'],
    ];
    for (const [name, payload, code, reason] of cases) {
      const { ws, closed } = await openControl(c.nodes[1]!.adminUrl, token);
      ws.send(payload);
      const got = await closed;
      t.equal(got.code, code, `${name}: close code`);
      if (reason) t.equal(got.reason, reason, `${name}: reason`);
    }
    // Silence: a connection that never registers is closed after the register timeout (5 s), not held.
    const silent = await openControl(c.nodes[1]!.adminUrl, token);
    t.match(await silent.closed, { code: 4400, reason: 'CLUSTER_ERR_CONNECTOR_BAD_MESSAGE' }, 'silent: closed after the register timeout');
    t.match(await statusVia(c.lb, site.id), { online: false, node: null }, 'the site never came online');
    const db = new pg.Client({ connectionString: c.postgresUrl });
    await db.connect();
    const { rows } = await db.query('SELECT last_seen_at FROM sites WHERE id = $1', [site.id]);
    await db.end();
    t.equal(rows[0].last_seen_at, null, 'nothing was recorded');
  });

  await t.test('a connected site is online on the node holding its connection and gets its targets pushed', async (t) => {
    const site = await newSite(c, org.id, 'config');
    const { connector, node } = await connectedAt(t, c.nodes[2]!.adminUrl, site);
    t.equal(node, 'node-3');
    for (const n of c.nodes) t.match(await statusVia(n.adminUrl, site.id), { online: true, node: 'node-3' }, `${n.config.nodeId} agrees`);
    await call(c.lb, 'POST', `/api/v1/orgs/${org.id}/domains`, { cookie: c.adminCookie, body: { name: 'sites.example' } });
    const res = (await call(c.lb, 'POST', `/api/v1/orgs/${org.id}/resources`, { cookie: c.adminCookie, body: { name: 'app', protocol: 'http', hostname: 'app.sites.example' } })).body;
    const configured = new Promise<any[]>((r) => connector.on('config', (targets) => targets.length && r(targets)));
    const target = (await call(c.lb, 'POST', `/api/v1/orgs/${org.id}/resources/${res.id}/targets`, { cookie: c.adminCookie, body: { siteId: site.id, host: '127.0.0.1', port: 9, scheme: 'http' } })).body;
    t.match(await configured, [{ id: target.id, host: '127.0.0.1', port: 9 }], 'an admin edit reaches the connector');
    await connector.stop();
    await until(async () => ((await statusVia(c.lb, site.id)).online ? undefined : true), 15_000, 'offline');
    t.pass('a connector that says goodbye takes its site offline');
  });

  await t.test('the newest connection wins; the older one is closed as superseded', async (t) => {
    const site = await newSite(c, org.id, 'twice');
    const { connector: first } = await connectedAt(t, c.nodes[0]!.adminUrl, site);
    const superseded = nextEvent<{ code: number; reason: string }>(first, 'disconnected');
    const second = new Connector({ endpoints: [c.nodes[1]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger });
    t.teardown(() => second.stop());
    second.start();
    t.match(await superseded, { code: 4409, reason: 'CLUSTER_ERR_CONNECTOR_SUPERSEDED' });
    await first.stop(); // a real duplicate would keep reconnecting; stop it so the second stays
    t.match(await until(async () => { const s = await statusVia(c.lb, site.id); return s.node === 'node-2' ? s : undefined; }, 15_000, 'moved'), { online: true, node: 'node-2' });
  });

  await t.test('rotating a site\'s secret or deleting the site closes its live connection; tokens from before are refused', async (t) => {
    const site = await newSite(c, org.id, 'rotated');
    const oldToken = (await call(c.lb, 'POST', '/api/v1/connector/token', { body: { siteId: site.id, secret: site.connector.secret } })).body.token as string;
    const register = (ws: WebSocket) => ws.send(JSON.stringify({ v: 1, type: 'register', connectorVersion: 'test', transports: ['websocket'] }));
    const live = await openControl(c.nodes[0]!.adminUrl, oldToken);
    register(live.ws);
    await until(async () => (await statusVia(c.lb, site.id)).online, 15_000, 'online');
    const rotated = await call(c.lb, 'POST', `${siteUrl(site.id)}/rotate-secret`, { cookie: c.adminCookie });
    t.equal(rotated.status, 200);
    t.same(await live.closed, { code: 4401, reason: 'CLUSTER_ERR_CONNECTOR_UNAUTHENTICATED' }, 'the live connection is closed at once');
    await until(async () => !(await statusVia(c.lb, site.id)).online, 15_000, 'offline');
    // The old token still carries a valid signature, but its generation is gone (on any node).
    const replay = await openControl(c.nodes[1]!.adminUrl, oldToken);
    register(replay.ws);
    t.same(await replay.closed, { code: 4401, reason: 'CLUSTER_ERR_CONNECTOR_UNAUTHENTICATED' }, 'a token from before the rotation is refused');
    t.equal((await call(c.lb, 'POST', '/api/v1/connector/token', { body: { siteId: site.id, secret: site.connector.secret } })).status, 401, 'so is the old secret');
    // (The refused connection claimed the site for the moment it took to refuse it.)
    await until(async () => !(await statusVia(c.lb, site.id)).online, 5000, 'the site offline after the refusal');
    t.pass('and the site stays offline');

    const newToken = (await call(c.lb, 'POST', '/api/v1/connector/token', { body: { siteId: site.id, secret: rotated.body.connector.secret } })).body.token as string;
    const fresh = await openControl(c.nodes[2]!.adminUrl, newToken);
    register(fresh.ws);
    await until(async () => (await statusVia(c.lb, site.id)).online, 15_000, 'online with the new secret');
    t.equal((await call(c.lb, 'DELETE', siteUrl(site.id), { cookie: c.adminCookie })).status, 204);
    t.same(await fresh.closed, { code: 4401, reason: 'CLUSTER_ERR_CONNECTOR_UNAUTHENTICATED' }, 'deleting the site closes its connection');
  });

  await t.test('a connector frozen with its connection open is let go after connector.silentAfter; a live one, pinging, stays', async (t) => {
    const frozenSite = await newSite(c, org.id, 'frozen');
    const liveSite = await newSite(c, org.id, 'lively');
    const token = (await call(c.lb, 'POST', '/api/v1/connector/token', { body: { siteId: frozenSite.id, secret: frozenSite.connector.secret } })).body.token as string;
    const frozen = await openControl(c.nodes[0]!.adminUrl, token);
    frozen.ws.send(JSON.stringify({ v: 1, type: 'register', connectorVersion: 'test', transports: ['websocket'] }));
    const { connector: live } = await connectedAt(t, c.nodes[0]!.adminUrl, liveSite);
    await until(async () => (await statusVia(c.lb, frozenSite.id)).online, 15_000, 'online');
    let liveDropped = false;
    live.on('disconnected', () => (liveDropped = true));
    const frozenAt = Date.now();
    frozen.ws.pause(); // reads nothing, answers nothing: a machine gone with the TCP connection open
    await until(async () => ((await statusVia(c.lb, frozenSite.id)).online ? undefined : true), 15_000, 'the frozen site offline');
    const took = Date.now() - frozenAt;
    t.comment(`frozen connector let go after ${took} ms`);
    // Silence counts from its last answer to a ping (the node pings every third of silentAfter).
    t.ok(took >= 2000, 'not before connector.silentAfter from its last answer');
    frozen.ws.resume();
    t.equal((await frozen.closed).code, 1006, 'its connection was cut, not closed politely (nobody would answer)');
    t.notOk(liveDropped, 'the connector that kept pinging was kept');
    t.match(await statusVia(c.lb, liveSite.id), { online: true, node: 'node-1' });
  });

  await t.test('a node that fences itself keeps its connectors: the same connections are attached anew when it rejoins', async (t) => {
    const site = await newSite(c, org.id, 'fenced');
    const { connector, node } = await connectedAt(t, c.nodes[1]!.adminUrl, site);
    t.equal(node, 'node-2');
    let dropped = 0;
    connector.on('disconnected', () => dropped++);
    const again = nextEvent<{ node: string }>(connector, 'connected', 15_000);
    // As if node-2 had missed its renewals: its next renewal finds the lease gone and it fences.
    const valkey = new Redis(c.valkeyUrl);
    t.teardown(() => valkey.quit());
    await valkey.del(new Keyspace(c.clusterName).lease('node-2'));
    t.match(await again, { node: 'node-2' }, 'registered again on the same node, over the same connection');
    const fencings = /^cluster_node_fencings_total (\d+)/m.exec(await (await fetch(`${c.nodes[1]!.metricsUrl}/metrics`)).text());
    t.equal(Number(fencings?.[1]), 1, 'node-2 did fence');
    t.equal(dropped, 0, 'the connection was never closed');
    t.match(await until(async () => { const s = await statusVia(c.lb, site.id); return s.online ? s : undefined; }, 10_000, 'online'), { online: true, node: 'node-2' });
  });

  await t.test('a connection kept through a fence does not take back a site a newer connection took meanwhile', async (t) => {
    const site = await newSite(c, org.id, 'outrun');
    const token = async () => (await call(c.lb, 'POST', '/api/v1/connector/token', { body: { siteId: site.id, secret: site.connector.secret } })).body.token as string;
    const register = (ws: WebSocket) => ws.send(JSON.stringify({ v: 1, type: 'register', connectorVersion: 'test', transports: ['websocket'] }));
    const kept = await openControl(c.nodes[1]!.adminUrl, await token());
    register(kept.ws);
    await until(async () => (await statusVia(c.lb, site.id)).node === 'node-2', 15_000, 'online at node-2');
    // node-2's lease taken by "another process" for 3 s: node-2 fences and cannot rejoin until it expires.
    const valkey = new Redis(c.valkeyUrl);
    t.teardown(() => valkey.quit());
    const lease = new Keyspace(c.clusterName).lease('node-2');
    const fencings = async () => Number(/^cluster_node_fencings_total (\d+)/m.exec(await (await fetch(`${c.nodes[1]!.metricsUrl}/metrics`)).text())?.[1] ?? 0);
    const before = await fencings();
    await valkey.set(lease, 'someone-else', 'PX', 3000);
    await until(async () => (await fencings()) > before, 5000, 'node-2 fenced');
    const newer = await openControl(c.nodes[0]!.adminUrl, await token());
    let newerClosed = false;
    void newer.closed.then(() => (newerClosed = true));
    register(newer.ws);
    await until(async () => (await statusVia(c.lb, site.id)).node === 'node-1', 15_000, 'the newer connection holds the site');
    await until(async () => ((await valkey.get(lease)) ?? 'someone-else') !== 'someone-else', 15_000, 'node-2 rejoined');
    t.same(await Promise.race([kept.closed, new Promise((r) => setTimeout(() => r('still open'), 10_000))]), { code: 4409, reason: 'CLUSTER_ERR_CONNECTOR_SUPERSEDED' }, 'the kept connection is told it was superseded');
    t.notOk(newerClosed, 'the newer connection keeps the site');
    t.match(await statusVia(c.lb, site.id), { online: true, node: 'node-1' });
    newer.ws.close();
  });

  await t.test('SIGKILL the node holding a connector: it reconnects elsewhere and the status follows', async (t) => {
    const site = await newSite(c, org.id, 'mover');
    const dir = mkdtempSync(join(tmpdir(), 'connector-'));
    const proc = new ServiceProcess({
      name: 'connector',
      command: process.execPath,
      args: [CONNECTOR_ENTRY, ...c.nodes.flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret],
      logFile: join(dir, 'connector.log'),
    });
    t.teardown(() => proc.stop('SIGTERM', 3000));
    const first = await until(async () => { const s = await statusVia(c.lb, site.id); return s.online ? s : undefined; }, 30_000, 'online').catch((err: Error) => {
      // What the connector saw is the first thing to read when this happens (it did once, in a loaded clean-clone run).
      t.comment(`connector log:\n${readFileSync(join(dir, 'connector.log'), 'utf8').split('\n').slice(-40).join('\n')}`);
      throw err;
    });
    const holder = c.nodes.find((n) => n.config.nodeId === first.node)!;
    const killedAt = Date.now();
    holder.proc.signal('SIGKILL');
    const survivor = c.nodes.find((n) => n !== holder)!;
    const moved = await until(async () => { const s = await statusVia(survivor.adminUrl, site.id); return s.online && s.node !== first.node ? s : undefined; }, 15_000, 'reconnected elsewhere');
    t.comment(`connector moved from ${first.node} to ${moved.node} in ${Date.now() - killedAt}ms`);
    t.not(moved.node, first.node);
    await proc.stop('SIGTERM', 5000);
    await until(async () => ((await statusVia(survivor.adminUrl, site.id)).online ? undefined : true), 15_000, 'offline after goodbye');
    t.pass('SIGTERM says goodbye: the site goes offline');
  });
});
