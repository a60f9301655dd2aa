import { X509Certificate } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import pg from 'pg';
import t from 'tap';
import { Connector } from '../../connector/connector.ts';
import { createLogger } from '../../core/log.ts';
import { LocalPebble } from '../../devenv/pebble.ts';
import { CERT_ISSUER_ID } from '../../actors/cert-issuer.ts';
import { addVerifiedDomain, call, servedBy, startApiCluster } from '../harness/api.ts';
import { askVia } from '../harness/cluster.ts';
import { until } from '../harness/until.ts';
import { nodeAddress, startTestNode } from '../harness/nodes.ts';

const logger = createLogger({ level: 'silent' });

/** The certificate a node serves for `servername`, verified against `ca`; plus an HTTP answer. */
function fetchVerified(host: string, servername: string, ca: string): Promise<{ fingerprint: string; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port: 443, servername, ca, rejectUnauthorized: true }, () => {
      const fingerprint = sock.getPeerX509Certificate()!.fingerprint256;
      sock.write(`GET / HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`);
      let body = '';
      sock.on('data', (d) => (body += d));
      sock.on('end', () => resolve({ fingerprint, body }));
    });
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

t.test('certificates: issued by Pebble through our DNS, one order at a time, renewed, sealed at rest', async (t) => {
  const target = createServer((_req, res) => res.end('hello over tls'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));

  // Pebble checks DNS-01 challenges against node-1's DNS gateway.
  const ip1 = nodeAddress();
  const pebble = await LocalPebble.start({ dir: mkdtempSync(join(tmpdir(), 'pebble-')), dnsServer: `${ip1}:53` });
  t.teardown(() => pebble.stop());
  const perNode = (i: number) =>
    i === 0 ? { admin: { bind: `${ip1}:8080` }, ingress: { http: `${ip1}:80`, https: `${ip1}:443`, publicAddresses: [ip1] }, dns: { bind: `${ip1}:53` }, peer: { bind: `${ip1}:7946` } } : {};
  // The auth portal's hostname lies under the org's verified zone: its certificate comes from ACME too.
  const config = { acme: { directoryUrl: pebble.directoryUrl, checkEvery: '1s' }, access: { portalHostname: 'auth.certs.test' } };
  const env = { NODE_EXTRA_CA_CERTS: pebble.caFile };
  const c = await startApiCluster(t, 3, config, perNode, env);
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: 'tls', name: 'Tls' } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  const domain = await addVerifiedDomain(c, base, 'certs.test');
  t.ok(domain.id);
  const site = (await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'site' } })).body;
  const res = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'secure', protocol: 'http', hostname: 'secure.certs.test' } })).body;
  await call(c.lb, 'POST', `${base}/resources/${res.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port: (target.address() as { port: number }).port, scheme: 'http' } });
  const connector = new Connector({ endpoints: [c.nodes[1]!.adminUrl], siteId: site.id, secret: site.connector.secret, logger });
  t.teardown(() => connector.stop());
  connector.start();
  await servedBy(c, org.id, res.id, 'node-2', 20_000);

  // Two nodes asked at once (and the periodic check besides): one ACME order.
  const asks = await Promise.all([c.nodes[0]!, c.nodes[2]!].map((n) => call(n.adminUrl, 'POST', `${base}/resources/${res.id}/certificate`, { cookie })));
  t.same(asks.map((a) => a.status), [200, 200]);
  t.ok(asks.every((a) => a.body.status === 'valid'), `both report a valid certificate: ${JSON.stringify(asks.map((a) => a.body))}`);
  const db = new pg.Client({ connectionString: c.postgresUrl });
  await db.connect();
  t.teardown(() => db.end());
  const count = async (action: string, hostname = 'secure.certs.test') => Number((await db.query(`SELECT count(*) FROM audit_log WHERE action = $1 AND target_id = $2`, [action, hostname])).rows[0].count);
  t.equal(await count('certificate.ordered'), 1, 'exactly one ACME order');
  t.equal(await count('certificate.issued'), 1);

  // Every node serves it, and a client that trusts only Pebble's root verifies the chain.
  const root = await pebble.issuedRoot();
  const ips = c.nodes.map((n) => String(n.config.ingress.https).replace(/:443$/, ''));
  const stored = (await db.query(`SELECT cert_pem, key_sealed FROM certificates WHERE hostname = 'secure.certs.test'`)).rows[0];
  const issued = new X509Certificate(stored.cert_pem).fingerprint256;
  for (const ip of ips) {
    const got = await fetchVerified(ip, 'secure.certs.test', root);
    t.equal(got.fingerprint, issued, `${ip} serves the issued certificate`);
    t.match(got.body, /hello over tls/);
  }

  await until(async () => (await count('certificate.issued', 'auth.certs.test')) === 1, 30_000, "the portal's certificate");
  const portalCert = new X509Certificate((await db.query(`SELECT cert_pem FROM certificates WHERE hostname = 'auth.certs.test'`)).rows[0].cert_pem).fingerprint256;
  for (const ip of ips) {
    const got = await until(() => fetchVerified(ip, 'auth.certs.test', root).then((g) => (g.fingerprint === portalCert ? g : undefined)), 10_000, `${ip} to serve the portal's certificate`);
    t.match(got.body, /Sign-in portal/, `${ip} serves the auth portal with its issued certificate`);
  }

  // At rest: no plaintext key anywhere in the table.
  const dump = JSON.stringify((await db.query('SELECT * FROM certificates')).rows) + JSON.stringify((await db.query('SELECT * FROM acme_accounts')).rows);
  t.notMatch(dump, /PRIVATE KEY/, 'no PEM private key in certificates or acme_accounts');
  t.notMatch(Buffer.from(stored.key_sealed).toString('latin1'), /BEGIN/, 'the key column is sealed');

  // Renewal: the certificate becomes due (as if its renewal time had come); it is renewed
  // once through Pebble, and every node serves the new one without a restart.
  await db.query(`UPDATE certificates SET renew_after = now() - interval '1 second' WHERE hostname = 'secure.certs.test'`);
  await until(async () => (await count('certificate.renewed')) >= 1, 30_000, 'the renewal');
  t.equal(await count('certificate.renewed'), 1, 'renewed once');
  // Two more of the issuer's own checks after it (counted by the issuer, not waited for by
  // the clock): the certificate is no longer due, so nothing is ordered again.
  const checks = async () => ((await askVia(c.nodes[0]!, 'cert-issuer', CERT_ISSUER_ID, { type: 'status' })).body.value as { checks: number }).checks;
  const after = await checks();
  await until(async () => (await checks()) >= after + 2, 30_000, 'two more certificate checks');
  t.equal(await count('certificate.renewed'), 1, 'and only once');
  const renewed = new X509Certificate((await db.query(`SELECT cert_pem FROM certificates WHERE hostname = 'secure.certs.test'`)).rows[0].cert_pem).fingerprint256;
  t.not(renewed, issued, 'a new certificate');
  for (const ip of ips) {
    let got = await fetchVerified(ip, 'secure.certs.test', root);
    for (let i = 0; i < 20 && got.fingerprint !== renewed; i++) got = await new Promise((r) => setTimeout(r, 100)).then(() => fetchVerified(ip, 'secure.certs.test', root));
    t.equal(got.fingerprint, renewed, `${ip} serves the renewed certificate without a restart`);
  }
  const status = (await call(c.lb, 'GET', `${base}/resources/${res.id}`, { cookie })).body;
  t.match(status.certificate, { status: 'valid', notAfter: /^\d{4}-/ }, 'the API shows the certificate');

  // Metrics an operator watches: certificate expiry, tunnels, proxied requests by resource.
  const metrics = await (await fetch(`${c.nodes[1]!.metricsUrl}/metrics`)).text();
  const expiry = Number(/cluster_certificate_expiry_seconds\{hostname="secure\.certs\.test"\} ([\d.e+]+)/.exec(metrics)?.[1]);
  t.ok(expiry > 86_400, `certificate expiry is exported (${expiry} s)`);
  t.match(metrics, /^cluster_tunnels\{role="primary"\} 1$/m, 'the holder reports its tunnel');
  // Counted where the request met a tunnel: the holder, or the node holding the connector's standby.
  let served = 0;
  for (const n of c.nodes) served += Number(new RegExp(`cluster_ingress_requests_total\\{resource="${res.id}",status="200"\\} (\\d+)`).exec(await (await fetch(`${n.metricsUrl}/metrics`)).text())?.[1] ?? 0);
  t.ok(served >= 6, `the nodes with a tunnel counted the resource's requests (${served})`);

  // A node with another cluster key refuses to start instead of serving the wrong thing.
  const wrong = await startTestNode(t, { postgresUrl: c.postgresUrl, valkeyUrl: c.valkeyUrl, clusterName: c.clusterName, nodeId: 'node-9', config: { encryptionKey: Buffer.alloc(32, 7).toString('base64') } });
  const code = await wrong.proc.exited;
  t.not(code, 0, 'it exits with an error');
  t.match(readFileSync(wrong.logFile, 'utf8'), /CLUSTER_ERR_CRYPTO_WRONG_KEY/, 'and says why');
});
