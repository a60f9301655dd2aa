import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import dnsPacket from 'dns-packet';
import t from 'tap';
import { until } from '../harness/until.ts';
import { ServiceProcess } from '../../devenv/process.ts';
import { askVia, servedTxtVia } from '../harness/cluster.ts';
import { addVerifiedDomain, call, servedBy, startApiCluster } from '../harness/api.ts';
import { dig } from '../harness/dig.ts';

const CONNECTOR_ENTRY = fileURLToPath(new URL('../../bin/cluster-connector.mjs', import.meta.url));
t.test('every node answers authoritatively for the zones, and A records follow the tunnel', async (t) => {
  const target = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));
  const c = await startApiCluster(t, 3, { dns: { caaIssuers: ['pebble.test'], recordTtl: '30s' } });
  const cookie = c.adminCookie;
  const ips = c.nodes.map((n) => String(n.config.ingress.http).replace(/:80$/, ''));
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'dns', name: 'Dns' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  await addVerifiedDomain(c, base, 'zone.test');
  const site = (await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'site' } })).body;
  const res = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'app', protocol: 'http', hostname: 'app.zone.test', tls: false } })).body;
  await call(c.lb, 'POST', `${base}/resources/${res.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port: (target.address() as { port: number }).port, scheme: 'http' } });

  // Before any site is online, the resource's name lists every live node (any node forwards).
  const all = await until(async () => {
    const a = await dig(ips[0]!, 'app.zone.test', 'A');
    return a.short.length === 3 ? a : undefined;
  }, 15_000, 'every node answers A with all nodes');
  t.same(all.short, [...ips].sort(), 'no tunnel yet: every node is an answer');

  await t.test('the same SOA, NS, A, TXT and CAA answers from every node', async (t) => {
    await askVia(c.nodes[0]!, 'dns-zone', 'zone.test', { type: 'acme-set', name: '_acme-challenge.app.zone.test', value: 'token-1' });
    const questions: Array<[string, string]> = [['zone.test', 'SOA'], ['zone.test', 'NS'], ['app.zone.test', 'A'], ['_acme-challenge.app.zone.test', 'TXT'], ['zone.test', 'CAA'], ['ns-node-1.zone.test', 'A']];
    for (const [name, type] of questions) {
      const answers = await Promise.all(ips.map((ip) => dig(ip, name, type)));
      t.ok(answers[0]!.short.length > 0, `${type} ${name} has an answer`);
      t.ok(answers.every((a) => a.status === 'NOERROR' && a.flags.includes('aa') && !a.flags.includes('ra')), `${type} ${name}: authoritative NOERROR without recursion`);
      t.same(answers.map((a) => a.short), [answers[0]!.short, answers[0]!.short, answers[0]!.short], `${type} ${name}: the same on every node`);
    }
    t.same((await dig(ips[1]!, '_acme-challenge.app.zone.test', 'TXT')).short, ['"token-1"']);
    // What the cert-issuer asks every node before the CA looks: the same as dig sees.
    for (const n of c.nodes) t.same((await servedTxtVia(n, '_acme-challenge.APP.zone.test')).body, { values: ['token-1'] }, `${n.config.nodeId} reports the challenge record to its peers`);
    t.equal((await servedTxtVia(c.nodes[0]!, 'bad name/../x')).status, 400, 'a malformed name is refused');
    t.same((await dig(ips[2]!, 'zone.test', 'CAA')).short, ['0 issue "pebble.test"']);
    t.equal((await dig(ips[0]!, 'zone.test', 'NS')).short.length, 3, 'one name server per node');
    t.match((await dig(ips[0]!, 'APP.Zone.TEST', 'A')).short, all.short, 'names are case-insensitive');
    await askVia(c.nodes[0]!, 'dns-zone', 'zone.test', { type: 'acme-clear', name: '_acme-challenge.app.zone.test', value: 'token-1' });
    t.equal((await dig(ips[2]!, '_acme-challenge.app.zone.test', 'TXT')).status, 'NXDOMAIN', 'a cleared challenge is gone');
    t.same((await servedTxtVia(c.nodes[2]!, '_acme-challenge.app.zone.test')).body, { values: [] }, 'and no longer reported');
  });

  await t.test('NXDOMAIN, NODATA and REFUSED; TCP; truncation', async (t) => {
    const nx = await dig(ips[0]!, 'nothing.zone.test', 'A');
    t.equal(nx.status, 'NXDOMAIN');
    t.match(nx.authority[0], /^zone\.test\. \d+ SOA /, 'NXDOMAIN carries the SOA');
    const nodata = await dig(ips[1]!, 'app.zone.test', 'MX');
    t.equal(nodata.status, 'NOERROR');
    t.same(nodata.answer, [], 'NODATA: no answer');
    t.match(nodata.authority[0], /^zone\.test\. \d+ SOA /, 'NODATA carries the SOA');
    t.equal((await dig(ips[2]!, 'example.com', 'A')).status, 'REFUSED', 'not our zone: refused, no recursion');
    const tcp = await dig(ips[2]!, 'app.zone.test', 'A', ['+tcp']);
    t.same(tcp.short, all.short, 'TCP answers work');
    for (let i = 0; i < 30; i++) await askVia(c.nodes[0]!, 'dns-zone', 'zone.test', { type: 'acme-set', name: '_acme-challenge.big.zone.test', value: `${'v'.repeat(40)}-${i}` });
    const truncated = await dig(ips[1]!, '_acme-challenge.big.zone.test', 'TXT', ['+noedns', '+ignore']);
    t.ok(truncated.flags.includes('tc'), 'an answer over 512 bytes without EDNS is truncated (TC)');
    const big = await dig(ips[1]!, '_acme-challenge.big.zone.test', 'TXT', ['+bufsize=4096']);
    t.equal(big.short.length, 1, 'with a large EDNS0 payload size it fits');
    t.notOk(big.flags.includes('tc'));
    const viaTcp = await dig(ips[1]!, '_acme-challenge.big.zone.test', 'TXT');
    t.equal(viaTcp.short.length, 1, 'dig retries over TCP after TC and gets it all');
  });

  await t.test('the A record names the node that holds the tunnel, and follows it after SIGKILL', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'connector-'));
    const connector = new ServiceProcess({
      name: 'connector',
      command: process.execPath,
      args: [CONNECTOR_ENTRY, '--endpoint', c.nodes[1]!.adminUrl, ...c.nodes.flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret],
      logFile: join(dir, 'connector.log'),
    });
    t.teardown(() => connector.stop('SIGTERM', 3000));
    await servedBy(c, org.id, res.id, 'node-2', 20_000);
    const holderIp = ips[1]!;
    for (const ip of ips) t.same((await until(async () => {
      const a = await dig(ip, 'app.zone.test', 'A');
      return a.short.length === 1 && a.short[0] === holderIp ? a : undefined;
    }, 15_000, `node ${ip} names the holder`)).short, [holderIp], `${ip} answers with the holder only`);
    const serial = Number((await dig(ips[0]!, 'zone.test', 'SOA')).short[0]!.split(' ')[2]);

    const killedAt = Date.now();
    c.nodes[1]!.proc.signal('SIGKILL');
    const survivors = [ips[0]!, ips[2]!];
    const moved = await Promise.all(survivors.map((ip) => until(async () => {
      const a = await dig(ip, 'app.zone.test', 'A');
      return a.short.length === 1 && a.short[0] !== holderIp && survivors.includes(a.short[0]!) ? { ip: a.short[0]!, ms: Date.now() - killedAt } : undefined;
    }, 20_000, `node ${ip} follows`)));
    t.equal(moved[0]!.ip, moved[1]!.ip, 'both survivors name the same new holder');
    t.comment(`records followed the tunnel ${Math.max(...moved.map((m) => m.ms))} ms after the SIGKILL`);
    // The tunnel moves as soon as the connector notices; the name server set follows
    // membership, which drops the dead node when a peer finds its port refused or, at the
    // latest, when its lease expires.
    for (const ip of survivors) {
      const ns = await until(async () => {
        const r = await dig(ip, 'zone.test', 'NS');
        return r.short.length === 2 ? r : undefined;
      }, 15_000, `node ${ip} drops the dead name server`);
      t.notOk(ns.short.some((n) => n.startsWith(`ns-${String(c.nodes[1]!.config.nodeId)}.`)), `${ip}: the dead node is no longer a name server`);
    }
    const after = Number((await dig(ips[2]!, 'zone.test', 'SOA')).short[0]!.split(' ')[2]);
    t.ok(after > serial, `the SOA serial moved forward (${serial} -> ${after})`);
  });

  await t.test('malformed packets never stop a node from answering', async (t) => {
    const sock = createSocket('udp4');
    t.teardown(() => sock.close());
    const valid = dnsPacket.encode({ type: 'query', id: 7, flags: 0, questions: [{ type: 'A', name: 'app.zone.test', class: 'IN' }] });
    const garbage: Buffer[] = [];
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed / 0x7fffffff);
    for (let i = 0; i < 3000; i++) {
      if (i % 3 === 0) garbage.push(Buffer.from(Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 256))));
      else {
        const m = Buffer.from(valid);
        for (let k = 0; k < 1 + Math.floor(rand() * 6); k++) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
        garbage.push(i % 3 === 1 ? m : m.subarray(0, Math.floor(rand() * m.length)));
      }
    }
    // Hand-made classics: a compression pointer to itself, a label running past the end, a header only.
    const loop = Buffer.from(valid.subarray(0, 12));
    loop.writeUInt16BE(1, 4);
    garbage.push(Buffer.concat([loop, Buffer.from([0xc0, 12, 0, 1, 0, 1])]), Buffer.concat([loop, Buffer.from([63, 97, 98])]), loop);
    for (const ip of [ips[0]!, ips[2]!]) {
      for (const g of garbage) sock.send(g, 53, ip);
      await new Promise((r) => setTimeout(r, 300));
      const a = await dig(ip, 'app.zone.test', 'A');
      t.equal(a.status, 'NOERROR', `${ip} still answers after ${garbage.length} malformed packets`);
      t.ok(a.short.length >= 1 && a.short.every((x) => ips.includes(x)), `answers with node addresses: ${a.short.join(',')}`);
    }
    const formerr = await new Promise<number>((resolve) => {
      sock.once('message', (m) => resolve(m[3]! & 0xf));
      sock.send(Buffer.concat([loop, Buffer.from([63, 97, 98])]), 53, ips[0]!);
    });
    t.equal(formerr, 1, 'an undecodable query gets FORMERR');
  });
});
