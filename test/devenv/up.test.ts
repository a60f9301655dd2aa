import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ServiceProcess } from '../../devenv/process.ts';

const CLUSTER = fileURLToPath(new URL('../../bin/cluster.mjs', import.meta.url));
const NODE_IPS = ['127.0.0.11', '127.0.0.12', '127.0.0.13'];

function httpsGet(ip: string, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: ip, port: 443, servername, ca, rejectUnauthorized: true }, () => sock.write(`GET / HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`));
    let body = '';
    sock.on('data', (d) => (body += d));
    sock.on('end', () => resolve(body));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

const listeners = () => execFileSync('ss', ['-Htlnu'], { encoding: 'utf8' }).split('\n').filter((l) => NODE_IPS.some((ip) => l.includes(`${ip}:`)) || l.includes('127.0.0.1:8080 '));

t.test('`cluster up --nodes 3` becomes ready, the demo answers over HTTPS through every node, and teardown leaves nothing behind', async (t) => {
  t.same(listeners(), [], 'nothing listens on the local cluster addresses before');
  const dir = mkdtempSync(join(tmpdir(), 'cluster-up-'));
  chmodSync(dir, 0o755); // the postgres user must reach its data directory
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'up.out');
  const up = new ServiceProcess({ name: 'cluster-up', command: process.execPath, args: [CLUSTER, 'up', '--nodes', '3', '--data-dir', join(dir, 'data')], logFile: log });
  t.teardown(() => up.stop('SIGKILL', 1000));
  const deadline = Date.now() + 120_000;
  const output = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  while (!/Ctrl-C stops everything/.test(output()) && Date.now() < deadline) {
    if (!up.alive) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const out = output();
  t.match(out, /cluster up in \d+ ms/, 'it says it is up');
  t.match(out, /demo site\s+ready in \d+ ms \(certificate: valid\)/, 'the demo resource has a certificate from the local CA');
  t.match(out, /demo-site\s+yes\s+node-\d/, 'the status table shows the demo site online');
  const root = readFileSync(join(dir, 'data', 'pebble-root.pem'), 'utf8');
  for (const ip of NODE_IPS) t.match(await httpsGet(ip, 'hello.demo.cluster.test', root), /hello from the demo site/, `HTTPS through ${ip}, chain verified`);

  up.signal('SIGTERM');
  const exit = await up.exited;
  t.equal(exit.code, 0, 'Ctrl-C/SIGTERM stops it cleanly');
  t.same(listeners(), [], 'no listening port left behind');
  const procs = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(dir));
  t.same(procs, [], 'no process left behind');
});
