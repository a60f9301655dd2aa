// A cluster CA and one certificate per node for the peer port's TLS, made with openssl the
// way an operator would (docs/operations.md), in a directory the test owns.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecked } from '../../devenv/process.ts';

export function peerTlsFiles(t: { teardown(fn: () => unknown): void }, nodeIds: string[]): (nodeId: string) => { tlsCert: string; tlsKey: string; tlsCa: string } {
  const dir = mkdtempSync(join(tmpdir(), 'peer-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ssl = (args: string[]) => runChecked('openssl', 'openssl', args, { cwd: dir });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/CN=cluster peer CA']);
  for (const id of nodeIds) {
    ssl(['req', ...ec, '-keyout', `${id}.key`, '-out', `${id}.csr`, '-subj', `/CN=${id}`]);
    ssl(['x509', '-req', '-in', `${id}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${id}.pem`, '-days', '30']);
  }
  return (id) => ({ tlsCert: join(dir, `${id}.pem`), tlsKey: join(dir, `${id}.key`), tlsCa: join(dir, 'ca.pem') });
}
