// An ACME order in flight when its issuer's node dies: the next owner of the cert-issuer
// takes that order up instead of placing another (no duplicate orders against the CA's
// rate limits), and the certificate is issued.
//
// The window is made deterministic: the zone's dns-zone actor lives on a node we freeze, so
// the issuer records its order and then waits at least a lease (3 s) to publish the challenge
// record. We SIGKILL the issuer's node inside that window.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import pg from 'pg';
import t from 'tap';
import { LocalPebble } from '../../devenv/pebble.ts';
import { actorKey, placeOn } from '../../supervisors/placement.ts';
import { addVerifiedDomain, call, startApiCluster } from '../harness/api.ts';
import { inspectNode } from '../harness/cluster.ts';
import { nodeAddress } from '../harness/nodes.ts';

const NODES = ['node-1', 'node-2', 'node-3'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The certificate a node presents for `servername`, verified against `ca`. */
function presented(host: string, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port: 443, servername, ca, rejectUnauthorized: true }, () => {
      resolve(sock.getPeerX509Certificate()!.fingerprint256);
      sock.destroy();
    });
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

t.test('an ACME order in flight when its issuer\'s node is killed is finished by the next owner, not placed again', async (t) => {
  const issuerNode = placeOn(actorKey('cert-issuer', 'cluster'), NODES)!;
  let zone = '';
  for (let i = 0; placeOn(actorKey('dns-zone', zone), NODES) === issuerNode || !zone; i++) zone = `resume${i}.test`;
  const zoneNode = placeOn(actorKey('dns-zone', zone), NODES)!;
  const survivor = NODES.find((n) => n !== issuerNode && n !== zoneNode)!;
  const hostname = `secure.${zone}`;
  t.comment(`issuer on ${issuerNode}, zone ${zone} on ${zoneNode}, survivor ${survivor}`);

  // Every node on its own address; Pebble checks DNS-01 against the survivor's DNS.
  const ips = NODES.map(() => nodeAddress());
  const at = (node: string) => ips[NODES.indexOf(node)]!;
  const pebble = await LocalPebble.start({ dir: mkdtempSync(join(tmpdir(), 'pebble-')), dnsServer: `${at(survivor)}:53` });
  t.teardown(() => pebble.stop());
  const perNode = (i: number) => ({ admin: { bind: `${ips[i]}:8080` }, ingress: { http: `${ips[i]}:80`, https: `${ips[i]}:443`, publicAddresses: [ips[i]] }, dns: { bind: `${ips[i]}:53` }, peer: { bind: `${ips[i]}:7946` } });
  const c = await startApiCluster(t, 3, { acme: { directoryUrl: pebble.directoryUrl, checkEvery: '1s' } }, perNode, { NODE_EXTRA_CA_CERTS: pebble.caFile });
  const node = (id: string) => c.nodes.find((n) => n.config.nodeId === id)!;
  t.teardown(() => node(zoneNode).proc.signal('SIGCONT'));
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'resume', name: 'Resume' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  await addVerifiedDomain(c, base, zone);
  // Plain HTTP first: nothing to order until we have set the trap.
  const res = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'secure', protocol: 'http', hostname, tls: false } })).body;

  const runs = async (id: string, actor: string) => (await inspectNode(node(id))).actors.some((a) => `${a.kind}/${a.id}` === actor);
  for (let i = 0; i < 100 && !((await runs(issuerNode, 'cert-issuer/cluster')) && (await runs(zoneNode, `dns-zone/${zone}`))); i++) await sleep(100);
  t.ok(await runs(issuerNode, 'cert-issuer/cluster'), `the issuer runs on ${issuerNode}`);
  t.ok(await runs(zoneNode, `dns-zone/${zone}`), `the zone runs on ${zoneNode}`);

  const db = new pg.Client({ connectionString: c.postgresUrl });
  await db.connect();
  t.teardown(() => db.end());
  const audits = async (action: string) => (await db.query(`SELECT node_id, details FROM audit_log WHERE action = $1 AND target_id = $2 ORDER BY id`, [action, hostname])).rows;

  node(zoneNode).proc.signal('SIGSTOP');
  const tls = call(node(survivor).adminUrl, 'PATCH', `${base}/resources/${res.id}`, { cookie, body: { version: res.version, tls: true } });
  let ordered = await audits('certificate.ordered');
  for (let i = 0; i < 600 && ordered.length === 0; i++) {
    await sleep(25);
    ordered = await audits('certificate.ordered');
  }
  t.equal(ordered.length, 1, 'the issuer placed and recorded an order');
  node(issuerNode).proc.signal('SIGKILL');
  t.same(await audits('certificate.issued'), [], `${issuerNode} was killed before it finished the order`);
  t.equal(ordered[0]?.node_id, issuerNode, 'the order was placed by the killed node');
  t.equal((await tls).status, 200, 'the TLS switch was acknowledged');

  let issued = await audits('certificate.issued');
  for (let i = 0; i < 240 && issued.length === 0; i++) {
    await sleep(250);
    issued = await audits('certificate.issued');
  }
  t.equal(issued.length, 1, 'the certificate was issued');
  t.equal(issued[0]?.node_id, survivor, `by the next owner, ${survivor}`);
  t.equal(issued[0]?.details.resumed, true, 'which took up the order in flight');
  t.equal((await audits('certificate.ordered')).length, 1, 'no second order was placed');
  const stored = (await db.query(`SELECT cert_pem, order_url, pending_order_url FROM certificates WHERE hostname = $1`, [hostname])).rows[0];
  t.equal(stored.order_url, ordered[0]?.details.order, 'the stored certificate came from the recorded order');
  t.equal(stored.pending_order_url, null, 'and no order is pending any more');

  const root = await pebble.issuedRoot();
  t.equal(await presented(at(survivor), hostname, root), new X509Certificate(stored.cert_pem).fingerprint256, `${survivor} serves it, verified against the CA's root`);
});
